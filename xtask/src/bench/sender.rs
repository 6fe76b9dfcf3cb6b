//! The bench's sender: sends a run's messages through one server, over a
//! WebSocket or as `POST /api`, and keeps account of every one: broadcast
//! (with its id), refused (with what the server said), or left unanswered
//! when the server cut the sender off.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::clients::{Connection, next_line, seq, websocket_seq};

/// What the sender sends: the server broadcasts "Something changed" for it.
const BODY: &str = r#"{"message":"bench"}"#;

/// How the sender sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Over {
    #[default]
    #[serde(rename = "WebSocket")]
    WebSocket,
    #[serde(rename = "POST /api")]
    Api,
}

impl fmt::Display for Over {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Over::WebSocket => "WebSocket",
            Over::Api => "POST /api",
        })
    }
}

/// What became of the sender's messages, as far as the sender heard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Account {
    pub over: Over,
    /// Messages written to the server.
    pub sent: usize,
    /// The numbers of the broadcasts it heard of: its own copies over a
    /// WebSocket (every broadcast of a run is one of its messages), the ids
    /// `/api` answered.
    pub broadcast: BTreeSet<usize>,
    /// What the server said of each message it refused, in the order heard.
    pub refused: Vec<String>,
    /// How the server ended the sender's connection, if it did.
    pub cut_off: Option<CutOff>,
}

impl Account {
    /// Whether every message sent has had its answer, or will have none.
    pub fn settled(&self) -> bool {
        self.cut_off.is_some() || self.broadcast.len() + self.refused.len() >= self.sent
    }

    /// Keeps the most telling end: a close frame over a failed read or write
    /// (either side may notice first).
    fn cut(&mut self, cut: CutOff) {
        if self.cut_off.as_ref().is_none_or(|had| had.code.is_none()) {
            self.cut_off = Some(cut);
        }
    }

    /// A WebSocket reply: its own broadcast, or an error about one of its
    /// messages (pongs and notices are neither).
    fn heard(&mut self, text: &str) {
        if let Some(seq) = websocket_seq(text) {
            self.broadcast.insert(seq);
        } else if text.starts_with("{\"error\"") {
            self.refused.push(text.to_owned());
        }
    }

    /// The answer to a `POST /api`: `HTTP/1.1 200 OK` and `{"id":"..."}`, or
    /// a refusal. The broadcast's number, if it was one.
    fn answered(&mut self, status: &str, body: &str) -> Option<usize> {
        let status = status.strip_prefix("HTTP/1.1 ").unwrap_or(status);
        let id = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|json| json["id"].as_str().and_then(seq));
        match id {
            Some(seq) if status.starts_with("200") => {
                self.broadcast.insert(seq);
                Some(seq)
            }
            _ => {
                self.refused.push(format!("{status}: {body}"));
                None
            }
        }
    }
}

/// How the sender's connection ended, before the bench closed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CutOff {
    /// The code of the server's close frame; none when there was no frame.
    pub code: Option<u16>,
    /// The close frame's reason, or what happened instead.
    pub reason: String,
}

impl CutOff {
    fn closed(frame: Option<CloseFrame>) -> CutOff {
        match frame {
            Some(frame) => CutOff {
                code: Some(frame.code.into()),
                reason: frame.reason.to_string(),
            },
            None => CutOff::without_frame("a close frame without a code"),
        }
    }

    fn without_frame(what: impl fmt::Display) -> CutOff {
        CutOff {
            code: None,
            reason: what.to_string(),
        }
    }
}

impl fmt::Display for CutOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.reason.as_str()) {
            (Some(code), "") => write!(f, "close {code}"),
            (Some(code), reason) => write!(f, "close {code} \"{reason}\""),
            (None, reason) => f.write_str(reason),
        }
    }
}

/// Sends a run's messages, over a WebSocket or as POSTs to `/api`, and keeps
/// the [`Account`] of what became of them.
pub struct Sender {
    way: Way,
    account: Arc<Mutex<Account>>,
    /// Set when the bench closes the connection itself: what ends it then
    /// is not the server's doing.
    closing: Arc<AtomicBool>,
}

enum Way {
    /// The replies, read by a task of their own until the socket closes.
    WebSocket(
        SplitSink<WebSocketStream<Connection>, Message>,
        JoinHandle<()>,
    ),
    Api(BufReader<Connection>),
}

