//! The broadcast hub: every broadcast is framed once and kept in one bounded
//! ring, which is both the replay buffer and every subscriber's queue: each
//! subscriber is a cursor into it.
//!
//! The hub holds its lock only for plain memory work (never across an
//! `.await`), and a subscriber that falls more than `client_queue`
//! broadcasts behind is evicted on the spot rather than waited for, so one
//! stalled client can neither slow the others nor grow memory.
//!
//! Positions, not ids, index the ring. Every broadcast the hub takes gets
//! the next position, consecutive by construction, and keeps its id beside
//! it. Ids only increase: they may have holes (a backplane's stream holds
//! entries that are not broadcasts, or ids never written; with topics, a
//! topic's ring will hold a few ids of the whole stream). So a resume maps
//! its id to a position once, by binary search, when it subscribes, and
//! reading on is one index under one short lock, as cheap as before.
//!
//! Whether a resume can be served is a matter of ids: the hub knows after
//! which id it holds every broadcast (`complete_after`: what it dropped from
//! the ring, or the last loss its feed reported), and a client whose id is
//! at or after that point missed nothing the ring does not hold.
//!
//! A hub is fed one way, fixed when it is made: [`Hub::local`] gives the
//! [`LocalFeed`], which assigns the ids of this process's own run
//! (the in-process publisher), and [`Hub::backplane`] gives the
//! [`BackplaneFeed`], which takes ids assigned elsewhere (a backplane's).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::id::EventId;

/// One broadcast, framed once for the server's protocol and shared by every
/// client's queue.
#[derive(Debug)]
pub struct Event {
    pub id: EventId,
    /// What the server writes to a client: a WebSocket text frame, an
    /// event-stream block.
    pub frame: Bytes,
}

/// How a server frames a broadcast for its protocol, from its id and text.
pub type Framer = fn(EventId, &str) -> Bytes;

/// Why a resuming client cannot be given everything it missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedReason {
    /// The id is older than the oldest broadcast the replay buffer keeps.
    Expired,
    /// The id was issued by an earlier run of the stream.
    Restarted,
    /// The id is not one this stream could have issued.
    Unknown,
}

impl MissedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MissedReason::Expired => "expired",
            MissedReason::Restarted => "restarted",
            MissedReason::Unknown => "unknown",
        }
    }
}

/// Why a resuming client gets only live broadcasts from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// The id the client asked to resume after.
    pub since: String,
    pub reason: MissedReason,
}

#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// How many recent broadcasts are kept for resuming clients.
    pub replay: usize,
    /// How many broadcasts may wait for one client before it counts as stalled.
    pub client_queue: usize,
    /// How many subscribers the hub accepts at once.
    pub max_clients: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            replay: 1024,
            client_queue: 1024,
            max_clients: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    /// `max_clients` subscribers are connected already.
    Full,
    /// The server is shutting down.
    Closed,
    /// A backplane's history is not loaded yet: a resume cannot be judged.
    Starting,
}

/// Counters the hub keeps as it works.
#[derive(Debug, Default)]
pub struct HubStats {
    pub broadcasts: AtomicU64,
    pub deliveries: AtomicU64,
    pub slow_disconnects: AtomicU64,
}

pub struct Hub {
    config: HubConfig,
    /// How far past the newest broadcast a resuming client's id may be and
    /// still be waited for: with a backplane, a client may come from an
    /// instance that has read a little further. 0 for a local hub.
    ahead: u64,
    frame: Framer,
    state: Mutex<State>,
    pub stats: HubStats,
}

