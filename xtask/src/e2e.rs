//! `cargo xtask e2e`: both demos in headless Chromium, checked the way a person
//! would: pages load, messages flow between tabs, Close and Reconnect work,
//! pages come back after a server restart without losing what the server
//! kept, and other origins are refused. Then `e2e/instances.rs` runs two
//! instances of each demo sharing a Redis of this run's own, `e2e/proxy.rs`
//! puts nginx in front of such instances and stops the one a page is on, and
//! `e2e/tls.rs` serves the pages over https:// and HTTP/2.

mod cdp;
mod instances;
mod proxy;
mod tls;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use cdp::{Browser, Tab, wait_until};
use serde_json::json;

use crate::flags;
use harness::redis::Redis;
use harness::tls::Certificate;

use crate::servers::{self, DEMOS, Demo, Instance, Kind, Profile, Server};

/// A short tick, so every check sees several.
const INTERVAL: Duration = Duration::from_millis(300);
/// A short heartbeat, so that a page notices a dead link within seconds.
const HEARTBEAT: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(15);

impl flags::E2e {
    pub fn run(self) -> Result<()> {
        if !self.no_build {
            servers::build(Profile::Debug)?;
        }
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        // Missing, it fails only the checks that need it.
        let redis = Redis::try_start();
        let report = runtime.block_on(suite(&redis))?;
        say!("e2e: {} passed, {} failed", report.passed, report.failed);
        if report.failed > 0 {
            bail!("{} browser check(s) failed", report.failed);
        }
        Ok(())
    }
}

/// One demo under test, and where its page is.
struct Running {
    demo: &'static Demo,
    instance: Instance,
    /// The Redis it shares with other instances, if any.
    redis: Option<String>,
    /// Its other options (TLS, a proxy, origins), kept for a restart.
    extra: Vec<String>,
    server: Server,
    url: String,
}

impl Running {
    /// Starts `demo` on `port`, alone or sharing `redis`; with Redis, waits
    /// until it has reached it.
    async fn start(
        demo: &'static Demo,
        instance: Instance,
        port: u16,
        redis: Option<String>,
    ) -> Result<Running> {
        Running::with(demo, instance, port, redis, Vec::new()).await
    }

    /// [`Running::start`] with `extra` options; `--tls-cert` among them makes
    /// its page URL https://.
    async fn with(
        demo: &'static Demo,
        instance: Instance,
        port: u16,
        redis: Option<String>,
        extra: Vec<String>,
    ) -> Result<Running> {
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--interval".to_owned(),
            format!("{}ms", INTERVAL.as_millis()),
            "--heartbeat".to_owned(),
            format!("{}ms", HEARTBEAT.as_millis()),
        ];
        if let Some(redis) = &redis {
            args.extend(["--redis".to_owned(), redis.clone()]);
        }
        args.extend(extra.iter().cloned());
        let mut server = servers::start(demo, instance, &args, "warn", Profile::Debug)?;
        let url = server.listening(PATIENCE).await?;
        let tls = extra.iter().any(|arg| arg == "--tls-cert");
        let url = if tls { servers::https(&url) } else { url };
        if redis.is_some() && !tls {
            servers::healthy(&url, PATIENCE).await?;
        }
        Ok(Running {
            demo,
            instance,
            redis,
            extra,
            server,
            url,
        })
    }

    /// The one instance of `demo`, on a free port.
    async fn alone(demo: &'static Demo) -> Result<Running> {
        Running::start(demo, Instance::Only, 0, None).await
    }

    fn port(&self) -> u16 {
        self.url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or(0)
    }

    /// Stops the server and starts it again on the same port.
    async fn restart(&mut self) -> Result<()> {
        self.server.stop().await;
        self.start_again().await
    }

    /// Starts the server, stopped, again on the same port with the same options.
    async fn start_again(&mut self) -> Result<()> {
        let (port, redis, extra) = (self.port(), self.redis.clone(), self.extra.clone());
        *self = Running::with(self.demo, self.instance, port, redis, extra).await?;
        Ok(())
    }

    async fn open_tab(&self, browser: &Browser) -> Result<Tab> {
        let tab = browser.new_tab().await?;
        tab.goto(&self.url).await?;
        Ok(tab)
    }
}

/// Prints one PASS or FAIL line per check and counts the failures.
#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn check(&mut self, name: &str, result: Result<()>) {
        self.observe(name, result.map(|()| String::new()));
    }

    /// A check whose PASS line also says what it observed.
    fn observe(&mut self, name: &str, result: Result<String>) {
        match result {
            Ok(observed) if observed.is_empty() => {
                self.passed += 1;
                say!("PASS {name}");
            }
            Ok(observed) => {
                self.passed += 1;
                say!("PASS {name}: {observed}");
            }
            Err(why) => {
                self.failed += 1;
                say!("FAIL {name}: {why:#}");
            }
        }
    }
}

