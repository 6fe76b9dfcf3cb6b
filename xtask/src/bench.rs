//! `cargo xtask bench`: how each server does with many clients, in numbers.
//!
//! Starts a release build of a server, connects N clients over loopback,
//! broadcasts M messages through it, and prints: how fast the clients
//! connected, the server's memory per connection, deliveries per second, and
//! the latency from send to receipt at each client (percentiles). Clients and
//! server share this machine's cores, so the numbers are a floor, not a ceiling.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::flags;
use crate::servers::{self, DEMOS, Demo, Kind, Profile};

/// How long any phase may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(120);

impl flags::Bench {
    pub fn run(self) -> Result<()> {
        allow_open_files(self.clients)?;
        if !self.no_build {
            servers::build(Profile::Release)?;
        }
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        let chosen = |demo: &&Demo| self.only.is_none_or(|kind| demo.kind == kind);
        for demo in DEMOS.iter().filter(chosen) {
            runtime.block_on(bench(demo, &self))?;
        }
        Ok(())
    }
}

/// Every client holds a file descriptor here and one in the server, which
/// inherits this process's limits: raise them to fit, or say why they cannot be.
fn allow_open_files(clients: usize) -> Result<()> {
    use rlimit::Resource;
    let needed = clients as u64 + 100;
    let (soft, hard) =
        rlimit::getrlimit(Resource::NOFILE).context("cannot read the open file limit")?;
    if soft >= needed {
        return Ok(());
    }
    // Raising the hard limit takes privileges; the soft one may go up to it.
    let raised = hard < needed && rlimit::setrlimit(Resource::NOFILE, needed, needed).is_ok();
    let hard = if raised { needed } else { hard };
    if hard < needed {
        bail!(
            "{clients} clients need {needed} open files, but the limit is {hard}: \
             raise it (ulimit -Hn) or use fewer --clients"
        );
    }
    rlimit::setrlimit(Resource::NOFILE, needed, hard).context("cannot raise the open file limit")
}

/// When each message was sent, by sequence number (1-based).
type SendTimes = Arc<Vec<OnceLock<Instant>>>;

/// Deliveries received so far, by every client together.
static RECEIVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn bench(demo: &'static Demo, options: &flags::Bench) -> Result<()> {
    let package = demo.package;
    let args: Vec<String> = [
        "--port",
        "0",
        "--interval",
        "60m",
        "--rate",
        "1000000",
        "--burst",
        "1000000",
        "--client-queue",
        "4096",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain(["--max-clients".into(), (options.clients + 10).to_string()])
    .collect();
    let mut server = servers::start(demo, &args, "warn", Profile::Release)?;
    let url = timeout(LIMIT, &mut server.url)
        .await
        .map_err(|_| anyhow!("{package} did not start"))?
        .map_err(|_| anyhow!("{package} stopped: {}", server.last_error()))?;
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("not an address: {url}"))?;
    let pid = server.child.id().context("the server exited")?;
    let before = resident_bytes(pid);
    let cpu_before = cpu_seconds(pid);

    let sent: SendTimes = Arc::new((0..=options.messages).map(|_| OnceLock::new()).collect());
    let started = Instant::now();
    let connecting = Arc::new(Semaphore::new(256));
    let mut clients = Vec::with_capacity(options.clients);
    // Each client says once whether it connected; a failure ends the wait at once.
    let (ready, mut readies) = tokio::sync::mpsc::channel(options.clients.max(1));
    for _ in 0..options.clients {
        let (connecting, ready, sent) = (connecting.clone(), ready.clone(), sent.clone());
        let messages = options.messages as u64;
        let kind = demo.kind;
        clients.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await;
            let measured = match kind {
                Kind::WebSocket => websocket_client(addr, messages, &sent, permit, &ready).await,
                Kind::Sse => sse_client(addr, messages, &sent, permit, &ready).await,
            };
            if let Err(error) = &measured {
                // Ends the wait for connections, if it is still waiting.
                let _ = ready.try_send(Err(format!("{error:#}")));
            }
            measured
        }));
    }
    for _ in 0..options.clients {
        match timeout(LIMIT, readies.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(error))) => bail!("a client could not connect: {error}"),
            Ok(None) | Err(_) => bail!("clients did not all connect in time"),
        }
    }
    let connected_in = started.elapsed();
    let after = resident_bytes(pid);

    let sending = Instant::now();
    RECEIVED.store(0, std::sync::atomic::Ordering::Relaxed);
    let expected = options.clients * options.messages;
    let progress = tokio::spawn(async move {
        let every = Duration::from_secs(5);
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            ticks.tick().await;
            let received = RECEIVED.load(std::sync::atomic::Ordering::Relaxed);
            let after = sending.elapsed().as_secs_f64();
            say!("  ... {received} of {expected} deliveries after {after:.0} s");
        }
    });
    let sender = send_messages(demo.kind, addr, options, sent.clone());
    timeout(LIMIT, sender)
        .await
        .context("sending took too long")??;
    let mut latencies = Vec::with_capacity(options.clients * options.messages);
    let mut last_receipt = sending;
    for client in clients {
        let (mut client_latencies, last) = timeout(LIMIT, client)
            .await
            .context("a client did not receive everything in time")?
            .context("a client failed")??;
        latencies.append(&mut client_latencies);
        last_receipt = last_receipt.max(last);
    }
    progress.abort();
    let server_cpu = cpu_seconds(pid) - cpu_before;
    server.stop().await;

    let delivered = latencies.len();
    let elapsed = last_receipt.duration_since(sending).as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        format!("{:.2} ms", latencies[index].as_secs_f64() * 1000.0)
    };
    let per_client = after.saturating_sub(before) as f64 / options.clients as f64;
    say!("{package}:");
    say!(
        "  {} clients connected in {:.2} s ({:.0} a second)",
        options.clients,
        connected_in.as_secs_f64(),
        options.clients as f64 / connected_in.as_secs_f64()
    );
    say!(
        "  server memory: {:.1} MiB before, {:.1} MiB with every client: {:.1} KiB per connection",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per_client / 1024.0
    );
    say!(
        "  {} broadcasts at {}/s: {delivered} deliveries in {elapsed:.2} s = {:.0} deliveries a second",
        options.messages,
        options.rate,
        delivered as f64 / elapsed
    );
    say!(
        "  server CPU time from connecting to the last receipt: {server_cpu:.2} s \
         ({:.1} µs a delivery, connecting included)",
        server_cpu * 1e6 / delivered.max(1) as f64
    );
    say!(
        "  latency from send to receipt: p50 {}, p90 {}, p99 {}, max {}",
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(1.0)
    );
    Ok(())
}

