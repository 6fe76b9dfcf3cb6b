//! Bad input over raw TCP: every case gets its exact status or close code,
//! nothing it sends is broadcast, and a watching client still gets the next tick.

mod common;

use std::sync::atomic::Ordering;

use common::{BINARY, CLOSE, FIN, KEY, PING, RawSocket, TEXT, UPGRADE, V13, Watcher, frame, start};
use serde_json::Value;
use shared::Server;
use shared::policy::Reason;
use shared::testing::{self, eventually, http};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Utf8Bytes;

#[tokio::test]
async fn bad_requests_and_handshakes_get_their_status() {
    let server = start(&["--interval", "150ms"]).await;
    let mut watcher = Watcher::connect(server.addr).await;
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "malformed: garbage request line",
            "GARBAGE\r\n\r\n".into(),
            400,
        ),
        (
            "malformed: bad method token",
            "G@T / HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        (
            "malformed: header without a colon",
            "GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n".into(),
            400,
        ),
        (
            "malformed: header name with a space",
            "GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n".into(),
            400,
        ),
        (
            "malformed: unsupported HTTP version",
            "GET / HTTP/3.0\r\nHost: x\r\n\r\n".into(),
            400,
        ),
        ("malformed: headers over the size limit", long_header, 431),
        (
            "handshake without a key",
            format!("{UPGRADE}{V13}\r\n"),
            400,
        ),
        (
            "handshake with a short key",
            format!("{UPGRADE}Sec-WebSocket-Key: abc==\r\n{V13}\r\n"),
            400,
        ),
        (
            "handshake with a non-base64 key",
            format!("{UPGRADE}Sec-WebSocket-Key: ****************AAAAA==\r\n{V13}\r\n"),
            400,
        ),
        (
            "handshake with version 8",
            format!("{UPGRADE}{KEY}Sec-WebSocket-Version: 8\r\n\r\n"),
            426,
        ),
        (
            "handshake without a version",
            format!("{UPGRADE}{KEY}\r\n"),
            426,
        ),
        (
            "handshake without Connection: upgrade",
            format!("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n{KEY}{V13}\r\n"),
            400,
        ),
        (
            "handshake from a disallowed origin",
            format!("{UPGRADE}{KEY}{V13}Origin: http://evil.example\r\n\r\n"),
            403,
        ),
        (
            "handshake from a null origin",
            format!("{UPGRADE}{KEY}{V13}Origin: null\r\n\r\n"),
            403,
        ),
        (
            "handshake from another local port",
            format!("{UPGRADE}{KEY}{V13}Origin: http://localhost:1\r\n\r\n"),
            403,
        ),
        (
            "handshake with since given twice",
            format!(
                "GET /?since=a-1&since=a-2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{KEY}{V13}\r\n"
            ),
            400,
        ),
        (
            "an unknown path",
            "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            404,
        ),
        (
            "POST /",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".into(),
            405,
        ),
    ];
    for (case, raw, expected) in &cases {
        let response = http(server.addr, raw.as_bytes()).await;
        assert_eq!(response.status, *expected, "{case}");
        if *expected == 426 {
            let version = response.header("sec-websocket-version");
            assert_eq!(version, Some("13"), "{case}: says which version it speaks");
        }
        if !case.starts_with("malformed") {
            let body: Value = serde_json::from_str(&response.body)
                .unwrap_or_else(|_| panic!("{case}: {response:?}"));
            assert!(body["error"].is_string(), "{case}: {body}");
        }
        watcher.next_tick_only(case).await;
    }
    // The server's own origins are allowed.
    let port = server.addr.port();
    for origin in [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        let raw = format!("{UPGRADE}{KEY}{V13}Origin: {origin}\r\n\r\n");
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.unwrap();
        assert!(line.starts_with("HTTP/1.1 101"), "{origin}: {line}");
    }
    assert_eq!(
        server.hub.stats.broadcasts.load(Ordering::Relaxed),
        watcher_ticks(&server)
    );
    let rejected = &server.rejections();
    assert_eq!(rejected.count(Reason::Origin), 3);
    assert_eq!(rejected.count(Reason::Handshake), 7);
    assert_eq!(rejected.count(Reason::MalformedHttp), 6);
    println!("tried {} bad requests and handshakes", cases.len());
}

/// Every broadcast so far was a tick (nothing else reached the hub).
fn watcher_ticks(server: &Server<Utf8Bytes>) -> u64 {
    server.hub.last_id().map_or(0, |id| id.seq)
}

