//! `cargo xtask bench`: how each server does with many clients, in numbers.
//!
//! Starts a release build of a server, connects N clients over loopback,
//! broadcasts M messages through it, and prints: how fast the clients
//! connected, the server's memory per connection, deliveries per second, and
//! the latency from send to receipt at each client (percentiles). Clients and
//! server share this machine's cores, so the numbers are a floor, not a ceiling.
//!
//! With `--redis`, the clients are spread over `--instances` servers sharing
//! that Redis (memory and CPU are their sums; Redis's own are not counted),
//! and the same run on one server with the in-process hub follows, for the
//! latency the backplane adds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::flags;
use crate::servers::{self, DEMOS, Demo, Instance, Kind, Profile, Server};

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

/// One server's benchmark: alone, or over instances sharing Redis and then
/// alone again, to show what the backplane adds.
async fn bench(demo: &'static Demo, flags: &flags::Bench) -> Result<()> {
    let alone = Setup {
        instances: 1,
        redis: None,
    };
    let Some(redis) = flags.redis.as_deref() else {
        let numbers = measure(demo, flags, alone).await?;
        report(&format!("{}:", demo.package), flags, &numbers);
        return Ok(());
    };
    let shared = Setup {
        instances: flags.instances,
        redis: Some(redis),
    };
    let instances = match flags.instances {
        1 => "one instance".to_owned(),
        count => format!("{count} instances"),
    };
    let through_redis = measure(demo, flags, shared).await?;
    report(
        &format!("{}, {instances} through Redis:", demo.package),
        flags,
        &through_redis,
    );
    let in_process = measure(demo, flags, alone).await?;
    report(
        &format!("{}, one instance with the in-process hub:", demo.package),
        flags,
        &in_process,
    );
    let added = |p: f64| {
        let ms = |numbers: &Numbers| numbers.latency(p).as_secs_f64() * 1000.0;
        ms(&through_redis) - ms(&in_process)
    };
    // Below zero when spreading the clients over instances saved more than
    // the trip through Redis cost.
    say!(
        "  latency the backplane adds at {} clients ({instances} through Redis, \
         less one in-process): p50 {:+.2} ms, p99 {:+.2} ms",
        flags.clients,
        added(0.50),
        added(0.99)
    );
    Ok(())
}

/// The servers of one run: how many, and the Redis they share, if any.
#[derive(Debug, Clone, Copy)]
struct Setup<'a> {
    instances: usize,
    redis: Option<&'a str>,
}

/// Starts the servers, runs every phase, stops them: what was measured.
async fn measure(demo: &'static Demo, flags: &flags::Bench, setup: Setup<'_>) -> Result<Numbers> {
    // A stream of this run's own: its ids begin at 1, as the messages do.
    let stream = format!("bench:{}:{}", demo.prefix, unix_millis());
    let mut targets = Vec::new();
    let measured = async {
        for n in 1..=setup.instances {
            let instance = match setup.instances {
                1 => Instance::Only,
                _ => Instance::Nth(n),
            };
            let redis = setup.redis.map(|url| (url, stream.as_str()));
            targets.push(Target::start(demo, instance, flags.clients, redis).await?);
        }
        run_clients(demo.kind, flags, &targets).await
    }
    .await;
    for target in &mut targets {
        target.server.stop().await;
    }
    if let Some(url) = setup.redis {
        forget(url, &[&stream, &format!("{stream}:meta")]);
    }
    measured
}

/// Every phase in turn, on servers already started: connecting the clients
/// (spread over the servers), sending through the first, receiving.
async fn run_clients(kind: Kind, flags: &flags::Bench, targets: &[Target]) -> Result<Numbers> {
    let memory = || {
        targets
            .iter()
            .map(|target| resident_bytes(target.pid))
            .sum()
    };
    let cpu = || -> f64 { targets.iter().map(|target| cpu_seconds(target.pid)).sum() };
    let addrs: Vec<SocketAddr> = targets.iter().map(|target| target.addr).collect();
    let memory_before = memory();
    let cpu_before = cpu();

    let tally = Tally::new(flags.messages, Arc::new(AtomicUsize::new(0)));
    let connecting = Instant::now();
    let clients = connect_clients(kind, &addrs, flags, &tally).await?;
    let connected_in = connecting.elapsed();
    let memory_with_clients = memory();

    let sending = Instant::now();
    let expected = flags.clients * flags.messages;
    let progress = tokio::spawn(show_progress(tally.received.clone(), expected, sending));
    let delivered = async {
        timeout(LIMIT, send_messages(kind, addrs[0], flags, &tally))
            .await
            .context("sending took too long")??;
        collect(clients, expected, sending).await
    }
    .await;
    progress.abort();
    let (mut latencies, last_receipt) = delivered?;
    latencies.sort_unstable();
    Ok(Numbers {
        servers: targets.len(),
        connected_in,
        memory_before,
        memory_with_clients,
        server_cpu: cpu() - cpu_before,
        sending_took: last_receipt.duration_since(sending),
        latencies,
    })
}

