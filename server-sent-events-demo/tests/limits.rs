//! Limits that keep one client, or a crowd, from taking the server: the
//! heartbeat whatever hyper's writer does, and the cap per address.

mod common;

use common::start;
use std::time::Duration;

use shared::policy::Reason;
use shared::testing::{self, EventStream, eventually, http, request};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::time::Instant;

#[tokio::test]
async fn a_stream_that_stops_reading_is_cut_within_two_heartbeats_once_its_socket_fills() {
    let heartbeat = Duration::from_millis(300);
    let server = start(&[
        "--interval",
        "60m",
        "--heartbeat",
        "300ms",
        "--client-queue",
        "100000",
    ])
    .await;
    // A small receive window, and nothing read: the socket fills soon.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    stalled
        .write_all(&request("GET", "/sse", &[], ""))
        .await
        .unwrap();
    eventually("the stream opened", || server.hub.client_count() == 1).await;
    let kib = "x".repeat(1024);
    testing::publish_burst(&*server.publisher, 5000, &kib).await;
    let published = Instant::now();
    eventually("the stream was cut", || server.hub.client_count() == 0).await;
    let took = published.elapsed();
    assert!(took < heartbeat * 4, "cut after {took:?}");
    assert_eq!(
        server
            .hub
            .stats
            .slow_disconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "cut by its heartbeat, not by its queue"
    );
}

#[tokio::test]
async fn one_address_gets_at_most_its_share_of_streams() {
    let server = start(&["--interval", "60m", "--max-clients-per-address", "2"]).await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        streams.push(EventStream::open(server.addr, "/sse", &[]).await);
    }
    let before = testing::Tally::of(server.rejections());
    let refused = http(server.addr, &request("GET", "/sse", &[], "")).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    before
        .assert_counted(
            server.rejections(),
            Some(Reason::AddressLimit),
            "a 3rd stream",
        )
        .await;
    let health = http(server.addr, &request("GET", "/healthz", &[], "")).await;
    assert_eq!(health.status, 200, "health answers at the cap");
    drop(streams.pop());
    eventually("a place freed up", || server.hub.client_count() == 1).await;
    EventStream::open(server.addr, "/sse", &[]).await;
}

#[tokio::test]
async fn an_id_too_long_to_be_one_is_refused_and_never_echoed() {
    let server = start(&["--interval", "60m"]).await;
    let since = "9".repeat(65);
    for raw in [
        request("GET", "/sse", &[("Last-Event-ID", &since)], ""),
        request("GET", &format!("/sse?lastEventId={since}"), &[], ""),
    ] {
        let refused = http(server.addr, &raw).await;
        assert_eq!(refused.status, 400);
        assert!(!refused.body.contains(&since), "{}", refused.body);
    }
    let mut stream =
        EventStream::open(server.addr, "/sse", &[("Last-Event-ID", &"9".repeat(64))]).await;
    let notice = stream.next_event().await;
    assert_eq!(notice.json()["reason"], "unknown");
}

/// POSTs a message saying it is forwarded for `client`; the status.
async fn post_for(addr: std::net::SocketAddr, client: &str) -> u16 {
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Forwarded-For", client),
    ];
    let raw = request("POST", "/api", &headers, r#"{"message":"hi"}"#);
    http(addr, &raw).await.status
}

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_from_a_trusted_proxy() {
    // A burst of 2, and a token every 10 s.
    let limits = ["--interval", "60m", "--rate", "0.1", "--burst", "2"];
    let behind = start(&[&limits[..], &["--trusted-proxy", "127.0.0.1"]].concat()).await;
    // Through the trusted proxy, each client has its own limit.
    for client in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(post_for(behind.addr, client).await, 200, "{client}");
        assert_eq!(post_for(behind.addr, client).await, 200, "{client}");
        assert_eq!(post_for(behind.addr, client).await, 429, "{client}");
    }
    // From anyone else the header is ignored: it cannot dodge the limit.
    let direct = start(&limits).await;
    assert_eq!(post_for(direct.addr, "203.0.113.1").await, 200);
    assert_eq!(post_for(direct.addr, "203.0.113.2").await, 200);
    assert_eq!(post_for(direct.addr, "203.0.113.3").await, 429);
}
