//! `cargo xtask e2e`: both demos in headless Chromium, checked the way a person
//! would: pages load, messages flow between tabs, Close and Reconnect work,
//! pages come back after a server restart without losing what the server
//! kept, and other origins are refused.

mod cdp;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cdp::{Browser, Tab};
use serde_json::Value;

use crate::flags;
use crate::servers::{self, Demo, Kind, Profile, Server};

/// A short tick, so every check sees several.
const INTERVAL: Duration = Duration::from_millis(300);
const PATIENCE: Duration = Duration::from_secs(15);

impl flags::E2e {
    pub fn run(self) -> Result<()> {
        if !self.no_build {
            servers::build(Profile::Debug)?;
        }
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        let report = runtime.block_on(suite())?;
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
    server: Server,
    url: String,
}

impl Running {
    async fn start(demo: &'static Demo, port: u16) -> Result<Running> {
        let args = [
            "--port".to_owned(),
            port.to_string(),
            "--interval".to_owned(),
            format!("{}ms", INTERVAL.as_millis()),
        ];
        let package = demo.package;
        let mut server = servers::start(demo, &args, "warn", Profile::Debug)?;
        let url = tokio::time::timeout(PATIENCE, &mut server.url)
            .await
            .map_err(|_| anyhow::anyhow!("{package} did not start within {PATIENCE:?}"))?
            .map_err(|_| {
                anyhow::anyhow!(
                    "{package} stopped before listening: {}",
                    server.last_error()
                )
            })?;
        Ok(Running { demo, server, url })
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
        let port = self.port();
        *self = Running::start(self.demo, port).await?;
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
        match result {
            Ok(()) => {
                self.passed += 1;
                say!("PASS {name}");
            }
            Err(why) => {
                self.failed += 1;
                say!("FAIL {name}: {why:#}");
            }
        }
    }
}

async fn suite() -> Result<Report> {
    let mut demos = [
        Running::start(Kind::WebSocket.demo(), 0).await?,
        Running::start(Kind::Sse.demo(), 0).await?,
    ];
    let browser = Browser::launch().await?;
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
    Ok(report)
}

/// The log's entries, as `[kind, text, id]`, for checks written in Rust.
async fn entries(tab: &Tab) -> Result<Vec<(String, String, Option<String>)>> {
    let value = tab.eval("JSON.stringify(demo.entries)").await?;
    let entries: Vec<Value> =
        serde_json::from_str(value.as_str().unwrap_or("[]")).context("demo.entries is not JSON")?;
    Ok(entries
        .iter()
        .map(|entry| {
            let text = |key: &str| entry[key].as_str().map(str::to_owned);
            (
                text("kind").unwrap_or_default(),
                text("text").unwrap_or_default(),
                text("id"),
            )
        })
        .collect())
}

/// How many log entries mention `needle`.
fn count_js(needle: &str) -> String {
    format!("demo.entries.filter(e => e.text.includes({needle:?})).length")
}

async fn page_loads(tab: &Tab) -> Result<()> {
    tab.wait_for("the state to be open", "demo.state === 'open'", PATIENCE)
        .await?;
    tab.wait_for("Gotcha", &count_js("Gotcha"), PATIENCE)
        .await?;
    tab.wait_for("a tick", &count_js("Hello hello!"), PATIENCE)
        .await?;
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
    second
        .wait_for("the second tab to open", "demo.state === 'open'", PATIENCE)
        .await?;
    // Let the greetings each tab sent on opening settle before counting.
    tokio::time::sleep(INTERVAL * 2).await;
    let changed = count_js("Something changed");
    let before = (first.eval(&changed).await?, second.eval(&changed).await?);
    first
        .eval("document.getElementById('send').click()")
        .await?;
    for (tab, before, which) in [
        (first, &before.0, "the sending tab"),
        (second, &before.1, "the other tab"),
    ] {
        let grown = format!("{changed} > {before}");
        tab.wait_for(&format!("Something changed in {which}"), &grown, PATIENCE)
            .await?;
    }
    Ok(())
}

async fn screenshot(tab: &Tab, package: &str) -> Result<()> {
    tab.wait_for(
        "a few ticks",
        &format!("{} >= 3", count_js("Hello hello!")),
        PATIENCE,
    )
    .await?;
    let path = target_dir().join("e2e").join(format!("{package}.png"));
    tab.screenshot(&path).await?;
    say!("     saved {}", path.display());
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| servers::root().join("target"))
}

