//! Bad input over raw TCP: every case gets its exact status or close code and
//! is counted under its own reason, nothing it sends is broadcast, and a
//! watching client still gets the next tick.

mod common;

use std::sync::atomic::Ordering;

use common::{BINARY, CLOSE, FIN, KEY, PING, RawSocket, TEXT, UPGRADE, V13, Watcher, frame, start};
use serde_json::Value;
use shared::policy::Reason;
use shared::testing::{self, Tally, eventually, http};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::test]
async fn bad_requests_and_handshakes_get_their_status() {
    let server = start(&["--interval", "150ms"]).await;
    let mut watcher = Watcher::connect(server.addr).await;
    // Over the 16 KiB limit on a request head, far below hyper's own 400 KB.
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let malformed = Some(Reason::MalformedHttp);
    let handshake = Some(Reason::Handshake);
    let origin = Some(Reason::Origin);
    // 404 and 405 are answered by warp's recover: no client's fault to count.
    let not_counted = None;
    let cases: Vec<(&str, String, u16, Option<Reason>)> = vec![
        (
            "malformed: garbage request line",
            "GARBAGE\r\n\r\n".into(),
            400,
            malformed,
        ),
        (
            "malformed: bad method token",
            "G@T / HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
            malformed,
        ),
        (
            "malformed: header without a colon",
            "GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n".into(),
            400,
            malformed,
        ),
        (
            "malformed: header name with a space",
            "GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n".into(),
            400,
            malformed,
        ),
        (
            "malformed: unsupported HTTP version",
            "GET / HTTP/3.0\r\nHost: x\r\n\r\n".into(),
            400,
            malformed,
        ),
        (
            "malformed: headers over the size limit",
            long_header,
            431,
            Some(Reason::TooLarge),
        ),
        (
            "handshake without a key",
            format!("{UPGRADE}{V13}\r\n"),
            400,
            handshake,
        ),
        (
            "handshake with a short key",
            format!("{UPGRADE}Sec-WebSocket-Key: abc==\r\n{V13}\r\n"),
            400,
            handshake,
        ),
        (
            "handshake with a non-base64 key",
            format!("{UPGRADE}Sec-WebSocket-Key: ****************AAAAA==\r\n{V13}\r\n"),
            400,
            handshake,
        ),
        (
            "handshake with version 8",
            format!("{UPGRADE}{KEY}Sec-WebSocket-Version: 8\r\n\r\n"),
            426,
            handshake,
        ),
        (
            "handshake without a version",
            format!("{UPGRADE}{KEY}\r\n"),
            426,
            handshake,
        ),
        (
            "handshake without Connection: upgrade",
            format!("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n{KEY}{V13}\r\n"),
            400,
            handshake,
        ),
        (
            "handshake from a disallowed origin",
            format!("{UPGRADE}{KEY}{V13}Origin: http://evil.example\r\n\r\n"),
            403,
            origin,
        ),
        (
            "handshake from a null origin",
            format!("{UPGRADE}{KEY}{V13}Origin: null\r\n\r\n"),
            403,
            origin,
        ),
        (
            "handshake from another local port",
            format!("{UPGRADE}{KEY}{V13}Origin: http://localhost:1\r\n\r\n"),
            403,
            origin,
        ),
        (
            "handshake with since given twice",
            format!(
                "GET /?since=a-1&since=a-2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{KEY}{V13}\r\n"
            ),
            400,
            handshake,
        ),
        (
            "an unknown path",
            "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            404,
            not_counted,
        ),
        (
            "POST /",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".into(),
            405,
            not_counted,
        ),
    ];
    for (case, raw, expected, reason) in &cases {
        let before = Tally::of(server.rejections());
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
        before
            .assert_counted(server.rejections(), *reason, case)
            .await;
    }
    let last = server.hub.last_id().expect("ticks were broadcast");
    watcher.only_ticks_through(last).await;
    println!("tried {} bad requests and handshakes", cases.len());
}

#[tokio::test]
async fn the_servers_own_origins_may_open_a_websocket() {
    let server = start(&["--interval", "60m"]).await;
    let port = server.addr.port();
    // Kept open: a socket dropped without a close frame is a separate matter.
    let mut opened = Vec::new();
    for origin in [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        let before = Tally::of(server.rejections());
        let raw = format!("{UPGRADE}{KEY}{V13}Origin: {origin}\r\n\r\n");
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(stream);
        let head = testing::read_head(&mut reader).await;
        assert_eq!(head.status, 101, "{origin}: {head:?}");
        before
            .assert_counted(server.rejections(), None, &origin)
            .await;
        opened.push(reader);
    }
}

