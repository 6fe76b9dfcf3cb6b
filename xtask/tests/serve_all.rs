//! `cargo xtask serve-all`, run as a user would: both servers answer, Ctrl-C
//! stops both, and a server that cannot start stops everything with a reason;
//! the same with two instances of each sharing a Redis of the test's own,
//! then behind nginx, and over TLS with the certificate serve-all makes.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::http::{exchange, request};
use harness::redis::Redis;
use harness::tls::Certificate;

const PATIENCE: Duration = Duration::from_secs(120);

/// Starts `xtask serve-all` with `args`; its stdout lines arrive on the channel.
///
/// It builds the servers first, as a user's run does: a nested `cargo build`
/// is a quick no-op here, since `cargo test --workspace` has built them.
fn serve_all(args: &[&str]) -> (ServeAll, Lines) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("serve-all")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xtask starts");
    let (lines, received) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let lines = Lines {
        received,
        seen: Vec::new(),
    };
    (ServeAll(child), lines)
}

/// A running serve-all. A test that fails while it runs stops it as Ctrl-C
/// would (it stops its servers and nginx), so that nothing outlives the test.
struct ServeAll(Child);

impl Drop for ServeAll {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let pid = self.0.id().to_string();
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            if wait_with_timeout(&mut self.0, Duration::from_secs(10)).is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
}

impl std::ops::Deref for ServeAll {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServeAll {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// serve-all's stdout, line by line, and the lines read so far.
struct Lines {
    received: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Waits for the line starting with `label` and returns the rest of it.
    fn after(&mut self, label: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .received
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line {label:?} after {:#?}", self.seen));
            self.seen.push(line.clone());
            if let Some(rest) = line.strip_prefix(label) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Waits for the line starting with `label` and returns the address of the
    /// http:// URL it ends with.
    fn url_after(&mut self, label: &str) -> SocketAddr {
        let url = self.after(label);
        let addr = url.strip_prefix("http://").expect("an http:// URL");
        addr.trim_end_matches('/').parse().expect("an address")
    }

    /// Every line, once serve-all has exited.
    fn all(mut self) -> Vec<String> {
        self.seen.extend(self.received.iter());
        self.seen
    }
}

/// Runs `work` on a runtime of its own: these tests are plain threads, and
/// the harness's HTTP is async.
fn block_on<T>(work: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(work)
}

/// The status of the answer to `GET path`.
fn status(addr: SocketAddr, path: &str) -> u16 {
    let get = harness::http::get(addr, path);
    block_on(async { tokio::time::timeout(Duration::from_secs(10), get).await })
        .expect("the server answers in time")
        .expect("the server answers")
        .status
}

/// Waits until `addr` answers `/healthz` with 200: for a server given
/// `--redis`, once it has reached Redis.
fn healthy(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while status(addr, "/healthz") != 200 {
        assert!(Instant::now() < deadline, "{addr} never healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends serve-all Ctrl-C and waits for it to exit, successfully.
fn ctrl_c(child: &mut Child) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success());
    let status = wait_with_timeout(child, Duration::from_secs(5));
    if status.is_none() {
        let _ = child.kill();
    }
    let status = status.expect("serve-all exits within 5 s of Ctrl-C");
    assert!(status.success(), "{status}");
}

fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait works") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn both_servers_answer_and_ctrl_c_stops_both() {
    let (mut child, mut lines) =
        serve_all(&["--ws-port", "0", "--sse-port", "0", "--interval", "200ms"]);
    let ws = lines.url_after("[xtask] WebSocket demo:");
    let sse = lines.url_after("[xtask] Server-Sent Events demo:");
    assert_eq!(status(ws, "/"), 200);
    assert_eq!(status(sse, "/"), 200);

    ctrl_c(&mut child);
    for addr in [ws, sse] {
        assert!(
            TcpStream::connect(addr).is_err(),
            "{addr} still accepts connections"
        );
    }
}

#[test]
fn a_server_that_cannot_start_stops_both_and_says_why() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (mut child, _lines) = serve_all(&["--ws-port", &port, "--sse-port", "0"]);
    let status = wait_with_timeout(&mut child, PATIENCE);
    if status.is_none() {
        let _ = child.kill();
    }
    let status = status.expect("serve-all gives up");
    assert_eq!(status.code(), Some(1));
    let stderr = stderr_of(&mut child);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("[xtask] error: websocket-demo stopped by itself"),
        "{stderr}"
    );
    assert!(last.contains("Address already in use"), "{stderr}");
}

#[test]
fn a_bad_option_is_one_clear_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["serve-all", "--ws-port", "http"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "[xtask] error: 'http' is not a port number (see --help)"
    );
}

#[test]
fn several_instances_without_redis_are_refused_in_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["serve-all", "--instances", "2", "--no-build"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "[xtask] error: --instances 2 needs --redis URL: \
         instances share broadcasts only through Redis"
    );
    assert!(output.stdout.is_empty(), "it started something");
}

