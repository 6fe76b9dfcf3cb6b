//! One WebSocket client, from "Gotcha" to the close frame.
//!
//! A session is one future that does everything for its client by turns,
//! through the one [`Wire`] that reads and writes its socket:
//!
//! - it writes the hub's broadcasts (framed once for everyone), the answers
//!   to this client and pings, many frames a write;
//! - it reads what the client sends and publishes each message, one at a
//!   time, reading nothing more while one is being published: a client that
//!   sends faster than the server can publish is slowed down (TCP pushes
//!   back), and every message it sent is broadcast or answered with an error;
//! - it drops a client that stopped answering pings, or takes too long over
//!   one message, by the client's clocks ([`crate::wire::Clock`]): time the
//!   server spent publishing is not the client's.
//!
//! None of these holds up the others, and a write that blocks on a client
//! that stopped reading is abandoned as soon as the hub evicts it.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use shared::core::{EventId, Subscription};
use shared::http::{Conn, Context};
use shared::policy::{Reason, Refused, TokenBucket};
use shared::wire::{error_json, missed_json};
use tokio::time::{Instant, Interval, MissedTickBehavior, interval, timeout};
use tokio_util::sync::CancellationToken;

use crate::frames::{self, POLICY, PONG, Received, SERVER_PING, TEXT};
use crate::wire::{Read, Wire};

type Io = TokioIo<Upgraded>;

/// Close code for a client evicted for not keeping up ("try again later").
pub const CLOSE_SLOW: u16 = 1013;

/// How long a close handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Pings (WebSocket pings, or the page's own ping messages) a client may send
/// a second, and in a burst: far more than any keep-alive needs.
const PING_RATE: f64 = 2.0;
const PING_BURST: u32 = 20;

/// Frames for this client alone (answers, errors, pongs) that may wait for
/// the writer; past them, nothing more is read until it takes some, so no
/// answer is ever dropped.
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
    /// The client broke the protocol or a limit: the close code, and why.
    Refused(u16, String),
}

/// A client's message on its way to every client.
type Publishing<'a> = Pin<Box<dyn Future<Output = Result<EventId, Refused>> + Send + 'a>>;

/// Runs one client from the upgrade to the close: `subscription` holds its
/// place in the hub from before the 101 answer.
pub(crate) async fn run(
    upgrade: OnUpgrade,
    subscription: Subscription,
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
    let peer = conn.peer;
    log::info!(
        "Opened connection 🎉 ({peer}; {} connected)",
        context.hub.client_count()
    );
    let mut session = Session::new(&context, peer, TokioIo::new(upgraded), subscription);
    let end = tokio::select! {
        biased;
        () = context.shutdown.cancelled() => End::Shutdown,
        () = evicted.cancelled() => End::Slow,
        end = std::future::poll_fn(|cx| session.poll(cx)) => end,
    };
    // Boxed: the close handshake's state (a timer, the session moved in)
    // is held only while it runs, not by every idle session.
    Box::pin(session.close(end)).await;
    drop(conn);
}

/// The greeting, framed once.
const GOTCHA_FRAME: &[u8] = b"\x81\x14{\"message\":\"Gotcha\"}";

struct Session<'a> {
    context: &'a Context,
    peer: SocketAddr,
    wire: Wire<Io>,
    subscription: Subscription,
    /// Frames for this client alone, oldest first, before the writer takes them.
    replies: VecDeque<Bytes>,
    /// The client's message being published, if one is.
    publishing: Option<Publishing<'a>>,
    /// Checks the client's clocks, and says when to ping.
    checks: Interval,
    next_ping: Instant,
    ping_due: bool,
    /// This connection's share of the message rate limit.
    bucket: TokenBucket,
    /// How often it may ping.
    pings: TokenBucket,
    /// Messages refused by the rate limit since the last one let through.
    strikes: u32,
}

impl<'a> Session<'a> {
    fn new(context: &'a Context, peer: SocketAddr, io: Io, subscription: Subscription) -> Self {
        let config = &context.config;
        let mut wire = Wire::new(io, config.max_message);
        wire.send(Bytes::from_static(GOTCHA_FRAME));
        if let Some(missed) = &subscription.missed {
            wire.send(frames::frame(TEXT, missed_json(missed).as_bytes()));
        }
        let mut checks = interval(config.heartbeat.min(config.request_timeout) / 2);
        checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Session {
            context,
            peer,
            wire,
            subscription,
            replies: VecDeque::new(),
            publishing: None,
            checks,
            next_ping: Instant::now() + config.heartbeat,
            ping_due: false,
            bucket: context.inbox.bucket(),
            pings: TokenBucket::new(PING_RATE, PING_BURST),
            strikes: 0,
        }
    }

