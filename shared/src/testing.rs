//! Helpers for the servers' integration tests (feature `testing`): start a
//! server in-process on port 0, speak raw HTTP, read an event stream, count
//! rejections, wait for conditions. WebSocket helpers live with the
//! WebSocket demo's tests, so the SSE tests build without a WebSocket crate.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warp::{Filter, Rejection, Reply};

use crate::app::Server;
use crate::config::{Config, Defaults, Parsed};
use crate::core::{EventId, Framer, Hub};
use crate::http::Context;
use crate::policy::{Reason, Rejections};

mod event_stream;
pub mod hostile;
pub mod proxy;
pub mod redis;
pub mod requests;
pub mod resume;
pub mod tls;

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

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `request` (raw bytes) and reads one whole answer: up to its
/// Content-Length, the end of its chunks, or the end of the connection.
pub async fn http(addr: SocketAddr, request: &[u8]) -> Response {
    let io = async {
        let mut stream = TcpStream::connect(addr).await?;
        // The server may answer (and close) before it reads all of a bad request.
        let _ = stream.write_all(request).await;
        let mut raw = Vec::new();
        let mut buffer = [0; 16 * 1024];
        while !is_complete(&raw) {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => raw.extend_from_slice(&buffer[..read]),
            }
        }
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(PATIENCE, io)
        .await
        .expect("the server answers in time")
        .expect("the exchange works");
    parse_response(&raw)
}

/// A `Connection: close` request for `path` with `method`, headers and body.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

pub(crate) fn is_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    match length {
        Some(length) => body.len() >= length,
        None if head.contains("transfer-encoding: chunked") => body.ends_with("0\r\n\r\n"),
        None => false,
    }
}

/// A raw HTTP response (a head alone, or with its body, chunked or not).
pub fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// The data of a chunked body, as far as it has come.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
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

/// This process's resident memory, in bytes (Linux; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Publishes `count` broadcasts of `message`, yielding now and then as a busy
/// server would, so readers on the same runtime get to run.
pub async fn publish_burst(hub: &Hub, count: u64, message: &str) {
    for round in 0..count {
        hub.publish(message);
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

/// Reproducible randomness without a dependency (xorshift64); the seed is
/// printed so a failing run can be repeated.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    pub fn from_clock() -> Random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64);
        println!("random seed {nanos}");
        Random(nanos | 1)
    }

    /// An independent stream for the `index`th user of this one.
    pub fn fork(&self, index: u64) -> Random {
        Random(
            self.0
                .wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                | 1,
        )
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Reads an HTTP response head off `reader`, leaving the body to read: a
/// [`Response`] with an empty body.
pub async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> Response {
    let mut head = String::new();
    let read = async {
        while !head.ends_with("\r\n\r\n") {
            if reader.read_line(&mut head).await? == 0 {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the head arrives in time")
        .expect("the head reads");
    parse_response(head.as_bytes())
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