/// The broadcasts and who reads them: one ring, shared by every subscriber,
/// each with a cursor into it. Nothing is queued per client: a broadcast is
/// pushed once, and the subscribers waiting for it are woken.
struct State {
    /// The newest broadcasts, oldest first: as many as the replay buffer and
    /// the longest client queue need. Their ids strictly increase.
    ring: VecDeque<Arc<Event>>,
    /// The position of `ring[0]`: every broadcast the hub takes gets the
    /// next position, so `ring[i]` is at `first + i`, whatever its id.
    first: u64,
    /// The newest broadcast's id.
    last: Option<EventId>,
    /// A client that saw this id or a later one missed nothing the hub does
    /// not hold (or will not take): it is the newest id dropped from the
    /// ring, where the history begins, or past the last loss reported.
    /// `None` while a backplane hub knows nothing of its stream's past.
    complete_after: Option<EventId>,
    subscribers: HashMap<u64, Subscriber>,
    next_key: u64,
    closed: bool,
    /// Whether the history is in: at once for a local hub.
    loaded: bool,
}

impl State {
    /// The position the next broadcast will take.
    fn next(&self) -> u64 {
        self.first + self.ring.len() as u64
    }
}

struct Subscriber {
    /// The position of the next broadcast this subscriber reads.
    cursor: u64,
    /// Set when it resumed from an id past the newest (see `ahead`): what it
    /// reads is past this id. Boxed, since few have one: 8 bytes a
    /// subscriber, not 24.
    after: Option<Box<EventId>>,
    /// Set while it waits for a broadcast past the newest.
    waker: Option<Waker>,
    evicted: CancellationToken,
}

/// What feeds a hub of this process's own: it assigns the ids of its run.
/// One per hub, from [`Hub::local`].
pub struct LocalFeed {
    hub: Arc<Hub>,
    run: u64,
}

/// What feeds a hub from a backplane: ids assigned elsewhere, and the
/// stream's history. One per hub, from [`Hub::backplane`].
pub struct BackplaneFeed {
    hub: Arc<Hub>,
}

