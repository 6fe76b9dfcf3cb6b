//! Over TLS: the demos serve https:// and wss:// with the certificate in
//! `target/tls/` (made if missing), which the browser trusts by its key
//! (`--ignore-certificate-errors-spki-list`). Over HTTP/2 one page holds
//! many event streams on one connection and can still POST; over plain
//! HTTP/1.1 a browser opens at most six connections to a host, which ten
//! event streams use up.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::cdp::{Browser, Tab, wait_until};
use super::{INTERVAL, PATIENCE, Report, Running, entries, is_open, page_loads};
use harness::tls::Certificate;

use crate::servers::{self, Instance, Kind};

/// How many event streams the test adds to one page.
const EXTRA: usize = 10;

pub(super) async fn checks(
    browser: &Browser,
    certificate: &Result<Certificate>,
    report: &mut Report,
) {
    let names = [
        "SSE over https: the page comes over HTTP/2, opens, greets and ticks without console errors",
        "SSE: ten more EventSources in one page, over HTTP/1.1 and over HTTP/2 (https)",
        "WebSocket over https (wss://): the page opens, greets and ticks without console errors",
    ];
    let certificate = match certificate {
        Ok(certificate) => certificate,
        Err(why) => {
            for name in names {
                report.check(name, Err(anyhow!("no certificate: {why:#}")));
            }
            return;
        }
    };
    let mut sse = over_tls(Kind::Sse, certificate).await;
    let loads = match &sse {
        Ok(sse) => comes_over_http2(browser, &sse.url).await,
        Err(why) => Err(anyhow!("{why:#}")),
    };
    report.observe(names[0], loads);
    let streams = match &sse {
        Ok(sse) => ten_streams_over_each(browser, &sse.url).await,
        Err(why) => Err(anyhow!("{why:#}")),
    };
    report.observe(names[1], streams);
    if let Ok(sse) = &mut sse {
        sse.server.stop().await;
    }
    let mut ws = over_tls(Kind::WebSocket, certificate).await;
    let loads = match &ws {
        Ok(ws) => match open(browser, &ws.url).await {
            Ok(tab) => page_loads(&tab).await,
            Err(why) => Err(why),
        },
        Err(why) => Err(anyhow!("{why:#}")),
    };
    report.check(names[2], loads);
    if let Ok(ws) = &mut ws {
        ws.server.stop().await;
    }
}

/// The demo of `kind` over TLS, on a free port.
async fn over_tls(kind: Kind, certificate: &Certificate) -> Result<Running> {
    // The page's https:// origin names the port: the servers count only
    // http:// origins as their own.
    let port = servers::free_port()?;
    let mut extra = certificate.options().to_vec();
    for host in ["127.0.0.1", "localhost"] {
        extra.extend([
            "--allowed-origin".to_owned(),
            format!("https://{host}:{port}"),
        ]);
    }
    Running::with(kind.demo(), Instance::Only, port, None, extra).await
}

async fn open(browser: &Browser, url: &str) -> Result<Tab> {
    let tab = browser.new_tab().await?;
    tab.goto(url).await?;
    Ok(tab)
}

/// The protocol the page came over: `h2`, `http/1.1`.
async fn protocol(tab: &Tab) -> Result<String> {
    let protocol = tab
        .eval("performance.getEntriesByType('navigation')[0].nextHopProtocol")
        .await?;
    Ok(protocol.as_str().unwrap_or_default().to_owned())
}

async fn comes_over_http2(browser: &Browser, url: &str) -> Result<String> {
    let tab = open(browser, url).await?;
    page_loads(&tab).await?;
    let protocol = protocol(&tab).await?;
    if protocol != "h2" {
        bail!("the page came over {protocol:?}");
    }
    Ok(format!("{url} over {protocol}"))
}

/// What one page with ten more event streams saw.
struct Streams {
    protocol: String,
    /// Extra streams that got a tick.
    ticked: usize,
    /// Extra streams that got the broadcast the page's POST caused.
    broadcast: usize,
    /// How long the POST took to answer, if it did within a few intervals.
    answered: Option<Duration>,
}