#[test]
fn two_instances_each_share_redis_answer_and_ctrl_c_stops_all() {
    let redis = Redis::start();
    let (mut child, mut lines) = serve_all(&[
        "--instances",
        "2",
        "--redis",
        &redis.url(),
        "--ws-port",
        "0",
        "--sse-port",
        "0",
        "--interval",
        "200ms",
    ]);
    let labels = [
        "[xtask] WebSocket demo 1:",
        "[xtask] WebSocket demo 2:",
        "[xtask] Server-Sent Events demo 1:",
        "[xtask] Server-Sent Events demo 2:",
    ];
    let addrs = labels.map(|label| lines.url_after(label));
    for addr in addrs {
        assert_eq!(status(addr, "/"), 200);
        healthy(addr);
    }

    ctrl_c(&mut child);
    for addr in addrs {
        assert!(
            TcpStream::connect(addr).is_err(),
            "{addr} still accepts connections"
        );
    }
    let lines = lines.all();
    for prefix in ["[ws1] ", "[ws2] ", "[sse1] ", "[sse2] "] {
        assert!(
            lines.iter().any(|line| line.starts_with(prefix)),
            "no {prefix}line in {lines:#?}"
        );
    }
    assert!(
        lines.contains(&"[xtask] All 4 servers stopped".to_owned()),
        "{lines:#?}"
    );
}

#[test]
fn an_instance_that_cannot_start_stops_all_and_says_which_and_why() {
    // The second WebSocket instance's port, 2 above the first's, is taken.
    let (taken, base) = loop {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        if port > 1024 && TcpListener::bind(("127.0.0.1", port - 2)).is_ok() {
            break (taken, port - 2);
        }
    };
    let base = base.to_string();
    // Nothing listens on port 1: the instances start all the same.
    let (mut child, _lines) = serve_all(&[
        "--instances",
        "2",
        "--redis",
        "redis://127.0.0.1:1/",
        "--ws-port",
        &base,
        "--sse-port",
        "0",
    ]);
    let status = wait_with_timeout(&mut child, PATIENCE);
    if status.is_none() {
        let _ = child.kill();
    }
    drop(taken);
    assert_eq!(status.expect("serve-all gives up").code(), Some(1));
    let stderr = stderr_of(&mut child);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("[xtask] error: websocket-demo 2 stopped by itself"),
        "{stderr}"
    );
    assert!(last.contains("Address already in use"), "{stderr}");
    assert!(last.ends_with("stopped the other 3 too"), "{stderr}");
}

#[test]
fn a_proxy_without_redis_is_refused_in_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["serve-all", "--proxy", "--no-build"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "[xtask] error: --proxy needs --redis URL: \
         instances behind a proxy must share one Redis stream"
    );
    assert!(output.stdout.is_empty(), "it started something");
}

/// Whether something accepts connections at `addr`.
fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

