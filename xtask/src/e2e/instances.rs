//! Two instances of each demo sharing a Redis of this run's own: a page on
//! one shows what a page on the other sent, with the same id, and they tick
//! once an interval between them.

use anyhow::{Result, anyhow, bail};
use serde_json::json;

use super::cdp::{Browser, Tab, wait_until};
use super::{INTERVAL, PATIENCE, Report, Running, count, entries, greetings_came_back, is_open};
use harness::redis::Redis;

use crate::servers::{Demo, Instance};

/// The checks of two instances of `demo` sharing `redis`; without them (no
/// Redis, or an instance that does not start), each fails saying why.
pub(super) async fn on_two(
    browser: &Browser,
    demo: &'static Demo,
    redis: &Result<Redis>,
    report: &mut Report,
) {
    let names = [
        format!(
            "{}: a page on another instance sharing Redis shows Something changed, with the same id",
            demo.name
        ),
        format!(
            "{}: instances sharing Redis tick once an interval between them",
            demo.name
        ),
    ];
    let results = match redis {
        Ok(redis) => check_two_instances(browser, demo, redis).await,
        Err(why) => Err(anyhow!("{why:#}")),
    };
    match results {
        Ok(results) => {
            for (name, result) in names.iter().zip(results) {
                report.check(name, result);
            }
        }
        Err(why) => {
            for name in &names {
                report.check(name, Err(anyhow!("{why:#}")));
            }
        }
    }
}

/// Starts two instances of `demo` sharing `redis`, opens a page on each, and
/// runs the checks that need them.
async fn check_two_instances(
    browser: &Browser,
    demo: &'static Demo,
    redis: &Redis,
) -> Result<[Result<()>; 2]> {
    let mut instances = Vec::new();
    for n in [1, 2] {
        // Those started are killed when dropped, if the next cannot start.
        instances.push(Running::start(demo, Instance::Nth(n), 0, Some(redis.url())).await?);
    }
    let first = instances[0].open_tab(browser).await?;
    let second = instances[1].open_tab(browser).await?;
    let results = [
        shown_on_the_other_instance(&first, &second).await,
        ticks_once_an_interval(&second).await,
    ];
    for running in &mut instances {
        running.server.stop().await;
    }
    Ok(results)
}

/// The ids of the Something changed broadcasts a page received.
async fn changed_ids(tab: &Tab) -> Result<Vec<String>> {
    let entries = entries(tab).await?.into_iter();
    let changed = entries.filter(|entry| entry.text.contains("Something changed"));
    Ok(changed.filter_map(|entry| entry.id).collect())
}

/// Pages on two instances sharing Redis: what one sends, the other shows as
/// the same broadcast, with the same id.
async fn shown_on_the_other_instance(sender: &Tab, other: &Tab) -> Result<()> {
    for tab in [sender, other] {
        wait_until("both pages to open", PATIENCE, async || is_open(tab).await).await?;
    }
    greetings_came_back(&[sender, other]).await?;
    let before = changed_ids(sender).await?;
    sender.call_demo("send", &[json!("Hey there")]).await?;
    let new = async || {
        let ids = changed_ids(sender).await?.into_iter();
        Ok::<_, anyhow::Error>(ids.filter(|id| !before.contains(id)).collect::<Vec<_>>())
    };
    let back = async || Ok(!new().await?.is_empty());
    wait_until("Something changed on the sending page", PATIENCE, back).await?;
    let id = new().await?.remove(0);
    let shown = async || Ok(changed_ids(other).await?.contains(&id));
    let what = format!("Something changed with id {id} on the other page");
    if let Err(why) = wait_until(&what, PATIENCE, shown).await {
        bail!("{why:#}; it has {:?}", changed_ids(other).await?);
    }
    Ok(())
}

/// Each instance ticks at the slot starts, and only the one that claims the
/// slot in Redis broadcasts: one Hello hello! an interval, not one each.
async fn ticks_once_an_interval(tab: &Tab) -> Result<()> {
    let window = INTERVAL * 10;
    let before = count(tab, "Hello hello!").await?;
    tokio::time::sleep(window).await;
    let ticks = count(tab, "Hello hello!").await? - before;
    // One more than the window holds, if it began just before a slot.
    if !(5..=11).contains(&ticks) {
        bail!("{ticks} ticks in {window:?}, with one every {INTERVAL:?}");
    }
    Ok(())
}
