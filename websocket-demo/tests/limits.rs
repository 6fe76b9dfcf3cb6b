//! Limits that keep one client, or a crowd, from taking the server: the
//! heartbeat whatever the writer does, the page's own ping, the cap and the
//! rate limit per address, and a crowd reconnecting after a restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    FIN, KEY, RawSocket, TEXT, UPGRADE, V13, Watcher, connect, connect_and_greet, frame, next_json,
    start,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use shared::policy::Reason;
use shared::testing::{self, PATIENCE, Random, eventually, http, request};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_client_that_neither_reads_nor_answers_is_dropped_even_while_its_writes_block() {
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
    let _stalled = RawSocket::handshake(server.addr).await;
    eventually("the client joined", || server.hub.client_count() == 1).await;
    // Far more than the socket's buffers take: its writer blocks.
    let kib = "x".repeat(1024);
    testing::publish_burst(&server.hub, 5000, &kib).await;
    let published = Instant::now();
    eventually("the client was dropped", || server.hub.client_count() == 0).await;
    let took = published.elapsed();
    assert!(took < heartbeat * 4, "dropped after {took:?}");
}

#[tokio::test]
async fn the_pages_ping_is_answered_to_it_alone_and_never_broadcast() {
    let server = start(&["--interval", "60m"]).await;
    let mut watcher = Watcher::connect(server.addr).await;
    let mut page = connect_and_greet(server.addr, "").await;
    page.send(Message::text(r#"{"ping":7}"#)).await.unwrap();
    assert_eq!(next_json(&mut page).await, json!({ "pong": 7 }));
    server.hub.publish("after the ping");
    assert_eq!(watcher.next().await["message"], "after the ping");
}

#[tokio::test]
async fn one_address_gets_at_most_its_share_of_connections() {
    let server = start(&["--interval", "60m", "--max-clients-per-address", "3"]).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect_and_greet(server.addr, "").await);
    }
    let before = testing::Tally::of(server.rejections());
    let handshake = format!("{UPGRADE}{KEY}{V13}\r\n");
    let refused = http(server.addr, handshake.as_bytes()).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.body.contains("your address"), "{}", refused.body);
    before
        .assert_counted(
            server.rejections(),
            Some(Reason::AddressLimit),
            "a 4th connection",
        )
        .await;
    // At the cap, health still answers.
    let health = http(server.addr, &request("GET", "/healthz", &[], "")).await;
    assert_eq!(health.status, 200);
    drop(clients.pop());
    eventually("a place freed up", || server.hub.client_count() == 2).await;
    connect_and_greet(server.addr, "").await;
}