#[test]
fn behind_nginx_both_demos_answer_through_it_and_ctrl_c_stops_nginx_too() {
    let redis = Redis::start();
    let (mut child, mut lines) = serve_all(&[
        "--instances",
        "2",
        "--redis",
        &redis.url(),
        "--proxy",
        "--ws-port",
        "0",
        "--sse-port",
        "0",
        "--proxy-ws-port",
        "0",
        "--proxy-sse-port",
        "0",
        "--interval",
        "200ms",
    ]);
    let instances = [
        "[xtask] WebSocket demo 1:",
        "[xtask] WebSocket demo 2:",
        "[xtask] Server-Sent Events demo 1:",
        "[xtask] Server-Sent Events demo 2:",
    ]
    .map(|label| lines.url_after(label));
    let proxies = [
        "[xtask] WebSocket demo through nginx:",
        "[xtask] Server-Sent Events demo through nginx:",
    ]
    .map(|label| lines.url_after(label));
    for addr in proxies {
        assert_eq!(status(addr, "/"), 200, "the page via {addr}");
        // Through nginx, from an instance that has reached Redis.
        healthy(addr);
    }

    ctrl_c(&mut child);
    for addr in proxies.iter().chain(&instances) {
        assert!(!accepts(*addr), "{addr} still accepts connections");
    }
    let lines = lines.all();
    assert!(
        lines.contains(&"[xtask] nginx and all 4 servers stopped".to_owned()),
        "{lines:#?}"
    );
}

#[test]
fn nginx_that_cannot_start_stops_all_and_says_why() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    // Nothing listens on port 1: the instances start all the same.
    let (mut child, _lines) = serve_all(&[
        "--instances",
        "2",
        "--redis",
        "redis://127.0.0.1:1/",
        "--proxy",
        "--ws-port",
        "0",
        "--sse-port",
        "0",
        "--proxy-ws-port",
        &port,
        "--proxy-sse-port",
        "0",
    ]);
    let status = wait_with_timeout(&mut child, PATIENCE);
    if status.is_none() {
        let _ = child.kill();
    }
    drop(taken);
    assert_eq!(status.expect("serve-all gives up").code(), Some(1));
    let stderr = stderr_of(&mut child);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("[xtask] error: nginx stopped by itself"),
        "{stderr}"
    );
    assert!(last.contains("Address already in use"), "{stderr}");
    assert!(last.ends_with("stopped all 4 servers too"), "{stderr}");
}

/// The status of `GET path` over TLS (HTTP/1.1), trusting `certificate` alone.
fn https_status(addr: SocketAddr, path: &str, certificate: &Certificate) -> u16 {
    block_on(async {
        let tls = certificate.connect(addr, &["http/1.1"]).await;
        let get = request("GET", path, &[], "");
        let answer = tokio::time::timeout(Duration::from_secs(10), exchange(tls, &get)).await;
        answer
            .expect("an answer in time")
            .expect("an answer")
            .status
    })
}

/// The protocol the server picks by ALPN when offered HTTP/2 and HTTP/1.1.
fn alpn_chosen(addr: SocketAddr, certificate: &Certificate) -> Option<Vec<u8>> {
    block_on(async {
        let tls = certificate.connect(addr, &["h2", "http/1.1"]).await;
        tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    })
}

#[test]
fn over_tls_both_answer_https_with_the_made_certificate_and_ctrl_c_stops_both() {
    let (mut child, mut lines) = serve_all(&[
        "--tls",
        "--ws-port",
        "0",
        "--sse-port",
        "0",
        "--interval",
        "200ms",
    ]);
    let urls = [
        "[xtask] WebSocket demo:",
        "[xtask] Server-Sent Events demo:",
    ]
    .map(|label| lines.after(label));
    let cert = lines.after("[xtask] Certificate:");
    // The key is made beside it (in target/tls/); only the certificate is read.
    let certificate = Certificate::given(
        Path::new(&cert),
        &Path::new(&cert).with_file_name("key.pem"),
    );
    let addrs = urls.clone().map(|url| {
        let addr = url.strip_prefix("https://").expect("an https:// URL");
        addr.trim_end_matches('/')
            .parse::<SocketAddr>()
            .expect("an address")
    });
    for addr in addrs {
        assert_eq!(https_status(addr, "/", &certificate), 200, "{addr}");
        assert_eq!(https_status(addr, "/healthz", &certificate), 200, "{addr}");
        assert_eq!(
            alpn_chosen(addr, &certificate).as_deref(),
            Some(&b"h2"[..]),
            "{addr}"
        );
    }

    ctrl_c(&mut child);
    for addr in addrs {
        assert!(!accepts(addr), "{addr} still accepts connections");
    }
    let lines = lines.all();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("--ignore-certificate-errors-spki-list=")),
        "no word on trusting the certificate in {lines:#?}"
    );
}
