//! Request-shape tables: raw requests sent as clients may send them (in
//! pieces, with pauses, behind other requests on their connection), over
//! TCP or TLS, each row with the answer it must get. A table runs every row
//! and reports every one that failed, not only the first.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tls::Certificate;
use super::{PATIENCE, Response, Tally, dechunk, is_complete};
use crate::app::Server;
use crate::policy::Reason;

/// One thing a row's client does, in order.
#[derive(Debug, Clone)]
pub enum Step {
    /// Writes these bytes, in one write.
    Send(Vec<u8>),
    /// Waits this long.
    Pause(Duration),
    /// Reads one whole answer, which must be 200: for a request sent before
    /// the one the row is about, on the same connection.
    Answered,
}

/// What a row's last request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An event stream: 200, then the Gotcha and a tick within two intervals,
    /// nothing counted as refused.
    Events,
    /// 200 and a whole answer that is not an event stream (a page,
    /// `/healthz`), nothing counted as refused.
    Answer,
    /// This status with a JSON error (`{"error": ...}`), counted once under
    /// this reason (or nowhere) and under no other.
    Refused(u16, Option<Reason>),
}

/// One shape of request and what it must get.
#[derive(Debug, Clone)]
pub struct Row {
    pub shape: String,
    pub steps: Vec<Step>,
    pub expected: Expect,
}

impl Row {
    pub fn new(shape: &str, expected: Expect, steps: Vec<Step>) -> Row {
        Row {
            shape: shape.to_owned(),
            steps,
            expected,
        }
    }

    /// A row that sends `request` in one write.
    pub fn sends(shape: &str, request: &str, expected: Expect) -> Row {
        Row::new(shape, expected, vec![send(request)])
    }
}

/// A [`Step::Send`] of `text`.
pub fn send(text: &str) -> Step {
    Step::Send(text.as_bytes().to_vec())
}

/// `text` sent a byte at a time, each byte its own write (and TCP segment,
/// or TLS record) a millisecond after the one before.
pub fn byte_by_byte(text: &str) -> Vec<Step> {
    text.bytes()
        .flat_map(|byte| {
            [
                Step::Send(vec![byte]),
                Step::Pause(Duration::from_millis(1)),
            ]
        })
        .collect()
}

/// How a table's clients connect.
#[derive(Clone, Copy)]
pub enum Over<'a> {
    Tcp,
    /// TLS, HTTP/1.1 by ALPN, trusting this certificate.
    Tls(&'a Certificate),
}

/// A connection a client speaks over, TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Over<'_> {
    pub async fn connect(self, addr: SocketAddr) -> Box<dyn Io> {
        let tcp = TcpStream::connect(addr).await.expect("the server accepts");
        // Each write its own segment, so that split requests arrive split.
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        match self {
            Over::Tcp => Box::new(tcp),
            Over::Tls(certificate) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
                let tls = certificate.client(&["http/1.1"]).connect(name, tcp);
                Box::new(tls.await.expect("the TLS handshake succeeds"))
            }
        }
    }
}