impl Sender {
    pub fn websocket(socket: WebSocketStream<Connection>) -> Sender {
        let account = Arc::new(Mutex::new(Account {
            over: Over::WebSocket,
            ..Account::default()
        }));
        let closing = Arc::new(AtomicBool::new(false));
        let (sink, mut replies) = socket.split();
        let (heard, ours) = (account.clone(), closing.clone());
        // Also keeps the sender's own copies of the broadcasts from piling
        // up in the server.
        let reader = tokio::spawn(async move {
            let end = loop {
                match replies.next().await {
                    Some(Ok(Message::Text(text))) => lock(&heard).heard(&text),
                    Some(Ok(Message::Close(frame))) => break CutOff::closed(frame),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break CutOff::without_frame(error),
                    None => break CutOff::without_frame("the connection ended without a close"),
                }
            };
            if !ours.load(Ordering::SeqCst) {
                lock(&heard).cut(end);
            }
        });
        Sender {
            way: Way::WebSocket(sink, reader),
            account,
            closing,
        }
    }

    pub fn api(stream: Connection) -> Sender {
        Sender {
            way: Way::Api(BufReader::new(stream)),
            account: Arc::new(Mutex::new(Account {
                over: Over::Api,
                ..Account::default()
            })),
            closing: Arc::default(),
        }
    }

    /// Sends one message; for a POST, reads its answer too. The number of
    /// the broadcast it is, as far as the sender knows: the id `/api`
    /// answered, or over a WebSocket its place among the messages sent (the
    /// server answers in the order it received, but an error may come before
    /// the broadcasts of earlier messages, so which message a refusal was
    /// for is not known). None when it was refused or could not be sent.
    pub async fn send(&mut self) -> Option<usize> {
        match &mut self.way {
            Way::WebSocket(sink, _) => match sink.send(Message::text(BODY)).await {
                Ok(()) => {
                    let mut account = lock(&self.account);
                    account.sent += 1;
                    Some(account.sent)
                }
                Err(error) => {
                    lock(&self.account).cut(CutOff::without_frame(format!(
                        "the message could not be sent: {error}"
                    )));
                    None
                }
            },
            Way::Api(reader) => {
                let request = format!(
                    "POST /api HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{BODY}",
                    BODY.len()
                );
                if let Err(error) = reader.get_mut().write_all(request.as_bytes()).await {
                    let why = format!("the request could not be sent: {error}");
                    lock(&self.account).cut(CutOff::without_frame(why));
                    return None;
                }
                lock(&self.account).sent += 1;
                match answer(reader).await {
                    Ok((status, body)) => lock(&self.account).answered(&status, &body),
                    Err(error) => {
                        let why = format!("no answer: {error:#}");
                        lock(&self.account).cut(CutOff::without_frame(why));
                        None
                    }
                }
            }
        }
    }

    /// The bench gives up on a send that the server did not take in time:
    /// the connection is in an unknown state, so nothing more is sent.
    pub fn give_up(&self, why: String) {
        lock(&self.account).cut(CutOff::without_frame(why));
    }

    /// What became of the messages, so far.
    pub fn account(&self) -> Account {
        lock(&self.account).clone()
    }