async fn suite(redis: &Result<Redis>) -> Result<Report> {
    let mut demos = [
        Running::alone(Kind::WebSocket.demo()).await?,
        Running::alone(Kind::Sse.demo()).await?,
    ];
    // Missing, it fails only the checks over TLS; the browser trusts it.
    let certificate = Certificate::generated();
    let trust = certificate.as_ref().ok().map(Certificate::spki_sha256);
    let browser = match trust {
        Some(Ok(hash)) => {
            Browser::launch(&[format!("--ignore-certificate-errors-spki-list={hash}")]).await?
        }
        _ => Browser::launch(&[]).await?,
    };
    let mut report = Report::default();
    let mut first_tabs = Vec::new();
    for running in &demos {
        let tab = running.open_tab(&browser).await?;
        let loaded = page_loads(&tab).await;
        report.check(
            &format!(
                "{}: the page loads, opens, greets and ticks without console errors",
                running.demo.name
            ),
            loaded,
        );
        first_tabs.push(tab);
    }
    for (running, tab) in demos.iter().zip(&first_tabs) {
        let second = running.open_tab(&browser).await?;
        let sent = send_reaches_both_tabs(tab, &second).await;
        report.check(
            &format!(
                "{}: Send shows Something changed in both tabs",
                running.demo.name
            ),
            sent,
        );
        let shot = screenshot(tab, running.demo.package).await;
        report.check(&format!("{}: screenshot saved", running.demo.name), shot);
        let closed = close_stops_and_reconnect_resumes(&second).await;
        report.check(
            &format!(
                "{}: Close stops the log, Reconnect resumes without a gap",
                running.demo.name
            ),
            closed,
        );
    }
    for (running, tab) in demos.iter().zip(&first_tabs) {
        let thawed = notices_a_frozen_server_and_recovers(running, tab).await;
        report.check(
            &format!(
                "{}: a frozen server is noticed, and the page resumes without a gap once it thaws",
                running.demo.name
            ),
            thawed,
        );
    }
    for (running, tab) in demos.iter_mut().zip(&first_tabs) {
        let restarted = comes_back_after_restart(running, tab).await;
        report.check(
            &format!(
                "{}: the page reconnects by itself after a server restart",
                running.demo.name
            ),
            restarted,
        );
    }
    let [ws, sse] = &demos;
    let refused = other_origins_are_refused(&first_tabs[1], ws, &first_tabs[0], sse).await;
    report.check("Origins: pages from another origin are refused", refused);
    for running in &mut demos {
        running.server.stop().await;
    }
    for demo in &DEMOS {
        instances::on_two(&browser, demo, redis, &mut report).await;
    }
    proxy::checks(&browser, redis, &mut report).await;
    tls::checks(&browser, &certificate, &mut report).await;
    Ok(report)
}

// What the page's `window.demo` says, read through `Tab::call_demo`.

/// One log entry, as the page keeps it.
#[derive(Debug)]
struct Entry {
    kind: String,
    text: String,
    /// The broadcast's id, for a broadcast.
    id: Option<String>,
}

async fn entries(tab: &Tab) -> Result<Vec<Entry>> {
    let entries = tab.call_demo("entries", &[]).await?;
    let entries = entries.as_array().context("demo.entries is not a list")?;
    Ok(entries
        .iter()
        .map(|entry| {
            let text = |key: &str| entry[key].as_str().unwrap_or_default().to_owned();
            Entry {
                kind: text("kind"),
                text: text("text"),
                id: entry["id"].as_str().map(str::to_owned),
            }
        })
        .collect())
}

/// How many log entries mention `text`.
async fn count(tab: &Tab, text: &str) -> Result<u64> {
    let count = tab.call_demo("count", &[json!(text)]).await?;
    count.as_u64().context("demo.count gave no number")
}

async fn state(tab: &Tab) -> Result<String> {
    let state = tab.call_demo("state", &[]).await?;
    Ok(state.as_str().unwrap_or_default().to_owned())
}

async fn is_open(tab: &Tab) -> Result<bool> {
    Ok(state(tab).await? == "open")
}

async fn reconnects(tab: &Tab) -> Result<u64> {
    let reconnects = tab.call_demo("reconnects", &[]).await?;
    reconnects
        .as_u64()
        .context("demo.reconnects is not a number")
}

async fn last_id(tab: &Tab) -> Result<Option<String>> {
    let last = tab.call_demo("lastId", &[]).await?;
    Ok(last.as_str().map(str::to_owned))
}

