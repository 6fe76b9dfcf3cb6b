//! Several instances sharing one Redis stream, each test with a Redis of its
//! own (`redis-server` on a free port, keeping nothing on disk).

mod common;

use std::time::Duration;

use common::{Resumer, close_code, connect_and_greet, next_json, seq, start};
use futures_util::SinkExt;
use serde_json::{Value, json};
use shared::Server;
use shared::core::EventId;
use shared::testing::hostile;
use shared::testing::redis::Redis;
use shared::testing::resume::Readers;
use shared::testing::{eventually, http, id_of, request};
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

// Entries the servers did not write (issue 16): whatever another program
// puts in the stream, no instance panics, and every client gets every
// broadcast after its id, in order, or the missed notice first.

const STREAM: &str = "demo:websocket";

/// The --max-message of these tests: a longer message in the stream is
/// skipped.
const MAX_MESSAGE: usize = 4096;

const OPTIONS: [&str; 4] = ["--interval", "60m", "--max-message", "4096"];

/// Appends an entry with `id` (or `*`) and `fields` to the stream, as
/// another program would; its id.
async fn xadd(redis: &Redis, id: &str, fields: &[(&str, &[u8])]) -> EventId {
    let client = redis::Client::open(redis.url()).expect("a Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let mut command = redis::cmd("XADD");
    command.arg(STREAM).arg(id);
    for (name, value) in fields {
        command.arg(*name).arg(*value);
    }
    let added: String = command
        .query_async(&mut connection)
        .await
        .expect("XADD works");
    let (run, seq) = added.split_once('-').expect("<run>-<seq>");
    EventId {
        run: run.parse().expect("a run"),
        seq: seq.parse().expect("a seq"),
    }
}

/// An id as the stream writes it: both parts in decimal.
fn entry(run: u64, seq: u64) -> String {
    format!("{run}-{seq}")
}

/// What another writer may leave in the stream after `newest`: the next id
/// with no message (as in the issue), a message that is not UTF-8, one over
/// --max-message, an entry of a later run, and a message like any other,
/// which is a broadcast. Their ids, and the broadcast's.
async fn write_foreign_entries(redis: &Redis, newest: EventId) -> (Vec<EventId>, EventId) {
    let large = "x".repeat(MAX_MESSAGE + 1);
    let next = entry(newest.run, newest.seq + 1);
    let later_run = entry(newest.run + 1, 1);
    let entries = vec![
        xadd(redis, &next, &[("note", b"written by hand")]).await,
        xadd(redis, "*", &[("message", &[0xff, 0xfe, b'x'])]).await,
        xadd(redis, "*", &[("message", large.as_bytes())]).await,
        xadd(redis, &later_run, &[("note", b"of another run")]).await,
        xadd(redis, "*", &[("message", b"from another program")]).await,
    ];
    let broadcast = entries[4];
    (entries, broadcast)
}

/// Each of `ids`, and the ids just before and after it.
fn around(ids: &[EventId]) -> Vec<EventId> {
    let mut sinces: Vec<EventId> = ids
        .iter()
        .flat_map(|id| {
            let before = id.seq.saturating_sub(1);
            let after = id.seq + 1;
            [(id.run, before), (id.run, id.seq), (id.run, after)]
        })
        .map(|(run, seq)| EventId { run, seq })
        .collect();
    sinces.sort();
    sinces.dedup();
    sinces
}

/// The broadcasts `client` reads up to `marker`, and the missed notice if
/// one came first.
async fn read_through(
    client: &mut common::Client,
    marker: EventId,
) -> (Option<Value>, Vec<EventId>) {
    let mut notice = None;
    let mut ids = Vec::new();
    loop {
        let message = next_json(client).await;
        if message["missed"] == true {
            assert!(
                notice.is_none() && ids.is_empty(),
                "{message} after {ids:?}"
            );
            notice = Some(message);
            continue;
        }
        let id = id_of(message["id"].as_str().expect("a broadcast has an id"));
        ids.push(id);
        if id == marker {
            return (notice, ids);
        }
    }
}

/// What a client resuming from `since` on the server at `addr` got: the
/// missed notice if one came, then the broadcasts through the marker.
struct Resumed {
    addr: std::net::SocketAddr,
    since: EventId,
    notice: Option<Value>,
    got: Vec<EventId>,
}

/// Clients resume on every server from each of `sinces` (none past the
/// newest broadcast), then a marker is published and read by each.
async fn resume(servers: &[Server], sinces: &[EventId]) -> (EventId, Vec<Resumed>) {
    let addrs: Vec<_> = servers.iter().map(|server| server.addr).collect();
    resume_at(&addrs, &*servers[0].publisher, sinces).await
}

/// [`resume`] on the servers at `addrs`, the marker published by `publisher`.
async fn resume_at(
    addrs: &[std::net::SocketAddr],
    publisher: &dyn shared::core::Publisher,
    sinces: &[EventId],
) -> (EventId, Vec<Resumed>) {
    let mut clients = Vec::new();
    for addr in addrs {
        for since in sinces {
            let client = connect_and_greet(*addr, &format!("?since={since}")).await;
            clients.push((*addr, *since, client));
        }
    }
    let marker = publisher.publish("marker").await.unwrap();
    let mut resumed = Vec::new();
    for (addr, since, mut client) in clients {
        let (notice, got) = read_through(&mut client, marker).await;
        resumed.push(Resumed {
            addr,
            since,
            notice,
            got,
        });
    }
    (marker, resumed)
}

/// Clients resume on every server from each of `sinces`: each must get
/// every one of `broadcasts` after its id, in order, then the marker, with
/// no notice from `served_from` on (all is in the replay buffer).
async fn resume_everywhere(
    servers: &[Server],
    sinces: &[EventId],
    broadcasts: &mut Vec<EventId>,
    served_from: EventId,
) {
    let (marker, resumed) = resume(servers, sinces).await;
    broadcasts.push(marker);
    check_resumed(resumed, broadcasts, served_from);
}

/// Each must have got every one of `broadcasts` after its id, in order,
/// with no notice from `served_from` on.
fn check_resumed(resumed: Vec<Resumed>, broadcasts: &[EventId], served_from: EventId) {
    let marker = *broadcasts.last().expect("the marker");
    for Resumed {
        addr,
        since,
        notice,
        got,
    } in resumed
    {
        let after: Vec<EventId> = broadcasts
            .iter()
            .filter(|id| **id > since)
            .copied()
            .collect();
        match notice {
            None => assert_eq!(got, after, "resumed on {addr} from {since}"),
            Some(notice) => {
                assert!(since < served_from, "{notice} on {addr} from {since}");
                assert_eq!(got, [marker], "after {notice} on {addr}");
            }
        }
    }
}

/// A counter of `/metrics`, by its whole name with labels.
async fn metric(server: &Server, name: &str) -> u64 {
    metric_at(server.addr, name).await
}

async fn metric_at(addr: std::net::SocketAddr, name: &str) -> u64 {
    let metrics = http(addr, &request("GET", "/metrics", &[], "")).await;
    let line = format!("{name} ");
    metrics
        .body
        .lines()
        .find_map(|each| each.strip_prefix(&line)?.parse().ok())
        .unwrap_or_else(|| panic!("/metrics lacks {name}:\n{}", metrics.body))
}

/// Nothing panicked, no broadcast was lost, and each entry that was no
/// broadcast was counted under its reason.
async fn assert_skipped_not_lost(server: &Server, no_message: u64) {
    assert_skipped_not_lost_at(server.addr, no_message).await;
}

async fn assert_skipped_not_lost_at(addr: std::net::SocketAddr, no_message: u64) {
    assert_eq!(metric_at(addr, "demo_panics_total").await, 0);
    assert_eq!(metric_at(addr, "demo_backplane_losses_total").await, 0);
    for (reason, count) in [
        ("no_message", no_message),
        ("not_text", 1),
        ("too_large", 1),
    ] {
        let name = format!("demo_backplane_skipped_entries_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_at(addr, &name).await, count, "{reason} on {addr}");
    }
}

#[tokio::test]
async fn entries_another_writer_puts_in_a_shared_stream_break_no_instance_and_skip_nothing() {
    let redis = Redis::start();
    let mut servers = instances(2, &redis.url(), &OPTIONS).await;
    let mut live = Vec::new();
    for server in &servers {
        live.push(connect_and_greet(server.addr, "").await);
    }
    let mut broadcasts = Vec::new();
    for round in 0..3 {
        let server = &servers[round % 2];
        broadcasts.push(server.publisher.publish("before").await.unwrap());
    }
    let (foreign, broadcast) = write_foreign_entries(&redis, broadcasts[2]).await;
    broadcasts.push(broadcast);
    // Appends go on past them (the next seq was taken by hand).
    for round in 0..3 {
        let server = &servers[round % 2];
        broadcasts.push(server.publisher.publish("after").await.unwrap());
    }
    assert!(broadcasts.is_sorted(), "{broadcasts:?}");
    // One more instance, started after them, serves as the others do.
    servers.extend(instances(1, &redis.url(), &OPTIONS).await);
    let mut late = connect_and_greet(servers[2].addr, "").await;

    let mut sinces = around(&[&broadcasts[..], &foreign[..]].concat());
    sinces.retain(|since| since <= broadcasts.last().unwrap());
    let first = broadcasts[0];
    let stream_began = EventId {
        run: first.run,
        seq: 0,
    };
    let mut all = broadcasts.clone();
    resume_everywhere(&servers, &sinces, &mut all, stream_began).await;
    let marker = *all.last().unwrap();
    // The clients that were there all along were not let go for entries
    // that were no broadcast, and missed none.
    for client in &mut live {
        assert_eq!(read_through(client, marker).await, (None, all.clone()));
    }
    assert_eq!(read_through(&mut late, marker).await, (None, vec![marker]));
    for server in &servers {
        assert_skipped_not_lost(server, 2).await;
    }
}

#[tokio::test]
async fn instances_on_a_stream_another_program_began_serve_and_resume_as_usual() {
    let redis = Redis::start();
    // Ids of its own scheme (milliseconds), before any instance started.
    let large = "x".repeat(MAX_MESSAGE + 1);
    let foreign = vec![
        xadd(&redis, "*", &[("note", b"begun by another program")]).await,
        xadd(&redis, "*", &[("message", b"from another program")]).await,
        xadd(&redis, "*", &[("message", &[0xc3, 0x28])]).await,
        xadd(&redis, "*", &[("message", large.as_bytes())]).await,
    ];
    let mut broadcasts = vec![foreign[1]];
    let servers = instances(2, &redis.url(), &OPTIONS).await;
    let mut live = connect_and_greet(servers[1].addr, "").await;
    for round in 0..3 {
        let server = &servers[round % 2];
        broadcasts.push(server.publisher.publish("ours").await.unwrap());
    }
    assert!(broadcasts.is_sorted(), "{broadcasts:?}");
    let mut sinces = around(&[&broadcasts[..], &foreign[..]].concat());
    sinces.retain(|since| since <= broadcasts.last().unwrap());
    let mut all = broadcasts.clone();
    resume_everywhere(&servers, &sinces, &mut all, foreign[0]).await;
    let marker = *all.last().unwrap();
    assert_eq!(
        read_through(&mut live, marker).await,
        (None, all[1..].to_vec())
    );
    for server in &servers {
        assert_skipped_not_lost(server, 1).await;
    }
}

#[tokio::test]
async fn a_stream_deleted_and_begun_again_by_another_program_is_told_as_restarted() {
    let redis = Redis::start();
    let mut servers = instances(2, &redis.url(), &OPTIONS).await;
    let mut live = Vec::new();
    for server in &servers {
        live.push(connect_and_greet(server.addr, "").await);
    }
    let mut before = Vec::new();
    for _ in 0..2 {
        before.push(servers[0].publisher.publish("before").await.unwrap());
    }
    for client in &mut live {
        assert_eq!(
            read_through(client, before[1]).await,
            (None, before.clone())
        );
    }
    assert_eq!(redis.cli(&["DEL", STREAM]), "1");
    let begun_again = xadd(&redis, "1-1", &[("message", b"begun again by hand")]).await;
    // An instance that loads the stream begun again.
    servers.extend(instances(1, &redis.url(), &OPTIONS).await);
    let after = servers[0].publisher.publish("after").await.unwrap();
    assert!(
        after.run > before[1].run,
        "a new run: {before:?} then {after}"
    );
    // The instances that read the old stream missed what the new one had
    // before `after`: their clients are let go, to resume and be told.
    for client in &mut live {
        assert_eq!(close_code(client).await, Some(1012));
    }
    let (marker, resumed) = resume(&servers, &[before[0], before[1], begun_again, after]).await;
    for Resumed {
        addr,
        since,
        notice,
        got,
    } in resumed
    {
        let case = format!("on {addr} from {since}: {notice:?} {got:?}");
        let late = addr == servers[2].addr;
        if since == after {
            assert_eq!((notice, got), (None, vec![marker]), "{case}");
        } else if late {
            // The stream it read is the one begun again, and it serves in
            // the order of ids: `after` is the one broadcast past `since`.
            assert_eq!((notice, got), (None, vec![after, marker]), "{case}");
        } else {
            assert_eq!(notice.unwrap()["reason"], "restarted", "{case}");
            assert_eq!(got, [marker], "{case}");
        }
    }
    for (server, losses) in servers.iter().zip([1, 1, 0]) {
        assert_eq!(metric(server, "demo_panics_total").await, 0);
        assert_eq!(metric(server, "demo_backplane_losses_total").await, losses);
    }
}

#[tokio::test]
async fn the_binary_serves_through_entries_written_by_hand_and_its_log_has_no_panic() {
    use std::process::Stdio;
    let redis = Redis::start();
    let url = redis.url();
    // An instance in this process publishes; the binary shares its stream.
    let servers = instances(1, &url, &OPTIONS).await;
    let publisher = &*servers[0].publisher;
    let mut broadcasts = Vec::new();
    for _ in 0..2 {
        broadcasts.push(publisher.publish("before").await.unwrap());
    }
    let newest = broadcasts[1];
    let next = entry(newest.run, newest.seq + 1);
    let written_before = xadd(&redis, &next, &[("note", b"before the binary")]).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_websocket-demo"))
        .args(["--port", "0", "--bind", "127.0.0.1", "--redis", &url])
        .args(OPTIONS)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server binary starts");
    let addr = shared::testing::listening_on(&mut child).await;
    let health = async {
        while http(addr, &request("GET", "/healthz", &[], ""))
            .await
            .status
            != 200
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(shared::testing::PATIENCE, health)
        .await
        .expect("the binary reached Redis");
    let mut live = connect_and_greet(addr, "").await;
    let (foreign, broadcast) = write_foreign_entries(&redis, written_before).await;
    let mut all = broadcasts.clone();
    all.push(broadcast);
    for _ in 0..2 {
        all.push(publisher.publish("after").await.unwrap());
    }
    let mut sinces = around(&[&all[..], &foreign[..], &[written_before]].concat());
    sinces.retain(|since| since <= all.last().unwrap());
    let (marker, resumed) = resume_at(&[addr], publisher, &sinces).await;
    all.push(marker);
    let stream_began = EventId {
        run: all[0].run,
        seq: 0,
    };
    check_resumed(resumed, &all, stream_began);
    assert_eq!(
        read_through(&mut live, marker).await,
        (None, all[2..].to_vec())
    );
    assert_skipped_not_lost_at(addr, 3).await;

    let pid = child.id().expect("it runs").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.is_ok_and(|status| status.success()));
    let output = tokio::time::timeout(shared::testing::PATIENCE, child.wait_with_output())
        .await
        .expect("the binary stops in time")
        .expect("its output reads");
    assert!(output.status.success(), "{}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    for bad in ["panicked", "ERROR"] {
        assert!(!log.contains(bad), "{bad} in the log:\n{log}");
    }
    // Each kind of entry that is no broadcast is logged once.
    let skipped = log
        .lines()
        .filter(|line| line.contains("Skipped stream entry"));
    assert_eq!(skipped.count(), 3, "{log}");
}