impl Hub {
    /// A hub of a server that runs alone, whose broadcasts are framed by
    /// `frame`, and the one handle that publishes to it.
    pub fn local(config: HubConfig, frame: Framer) -> (Arc<Hub>, LocalFeed) {
        // Nanoseconds since the epoch: distinct for every start of a server.
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64);
        // Everything of this run is held, from its start.
        let start = EventId { run, seq: 0 };
        let hub = Hub::new(config, frame, 0, Some(start), true);
        (hub.clone(), LocalFeed { hub, run })
    }

    /// A hub fed by a backplane, and the one handle that feeds it. A client
    /// may resume from an id up to `ahead` broadcasts past the newest this
    /// hub has (it comes from an instance that read further): it waits for
    /// what follows. Resumes wait for [`BackplaneFeed::load`].
    pub fn backplane(config: HubConfig, frame: Framer, ahead: u64) -> (Arc<Hub>, BackplaneFeed) {
        let hub = Hub::new(config, frame, ahead, None, false);
        (hub.clone(), BackplaneFeed { hub })
    }

    fn new(
        config: HubConfig,
        frame: Framer,
        ahead: u64,
        complete_after: Option<EventId>,
        loaded: bool,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            config,
            ahead,
            frame,
            state: Mutex::new(State {
                ring: VecDeque::with_capacity(config.replay.max(config.client_queue)),
                first: 0,
                last: None,
                complete_after,
                subscribers: HashMap::new(),
                next_key: 0,
                closed: false,
                loaded,
            }),
            stats: HubStats::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock, so a poisoned lock still holds
        // consistent state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many broadcasts the ring keeps: enough to replay, and enough for
    /// the slowest client the queue allows.
    fn ring_size(&self) -> usize {
        self.config.replay.max(self.config.client_queue).max(1)
    }

    /// Keeps `event` in the ring, dropping the oldest when it is full.
    fn push(&self, state: &mut State, event: Arc<Event>) {
        if state.ring.len() >= self.ring_size()
            && let Some(dropped) = state.ring.pop_front()
        {
            state.first += 1;
            state.complete_after = state.complete_after.max(Some(dropped.id));
        }
        state.last = Some(event.id);
        state.ring.push_back(event);
    }

    /// Frames `message` once, keeps it in the ring, evicts the subscribers
    /// it leaves too far behind, and wakes those waiting for it. The waking
    /// happens after the lock is released.
    fn fan_out(&self, mut state: MutexGuard<'_, State>, id: EventId, message: &str) {
        let event = Arc::new(Event {
            id,
            frame: (self.frame)(id, message),
        });
        self.push(&mut state, event);
        // A subscriber may fall this far behind: `client_queue` broadcasts
        // waiting for it, and never past what the ring still holds.
        let (first, next) = (state.first, state.next());
        let queue = self.config.client_queue as u64;
        let mut wakers = Vec::new();
        let mut evicted = 0;
        state.subscribers.retain(|_, subscriber| {
            let waiting = next.saturating_sub(subscriber.cursor);
            if waiting > queue || subscriber.cursor < first {
                subscriber.evicted.cancel();
                wakers.extend(subscriber.waker.take());
                evicted += 1;
                return false;
            }
            wakers.extend(subscriber.waker.take());
            true
        });
        let delivered = state.subscribers.len() as u64;
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
        self.stats.broadcasts.fetch_add(1, Ordering::Relaxed);
        self.stats
            .deliveries
            .fetch_add(delivered, Ordering::Relaxed);
        if evicted > 0 {
            self.stats
                .slow_disconnects
                .fetch_add(evicted, Ordering::Relaxed);
            log::warn!("Disconnected {evicted} slow client(s): their queue was full");
        }
    }

    /// Adds a subscriber. With `since`, the id of the last broadcast the client
    /// saw, the subscription first yields every later broadcast still kept, then
    /// live ones: no gap and no duplicate, since both are read from one ring.
    ///
    /// `evicted` is cancelled if the subscriber falls too far behind.
    pub fn subscribe(
        self: &Arc<Self>,
        since: Option<&str>,
        evicted: CancellationToken,
    ) -> Result<Subscription, SubscribeError> {
        let mut state = self.state();
        if state.closed {
            return Err(SubscribeError::Closed);
        }
        if state.subscribers.len() >= self.config.max_clients {
            return Err(SubscribeError::Full);
        }
        if since.is_some() && !state.loaded {
            return Err(SubscribeError::Starting);
        }
        let live = Start {
            cursor: state.next(),
            after: None,
        };
        let (start, missed) = match since {
            None => (live, None),
            Some(since) => match self.resume_at(&state, since) {
                Ok(start) => (start, None),
                Err(reason) => {
                    let since = since.to_owned();
                    (live, Some(Missed { since, reason }))
                }
            },
        };
        let key = state.next_key;
        state.next_key += 1;
        let subscriber = Subscriber {
            cursor: start.cursor,
            after: start.after.map(Box::new),
            waker: None,
            evicted,
        };
        state.subscribers.insert(key, subscriber);
        Ok(Subscription {
            hub: self.clone(),
            key,
            missed,
        })
    }

    /// Where a client that saw `since` resumes, if the hub holds every
    /// broadcast after it (and no more than the replay buffer's worth).
    fn resume_at(&self, state: &State, since: &str) -> Result<Start, MissedReason> {
        let since: EventId = since.parse().map_err(|_| MissedReason::Unknown)?;
        let next = state.next();
        // The newest id the hub knows of: its newest broadcast, or where its
        // history begins when it has none yet.
        let newest = state.last.max(state.complete_after);
        if let Some(newest) = newest
            && since >= newest
        {
            if Some(since) == state.last {
                return Ok(Start {
                    cursor: next,
                    after: None,
                });
            }
            // Ahead of this hub (another instance read further): wait for
            // it, and read only what comes after it.
            let near = since.run == newest.run && since.seq - newest.seq <= self.ahead;
            return if near {
                Ok(Start {
                    cursor: next,
                    after: Some(since),
                })
            } else {
                Err(MissedReason::Unknown)
            };
        }
        match state.complete_after {
            Some(complete) if since >= complete => {
                // The first broadcast past `since`: ids increase along the ring.
                let skipped = state.ring.partition_point(|event| event.id <= since);
                let cursor = state.first + skipped as u64;
                if next - cursor > self.config.replay as u64 {
                    return Err(MissedReason::Expired);
                }
                Ok(Start {
                    cursor,
                    after: None,
                })
            }
            Some(complete) if since.run == complete.run => Err(MissedReason::Expired),
            _ => Err(MissedReason::Restarted),
        }
    }

    /// Ends every subscription (their streams finish once drained) and refuses
    /// new ones: the first step of a graceful shutdown.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        let wakers = let_go(&mut state);
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
    }

    pub fn client_count(&self) -> usize {
        self.state().subscribers.len()
    }

    pub fn is_full(&self) -> bool {
        self.client_count() >= self.config.max_clients
    }

    /// Whether its history is in: always for a local hub, and for a
    /// backplane's once [`BackplaneFeed::load`] ran.
    pub fn loaded(&self) -> bool {
        self.state().loaded
    }

    /// The id of the newest broadcast, if any.
    pub fn last_id(&self) -> Option<EventId> {
        self.state().last
    }

    /// The next broadcast for subscriber `key`, if there is one; `Err` when
    /// it is no longer subscribed. With `waker`, a subscriber with nothing
    /// to read is woken by the next broadcast.
    fn read(&self, key: u64, waker: Option<&Waker>) -> Result<Option<Arc<Event>>, Gone> {
        let mut state = self.state();
        let State {
            ring,
            first,
            subscribers,
            ..
        } = &mut *state;
        let subscriber = subscribers.get_mut(&key).ok_or(Gone)?;
        if subscriber.cursor < *first {
            // Left behind by the ring: never so while subscribed (the hub
            // evicts it first), but if it were, it must not read on silently.
            subscriber.evicted.cancel();
            subscribers.remove(&key);
            return Err(Gone);
        }
        while let Some(event) = usize::try_from(subscriber.cursor - *first)
            .ok()
            .and_then(|index| ring.get(index))
        {
            subscriber.cursor += 1;
            match &subscriber.after {
                Some(after) if event.id <= **after => {}
                _ => {
                    subscriber.after = None;
                    return Ok(Some(event.clone()));
                }
            }
        }
        if let Some(waker) = waker {
            match &subscriber.waker {
                Some(known) if known.will_wake(waker) => {}
                _ => subscriber.waker = Some(waker.clone()),
            }
        }
        Ok(None)
    }

    fn unsubscribe(&self, key: u64) {
        self.state().subscribers.remove(&key);
    }
}

