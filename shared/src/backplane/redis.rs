//! The Redis backplane: several instances, one stream.
//!
//! Every broadcast is appended to one Redis Stream, and reaches clients only
//! by coming back from it: each instance reads the stream with one blocking
//! reader and delivers each entry, framed once, to its own hub. So every
//! instance delivers the same broadcasts, in the same order, with the same ids.
//!
//! - Ids. A Lua script (`append.lua`) appends each entry atomically with the
//!   id `<run>-<seq>`: `seq` counts up in a hash beside the stream, and `run`
//!   is the time (in microseconds) the stream began. A stream that is lost
//!   (deleted, or Redis restarted without persistence) begins again with a
//!   new, larger run: ids keep increasing, and ids of the old run are known
//!   to be from it (`restarted`). The script also goes past the stream's own
//!   last id, so another writer's entry never makes an append fail.
//! - Resume. Each instance keeps the stream's tail in its hub (read from the
//!   stream when it connects), so a client resumes on any instance.
//! - Entries it did not write. Anything may be in the stream: another
//!   program's entries, a mistyped `XADD`, a later version's fields. An entry
//!   without a UTF-8 `message` of at most `--max-message` bytes is no
//!   broadcast: it is skipped (logged once for each reason, counted in
//!   `/metrics`), and skipping it loses nothing.
//! - Holes and losses. Each entry the script appends names the stream's entry
//!   before it (`prev`, the stream's last id then). The reader checks that
//!   chain against the last entry it read, whatever it was: a match means
//!   nothing was lost, whatever holes the seqs have (entries it skipped, a
//!   seq a failed script burned). A mismatch means entries went before it
//!   read them (trimmed while it was behind, the stream deleted or begun
//!   again): a loss, and its hub lets every client go, to resume and be
//!   told. An entry without `prev` (another writer's, or an older server's)
//!   follows if its id is the next seq, or else if the last entry read is
//!   still in the stream: trimming takes the oldest first, so nothing after
//!   it went.
//! - Ticks. Each interval has a key in Redis; the instance that sets it
//!   (`SET NX`) ticks. When it dies, the others find the next keys free.
//! - Faults. Redis out of reach: publishing fails at once with a clear error,
//!   ticks are skipped, and one task reconnects with backoff and jitter, then
//!   reads on from the last entry it read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Client, RedisError, Script, Value};
use tokio_util::sync::CancellationToken;

use crate::core::{
    Backplane, BackplaneFeed, DELIVERY_BUCKETS, EventId, Link, PublishError, Publisher,
};

/// Appends one broadcast: a new run if the stream is new, the next `seq`
/// past both the counter and the stream's last id, the entry with the id of
/// the one before it, trimmed to about as many entries as instances keep.
const APPEND: &str = include_str!("append.lua");

/// How long the reader blocks on the stream before it asks again: also how
/// soon it notices a shutdown or a Redis that went silent.
const BLOCK: Duration = Duration::from_secs(2);

/// Longest Redis may take to answer a command. A loaded server may be slow
/// to read the answer, so not too short: a publish past it is reported as
/// unconfirmed, though Redis may well have appended it.
const ANSWER: Duration = Duration::from_secs(3);

/// The most entries read at once.
const BATCH: usize = 512;
/// Fewest entries the stream keeps: enough for a slow reader to catch up.
const KEEP_AT_LEAST: usize = 1024;

/// The Redis backplane, as the server's publisher.
pub struct Redis {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    /// Where Redis is, for people (no password).
    place: String,
    stream: String,
    meta: String,
    keep: usize,
    /// The longest message delivered; longer ones are skipped.
    max_message: usize,
    feed: BackplaneFeed,
    append: Script,
    /// The connection for commands, while Redis is reachable.
    commands: Mutex<Option<MultiplexedConnection>>,
    link: Mutex<Link>,
    reconnects: AtomicU64,
    publish_errors: AtomicU64,
    ticks: AtomicU64,
    losses: AtomicU64,
    skipped: [AtomicU64; Skip::ALL.len()],
    /// Whether an entry skipped for each reason was logged yet.
    told: [AtomicBool; Skip::ALL.len()],
    delivery: Histogram,
}

/// Why an entry of the stream is no broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    NoMessage,
    NotText,
    TooLarge,
}

impl Skip {
    const ALL: [Skip; 3] = [Skip::NoMessage, Skip::NotText, Skip::TooLarge];

    /// Its label in `/metrics`.
    fn label(self) -> &'static str {
        match self {
            Skip::NoMessage => "no_message",
            Skip::NotText => "not_text",
            Skip::TooLarge => "too_large",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Skip::NoMessage => "it has no message field",
            Skip::NotText => "its message is not UTF-8 text",
            Skip::TooLarge => "its message is longer than --max-message",
        }
    }
}

