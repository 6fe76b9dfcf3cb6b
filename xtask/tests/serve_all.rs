//! `cargo xtask serve-all`, run as a user would: both servers answer, Ctrl-C
//! stops both, and a server that cannot start stops everything with a reason.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(120);

/// Starts `xtask serve-all` with `args`; its stdout lines arrive on the channel.
///
/// It builds the servers first, as a user's run does: a nested `cargo build`
/// is a quick no-op here, since `cargo test --workspace` has built them.
fn serve_all(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
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
    (child, received)
}

/// Waits for the line starting with `label` and returns the URL it ends with.
fn url_after(lines: &mpsc::Receiver<String>, label: &str) -> SocketAddr {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line {label:?}"));
        if let Some(rest) = line.strip_prefix(label) {
            let url = rest
                .trim()
                .trim_start_matches("http://")
                .trim_end_matches('/');
            return url.parse().expect("an address");
        }
    }
}

fn get_status(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_owned()
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
    let (mut child, lines) =
        serve_all(&["--ws-port", "0", "--sse-port", "0", "--interval", "200ms"]);
    let ws = url_after(&lines, "[xtask] WebSocket demo:");
    let sse = url_after(&lines, "[xtask] Server-Sent Events demo:");
    assert_eq!(get_status(ws, "/"), "HTTP/1.1 200 OK");
    assert_eq!(get_status(sse, "/"), "HTTP/1.1 200 OK");

    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success());
    let status = wait_with_timeout(&mut child, Duration::from_secs(5));
    if status.is_none() {
        let _ = child.kill();
    }
    let status = status.expect("serve-all exits within 5 s of Ctrl-C");
    assert!(status.success(), "{status}");
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
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
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
