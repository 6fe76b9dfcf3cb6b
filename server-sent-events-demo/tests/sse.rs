//! The Server-Sent Events demo, read with a raw HTTP reader over loopback.

mod common;

use common::start;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use shared::testing::resume::Readers;
use shared::testing::{self, EventStream, PATIENCE, eventually, http, request, stalled};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

const BINARY: &str = env!("CARGO_BIN_EXE_server-sent-events-demo");

async fn post(addr: SocketAddr, content_type: &str, body: &str) -> testing::Response {
    http(
        addr,
        &request("POST", "/api", &[("Content-Type", content_type)], body),
    )
    .await
}

#[tokio::test]
async fn a_stream_is_served_as_an_uncached_event_stream() {
    let server = start(&["--interval", "60m"]).await;
    let stream = EventStream::open(server.addr, "/sse", &[]).await;
    let head = &stream.head;
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
}

#[tokio::test]
async fn gotcha_comes_first_then_the_tick_reaches_every_stream() {
    let server = start(&["--interval", "100ms"]).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(EventStream::open(server.addr, "/sse", &[]).await);
    }
    for stream in &mut streams {
        let tick = stream.next_event().await;
        assert_eq!(tick.json(), json!({ "message": "Hello hello!" }));
        assert!(tick.seq() >= 1);
    }
}

#[tokio::test]
async fn a_post_reaches_every_stream_as_something_changed() {
    let server = start(&["--interval", "60m"]).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(EventStream::open(server.addr, "/sse", &[]).await);
    }
    let answer = post(
        server.addr,
        "application/json",
        r#"{"message":"Hey there"}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let id = serde_json::from_str::<Value>(&answer.body).unwrap()["id"].clone();
    for stream in &mut streams {
        let changed = stream.next_event().await;
        assert_eq!(changed.json(), json!({ "message": "Something changed" }));
        assert_eq!(json!(changed.id), id);
    }
}

#[tokio::test]
async fn closed_streams_leave_the_hub() {
    let server = start(&["--interval", "60m"]).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(EventStream::open(server.addr, "/sse", &[]).await);
    }
    eventually("three streams are in the hub", || {
        server.hub.client_count() == 3
    })
    .await;
    drop(streams.pop());
    eventually("the closed stream left", || server.hub.client_count() == 2).await;
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_their_types() {
    let server = start(&[]).await;
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<html"),
        (
            "/client.js",
            "text/javascript; charset=utf-8",
            "EventSource",
        ),
        (
            "/common.js",
            "text/javascript; charset=utf-8",
            "textContent",
        ),
        ("/style.css", "text/css; charset=utf-8", "{"),
    ] {
        let response = http(server.addr, &request("GET", path, &[], "")).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert!(response.body.contains(needle), "{path} lacks {needle}");
    }
}

