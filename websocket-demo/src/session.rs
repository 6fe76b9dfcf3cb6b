//! One WebSocket client, from "Gotcha" to the close frame.
//!
//! The session runs a writer, a reader and a watchdog side by side. The
//! writer sends the hub's broadcasts (framed once for everyone), the answers
//! to this client and pings, many frames a write; the reader handles what the
//! client sends; the watchdog drops a client that stopped answering pings or
//! takes too long over a message. None can hold the others up, and a write
//! that blocks on a client that stopped reading is abandoned as soon as the
//! hub evicts it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use shared::core::Subscription;
use shared::http::{Conn, Context};
use shared::policy::{Reason, Refused, TokenBucket};
use shared::wire::{error_json, missed_json};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio::time::{Instant, interval, interval_at, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_util::sync::CancellationToken;

use crate::outgoing::{self, Inbound, Outgoing, PONG, SERVER_PING, TEXT};
use crate::watch::{Activity, Watched};

type Io = TokioIo<Upgraded>;
/// What the client sends, read by tungstenite.
pub(crate) type Incoming = WebSocketStream<Watched<Inbound<ReadHalf<Io>>>>;
/// Where the server writes, by itself.
pub(crate) type Writer = WriteHalf<Io>;

/// Close code for a client evicted for not keeping up ("try again later").
pub const CLOSE_SLOW: u16 = 1013;

/// How long a close handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Pings (WebSocket pings, or the page's own ping messages) a client may send
/// a second, and in a burst: far more than any keep-alive needs.
const PING_RATE: f64 = 2.0;
const PING_BURST: u32 = 20;

/// Frames for this client alone (answers, errors, pongs) that may wait at
/// once; a client that floods without reading loses some.
const REPLIES: usize = 16;

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The client sent a close frame, with this code.
    ClosedByClient(Option<u16>),
    /// The connection is gone without a close frame.
    Gone,
    /// The server is shutting down.
    Shutdown,
    /// The client fell too far behind.
    Slow,
    /// The client answered no ping for two intervals.
    Unresponsive,
    /// Broadcasts were lost upstream (the backplane's stream began again):
    /// the client must reconnect and resume to be told.
    Resync,
    /// The client broke the protocol or a limit.
    Refused(CloseCode, String),
}

/// Runs one client from the upgrade to the close: `subscription` holds its
/// place in the hub from before the 101 answer.
pub(crate) async fn run(
    upgrade: OnUpgrade,
    config: WebSocketConfig,
    mut subscription: Subscription,
    evicted: CancellationToken,
    context: Context,
    // Held to the end: the connection's place among the server's is freed
    // when the session ends.
    conn: Conn,
) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => return log::debug!("{}: upgrade failed: {error}", conn.peer),
    };
    let activity = Activity::new();
    let (reading, mut writer) = tokio::io::split(TokioIo::new(upgraded));
    let reading = Watched::new(Inbound::new(reading), activity.clone());
    let mut incoming: Incoming =
        WebSocketStream::from_raw_socket(reading, Role::Server, Some(config)).await;
    let peer = conn.peer;
    log::info!(
        "Opened connection 🎉 ({peer}; {} connected)",
        context.hub.client_count()
    );
    let replies = Replies::default();
    let reader = Reader {
        context: &context,
        peer,
        replies: &replies,
        bucket: context.inbox.bucket(),
        pings: TokenBucket::new(PING_RATE, PING_BURST),
        strikes: 0,
    };
    let mut outgoing = Outgoing::default();
    outgoing.push(Bytes::from_static(GOTCHA_FRAME));
    if let Some(missed) = &subscription.missed {
        outgoing.push(outgoing::frame(TEXT, missed_json(missed).as_bytes()));
    }
    let end = tokio::select! {
        biased;
        () = context.shutdown.cancelled() => End::Shutdown,
        () = evicted.cancelled() => End::Slow,
        end = watchdog(&activity, &context, peer) => end,
        end = write(&mut writer, &mut outgoing, &mut subscription, &replies, &context) => end,
        end = reader.run(&mut incoming, &activity) => end,
    };
    drop(subscription);

    let (code, why): (u16, &str) = match &end {
        End::ClosedByClient(code) => (code.unwrap_or(1000), ""),
        End::Gone | End::Unresponsive => (0, ""),
        End::Shutdown => (1001, "server shutting down"),
        End::Slow => (CLOSE_SLOW, "too slow: reconnect to resume"),
        End::Resync => (1012, "broadcasts were lost upstream: reconnect to resume"),
        End::Refused(code, why) => {
            // The errors the client was sent last explain the close: send them first.
            while let Some(reply) = replies.take() {
                outgoing.push(reply);
            }
            (u16::from(*code), why.as_str())
        }
    };
    if code != 0 {
        close(&mut writer, &mut outgoing, &mut incoming, code, why).await;
    }
    match end {
        End::ClosedByClient(_) | End::Gone | End::Shutdown => {
            log::info!("Closed connection 😱 ({peer})");
        }
        other => log::info!("Closed connection 😱 ({peer}): {other:?}"),
    }
    drop(conn);
}

