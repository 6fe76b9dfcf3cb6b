//! Helpers for the servers' integration tests (feature `testing`): start a
//! server in-process on port 0, speak raw HTTP, read an event stream, count
//! rejections, wait for conditions. WebSocket helpers live with the
//! WebSocket demo's tests, so the SSE tests build without a WebSocket crate.
//! What the tasks (xtask) use too, a Redis and an nginx of the test's own, a
//! certificate, raw HTTP, comes from the `harness` crate, re-exported here.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use warp::{Filter, Rejection, Reply};

use crate::app::Server;
use crate::config::{Config, Defaults, Parsed};
use crate::core::{EventId, Framer, Publisher};
use crate::http::Context;
use crate::policy::{Reason, Rejections};

mod event_stream;
pub mod foreign;
pub mod hostile;
pub mod proxy;
pub mod redis;
pub mod requests;
pub mod resume;
pub mod stalled;

/// A self-signed certificate for `localhost` and `127.0.0.1`, and TLS
/// clients that trust it: for tests of `https://`, `wss://` and HTTP/2.
pub mod tls {
    pub use harness::tls::Certificate;
}

pub use event_stream::{Block, EventStream};

/// How long any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Starts a server on 127.0.0.1 with the given extra options; on port 0
/// unless they give `--port`.
pub async fn start<R, T>(
    defaults: &Defaults,
    frame: Framer,
    routes: impl FnOnce(Context) -> R,
    options: &[&str],
) -> Server
where
    R: Filter<Extract = (T,), Error = Rejection> + Clone + Send + Sync + 'static,
    T: Reply,
{
    let port: &[&str] = if options.contains(&"--port") {
        &[]
    } else {
        &["--port", "0"]
    };
    let args = [defaults.name, "--bind", "127.0.0.1"]
        .into_iter()
        .chain(port.iter().copied())
        .chain(options.iter().copied());
    let config = match Config::parse(defaults, args) {
        Parsed::Run(config) => *config,
        other => panic!("bad test options {options:?}: {other:?}"),
    };
    Server::start(config, defaults, frame, routes)
        .await
        .expect("the test server starts")
}

/// Polls `condition` until it holds; panics naming `what` after [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `condition`, which may ask a server, until it holds; panics naming
/// `what` after [`PATIENCE`].
pub async fn until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub use harness::http::{Response, dechunk, is_complete, request};

/// Sends `request` (raw bytes) and reads one whole answer: up to its
/// Content-Length, the end of its chunks, or the end of the connection.
pub async fn http(addr: SocketAddr, request: &[u8]) -> Response {
    tokio::time::timeout(PATIENCE, harness::http::send(addr, request))
        .await
        .expect("the server answers in time")
        .unwrap_or_else(|why| panic!("the exchange with {addr} fails: {why}"))
}

/// A counter of the server at `addr`, by its whole name with labels, from
/// `/metrics`.
pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let metrics = http(addr, &request("GET", "/metrics", &[], "")).await;
    let line = format!("{name} ");
    metrics
        .body
        .lines()
        .find_map(|each| each.strip_prefix(&line)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("/metrics lacks {name}:\n{}", metrics.body))
}

/// A raw answer, or a head alone (a test failure if it is not HTTP).
pub fn parse_response(raw: &[u8]) -> Response {
    harness::http::parse(raw).unwrap_or_else(|why| panic!("{why}"))
}

/// Every reason's rejection count, to compare before and after one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally(Vec<(Reason, u64)>);

impl Tally {
    pub fn of(rejections: &Rejections) -> Tally {
        Tally(
            Reason::ALL
                .iter()
                .map(|reason| (*reason, rejections.count(*reason)))
                .collect(),
        )
    }

    /// Checks that since this tally, `rejections` counted `case` under
    /// `reason` once (waiting for it: some are counted after the answer is
    /// sent) and changed no other count. `None`: counted nowhere.
    pub async fn assert_counted(
        &self,
        rejections: &Rejections,
        reason: Option<Reason>,
        case: &str,
    ) {
        if let Err(wrong) = self.counted(rejections, reason).await {
            panic!("{case}: {wrong}");
        }
    }

