//! Fuzzing what a plain connection makes of the bytes a client sends: request
//! heads built from the parts that matter (methods, targets, versions, Host,
//! bodies, line ends, what follows the head), mutated, or arbitrary bytes;
//! sent in arbitrary pieces to a real server. Whatever comes, the server
//! does not panic and the client gets a status, or an event stream that
//! delivers the Gotcha and a tick within two intervals (or, when it sent
//! more behind its request, ends cleanly after the Gotcha); never a 200
//! that then says nothing, and never a 200 to a request RFC 9112 refuses.
//!
//! `PROPTEST_CASES` sets the number of inputs (a few dozen by default, a
//! few seconds). Ten minutes, or so:
//!
//! ```sh
//! PROPTEST_CASES=15000 cargo test -p server-sent-events-demo --test fuzz -- --nocapture
//! ```

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use shared::testing::{PATIENCE, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_millis(300);

/// Long enough for a refusal, short enough for the cases that wait for a
/// body that never comes (408 after `--request-timeout`).
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// One input: the bytes, and where they are cut into writes.
#[derive(Debug, Clone)]
struct Input {
    bytes: Vec<u8>,
    cuts: Vec<Index>,
}

/// One of `options`, each as likely as its weight.
fn one_of(options: &'static [(u32, &'static str)]) -> impl Strategy<Value = &'static str> {
    let weighted = options
        .iter()
        .map(|(weight, option)| (*weight, Just(*option).boxed()))
        .collect();
    proptest::strategy::Union::new_weighted(weighted)
}