/// Ten more streams over plain HTTP/1.1 (a server of its own) and over
/// HTTP/2 (the TLS server at `https`), and what each showed.
async fn ten_streams_over_each(browser: &Browser, https: &str) -> Result<String> {
    let mut plain = Running::alone(Kind::Sse.demo()).await?;
    let http1 = ten_more_streams(browser, &plain.url).await;
    plain.server.stop().await;
    let http1 = http1?;
    let http2 = ten_more_streams(browser, https).await?;
    let of = |count: usize| format!("{count} of {EXTRA}");
    let post = |answered: Option<Duration>| match answered {
        Some(took) => format!("the POST answered in {} ms", took.as_millis()),
        None => "the POST hung until they closed".to_owned(),
    };
    let observed = format!(
        "over HTTP/1.1, {} extra EventSources got a tick, {} the broadcast, and {}; \
         over HTTP/2, {} got a tick, {} the broadcast, and {}",
        of(http1.ticked),
        of(http1.broadcast),
        post(http1.answered),
        of(http2.ticked),
        of(http2.broadcast),
        post(http2.answered),
    );
    if http1.protocol != "http/1.1" || http2.protocol != "h2" {
        bail!(
            "the pages came over {} and {}, not http/1.1 and h2",
            http1.protocol,
            http2.protocol
        );
    }
    if http2.ticked < EXTRA || http2.broadcast < EXTRA || http2.answered.is_none() {
        bail!("over HTTP/2 every stream should work: {observed}");
    }
    if http1.ticked >= EXTRA || http1.answered.is_some() {
        bail!("the six-connection limit of HTTP/1.1 did not show: {observed}");
    }
    Ok(observed)
}

/// Adds ten event streams to the page, each recording what it receives.
const ADD_STREAMS: &str = "(count) => {
  window.extraStreams = Array.from({ length: count }, () => {
    const record = { ticks: 0, changed: 0 };
    const source = new EventSource('/sse');
    source.onmessage = (event) => {
      if (event.data.includes('Hello hello!')) record.ticks += 1;
      if (event.data.includes('Something changed')) record.changed += 1;
    };
    return { source, record };
  });
}";

/// Opens the page at `url`, adds ten event streams to it, and sends a
/// message from it; then closes the streams again.
async fn ten_more_streams(browser: &Browser, url: &str) -> Result<Streams> {
    let tab = open(browser, url).await?;
    wait_until("the page to open", PATIENCE, async || is_open(&tab).await).await?;
    let protocol = protocol(&tab).await?;
    tab.eval(&format!("({ADD_STREAMS})({EXTRA})")).await?;
    // Those with a connection tick every interval; the others never.
    let ticked = async || Ok(records(&tab).await?.iter().all(|each| each["ticks"] != 0));
    let _ = wait_until("every stream to tick", INTERVAL * 10, ticked).await;
    let answers = async || {
        let entries = entries(&tab).await?;
        Ok::<_, anyhow::Error>(
            entries
                .iter()
                .filter(|entry| entry.kind == "answer")
                .count(),
        )
    };
    let before = answers().await?;
    let sent = Instant::now();
    tab.call_demo("send", &[json!("Ten streams")]).await?;
    let answer = async || Ok(answers().await? > before);
    let answered = match wait_until("the POST's answer", INTERVAL * 10, answer).await {
        Ok(()) => Some(sent.elapsed()),
        Err(_) => None,
    };
    let changed = async || Ok(records(&tab).await?.iter().all(|each| each["changed"] != 0));
    let _ = wait_until("the broadcast on every stream", INTERVAL * 5, changed).await;
    let records = records(&tab).await?;
    let got = |key: &str| records.iter().filter(|each| each[key] != 0).count();
    let (ticked, broadcast) = (got("ticks"), got("changed"));
    tab.eval("window.extraStreams.forEach((each) => each.source.close())")
        .await?;
    // A POST that waited for a connection goes out once they are closed.
    if answered.is_none() {
        wait_until(
            "the POST's answer once the streams closed",
            PATIENCE,
            answer,
        )
        .await?;
    }
    tab.take_errors();
    Ok(Streams {
        protocol,
        ticked,
        broadcast,
        answered,
    })
}

/// What each extra stream recorded.
async fn records(tab: &Tab) -> Result<Vec<Value>> {
    let records = tab
        .eval("window.extraStreams.map((each) => each.record)")
        .await?;
    Ok(records.as_array().cloned().unwrap_or_default())
}