#[tokio::test]
async fn protocol_violations_get_the_close_code_rfc_6455_asks_for() {
    let server = start(&["--interval", "150ms", "--max-message", "1024"]).await;
    let mut watcher = Watcher::connect(server.addr).await;
    let hey = br#"{"message":"Hey there"}"#;
    let mut fragmented_ping = frame(PING, b"", true);
    fragmented_ping.extend(frame(FIN | PING, b"", true));
    let protocol = Reason::Protocol;
    let cases: Vec<(&str, Vec<u8>, u16, Reason)> = vec![
        (
            "an unmasked frame",
            frame(FIN | TEXT, hey, false),
            1002,
            protocol,
        ),
        (
            "a reserved data opcode",
            frame(FIN | 0x3, hey, true),
            1002,
            protocol,
        ),
        (
            "a reserved control opcode",
            frame(FIN | 0xB, b"", true),
            1002,
            protocol,
        ),
        (
            "a reserved bit set",
            frame(FIN | 0x40 | TEXT, hey, true),
            1002,
            protocol,
        ),
        (
            "a continuation with nothing to continue",
            frame(FIN, hey, true),
            1002,
            protocol,
        ),
        (
            "a fragmented control frame",
            fragmented_ping,
            1002,
            protocol,
        ),
        (
            "a control frame over 125 bytes",
            frame(FIN | PING, &[0; 126], true),
            1002,
            protocol,
        ),
        (
            "invalid UTF-8 text",
            frame(FIN | TEXT, &[b'{', 0xff, 0xfe, b'}'], true),
            1007,
            Reason::InvalidUtf8,
        ),
        (
            "a close frame with code 999",
            frame(FIN | CLOSE, &999u16.to_be_bytes(), true),
            1002,
            protocol,
        ),
        (
            "a close frame with reserved code 1005",
            frame(FIN | CLOSE, &1005u16.to_be_bytes(), true),
            1002,
            protocol,
        ),
        (
            "a close frame with a 1-byte payload",
            frame(FIN | CLOSE, &[3], true),
            1002,
            protocol,
        ),
        (
            "a message over the size limit",
            frame(FIN | TEXT, &[b' '; 2000], true),
            1009,
            Reason::TooLarge,
        ),
        (
            "a binary frame",
            frame(FIN | BINARY, hey, true),
            1003,
            Reason::Binary,
        ),
    ];
    for (case, bytes, expected, reason) in &cases {
        let before = Tally::of(server.rejections());
        let mut socket = RawSocket::open(server.addr).await;
        socket.send(bytes).await;
        assert_eq!(socket.close_code().await, Some(*expected), "{case}");
        watcher.next_tick_only(case).await;
        before
            .assert_counted(server.rejections(), Some(*reason), case)
            .await;
    }
    let last = server.hub.last_id().expect("ticks were broadcast");
    watcher.only_ticks_through(last).await;
    eventually("every refused socket left the hub", || {
        server.hub.client_count() == 1
    })
    .await;
    println!("tried {} protocol violations", cases.len());
}

#[tokio::test]
async fn metrics_count_refused_frames_by_reason() {
    let server = start(&["--interval", "60m", "--max-message", "1024"]).await;
    let _watcher = Watcher::connect(server.addr).await;
    let hey = br#"{"message":"Hey there"}"#;
    for violation in [
        frame(FIN | TEXT, hey, false),
        frame(FIN | TEXT, &[b'{', 0xff, 0xfe, b'}'], true),
        frame(FIN | TEXT, &[b' '; 2000], true),
        frame(FIN | BINARY, hey, true),
    ] {
        let mut socket = RawSocket::open(server.addr).await;
        socket.send(&violation).await;
        assert!(socket.close_code().await.is_some());
    }
    eventually("all four are counted and gone", || {
        let rejected = server.rejections();
        let counted: u64 = Reason::ALL.iter().map(|r| rejected.count(*r)).sum();
        counted == 4 && server.hub.client_count() == 1
    })
    .await;
    let metrics = http(server.addr, &testing::request("GET", "/metrics", &[], "")).await;
    for line in [
        "demo_rejected_total{reason=\"protocol\"} 1",
        "demo_rejected_total{reason=\"invalid_utf8\"} 1",
        "demo_rejected_total{reason=\"too_large\"} 1",
        "demo_rejected_total{reason=\"binary\"} 1",
        "demo_rejected_total{reason=\"origin\"} 0",
        "demo_connected_clients 1",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "/metrics lacks {line}:\n{}",
            metrics.body
        );
    }
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
        let shown = String::from_utf8_lossy(case);
        let before = Tally::of(server.rejections());
        socket.send(&frame(FIN | TEXT, case, true)).await;
        let error = socket.next_error().await;
        assert!(
            error.contains("expected a JSON object with a string \"message\""),
            "{error}"
        );
        watcher.next_tick_only(&shown).await;
        before
            .assert_counted(server.rejections(), Some(Reason::BadMessage), &shown)
            .await;
    }
    let last = server.hub.last_id().expect("ticks were broadcast");
    watcher.only_ticks_through(last).await;
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
    let before = Tally::of(server.rejections());
    let response = http(server.addr, format!("{UPGRADE}{KEY}{V13}\r\n").as_bytes()).await;
    assert_eq!(response.status, 503);
    let case = "a connection over the cap";
    before
        .assert_counted(server.rejections(), Some(Reason::Capacity), case)
        .await;
    for watcher in &mut watchers {
        watcher.next_tick_only(case).await;
    }
}

#[tokio::test]
async fn a_client_leaving_frees_its_place_under_the_cap() {
    let server = start(&["--interval", "60m", "--max-clients", "3"]).await;
    let mut watchers = Vec::new();
    for _ in 0..3 {
        watchers.push(Watcher::connect(server.addr).await);
    }
    let full = http(server.addr, format!("{UPGRADE}{KEY}{V13}\r\n").as_bytes()).await;
    assert_eq!(full.status, 503, "the cap is reached");
    drop(watchers.pop());
    eventually("the leaving client freed its place", || {
        server.hub.client_count() == 2
    })
    .await;
    Watcher::connect(server.addr).await;
}
