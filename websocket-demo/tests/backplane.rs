//! Several instances sharing one Redis stream, each test with a Redis of its
//! own (`redis-server` on a free port, keeping nothing on disk).

mod common;

use std::time::Duration;

use common::{
    CLOSE, Client, FIN, PING, RawSocket, Resumer, TEXT, close_code, connect_and_greet, frame,
    next_json, seq, start,
};
use futures_util::SinkExt;
use serde_json::{Value, json};
use shared::Server;
use shared::policy::Reason;
use shared::testing::hostile;
use shared::testing::redis::Redis;
use shared::testing::resume::Readers;
use shared::testing::{PATIENCE, eventually, http, request};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

fn up(server: &Server) -> bool {
    server
        .publisher
        .backplane()
        .is_some_and(|backplane| backplane.up)
}

/// `count` instances on the Redis at `url`, each with `options` too, once
/// they have all reached it.
async fn instances(count: usize, url: &str, options: &[&str]) -> Vec<Server> {
    let mut servers = Vec::new();
    for _ in 0..count {
        let mut all = vec!["--redis", url];
        all.extend_from_slice(options);
        servers.push(start(&all).await);
    }
    eventually("every instance reached Redis", || servers.iter().all(up)).await;
    servers
}

#[tokio::test]
async fn a_message_sent_on_one_instance_reaches_every_client_of_both_once_with_one_id() {
    let redis = Redis::start();
    let servers = instances(2, &redis.url(), &["--interval", "60m"]).await;
    let mut clients = Vec::new();
    for server in [&servers[0], &servers[1], &servers[0], &servers[1]] {
        clients.push(connect_and_greet(server.addr, "").await);
    }
    clients[0]
        .send(Message::text(r#"{"message":"hi"}"#))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for client in &mut clients {
        let changed = next_json(client).await;
        assert_eq!(changed["message"], "Something changed", "{changed}");
        ids.push(changed["id"].clone());
    }
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "{ids:?}");
    // Once: the next thing each sees is the next broadcast.
    let next = servers[1].publisher.publish("next").await.unwrap();
    for client in &mut clients {
        let message = next_json(client).await;
        assert_eq!(
            message,
            json!({ "id": next.to_string(), "message": "next" })
        );
    }
}

#[tokio::test]
async fn clients_resuming_on_the_other_instance_at_random_points_of_a_burst_miss_nothing() {
    const BURST: u64 = 1500;
    let redis = Redis::start();
    let servers = instances(
        2,
        &redis.url(),
        &[
            "--interval",
            "60m",
            "--replay",
            "4096",
            "--client-queue",
            "4096",
        ],
    )
    .await;
    // Every reconnection goes to the other instance.
    let addrs = [servers[0].addr, servers[1].addr];
    let readers = Readers::start::<Resumer>(&addrs, 6, BURST, 300);
    eventually("every reader is connected", || {
        servers
            .iter()
            .map(|server| server.hub.client_count())
            .sum::<usize>()
            == 6
    })
    .await;
    let mut first = None;
    for round in 0..BURST {
        let server = &servers[(round % 2) as usize];
        let id = server.publisher.publish("burst").await.unwrap();
        first.get_or_insert(id.seq);
    }
    readers.saw_every_id_once(first.unwrap()).await;
}

#[tokio::test]
async fn three_instances_tick_once_an_interval_and_another_takes_over_from_a_dead_ticker() {
    let redis = Redis::start();
    let interval = Duration::from_millis(300);
    let mut servers = instances(3, &redis.url(), &["--interval", "300ms"]).await;
    let mut watchers = Vec::new();
    for server in &servers {
        watchers.push(connect_and_greet(server.addr, "").await);
    }
    // Ten intervals: ten ticks, not thirty, and the same ten on each instance.
    let mut ids: Vec<Vec<u64>> = vec![Vec::new(); 3];
    let watched = Instant::now();
    while watched.elapsed() < interval * 10 {
        for (watcher, seen) in watchers.iter_mut().zip(&mut ids) {
            let tick = next_json(watcher).await;
            assert_eq!(tick["message"], "Hello hello!");
            seen.push(seq(&tick));
        }
    }
    let ticks = ids[0].len();
    println!("{ticks} ticks in {:?}", watched.elapsed());
    assert!((9..=12).contains(&ticks), "{ticks} ticks: {ids:?}");
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "{ids:?}");

    // Stop the instance that ticks most; the others go on within two intervals.
    let ticker = (0..3)
        .max_by_key(|index| servers[*index].publisher.backplane().unwrap().ticks)
        .unwrap();
    let dead = servers.remove(ticker);
    watchers.remove(ticker);
    dead.shutdown();
    dead.stopped().await;
    let last = *ids[0].last().unwrap();
    let stopped = Instant::now();
    let mut watcher = watchers.remove(0);
    loop {
        let tick = next_json(&mut watcher).await;
        if seq(&tick) > last + 1 {
            break;
        }
    }
    let took = stopped.elapsed();
    println!("ticks went on {took:?} after the ticking instance stopped");
    assert!(took <= interval * 2 + interval / 2, "{took:?}");
}