    /// Does whatever can be done now: the end of the session once it comes.
    fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<End> {
        loop {
            if let Err(end) = self.check(cx) {
                return Poll::Ready(end);
            }
            if let Some(publishing) = &mut self.publishing
                && let Poll::Ready(published) = publishing.as_mut().poll(cx)
            {
                self.publishing = None;
                if let Err(refused) = published {
                    self.reply(&refused);
                }
            }
            let mut read = false;
            let answers_full = self.replies.len() >= REPLIES;
            if self.publishing.is_none() {
                if answers_full {
                    // The client does not take its answers: it holds the
                    // server up, and its clocks run.
                    self.wire.clock.wait();
                } else if let Poll::Ready(received) = self.wire.poll_read(cx) {
                    if let Err(end) = self.received(received) {
                        return Poll::Ready(end);
                    }
                    read = true;
                }
            }
            if let Poll::Ready(end) = self.poll_write(cx) {
                return Poll::Ready(end);
            }
            // Go round again if something was read, or if the writer made
            // room for answers that held reading up: nothing else would
            // wake the session to read.
            let room = answers_full && self.replies.len() < REPLIES;
            if !read && !room {
                return Poll::Pending;
            }
        }
    }

    /// Ends the session when the client answered no ping for two heartbeats,
    /// or has taken longer than the request timeout over one message; and
    /// says when a ping is due.
    fn check(&mut self, cx: &mut TaskContext<'_>) -> Result<(), End> {
        let config = &self.context.config;
        while let Poll::Ready(now) = self.checks.poll_tick(cx) {
            if now >= self.next_ping {
                self.ping_due = true;
                self.next_ping = now + config.heartbeat;
            }
            let clock = &self.wire.clock;
            if clock.silent_for() > 2 * config.heartbeat {
                return Err(End::Unresponsive);
            }
            let limit = config.request_timeout;
            if clock.message_for().is_some_and(|taken| taken > limit) {
                let why = format!("a message took longer than {limit:?} to arrive");
                let rejections = &self.context.rejections;
                rejections.record(Reason::SlowRequest, self.peer, &why);
                return Err(End::Refused(POLICY, why));
            }
        }
        Ok(())
    }

