//! Bad input to the SSE demo over raw TCP: every refusal has its exact status
//! and a JSON error, nothing refused is broadcast, open streams carry on; and
//! `/healthz` and `/metrics` report it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use prometheus_parse::{LineInfo, Scrape, Value as Metric};
use serde_json::{Value, json};
use shared::Server;
use shared::policy::Reason;
use shared::testing::{self, PATIENCE, http, request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

async fn start(options: &[&str]) -> Server<Bytes> {
    testing::start(
        &server_sent_events_demo::DEFAULTS,
        server_sent_events_demo::frame,
        server_sent_events_demo::routes,
        options,
    )
    .await
}

/// An open event stream, read raw: every byte the server sends, unchunked.
struct Stream {
    reader: BufReader<TcpStream>,
    text: String,
}

impl Stream {
    async fn open(addr: SocketAddr) -> Stream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut reader = BufReader::new(stream);
        let head = testing::read_head(&mut reader).await;
        assert_eq!(head.status, 200, "{head:?}");
        let mut stream = Stream {
            reader,
            text: String::new(),
        };
        assert_eq!(stream.next_block().await, "retry: 2000");
        assert_eq!(stream.next_block().await, r#"data: {"message":"Gotcha"}"#);
        stream
    }

    /// The next block of the stream, up to (without) its blank line.
    async fn next_block(&mut self) -> String {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                return block.trim_end().to_owned();
            }
            let mut size = String::new();
            timeout(PATIENCE, self.reader.read_line(&mut size))
                .await
                .unwrap()
                .unwrap();
            let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await.unwrap();
            chunk.truncate(size);
            self.text.push_str(&String::from_utf8(chunk).unwrap());
        }
    }

    /// The next event's lines; fails unless it is a tick.
    async fn next_tick_only(&mut self, case: &str) {
        let block = self.next_block().await;
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines.len(), 2, "after {case}: {block:?}");
        assert!(lines[0].starts_with("id: "), "after {case}: {block:?}");
        assert_eq!(
            lines[1], r#"data: {"message":"Hello hello!"}"#,
            "after {case}"
        );
    }
}

