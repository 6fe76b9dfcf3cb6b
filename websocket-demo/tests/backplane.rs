//! Several instances sharing one Redis stream, each test with a Redis of its
//! own (`redis-server` on a free port, keeping nothing on disk).

mod common;

use std::time::Duration;

use common::{Resumer, close_code, connect_and_greet, next_json, seq, start};
use futures_util::SinkExt;
use serde_json::{Value, json};
use shared::Server;
use shared::testing::hostile;
use shared::testing::redis::Redis;
use shared::testing::resume::Readers;
use shared::testing::{eventually, http, request};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

fn up(server: &Server) -> bool {
    server
        .publisher
        .backplane()
        .is_some_and(|backplane| backplane.up())
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

/// The entry id of `id` in the stream: `<run>-<seq>`, both in decimal.
fn entry(run: u64, seq: u64) -> String {
    format!("{run}-{seq}")
}

#[tokio::test]
async fn repro_an_entry_written_by_hand_breaks_an_instance_started_after_it() {
    let redis = Redis::start();
    let servers = instances(1, &redis.url(), &["--interval", "60m"]).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(servers[0].publisher.publish("before").await.unwrap());
    }
    let top = ids[2];
    let hand = redis.cli(&[
        "XADD",
        "demo:websocket",
        &entry(top.run, top.seq + 1),
        "note",
        "written by hand",
    ]);
    println!("XADD by hand: {hand}");
    for _ in 0..3 {
        match servers[0].publisher.publish("after").await {
            Ok(id) => ids.push(id),
            Err(error) => println!("publish failed: {error}"),
        }
    }
    println!("ids: {ids:?}");
    let later = instances(1, &redis.url(), &["--interval", "60m"]).await;
    let mut client = connect_and_greet(later[0].addr, "").await;
    let live = servers[0].publisher.publish("live").await.unwrap();
    assert_eq!(seq(&next_json(&mut client).await), live.seq);
}