    /// Writes what is waiting (answers first, then a ping, then broadcasts),
    /// many frames a write, until nothing is left or the socket is full.
    fn poll_write(&mut self, cx: &mut TaskContext<'_>) -> Poll<End> {
        loop {
            while !self.wire.is_full() {
                if let Some(reply) = self.replies.pop_front() {
                    self.wire.send(reply);
                } else if std::mem::take(&mut self.ping_due) {
                    self.wire.send(SERVER_PING);
                } else {
                    match self.subscription.poll_next(cx) {
                        Poll::Ready(Some(event)) => self.wire.send(event.frame.clone()),
                        // The hub let go of this client: shutdown and eviction
                        // are reported by the session's other branches, first.
                        Poll::Ready(None) => return Poll::Ready(End::Resync),
                        Poll::Pending => break,
                    }
                }
            }
            if self.wire.is_empty() {
                return Poll::Pending;
            }
            match self.wire.poll_flush(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(End::Gone),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// What the client sent: answered, published, or the end.
    fn received(&mut self, read: Read) -> Result<(), End> {
        match read {
            Read::Received(Received::Text(text)) => self.receive(text),
            Read::Received(Received::Pong) => self.pinged(),
            Read::Received(Received::Ping(payload)) => {
                self.pinged()?;
                self.replies.push_back(frames::frame(PONG, &payload));
                Ok(())
            }
            Read::Received(Received::Close(code)) => Err(End::ClosedByClient(code)),
            Read::Refused(violation) => {
                let rejections = &self.context.rejections;
                rejections.record(violation.reason, self.peer, &violation.why);
                Err(End::Refused(violation.code, violation.why))
            }
            // A client that just went away (a closed tab) broke no rule.
            Read::Gone => Err(End::Gone),
        }
    }

    /// A ping or pong, from the protocol or the page: within the ping rate,
    /// or the end.
    fn pinged(&mut self) -> Result<(), End> {
        match self.pings.take() {
            Ok(()) => Ok(()),
            Err(_) => {
                let why = format!("more than {PING_RATE} pings a second");
                let rejections = &self.context.rejections;
                rejections.record(Reason::TooManyPings, self.peer, &why);
                Err(End::Refused(POLICY, why))
            }
        }
    }

    /// A text message: the page's ping is answered to this client alone;
    /// `{"message": "..."}` tells everyone that something changed, once it is
    /// published. Anything else gets an error, to this client only; a client
    /// that keeps flooding past the rate limit is disconnected.
    fn receive(&mut self, text: String) -> Result<(), End> {
        if let Ok(Ping { ping }) = serde_json::from_str(&text) {
            self.pinged()?;
            let pong = serde_json::to_string(&Pong { pong: ping }).unwrap_or_default();
            self.replies.push_back(frames::frame(TEXT, pong.as_bytes()));
            return Ok(());
        }
        let inbox = &self.context.inbox;
        if let Err(refused) = inbox.admit(self.peer, Some(&mut self.bucket)) {
            self.strikes += 1;
            if self.strikes >= self.context.config.burst {
                let why = "rate limit exceeded, repeatedly".to_owned();
                return Err(End::Refused(POLICY, why));
            }
            self.reply(&refused);
            return Ok(());
        }
        self.strikes = 0;
        let peer = self.peer;
        self.publishing = Some(Box::pin(async move { inbox.publish(peer, &text).await }));
        Ok(())
    }

    fn reply(&mut self, refused: &Refused) {
        let error = error_json(&refused.to_string());
        self.replies
            .push_back(frames::frame(TEXT, error.as_bytes()));
    }

    /// Leaves the hub, finishes what was on its way, sends a close frame
    /// (after the errors that explain it), then waits briefly for the
    /// client's answer.
    async fn close(self, end: End) {
        let Session {
            mut wire,
            mut replies,
            subscription,
            peer,
            ..
        } = self;
        drop(subscription);
        let (code, why): (u16, &str) = match &end {
            End::ClosedByClient(code) => (code.unwrap_or(1000), ""),
            End::Gone | End::Unresponsive => (0, ""),
            End::Shutdown => (1001, "server shutting down"),
            End::Slow => (CLOSE_SLOW, "too slow: reconnect to resume"),
            End::Resync => (1012, "broadcasts were lost upstream: reconnect to resume"),
            End::Refused(code, why) => {
                while let Some(reply) = replies.pop_front() {
                    wire.send(reply);
                }
                (*code, why.as_str())
            }
        };
        if code != 0 {
            wire.send(frames::close(code, why));
            // A close the client began is answered; one the server began
            // waits for the client's answer (what comes before it is dropped).
            let answered = matches!(end, End::ClosedByClient(_));
            let handshake = async {
                wire.flush().await?;
                if !answered {
                    while let Read::Received(received) = wire.read().await {
                        if let Received::Close(_) = received {
                            break;
                        }
                    }
                }
                Ok::<_, std::io::Error>(())
            };
            let _ = timeout(CLOSE_GRACE, handshake).await;
        }
        match end {
            End::ClosedByClient(_) | End::Gone | End::Shutdown => {
                log::info!("Closed connection 😱 ({peer})");
            }
            other => log::info!("Closed connection 😱 ({peer}): {other:?}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use shared::wire::{GOTCHA, Message as WireMessage};

    #[test]
    fn gotcha_is_the_wire_message_framed() {
        let json = WireMessage::new(GOTCHA).to_json();
        assert_eq!(GOTCHA_FRAME, &frames::frame(TEXT, json.as_bytes())[..]);
    }

    #[test]
    fn the_pages_ping_is_told_from_a_message() {
        assert!(serde_json::from_str::<Ping>(r#"{"ping":7}"#).is_ok());
        assert!(serde_json::from_str::<Ping>(r#"{"message":"hi"}"#).is_err());
        assert!(serde_json::from_str::<Ping>(r#"{"ping":7,"message":"hi"}"#).is_err());
    }
}