/// Deletes the keys of a run's stream with `redis-cli`, which comes with
/// redis-server; without it, says what is left.
fn forget(url: &str, keys: &[&str]) {
    let deleted = std::process::Command::new("redis-cli")
        .args(["-u", url, "DEL"])
        .args(keys)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !deleted.is_ok_and(|status| status.success()) {
        say!(
            "  (could not delete {} from Redis: no redis-cli?)",
            keys.join(" ")
        );
    }
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

/// A release build of one server, started for many clients, and where it is.
struct Target {
    server: Server,
    addr: SocketAddr,
    pid: u32,
}

impl Target {
    /// Starts one instance of `demo`; with `redis` (a URL and a stream), waits
    /// until it has reached Redis.
    async fn start(
        demo: &'static Demo,
        instance: Instance,
        clients: usize,
        redis: Option<(&str, &str)>,
    ) -> Result<Target> {
        // Only the benchmark's own messages: no ticks (with Redis they fall
        // on the clock's slots of the interval, so a day's: at midnight UTC
        // only), and no limits in the way (every client comes from
        // 127.0.0.1, so the cap per address goes up too).
        let mut args: Vec<String> = [
            "--port",
            "0",
            "--interval",
            "1440m",
            "--rate",
            "1000000",
            "--burst",
            "1000000",
            "--client-queue",
            "4096",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .chain(["--max-clients".into(), (clients + 10).to_string()])
        .chain([
            "--max-clients-per-address".into(),
            (clients + 10).to_string(),
        ])
        .collect();
        if let Some((url, stream)) = redis {
            args.extend(["--redis", url, "--redis-stream", stream].map(String::from));
        }
        let mut server = servers::start(demo, instance, &args, "warn", Profile::Release)?;
        let url = server.listening(LIMIT).await?;
        if redis.is_some() {
            servers::healthy(&url, LIMIT).await?;
        }
        let addr = servers::addr(&url)?;
        let pid = server.child.id().context("the server exited")?;
        Ok(Target { server, addr, pid })
    }
}

/// What the sender, the clients and the progress line share.
#[derive(Clone)]
struct Tally {
    /// When each message was sent, by sequence number (1-based).
    sent: Arc<Vec<OnceLock<Instant>>>,
    /// Deliveries received so far, by every client together.
    received: Arc<AtomicUsize>,
}

impl Tally {
    fn new(messages: usize, received: Arc<AtomicUsize>) -> Tally {
        let sent = (0..=messages).map(|_| OnceLock::new()).collect();
        Tally {
            sent: Arc::new(sent),
            received,
        }
    }

    fn sending(&self, seq: usize) {
        let _ = self.sent[seq].set(Instant::now());
    }

    /// Counts one delivery of message `seq`: how long since it was sent.
    fn latency(&self, seq: usize) -> Result<Duration> {
        self.received.fetch_add(1, Ordering::Relaxed);
        let at = self
            .sent
            .get(seq)
            .and_then(OnceLock::get)
            .with_context(|| format!("received message {seq} before it was sent"))?;
        Ok(at.elapsed())
    }
}

/// What one client measured: a latency per message, and when it got the last.
type Measured = Result<(Vec<Duration>, Instant)>;

/// Starts every client, at most 256 connecting at a time, each on the next
/// of `addrs` in turn, and waits until each is greeted; the first that cannot
/// connect ends the wait at once.
async fn connect_clients(
    kind: Kind,
    addrs: &[SocketAddr],
    flags: &flags::Bench,
    tally: &Tally,
) -> Result<Vec<JoinHandle<Measured>>> {
    let connecting = Arc::new(Semaphore::new(256));
    let (ready, mut readies) = mpsc::channel(flags.clients.max(1));
    let messages = flags.messages as u64;
    let clients = (0..flags.clients)
        .map(|client| {
            let addr = addrs[client % addrs.len()];
            let (connecting, ready, tally) = (connecting.clone(), ready.clone(), tally.clone());
            tokio::spawn(async move {
                let permit = connecting.acquire_owned().await;
                let measured = match kind {
                    Kind::WebSocket => {
                        websocket_client(addr, messages, &tally, permit, &ready).await
                    }
                    Kind::Sse => sse_client(addr, messages, &tally, permit, &ready).await,
                };
                if let Err(error) = &measured {
                    // Ends the wait for connections, if it is still waiting.
                    let _ = ready.try_send(Err(format!("{error:#}")));
                }
                measured
            })
        })
        .collect();
    for _ in 0..flags.clients {
        match timeout(LIMIT, readies.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(error))) => bail!("a client could not connect: {error}"),
            Ok(None) | Err(_) => bail!("clients did not all connect in time"),
        }
    }
    Ok(clients)
}

/// Every 5 s, how many deliveries have arrived; runs until aborted.
async fn show_progress(received: Arc<AtomicUsize>, expected: usize, since: Instant) {
    let every = Duration::from_secs(5);
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        ticks.tick().await;
        let received = received.load(Ordering::Relaxed);
        let after = since.elapsed().as_secs_f64();
        say!("  ... {received} of {expected} deliveries after {after:.0} s");
    }
}

