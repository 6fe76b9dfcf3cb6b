//! The WebSocket demo, driven by real WebSocket clients over loopback.

mod common;

use std::process::Stdio;

use common::{PING, RawSocket, Resumer, close_code, connect_and_greet, next_json, seq, start};
use futures_util::SinkExt;
use serde_json::json;
use shared::testing::resume::Readers;
use shared::testing::{self, PATIENCE, eventually, http, request, stalled};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const BINARY: &str = env!("CARGO_BIN_EXE_websocket-demo");

#[tokio::test]
async fn gotcha_comes_first_then_the_tick_reaches_every_client() {
    let server = start(&["--interval", "100ms"]).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect_and_greet(server.addr, "").await);
    }
    for client in &mut clients {
        let tick = next_json(client).await;
        assert_eq!(tick["message"], "Hello hello!");
        assert!(seq(&tick) >= 1);
    }
}

#[tokio::test]
async fn a_message_reaches_every_client_as_something_changed() {
    let server = start(&["--interval", "60m"]).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect_and_greet(server.addr, "").await);
    }
    let hey = json!({ "message": "Hey there" }).to_string();
    clients[1].send(Message::text(hey)).await.unwrap();
    for client in &mut clients {
        let changed = next_json(client).await;
        assert_eq!(changed["message"], "Something changed", "{changed}");
        assert_eq!(seq(&changed), 1);
    }
}

#[tokio::test]
async fn a_message_near_the_size_limit_is_taken() {
    let server = start(&["--interval", "60m"]).await;
    let mut client = connect_and_greet(server.addr, "").await;
    // Far more than the 256-byte read buffer, within the 64 KiB limit.
    let big = json!({ "message": "x".repeat(60 * 1024) }).to_string();
    client.send(Message::text(big)).await.unwrap();
    assert_eq!(next_json(&mut client).await["message"], "Something changed");
}

#[tokio::test]
async fn closed_clients_leave_the_hub() {
    let server = start(&["--interval", "60m"]).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect_and_greet(server.addr, "").await);
    }
    eventually("three clients are in the hub", || {
        server.hub.client_count() == 3
    })
    .await;
    let mut leaving = clients.pop().unwrap();
    leaving.close(None).await.unwrap();
    eventually("the closed client left", || server.hub.client_count() == 2).await;
    drop(clients.pop());
    eventually("the dropped client left", || server.hub.client_count() == 1).await;
}

#[tokio::test]
async fn a_client_that_goes_away_without_a_close_frame_is_not_counted_as_refused() {
    let server = start(&["--interval", "60m"]).await;
    let before = testing::Tally::of(server.rejections());
    drop(connect_and_greet(server.addr, "").await);
    eventually("the dropped client left", || server.hub.client_count() == 0).await;
    before
        .assert_counted(server.rejections(), None, "a dropped client")
        .await;
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_their_types() {
    let server = start(&[]).await;
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<html"),
        ("/client.js", "text/javascript; charset=utf-8", "WebSocket"),
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
async fn resuming_replays_exactly_what_was_missed_then_live_messages() {
    let server = start(&["--interval", "60m"]).await;
    for (k, m) in [(1, 0), (1, 1), (3, 7), (20, 100), (50, 1000)] {
        let mut client = connect_and_greet(server.addr, "").await;
        let mut last = None;
        for _ in 0..k {
            server.hub.publish("before");
            last = Some(next_json(&mut client).await);
        }
        let last = last.unwrap();
        client.close(None).await.unwrap();
        drop(client);
        for _ in 0..m {
            server.hub.publish("while away");
        }
        let since = last["id"].as_str().unwrap();
        let mut client = connect_and_greet(server.addr, &format!("?since={since}")).await;
        for expected in seq(&last) + 1..=seq(&last) + m {
            let replayed = next_json(&mut client).await;
            assert_eq!(
                (seq(&replayed), &replayed["message"]),
                (expected, &json!("while away"))
            );
        }
        server.hub.publish("live");
        let live = next_json(&mut client).await;
        assert_eq!(
            (seq(&live), &live["message"]),
            (seq(&last) + m + 1, &json!("live"))
        );
    }
}

#[tokio::test]
async fn clients_dropping_at_random_points_of_a_burst_miss_nothing() {
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
    let readers = Readers::start::<Resumer>(&[server.addr], 6, BURST, 400);
    eventually("every reader is connected", || {
        server.hub.client_count() == 6
    })
    .await;
    testing::publish_burst(&server.hub, BURST, "burst").await;
    readers.saw_every_id_once(1).await;
}

#[tokio::test]
async fn ids_the_server_cannot_replay_get_the_missed_notice() {
    let server = start(&["--interval", "60m", "--replay", "4"]).await;
    let first = server.hub.publish("old").to_string();
    for _ in 0..9 {
        server.hub.publish("newer");
    }
    for (since, reason) in [
        (first.as_str(), "expired"),
        ("1-5", "restarted"),
        ("nonsense", "unknown"),
    ] {
        let mut client = connect_and_greet(server.addr, &format!("?since={since}")).await;
        let notice = next_json(&mut client).await;
        assert_eq!(
            notice,
            json!({ "missed": true, "since": since, "reason": reason })
        );
        server.hub.publish("live");
        assert_eq!(next_json(&mut client).await["message"], "live");
    }
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_and_leaves() {
    let server = start(&["--interval", "60m", "--heartbeat", "100ms"]).await;
    let mut silent = RawSocket::handshake(server.addr).await;
    eventually("the silent client joined", || {
        server.hub.client_count() == 1
    })
    .await;
    let sent = silent.opcodes_until_dropped().await;
    assert!(sent.contains(&PING), "the server pinged before giving up");
    eventually("the silent client left the hub", || {
        server.hub.client_count() == 0
    })
    .await;
}

#[tokio::test]
async fn stalled_clients_are_cut_off_and_cannot_hold_up_the_others() {
    let stall = async |addr| RawSocket::handshake(addr).await.into_inner();
    let first = async |addr| {
        let mut client = connect_and_greet(addr, "").await;
        let hey = json!({ "message": "Hey there" }).to_string();
        client.send(Message::text(hey)).await.unwrap();
        assert_eq!(next_json(&mut client).await["message"], "Something changed");
        client.close(None).await.unwrap();
    };
    stalled::check::<Resumer>(BINARY, stall, first).await;
}

fn binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BINARY);
    command
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn a_port_in_use_or_a_bad_option_is_one_clear_line_and_status_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for (args, expected) in [
        (vec!["--port", port.as_str()], "cannot listen on 127.0.0.1:"),
        (vec!["--port", "http"], "invalid value 'http' for '--port"),
        (vec!["--interval", "soon"], "not a duration"),
        (vec!["--interval", "0s"], "too short"),
        (vec!["--heartbeat", "2000m"], "out of range"),
        (
            vec!["--max-clients", "0"],
            "invalid value '0' for '--max-clients",
        ),
        (vec!["--frobnicate"], "unexpected argument '--frobnicate'"),
    ] {
        let output = timeout(PATIENCE, binary().args(&args).output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn sigterm_closes_every_client_with_going_away_and_exits() {
    let (server, addr) = testing::spawn_binary(BINARY).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect_and_greet(addr, "").await);
    }
    testing::terminate(server).await;
    for client in &mut clients {
        assert_eq!(close_code(client).await, Some(1001));
    }
}