/// The `seq` of every broadcast id the page saw, in order.
async fn seqs(tab: &Tab) -> Result<Vec<u64>> {
    let ids = tab.call_demo("ids", &[]).await?;
    Ok(ids
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().and_then(seq))
        .collect())
}

/// The ids the page saw from `last` on, if each is the one after the one
/// before (no gap, no duplicate).
async fn consecutive_from(tab: &Tab, last: u64) -> Result<Vec<u64>> {
    let after: Vec<u64> = seqs(tab)
        .await?
        .into_iter()
        .skip_while(|&each| each != last)
        .collect();
    if !after.windows(2).all(|pair| pair[1] == pair[0] + 1) {
        bail!("ids after {last} are not consecutive: {after:?}");
    }
    Ok(after)
}

/// Waits until the greetings the pages in `tabs` sent as they opened (the
/// WebSocket page's Hello) have come back as Something changed to each page
/// open at the time, so that counting can begin: as many ids of Something
/// changed among the pages as Hellos sent, and every page past the last of
/// them (a page gets every broadcast after it opened, in order).
async fn greetings_came_back(tabs: &[&Tab]) -> Result<()> {
    let came_back = async || {
        let (mut hellos, mut changed, mut last_seen) = (0, Vec::new(), Vec::new());
        for tab in tabs {
            let entries = entries(tab).await?;
            let hello = |entry: &&Entry| entry.text == r#"Sent: {"message":"Hello"}"#;
            hellos += entries.iter().filter(hello).count();
            let changes = entries
                .iter()
                .filter(|entry| entry.text.contains("Something changed"));
            changed.extend(changes.filter_map(|entry| entry.id.as_deref().and_then(seq)));
            last_seen.push(seqs(tab).await?.last().copied().unwrap_or(0));
        }
        changed.sort_unstable();
        changed.dedup();
        let newest = changed.last().copied().unwrap_or(0);
        Ok(changed.len() >= hellos && last_seen.iter().all(|&last| last >= newest))
    };
    wait_until("the greetings to come back", PATIENCE, came_back).await
}

/// The `seq` of an id `<run>-<seq>`.
fn seq(id: &str) -> Option<u64> {
    id.rsplit_once('-')?.1.parse().ok()
}