    /// Closes cleanly: closing a socket with unread data resets it, and the
    /// server could lose the last messages still in its buffer. What became
    /// of the messages, in the end.
    pub async fn close(self) -> Account {
        self.closing.store(true, Ordering::SeqCst);
        if let Way::WebSocket(mut sink, reader) = self.way {
            let _ = sink.close().await;
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
        lock(&self.account).clone()
    }
}

/// An HTTP answer: its status line and its body.
async fn answer(reader: &mut BufReader<Connection>) -> Result<(String, String)> {
    let mut line = String::new();
    next_line(reader, &mut line).await?;
    let status = line.trim_end().to_owned();
    let mut length = 0;
    loop {
        next_line(reader, &mut line).await?;
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    if length > 1 << 20 {
        bail!("an answer of {length} bytes");
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::{self, DEMOS, Instance, Kind, Profile};

    #[test]
    fn replies_are_told_apart_and_a_close_frame_says_more_than_a_failed_write() {
        let mut account = Account {
            sent: 4,
            ..Account::default()
        };
        account.heard(r#"{"id":"18f-1","message":"Something changed"}"#);
        account.heard(r#"{"error":"rate limit: retry in 5 ms"}"#);
        account.heard(r#"{"pong":3}"#);
        account.heard(r#"{"missed":true,"since":"18f-0","reason":"expired"}"#);
        assert_eq!(account.broadcast, BTreeSet::from([1]));
        assert_eq!(account.refused.len(), 1);
        assert!(!account.settled());
        account.cut(CutOff::without_frame("the message could not be sent"));
        account.cut(CutOff::closed(Some(CloseFrame {
            code: 1013.into(),
            reason: "too slow".into(),
        })));
        account.cut(CutOff::without_frame(
            "the connection ended without a close",
        ));
        assert_eq!(
            account.cut_off.as_ref().unwrap().to_string(),
            "close 1013 \"too slow\""
        );
        assert!(account.settled());
    }

    #[test]
    fn an_api_answer_is_a_broadcast_with_its_id_or_a_refusal_with_its_status() {
        let mut account = Account::default();
        assert_eq!(
            account.answered("HTTP/1.1 200 OK", r#"{"id":"18f-7"}"#),
            Some(7)
        );
        assert_eq!(
            account.answered("HTTP/1.1 429 Too Many Requests", r#"{"error":"slow down"}"#),
            None
        );
        assert_eq!(account.answered("HTTP/1.1 200 OK", "not json"), None);
        assert_eq!(account.broadcast, BTreeSet::from([7]));
        assert_eq!(
            account.refused,
            [
                r#"429 Too Many Requests: {"error":"slow down"}"#,
                "200 OK: not json"
            ]
        );
    }

    /// A debug build of `kind`'s server with `options`, and where it listens.
    async fn server(kind: Kind, options: &[&str]) -> (servers::Server, std::net::SocketAddr) {
        static BUILT: std::sync::Once = std::sync::Once::new();
        BUILT.call_once(|| servers::build(Profile::Debug).expect("the servers build"));
        let demo = DEMOS.iter().find(|demo| demo.kind == kind).unwrap();
        let args: Vec<String> = ["--port", "0", "--interval", "1440m"]
            .iter()
            .chain(options)
            .map(|arg| arg.to_string())
            .collect();
        let mut server =
            servers::start(demo, Instance::Only, &args, "warn", Profile::Debug).unwrap();
        let url = server.listening(Duration::from_secs(60)).await.unwrap();
        (server, servers::addr(&url).unwrap())
    }

    /// Sends up to `messages` back to back, until the sender is cut off; then
    /// waits for every answer (or the end of the connection).
    async fn send(sender: &mut Sender, messages: usize) -> Account {
        for _ in 0..messages {
            if sender.account().cut_off.is_some() {
                break;
            }
            sender.send().await;
        }
        let settled = async {
            while !sender.account().settled() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), settled)
            .await
            .expect("every message answered, or the sender cut off");
        sender.account()
    }

    #[tokio::test]
    async fn a_websocket_sender_hears_its_broadcasts_its_refusals_and_its_close() {
        // Two messages pass; past the burst each is refused, and two refused
        // in a row close the connection.
        let (mut server, addr) = server(Kind::WebSocket, &["--rate", "1", "--burst", "2"]).await;
        let dialer = super::super::clients::Dialer::new(None).unwrap();
        let mut sender = dialer.sender(Kind::WebSocket, addr).await.unwrap();
        send(&mut sender, 20).await;
        let account = sender.close().await;
        server.stop().await;
        assert_eq!(account.over, Over::WebSocket);
        assert_eq!(account.broadcast, BTreeSet::from([1, 2]), "{account:?}");
        assert!(
            !account.refused.is_empty()
                && account
                    .refused
                    .iter()
                    .all(|said| said.contains("rate limit")),
            "{account:?}"
        );
        let cut = account.cut_off.as_ref().expect("cut off");
        assert_eq!(
            (cut.code, cut.reason.as_str()),
            (Some(1008), "rate limit exceeded, repeatedly")
        );
        assert!(account.sent >= 2 + account.refused.len(), "{account:?}");
    }

    #[tokio::test]
    async fn an_api_sender_hears_each_id_and_each_refusal() {
        let (mut server, addr) = server(Kind::Sse, &["--rate", "1", "--burst", "2"]).await;
        let dialer = super::super::clients::Dialer::new(None).unwrap();
        let mut sender = dialer.sender(Kind::Sse, addr).await.unwrap();
        let answers = [
            sender.send().await,
            sender.send().await,
            sender.send().await,
        ];
        let account = sender.close().await;
        server.stop().await;
        assert_eq!(answers, [Some(1), Some(2), None]);
        assert_eq!(
            (account.over, account.sent, &account.cut_off),
            (Over::Api, 3, &None)
        );
        assert_eq!(account.broadcast, BTreeSet::from([1, 2]));
        assert_eq!(account.refused.len(), 1);
        assert!(
            account.refused[0].starts_with("429 Too Many Requests: {\"error\":\"rate limit"),
            "{account:?}"
        );
    }
}