#[tokio::test]
async fn with_redis_absent_at_start_the_server_serves_and_says_so_until_it_comes() {
    let mut redis = Redis::start();
    redis.stop();
    let server = start(&["--interval", "60m", "--redis", &redis.url()]).await;
    let health = http(server.addr, &request("GET", "/healthz", &[], "")).await;
    assert_eq!(health.status, 503, "{health:?}");
    let body: Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(body["backplane"]["up"], false, "{body}");
    assert!(
        body["backplane"]["detail"]
            .as_str()
            .unwrap()
            .contains("cannot reach"),
        "{body}"
    );
    let page = http(server.addr, &request("GET", "/", &[], "")).await;
    assert_eq!(page.status, 200);
    let mut client = connect_and_greet(server.addr, "").await;
    client
        .send(Message::text(r#"{"message":"hi"}"#))
        .await
        .unwrap();
    let error = next_json(&mut client).await;
    assert!(
        error["error"].as_str().unwrap().contains("out of reach"),
        "{error}"
    );

    redis.restart();
    eventually("the server reached Redis", || up(&server)).await;
    let health = http(server.addr, &request("GET", "/healthz", &[], "")).await;
    assert_eq!(health.status, 200, "{health:?}");
    client
        .send(Message::text(r#"{"message":"hi"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await["message"], "Something changed");
}

#[tokio::test]
async fn while_redis_is_away_the_server_stays_idle() {
    let mut redis = Redis::start();
    redis.stop();
    let binary = env!("CARGO_BIN_EXE_websocket-demo");
    let server =
        hostile::Binary::start(binary, &["--interval", "100ms", "--redis", &redis.url()]).await;
    let mut client = connect_and_greet(server.addr, "").await;
    let before = server.cpu_seconds();
    // Ticks due, a client connected, Redis away: retries back off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = server.cpu_seconds() - before;
    println!("CPU used in 3 s with Redis away: {used:.2} s");
    assert!(used < 0.3, "{used} s of CPU in 3 s");
    client
        .send(Message::text(r#"{"message":"hi"}"#))
        .await
        .unwrap();
    assert!(next_json(&mut client).await["error"].is_string());
}

#[tokio::test]
async fn redis_lost_and_back_empty_keeps_clients_and_tells_them_what_was_lost() {
    let mut redis = Redis::start();
    let servers = instances(2, &redis.url(), &["--interval", "60m"]).await;
    let mut clients = Vec::new();
    for server in &servers {
        clients.push(connect_and_greet(server.addr, "").await);
    }
    let before = servers[0].publisher.publish("before").await.unwrap();
    for client in &mut clients {
        assert_eq!(seq(&next_json(client).await), before.seq);
    }

    redis.stop();
    eventually("both noticed", || servers.iter().all(|server| !up(server))).await;
    // Meanwhile: a clear error, and the clients stay.
    clients[0]
        .send(Message::text(r#"{"message":"lost?"}"#))
        .await
        .unwrap();
    let error = next_json(&mut clients[0]).await;
    assert!(error["error"].is_string(), "{error}");

    redis.restart();
    eventually("both reached Redis again", || servers.iter().all(up)).await;
    let reconnects = servers[0].publisher.backplane().unwrap().reconnects;
    assert_eq!(reconnects, 1);
    // Redis kept nothing: the stream begins again, with a new run. Clients
    // are let go to resume, and are told.
    servers[1].publisher.publish("after").await.unwrap();
    for (client, server) in clients.iter_mut().zip(&servers) {
        assert_eq!(close_code(client).await, Some(1012));
        let since = format!("?since={before}");
        let mut back = connect_and_greet(server.addr, &since).await;
        let notice = next_json(&mut back).await;
        assert_eq!(notice["reason"], "restarted", "{notice}");
    }
}

#[tokio::test]
async fn the_stream_deleted_under_running_servers_is_told_as_restarted() {
    let redis = Redis::start();
    let servers = instances(2, &redis.url(), &["--interval", "60m"]).await;
    let before = servers[0].publisher.publish("before").await.unwrap();
    eventually("both delivered it", || {
        servers
            .iter()
            .all(|server| server.hub.last_id() == Some(before))
    })
    .await;
    assert_eq!(redis.cli(&["DEL", "demo:websocket"]), "1");
    let after = servers[0].publisher.publish("after").await.unwrap();
    assert!(after.run > before.run, "a new run: {before} then {after}");
    for server in &servers {
        eventually("the new run arrived", || {
            server.hub.last_id() == Some(after)
        })
        .await;
        let since = format!("?since={before}");
        let mut back = connect_and_greet(server.addr, &since).await;
        let notice = next_json(&mut back).await;
        assert_eq!(notice["reason"], "restarted", "{notice}");
    }
}

#[tokio::test]
async fn metrics_report_the_backplane() {
    let redis = Redis::start();
    let servers = instances(1, &redis.url(), &["--interval", "60m"]).await;
    let server = &servers[0];
    let mut client = connect_and_greet(server.addr, "").await;
    server.publisher.publish("timed").await.unwrap();
    next_json(&mut client).await;
    let metrics = http(server.addr, &request("GET", "/metrics", &[], "")).await;
    for line in [
        "demo_backplane_up 1",
        "demo_backplane_reconnects_total 0",
        "demo_backplane_publish_errors_total 0",
        "demo_backplane_delivery_seconds_count 1",
    ] {
        assert!(
            metrics.body.lines().any(|each| each == line),
            "/metrics lacks {line}:\n{}",
            metrics.body
        );
    }
}

/// What a sender heard about one batch of its messages, up to the pong it
/// asked for after them.
#[derive(Debug, Default)]
struct Heard {
    /// Not broadcast: Redis out of reach.
    refused: usize,
    /// Sent to Redis but not confirmed: it may have gone out.
    unconfirmed: usize,
}

/// A client that sends messages, and reads all the time (and so answers
/// pings) whatever it is waiting for: what it reads goes to `heard`.
struct Sender {
    sending: futures_util::stream::SplitSink<Client, Message>,
    heard: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Sender {
    async fn connect(addr: std::net::SocketAddr) -> Sender {
        use futures_util::StreamExt;
        let (sending, mut reading) = connect_and_greet(addr, "").await.split();
        let (tell, heard) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = reading.next().await {
                if let Message::Text(text) = message {
                    let _ = tell.send(serde_json::from_str(&text).unwrap());
                }
            }
        });
        Sender { sending, heard }
    }

    async fn next(&mut self) -> Value {
        let next = timeout(PATIENCE, self.heard.recv()).await;
        next.expect("a message in time")
            .expect("the connection is still open")
    }

    /// Sends `count` messages back to back, then the page's ping `n`, and
    /// reads until its pong: every error in between is about one of them.
    async fn batch(&mut self, count: usize, n: u64) -> Heard {
        for _ in 0..count {
            let message = Message::text(r#"{"message":"busy"}"#);
            self.sending.feed(message).await.unwrap();
        }
        let ping = Message::text(format!(r#"{{"ping":{n}}}"#));
        self.sending.send(ping).await.unwrap();
        let mut heard = Heard::default();
        loop {
            let message = self.next().await;
            if message == json!({ "pong": n }) {
                return heard;
            }
            let Some(error) = message["error"].as_str() else {
                assert_eq!(message["message"], "Something changed", "{message}");
                continue;
            };
            if error.contains("may have gone out") {
                heard.unconfirmed += 1;
            } else {
                assert!(error.contains("out of reach"), "{error}");
                heard.refused += 1;
            }
        }
    }
}

/// A client that sends one message a fragment at a time, each well within
/// the limit, answering pings as it goes, for longer than the limit: the
/// close code it gets.
async fn trickle(addr: std::net::SocketAddr) -> Option<u16> {
    let mut socket = RawSocket::open(addr).await;
    socket.send(&frame(TEXT, br#"{"message":"#, true)).await;
    let mut fragments = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = fragments.tick() => socket.send(&frame(0, b" ", true)).await,
            read = socket.read_frame() => match read {
                Some((CLOSE, payload)) if payload.len() >= 2 => {
                    return Some(u16::from_be_bytes([payload[0], payload[1]]));
                }
                Some((PING, payload)) => socket.send(&frame(FIN | 0xA, &payload, true)).await,
                Some(_) => {}
                None => return None,
            },
        }
    }
}

#[tokio::test]
async fn a_busy_sender_under_a_slow_redis_is_slowed_never_cut_off_and_loses_nothing() {
    const BATCH: usize = 150;
    let redis = Redis::start();
    // Limits far shorter than Redis's stalls: the session publishing a
    // message must not count them against the client.
    let options = [
        "--interval",
        "60m",
        "--rate",
        "10000",
        "--burst",
        "1000",
        "--request-timeout",
        "2s",
        "--heartbeat",
        "1s",
    ];
    let servers = instances(1, &redis.url(), &options).await;
    let server = &servers[0];
    // Redis knows the script from then on.
    let first = server.publisher.publish("primed").await.unwrap();
    eventually("the first broadcast came back", || {
        server.hub.last_id() == Some(first)
    })
    .await;
    // Reads (and so answers pings) all along, until the end.
    let mut watcher = connect_and_greet(server.addr, "").await;
    let watching = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            let message = next_json(&mut watcher).await;
            seqs.push(seq(&message));
            if message["message"] == "end" {
                return seqs;
            }
            assert_eq!(message["message"], "Something changed", "{message}");
        }
    });
    let mut sender = Sender::connect(server.addr).await;
    let before = slow_and_pings(server);

    // Slow: Redis frozen for 200 ms out of every 220 (as DEBUG SLEEP 0.2 in
    // a loop would, without enabling DEBUG), while the first batch goes.
    let slow = async {
        loop {
            redis.pause();
            sleep(Duration::from_millis(200)).await;
            redis.resume();
            sleep(Duration::from_millis(20)).await;
        }
    };
    let heard_slow = tokio::select! {
        heard = sender.batch(BATCH, 1) => heard,
        () = slow => unreachable!(),
    };
    redis.resume();

    // Frozen for 6 s: past the answer timeout (3 s), the reader's (4 s),
    // the message limit (2 s) and two heartbeats (2 s). Meanwhile another
    // client trickles one message past the limit.
    redis.pause();
    let thaw = async {
        sleep(Duration::from_secs(6)).await;
        redis.resume();
    };
    let (heard_frozen, trickled, ()) =
        tokio::join!(sender.batch(BATCH, 2), trickle(server.addr), thaw);
    assert_eq!(trickled, Some(1008), "a real trickler is still cut off");

    eventually("the server reached Redis again", || up(server)).await;
    let last = server.publisher.publish("end").await.unwrap();
    let seqs = watching.await.unwrap();
    // The sender is still connected, and hears the end too.
    while sender.next().await["message"] != "end" {}

    println!("while Redis was slow: {heard_slow:?}; frozen: {heard_frozen:?}");
    let broadcast = seqs.len() as u64 - 1;
    let refused = (heard_slow.refused + heard_frozen.refused) as u64;
    let unconfirmed = (heard_slow.unconfirmed + heard_frozen.unconfirmed) as u64;
    let sent = 2 * BATCH as u64;
    println!("{sent} sent, {broadcast} broadcast, {refused} refused, {unconfirmed} unconfirmed");
    // Each one broadcast or refused; an unconfirmed one either way; none twice.
    assert!(
        broadcast >= sent - refused - unconfirmed && broadcast <= sent - refused,
        "{broadcast} broadcast of {sent}: {refused} refused, {unconfirmed} unconfirmed"
    );
    let expected: Vec<u64> = (first.seq + 1..=last.seq).collect();
    assert_eq!(seqs, expected, "every broadcast once, in order");
    assert!(
        heard_frozen.refused + heard_frozen.unconfirmed > 0,
        "Redis was frozen"
    );
    let after = slow_and_pings(server);
    assert_eq!(
        after.0,
        before.0 + 1,
        "only the trickler was refused as slow"
    );
    assert_eq!(after.1, before.1, "no client was cut off for pings");
}

/// The refusals counted as slow requests and as too many pings.
fn slow_and_pings(server: &Server) -> (u64, u64) {
    let rejections = server.rejections();
    (
        rejections.count(Reason::SlowRequest),
        rejections.count(Reason::TooManyPings),
    )
}
