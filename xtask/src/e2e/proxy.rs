//! Through nginx, as a deployment runs the demos: two instances of each
//! sharing this run's Redis, behind nginx configured by `deploy/nginx.conf`.
//! Pages work through it, each tick shown as it comes (nothing buffered);
//! stopping the instance a page is on moves the page to the other one, where
//! it resumes with no gap and no duplicate; starting it again breaks nothing.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::time::Instant;

use super::cdp::{Browser, Tab, wait_until};
use super::{
    INTERVAL, PATIENCE, Report, Running, consecutive_from, count, is_open, page_loads, reconnects,
    seqs,
};
use harness::proxy::Nginx;
use harness::redis::Redis;

use crate::servers::{self, DEMOS, Demo, Instance, Kind};

pub(super) async fn checks(browser: &Browser, redis: &Result<Redis>, report: &mut Report) {
    let front = match redis {
        Ok(redis) => Front::start(redis).await,
        Err(why) => Err(anyhow!("{why:#}")),
    };
    let mut front = match front {
        Ok(front) => front,
        Err(why) => {
            for demo in &DEMOS {
                for name in names(demo) {
                    report.check(&name, Err(anyhow!("{why:#}")));
                }
            }
            return;
        }
    };
    for demo in &DEMOS {
        let results = front.check(browser, demo).await;
        for (name, result) in names(demo).iter().zip(results) {
            report.observe(name, result);
        }
    }
    front.stop().await;
}

fn names(demo: &Demo) -> [String; 3] {
    [
        format!(
            "{}: through nginx, the page opens, greets, and shows each tick as it comes (nothing buffered)",
            demo.name
        ),
        format!(
            "{}: through nginx, when the page's instance stops the page moves to the other and resumes with no gap and no duplicate",
            demo.name
        ),
        format!(
            "{}: through nginx, the stopped instance starts again and the page stays open, ticking",
            demo.name
        ),
    ]
}

/// nginx in front of two instances of each demo.
struct Front {
    nginx: Nginx,
    /// WebSocket instances first.
    instances: Vec<Running>,
}

impl Front {
    async fn start(redis: &Redis) -> Result<Front> {
        // The instances allow nginx's origins: its ports come first.
        let listen = [
            SocketAddr::from((Ipv4Addr::LOCALHOST, servers::free_port()?)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, servers::free_port()?)),
        ];
        let mut instances = Vec::new();
        for demo in &DEMOS {
            let port = listen[side(demo.kind)].port();
            let mut extra = vec!["--trusted-proxy".to_owned(), "127.0.0.1".to_owned()];
            for host in ["127.0.0.1", "localhost"] {
                extra.extend([
                    "--allowed-origin".to_owned(),
                    format!("http://{host}:{port}"),
                ]);
            }
            for n in [1, 2] {
                let instance = Instance::Nth(n);
                let running =
                    Running::with(demo, instance, 0, Some(redis.url()), extra.clone()).await?;
                instances.push(running);
            }
        }
        let mut upstreams = [Vec::new(), Vec::new()];
        for running in &instances {
            upstreams[side(running.demo.kind)].push(servers::addr(&running.url)?);
        }
        let mut nginx = Nginx::spawn(listen, &upstreams[0], &upstreams[1])?;
        nginx.listening(PATIENCE).await?;
        Ok(Front { nginx, instances })
    }

    /// The three checks of `demo`, on one page.
    async fn check(&mut self, browser: &Browser, demo: &'static Demo) -> [Result<String>; 3] {
        let url = servers::through(&self.nginx, demo.kind);
        let tab = match browser.new_tab().await {
            Ok(tab) => tab,
            Err(why) => return [0, 1, 2].map(|_| Err(anyhow!("{why:#}"))),
        };
        let loads = match tab.goto(&url).await {
            Ok(()) => shows_each_tick_as_it_comes(&tab).await,
            Err(why) => Err(why),
        };
        if loads.is_err() {
            let why = || Err(anyhow!("the page did not load through nginx"));
            return [loads, why(), why()];
        }
        let mine: Vec<usize> = (0..self.instances.len())
            .filter(|&index| self.instances[index].demo.kind == demo.kind)
            .collect();
        let on = match self.serving(&mine).await {
            Ok(on) => on,
            Err(why) => {
                let why = || Err(anyhow!("{why:#}"));
                return [loads, why(), why()];
            }
        };
        let moved = self.moves_when_its_instance_stops(&mine, on, &tab).await;
        let restarted = stays_open_as_it_starts_again(&mut self.instances[on], &tab).await;
        [loads, moved, restarted]
    }

    /// Stops instance `on`, which the page is on, one of `mine`.
    async fn moves_when_its_instance_stops(
        &mut self,
        mine: &[usize],
        on: usize,
        tab: &Tab,
    ) -> Result<String> {
        let other = mine
            .iter()
            .copied()
            .find(|&index| index != on)
            .context("one instance")?;
        let last = seqs(tab).await?.last().copied().context("no id seen")?;
        let reconnected = reconnects(tab).await?;
        self.instances[on].server.stop().await;
        let back = async || Ok(is_open(tab).await? && reconnects(tab).await? > reconnected);
        wait_until("the page to reconnect", PATIENCE, back).await?;
        let caught_up = async || Ok(seqs(tab).await?.iter().any(|&each| each >= last + 4));
        wait_until("new ticks", PATIENCE, caught_up).await?;
        let after = consecutive_from(tab, last).await?;
        // Now on the other instance.
        self.serving(&[other]).await?;
        Ok(format!(
            "it was on {}, then on {}, with ids {}..={} in a row",
            self.instances[on].server.name(),
            self.instances[other].server.name(),
            after.first().copied().unwrap_or(last),
            after.last().copied().unwrap_or(last),
        ))
    }

    /// Which of these instances holds the page: the one that counts one
    /// client (the others none).
    async fn serving(&self, candidates: &[usize]) -> Result<usize> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut holding = Vec::new();
            for &index in candidates {
                if clients(&self.instances[index]).await? > 0 {
                    holding.push(index);
                }
            }
            if let [index] = holding[..] {
                return Ok(index);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} instances count clients after {PATIENCE:?}",
                    holding.len(),
                    candidates.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(&mut self) {
        self.nginx.stop().await;
        for running in &mut self.instances {
            running.server.stop().await;
        }
    }
}