    /// As [`Tally::assert_counted`], but what is wrong is told, not a panic.
    pub async fn counted(
        &self,
        rejections: &Rejections,
        reason: Option<Reason>,
    ) -> Result<(), String> {
        let mut expected = self.clone();
        if let Some(reason) = reason {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while Tally::of(rejections) == *self && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let (_, count) = expected.0.iter_mut().find(|(r, _)| *r == reason).unwrap();
            *count += 1;
        }
        let now = Tally::of(rejections);
        if now == expected {
            return Ok(());
        }
        let changed: Vec<String> = now
            .0
            .iter()
            .zip(&self.0)
            .filter(|((_, after), (_, before))| after != before)
            .map(|((reason, after), (_, before))| format!("{} +{}", reason.label(), after - before))
            .collect();
        Err(format!(
            "expected counted under {reason:?}, got {changed:?}"
        ))
    }
}

/// Publishes `count` broadcasts of `message`, yielding now and then as a busy
/// server would, so readers on the same runtime get to run.
pub async fn publish_burst(publisher: &dyn Publisher, count: u64, message: &str) {
    for round in 0..count {
        publisher
            .publish(message)
            .await
            .expect("the burst is published");
        if round % 8 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

/// An id `<run>-<seq>`, parsed as the server parses it.
pub fn id_of(text: &str) -> EventId {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not <run>-<seq>"))
}

/// The sequence number of an id `<run>-<seq>`.
pub fn seq_of(text: &str) -> u64 {
    id_of(text).seq
}

/// Reproducible randomness: the seed is printed, so that a failing run can
/// be repeated with [`Random::with_seed`].
#[derive(Debug, Clone)]
pub struct Random {
    seed: u64,
    generator: fastrand::Rng,
}

impl Random {
    /// A new seed, printed.
    pub fn from_clock() -> Random {
        let seed = fastrand::u64(..);
        println!("random seed {seed}");
        Random::with_seed(seed)
    }

    pub fn with_seed(seed: u64) -> Random {
        Random {
            seed,
            generator: fastrand::Rng::with_seed(seed),
        }
    }

    /// An independent stream for the `index`th user of this one.
    pub fn fork(&self, index: u64) -> Random {
        Random::with_seed(self.seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.generator.u64(..bound)
    }
}

/// Reads an HTTP response head off `reader`, leaving the body to read: a
/// [`Response`] with an empty body.
pub async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> Response {
    tokio::time::timeout(PATIENCE, harness::http::read_head(reader))
        .await
        .expect("the head arrives in time")
        .unwrap_or_else(|why| panic!("the head reads: {why}"))
}

/// Starts a server binary on 127.0.0.1, port 0, and waits for its address.
pub async fn spawn_binary(path: &str) -> (tokio::process::Child, SocketAddr) {
    use std::process::Stdio;
    let mut child = tokio::process::Command::new(path)
        .args(["--port", "0"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server binary starts");
    let addr = listening_on(&mut child).await;
    (child, addr)
}

/// Where a server binary just started listens: what its first line says.
pub async fn listening_on(child: &mut tokio::process::Child) -> SocketAddr {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the server says where it listens")
        .expect("stdout reads")
        .expect("a line");
    let url = line
        .split("listening on ")
        .nth(1)
        .unwrap_or_else(|| panic!("not the listening line: {line}"));
    let url = url
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    url.trim_end_matches('/').parse().expect("an address")
}

/// Sends SIGTERM to `child`, which must exit successfully within 5 s, logging
/// the shutdown and no warning, error or panic. Returns its log.
pub async fn terminate(mut child: tokio::process::Child) -> String {
    let pid = child.id().expect("still running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(kill.is_ok_and(|status| status.success()));
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("the server exits within 5 s")
        .expect("wait works");
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)
            .await
            .expect("stderr reads");
    }
    assert!(
        stderr.contains("SIGTERM received, shutting down"),
        "{stderr}"
    );
    for bad in ["ERROR", "WARN", "panicked"] {
        assert!(!stderr.contains(bad), "{bad} in the log:\n{stderr}");
    }
    stderr
}

/// Raises this process's open-file limit to at least `files` (up to its hard
/// limit): tests with many clients hold a descriptor each.
pub fn raise_open_files(files: u64) {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("the limit reads");
    if soft < files {
        let wanted = files.min(hard);
        rlimit::setrlimit(rlimit::Resource::NOFILE, wanted, hard).expect("the limit rises");
    }
}