fn post(headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    request("POST", "/api", headers, body)
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test]
async fn every_refused_request_gets_its_status_and_broadcasts_nothing() {
    let server = start(&["--interval", "150ms", "--max-message", "100"]).await;
    let mut watcher = Stream::open(server.addr).await;
    let hey = r#"{"message":"Hey there"}"#;
    let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(100));
    let chunked_long = format!(
        "POST /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{long}\r\n0\r\n\r\n",
        long.len()
    );
    let evil = ("Origin", "http://evil.example");
    let invalid_utf8 = [
        b"POST /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".as_slice(),
        b"Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"message\":\"\xff\"}",
    ]
    .concat();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("malformed request line", b"POST\r\n\r\n".to_vec(), 400),
        (
            "malformed header",
            b"POST /api HTTP/1.1\r\nHost x\r\n\r\n".to_vec(),
            400,
        ),
        ("GET /api", request("GET", "/api", &[], ""), 405),
        ("PUT /api", request("PUT", "/api", &[JSON], hey), 405),
        ("DELETE /api", request("DELETE", "/api", &[], ""), 405),
        ("no Content-Type", post(&[], hey), 415),
        (
            "text/plain",
            post(&[("Content-Type", "text/plain")], hey),
            415,
        ),
        (
            "form data",
            post(
                &[("Content-Type", "application/x-www-form-urlencoded")],
                "message=hi",
            ),
            415,
        ),
        ("declared body over the limit", post(&[JSON], &long), 413),
        (
            "chunked body over the limit",
            chunked_long.into_bytes(),
            413,
        ),
        ("not JSON", post(&[JSON], "Hey there"), 400),
        ("empty body", post(&[JSON], ""), 400),
        ("truncated JSON", post(&[JSON], r#"{"message":"#), 400),
        ("a JSON array", post(&[JSON], "[1,2]"), 400),
        ("no message field", post(&[JSON], r#"{"text":"hi"}"#), 400),
        (
            "a number as message",
            post(&[JSON], r#"{"message":7}"#),
            400,
        ),
        ("invalid UTF-8", invalid_utf8, 400),
        ("a disallowed origin", post(&[JSON, evil], hey), 403),
        (
            "a preflight from a disallowed origin",
            request("OPTIONS", "/api", &[evil], ""),
            403,
        ),
        (
            "a stream from a disallowed origin",
            request("GET", "/sse", &[evil], ""),
            403,
        ),
        (
            "lastEventId given twice",
            request("GET", "/sse?lastEventId=a-1&lastEventId=a-2", &[], ""),
            400,
        ),
        ("an unknown path", request("GET", "/nope", &[], ""), 404),
        ("DELETE /sse", request("DELETE", "/sse", &[], ""), 405),
    ];
    for (case, raw, expected) in &cases {
        let response = http(server.addr, raw).await;
        assert_eq!(response.status, *expected, "{case}: {}", response.body);
        if !case.starts_with("malformed") {
            let body: Value = serde_json::from_str(&response.body)
                .unwrap_or_else(|_| panic!("{case}: {response:?}"));
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{case}: {body}"
            );
        }
        if *expected == 405 && case.contains("/api") {
            assert_eq!(response.header("allow"), Some("POST, OPTIONS"), "{case}");
        }
        watcher.next_tick_only(case).await;
    }
    assert_eq!(
        server.hub.stats.broadcasts.load(Ordering::Relaxed),
        server.hub.last_id().map_or(0, |id| id.seq),
        "only ticks were broadcast"
    );
    let rejected = server.rejections();
    for (reason, count) in [
        (Reason::MalformedHttp, 2),
        (Reason::Method, 3),
        (Reason::ContentType, 3),
        (Reason::TooLarge, 2),
        (Reason::BadMessage, 6),
        (Reason::InvalidUtf8, 1),
        (Reason::Origin, 3),
    ] {
        assert_eq!(rejected.count(reason), count, "{reason:?}");
    }
    println!("tried {} bad requests", cases.len());
}

#[tokio::test]
async fn allowed_origins_get_cors_headers() {
    let server = start(&[
        "--interval",
        "60m",
        "--allowed-origin",
        "https://app.example",
    ])
    .await;
    let own = format!("http://localhost:{}", server.addr.port());
    for origin in [own.as_str(), "https://app.example"] {
        let preflight = http(
            server.addr,
            &request(
                "OPTIONS",
                "/api",
                &[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "POST"),
                ],
                "",
            ),
        )
        .await;
        assert_eq!(preflight.status, 204, "{origin}");
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            Some(origin)
        );
        assert_eq!(
            preflight.header("access-control-allow-methods"),
            Some("POST, OPTIONS")
        );
        assert!(
            preflight
                .header("access-control-allow-headers")
                .unwrap()
                .contains("Content-Type")
        );
        let posted = http(
            server.addr,
            &post(&[JSON, ("Origin", origin)], r#"{"message":"hi"}"#),
        )
        .await;
        assert_eq!(posted.status, 200, "{origin}");
        assert_eq!(posted.header("access-control-allow-origin"), Some(origin));
        assert_eq!(posted.header("vary"), Some("Origin"));
    }
    assert_eq!(server.hub.stats.broadcasts.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_flood_of_posts_gets_429_with_retry_after() {
    // One token every 10 s: only the burst of 5 gets through, however slow the run.
    let server = start(&["--interval", "150ms", "--rate", "0.1", "--burst", "5"]).await;
    let mut watcher = Stream::open(server.addr).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..12 {
        let response = http(server.addr, &post(&[JSON], r#"{"message":"flood"}"#)).await;
        if response.status == 429 {
            retry_after = response.header("retry-after").map(str::to_owned);
            let body: Value = serde_json::from_str(&response.body).unwrap();
            assert!(body["error"].as_str().unwrap().starts_with("rate limit"));
        }
        statuses.push(response.status);
    }
    let passed = statuses.iter().filter(|status| **status == 200).count();
    assert_eq!(passed, 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 429).count(), 7);
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!(
        (1..=10).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(server.rejections().rate_limited.load(Ordering::Relaxed), 7);
    // Exactly the accepted posts were broadcast, and the ticks carry on.
    let mut changed = 0;
    while changed < passed {
        let block = watcher.next_block().await;
        if block.ends_with(r#"data: {"message":"Something changed"}"#) {
            changed += 1;
        }
    }
    watcher.next_tick_only("the flood").await;
}

#[tokio::test]
async fn streams_over_the_cap_get_503_and_the_others_carry_on() {
    let server = start(&["--interval", "150ms", "--max-clients", "2"]).await;
    let mut streams = vec![
        Stream::open(server.addr).await,
        Stream::open(server.addr).await,
    ];
    let refused = http(server.addr, &request("GET", "/sse", &[], "")).await;
    assert_eq!(refused.status, 503);
    assert!(refused.body.contains("error"));
    for stream in &mut streams {
        stream.next_tick_only("a stream over the cap").await;
    }
    assert_eq!(server.rejections().count(Reason::Capacity), 1);
}

#[tokio::test]
async fn line_breaks_in_messages_cannot_forge_events_or_fields() {
    let server = start(&["--interval", "60m"]).await;
    let mut streams = vec![
        Stream::open(server.addr).await,
        Stream::open(server.addr).await,
    ];
    let forged = "x\n\ndata: forged\r\nid: 999\revent: evil\r\n\r\nretry: 1";
    let body = json!({ "message": forged }).to_string();
    let response = http(server.addr, &post(&[JSON], &body)).await;
    assert_eq!(response.status, 200);
    // And straight into the hub, past the JSON encoding of the API.
    let id = server.hub.publish(forged);
    for stream in &mut streams {
        let first = stream.next_block().await;
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(lines.len(), 2, "{first:?}");
        assert_eq!(lines[1], r#"data: {"message":"Something changed"}"#);
        let second = stream.next_block().await;
        let lines: Vec<&str> = second.lines().collect();
        assert_eq!(lines[0], format!("id: {id}"));
        assert!(
            lines[1..].iter().all(|line| line.starts_with("data: ")),
            "{second:?}"
        );
        let data: Value = serde_json::from_str(&lines[1][6..]).unwrap();
        assert_eq!(data, json!({ "message": forged }));
    }
}

/// Reads `/metrics`, checking every line is a comment or sample.
async fn metrics(addr: SocketAddr) -> Scrape {
    let response = http(addr, &request("GET", "/metrics", &[], "")).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for line in response.body.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored),
            "not Prometheus text: {line:?}"
        );
    }
    Scrape::parse(response.body.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text")
}

fn sample(scrape: &Scrape, name: &str, reason: Option<&str>) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|sample| sample.metric == name && sample.labels.get("reason") == reason)
        .unwrap_or_else(|| panic!("no {name} {reason:?}"));
    match found.value {
        Metric::Counter(value) | Metric::Gauge(value) => value,
        ref other => panic!("{name} is {other:?}"),
    }
}

#[tokio::test]
async fn health_and_metrics_follow_what_the_server_does() {
    let server = start(&["--interval", "60m"]).await;
    let before = metrics(server.addr).await;
    assert_eq!(sample(&before, "demo_connected_clients", None), 0.0);
    assert!(matches!(
        before
            .samples
            .iter()
            .find(|s| s.metric == "demo_broadcasts_total")
            .unwrap()
            .value,
        Metric::Counter(_)
    ));
    let mut stream = Stream::open(server.addr).await;
    assert_eq!(
        http(server.addr, &post(&[JSON], r#"{"message":"hi"}"#))
            .await
            .status,
        200
    );
    assert_eq!(http(server.addr, &post(&[JSON], "nope")).await.status, 400);
    stream.next_block().await;

    let after = metrics(server.addr).await;
    assert_eq!(sample(&after, "demo_connected_clients", None), 1.0);
    assert_eq!(sample(&after, "demo_broadcasts_total", None), 1.0);
    assert_eq!(sample(&after, "demo_deliveries_total", None), 1.0);
    assert_eq!(
        sample(&after, "demo_rejected_total", Some("bad_message")),
        1.0
    );
    assert_eq!(sample(&after, "demo_rejected_total", Some("origin")), 0.0);
    assert_eq!(
        sample(&after, "demo_slow_clients_disconnected_total", None),
        0.0
    );
    assert_eq!(sample(&after, "demo_rate_limited_total", None), 0.0);

    let health = http(server.addr, &request("GET", "/healthz", &[], "")).await;
    assert_eq!(health.status, 200);
    let health: Value = serde_json::from_str(&health.body).unwrap();
    let last = server.hub.last_id().unwrap().to_string();
    assert_eq!(
        health,
        json!({ "status": "ok", "clients": 1, "lastEventId": last })
    );
}