/// A URL that cannot be a Redis server's.
#[derive(Debug)]
pub struct BadUrl(RedisError);

impl std::fmt::Display for BadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "not a Redis URL like redis://127.0.0.1:6379/ ({})",
            self.0
        )
    }
}

impl std::error::Error for BadUrl {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl Redis {
    /// A backplane on the stream `stream` of the Redis at `url`, feeding a
    /// hub through `feed`, keeping about `replay` entries, and delivering
    /// messages of at most `max_message` bytes. It connects in the
    /// background, from [`Redis::run`]; until then, publishing fails.
    pub fn new(
        url: &str,
        stream: &str,
        feed: BackplaneFeed,
        replay: usize,
        max_message: usize,
    ) -> Result<Self, BadUrl> {
        let client = Client::open(url).map_err(BadUrl)?;
        let info = client.get_connection_info();
        let place = format!("Redis at {}", info.addr());
        Ok(Redis {
            shared: Arc::new(Shared {
                client,
                place,
                stream: stream.to_owned(),
                meta: format!("{stream}:meta"),
                keep: replay.max(KEEP_AT_LEAST),
                max_message,
                feed,
                append: Script::new(APPEND),
                commands: Mutex::new(None),
                link: Mutex::new(Link::Connecting),
                reconnects: AtomicU64::new(0),
                publish_errors: AtomicU64::new(0),
                ticks: AtomicU64::new(0),
                losses: AtomicU64::new(0),
                skipped: Default::default(),
                told: Default::default(),
                delivery: Histogram::default(),
            }),
        })
    }

