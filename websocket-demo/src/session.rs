//! One WebSocket client, from "Gotcha" to the close frame.
//!
//! The session runs a writer, a reader and a watchdog side by side. The
//! writer sends the client's replies, the hub's broadcasts and pings; the
//! reader handles what the client sends; the watchdog drops a client that
//! stopped answering pings or takes too long over a message. None can hold
//! the others up, and a write that blocks on a client that stopped reading is
//! abandoned as soon as the hub evicts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use shared::core::Subscription;
use shared::http::{Conn, Context};
use shared::policy::{Reason, Refused, TokenBucket};
use shared::wire::{error_json, missed_json};
use tokio::sync::mpsc;
use tokio::time::{Instant, interval, interval_at, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::watch::{Activity, Watched};

pub(crate) type Socket = WebSocketStream<Watched<TokioIo<Upgraded>>>;
type Sink = futures_util::stream::SplitSink<Socket, Message>;
type Stream = futures_util::stream::SplitStream<Socket>;

/// Close code for a client evicted for not keeping up ("try again later").
pub const CLOSE_SLOW: u16 = 1013;

/// How long a close handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Pings (WebSocket pings, or the page's own ping messages) a client may send
/// a second, and in a burst: far more than any keep-alive needs.
const PING_RATE: f64 = 2.0;
const PING_BURST: u32 = 20;

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client sent a close frame.
    ClosedByClient,
    /// The connection is gone without a close frame.
    Gone,
    /// The server is shutting down.
    Shutdown,
    /// The client's queue overflowed, or its socket's write buffer.
    Slow,
    /// The client answered no ping for two intervals.
    Unresponsive,
    /// Broadcasts were lost upstream (the backplane's stream began again):
    /// the client must reconnect and resume to be told.
    Resync,
    /// The client broke the protocol or a limit.
    Refused(CloseCode, String),
}

pub(crate) async fn run(
    socket: Socket,
    activity: Arc<Activity>,
    mut subscription: Subscription<Utf8Bytes>,
    evicted: CancellationToken,
    context: Context<Utf8Bytes>,
    conn: Conn,
) {
    let peer = conn.peer;
    log::info!(
        "Opened connection 🎉 ({peer}; {} connected)",
        context.hub.client_count()
    );
    let (mut sink, mut stream) = socket.split();
    let (replies, mut pending_replies) = mpsc::channel(16);
    let reader = Reader {
        context: &context,
        peer,
        replies,
        bucket: context.inbox.bucket(),
        pings: TokenBucket::new(PING_RATE, PING_BURST),
        strikes: 0,
    };

    let mut opening = vec![Message::Text(Utf8Bytes::from_static(GOTCHA_JSON))];
    if let Some(missed) = &subscription.missed {
        opening.push(Message::Text(missed_json(missed).into()));
    }
    let end = tokio::select! {
        biased;
        () = context.shutdown.cancelled() => End::Shutdown,
        () = evicted.cancelled() => End::Slow,
        end = watchdog(&activity, &context, peer) => end,
        end = write(&mut sink, opening, &mut subscription, &mut pending_replies, &context) => end,
        end = reader.run(&mut stream, &activity) => end,
    };
    drop(subscription);

    match &end {
        End::ClosedByClient => {
            // tungstenite queued the reply to the client's close; send it.
            let _ = timeout(CLOSE_GRACE, sink.close()).await;
        }
        End::Gone | End::Unresponsive => {}
        End::Shutdown => {
            close(
                &mut sink,
                &mut stream,
                CloseCode::Away,
                "server shutting down",
            )
            .await
        }
        End::Slow => {
            close(
                &mut sink,
                &mut stream,
                CloseCode::from(CLOSE_SLOW),
                "too slow: reconnect to resume",
            )
            .await;
        }
        End::Resync => {
            let why = "broadcasts were lost upstream: reconnect to resume";
            close(&mut sink, &mut stream, CloseCode::Restart, why).await;
        }
        End::Refused(code, why) => {
            // The errors the client was sent last explain the close: send them first.
            while let Ok(reply) = pending_replies.try_recv() {
                if timeout(CLOSE_GRACE, sink.feed(reply)).await.is_err() {
                    break;
                }
            }
            close(&mut sink, &mut stream, *code, why).await;
        }
    }
    match end {
        End::ClosedByClient | End::Gone | End::Shutdown => {
            log::info!("Closed connection 😱 ({peer})");
        }
        other => log::info!("Closed connection 😱 ({peer}): {other:?}"),
    }
}