/// Which of nginx's two ports serves `kind`.
fn side(kind: Kind) -> usize {
    match kind {
        Kind::WebSocket => 0,
        Kind::Sse => 1,
    }
}

/// `demo_connected_clients` from the instance's `/metrics`.
async fn clients(running: &Running) -> Result<u64> {
    let metrics = harness::http::get(servers::addr(&running.url)?, "/metrics").await?;
    metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix("demo_connected_clients "))
        .and_then(|value| value.trim().parse().ok())
        .context("no demo_connected_clients in /metrics")
}

/// A proxy that buffers an event stream holds ticks back and delivers them
/// in bunches; watched for ten intervals, each must come on its own, about
/// one interval after the one before.
async fn shows_each_tick_as_it_comes(tab: &Tab) -> Result<String> {
    page_loads(tab).await?;
    let window = INTERVAL * 10;
    let started = Instant::now();
    let mut arrivals = Vec::new();
    let mut last = count(tab, "Hello hello!").await?;
    while started.elapsed() < window {
        let now = count(tab, "Hello hello!").await?;
        if now > last {
            arrivals.push((Instant::now(), now - last));
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let largest = arrivals
        .windows(2)
        .map(|pair| pair[1].0 - pair[0].0)
        .max()
        .unwrap_or(window);
    let bunched = arrivals.iter().filter(|(_, ticks)| *ticks > 1).count();
    let ticks: u64 = arrivals.iter().map(|(_, ticks)| ticks).sum();
    let observed = format!(
        "{ticks} ticks in {window:?}, at most {} ms apart",
        largest.as_millis()
    );
    if ticks < 6 || largest > INTERVAL * 2 || bunched > 0 {
        bail!("{observed}, {bunched} times several at once, with one every {INTERVAL:?}");
    }
    Ok(observed)
}

/// Starts the stopped instance again: the page, now on the other one, must
/// not notice (no reconnect), and keep getting ticks in a row.
async fn stays_open_as_it_starts_again(stopped: &mut Running, tab: &Tab) -> Result<String> {
    let last = seqs(tab).await?.last().copied().context("no id seen")?;
    let reconnected = reconnects(tab).await?;
    // Stopped already, unless the check before failed early.
    stopped.server.stop().await;
    stopped.start_again().await?;
    let watched = Instant::now();
    while watched.elapsed() < INTERVAL * 10 {
        if !is_open(tab).await? {
            bail!("the page closed as the instance came back");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = reconnects(tab).await? - reconnected;
    if again > 0 {
        bail!("the page reconnected {again} time(s)");
    }
    let after = consecutive_from(tab, last).await?;
    if after.len() < 6 {
        bail!("too few ids after {last}: {after:?}");
    }
    Ok(format!(
        "{} back; {} more ticks in a row, no reconnect",
        stopped.server.name(),
        after.len() - 1
    ))
}