/// Waits for every client to receive every message: all their latencies, and
/// when the last delivery arrived.
async fn collect(
    clients: Vec<JoinHandle<Measured>>,
    expected: usize,
    since: Instant,
) -> Result<(Vec<Duration>, Instant)> {
    let mut latencies = Vec::with_capacity(expected);
    let mut last_receipt = since;
    for client in clients {
        let (mut client_latencies, last) = timeout(LIMIT, client)
            .await
            .context("a client did not receive everything in time")?
            .context("a client failed")??;
        latencies.append(&mut client_latencies);
        last_receipt = last_receipt.max(last);
    }
    Ok((latencies, last_receipt))
}

/// What one run measured, for its report.
struct Numbers {
    /// How many servers the clients were spread over.
    servers: usize,
    connected_in: Duration,
    /// Of every server together.
    memory_before: u64,
    memory_with_clients: u64,
    /// Of every server together, from connecting the first client to the
    /// last receipt.
    server_cpu: f64,
    /// From the first send to the last receipt.
    sending_took: Duration,
    /// Every delivery's, sorted.
    latencies: Vec<Duration>,
}

impl Numbers {
    /// The latency that a share `p` (0 to 1) of deliveries took at most.
    fn latency(&self, p: f64) -> Duration {
        let count = self.latencies.len();
        let index = ((count as f64 * p).ceil() as usize).clamp(1, count.max(1)) - 1;
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

fn report(title: &str, flags: &flags::Bench, numbers: &Numbers) {
    let Numbers {
        servers,
        connected_in,
        memory_before: before,
        memory_with_clients: after,
        server_cpu,
        sending_took,
        ref latencies,
    } = *numbers;
    let delivered = latencies.len();
    let elapsed = sending_took.as_secs_f64();
    let percentile = |p: f64| format!("{:.2} ms", numbers.latency(p).as_secs_f64() * 1000.0);
    let per_client = after.saturating_sub(before) as f64 / flags.clients as f64;
    // Several servers are reported as one: their sums.
    let (memory, cpu) = match servers {
        1 => ("server memory".to_owned(), "server CPU time".to_owned()),
        count => (
            format!("memory of the {count} servers together"),
            format!("CPU time of the {count} servers together"),
        ),
    };
    say!("{title}");
    say!(
        "  {} clients connected in {:.2} s ({:.0} a second)",
        flags.clients,
        connected_in.as_secs_f64(),
        flags.clients as f64 / connected_in.as_secs_f64()
    );
    say!(
        "  {memory}: {:.1} MiB before, {:.1} MiB with every client: {:.1} KiB per connection",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per_client / 1024.0
    );
    say!(
        "  {} broadcasts at {}/s: {delivered} deliveries in {elapsed:.2} s = {:.0} deliveries a second",
        flags.messages,
        flags.rate,
        delivered as f64 / elapsed
    );
    say!(
        "  {cpu} from connecting to the last receipt: {server_cpu:.2} s \
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
}

fn seq(id: &str) -> Option<usize> {
    id.rsplit_once('-')?.1.trim().parse().ok()
}

/// Tells the benchmark a client is connected and greeted, or why it is not.
type Ready = mpsc::Sender<Result<(), String>>;
type Permit = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>;

async fn websocket_client(
    addr: SocketAddr,
    messages: u64,
    tally: &Tally,
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
            latencies.push(tally.latency(id)?);
        }
    }
    Ok((latencies, Instant::now()))
}

async fn sse_client(
    addr: SocketAddr,
    messages: u64,
    tally: &Tally,
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
            latencies.push(tally.latency(id)?);
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
    flags: &flags::Bench,
    tally: &Tally,
) -> Result<()> {
    let ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / flags.rate));
    match kind {
        Kind::WebSocket => send_over_a_websocket(addr, flags.messages, ticks, tally).await,
        Kind::Sse => post_to_the_api(addr, flags.messages, ticks, tally).await,
    }
    .context("sender")
}

const BODY: &str = r#"{"message":"bench"}"#;

async fn send_over_a_websocket(
    addr: SocketAddr,
    messages: usize,
    mut ticks: Interval,
    tally: &Tally,
) -> Result<()> {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await?;
    // The sender reads nothing until the end; the server would only drop
    // it as slow after thousands of messages, far more than a run sends.
    for seq in 1..=messages {
        ticks.tick().await;
        tally.sending(seq);
        socket.send(Message::text(BODY)).await?;
    }
    // Close cleanly: closing a socket with unread data resets it, and the
    // server could lose the last messages still in its buffer.
    let _ = socket.close(None).await;
    while let Some(Ok(_)) = socket.next().await {}
    Ok(())
}

async fn post_to_the_api(
    addr: SocketAddr,
    messages: usize,
    mut ticks: Interval,
    tally: &Tally,
) -> Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut reader = BufReader::new(&mut stream);
    for seq in 1..=messages {
        ticks.tick().await;
        tally.sending(seq);
        reader.get_mut().write_all(request.as_bytes()).await?;
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