/// Where a subscriber begins to read.
struct Start {
    cursor: u64,
    after: Option<EventId>,
}

/// Lets every subscriber go (their streams end once drained); the wakers to
/// call once the lock is released.
fn let_go(state: &mut State) -> Vec<Waker> {
    state
        .subscribers
        .drain()
        .filter_map(|(_, subscriber)| subscriber.waker)
        .collect()
}

/// The id just after `id`.
fn just_after(id: EventId) -> EventId {
    match id.seq.checked_add(1) {
        Some(seq) => EventId { run: id.run, seq },
        None => EventId {
            run: id.run.saturating_add(1),
            seq: 0,
        },
    }
}

/// The id just before `id`.
fn just_before(id: EventId) -> EventId {
    match id.seq.checked_sub(1) {
        Some(seq) => EventId { run: id.run, seq },
        None => EventId {
            run: id.run.saturating_sub(1),
            seq: u64::MAX,
        },
    }
}

impl LocalFeed {
    /// The hub this feeds.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Broadcasts `message` to every subscriber, with the next id of this
    /// process's run, and keeps it for replay.
    pub fn publish(&self, message: &str) -> EventId {
        let state = self.hub.state();
        let seq = state.last.map_or(1, |last| last.seq + 1);
        let id = EventId { run: self.run, seq };
        self.hub.fan_out(state, id, message);
        id
    }
}

