//! Hostile-client tables: each row is one shape of client that tries to pin
//! a server's memory or descriptors, opened many times at once against a
//! fresh server process, with what the server must do to each connection,
//! how it must count it, and how much memory each may cost it while held.
//!
//! The server runs as its own process so that its resident memory is its own.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::process::Stdio;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{PATIENCE, http, request};
use crate::policy::Reason;

/// A server binary, started for one row.
pub struct Binary {
    child: Child,
    pub addr: SocketAddr,
}

impl Binary {
    /// Starts the binary at `path` on 127.0.0.1, port 0, with `args`.
    pub async fn start(path: &str, args: &[&str]) -> Binary {
        let mut command = tokio::process::Command::new(path);
        command.args(args);
        Binary::spawn(command).await
    }

    /// Starts it as [`Binary::start`] does, allowed only `files` open files
    /// (its hard limit too, so it cannot raise it).
    pub async fn start_with_open_files(path: &str, args: &[&str], files: u32) -> Binary {
        let mut command = tokio::process::Command::new("sh");
        command
            .args([
                "-c",
                &format!("ulimit -n {files} && exec \"$0\" \"$@\""),
                path,
            ])
            .args(args);
        Binary::spawn(command).await
    }

    async fn spawn(mut command: tokio::process::Command) -> Binary {
        let given = command.as_std().get_args().any(|arg| arg == "--port");
        if !given {
            command.args(["--port", "0"]);
        }
        let mut child = command
            .args(["--bind", "127.0.0.1"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let addr = super::listening_on(&mut child).await;
        Binary { child, addr }
    }

    /// Sends SIGTERM and waits for the server to exit; its exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("the server runs").to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the server exits in time")
            .expect("wait works")
    }

    /// The server's resident memory, in bytes.
    pub fn resident_bytes(&self) -> u64 {
        let pid = self.child.id().expect("the server runs");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
                Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
            })
            .unwrap_or(0)
    }

    /// The CPU time the server has used so far (user and system), from `/proc`.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.child.id().expect("the server runs");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the command name, which is in parentheses; utime
        // and stime are the 14th and 15th, in ticks of 1/100 s.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
        (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / 100.0
    }

    /// `/healthz`'s answer: its status, and its body as JSON.
    pub async fn health(&self) -> (u16, serde_json::Value) {
        let health = http(self.addr, &request("GET", "/healthz", &[], "")).await;
        let body = serde_json::from_str(&health.body)
            .unwrap_or_else(|_| panic!("/healthz answers JSON: {health:?}"));
        (health.status, body)
    }

    /// How many inputs the server refused for `reason`, from `/metrics`.
    pub async fn refused(&self, reason: Reason) -> u64 {
        let name = format!("demo_rejected_total{{reason=\"{}\"}}", reason.label());
        self.metric(&name).await
    }

    /// The value of `name` (with its labels, if any) in `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let metrics = http(self.addr, &request("GET", "/metrics", &[], "")).await;
        let line = format!("{name} ");
        metrics
            .body
            .lines()
            .find_map(|each| each.strip_prefix(&line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("/metrics lacks {name}"))
    }
}

/// What a client saw become of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// An HTTP answer with this status.
    Status(u16),
    /// A WebSocket close frame with this code.
    CloseCode(u16),
    /// The connection closed (or was reset) without a word.
    Closed,
}

/// One client of a row: connects, reaches its hostile state, says so, then
/// reports what becomes of its connection.
pub type Client = fn(SocketAddr, Holding) -> BoxFuture<'static, Seen>;

/// One row of a table.
pub struct Row {
    pub shape: &'static str,
    /// How many such clients at once.
    pub connections: usize,
    pub client: Client,
    /// What each must see.
    pub expected: Seen,
    /// How soon after they all hold, at the latest.
    pub within: Duration,
    /// What each is counted under in `demo_rejected_total`, if anything.
    pub counted: Option<Reason>,
    /// The most server memory one such connection may cost while held.
    pub bound: u64,
}

/// A row of 200 connections of `client`, each to see `expected` within
/// `within_s` seconds of holding, counted under `counted`, costing at most
/// 64 KiB each: the target for any shape.
pub fn row(
    shape: &'static str,
    client: Client,
    expected: Seen,
    within_s: u64,
    counted: Option<Reason>,
) -> Row {
    Row {
        shape,
        connections: 200,
        client,
        expected,
        within: Duration::from_secs(within_s),
        counted,
        bound: 64 * 1024,
    }
}

/// A client that connects and sends nothing at all.
pub async fn silent(addr: SocketAddr, holding: Holding) -> Seen {
    let mut stream = TcpStream::connect(addr).await.expect("the server accepts");
    holding.reached().await;
    until_closed(&mut stream).await
}

/// A client that sends 8 KiB of a request head for `path`, and no more.
pub async fn endless_head(addr: SocketAddr, path: &str, holding: Holding) -> Seen {
    let mut stream = TcpStream::connect(addr).await.expect("the server accepts");
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
        "a".repeat(8 * 1024)
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the head is sent");
    holding.reached().await;
    until_closed(&mut stream).await
}

/// A client that sends `head` (all of it, if the server reads that far)
/// and reads the answer's status.
pub async fn status_of(addr: SocketAddr, head: String, holding: Holding) -> Seen {
    let mut stream = TcpStream::connect(addr).await.expect("the server accepts");
    // The server may answer and close before it has read all of a large head.
    let _ = stream.write_all(head.as_bytes()).await;
    holding.reached().await;
    Seen::Status(super::read_head(&mut BufReader::new(stream)).await.status)
}