#[tokio::test]
async fn the_rate_limit_holds_across_all_connections_of_one_address() {
    // One token every 10 s: only the address's burst of 4 gets through.
    let server = start(&["--interval", "60m", "--rate", "0.1", "--burst", "4"]).await;
    let mut watcher = Watcher::connect(server.addr).await;
    let mut senders = Vec::new();
    for _ in 0..4 {
        senders.push(connect_and_greet(server.addr, "").await);
    }
    // Two messages from each of four connections: each connection is within
    // its own burst, the address is not.
    for sender in &mut senders {
        for _ in 0..2 {
            sender
                .send(Message::text(r#"{"message":"hi"}"#))
                .await
                .unwrap();
        }
    }
    eventually("four were refused", || {
        server.rejections().rate_limited.load(Ordering::Relaxed) == 4
    })
    .await;
    let mut changed = 0;
    while changed < 4 {
        assert_eq!(watcher.next().await["message"], "Something changed");
        changed += 1;
    }
    assert_eq!(server.hub.stats.broadcasts.load(Ordering::Relaxed), 4);
}

/// What a crowd of [`old_page`]s did.
#[derive(Default)]
struct Crowd {
    /// Connections opened.
    opened: AtomicUsize,
    /// Set once the first server has stopped: connections opened from then
    /// on reach the second.
    first_gone: AtomicBool,
    /// Hellos sent to the second server.
    said_to_second: AtomicUsize,
}

/// A client as the page was before it learned better: it says Hello on every
/// open, and comes back after a drop, resuming, after a random pause.
async fn old_page(addr: std::net::SocketAddr, mut random: Random, crowd: Arc<Crowd>) {
    let mut since = String::new();
    loop {
        let to_second = crowd.first_gone.load(Ordering::Relaxed);
        let Ok(Ok((mut socket, _))) = timeout(
            PATIENCE,
            tokio_tungstenite::connect_async(format!("ws://{addr}/{since}")),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(20 + random.below(200))).await;
            continue;
        };
        crowd.opened.fetch_add(1, Ordering::Relaxed);
        let hello = socket.send(Message::text(r#"{"message":"Hello"}"#)).await;
        if hello.is_ok() && to_second {
            crowd.said_to_second.fetch_add(1, Ordering::Relaxed);
        }
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                if let Some(id) = message["id"].as_str() {
                    since = format!("?since={id}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20 + random.below(200))).await;
    }
}

#[tokio::test]
async fn a_crowd_reconnecting_after_a_restart_causes_work_in_proportion_to_its_size() {
    const CROWD: usize = 200;
    let first = start(&["--interval", "60m"]).await;
    let port = first.addr.port().to_string();
    let counts = Arc::new(Crowd::default());
    let random = Random::from_clock();
    let crowd: Vec<_> = (0..CROWD)
        .map(|index| {
            let page = old_page(first.addr, random.fork(index as u64), counts.clone());
            tokio::spawn(page)
        })
        .collect();
    eventually("the crowd is in", || first.hub.client_count() == CROWD).await;
    first.shutdown();
    assert!(first.stopped().await);
    drop(first);
    counts.first_gone.store(true, Ordering::Relaxed);

    let second = start(&["--interval", "60m", "--port", &port]).await;
    eventually("the crowd is back", || {
        counts.opened.load(Ordering::Relaxed) >= 2 * CROWD && second.hub.client_count() == CROWD
    })
    .await;
    // Every Hello said to it is broadcast or rate limited.
    eventually("every Hello was taken", || {
        let taken = second.hub.stats.broadcasts.load(Ordering::Relaxed)
            + second.rejections().rate_limited.load(Ordering::Relaxed);
        taken as usize >= counts.said_to_second.load(Ordering::Relaxed)
    })
    .await;
    let deliveries = second.hub.stats.deliveries.load(Ordering::Relaxed) as usize;
    let broadcasts = second.hub.stats.broadcasts.load(Ordering::Relaxed);
    println!(
        "{CROWD} clients, each saying Hello as it came back: {broadcasts} broadcasts, \
         {deliveries} deliveries ({:.1} a client)",
        deliveries as f64 / CROWD as f64
    );
    // Each Hello broadcast to everyone would make CROWD x CROWD = 40,000.
    // The address's rate limit lets its burst (20) and rate (10/s) through.
    assert!(deliveries <= 40 * CROWD, "{deliveries} deliveries");
    for page in crowd {
        page.abort();
    }
}

#[tokio::test]
async fn an_id_too_long_to_be_one_is_refused_and_never_echoed() {
    let server = start(&["--interval", "60m"]).await;
    let since = "9".repeat(65);
    let handshake = format!(
        "GET /?since={since} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}{V13}\r\n"
    );
    let refused = http(server.addr, handshake.as_bytes()).await;
    assert_eq!(refused.status, 400);
    assert!(!refused.body.contains(&since), "{}", refused.body);
    // 64 bytes is still taken (and reported as an unknown id).
    let mut client = connect(server.addr, &format!("?since={}", "9".repeat(64))).await;
    assert_eq!(next_json(&mut client).await["message"], "Gotcha");
    assert_eq!(next_json(&mut client).await["reason"], "unknown");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_with_1013_and_told_so() {
    let server = start(&["--interval", "60m", "--client-queue", "64"]).await;
    let mut stalled = RawSocket::open(server.addr).await;
    eventually("the client joined", || server.hub.client_count() == 1).await;
    // Far more than the socket's buffers and the client's queue take.
    let kib = "x".repeat(1024);
    for _ in 0..4000 {
        server.hub.publish(&kib);
        tokio::task::yield_now().await;
        if server.hub.stats.slow_disconnects.load(Ordering::Relaxed) == 1 {
            break;
        }
    }
    eventually("the client was cut off", || {
        server.hub.stats.slow_disconnects.load(Ordering::Relaxed) == 1
    })
    .await;
    // Reading again: what was on its way, whole, then the close frame.
    assert_eq!(stalled.close_code().await, Some(1013));
}

#[tokio::test]
async fn a_client_that_reads_its_answers_slowly_still_gets_every_one_in_order() {
    const MESSAGES: usize = 3000;
    let server = start(&["--interval", "60m", "--rate", "100000", "--burst", "100000"]).await;
    // A small receive window: the server's answers back up while it reads on.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let socket = RawSocket::greeted(RawSocket::handshake_on(stream).await).await;
    let (reading, mut writing) = socket.into_inner().into_split();
    // Numbers, not the expected JSON: each is answered with an error that
    // names it, to this client alone.
    let flood: Vec<u8> = (0..MESSAGES)
        .flat_map(|n| frame(FIN | TEXT, n.to_string().as_bytes(), true))
        .collect();
    let sending = tokio::spawn(async move {
        tokio::io::AsyncWriteExt::write_all(&mut writing, &flood)
            .await
            .unwrap();
        writing
    });
    let mut reading = tokio::io::BufReader::new(reading);
    for n in 0..MESSAGES {
        let error = timeout(PATIENCE, read_text(&mut reading))
            .await
            .expect("an answer in time");
        let error: serde_json::Value = serde_json::from_str(&error).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(&format!("`{n}`")), "answer {n}: {error}");
    }
    let _writing = sending.await.unwrap();
    assert_eq!(
        server.rejections().count(Reason::BadMessage),
        MESSAGES as u64
    );
}

/// The next text frame's payload (servers never mask or fragment here).
async fn read_text<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) -> String {
    use tokio::io::AsyncReadExt;
    loop {
        let mut head = [0; 2];
        reader.read_exact(&mut head).await.unwrap();
        let length = match head[1] & 0x7f {
            126 => u64::from(reader.read_u16().await.unwrap()),
            127 => reader.read_u64().await.unwrap(),
            length => u64::from(length),
        };
        let mut payload = vec![0; length as usize];
        reader.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == TEXT {
            return String::from_utf8(payload).unwrap();
        }
    }
}
