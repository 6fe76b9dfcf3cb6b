//! Several instances sharing one Redis stream, each test with a Redis of its
//! own (`redis-server` on a free port, keeping nothing on disk).

mod common;

use std::time::Duration;

use common::start;
use serde_json::{Value, json};
use shared::Server;
use shared::policy::Reason;
use shared::testing::redis::Redis;
use shared::testing::resume::Readers;
use shared::testing::{EventStream, eventually, http, read_head, request};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::sleep;

fn up(server: &Server) -> bool {
    server
        .publisher
        .backplane()
        .is_some_and(|backplane| backplane.up)
}

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

fn post(body: &str) -> Vec<u8> {
    request(
        "POST",
        "/api",
        &[("Content-Type", "application/json")],
        body,
    )
}

#[tokio::test]
async fn a_post_to_one_instance_reaches_every_stream_of_both_once_with_the_id_it_answered() {
    let redis = Redis::start();
    let servers = instances(2, &redis.url(), &["--interval", "60m"]).await;
    let mut streams = Vec::new();
    for server in [&servers[0], &servers[1], &servers[1]] {
        streams.push(EventStream::open(server.addr, "/sse", &[]).await);
    }
    let answer = http(servers[0].addr, &post(r#"{"message":"hi"}"#)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let id = serde_json::from_str::<Value>(&answer.body).unwrap()["id"].clone();
    for stream in &mut streams {
        let changed = stream.next_event().await;
        assert_eq!(changed.json(), json!({ "message": "Something changed" }));
        assert_eq!(json!(changed.id), id);
    }
    let next = servers[1].publisher.publish("next").await.unwrap();
    for stream in &mut streams {
        assert_eq!(stream.next_event().await.id, Some(next.to_string()));
    }
}

#[tokio::test]
async fn streams_resuming_on_the_other_instance_during_a_burst_miss_nothing() {
    const BURST: u64 = 1200;
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
    let readers = Readers::start::<EventStream>(&addrs, 4, BURST, 300);
    eventually("every reader is connected", || {
        servers
            .iter()
            .map(|server| server.hub.client_count())
            .sum::<usize>()
            == 4
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
async fn a_post_while_redis_is_away_gets_503_with_retry_after_and_streams_stay() {
    let mut redis = Redis::start();
    let servers = instances(1, &redis.url(), &["--interval", "60m"]).await;
    let server = &servers[0];
    let mut stream = EventStream::open(server.addr, "/sse", &[]).await;
    redis.stop();
    eventually("the server noticed", || !up(server)).await;
    let refused = http(server.addr, &post(r#"{"message":"hi"}"#)).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("2"));
    let error: Value = serde_json::from_str(&refused.body).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("out of reach"),
        "{error}"
    );
    let health = http(server.addr, &request("GET", "/healthz", &[], "")).await;
    assert_eq!(health.status, 503);

    redis.restart();
    eventually("the server reached Redis again", || up(server)).await;
    let answer = http(server.addr, &post(r#"{"message":"hi"}"#)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // The stream stayed open all along, and carries the broadcast.
    let changed = stream.next_event().await;
    assert_eq!(changed.json(), json!({ "message": "Something changed" }));
}

#[tokio::test]
async fn a_post_redis_does_not_answer_gets_504_saying_it_may_have_gone_out() {
    let redis = Redis::start();
    let servers = instances(1, &redis.url(), &["--interval", "60m"]).await;
    let server = &servers[0];
    let mut stream = EventStream::open(server.addr, "/sse", &[]).await;
    // One answered first: Redis knows the script from then on.
    let first = http(server.addr, &post(r#"{"message":"hi"}"#)).await;
    assert_eq!(first.status, 200, "{first:?}");
    stream.next_event().await;
    redis.pause();
    let answer = http(server.addr, &post(r#"{"message":"hi"}"#)).await;
    redis.resume();
    assert_eq!(answer.status, 504, "{answer:?}");
    assert_eq!(answer.header("retry-after"), None, "a retry may repeat it");
    let error: Value = serde_json::from_str(&answer.body).unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("may have gone out"),
        "{error}"
    );
    // It had reached Redis, which appends it once thawed.
    let changed = stream.next_event().await;
    assert_eq!(changed.json(), json!({ "message": "Something changed" }));
    assert_eq!(server.publisher.backplane().unwrap().publish_errors, 1);
}

/// What the answers to one batch of messages said.
#[derive(Debug, Default)]
struct Answers {
    /// The ids of those broadcast, in the order they were sent.
    ids: Vec<u64>,
    /// 503: Redis out of reach, not broadcast.
    refused: usize,
    /// 504: sent to Redis but not confirmed; it may have gone out.
    unconfirmed: usize,
}

/// POSTs `count` messages, one after the other as soon as each is answered.
async fn post_batch(addr: std::net::SocketAddr, count: usize) -> Answers {
    let mut answers = Answers::default();
    for _ in 0..count {
        let answer = http(addr, &post(r#"{"message":"busy"}"#)).await;
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        match answer.status {
            200 => answers
                .ids
                .push(shared::testing::seq_of(body["id"].as_str().unwrap())),
            503 => answers.refused += 1,
            504 => answers.unconfirmed += 1,
            other => panic!("{other}: {body}"),
        }
    }
    answers
}

/// A POST whose body comes a byte at a time, each well within the limit, for
/// longer than the limit: the status it gets.
async fn trickle(addr: std::net::SocketAddr) -> u16 {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (reading, mut writing) = stream.into_split();
    let head = "POST /api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    writing.write_all(head.as_bytes()).await.unwrap();
    let mut reading = BufReader::new(reading);
    let answer = read_head(&mut reading);
    tokio::pin!(answer);
    loop {
        tokio::select! {
            head = &mut answer => return head.status,
            () = sleep(Duration::from_millis(300)) => {
                // The server may answer (and close) before the body is whole.
                let _ = writing.write_all(b" ").await;
            }
        }
    }
}

#[tokio::test]
async fn a_busy_sender_under_a_slow_redis_gets_every_post_answered_in_order() {
    const BATCH: usize = 150;
    let redis = Redis::start();
    // A body limit far shorter than Redis's stalls: the wait for Redis must
    // not be counted against the client.
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
    let mut stream = EventStream::open(server.addr, "/sse", &[]).await;
    let watching = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            let event = stream.next_event().await;
            seqs.push(event.seq());
            if event.json()["message"] == "end" {
                return seqs;
            }
            assert_eq!(event.json()["message"], "Something changed", "{event:?}");
        }
    });
    let slow_before = server.rejections().count(Reason::SlowRequest);

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
    let slowly = tokio::select! {
        answers = post_batch(server.addr, BATCH) => answers,
        () = slow => unreachable!(),
    };
    redis.resume();

    // Frozen for 6 s: past the answer timeout (3 s), the reader's (4 s) and
    // the body limit (2 s). Meanwhile another client trickles a body past
    // the limit.
    redis.pause();
    let thaw = async {
        sleep(Duration::from_secs(6)).await;
        redis.resume();
    };
    let (frozen, trickled, ()) =
        tokio::join!(post_batch(server.addr, BATCH), trickle(server.addr), thaw);
    assert_eq!(trickled, 408, "a real trickler is still refused");

    eventually("the server reached Redis again", || up(server)).await;
    let last = server.publisher.publish("end").await.unwrap();
    let seqs = watching.await.unwrap();

    let answered: Vec<u64> = slowly.ids.iter().chain(&frozen.ids).copied().collect();
    let refused = (slowly.refused + frozen.refused) as u64;
    let unconfirmed = (slowly.unconfirmed + frozen.unconfirmed) as u64;
    let broadcast = seqs.len() as u64 - 1;
    let sent = 2 * BATCH as u64;
    println!(
        "{sent} sent: {} answered with an id ({} while Redis was slow), {refused} refused, \
         {unconfirmed} unconfirmed; {broadcast} broadcast",
        answered.len(),
        slowly.ids.len()
    );
    assert!(
        answered.windows(2).all(|pair| pair[0] < pair[1]),
        "in the order sent: {answered:?}"
    );
    let expected: Vec<u64> = (first.seq + 1..=last.seq).collect();
    assert_eq!(seqs, expected, "every broadcast once, in order");
    assert!(answered.iter().all(|seq| seqs.contains(seq)));
    assert_eq!(answered.len() as u64 + refused + unconfirmed, sent);
    assert!(
        broadcast >= answered.len() as u64 && broadcast <= answered.len() as u64 + unconfirmed,
        "{broadcast} broadcast: {} answered, {unconfirmed} unconfirmed",
        answered.len()
    );
    assert!(frozen.refused + frozen.unconfirmed > 0, "Redis was frozen");
    assert_eq!(
        server.rejections().count(Reason::SlowRequest),
        slow_before + 1,
        "only the trickler was refused as slow"
    );
}
