//! The publisher: the one place a broadcast is published, whoever sends it
//! (the ticker, a WebSocket client, `POST /api`).
//!
//! The in-process publisher hands each broadcast straight to this server's
//! hub, through the hub's [`LocalFeed`]. A backplane is another publisher
//! (see the `backplane` layer): it appends the broadcast to a log every
//! instance reads, and each instance's reader delivers what comes back to
//! its own hub through a [`BackplaneFeed`](super::hub::BackplaneFeed). It
//! also decides which instance ticks, so that several instances tick once.

use std::fmt;

use futures_util::future::BoxFuture;

use super::hub::LocalFeed;
use super::id::EventId;

/// Publishes broadcasts to every client of every instance.
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `message`; resolves to the id it got.
    fn publish<'a>(&'a self, message: &'a str) -> BoxFuture<'a, Result<EventId, PublishError>>;

    /// Whether this instance should broadcast the tick of interval `slot`
    /// (the number of whole intervals since the Unix epoch). At most one
    /// instance gets `true` for a slot.
    fn claim_tick(&self, slot: u64) -> BoxFuture<'_, bool>;

    /// The backplane between instances, if there is one: its state and
    /// counters, for `/healthz` and `/metrics`.
    fn backplane(&self) -> Option<Backplane> {
        None
    }
}

/// Whether a backplane can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not reached yet since the server started.
    Connecting,
    Up,
    /// Lost, and why (for people).
    Down(String),
}

/// What a backplane reports of itself.
#[derive(Debug, Clone)]
pub struct Backplane {
    pub link: Link,
    /// What it is, for people: where, and which stream.
    pub place: String,
    /// How many times it was reached again after being lost.
    pub reconnects: u64,
    /// Broadcasts that could not be published.
    pub publish_errors: u64,
    /// Ticks this instance claimed (and so broadcast).
    pub ticks: u64,
    /// Entries of the log that were not broadcasts (another writer's), read
    /// and skipped, by reason.
    pub skipped: Vec<(&'static str, u64)>,
    /// Times broadcasts went before this instance read them, so that every
    /// client was let go to resume and be told.
    pub losses: u64,
    /// Seconds from publishing to delivery on this instance: how many took
    /// at most each bound of [`DELIVERY_BUCKETS`], then the count and sum.
    pub delivery_buckets: Vec<u64>,
    pub delivery_count: u64,
    pub delivery_seconds: f64,
}

impl Backplane {
    /// Whether it is reachable now.
    pub fn up(&self) -> bool {
        self.link == Link::Up
    }

    /// What it is, or why it is not reachable: for people.
    pub fn detail(&self) -> String {
        match &self.link {
            Link::Connecting => format!("connecting to {}", self.place),
            Link::Up => self.place.clone(),
            Link::Down(why) => why.clone(),
        }
    }
}

/// The bounds, in seconds, of the delivery-time histogram.
pub const DELIVERY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A broadcast that could not be published (a backplane out of reach), or
/// whose publication the backplane did not confirm in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    pub why: String,
    /// The backplane got the message but did not answer: it may have gone
    /// out, and sending it again may repeat it.
    pub unconfirmed: bool,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unconfirmed {
            write!(f, "broadcast not confirmed: {}", self.why)
        } else {
            write!(f, "cannot publish: {}", self.why)
        }
    }
}

impl std::error::Error for PublishError {}

/// The publisher of a server that runs alone: its hub is the whole audience,
/// and it assigns the ids.
pub struct Local {
    feed: LocalFeed,
}

impl Local {
    pub fn new(feed: LocalFeed) -> Local {
        Local { feed }
    }
}

impl Publisher for Local {
    fn publish<'a>(&'a self, message: &'a str) -> BoxFuture<'a, Result<EventId, PublishError>> {
        let id = self.feed.publish(message);
        Box::pin(std::future::ready(Ok(id)))
    }

    fn claim_tick(&self, _slot: u64) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(true))
    }
}