/// The `seq` of an id `<run>-<seq>`.
fn seq(id: &str) -> Option<u64> {
    id.rsplit_once('-')?.1.parse().ok()
}

async fn close_stops_and_reconnect_resumes(tab: &Tab) -> Result<()> {
    tab.wait_for("a tick with an id", "demo.lastId", PATIENCE)
        .await?;
    tab.eval("document.getElementById('close').click()").await?;
    tab.wait_for(
        "the state to be closed",
        "demo.state === 'closed'",
        PATIENCE,
    )
    .await?;
    let last = tab.eval("demo.lastId").await?;
    let last = last.as_str().context("no last id")?.to_owned();
    let length = entries(tab).await?.len();
    // Nothing may arrive while closed: watch for three intervals.
    tokio::time::sleep(INTERVAL * 3).await;
    let now = entries(tab).await?;
    if now.len() != length {
        bail!("the log grew while closed: {:?}", &now[length..]);
    }
    tab.eval("document.getElementById('reconnect').click()")
        .await?;
    tab.wait_for(
        "the state to be open again",
        "demo.state === 'open'",
        PATIENCE,
    )
    .await?;
    // The ticks broadcast while closed are replayed, then live ones follow.
    let expected = seq(&last).context("a malformed id")? + 4;
    let caught_up = format!("demo.ids.some(id => Number(id.split('-')[1]) >= {expected})");
    tab.wait_for("replayed and live ticks", &caught_up, PATIENCE)
        .await?;
    let ids = tab.eval("demo.ids").await?;
    let seqs: Vec<u64> = ids
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().and_then(seq))
        .collect();
    let after: Vec<u64> = seqs
        .iter()
        .copied()
        .skip_while(|each| Some(*each) != seq(&last))
        .collect();
    let consecutive = after.windows(2).all(|pair| pair[1] == pair[0] + 1);
    if !consecutive {
        bail!("ids after {last} are not consecutive: {after:?}");
    }
    Ok(())
}

async fn comes_back_after_restart(running: &mut Running, tab: &Tab) -> Result<()> {
    tab.wait_for("the state to be open", "demo.state === 'open'", PATIENCE)
        .await?;
    let reconnects = tab.eval("demo.reconnects").await?;
    let troubles = "demo.entries.filter(e => e.kind === 'error' || e.kind === 'close').length";
    let before = tab.eval(troubles).await?;
    running.restart().await?;
    let noticed = format!("{troubles} > {before}");
    tab.wait_for("the page to notice", &noticed, PATIENCE)
        .await?;
    let back = format!("demo.state === 'open' && demo.reconnects > {reconnects}");
    tab.wait_for("the page to reconnect", &back, PATIENCE)
        .await?;
    // Ids from the old run cannot be resumed: the page says what was missed.
    tab.wait_for(
        "the missed-messages notice",
        "demo.entries.some(e => e.kind === 'missed' && e.text.includes('restarted'))",
        PATIENCE,
    )
    .await?;
    let ticks = count_js("Hello hello!");
    let before = tab.eval(&ticks).await?;
    tab.wait_for(
        "a tick from the new run",
        &format!("{ticks} > {before}"),
        PATIENCE,
    )
    .await?;
    Ok(())
}

async fn other_origins_are_refused(
    sse_tab: &Tab,
    ws: &Running,
    ws_tab: &Tab,
    sse: &Running,
) -> Result<()> {
    let socket = format!(
        "new Promise(resolve => {{ const s = new WebSocket('ws://127.0.0.1:{}/'); \
         s.onopen = () => {{ s.close(); resolve('opened'); }}; s.onerror = () => resolve('refused'); }})",
        ws.port()
    );
    let answer = sse_tab.eval(&socket).await?;
    if answer != "refused" {
        bail!("a WebSocket from the SSE page's origin was {answer}");
    }
    let post = format!(
        "fetch('http://127.0.0.1:{}/api', {{ method: 'POST', headers: {{ 'Content-Type': 'application/json' }}, \
         body: JSON.stringify({{ message: 'cross-site' }}) }}).then(r => 'status ' + r.status, () => 'blocked')",
        sse.port()
    );
    let answer = ws_tab.eval(&post).await?;
    if answer != "blocked" {
        bail!("a POST from the WebSocket page's origin got {answer}");
    }
    // Those refusals are logged by the browser; they are expected here.
    sse_tab.take_errors();
    ws_tab.take_errors();
    Ok(())
}