impl BackplaneFeed {
    /// The hub this feeds.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Takes in the backplane's history, oldest first: kept for clients that
    /// resume, not delivered to anyone. `from` is the id of the oldest entry
    /// read (a broadcast or not): everything past it is in `history`, so a
    /// client that saw the entry before it missed nothing. Whoever
    /// subscribed before reads on from what comes after the history.
    pub fn load<'a>(
        &self,
        from: Option<EventId>,
        history: impl IntoIterator<Item = (EventId, &'a str)>,
    ) {
        let hub = &self.hub;
        let mut state = hub.state();
        if let Some(from) = from {
            state.complete_after = state.complete_after.max(Some(just_before(from)));
        }
        for (id, message) in history {
            if state.last.is_some_and(|last| id <= last) {
                continue;
            }
            let frame = (hub.frame)(id, message);
            hub.push(&mut state, Arc::new(Event { id, frame }));
        }
        let next = state.next();
        for subscriber in state.subscribers.values_mut() {
            subscriber.cursor = next;
        }
        state.loaded = true;
    }

    /// Broadcasts `message` with an id assigned by the backplane. Ids must
    /// increase: one at or before the newest, or before where a loss was
    /// reported, is ignored (a backplane may deliver twice) and `false`
    /// returned.
    pub fn deliver(&self, id: EventId, message: &str) -> bool {
        let hub = &self.hub;
        let mut state = hub.state();
        let late = state.last.is_some_and(|last| id <= last)
            || state.complete_after.is_some_and(|complete| id < complete);
        if late {
            return false;
        }
        if state.complete_after.is_none() {
            // The first broadcast of a stream that was empty when loaded.
            state.complete_after = Some(just_before(id));
        }
        hub.fan_out(state, id, message);
        true
    }

    /// Says that broadcasts before `next` (the id of the next entry the
    /// backplane read) may be lost: entries went before they were read, or
    /// the stream began again. What was kept can then no longer be resumed,
    /// and every subscriber is let go, so that its client reconnects,
    /// resumes, and is told what it missed instead of seeing a silent gap.
    pub fn lost(&self, next: EventId) {
        let mut state = self.hub.state();
        let wakers = let_go(&mut state);
        state.first = state.next();
        state.ring.clear();
        // Resumes are served from `next` on, and never from the newest id or
        // before: what went may not lie between them by id (a stream begun
        // again by another writer, with smaller ids).
        let past_newest = state.last.map(just_after);
        let complete = state.complete_after.max(past_newest);
        state.complete_after = complete.max(Some(just_before(next)));
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
        log::warn!("Broadcasts were lost before {next}: clients reconnect to be told");
    }
}

/// A subscriber the hub let go (eviction, shutdown, lost broadcasts).
struct Gone;

/// One client's view of the hub: a cursor into its ring. Dropping it leaves
/// the hub.
pub struct Subscription {
    hub: Arc<Hub>,
    key: u64,
    /// Set when the client asked to resume but some broadcasts are lost to it.
    pub missed: Option<Missed>,
}

impl Subscription {
    /// The next broadcast: replayed ones first, then live ones. `None` once the
    /// hub has closed (or evicted this subscriber, or let it go) and it has
    /// read what it could.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`Subscription::next`] for hand-written futures and streams.
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Arc<Event>>> {
        match self.hub.read(self.key, Some(cx.waker())) {
            Ok(Some(event)) => std::task::Poll::Ready(Some(event)),
            Ok(None) => std::task::Poll::Pending,
            Err(Gone) => std::task::Poll::Ready(None),
        }
    }

    /// The next broadcast if one is waiting, without waiting: lets a writer
    /// that fell behind send several before one flush.
    pub fn try_next(&mut self) -> Option<Arc<Event>> {
        self.hub.read(self.key, None).ok().flatten()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.key);
    }
}