#[tokio::test]
async fn bad_posts_get_a_json_error_and_broadcast_nothing() {
    let server = start(&["--interval", "60m", "--max-message", "100"]).await;
    let mut stream = EventStream::open(server.addr, "/sse", &[]).await;
    let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(100));
    let json = [("Content-Type", "application/json")];
    let text = [("Content-Type", "text/plain")];
    let api = |headers: &[(&str, &str)], body: &str| request("POST", "/api", headers, body);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("not JSON", api(&json, "not json"), 400),
        ("a JSON array", api(&json, "[1,2]"), 400),
        ("a number as message", api(&json, r#"{"message":7}"#), 400),
        ("text/plain", api(&text, r#"{"message":"x"}"#), 415),
        ("no Content-Type", api(&[], r#"{"message":"x"}"#), 415),
        ("a body over the limit", api(&json, &long), 413),
        ("GET /api", request("GET", "/api", &[], ""), 405),
        ("PUT /api", request("PUT", "/api", &json, "{}"), 405),
    ];
    for (case, raw, status) in &cases {
        let response = http(server.addr, raw).await;
        assert_eq!(response.status, *status, "{case}");
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{case}"
        );
        let error = serde_json::from_str::<Value>(&response.body).unwrap();
        assert!(
            error["error"].as_str().is_some_and(|text| !text.is_empty()),
            "{case}"
        );
    }
    assert_eq!(server.hub.stats.broadcasts.load(Ordering::Relaxed), 0);
    // The stream carries on, and the next event is the next good broadcast.
    let good = post(
        server.addr,
        "application/json; charset=utf-8",
        r#"{"message":"ok"}"#,
    )
    .await;
    assert_eq!(good.status, 200);
    assert_eq!(stream.next_event().await.seq(), 1);
}

#[tokio::test]
async fn resuming_replays_exactly_what_was_missed_then_live_events() {
    let server = start(&["--interval", "60m"]).await;
    for (k, m, by_header) in [
        (1, 0, true),
        (1, 1, false),
        (3, 7, true),
        (20, 100, false),
        (50, 1000, true),
    ] {
        let mut stream = EventStream::open(server.addr, "/sse", &[]).await;
        let mut last = None;
        for _ in 0..k {
            server.hub.publish("before");
            last = Some(stream.next_event().await);
        }
        drop(stream);
        for _ in 0..m {
            server.hub.publish("while away");
        }
        let last = last.unwrap();
        let since = last.id.clone().unwrap();
        let mut stream = if by_header {
            EventStream::open(server.addr, "/sse", &[("Last-Event-ID", &since)]).await
        } else {
            EventStream::open(server.addr, &format!("/sse?lastEventId={since}"), &[]).await
        };
        for expected in last.seq() + 1..=last.seq() + m {
            let replayed = stream.next_event().await;
            assert_eq!(
                (replayed.seq(), replayed.json()),
                (expected, json!({ "message": "while away" }))
            );
        }
        server.hub.publish("live");
        let live = stream.next_event().await;
        assert_eq!(
            (live.seq(), live.json()),
            (last.seq() + m + 1, json!({ "message": "live" }))
        );
    }
}

#[tokio::test]
async fn streams_dropping_at_random_points_of_a_burst_miss_nothing() {
    const BURST: u64 = 2000;
    // Room for the whole burst, so this test is about resuming, not slowness.
    let server = start(&[
        "--interval",
        "60m",
        "--replay",
        "4096",
        "--client-queue",
        "4096",
    ])
    .await;
    let readers = Readers::start::<EventStream>(&[server.addr], 6, BURST, 400);
    eventually("every reader is connected", || {
        server.hub.client_count() == 6
    })
    .await;
    testing::publish_burst(&server.hub, BURST, "burst").await;
    readers.saw_every_id_once(1).await;
}

#[tokio::test]
async fn ids_the_server_cannot_replay_get_the_missed_event() {
    let server = start(&["--interval", "60m", "--replay", "4"]).await;
    let first = server.hub.publish("old").to_string();
    for _ in 0..9 {
        server.hub.publish("newer");
    }
    for (since, reason) in [(first.as_str(), "expired"), ("1-5", "restarted")] {
        let mut stream = EventStream::open(server.addr, "/sse", &[("Last-Event-ID", since)]).await;
        let notice = stream.next_event().await;
        assert_eq!(notice.event.as_deref(), Some("missed"));
        assert_eq!(
            notice.json(),
            json!({ "missed": true, "since": since, "reason": reason })
        );
        server.hub.publish("live");
        assert_eq!(stream.next_event().await.json()["message"], "live");
    }
}

#[tokio::test]
async fn an_idle_stream_carries_a_ping_event_every_heartbeat() {
    let server = start(&["--interval", "60m", "--heartbeat", "100ms"]).await;
    let mut stream = EventStream::open(server.addr, "/sse", &[]).await;
    for _ in 0..3 {
        let block = stream.next_block().await.unwrap();
        assert!(block.is_ping(), "{block:?}");
    }
}

#[tokio::test]
async fn streams_are_told_different_retry_times() {
    let server = start(&["--interval", "60m"]).await;
    let mut retries = std::collections::HashSet::new();
    for _ in 0..10 {
        let stream = EventStream::open(server.addr, "/sse", &[]).await;
        retries.insert(stream.retry);
    }
    assert!(retries.len() > 1, "all ten got {retries:?}");
}

#[tokio::test]
async fn stalled_streams_are_cut_off_and_cannot_hold_up_the_others() {
    let stall = async |addr| {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let get = request("GET", "/sse", &[], "");
        stream.write_all(&get).await.unwrap();
        stream
    };
    let first = async |addr| {
        let hey = json!({ "message": "Hey there" }).to_string();
        assert_eq!(post(addr, "application/json", &hey).await.status, 200);
    };
    stalled::check::<EventStream>(BINARY, stall, first).await;
}

#[tokio::test]
async fn a_port_in_use_is_one_clear_line_and_status_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let command = tokio::process::Command::new(BINARY)
        .args(["--port", &port])
        .output();
    let output = timeout(PATIENCE, command).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_ends_every_stream_and_exits() {
    let (server, addr) = testing::spawn_binary(BINARY).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(EventStream::open(addr, "/sse", &[]).await);
    }
    testing::terminate(server).await;
    for stream in &mut streams {
        assert_eq!(stream.next_block().await, None, "the stream ends");
    }
}