/// Reads whatever comes until the server closes the connection.
pub async fn until_closed(stream: &mut TcpStream) -> Seen {
    let mut sink = [0; 4096];
    while let Ok(read) = stream.read(&mut sink).await {
        if read == 0 {
            break;
        }
    }
    Seen::Closed
}

/// Told by a client when it holds its hostile state.
#[derive(Clone)]
pub struct Holding(mpsc::Sender<()>);

impl Holding {
    pub async fn reached(&self) {
        let _ = self.0.send(()).await;
    }
}

/// Runs every row of a table as [`check`] does, and fails naming every row
/// that failed and why: a failing row does not hide the rows after it.
pub async fn check_table(path: &str, args: &[&str], rows: &[Row]) {
    let mut failed = Vec::new();
    for row in rows {
        let checked = AssertUnwindSafe(check(path, args, row)).catch_unwind();
        if let Err(panic) = checked.await {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            failed.push(format!("{}: {why}", row.shape));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}

/// Runs `row` against a fresh server started from `path` with `args`: opens
/// its connections, measures the server's memory while they hold, and checks
/// their fate. Returns the memory per connection, in bytes, having printed it.
pub async fn check(path: &str, args: &[&str], row: &Row) -> u64 {
    let server = Binary::start(path, args).await;
    // One request first, so that what every server allocates once is not
    // charged to the row.
    http(server.addr, &request("GET", "/healthz", &[], "")).await;
    let counted_before = match row.counted {
        Some(reason) => server.refused(reason).await,
        None => 0,
    };
    let before = server.resident_bytes();
    let (holding, mut held) = mpsc::channel(row.connections);
    let clients: Vec<_> = (0..row.connections)
        .map(|_| tokio::spawn((row.client)(server.addr, Holding(holding.clone()))))
        .collect();
    for _ in 0..row.connections {
        tokio::time::timeout(PATIENCE, held.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: every client holds in time", row.shape));
    }
    let per_connection = server.resident_bytes().saturating_sub(before) / row.connections as u64;
    let all_held = Instant::now();
    let mut slowest = Duration::ZERO;
    for client in clients {
        let seen = tokio::time::timeout(row.within + PATIENCE, client)
            .await
            .unwrap_or_else(|_| panic!("{}: the server acts in time", row.shape))
            .expect("the client runs");
        assert_eq!(seen, row.expected, "{}", row.shape);
        slowest = slowest.max(all_held.elapsed());
    }
    println!(
        "{:<55} {:>4} connections: {:>5.1} KiB each while held; {:?} within {:.1} s",
        row.shape,
        row.connections,
        per_connection as f64 / 1024.0,
        row.expected,
        slowest.as_secs_f64()
    );
    assert!(
        slowest <= row.within,
        "{}: took {slowest:?}, more than {:?}",
        row.shape,
        row.within
    );
    if let Some(reason) = row.counted {
        // Some are counted as their connection ends, just after the client saw it.
        let expected = counted_before + row.connections as u64;
        let deadline = Instant::now() + PATIENCE;
        let mut counted = server.refused(reason).await;
        while counted < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            counted = server.refused(reason).await;
        }
        assert_eq!(
            counted - counted_before,
            row.connections as u64,
            "{}: counted",
            row.shape
        );
    }
    assert!(
        per_connection <= row.bound,
        "{}: {per_connection} bytes per connection, more than {}",
        row.shape,
        row.bound
    );
    per_connection
}

/// Floods the server at `path`, allowed 256 open files, with twice as many
/// silent connections as it can hold, then checks that `/healthz` still
/// answers and that `request` (a new client's) gets 503, each within a second.
pub async fn check_descriptors_exhausted(path: &str, request: &[u8]) {
    let server =
        Binary::start_with_open_files(path, &["--max-clients-per-address", "100000"], 256).await;
    let mut flood = Vec::new();
    for _ in 0..512 {
        let stream = tokio::net::TcpStream::connect(server.addr).await;
        flood.push(stream.expect("the kernel takes the connection"));
    }
    // The kernel took them all at once; wait until the server has too: it
    // closes what it cannot hold (the reserve's oldest), so at least the
    // connections beyond its descriptors see their end.
    let deadline = Instant::now() + PATIENCE;
    while flood.iter().filter(|stream| is_closed(stream)).count() < 512 - 256 {
        assert!(
            Instant::now() < deadline,
            "the server took the flood in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (what, request, status) in [
        ("/healthz", super::request("GET", "/healthz", &[], ""), 200),
        ("a new client", request.to_vec(), 503),
    ] {
        let asked = Instant::now();
        let answer = http(server.addr, &request).await;
        let took = asked.elapsed();
        println!(
            "with descriptors exhausted, {what} got {} in {took:?}",
            answer.status
        );
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }
    assert!(server.refused(Reason::Capacity).await >= 1);
    // Once the flood is gone, clients are served again.
    drop(flood);
    let deadline = Instant::now() + PATIENCE;
    while status(server.addr, request).await == 503 {
        assert!(Instant::now() < deadline, "still 503 after the flood left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the server closed `stream` (its end, or a reset, is waiting).
fn is_closed(stream: &tokio::net::TcpStream) -> bool {
    let mut byte = [0; 1];
    match stream.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// The status of the answer to `request`, read without waiting for its body
/// (an event stream's never ends).
async fn status(addr: SocketAddr, request: &[u8]) -> u16 {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the server accepts");
    stream
        .write_all(request)
        .await
        .expect("the request is sent");
    super::read_head(&mut BufReader::new(stream)).await.status
}