/// Runs every row against `server`, which ticks every `interval`, one row
/// at a time (each on a connection of its own), and fails naming every row
/// that did not get what it must.
pub async fn check(server: &Server, over: Over<'_>, interval: Duration, rows: &[Row]) {
    let mut failed = Vec::new();
    for row in rows {
        let outcome = tokio::time::timeout(4 * PATIENCE, run(server, over, interval, row)).await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(wrong)) => failed.push(format!("{}: {wrong}", row.shape)),
            Err(_) => failed.push(format!("{}: no outcome in time", row.shape)),
        }
    }
    println!("{} rows, {} failed", rows.len(), failed.len());
    assert!(
        failed.is_empty(),
        "{} of {} rows failed:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}

async fn run(server: &Server, over: Over<'_>, interval: Duration, row: &Row) -> Result<(), String> {
    let before = Tally::of(server.rejections());
    let mut reader = Reader {
        io: over.connect(server.addr).await,
        read: Vec::new(),
    };
    for step in &row.steps {
        match step {
            // The server may answer (and close) before it has read it all.
            Step::Send(bytes) => drop(reader.io.write_all(bytes).await),
            Step::Pause(pause) => tokio::time::sleep(*pause).await,
            Step::Answered => {
                let answer = reader.answer().await?;
                if answer.status != 200 {
                    return Err(format!("the request before it got {answer:?}"));
                }
            }
        }
    }
    match row.expected {
        Expect::Events => {
            let head = reader.head().await?;
            let gotcha = r#"data: {"message":"Gotcha"}"#;
            let tick = r#"data: {"message":"Hello hello!"}"#;
            if head.status != 200 || head.header("content-type") != Some("text/event-stream") {
                return Err(format!("not an event stream: {head:?}"));
            }
            let seen = reader.events(&head, 2 * interval, &[gotcha, tick]).await;
            if !(seen.contains(gotcha) && seen.contains(tick)) {
                return Err(format!(
                    "200, then not the Gotcha and a tick within two intervals: {seen:?}"
                ));
            }
            before.counted(server.rejections(), None).await
        }
        Expect::Answer => {
            let answer = reader.answer().await?;
            if answer.status != 200 || answer.header("content-type") == Some("text/event-stream") {
                return Err(format!("not a whole 200 answer: {answer:?}"));
            }
            before.counted(server.rejections(), None).await
        }
        Expect::Refused(status, reason) => {
            let answer = reader.answer().await?;
            let error = serde_json::from_str::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|body| body["error"].as_str().map(str::to_owned));
            if answer.status != status || error.is_none_or(|error| error.is_empty()) {
                return Err(format!(
                    "expected {status} with a JSON error, got {answer:?}"
                ));
            }
            before.counted(server.rejections(), reason).await
        }
    }
}

/// A connection's answers, read as they come.
struct Reader {
    io: Box<dyn Io>,
    /// Read and not yet taken.
    read: Vec<u8>,
}

impl Reader {
    /// Reads more; false at the end of the connection (or an error).
    async fn more(&mut self) -> bool {
        let mut buffer = [0; 16 * 1024];
        match self.io.read(&mut buffer).await {
            Ok(0) | Err(_) => false,
            Ok(read) => {
                self.read.extend_from_slice(&buffer[..read]);
                true
            }
        }
    }

    /// The next answer's head, its body left to read.
    async fn head(&mut self) -> Result<Response, String> {
        let reading = async {
            loop {
                if let Some(end) = self.read.windows(4).position(|four| four == b"\r\n\r\n") {
                    let head: Vec<u8> = self.read.drain(..end + 4).collect();
                    return harness::http::parse(&head).map_err(|why| why.to_string());
                }
                if !self.more().await {
                    let read = String::from_utf8_lossy(&self.read);
                    return Err(format!("the connection ended before an answer: {read:?}"));
                }
            }
        };
        tokio::time::timeout(PATIENCE, reading)
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()))
    }

    /// The next whole answer: up to its length, its last chunk, or the end
    /// of the connection.
    async fn answer(&mut self) -> Result<Response, String> {
        let head = self.head().await?;
        if head.header("content-type") == Some("text/event-stream") {
            return Err(format!("an event stream, not a whole answer: {head:?}"));
        }
        let mut raw = head_bytes(&head);
        let reading = async {
            loop {
                let mut whole = raw.clone();
                whole.extend_from_slice(&self.read);
                if is_complete(&whole) || !self.more().await {
                    return whole;
                }
            }
        };
        raw = tokio::time::timeout(PATIENCE, reading)
            .await
            .map_err(|_| format!("the body of {head:?} did not come in time"))?;
        // What is left belongs to the next answer.
        self.read.clear();
        harness::http::parse(&raw).map_err(|why| why.to_string())
    }

    /// The body of event stream `head` as it comes for `wait`, or until it
    /// holds every one of `wanted`.
    async fn events(&mut self, head: &Response, wait: Duration, wanted: &[&str]) -> String {
        let chunked = head.header("transfer-encoding") == Some("chunked");
        let deadline = Instant::now() + wait;
        loop {
            let text = String::from_utf8_lossy(&self.read).into_owned();
            let text = if chunked { dechunk(&text) } else { text };
            let done = wanted.iter().all(|line| text.contains(line));
            if done
                || !matches!(
                    tokio::time::timeout_at(deadline, self.more()).await,
                    Ok(true)
                )
            {
                return text;
            }
        }
    }
}

/// `head` written out again, to be read with its body.
fn head_bytes(head: &Response) -> Vec<u8> {
    let mut text = format!("HTTP/1.1 {} -\r\n", head.status);
    for (name, value) in &head.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.into_bytes()
}