const GOTCHA_JSON: &str = r#"{"message":"Gotcha"}"#;

/// Sends a close frame, then waits briefly for the client's answer.
async fn close(sink: &mut Sink, stream: &mut Stream, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let handshake = async {
        sink.send(Message::Close(Some(frame))).await?;
        while stream.next().await.is_some() {}
        Ok::<_, Error>(())
    };
    let _ = timeout(CLOSE_GRACE, handshake).await;
}

/// Ends the session when the client answered no ping for two heartbeats, or
/// has taken longer than the request timeout over one message.
async fn watchdog(activity: &Activity, context: &Context<Utf8Bytes>, peer: SocketAddr) -> End {
    let config = &context.config;
    let heartbeat = config.heartbeat;
    let limit = config.request_timeout;
    let mut checks = interval(heartbeat.min(limit) / 2);
    loop {
        checks.tick().await;
        if activity.silent_for() > 2 * heartbeat {
            return End::Unresponsive;
        }
        if activity.message_for().is_some_and(|taken| taken > limit) {
            let why = format!("a message took longer than {limit:?} to arrive");
            context.rejections.record(Reason::SlowRequest, peer, &why);
            return End::Refused(CloseCode::Policy, why);
        }
    }
}

async fn write(
    sink: &mut Sink,
    opening: Vec<Message>,
    subscription: &mut Subscription<Utf8Bytes>,
    replies: &mut mpsc::Receiver<Message>,
    context: &Context<Utf8Bytes>,
) -> End {
    for message in opening {
        if let Err(error) = sink.send(message).await {
            return ended_by(error);
        }
    }
    let every = context.config.heartbeat;
    let mut pings = interval_at(Instant::now() + every, every);
    loop {
        let message = tokio::select! {
            biased;
            Some(reply) = replies.recv() => reply,
            event = subscription.next() => match event {
                Some(event) => Message::Text(event.frame.clone()),
                // The hub let go of this client: shutdown and eviction are
                // reported by the session's other branches, first.
                None => return End::Resync,
            },
            _ = pings.tick() => Message::Ping(Default::default()),
        };
        // Whatever else is already waiting goes out with it, in one flush.
        let sent = async {
            sink.feed(message).await?;
            for _ in 1..MAX_BATCH {
                let Some(event) = subscription.try_next() else {
                    break;
                };
                sink.feed(Message::Text(event.frame.clone())).await?;
            }
            sink.flush().await
        };
        if let Err(error) = sent.await {
            return ended_by(error);
        }
    }
}

/// Why a failed write ends the session: a client whose socket's write buffer
/// is full does not read, like one whose queue is full.
fn ended_by(error: Error) -> End {
    match error {
        Error::WriteBufferFull(_) => End::Slow,
        _ => End::Gone,
    }
}

/// Most messages written before one flush.
const MAX_BATCH: usize = 64;

/// The page's own keep-alive, answered to its sender only: `{"ping":N}`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Ping {
    ping: u64,
}

/// The answer to a [`Ping`]: `{"pong":N}`.
#[derive(Serialize)]
struct Pong {
    pong: u64,
}

/// The reading side of a session.
struct Reader<'a> {
    context: &'a Context<Utf8Bytes>,
    peer: SocketAddr,
    replies: mpsc::Sender<Message>,
    /// This connection's share of the message rate limit.
    bucket: TokenBucket,
    /// How often it may ping.
    pings: TokenBucket,
    /// Messages refused by the rate limit since the last one let through.
    strikes: u32,
}