/// The greeting, framed once.
const GOTCHA_FRAME: &[u8] = b"\x81\x14{\"message\":\"Gotcha\"}";

/// Finishes what was on its way, sends a close frame, then waits briefly
/// for the client's answer.
async fn close(
    writer: &mut Writer,
    outgoing: &mut Outgoing,
    incoming: &mut Incoming,
    code: u16,
    why: &str,
) {
    outgoing.push(outgoing::close(code, why));
    let handshake = async {
        outgoing.flush(writer).await?;
        while incoming.next().await.is_some() {}
        Ok::<_, std::io::Error>(())
    };
    let _ = timeout(CLOSE_GRACE, handshake).await;
}

/// Ends the session when the client answered no ping for two heartbeats, or
/// has taken longer than the request timeout over one message.
async fn watchdog(activity: &Activity, context: &Context, peer: SocketAddr) -> End {
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

/// Writes what is waiting, then waits for more: broadcasts, answers, pings.
async fn write(
    writer: &mut Writer,
    outgoing: &mut Outgoing,
    subscription: &mut Subscription,
    replies: &Replies,
    context: &Context,
) -> End {
    let every = context.config.heartbeat;
    let mut pings = interval_at(Instant::now() + every, every);
    loop {
        if outgoing.flush(writer).await.is_err() {
            return End::Gone;
        }
        let next = tokio::select! {
            biased;
            Some(reply) = replies.next() => reply,
            event = subscription.next() => match event {
                Some(event) => event.frame.clone(),
                // The hub let go of this client: shutdown and eviction are
                // reported by the session's other branches, first.
                None => return End::Resync,
            },
            _ = pings.tick() => SERVER_PING,
        };
        outgoing.push(next);
        // Whatever else is already waiting goes out with it, in one write.
        while !outgoing.is_full() {
            match replies
                .take()
                .or_else(|| subscription.try_next().map(|event| event.frame.clone()))
            {
                Some(frame) => outgoing.push(frame),
                None => break,
            }
        }
    }
}

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

/// Frames for this client alone (answers, errors, pongs), from the reader to
/// the writer: a few, in the session itself (a channel would allocate a
/// block of slots for every client).
#[derive(Default)]
struct Replies {
    queue: Mutex<VecDeque<Bytes>>,
    ready: Notify,
}

impl Replies {
    /// Queues a frame; a client that floods without reading loses some.
    fn push(&self, frame: Bytes) {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if queue.len() < REPLIES {
            queue.push_back(frame);
            drop(queue);
            self.ready.notify_one();
        }
    }

    fn take(&self) -> Option<Bytes> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        queue.pop_front()
    }

    /// The next frame, waiting for one.
    async fn next(&self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.take() {
                return Some(frame);
            }
            self.ready.notified().await;
        }
    }
}

/// The reading side of a session.
struct Reader<'a> {
    context: &'a Context,
    peer: SocketAddr,
    replies: &'a Replies,
    /// This connection's share of the message rate limit.
    bucket: TokenBucket,
    /// How often it may ping.
    pings: TokenBucket,
    /// Messages refused by the rate limit since the last one let through.
    strikes: u32,
}

impl Reader<'_> {
    async fn run(mut self, incoming: &mut Incoming, activity: &Activity) -> End {
        while let Some(message) = incoming.next().await {
            return match message {
                Ok(Message::Text(text)) => match Box::pin(self.receive(&text)).await {
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
                Ok(Message::Ping(payload)) => match self.pinged() {
                    Ok(()) => {
                        self.send(outgoing::frame(PONG, &payload));
                        continue;
                    }
                    Err(end) => end,
                },
                Ok(Message::Frame(_)) => continue,
                Ok(Message::Close(Some(frame))) if frame.code == CloseCode::Protocol => {
                    // tungstenite answers an invalid close code with 1002 too.
                    let why = "a close frame with an invalid code";
                    self.context
                        .rejections
                        .record(Reason::Protocol, self.peer, why);
                    End::Refused(CloseCode::Protocol, why.into())
                }
                Ok(Message::Close(frame)) => {
                    End::ClosedByClient(frame.map(|frame| frame.code.into()))
                }
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
                Err(_) => End::Gone,
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
            self.send(outgoing::frame(TEXT, pong.as_bytes()));
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
        self.send(outgoing::frame(TEXT, error.as_bytes()));
    }

    fn send(&self, frame: Bytes) {
        self.replies.push(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::wire::{GOTCHA, Message as WireMessage};

    #[test]
    fn gotcha_is_the_wire_message_framed() {
        let json = WireMessage::new(GOTCHA).to_json();
        assert_eq!(GOTCHA_FRAME, &outgoing::frame(TEXT, json.as_bytes())[..]);
    }

    #[test]
    fn the_pages_ping_is_told_from_a_message() {
        assert!(serde_json::from_str::<Ping>(r#"{"ping":7}"#).is_ok());
        assert!(serde_json::from_str::<Ping>(r#"{"message":"hi"}"#).is_err());
        assert!(serde_json::from_str::<Ping>(r#"{"ping":7,"message":"hi"}"#).is_err());
    }
}
