//! Several instances sharing one Redis stream, each test with a Redis of its
//! own (`redis-server` on a free port, keeping nothing on disk).

mod common;

use common::start;
use serde_json::{Value, json};
use shared::Server;
use shared::testing::redis::Redis;
use shared::testing::resume::Readers;
use shared::testing::{EventStream, eventually, http, request};

fn up(server: &Server) -> bool {
    server
        .publisher
        .backplane()
        .is_some_and(|backplane| backplane.up())
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
