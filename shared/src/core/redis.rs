//! The Redis backplane: several instances, one stream.
//!
//! Every broadcast is appended to one Redis Stream, and reaches clients only
//! by coming back from it: each instance reads the stream with one blocking
//! reader and delivers each entry, framed once, to its own hub. So every
//! instance delivers the same broadcasts, in the same order, with the same ids.
//!
//! - Ids. A Lua script appends each entry atomically with the id
//!   `<run>-<seq>`: `seq` counts up in a hash beside the stream, and `run` is
//!   the time (in microseconds) the stream began. A stream that is lost
//!   (deleted, or Redis restarted without persistence) begins again with a
//!   new, larger run: ids keep increasing, and ids of the old run are known
//!   to be from it (`restarted`).
//! - Resume. Each instance keeps the stream's tail in its hub (read from the
//!   stream when it connects), so a client resumes on any instance.
//! - Ticks. Each interval has a key in Redis; the instance that sets it
//!   (`SET NX`) ticks. When it dies, the others find the next keys free.
//! - Faults. Redis out of reach: publishing fails at once with a clear error,
//!   ticks are skipped, and one task reconnects with backoff and jitter, then
//!   reads on from the last entry it delivered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client, RedisError, Script, Value};
use tokio_util::sync::CancellationToken;

use super::hub::Hub;
use super::id::EventId;
use super::publisher::{Backplane, DELIVERY_BUCKETS, PublishError, Publisher};

/// Appends one broadcast: a new run if the stream is new, the next `seq`,
/// the entry, trimmed to about as many entries as instances keep.
const APPEND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then
  local now = redis.call('TIME')
  local run = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('HSET', KEYS[2], 'run', run, 'seq', 0)
end
local run = redis.call('HGET', KEYS[2], 'run')
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], run .. '-' .. seq,
  'message', ARGV[1], 'at', ARGV[3])
return {run, seq}
";

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
    hub: Arc<Hub>,
    append: Script,
    /// The connection for commands, while Redis is reachable.
    commands: Mutex<Option<MultiplexedConnection>>,
    /// Why Redis is out of reach, while it is.
    down: Mutex<Option<String>>,
    reconnects: AtomicU64,
    publish_errors: AtomicU64,
    ticks: AtomicU64,
    delivery: Histogram,
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

impl std::error::Error for BadUrl {}

impl Redis {
    /// A backplane on the stream `stream` of the Redis at `url`, feeding
    /// `hub`, and keeping about `replay` entries. It connects in the
    /// background, from [`Redis::run`]; until then, publishing fails.
    pub fn new(url: &str, stream: &str, hub: Arc<Hub>, replay: usize) -> Result<Self, BadUrl> {
        let client = Client::open(url).map_err(BadUrl)?;
        let info = client.get_connection_info();
        let place = format!("Redis at {}", info.addr());
        Ok(Redis {
            shared: Arc::new(Shared {
                client,
                place: place.clone(),
                stream: stream.to_owned(),
                meta: format!("{stream}:meta"),
                keep: replay.max(KEEP_AT_LEAST),
                hub,
                append: Script::new(APPEND),
                commands: Mutex::new(None),
                down: Mutex::new(Some(format!("connecting to {place}"))),
                reconnects: AtomicU64::new(0),
                publish_errors: AtomicU64::new(0),
                ticks: AtomicU64::new(0),
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
            loop {
                let error = tokio::select! {
                    result = shared.connect_and_read(&mut backoff) => result.err(),
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
    async fn connect_and_read(&self, backoff: &mut Backoff) -> Result<(), RedisError> {
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
        let mut last = match self.hub.last_id() {
            // Back after an outage: read on from the last entry delivered.
            Some(id) => entry_id(id),
            // Back after an outage, nothing delivered yet: whatever was
            // appended meanwhile is news to the clients.
            None if self.hub.loaded() => "0-0".to_owned(),
            // New: the stream's tail, for clients that resume.
            None => self.read_tail(&mut commands).await?,
        };
        self.reached(commands);
        backoff.reset();
        loop {
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(BATCH)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(&last)
                .query_async(&mut reader)
                .await?;
            for entry in reply
                .into_iter()
                .flat_map(|reply| reply.keys)
                .flat_map(|key| key.ids)
            {
                self.deliver(&entry.id, &entry.map);
                last = entry.id;
            }
        }
    }

    /// Delivers the newest entries the stream keeps (as many as the hub
    /// does), oldest first; the id to read on from.
    async fn read_tail(&self, commands: &mut MultiplexedConnection) -> Result<String, RedisError> {
        let tail: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&self.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(self.keep)
            .query_async(commands)
            .await?;
        let mut history = Vec::with_capacity(tail.ids.len());
        for entry in tail.ids.iter().rev() {
            if let (Some(id), Some(message)) =
                (parse_entry_id(&entry.id), text(&entry.map, "message"))
            {
                history.push((id, message));
            }
        }
        self.hub
            .load(history.iter().map(|(id, message)| (*id, message.as_str())));
        Ok(tail
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone()))
    }

    fn deliver(&self, entry: &str, fields: &std::collections::HashMap<String, Value>) {
        let Some(id) = parse_entry_id(entry) else {
            log::warn!("Skipped stream entry {entry}: not an id this server writes");
            return;
        };
        let Some(message) = text(fields, "message") else {
            log::warn!("Skipped stream entry {entry}: no message");
            return;
        };
        if self.hub.deliver(id, &message)
            && let Some(at) = text(fields, "at").and_then(|at| at.parse::<u64>().ok())
        {
            let taken = now_millis().saturating_sub(at);
            self.delivery.record(Duration::from_millis(taken));
        }
    }

    fn reached(&self, commands: MultiplexedConnection) {
        *lock(&self.commands) = Some(commands);
        if let Some(why) = lock(&self.down).take() {
            if why.starts_with("connecting") {
                log::info!(
                    "Backplane: connected to {}, stream {}",
                    self.place,
                    self.stream
                );
            } else {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                log::info!("Backplane: {} reached again", self.place);
            }
        }
    }

    fn lost(&self, error: &RedisError) {
        *lock(&self.commands) = None;
        let mut down = lock(&self.down);
        let why = format!("cannot reach {}: {error}", self.place);
        // One line an outage, not one a retry.
        let new_outage = down
            .as_ref()
            .is_none_or(|was| was.starts_with("connecting"));
        if new_outage {
            log::warn!("Backplane: {why}; retrying with backoff and jitter");
        } else {
            log::debug!("Backplane: {why}");
        }
        *down = Some(why);
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
            let (run, seq): (String, u64) = shared
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
        let down = lock(&shared.down).clone();
        let (delivery_buckets, delivery_count, delivery_seconds) = shared.delivery.snapshot();
        Some(Backplane {
            up: down.is_none(),
            detail: down.unwrap_or_else(|| format!("{}, stream {}", shared.place, shared.stream)),
            reconnects: shared.reconnects.load(Ordering::Relaxed),
            publish_errors: shared.publish_errors.load(Ordering::Relaxed),
            ticks: shared.ticks.load(Ordering::Relaxed),
            delivery_buckets,
            delivery_count,
            delivery_seconds,
        })
    }
}

/// A field of a stream entry, as text.
fn text(fields: &std::collections::HashMap<String, Value>, name: &str) -> Option<String> {
    match fields.get(name) {
        Some(Value::BulkString(bytes)) => String::from_utf8(bytes.clone()).ok(),
        _ => None,
    }
}

/// The stream entry id of an event id: `<run>-<seq>`, both in decimal.
fn entry_id(id: EventId) -> String {
    format!("{}-{}", id.run, id.seq)
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