#[cfg(test)]
mod model;

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame that reads as its id and message.
    fn text_frame(id: EventId, message: &str) -> Bytes {
        Bytes::from(format!("{id} {message}"))
    }

    fn config(replay: usize, client_queue: usize) -> HubConfig {
        HubConfig {
            replay,
            client_queue,
            max_clients: 3,
        }
    }

    fn local(replay: usize, client_queue: usize) -> LocalFeed {
        Hub::local(config(replay, client_queue), text_frame).1
    }

    /// A backplane's hub, its (empty) history loaded, waiting for up to 4
    /// broadcasts a resuming client has seen elsewhere.
    fn fed(replay: usize, client_queue: usize) -> BackplaneFeed {
        let (_, feed) = Hub::backplane(config(replay, client_queue), text_frame, 4);
        feed.load(None, []);
        feed
    }

    fn subscribe(hub: &Arc<Hub>, since: Option<&str>) -> Subscription {
        hub.subscribe(since, CancellationToken::new()).unwrap()
    }

    fn missed(hub: &Arc<Hub>, since: &str) -> Option<MissedReason> {
        subscribe(hub, Some(since))
            .missed
            .as_ref()
            .map(|missed| missed.reason)
    }

    async fn drain(sub: &mut Subscription, n: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        for _ in 0..n {
            seqs.push(sub.next().await.unwrap().id.seq);
        }
        seqs
    }

    /// What the subscription can read at once.
    fn backlog(sub: &mut Subscription) -> Vec<u64> {
        std::iter::from_fn(|| sub.try_next())
            .map(|event| event.id.seq)
            .collect()
    }

    #[tokio::test]
    async fn each_broadcast_is_framed_once_with_its_id() {
        let feed = local(8, 16);
        let mut sub = subscribe(feed.hub(), None);
        let id = feed.publish("hi");
        assert_eq!(sub.next().await.unwrap().frame, format!("{id} hi"));
    }

    #[tokio::test]
    async fn resume_replays_exactly_what_was_missed_then_live() {
        let feed = local(8, 16);
        let first = feed.publish("one");
        feed.publish("two");
        feed.publish("three");
        let mut sub = subscribe(feed.hub(), Some(&first.to_string()));
        feed.publish("four");
        assert_eq!(sub.missed, None);
        assert_eq!(drain(&mut sub, 3).await, vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn resume_from_the_newest_id_replays_nothing() {
        let feed = local(8, 16);
        let last = feed.publish("one");
        let mut sub = subscribe(feed.hub(), Some(&last.to_string()));
        feed.publish("two");
        assert_eq!(drain(&mut sub, 1).await, vec![2]);
    }

    #[test]
    fn ids_the_buffer_cannot_serve_are_reported_missed() {
        let feed = local(2, 16);
        let first = feed.publish("one").to_string();
        let second = feed.publish("two").to_string();
        feed.publish("three");
        feed.publish("four");
        let hub = feed.hub();
        assert_eq!(missed(hub, &first), Some(MissedReason::Expired));
        assert_eq!(missed(hub, &second), None);
        assert_eq!(missed(hub, "1-1"), Some(MissedReason::Restarted));
        let run = hub.last_id().unwrap().run;
        assert_eq!(
            missed(hub, &format!("{run:x}-99")),
            Some(MissedReason::Unknown)
        );
        assert_eq!(missed(hub, "garbage"), Some(MissedReason::Unknown));
    }

    #[tokio::test]
    async fn a_full_queue_evicts_only_that_subscriber() {
        let feed = local(0, 2);
        let hub = feed.hub();
        let slow_token = CancellationToken::new();
        let slow = hub.subscribe(None, slow_token.clone()).unwrap();
        let mut fast = subscribe(hub, None);
        for round in 0..5 {
            feed.publish("tick");
            assert_eq!(drain(&mut fast, 1).await, vec![round + 1]);
        }
        assert!(slow_token.is_cancelled());
        assert_eq!(hub.client_count(), 1);
        assert_eq!(hub.stats.slow_disconnects.load(Ordering::Relaxed), 1);
        drop(slow);
    }

    fn backplane(seq: u64) -> EventId {
        EventId { run: 0xb0b, seq }
    }

    #[tokio::test]
    async fn delivered_ids_reach_subscribers_as_they_are() {
        let feed = fed(8, 16);
        let mut sub = subscribe(feed.hub(), None);
        assert!(feed.deliver(backplane(10), "from the backplane"));
        assert!(feed.deliver(backplane(11), "and the next"));
        assert_eq!(drain(&mut sub, 2).await, vec![10, 11]);
        assert_eq!(feed.hub().last_id(), Some(backplane(11)));
    }

    #[test]
    fn an_id_delivered_twice_or_late_is_dropped() {
        let feed = fed(8, 16);
        assert!(feed.deliver(backplane(12), "first"));
        assert!(!feed.deliver(backplane(12), "twice"));
        assert!(!feed.deliver(backplane(11), "late"));
        assert_eq!(feed.hub().stats.broadcasts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn delivered_ids_can_be_resumed_from() {
        let feed = fed(8, 16);
        feed.deliver(backplane(10), "one");
        feed.deliver(backplane(11), "two");
        feed.deliver(backplane(12), "three");
        let mut resumed = subscribe(feed.hub(), Some("b0b-10"));
        assert_eq!(resumed.missed, None);
        assert_eq!(backlog(&mut resumed), vec![11, 12]);
    }

    #[test]
    fn holes_in_the_ids_are_no_loss_and_a_resume_from_any_id_gets_what_follows_it() {
        // Issue 16: a history with holes (entries that were not broadcasts)
        // broke every read, and shifted resumes past real broadcasts.
        let feed = fed(8, 16);
        let history = [
            (10, "ten"),
            (11, "eleven"),
            (13, "thirteen"),
            (16, "sixteen"),
        ];
        feed.load(
            Some(backplane(9)),
            history.map(|(seq, message)| (backplane(seq), message)),
        );
        feed.deliver(backplane(17), "seventeen");
        feed.deliver(backplane(18), "eighteen");
        let hub = feed.hub();
        let mut live = subscribe(hub, None);
        feed.deliver(backplane(20), "twenty");
        assert_eq!(backlog(&mut live), vec![20]);
        for (since, expected) in [
            (8, vec![10, 11, 13, 16, 17, 18, 20]),
            (11, vec![13, 16, 17, 18, 20]),
            (12, vec![13, 16, 17, 18, 20]),
            (14, vec![16, 17, 18, 20]),
            (16, vec![17, 18, 20]),
            (19, vec![20]),
            (20, vec![]),
        ] {
            let mut resumed = subscribe(hub, Some(&backplane(since).to_string()));
            assert_eq!(resumed.missed, None, "from {since}");
            assert_eq!(backlog(&mut resumed), expected, "from {since}");
        }
        assert_eq!(missed(hub, "b0b-7"), Some(MissedReason::Expired));
    }

    #[tokio::test]
    async fn a_loss_lets_every_subscriber_go_and_forgets_what_was_kept() {
        let feed = fed(8, 16);
        feed.deliver(backplane(1), "one");
        feed.deliver(backplane(2), "two");
        let hub = feed.hub();
        let mut sub = subscribe(hub, None);
        feed.lost(backplane(5));
        feed.deliver(backplane(5), "after a loss");
        assert!(
            sub.next().await.is_none(),
            "let go, not handed what follows"
        );
        assert_eq!(hub.client_count(), 0);
        assert_eq!(missed(hub, "b0b-2"), Some(MissedReason::Expired));
        assert_eq!(missed(hub, "b0b-4"), None);
    }

    #[test]
    fn after_a_loss_the_newest_id_before_it_is_no_longer_served() {
        // The stream began again with smaller ids (another writer), and the
        // next entry read follows the newest by id: what went between them
        // in the stream is not between them by id.
        let feed = fed(8, 16);
        feed.deliver(backplane(1), "one");
        feed.deliver(backplane(2), "two");
        feed.lost(backplane(3));
        feed.deliver(backplane(3), "three");
        let hub = feed.hub();
        assert_eq!(missed(hub, "b0b-2"), Some(MissedReason::Expired));
        assert_eq!(missed(hub, "b0b-3"), None);
    }

    #[tokio::test]
    async fn a_loss_into_a_new_run_makes_ids_of_the_old_one_restarted() {
        let feed = fed(8, 16);
        feed.deliver(backplane(1), "old run");
        let hub = feed.hub();
        let mut sub = subscribe(hub, None);
        let new = EventId { run: 0xc0c, seq: 1 };
        feed.lost(new);
        feed.deliver(new, "new run");
        assert!(sub.next().await.is_none());
        assert_eq!(missed(hub, "b0b-1"), Some(MissedReason::Restarted));
    }

    #[tokio::test]
    async fn a_new_run_with_nothing_lost_goes_on_for_everyone() {
        let feed = fed(8, 16);
        feed.deliver(backplane(1), "old run");
        let hub = feed.hub();
        let mut sub = subscribe(hub, None);
        let new = EventId { run: 0xc0c, seq: 1 };
        feed.deliver(new, "new run");
        assert_eq!(sub.next().await.unwrap().id, new);
        let mut resumed = subscribe(hub, Some("b0b-1"));
        assert_eq!(resumed.missed, None);
        assert_eq!(resumed.try_next().unwrap().id, new);
    }

    #[tokio::test]
    async fn a_client_a_little_ahead_gets_only_what_follows_its_id() {
        let feed = fed(8, 16);
        feed.deliver(backplane(10), "ten");
        let hub = feed.hub();
        let mut sub = subscribe(hub, Some("b0b-12"));
        assert_eq!(sub.missed, None);
        // 12 was not a broadcast here: what follows it is all the same.
        for seq in [11, 13, 14] {
            feed.deliver(backplane(seq), "more");
        }
        assert_eq!(drain(&mut sub, 2).await, vec![13, 14]);
        assert_eq!(missed(hub, "b0b-99"), Some(MissedReason::Unknown));
    }

    #[tokio::test]
    async fn a_loaded_history_is_kept_for_resumes_but_delivered_to_no_one() {
        let (hub, feed) = Hub::backplane(HubConfig::default(), text_frame, 1024);
        let refused = hub.subscribe(Some("b0b-1"), CancellationToken::new());
        assert_eq!(
            refused.err(),
            Some(SubscribeError::Starting),
            "not judged yet"
        );
        let mut early = hub.subscribe(None, CancellationToken::new()).unwrap();
        feed.load(
            Some(backplane(1)),
            [(backplane(1), "one"), (backplane(2), "two")],
        );
        let mut resumed = hub
            .subscribe(Some("b0b-1"), CancellationToken::new())
            .unwrap();
        feed.deliver(backplane(3), "three");
        assert_eq!(backlog(&mut resumed), vec![2, 3]);
        assert_eq!(backlog(&mut early), vec![3], "history is not news");
    }

    #[test]
    fn ids_from_before_a_stream_was_first_seen_are_restarted() {
        let feed = fed(8, 16);
        let hub = feed.hub();
        assert_eq!(missed(hub, "b0b-3"), Some(MissedReason::Restarted));
        feed.deliver(backplane(5), "first seen");
        assert_eq!(missed(hub, "b0b-3"), Some(MissedReason::Expired));
        assert_eq!(missed(hub, "1-3"), Some(MissedReason::Restarted));
        assert_eq!(missed(hub, "b0b-4"), None);
    }

    #[test]
    fn capacity_and_close_refuse_new_subscribers() {
        let feed = local(0, 1);
        let hub = feed.hub();
        let subs: Vec<_> = (0..3).map(|_| subscribe(hub, None)).collect();
        let refused = hub.subscribe(None, CancellationToken::new());
        assert_eq!(refused.err(), Some(SubscribeError::Full));
        drop(subs);
        assert_eq!(hub.client_count(), 0);
        hub.close();
        let refused = hub.subscribe(None, CancellationToken::new());
        assert_eq!(refused.err(), Some(SubscribeError::Closed));
    }
}