#[tokio::test]
async fn protocol_violations_get_the_close_code_rfc_6455_asks_for() {
    let server = start(&["--interval", "150ms", "--max-message", "1024"]).await;
    let mut watcher = Watcher::connect(server.addr).await;
    let hey = br#"{"message":"Hey there"}"#;
    let mut fragmented_ping = frame(PING, b"", true);
    fragmented_ping.extend(frame(FIN | PING, b"", true));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("an unmasked frame", frame(FIN | TEXT, hey, false), 1002),
        ("a reserved data opcode", frame(FIN | 0x3, hey, true), 1002),
        (
            "a reserved control opcode",
            frame(FIN | 0xB, b"", true),
            1002,
        ),
        (
            "a reserved bit set",
            frame(FIN | 0x40 | TEXT, hey, true),
            1002,
        ),
        (
            "a continuation with nothing to continue",
            frame(FIN, hey, true),
            1002,
        ),
        ("a fragmented control frame", fragmented_ping, 1002),
        (
            "a control frame over 125 bytes",
            frame(FIN | PING, &[0; 126], true),
            1002,
        ),
        (
            "invalid UTF-8 text",
            frame(FIN | TEXT, &[b'{', 0xff, 0xfe, b'}'], true),
            1007,
        ),
        (
            "a close frame with code 999",
            frame(FIN | CLOSE, &999u16.to_be_bytes(), true),
            1002,
        ),
        (
            "a close frame with reserved code 1005",
            frame(FIN | CLOSE, &1005u16.to_be_bytes(), true),
            1002,
        ),
        (
            "a close frame with a 1-byte payload",
            frame(FIN | CLOSE, &[3], true),
            1002,
        ),
        (
            "a message over the size limit",
            frame(FIN | TEXT, &[b' '; 2000], true),
            1009,
        ),
        ("a binary frame", frame(FIN | BINARY, hey, true), 1003),
    ];
    for (case, bytes, expected) in &cases {
        let mut socket = RawSocket::open(server.addr).await;
        socket.send(bytes).await;
        assert_eq!(socket.close_code().await, Some(*expected), "{case}");
        watcher.next_tick_only(case).await;
    }
    assert_eq!(
        server.hub.stats.broadcasts.load(Ordering::Relaxed),
        watcher_ticks(&server)
    );
    eventually("every refused socket left the hub", || {
        server.hub.client_count() == 1
    })
    .await;
    let rejected = server.rejections();
    assert_eq!(rejected.count(Reason::Protocol), 10);
    assert_eq!(rejected.count(Reason::InvalidUtf8), 1);
    assert_eq!(rejected.count(Reason::TooLarge), 1);
    assert_eq!(rejected.count(Reason::Binary), 1);
    let metrics = http(server.addr, &testing::request("GET", "/metrics", &[], "")).await;
    for line in [
        "demo_rejected_total{reason=\"protocol\"} 10",
        "demo_rejected_total{reason=\"invalid_utf8\"} 1",
        "demo_rejected_total{reason=\"binary\"} 1",
        "demo_connected_clients 1",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "/metrics lacks {line}:\n{}",
            metrics.body
        );
    }
    println!("tried {} protocol violations", cases.len());
}

#[tokio::test]
async fn messages_that_are_not_the_expected_json_get_an_error_and_are_not_broadcast() {
    let server = start(&["--interval", "150ms"]).await;
    let mut watcher = Watcher::connect(server.addr).await;
    let mut socket = RawSocket::open(server.addr).await;
    let cases: &[&[u8]] = &[
        b"Hey there",
        b"",
        b"{",
        b"[1, 2]",
        b"\"message\"",
        b"{}",
        b"{\"message\": 7}",
        b"{\"message\": null}",
        b"{\"text\": \"hi\"}",
        b"{\"message\": [\"a\"]}",
    ];
    for case in cases {
        socket.send(&frame(FIN | TEXT, case, true)).await;
        let error = socket.next_error().await;
        assert!(
            error.contains("expected a JSON object with a string \"message\""),
            "{error}"
        );
        watcher.next_tick_only(&String::from_utf8_lossy(case)).await;
    }
    assert_eq!(
        server.rejections().count(Reason::BadMessage),
        cases.len() as u64
    );
    // The connection is still good: a valid message is broadcast to everyone.
    socket
        .send(&frame(FIN | TEXT, br#"{"message":"Hey there"}"#, true))
        .await;
    loop {
        let message = watcher.next().await;
        if message["message"] == "Something changed" {
            break;
        }
    }
    println!("tried {} malformed messages", cases.len());
}

#[tokio::test]
async fn a_flood_over_the_rate_limit_gets_errors_then_close_1008() {
    // One token every 10 s: only the burst of 5 gets through, however slow the run.
    let server = start(&["--interval", "150ms", "--rate", "0.1", "--burst", "5"]).await;
    let mut watcher = Watcher::connect(server.addr).await;
    let mut socket = RawSocket::open(server.addr).await;
    let hey = frame(FIN | TEXT, br#"{"message":"Hey there"}"#, true);
    let flood: Vec<u8> = (0..50).flat_map(|_| hey.clone()).collect();
    socket.send(&flood).await;
    let mut changed = 0;
    let mut errors = 0;
    let code = loop {
        let (opcode, payload) = socket.read_frame().await.expect("a close frame");
        if opcode == CLOSE {
            break u16::from_be_bytes([payload[0], payload[1]]);
        }
        let message: Value = serde_json::from_slice(&payload).unwrap();
        if message["message"] == "Something changed" {
            changed += 1;
        } else if message["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("rate limit"))
        {
            errors += 1;
        }
    };
    assert_eq!(code, 1008);
    // The watcher sees the burst get through, no more, and the ticks carry on.
    let mut broadcast = 0;
    let mut ticks_after_close = 0;
    while ticks_after_close < 2 {
        match watcher.next().await["message"].as_str() {
            Some("Something changed") => broadcast += 1,
            Some("Hello hello!") => ticks_after_close += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(broadcast, 5);
    // The flooder may be cut off before all of them reach it.
    assert!(changed <= broadcast);
    assert!(errors >= 1, "the client was told before being cut off");
    assert!(server.rejections().rate_limited.load(Ordering::Relaxed) >= 5);
}

#[tokio::test]
async fn connections_over_the_cap_get_503_and_the_others_carry_on() {
    let server = start(&["--interval", "150ms", "--max-clients", "3"]).await;
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(Watcher::connect(server.addr).await);
    }
    let response = http(server.addr, format!("{UPGRADE}{KEY}{V13}\r\n").as_bytes()).await;
    assert_eq!(response.status, 503);
    assert_eq!(server.rejections().count(Reason::Capacity), 1);
    for watcher in &mut watchers {
        watcher.next_tick_only("a connection over the cap").await;
    }
    // A place frees up, and the next client gets in.
    drop(watchers.pop());
    eventually("the leaving client freed its place", || {
        server.hub.client_count() == 2
    })
    .await;
    Watcher::connect(server.addr).await;
}
