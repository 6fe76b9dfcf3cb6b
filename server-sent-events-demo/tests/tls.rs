//! Over TLS: HTTP/2 with every event stream on one connection, and HTTP/1.1.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::start;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use shared::policy::Reason;
use shared::testing::tls::Certificate;
use shared::testing::{Block, PATIENCE, eventually};
use tokio::time::timeout;

/// An HTTP/2 connection over TLS, with a small stream window so that a
/// stream whose body is not read stalls soon.
async fn http2(certificate: &Certificate, addr: std::net::SocketAddr) -> SendRequest<Full<Bytes>> {
    let tls = certificate.connect(addr, &["h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .handshake(TokioIo::new(tls))
        .await
        .expect("the HTTP/2 handshake succeeds");
    tokio::spawn(connection);
    sender
}

fn get(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::get(format!("https://localhost{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::default()).unwrap()
}

/// An event stream read off an HTTP/2 response body.
struct Stream {
    body: Incoming,
    pending: String,
}

impl Stream {
    async fn open(
        sender: &mut SendRequest<Full<Bytes>>,
        headers: &[(&str, &str)],
    ) -> (Stream, Response<()>) {
        let response = sender
            .send_request(get("/sse", headers))
            .await
            .expect("an answer");
        let (parts, body) = response.into_parts();
        let stream = Stream {
            body,
            pending: String::new(),
        };
        (stream, Response::from_parts(parts, ()))
    }

    /// The next block with data (skipping `retry:` and pings); `Err` when
    /// the stream was reset or ended.
    async fn next_event(&mut self) -> Result<Block, String> {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let text: String = self.pending.drain(..end + 2).collect();
                let block = parse(&text);
                if !block.data.is_empty() && block.event.as_deref() != Some("ping") {
                    return Ok(block);
                }
            }
            let frame = timeout(PATIENCE, self.body.frame())
                .await
                .expect("the stream moves in time");
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                Some(Err(error)) => {
                    // hyper's words, then the cause's (h2's reset reason).
                    let mut why = error.to_string();
                    let mut source = std::error::Error::source(&error);
                    while let Some(cause) = source {
                        why.push_str(&format!(": {cause}"));
                        source = cause.source();
                    }
                    return Err(why);
                }
                None => return Err("ended".into()),
            }
        }
    }
}

fn parse(text: &str) -> Block {
    let mut block = Block::default();
    for line in text.lines().filter(|line| !line.is_empty()) {
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        match field {
            "event" => block.event = Some(value.into()),
            "id" => block.id = Some(value.into()),
            "data" => block.data.push(value.into()),
            "retry" => block.retry = Some(value.into()),
            _ => {}
        }
    }
    block
}

#[tokio::test]
async fn fifty_event_streams_share_one_http2_connection_and_get_everything() {
    let certificate = Certificate::localhost();
    let options = certificate.options();
    let mut all = vec!["--interval", "200ms"];
    all.extend(options.iter().map(String::as_str));
    let server = start(&all).await;
    let mut sender = http2(&certificate, server.addr).await;
    let mut streams = Vec::new();
    for _ in 0..50 {
        let (stream, head) = Stream::open(&mut sender, &[]).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()["content-type"], "text/event-stream");
        assert!(
            head.headers().get("connection").is_none(),
            "no Connection header in HTTP/2"
        );
        streams.push(stream);
    }
    eventually("fifty clients", || server.hub.client_count() == 50).await;
    for stream in &mut streams {
        let gotcha = stream.next_event().await.unwrap();
        assert_eq!(gotcha.data, vec![r#"{"message":"Gotcha"}"#]);
        let tick = stream.next_event().await.unwrap();
        assert_eq!(tick.data, vec![r#"{"message":"Hello hello!"}"#]);
    }
    // The page's POST, on the same connection.
    let post = Request::post("https://localhost/api")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"message":"hi"}"#)))
        .unwrap();
    let answer = sender.send_request(post).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"].clone();
    for stream in &mut streams {
        loop {
            let event = stream.next_event().await.unwrap();
            if event.data == vec![r#"{"message":"Something changed"}"#] {
                assert_eq!(json!(event.id), id);
                break;
            }
        }
    }
}

#[tokio::test]
async fn a_stalled_http2_stream_is_reset_alone_and_the_others_go_on() {
    let certificate = Certificate::localhost();
    let options = certificate.options();
    let mut all = vec!["--interval", "60m", "--client-queue", "8"];
    all.extend(options.iter().map(String::as_str));
    let server = start(&all).await;
    let mut sender = http2(&certificate, server.addr).await;
    let (mut stalled, _) = Stream::open(&mut sender, &[]).await;
    let mut readers = Vec::new();
    let mut progress = Vec::new();
    for _ in 0..9 {
        let (mut stream, _) = Stream::open(&mut sender, &[]).await;
        let read = Arc::new(AtomicU64::new(0));
        progress.push(read.clone());
        readers.push(tokio::spawn(async move {
            let mut broadcasts = 0;
            while broadcasts < 100 {
                let event = stream.next_event().await.expect("the stream goes on");
                if event.id.is_some() {
                    broadcasts += 1;
                    read.store(broadcasts, Ordering::Relaxed);
                }
            }
            broadcasts
        }));
    }
    eventually("ten clients", || server.hub.client_count() == 10).await;
    // 100 broadcasts of 4 KiB: far past the stalled stream's 64 KiB window.
    // Each once the others have read the one before, so that only the
    // stalled stream falls behind.
    let four_kib = "x".repeat(4096);
    for sent in 1..=100 {
        server.hub.publish(&four_kib);
        eventually("the other streams read it", || {
            progress
                .iter()
                .all(|read| read.load(Ordering::Relaxed) >= sent)
        })
        .await;
    }
    for reader in readers {
        assert_eq!(timeout(PATIENCE, reader).await.unwrap().unwrap(), 100);
    }
    assert_eq!(server.hub.stats.slow_disconnects.load(Ordering::Relaxed), 1);
    // Reading it now: what it was sent before, then the reset.
    let ended = loop {
        match stalled.next_event().await {
            Ok(_) => continue,
            Err(why) => break why,
        }
    };
    // h2 words CANCEL, the code a dropped stream is reset with, this way.
    assert!(ended.contains("stream no longer needed"), "{ended}");
    assert!(!sender.is_closed(), "the connection goes on");
}

#[tokio::test]
async fn resuming_with_last_event_id_over_http2_replays_what_was_missed() {
    let certificate = Certificate::localhost();
    let options = certificate.options();
    let mut all = vec!["--interval", "60m"];
    all.extend(options.iter().map(String::as_str));
    let server = start(&all).await;
    let first = server.hub.publish("one");
    server.hub.publish("two");
    server.hub.publish("three");
    let mut sender = http2(&certificate, server.addr).await;
    let since = first.to_string();
    let (mut stream, _) = Stream::open(&mut sender, &[("last-event-id", &since)]).await;
    stream.next_event().await.unwrap(); // the Gotcha
    for expected in ["two", "three"] {
        let event = stream.next_event().await.unwrap();
        assert_eq!(event.data, vec![format!(r#"{{"message":"{expected}"}}"#)]);
    }
}

#[tokio::test]
async fn shutdown_ends_every_http2_stream() {
    let certificate = Certificate::localhost();
    let options = certificate.options();
    let mut all = vec!["--interval", "60m"];
    all.extend(options.iter().map(String::as_str));
    let server = start(&all).await;
    let mut sender = http2(&certificate, server.addr).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(Stream::open(&mut sender, &[]).await.0);
    }
    eventually("three clients", || server.hub.client_count() == 3).await;
    server.shutdown();
    assert!(server.stopped().await, "every stream ended in time");
    for stream in &mut streams {
        stream.next_event().await.unwrap(); // the Gotcha
        assert!(stream.next_event().await.is_err(), "the stream ended");
    }
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_counted_and_refused() {
    let certificate = Certificate::localhost();
    let options = certificate.options();
    let mut all = vec!["--interval", "60m"];
    all.extend(options.iter().map(String::as_str));
    let server = start(&all).await;
    let before = shared::testing::Tally::of(server.rejections());
    let raw = shared::testing::request("GET", "/healthz", &[], "");
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(&raw).await.unwrap();
    let mut answer = Vec::new();
    let _ = timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
    before
        .assert_counted(server.rejections(), Some(Reason::Tls), "plain HTTP")
        .await;
    // HTTP/1.1 over TLS still works.
    let tls = certificate.connect(server.addr, &["http/1.1"]).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get("/healthz")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        sender.send_request(request).await.unwrap().status(),
        StatusCode::OK
    );
}
