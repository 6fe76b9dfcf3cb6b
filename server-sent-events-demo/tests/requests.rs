//! Request shapes against the event stream, over raw TCP and over TLS: each
//! row says the status it must get and whether events follow; every 200
//! must deliver the Gotcha and a tick within two intervals. And HTTP/1.1 as
//! RFC 9112 has it on every route: one `Host`, methods as they are spelled.

mod common;

use std::time::Duration;

use common::start;
use shared::policy::Reason;
use shared::testing::requests::{Expect, Over, Row, Step, byte_by_byte, check, send};
use shared::testing::tls::Certificate;

const INTERVAL: Duration = Duration::from_millis(300);

/// The head of a plain `GET /sse`, without its blank line.
const GET: &str = "GET /sse HTTP/1.1\r\nHost: localhost\r\n";

/// The server over TLS with `certificate`, ticking every [`INTERVAL`].
async fn start_tls(certificate: &Certificate) -> shared::Server {
    let options = certificate.options();
    let mut all = vec!["--interval", "300ms"];
    all.extend(options.iter().map(String::as_str));
    start(&all).await
}

fn malformed(status: u16) -> Expect {
    Expect::Refused(status, Some(Reason::MalformedHttp))
}

/// The rows whose outcome is the same over TCP and TLS.
fn stream_rows() -> Vec<Row> {
    use Expect::Events;
    let bad = malformed(400);
    let body_later = vec![
        send(&format!("{GET}Content-Length: 5\r\n\r\n")),
        Step::Pause(Duration::from_millis(50)),
        send("hello"),
    ];
    let healthz = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let api = "POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
               Content-Length: 15\r\n\r\n{\"message\":\"x\"}";
    vec![
        Row::sends("GET /sse", &format!("{GET}\r\n"), Events),
        Row::sends(
            "a body in the same write",
            &format!("{GET}Content-Length: 5\r\n\r\nhello"),
            bad,
        ),
        Row::new("a body 50 ms after the head", bad, body_later),
        Row::sends(
            "Content-Length: 0",
            &format!("{GET}Content-Length: 0\r\n\r\n"),
            Events,
        ),
        Row::sends(
            "Transfer-Encoding: chunked on a GET",
            &format!("{GET}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            bad,
        ),
        Row::sends(
            "Content-Length and Transfer-Encoding",
            &format!("{GET}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            bad,
        ),
        Row::sends("no Host (HTTP/1.1)", "GET /sse HTTP/1.1\r\n\r\n", bad),
        Row::sends(
            "two Host headers",
            &format!("{GET}Host: localhost\r\n\r\n"),
            bad,
        ),
        Row::sends(
            "two Host headers, spelled differently",
            "GET /sse HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            bad,
        ),
        Row::sends(
            "a Host that is not host[:port]",
            "GET /sse HTTP/1.1\r\nHost: a b\r\n\r\n",
            bad,
        ),
        Row::sends(
            "an empty Host",
            "GET /sse HTTP/1.1\r\nHost:\r\n\r\n",
            Events,
        ),
        Row::sends("HTTP/1.0 without Host", "GET /sse HTTP/1.0\r\n\r\n", Events),
        Row::sends(
            "HTTP/1.0 with two Host headers",
            "GET /sse HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            bad,
        ),
        Row::sends(
            "absolute form",
            "GET http://localhost/sse HTTP/1.1\r\nHost: localhost\r\n\r\n",
            Events,
        ),
        Row::sends(
            "absolute form without Host",
            "GET http://localhost/sse HTTP/1.1\r\n\r\n",
            bad,
        ),
        Row::sends(
            "Connection: close",
            &format!("{GET}Connection: close\r\n\r\n"),
            Events,
        ),
        Row::sends(
            "Expect: 100-continue",
            &format!("{GET}Expect: 100-continue\r\n\r\n"),
            Events,
        ),
        Row::sends(
            "Upgrade: h2c",
            &format!(
                "{GET}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
                 HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
            ),
            Events,
        ),
        Row::new(
            "the head split byte by byte",
            Events,
            byte_by_byte(&format!("{GET}\r\n")),
        ),
        Row::sends(
            "bare LF line ends",
            "GET /sse HTTP/1.1\nHost: localhost\n\n",
            Events,
        ),
        Row::new(
            "a blank line 50 ms after the head",
            Events,
            vec![
                send(&format!("{GET}\r\n")),
                Step::Pause(Duration::from_millis(50)),
                send("\r\n"),
            ],
        ),
        Row::sends(
            "blank lines before the request line",
            &format!("\r\n\r\n{GET}\r\n"),
            Events,
        ),
        Row::sends(
            "a lowercase method",
            "get /sse HTTP/1.1\r\nHost: localhost\r\n\r\n",
            Expect::Refused(501, Some(Reason::Method)),
        ),
        Row::sends(
            "/sse/ (the route takes it)",
            "GET /sse/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
            Events,
        ),
        Row::new(
            "after a GET /healthz on the same connection",
            Events,
            vec![send(healthz), Step::Answered, send(&format!("{GET}\r\n"))],
        ),
        Row::new(
            "after a POST /api on the same connection",
            Events,
            vec![send(api), Step::Answered, send(&format!("{GET}\r\n"))],
        ),
    ]
}

#[tokio::test]
async fn every_request_shape_gets_its_status_and_every_200_its_events_over_tcp() {
    let server = start(&["--interval", "300ms"]).await;
    let mut rows = stream_rows();
    rows.push(Row::sends(
        "a GET /healthz pipelined behind it",
        &format!("{GET}\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        malformed(400),
    ));
    check(&server, Over::Tcp, INTERVAL, &rows).await;
}

#[tokio::test]
async fn every_request_shape_gets_its_status_and_every_200_its_events_over_tls() {
    let certificate = Certificate::localhost();
    let server = start_tls(&certificate).await;
    let mut rows = stream_rows();
    // hyper writes streams over TLS: the request behind waits, unanswered,
    // and the stream goes on.
    rows.push(Row::sends(
        "a GET /healthz pipelined behind it",
        &format!("{GET}\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        Expect::Events,
    ));
    check(&server, Over::Tls(&certificate), INTERVAL, &rows).await;
}

/// Every route of the demo, each with no Host, two, and a lowercase method.
fn every_route_rows() -> Vec<Row> {
    let requests = [
        ("GET /", "GET", "/", ""),
        ("GET /healthz", "GET", "/healthz", ""),
        ("GET /metrics", "GET", "/metrics", ""),
        ("GET /sse", "GET", "/sse", ""),
        (
            "POST /api",
            "POST",
            "/api",
            "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"message\":\"x\"}",
        ),
        ("OPTIONS /api", "OPTIONS", "/api", ""),
    ];
    let mut rows = Vec::new();
    for (name, method, path, rest) in requests {
        let rest = if rest.is_empty() { "\r\n" } else { rest };
        let lower = method.to_ascii_lowercase();
        rows.extend([
            Row::sends(
                &format!("{name} with no Host"),
                &format!("{method} {path} HTTP/1.1\r\n{rest}"),
                malformed(400),
            ),
            Row::sends(
                &format!("{name} with two Host headers"),
                &format!("{method} {path} HTTP/1.1\r\nHost: a\r\nHost: a\r\n{rest}"),
                malformed(400),
            ),
            Row::sends(
                &format!("{name} with a lowercase method"),
                &format!("{lower} {path} HTTP/1.1\r\nHost: a\r\n{rest}"),
                Expect::Refused(501, Some(Reason::Method)),
            ),
        ]);
    }
    rows.push(Row::sends(
        "GET / with one Host",
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Expect::Answer,
    ));
    rows
}

#[tokio::test]
async fn every_route_wants_one_host_and_a_method_it_knows_over_tcp_and_tls() {
    let server = start(&["--interval", "300ms"]).await;
    check(&server, Over::Tcp, INTERVAL, &every_route_rows()).await;
    let certificate = Certificate::localhost();
    let server = start_tls(&certificate).await;
    check(
        &server,
        Over::Tls(&certificate),
        INTERVAL,
        &every_route_rows(),
    )
    .await;
}

#[tokio::test]
async fn bytes_sent_behind_an_open_stream_end_it_with_its_last_chunk() {
    use shared::testing::{PATIENCE, Tally};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(&["--interval", "100ms"]).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(format!("{GET}\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0; 4096];
    let tick = br#"data: {"message":"Hello hello!"}"#;
    while !seen.windows(tick.len()).any(|window| window == tick) {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("a tick in time")
            .unwrap();
        assert!(read > 0, "the stream ended early: {seen:?}");
        seen.extend_from_slice(&buffer[..read]);
    }
    let before = Tally::of(server.rejections());
    let healthz = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    stream.write_all(healthz.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the stream ends in time")
        .expect("cleanly, not reset");
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    before
        .assert_counted(
            server.rejections(),
            Some(Reason::MalformedHttp),
            "bytes behind a stream",
        )
        .await;
}