impl Reader<'_> {
    async fn run(mut self, stream: &mut Stream, activity: &Activity) -> End {
        while let Some(message) = stream.next().await {
            return match message {
                Ok(Message::Text(text)) => match self.receive(&text).await {
                    Ok(()) => continue,
                    Err(end) => end,
                },
                Ok(Message::Pong(_)) => {
                    activity.answered();
                    match self.pinged() {
                        Ok(()) => continue,
                        Err(end) => end,
                    }
                }
                Ok(Message::Ping(_)) => match self.pinged() {
                    Ok(()) => continue,
                    Err(end) => end,
                },
                Ok(Message::Frame(_)) => continue,
                Ok(Message::Close(Some(frame))) if frame.code == CloseCode::Protocol => {
                    // tungstenite answers an invalid close code with 1002 too.
                    let why = "a close frame with an invalid code";
                    self.context
                        .rejections
                        .record(Reason::Protocol, self.peer, why);
                    End::ClosedByClient
                }
                Ok(Message::Close(_)) => End::ClosedByClient,
                Ok(Message::Binary(_)) => self.refuse(
                    Reason::Binary,
                    CloseCode::Unsupported,
                    "binary messages are not supported: send JSON text".into(),
                ),
                Err(Error::Capacity(error)) => {
                    self.refuse(Reason::TooLarge, CloseCode::Size, error.to_string())
                }
                Err(Error::Utf8(_)) => self.refuse(
                    Reason::InvalidUtf8,
                    CloseCode::Invalid,
                    "text must be valid UTF-8".into(),
                ),
                // A client that just went away (a closed tab) broke no rule.
                Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => End::Gone,
                Err(Error::Protocol(error)) => {
                    self.refuse(Reason::Protocol, CloseCode::Protocol, error.to_string())
                }
                Err(error) => ended_by(error),
            };
        }
        End::Gone
    }

    /// A ping or pong, from the protocol or the page: within the ping rate,
    /// or the end.
    fn pinged(&mut self) -> Result<(), End> {
        match self.pings.take() {
            Ok(()) => Ok(()),
            Err(_) => {
                let why = format!("more than {PING_RATE} pings a second");
                Err(self.refuse(Reason::TooManyPings, CloseCode::Policy, why))
            }
        }
    }

    /// A text message: the page's ping is answered to this client alone;
    /// `{"message": "..."}` tells everyone that something changed. Anything
    /// else gets an error, to this client only; a client that keeps flooding
    /// past the rate limit is disconnected.
    async fn receive(&mut self, text: &str) -> Result<(), End> {
        if let Ok(Ping { ping }) = serde_json::from_str(text) {
            self.pinged()?;
            let pong = serde_json::to_string(&Pong { pong: ping }).unwrap_or_default();
            let _ = self.replies.try_send(Message::Text(pong.into()));
            return Ok(());
        }
        let inbox = &self.context.inbox;
        if let Err(refused) = inbox.admit(self.peer, Some(&mut self.bucket)) {
            self.strikes += 1;
            if self.strikes >= self.context.config.burst {
                let why = "rate limit exceeded, repeatedly".to_owned();
                return Err(End::Refused(CloseCode::Policy, why));
            }
            self.reply(&refused);
            return Ok(());
        }
        self.strikes = 0;
        if let Err(refused) = inbox.publish(self.peer, text).await {
            self.reply(&refused);
        }
        Ok(())
    }

    /// Counts and logs a refusal that ends the session with `code`.
    fn refuse(&self, reason: Reason, code: CloseCode, why: String) -> End {
        self.context.rejections.record(reason, self.peer, &why);
        End::Refused(code, why)
    }

    fn reply(&self, refused: &Refused) {
        let error = error_json(&refused.to_string());
        // A client that floods errors without reading them loses some.
        let _ = self.replies.try_send(Message::Text(error.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::wire::{GOTCHA, Message as WireMessage};

    #[test]
    fn gotcha_is_the_wire_message() {
        assert_eq!(GOTCHA_JSON, WireMessage::new(GOTCHA).to_json());
    }

    #[test]
    fn the_pages_ping_is_told_from_a_message() {
        assert!(serde_json::from_str::<Ping>(r#"{"ping":7}"#).is_ok());
        assert!(serde_json::from_str::<Ping>(r#"{"message":"hi"}"#).is_err());
        assert!(serde_json::from_str::<Ping>(r#"{"ping":7,"message":"hi"}"#).is_err());
    }
}