    /// Connects, reads the stream into the hub, and reconnects whenever
    /// Redis is lost, until `stop`.
    pub fn run(&self, stop: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            let mut backoff = Backoff::default();
            // The id of the last entry read, once the tail is loaded.
            let mut cursor = None;
            loop {
                let error = tokio::select! {
                    result = shared.connect_and_read(&mut backoff, &mut cursor) => result.err(),
                    () = stop.cancelled() => return,
                };
                let Some(error) = error else { return };
                shared.lost(&error);
                tokio::select! {
                    () = tokio::time::sleep(backoff.next()) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

impl Shared {
    async fn connect_and_read(
        &self,
        backoff: &mut Backoff,
        cursor: &mut Option<String>,
    ) -> Result<(), RedisError> {
        let commands_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(ANSWER));
        let mut commands = self
            .client
            .get_multiplexed_async_connection_with_config(&commands_config)
            .await?;
        // The reader blocks: it gets a connection of its own.
        let reader_config = commands_config.set_response_timeout(Some(BLOCK * 2));
        let mut reader = self
            .client
            .get_multiplexed_async_connection_with_config(&reader_config)
            .await?;
        // New: the stream's tail, for clients that resume. Back after an
        // outage: read on from the last entry read.
        if cursor.is_none() {
            *cursor = Some(self.read_tail(&mut commands).await?);
        }
        let last = cursor.get_or_insert_with(|| "0-0".to_owned());
        self.reached(commands.clone());
        backoff.reset();
        loop {
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(&*last)
                .query_async(&mut reader)
                .await?;
            for entry in reply
                .into_iter()
                .flat_map(|reply| reply.keys)
                .flat_map(|key| key.ids)
            {
                self.read(&entry, last, &mut commands).await?;
                *last = entry.id;
            }
        }
    }

    /// Loads the newest entries the stream keeps (as many as the hub does)
    /// into the hub, oldest first; the id to read on from.
    async fn read_tail(&self, commands: &mut MultiplexedConnection) -> Result<String, RedisError> {
        let tail: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&self.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(self.keep)
            .query_async(commands)
            .await?;
        let mut history = Vec::with_capacity(tail.ids.len());
        // The oldest entry the hub holds everything after.
        let mut from = None;
        let mut previous: Option<&str> = None;
        for entry in tail.ids.iter().rev() {
            // Stream ids are two 64-bit numbers: they always parse.
            let Some(id) = parse_entry_id(&entry.id) else {
                continue;
            };
            // A chain broken within the tail (entries deleted by hand):
            // what comes before cannot be resumed from.
            let broken = previous.is_some_and(|previous| !names_as_prev(entry, previous));
            if broken || from.is_none() {
                history.clear();
                from = Some(id);
            }
            previous = Some(&entry.id);
            match self.message(&entry.map) {
                Ok(message) => history.push((id, message)),
                Err(skip) => self.skipped(skip, &entry.id),
            }
        }
        self.feed.load(
            from,
            history.iter().map(|(id, message)| (*id, message.as_str())),
        );
        Ok(tail
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone()))
    }

    /// Takes one entry read after the entry `last`: a loss first if entries
    /// went between them, then the broadcast it carries, if it is one.
    async fn read(
        &self,
        entry: &StreamId,
        last: &str,
        commands: &mut MultiplexedConnection,
    ) -> Result<(), RedisError> {
        // Stream ids are two 64-bit numbers: they always parse.
        let Some(id) = parse_entry_id(&entry.id) else {
            return Ok(());
        };
        if !self.follows(entry, id, last, commands).await? {
            self.losses.fetch_add(1, Ordering::Relaxed);
            self.feed.lost(id);
        }
        match self.message(&entry.map) {
            Ok(message) => {
                if self.feed.deliver(id, &message)
                    && let Some(at) = text(&entry.map, "at").and_then(|at| at.parse::<u64>().ok())
                {
                    let taken = now_millis().saturating_sub(at);
                    self.delivery.record(Duration::from_millis(taken));
                }
            }
            Err(skip) => self.skipped(skip, &entry.id),
        }
        Ok(())
    }

    /// Whether `entry` comes right after the entry `last` in the stream, no
    /// entry having gone between them.
    async fn follows(
        &self,
        entry: &StreamId,
        id: EventId,
        last: &str,
        commands: &mut MultiplexedConnection,
    ) -> Result<bool, RedisError> {
        if entry.map.contains_key("prev") {
            return Ok(names_as_prev(entry, last));
        }
        // No chain to check: another writer's entry, or an older server's.
        let next_seq = parse_entry_id(last).and_then(|last| {
            let seq = last.seq.checked_add(1)?;
            Some(EventId { run: last.run, seq })
        });
        if last == "0-0" || next_seq == Some(id) {
            return Ok(true);
        }
        // Trimming takes the oldest entries first: if `last` is still there,
        // nothing after it went.
        let still: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg(last)
            .arg(last)
            .query_async(commands)
            .await?;
        Ok(!still.ids.is_empty())
    }

    /// The broadcast an entry carries, or why it carries none.
    fn message(&self, fields: &HashMap<String, Value>) -> Result<String, Skip> {
        match fields.get("message") {
            None => Err(Skip::NoMessage),
            Some(Value::BulkString(bytes)) if bytes.len() > self.max_message => Err(Skip::TooLarge),
            Some(Value::BulkString(bytes)) => {
                String::from_utf8(bytes.clone()).map_err(|_| Skip::NotText)
            }
            Some(_) => Err(Skip::NotText),
        }
    }

    /// Counts an entry that is no broadcast; the first of each kind is
    /// logged, the others only counted (another program may write many).
    fn skipped(&self, skip: Skip, entry: &str) {
        let index = skip as usize;
        self.skipped[index].fetch_add(1, Ordering::Relaxed);
        if self.told[index].swap(true, Ordering::Relaxed) {
            log::debug!("Skipped stream entry {entry}: {}", skip.why());
        } else {
            log::warn!(
                "Skipped stream entry {entry} of {}: {}, so it is no broadcast \
                 (more like it are counted in demo_backplane_skipped_entries_total{{reason=\"{}\"}})",
                self.stream,
                skip.why(),
                skip.label()
            );
        }
    }

    fn reached(&self, commands: MultiplexedConnection) {
        *lock(&self.commands) = Some(commands);
        match std::mem::replace(&mut *lock(&self.link), Link::Up) {
            Link::Connecting => log::info!(
                "Backplane: connected to {}, stream {}",
                self.place,
                self.stream
            ),
            Link::Down(_) => {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                log::info!("Backplane: {} reached again", self.place);
            }
            Link::Up => {}
        }
    }

    fn lost(&self, error: &RedisError) {
        *lock(&self.commands) = None;
        let why = format!("cannot reach {}: {error}", self.place);
        let mut link = lock(&self.link);
        // One line an outage, not one a retry.
        if matches!(*link, Link::Down(_)) {
            log::debug!("Backplane: {why}");
        } else {
            log::warn!("Backplane: {why}; retrying with backoff and jitter");
        }
        *link = Link::Down(why);
    }

    fn commands(&self) -> Option<MultiplexedConnection> {
        lock(&self.commands).clone()
    }
}

impl Publisher for Redis {
    fn publish<'a>(&'a self, message: &'a str) -> BoxFuture<'a, Result<EventId, PublishError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let failed = |why: String, unconfirmed: bool| {
                shared.publish_errors.fetch_add(1, Ordering::Relaxed);
                PublishError { why, unconfirmed }
            };
            let Some(mut commands) = shared.commands() else {
                return Err(failed(format!("{} is out of reach", shared.place), false));
            };
            let (run, seq, _prev): (String, u64, String) = shared
                .append
                .key(&shared.stream)
                .key(&shared.meta)
                .arg(message)
                .arg(shared.keep)
                .arg(now_millis())
                .invoke_async(&mut commands)
                .await
                .map_err(|error| {
                    // Sent but not answered: Redis may still append it.
                    let unconfirmed = error.is_timeout();
                    failed(format!("{}: {error}", shared.place), unconfirmed)
                })?;
            let run = run.parse().map_err(|_| {
                failed(
                    format!("{}: a run that is not a number", shared.place),
                    true,
                )
            })?;
            Ok(EventId { run, seq })
        })
    }