/// What one client measured: a latency per message, and when it got the last.
type Measured = Result<(Vec<Duration>, Instant)>;

fn seq(id: &str) -> Option<usize> {
    id.rsplit_once('-')?.1.trim().parse().ok()
}

fn latency(sent: &SendTimes, seq: usize) -> Result<Duration> {
    RECEIVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let at = sent
        .get(seq)
        .and_then(OnceLock::get)
        .with_context(|| format!("received message {seq} before it was sent"))?;
    Ok(at.elapsed())
}

/// Tells the benchmark a client is connected and greeted, or why it is not.
type Ready = tokio::sync::mpsc::Sender<Result<(), String>>;
type Permit = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>;

async fn websocket_client(
    addr: SocketAddr,
    messages: u64,
    sent: &SendTimes,
    permit: Permit,
    ready: &Ready,
) -> Measured {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .context("connect")?;
    let _greeting = socket.next().await;
    drop(permit);
    let _ = ready.send(Ok(())).await;
    let mut latencies = Vec::with_capacity(messages as usize);
    while latencies.len() < messages as usize {
        let message = socket.next().await.context("closed")??;
        if let Message::Text(text) = message {
            let id = text
                .split("\"id\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(seq)
                .with_context(|| format!("no id in {text}"))?;
            latencies.push(latency(sent, id)?);
        }
    }
    Ok((latencies, Instant::now()))
}

async fn sse_client(
    addr: SocketAddr,
    messages: u64,
    sent: &SendTimes,
    permit: Permit,
    ready: &Ready,
) -> Measured {
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    stream
        .write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // Up to the greeting: the head, `retry:`, then `data: {"message":"Gotcha"}`.
    while !line.contains("Gotcha") {
        next_line(&mut reader, &mut line).await?;
    }
    drop(permit);
    let _ = ready.send(Ok(())).await;
    let mut latencies = Vec::with_capacity(messages as usize);
    while latencies.len() < messages as usize {
        next_line(&mut reader, &mut line).await?;
        if let Some(id) = line.strip_prefix("id: ") {
            let id = seq(id).with_context(|| format!("bad id line {line:?}"))?;
            latencies.push(latency(sent, id)?);
        }
    }
    Ok((latencies, Instant::now()))
}

/// Reads the next line into `line`; the end of the stream is an error.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut String,
) -> Result<()> {
    line.clear();
    if reader.read_line(line).await? == 0 {
        bail!("the server closed the connection");
    }
    Ok(())
}

/// Sends the messages at the chosen rate: over a WebSocket, or as POSTs.
async fn send_messages(
    kind: Kind,
    addr: SocketAddr,
    options: &flags::Bench,
    sent: SendTimes,
) -> Result<()> {
    let body = r#"{"message":"bench"}"#;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / options.rate));
    if kind == Kind::WebSocket {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .context("sender")?;
        // The sender reads nothing until the end; the server would only drop
        // it as slow after thousands of messages, far more than a run sends.
        for seq in 1..=options.messages {
            ticks.tick().await;
            let _ = sent[seq].set(Instant::now());
            socket.send(Message::text(body)).await.context("sender")?;
        }
        // Close cleanly: closing a socket with unread data resets it, and the
        // server could lose the last messages still in its buffer.
        let _ = socket.close(None).await;
        while let Some(Ok(_)) = socket.next().await {}
    } else {
        let mut stream = TcpStream::connect(addr).await.context("sender")?;
        let request = format!(
            "POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut reader = BufReader::new(&mut stream);
        for seq in 1..=options.messages {
            ticks.tick().await;
            let _ = sent[seq].set(Instant::now());
            reader
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .context("sender")?;
            // Read the answer before the next: its head, then its body.
            let mut line = String::new();
            let mut length = 0;
            loop {
                next_line(&mut reader, &mut line).await?;
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await?;
        }
    }
    Ok(())
}

/// A process's user and system CPU time so far, from `/proc` (0 where there
/// is none). Linux counts it in ticks of 1/100 s.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
    };
    // utime and stime are the 14th and 15th fields of the whole line.
    ticks(11).unwrap_or(0.0) / 100.0 + ticks(12).unwrap_or(0.0) / 100.0
}

/// A process's resident memory, from `/proc` (0 where there is none).
fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
            Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
        })
        .unwrap_or(0)
}
