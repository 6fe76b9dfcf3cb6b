//! HTTP/1.1 as RFC 9112 has it on every route, over raw TCP and over TLS:
//! one `Host` (none or several: 400), methods as they are spelled (`get`:
//! 501), the WebSocket handshake included.

mod common;

use std::time::Duration;

use common::{KEY, V13, start};
use shared::policy::Reason;
use shared::testing::requests::{Expect, Over, Row, check};
use shared::testing::tls::Certificate;

const INTERVAL: Duration = Duration::from_millis(300);

fn rows() -> Vec<Row> {
    let handshake = format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{KEY}{V13}\r\n");
    let requests = [
        ("GET /", "/", "\r\n".to_owned()),
        ("the WebSocket handshake", "/", handshake),
        ("GET /healthz", "/healthz", "\r\n".to_owned()),
        ("GET /metrics", "/metrics", "\r\n".to_owned()),
    ];
    let malformed = Expect::Refused(400, Some(Reason::MalformedHttp));
    let mut rows = Vec::new();
    for (name, path, rest) in &requests {
        rows.extend([
            Row::sends(
                &format!("{name} with no Host"),
                &format!("GET {path} HTTP/1.1\r\n{rest}"),
                malformed,
            ),
            Row::sends(
                &format!("{name} with two Host headers"),
                &format!("GET {path} HTTP/1.1\r\nHost: a\r\nHost: a\r\n{rest}"),
                malformed,
            ),
            Row::sends(
                &format!("{name} with a Host that is not host[:port]"),
                &format!("GET {path} HTTP/1.1\r\nHost: a/b\r\n{rest}"),
                malformed,
            ),
            Row::sends(
                &format!("{name} with a lowercase method"),
                &format!("get {path} HTTP/1.1\r\nHost: a\r\n{rest}"),
                Expect::Refused(501, Some(Reason::Method)),
            ),
        ]);
    }
    rows.extend([
        Row::sends(
            "GET / with one Host",
            "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            Expect::Answer,
        ),
        Row::sends(
            "GET / over HTTP/1.0 without Host",
            "GET / HTTP/1.0\r\n\r\n",
            Expect::Answer,
        ),
    ]);
    rows
}

#[tokio::test]
async fn every_route_wants_one_host_and_a_method_it_knows_over_tcp() {
    let server = start(&["--interval", "300ms"]).await;
    check(&server, Over::Tcp, INTERVAL, &rows()).await;
}

#[tokio::test]
async fn every_route_wants_one_host_and_a_method_it_knows_over_tls() {
    let certificate = Certificate::localhost();
    let options = certificate.options();
    let mut all = vec!["--interval", "300ms"];
    all.extend(options.iter().map(String::as_str));
    let server = start(&all).await;
    check(&server, Over::Tls(&certificate), INTERVAL, &rows()).await;
}