/// A request built from the parts a server must get right, mostly well
/// formed, so that most inputs reach the routes.
fn built() -> impl Strategy<Value = Vec<u8>> {
    let method = one_of(&[
        (24, "GET"),
        (1, "get"),
        (1, "POST"),
        (1, "HEAD"),
        (1, "OPTIONS"),
        (1, "DELETE"),
        (1, "G@T"),
        (1, "BREW"),
    ]);
    let target = one_of(&[
        (24, "/sse"),
        (1, "/sse/"),
        (1, "/sse?lastEventId=x-1"),
        (1, "/sse?lastEventId=a&lastEventId=b"),
        (2, "http://localhost/sse"),
        (1, "//sse"),
        (1, "/"),
        (1, "/healthz"),
        (1, "/api"),
        (1, "*"),
        (1, "/nope"),
        (1, ""),
    ]);
    let version = one_of(&[
        (24, "HTTP/1.1"),
        (3, "HTTP/1.0"),
        (1, "HTTP/2.0"),
        (1, "HTTP/1.1x"),
        (1, "http/1.1"),
    ]);
    let hosts = one_of(&[
        (40, "Host: localhost"),
        (2, ""),
        (2, "Host: localhost|Host: localhost"),
        (1, "Host: a|host: b"),
        (1, "Host: a b"),
        (1, "Host:"),
        (1, "Host: user@localhost"),
    ]);
    let header = one_of(&[
        (3, "Accept: text/event-stream"),
        (3, "Cache-Control: no-cache"),
        (2, "Last-Event-ID: x-1"),
        (2, "Connection: keep-alive"),
        (2, "Connection: close"),
        (2, "Expect: 100-continue"),
        (2, "Content-Length: 0"),
        (1, "Content-Length: 5"),
        (1, "Content-Length: -1"),
        (1, "Content-Length: 5, 6"),
        (1, "Transfer-Encoding: chunked"),
        (1, "Transfer-Encoding: gzip"),
        (1, "Connection: Upgrade, HTTP2-Settings"),
        (1, "Upgrade: h2c"),
        (1, "Upgrade: websocket"),
        (1, "Origin: http://evil.example"),
        (1, "Content-Type: application/json"),
        (1, "X-Empty:"),
        (1, " folded"),
        (1, "No colon"),
    ]);
    let headers = prop::collection::vec(header, 0..4);
    let end = one_of(&[(6, "\r\n"), (1, "\n")]);
    let tail = one_of(&[
        (40, ""),
        (1, "\r\n"),
        (1, "hello"),
        (1, "5\r\nhello\r\n0\r\n\r\n"),
        (1, "{\"message\":\"x\"}"),
        (1, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        (1, "GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ]);
    (method, target, version, hosts, headers, end, tail).prop_map(
        |(method, target, version, hosts, headers, end, tail)| {
            let mut text = format!("{method} {target} {version}{end}");
            let hosts = hosts.split('|').filter(|host| !host.is_empty());
            for header in hosts.chain(headers) {
                text.push_str(header);
                text.push_str(end);
            }
            text.push_str(end);
            text.push_str(tail);
            text.into_bytes()
        },
    )
}

/// A built request with a few bytes changed, inserted or taken out.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<Index>(), any::<u8>(), 0..3u8), 1..4);
    (built(), edits).prop_map(|(mut bytes, edits)| {
        for (at, byte, kind) in edits {
            let at = at.index(bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => drop(bytes.remove(at)),
                _ => {}
            }
        }
        bytes
    })
}

fn input() -> impl Strategy<Value = Input> {
    let bytes = prop_oneof![
        6 => built(),
        2 => mutated(),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ];
    let cuts = prop::collection::vec(any::<Index>(), 0..6);
    (bytes, cuts).prop_map(|(bytes, cuts)| Input { bytes, cuts })
}

/// What hyper's parser (httparse) makes of the input's first request.
#[derive(Debug)]
enum Head {
    /// Not a whole head: the server may wait for the rest. hyper parses
    /// again only once a blank line has come (against clients that trickle
    /// bytes), so bytes that are not HTTP but have no blank line may wait
    /// too, until `--request-timeout` closes the connection.
    Partial,
    /// Not HTTP, and a blank line came: a status must come.
    Invalid,
    /// A whole head: a status must come (or a body be waited for).
    Complete {
        /// Whether a 200 to it would break RFC 9112 (Host) or RFC 9110 (method).
        refusable: bool,
        /// Whether bytes other than blank lines follow the head.
        more: bool,
    },
}

fn head_of(bytes: &[u8]) -> Head {
    // Blank lines before a request line are skipped (RFC 9112 §2.2).
    let start = bytes
        .iter()
        .position(|byte| !matches!(byte, b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    let ended = bytes.windows(2).any(|two| two == b"\n\n")
        || bytes.windows(3).any(|three| three == b"\n\r\n");
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        Err(_) if ended => return Head::Invalid,
        Ok(httparse::Status::Partial) | Err(_) => return Head::Partial,
    };
    let hosts = request
        .headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("host"))
        .count();
    let known = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    let refusable = hosts > 1
        || (hosts == 0 && request.version == Some(1))
        || !known.contains(&request.method.unwrap_or_default());
    let rest = &bytes[length..];
    Head::Complete {
        refusable,
        more: rest.iter().any(|byte| !matches!(byte, b'\r' | b'\n')),
    }
}

/// How many inputs ended each way, so that a run shows what it reached.
#[derive(Default)]
struct Seen {
    unanswered: AtomicU64,
    refused: AtomicU64,
    answered: AtomicU64,
    ticks: AtomicU64,
    ended: AtomicU64,
}

impl Seen {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends `input` in its pieces and checks what comes back.
async fn case(addr: SocketAddr, input: &Input, seen: &Seen) -> Result<(), TestCaseError> {
    let head = head_of(&input.bytes);
    let mut stream = TcpStream::connect(addr).await.expect("the server accepts");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (mut reading, mut writing) = stream.split();
    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|cut| cut.index(input.bytes.len() + 1))
        .collect();
    cuts.push(input.bytes.len());
    cuts.sort_unstable();
    let sending = async {
        let mut from = 0;
        for cut in cuts {
            // The server may answer and close before it has read it all.
            let _ = writing.write_all(&input.bytes[from..cut]).await;
            from = cut;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    // Read as it is sent: an answer that comes before the rest is sent is
    // read before the rest can reset the connection.
    let receiving = receive(&mut reading, &head);
    let ((), outcome) = tokio::join!(sending, receiving);
    let (answer, body) = match outcome {
        Outcome::Nothing => {
            prop_assert!(
                matches!(head, Head::Partial),
                "no answer to a whole request head ({head:?})"
            );
            Seen::count(&seen.unanswered);
            return Ok(());
        }
        Outcome::Answer(answer, body) => (answer, body),
    };
    if answer.status != 200 {
        Seen::count(&seen.refused);
        return Ok(());
    }
    let Head::Complete { refusable, more } = head else {
        return Err(TestCaseError::fail(format!("200 to {head:?}: {answer:?}")));
    };
    prop_assert!(!refusable, "200 to a request RFC 9112 refuses: {answer:?}");
    if answer.header("content-type") != Some("text/event-stream") {
        Seen::count(&seen.answered);
        return Ok(());
    }
    let (body, ended) = body;
    let gotcha = body.contains(r#"data: {"message":"Gotcha"}"#);
    let tick = body.contains(r#"data: {"message":"Hello hello!"}"#);
    prop_assert!(gotcha, "200, then no Gotcha: {answer:?} {body:?}");
    prop_assert!(
        tick || (more && ended),
        "200 and the Gotcha, then neither a tick within two intervals nor a clean end \
         (more sent: {more}, ended: {ended}): {body:?}"
    );
    Seen::count(if tick { &seen.ticks } else { &seen.ended });
    Ok(())
}

/// What came back for an input.
enum Outcome {
    /// No answer: the connection ended, or nothing came in time.
    Nothing,
    /// An answer; for an event stream, its data as far as it came, and
    /// whether it ended cleanly.
    Answer(Response, (String, bool)),
}

/// Reads the first answer other than `100 Continue`; for an event stream,
/// what it brings for two intervals, or until a tick or its end.
async fn receive(reading: &mut (impl AsyncRead + Unpin), head: &Head) -> Outcome {
    let within = match head {
        Head::Partial => Duration::from_millis(300),
        _ => ANSWER_WITHIN,
    };
    let mut read = Vec::new();
    let mut deadline = Instant::now() + within;
    let mut answer: Option<Response> = None;
    loop {
        if answer.is_none()
            && let Some(end) = read.windows(4).position(|four| four == b"\r\n\r\n")
        {
            let head: Vec<u8> = read.drain(..end + 4).collect();
            let this = shared::testing::parse_response(&head);
            if this.status == 100 {
                continue;
            }
            if this.header("content-type") != Some("text/event-stream") {
                return Outcome::Answer(this, (String::new(), false));
            }
            deadline = Instant::now() + 2 * INTERVAL;
            answer = Some(this);
        }
        let tick = br#"data: {"message":"Hello hello!"}"#;
        if answer.is_some() && read.windows(tick.len()).any(|window| window == tick) {
            return stream_outcome(answer, &read, false);
        }
        let mut buffer = [0; 4096];
        match tokio::time::timeout_at(deadline, reading.read(&mut buffer)).await {
            Ok(Ok(0)) => return stream_outcome(answer, &read, true),
            Ok(Ok(length)) => read.extend_from_slice(&buffer[..length]),
            Ok(Err(_)) | Err(_) => return stream_outcome(answer, &read, false),
        }
    }
}

/// An event stream's outcome from what was read of it: its data, and
/// whether it `closed` cleanly (after its last chunk, if chunked).
fn stream_outcome(answer: Option<Response>, read: &[u8], closed: bool) -> Outcome {
    let Some(answer) = answer else {
        return Outcome::Nothing;
    };
    let chunked = answer.header("transfer-encoding") == Some("chunked");
    let text = String::from_utf8_lossy(read).into_owned();
    let clean = closed && (!chunked || read.ends_with(b"0\r\n\r\n"));
    let data = if chunked {
        shared::testing::dechunk(&text)
    } else {
        text
    };
    Outcome::Answer(answer, (data, clean))
}

#[test]
fn whatever_a_client_sends_it_gets_a_status_or_events() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(40);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let server = runtime.block_on(common::start(&[
        "--interval",
        "300ms",
        "--request-timeout",
        "1s",
        "--rate",
        "1000",
        "--burst",
        "1000",
    ]));
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    };
    let started = Instant::now();
    let seen = Seen::default();
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&input(), |input| {
        runtime.block_on(case(server.addr, &input, &seen))
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // And the server is still whole.
    runtime.block_on(async {
        let stream = shared::testing::EventStream::open(server.addr, "/sse", &[]);
        tokio::time::timeout(PATIENCE, stream)
            .await
            .expect("a stream opens after it all");
    });
    let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "{cases} inputs in {:.0?}: {} refused, {} answered, {} event streams with a tick, \
         {} ended cleanly after the Gotcha, {} incomplete and unanswered",
        started.elapsed(),
        count(&seen.refused),
        count(&seen.answered),
        count(&seen.ticks),
        count(&seen.ended),
        count(&seen.unanswered),
    );
}