    fn claim_tick(&self, slot: u64) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let shared = &self.shared;
            let Some(mut commands) = shared.commands() else {
                return false;
            };
            // Kept a minute: long past the interval, then gone by itself.
            let claimed: Result<Option<String>, _> = redis::cmd("SET")
                .arg(format!("{}:tick:{slot}", shared.stream))
                .arg(std::process::id())
                .arg("NX")
                .arg("EX")
                .arg(60)
                .query_async(&mut commands)
                .await;
            let won = matches!(claimed, Ok(Some(_)));
            if won {
                shared.ticks.fetch_add(1, Ordering::Relaxed);
            }
            won
        })
    }

    fn backplane(&self) -> Option<Backplane> {
        let shared = &self.shared;
        let (delivery_buckets, delivery_count, delivery_seconds) = shared.delivery.snapshot();
        let skipped = Skip::ALL
            .iter()
            .zip(&shared.skipped)
            .map(|(skip, count)| (skip.label(), count.load(Ordering::Relaxed)))
            .collect();
        Some(Backplane {
            link: lock(&shared.link).clone(),
            place: format!("{}, stream {}", shared.place, shared.stream),
            reconnects: shared.reconnects.load(Ordering::Relaxed),
            publish_errors: shared.publish_errors.load(Ordering::Relaxed),
            ticks: shared.ticks.load(Ordering::Relaxed),
            skipped,
            losses: shared.losses.load(Ordering::Relaxed),
            delivery_buckets,
            delivery_count,
            delivery_seconds,
        })
    }
}

/// Whether `entry` names `previous` as the entry before it. An entry without
/// `prev` names none: within one read of the stream it follows what came
/// before it.
fn names_as_prev(entry: &StreamId, previous: &str) -> bool {
    match entry.map.get("prev") {
        Some(Value::BulkString(prev)) => prev == previous.as_bytes(),
        Some(_) => false,
        None => true,
    }
}

/// A field of a stream entry, as text.
fn text(fields: &HashMap<String, Value>, name: &str) -> Option<String> {
    match fields.get(name) {
        Some(Value::BulkString(bytes)) => String::from_utf8(bytes.clone()).ok(),
        _ => None,
    }
}

fn parse_entry_id(entry: &str) -> Option<EventId> {
    let (run, seq) = entry.split_once('-')?;
    Some(EventId {
        run: run.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Waits between reconnections: 100 ms doubling to 5 s, each between half
/// and all of it, so that instances do not all come back at once.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let ceiling = Duration::from_millis(100) * 2u32.pow(self.failures.min(6));
        let ceiling = ceiling.min(Duration::from_secs(5));
        self.failures += 1;
        // std's RandomState is seeded afresh each time: random enough for jitter.
        let random =
            std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), self.failures);
        ceiling / 2 + ceiling.mul_f64((random % 1000) as f64 / 2000.0)
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Delivery times, in the buckets of [`DELIVERY_BUCKETS`].
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; DELIVERY_BUCKETS.len()],
    count: AtomicU64,
    micros: AtomicU64,
}

impl Histogram {
    fn record(&self, taken: Duration) {
        let seconds = taken.as_secs_f64();
        for (bound, bucket) in DELIVERY_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(taken.as_micros() as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let buckets = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        let count = self.count.load(Ordering::Relaxed);
        let seconds = self.micros.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, count, seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream entry id of an event id: `<run>-<seq>`, both in decimal.
    fn entry_id(id: EventId) -> String {
        format!("{}-{}", id.run, id.seq)
    }

    #[test]
    fn event_ids_and_entry_ids_say_the_same() {
        let id = EventId {
            run: 1_764_000_000_123_456,
            seq: 42,
        };
        assert_eq!(entry_id(id), "1764000000123456-42");
        assert_eq!(parse_entry_id(&entry_id(id)), Some(id));
        assert_eq!(parse_entry_id("x-1"), None);
    }

    #[test]
    fn backoff_doubles_to_five_seconds_with_jitter() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits[9] >= Duration::from_millis(2500) && waits[9] <= Duration::from_secs(5));
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(100));
    }
}