async fn page_loads(tab: &Tab) -> Result<()> {
    wait_until("the state to be open", PATIENCE, async || {
        is_open(tab).await
    })
    .await?;
    wait_until("Gotcha", PATIENCE, async || {
        Ok(count(tab, "Gotcha").await? > 0)
    })
    .await?;
    let ticked = async || Ok(count(tab, "Hello hello!").await? > 0);
    wait_until("a tick", PATIENCE, ticked).await?;
    let shown = tab
        .eval("document.getElementById('state').textContent")
        .await?;
    if shown != "open" {
        bail!("the state badge shows {shown}");
    }
    let errors = tab.take_errors();
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

async fn send_reaches_both_tabs(first: &Tab, second: &Tab) -> Result<()> {
    wait_until("the second tab to open", PATIENCE, async || {
        is_open(second).await
    })
    .await?;
    greetings_came_back(&[first, second]).await?;
    let changed = "Something changed";
    let before = (count(first, changed).await?, count(second, changed).await?);
    // The text the message field starts with, so the screenshot shows it.
    first.call_demo("send", &[json!("Hey there")]).await?;
    for (tab, before, which) in [
        (first, before.0, "the sending tab"),
        (second, before.1, "the other tab"),
    ] {
        let grown = async || Ok(count(tab, changed).await? > before);
        wait_until(&format!("Something changed in {which}"), PATIENCE, grown).await?;
    }
    Ok(())
}

async fn screenshot(tab: &Tab, package: &str) -> Result<()> {
    let ticked = async || Ok(count(tab, "Hello hello!").await? >= 3);
    wait_until("a few ticks", PATIENCE, ticked).await?;
    let path = servers::target_dir()
        .join("e2e")
        .join(format!("{package}.png"));
    tab.screenshot(&path).await?;
    say!("     saved {}", path.display());
    Ok(())
}

async fn close_stops_and_reconnect_resumes(tab: &Tab) -> Result<()> {
    let has_id = async || Ok(last_id(tab).await?.is_some());
    wait_until("a tick with an id", PATIENCE, has_id).await?;
    tab.call_demo("close", &[]).await?;
    let closed = async || Ok(state(tab).await? == "closed");
    wait_until("the state to be closed", PATIENCE, closed).await?;
    let last = last_id(tab).await?.context("no last id")?;
    let length = entries(tab).await?.len();
    // Nothing may arrive while closed: watch for three intervals.
    tokio::time::sleep(INTERVAL * 3).await;
    let now = entries(tab).await?;
    if now.len() != length {
        bail!("the log grew while closed: {:?}", &now[length..]);
    }
    tab.call_demo("reconnect", &[]).await?;
    wait_until("the state to be open again", PATIENCE, async || {
        is_open(tab).await
    })
    .await?;
    // The ticks broadcast while closed are replayed, then live ones follow.
    let last_seq = seq(&last).context("a malformed id")?;
    let caught_up = async || Ok(seqs(tab).await?.iter().any(|&each| each >= last_seq + 4));
    wait_until("replayed and live ticks", PATIENCE, caught_up).await?;
    consecutive_from(tab, last_seq).await?;
    Ok(())
}

async fn comes_back_after_restart(running: &mut Running, tab: &Tab) -> Result<()> {
    wait_until("the state to be open", PATIENCE, async || {
        is_open(tab).await
    })
    .await?;
    let reconnected_before = reconnects(tab).await?;
    let troubles = async || {
        let entries = entries(tab).await?;
        let trouble = |entry: &&Entry| entry.kind == "error" || entry.kind == "close";
        Ok::<_, anyhow::Error>(entries.iter().filter(trouble).count())
    };
    let troubles_before = troubles().await?;
    running.restart().await?;
    let noticed = async || Ok(troubles().await? > troubles_before);
    wait_until("the page to notice", PATIENCE, noticed).await?;
    let back = async || Ok(is_open(tab).await? && reconnects(tab).await? > reconnected_before);
    wait_until("the page to reconnect", PATIENCE, back).await?;
    // Ids from the old run cannot be resumed: the page says what was missed.
    let told = async || {
        let entries = entries(tab).await?;
        Ok(entries
            .iter()
            .any(|entry| entry.kind == "missed" && entry.text.contains("restarted")))
    };
    wait_until("the missed-messages notice", PATIENCE, told).await?;
    let ticks = count(tab, "Hello hello!").await?;
    let ticked = async || Ok(count(tab, "Hello hello!").await? > ticks);
    wait_until("a tick from the new run", PATIENCE, ticked).await?;
    // After a restart every page comes back at once: none may say Hello
    // again, or N pages would cause N broadcasts to N pages.
    let hellos = count(tab, r#"Sent: {"message":"Hello"}"#).await?;
    if hellos > 1 {
        bail!("the page said Hello {hellos} times: on reconnects too");
    }
    Ok(())
}

/// SIGSTOP freezes the server: no close, no error, nothing arrives, as when a
/// laptop sleeps or a network goes away. The page must notice by itself (its
/// heartbeat), and once the server thaws, resume after the last id it saw.
async fn notices_a_frozen_server_and_recovers(running: &Running, tab: &Tab) -> Result<()> {
    wait_until("the state to be open", PATIENCE, async || {
        is_open(tab).await
    })
    .await?;
    let noticed_before = count(tab, "Heard nothing").await?;
    running.server.signal("STOP")?;
    let frozen = tokio::time::Instant::now();
    let noticed = async || Ok(count(tab, "Heard nothing").await? > noticed_before);
    let result = wait_until("the page to notice the silence", PATIENCE, noticed).await;
    running.server.signal("CONT")?;
    result?;
    let noticed_in = frozen.elapsed();
    if noticed_in > HEARTBEAT * 4 {
        bail!("the page took {noticed_in:?} to notice");
    }
    let last = seqs(tab).await?.last().copied().context("no id seen")?;
    let caught_up =
        async || Ok(is_open(tab).await? && seqs(tab).await?.iter().any(|&each| each >= last + 3));
    wait_until("open again, with new ticks", PATIENCE, caught_up).await?;
    consecutive_from(tab, last).await?;
    // Abandoning a connection that hung makes the browser log an error.
    tab.take_errors();
    Ok(())
}

async fn other_origins_are_refused(
    sse_tab: &Tab,
    ws: &Running,
    ws_tab: &Tab,
    sse: &Running,
) -> Result<()> {
    let socket = format!("ws://127.0.0.1:{}/", ws.port());
    let answer = sse_tab.call_demo("tryWebSocket", &[json!(socket)]).await?;
    if answer != "refused" {
        bail!("a WebSocket from the SSE page's origin was {answer}");
    }
    let api = format!("http://127.0.0.1:{}/api", sse.port());
    let answer = ws_tab.call_demo("tryPost", &[json!(api)]).await?;
    if answer != "blocked" {
        bail!("a POST from the WebSocket page's origin got {answer}");
    }
    // Those refusals are logged by the browser; they are expected here.
    sse_tab.take_errors();
    ws_tab.take_errors();
    Ok(())
}
