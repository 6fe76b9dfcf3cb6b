//! The broadcast hub: every broadcast is framed once and kept in one bounded
//! ring, which is both the replay buffer and every subscriber's queue: each
//! subscriber is a cursor into it.
//!
//! The hub holds its lock only for plain memory work (never across an
//! `.await`), and a subscriber that falls more than `client_queue`
//! broadcasts behind is evicted on the spot rather than waited for, so one
//! stalled client can neither slow the others nor grow memory.
//!
//! Broadcasts come in two ways: [`Hub::publish`] gives the next id of this
//! process's own run (the in-process publisher), and [`Hub::deliver`] takes
//! an id assigned elsewhere (a backplane's).

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
    /// How far past the newest broadcast a resuming client's id may be and
    /// still be waited for: with a backplane, a client may come from an
    /// instance that has read a little further. 0 without one.
    pub ahead: u64,
    /// Whether broadcasts come from a backplane, whose history
    /// ([`Hub::load`]) must be in before a resume can be judged.
    pub backplane: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            replay: 1024,
            client_queue: 1024,
            max_clients: 100_000,
            ahead: 0,
            backplane: false,
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
    frame: Framer,
    state: Mutex<State>,
    pub stats: HubStats,
}

/// The broadcasts and who reads them: one ring, shared by every subscriber,
/// each with a cursor into it. Nothing is queued per client: a broadcast is
/// pushed once, and the subscribers waiting for it are woken.
struct State {
    /// The run of the newest broadcast: this process's own, or the run of
    /// the ids a backplane delivers.
    run: u64,
    last_seq: u64,
    /// The newest broadcasts, oldest first: as many as the replay buffer and
    /// the longest client queue need.
    ring: VecDeque<Arc<Event>>,
    subscribers: HashMap<u64, Subscriber>,
    next_key: u64,
    closed: bool,
    /// Whether the history is in: at once without a backplane.
    loaded: bool,
}

struct Subscriber {
    /// The `seq` of the next broadcast this subscriber reads.
    cursor: u64,
    /// Set while it waits for a broadcast past the newest.
    waker: Option<Waker>,
    evicted: CancellationToken,
}

impl Hub {
    /// A hub whose broadcasts are framed by `frame`.
    pub fn new(config: HubConfig, frame: Framer) -> Arc<Hub> {
        // Nanoseconds since the epoch: distinct for every start of a server.
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64);
        Arc::new(Hub {
            config,
            frame,
            state: Mutex::new(State {
                run,
                last_seq: 0,
                ring: VecDeque::with_capacity(config.replay.max(config.client_queue)),
                subscribers: HashMap::new(),
                next_key: 0,
                closed: false,
                loaded: !config.backplane,
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

    /// Broadcasts `message` to every subscriber, with the next id of this
    /// process's run, and keeps it for replay.
    pub fn publish(&self, message: &str) -> EventId {
        let state = self.state();
        let id = EventId {
            run: state.run,
            seq: state.last_seq + 1,
        };
        self.fan_out(state, id, message);
        id
    }

    /// Broadcasts `message` with an id assigned elsewhere (by a backplane), as
    /// [`Hub::publish`] does with its own. Ids must increase within a run; one
    /// already seen is ignored (a backplane may deliver twice) and `false`
    /// returned.
    ///
    /// An id that does not follow the last one (another run: the stream was
    /// lost and began again; or a gap: entries went before they were read)
    /// means broadcasts were lost. What was kept can then no longer be
    /// resumed, and every subscriber is let go, so that its client reconnects,
    /// resumes, and is told what it missed instead of seeing a silent gap.
    pub fn deliver(&self, id: EventId, message: &str) -> bool {
        let mut state = self.state();
        let follows = id.run == state.run && id.seq == state.last_seq + 1;
        if id.run == state.run && id.seq <= state.last_seq {
            return false;
        }
        if !follows && state.last_seq > 0 {
            log::warn!(
                "Broadcasts were lost between {} and {id}: clients reconnect to be told",
                EventId {
                    run: state.run,
                    seq: state.last_seq
                }
            );
            state.ring.clear();
            let wakers: Vec<Waker> = state
                .subscribers
                .drain()
                .filter_map(|(_, subscriber)| subscriber.waker)
                .collect();
            wakers.into_iter().for_each(Waker::wake);
        }
        if id.run != state.run {
            // The first of a run, with nothing lost: whoever is subscribed
            // (having seen nothing yet) reads on from it.
            state.run = id.run;
            state.ring.clear();
            for subscriber in state.subscribers.values_mut() {
                subscriber.cursor = id.seq;
            }
        }
        self.fan_out(state, id, message);
        true
    }

    /// Takes in a backplane's history, oldest first (ids of one run): kept
    /// for clients that resume, not delivered to anyone. Whoever subscribed
    /// before reads on from what comes after it.
    pub fn load<'a>(&self, history: impl IntoIterator<Item = (EventId, &'a str)>) {
        let mut state = self.state();
        let size = self.ring_size();
        for (id, message) in history {
            if id.run != state.run {
                state.run = id.run;
                state.ring.clear();
            }
            if state.ring.len() == size {
                state.ring.pop_front();
            }
            let frame = (self.frame)(id, message);
            state.ring.push_back(Arc::new(Event { id, frame }));
            state.last_seq = id.seq;
        }
        let next = state.last_seq + 1;
        for subscriber in state.subscribers.values_mut() {
            subscriber.cursor = next;
        }
        state.loaded = true;
    }

    /// Frames `message` once, keeps it in the ring, evicts the subscribers
    /// it leaves too far behind, and wakes those waiting for it. The waking
    /// happens after the lock is released.
    fn fan_out(&self, mut state: MutexGuard<'_, State>, id: EventId, message: &str) {
        state.last_seq = id.seq;
        let event = Arc::new(Event {
            id,
            frame: (self.frame)(id, message),
        });
        if state.ring.len() == self.ring_size() {
            state.ring.pop_front();
        }
        state.ring.push_back(event);
        // A subscriber may fall this far behind: `client_queue` broadcasts
        // waiting for it, and never past what the ring still holds.
        let oldest_kept = state.ring.front().map_or(id.seq, |event| event.id.seq);
        let queue = self.config.client_queue as u64;
        let mut wakers = Vec::new();
        let mut evicted = 0;
        state.subscribers.retain(|_, subscriber| {
            let waiting = (id.seq + 1).saturating_sub(subscriber.cursor);
            if waiting > queue || subscriber.cursor < oldest_kept {
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
        let live = state.last_seq + 1;
        let (cursor, missed) = match since {
            None => (live, None),
            Some(since) => match resume_at(&state, since, &self.config) {
                Ok(cursor) => (cursor, None),
                Err(reason) => {
                    let since = since.to_owned();
                    (live, Some(Missed { since, reason }))
                }
            },
        };
        let key = state.next_key;
        state.next_key += 1;
        let subscriber = Subscriber {
            cursor,
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

    /// Ends every subscription (their streams finish once drained) and refuses
    /// new ones: the first step of a graceful shutdown.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        let wakers: Vec<Waker> = state
            .subscribers
            .drain()
            .filter_map(|(_, subscriber)| subscriber.waker)
            .collect();
        drop(state);
        wakers.into_iter().for_each(Waker::wake);
    }

    pub fn client_count(&self) -> usize {
        self.state().subscribers.len()
    }

    pub fn is_full(&self) -> bool {
        self.client_count() >= self.config.max_clients
    }

    /// The id of the newest broadcast, if any.
    /// Whether its history is in: always without a backplane, and with one
    /// once [`Hub::load`] ran.
    pub fn loaded(&self) -> bool {
        self.state().loaded
    }

    pub fn last_id(&self) -> Option<EventId> {
        let state = self.state();
        let (run, seq) = (state.run, state.last_seq);
        (seq > 0).then_some(EventId { run, seq })
    }

    /// The next broadcast for subscriber `key`, if there is one; `Err` when
    /// it is no longer subscribed. With `waker`, a subscriber with nothing
    /// to read is woken by the next broadcast.
    fn read(&self, key: u64, waker: Option<&Waker>) -> Result<Option<Arc<Event>>, Gone> {
        let mut state = self.state();
        let oldest_kept = state.ring.front().map(|event| event.id.seq);
        let last_seq = state.last_seq;
        let State {
            ring, subscribers, ..
        } = &mut *state;
        let subscriber = subscribers.get_mut(&key).ok_or(Gone)?;
        if subscriber.cursor <= last_seq
            && let Some(oldest) = oldest_kept
            && subscriber.cursor >= oldest
        {
            let event = ring[(subscriber.cursor - oldest) as usize].clone();
            subscriber.cursor += 1;
            return Ok(Some(event));
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

/// A subscriber the hub let go (eviction, shutdown, lost broadcasts).
struct Gone;

/// Where a client that saw `since` resumes: the `seq` it reads next, if the
/// ring still holds all it missed.
fn resume_at(state: &State, since: &str, config: &HubConfig) -> Result<u64, MissedReason> {
    let since: EventId = since.parse().map_err(|_| MissedReason::Unknown)?;
    if since.run != state.run {
        return Err(MissedReason::Restarted);
    }
    if since.seq > state.last_seq {
        // Ahead of this hub (another instance read further): wait for it.
        return if since.seq <= state.last_seq + config.ahead {
            Ok(since.seq + 1)
        } else {
            Err(MissedReason::Unknown)
        };
    }
    // Everything after `since` must still be kept, and within the replay
    // buffer's length.
    let oldest_in_ring = state
        .ring
        .front()
        .map_or(state.last_seq + 1, |event| event.id.seq);
    let replay_from = (state.last_seq + 1).saturating_sub(config.replay as u64);
    let oldest_kept = oldest_in_ring.max(replay_from);
    if since.seq + 1 < oldest_kept {
        return Err(MissedReason::Expired);
    }
    Ok(since.seq + 1)
}

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
mod tests {
    use super::*;

    /// A frame that reads as its id and message.
    fn text_frame(id: EventId, message: &str) -> Bytes {
        Bytes::from(format!("{id} {message}"))
    }

    fn hub(replay: usize, client_queue: usize) -> Arc<Hub> {
        let config = HubConfig {
            replay,
            client_queue,
            max_clients: 3,
            ahead: 4,
            backplane: false,
        };
        Hub::new(config, text_frame)
    }

    fn subscribe(hub: &Arc<Hub>, since: Option<&str>) -> Subscription {
        hub.subscribe(since, CancellationToken::new()).unwrap()
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
        let hub = hub(8, 16);
        let mut sub = subscribe(&hub, None);
        let id = hub.publish("hi");
        assert_eq!(sub.next().await.unwrap().frame, format!("{id} hi"));
    }

    #[tokio::test]
    async fn resume_replays_exactly_what_was_missed_then_live() {
        let hub = hub(8, 16);
        let first = hub.publish("one");
        hub.publish("two");
        hub.publish("three");
        let mut sub = subscribe(&hub, Some(&first.to_string()));
        hub.publish("four");
        assert_eq!(sub.missed, None);
        assert_eq!(drain(&mut sub, 3).await, vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn resume_from_the_newest_id_replays_nothing() {
        let hub = hub(8, 16);
        let last = hub.publish("one");
        let mut sub = subscribe(&hub, Some(&last.to_string()));
        hub.publish("two");
        assert_eq!(drain(&mut sub, 1).await, vec![2]);
    }

    #[test]
    fn ids_the_buffer_cannot_serve_are_reported_missed() {
        let hub = hub(2, 16);
        let first = hub.publish("one").to_string();
        let second = hub.publish("two").to_string();
        hub.publish("three");
        hub.publish("four");
        let missed = |since: &str| {
            subscribe(&hub, Some(since))
                .missed
                .as_ref()
                .map(|m| m.reason)
        };
        assert_eq!(missed(&first), Some(MissedReason::Expired));
        assert_eq!(missed(&second), None);
        assert_eq!(missed("1-1"), Some(MissedReason::Restarted));
        let run = hub.last_id().unwrap().run;
        assert_eq!(missed(&format!("{run:x}-99")), Some(MissedReason::Unknown));
        assert_eq!(missed("garbage"), Some(MissedReason::Unknown));
    }

    #[tokio::test]
    async fn a_full_queue_evicts_only_that_subscriber() {
        let hub = hub(0, 2);
        let slow_token = CancellationToken::new();
        let slow = hub.subscribe(None, slow_token.clone()).unwrap();
        let mut fast = subscribe(&hub, None);
        for round in 0..5 {
            hub.publish("tick");
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
        let hub = hub(8, 16);
        let mut sub = subscribe(&hub, None);
        assert!(hub.deliver(backplane(10), "from the backplane"));
        assert!(hub.deliver(backplane(11), "and the next"));
        assert_eq!(drain(&mut sub, 2).await, vec![10, 11]);
        assert_eq!(hub.last_id(), Some(backplane(11)));
    }

    #[test]
    fn an_id_delivered_twice_or_late_is_dropped() {
        let hub = hub(8, 16);
        assert!(hub.deliver(backplane(12), "first"));
        assert!(!hub.deliver(backplane(12), "twice"));
        assert!(!hub.deliver(backplane(11), "late"));
        assert_eq!(hub.stats.broadcasts.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn local_publishing_carries_on_from_a_delivered_id() {
        let hub = hub(8, 16);
        hub.deliver(backplane(12), "delivered");
        assert_eq!(hub.publish("local"), backplane(13));
    }

    #[test]
    fn delivered_ids_can_be_resumed_from() {
        let hub = hub(8, 16);
        hub.deliver(backplane(10), "one");
        hub.deliver(backplane(11), "two");
        hub.deliver(backplane(12), "three");
        let mut resumed = subscribe(&hub, Some("b0b-10"));
        assert_eq!(resumed.missed, None);
        assert_eq!(backlog(&mut resumed), vec![11, 12]);
    }

    #[tokio::test]
    async fn a_new_run_lets_every_subscriber_go_so_that_it_resumes() {
        let hub = hub(8, 16);
        hub.deliver(backplane(1), "old run");
        let mut sub = subscribe(&hub, None);
        hub.deliver(EventId { run: 0xc0c, seq: 1 }, "new run");
        assert!(sub.next().await.is_none(), "let go, not handed the new run");
        assert_eq!(hub.client_count(), 0);
    }

    #[tokio::test]
    async fn a_gap_lets_every_subscriber_go_and_forgets_what_was_kept() {
        let hub = hub(8, 16);
        hub.deliver(backplane(1), "one");
        hub.deliver(backplane(2), "two");
        let mut sub = subscribe(&hub, None);
        hub.deliver(backplane(5), "after a gap");
        assert!(sub.next().await.is_none());
        let resumed = subscribe(&hub, Some("b0b-1"));
        assert_eq!(
            resumed.missed.as_ref().map(|m| m.reason),
            Some(MissedReason::Expired)
        );
    }

    #[tokio::test]
    async fn a_client_a_little_ahead_gets_only_what_follows_its_id() {
        let hub = hub(8, 16);
        hub.deliver(backplane(10), "ten");
        let mut sub = subscribe(&hub, Some("b0b-12"));
        assert_eq!(sub.missed, None);
        for seq in 11..=14 {
            hub.deliver(backplane(seq), "more");
        }
        assert_eq!(drain(&mut sub, 2).await, vec![13, 14]);
        let too_far = subscribe(&hub, Some("b0b-99"));
        assert_eq!(
            too_far.missed.as_ref().map(|m| m.reason),
            Some(MissedReason::Unknown)
        );
    }

    #[tokio::test]
    async fn a_loaded_history_is_kept_for_resumes_but_delivered_to_no_one() {
        let config = HubConfig {
            backplane: true,
            ..HubConfig::default()
        };
        let hub = Hub::new(config, text_frame);
        let refused = hub.subscribe(Some("b0b-1"), CancellationToken::new());
        assert_eq!(
            refused.err(),
            Some(SubscribeError::Starting),
            "not judged yet"
        );
        let mut early = hub.subscribe(None, CancellationToken::new()).unwrap();
        hub.load([(backplane(1), "one"), (backplane(2), "two")]);
        let mut resumed = hub
            .subscribe(Some("b0b-1"), CancellationToken::new())
            .unwrap();
        hub.deliver(backplane(3), "three");
        assert_eq!(backlog(&mut resumed), vec![2, 3]);
        assert_eq!(backlog(&mut early), vec![3], "history is not news");
    }

    #[test]
    fn a_delivered_run_makes_ids_of_the_old_one_restarted() {
        let hub = hub(8, 16);
        let old = hub.publish("local").to_string();
        hub.deliver(backplane(1), "new run");
        let mut resumed = subscribe(&hub, Some(&old));
        assert_eq!(
            resumed.missed.as_ref().map(|m| m.reason),
            Some(MissedReason::Restarted)
        );
        assert_eq!(backlog(&mut resumed), Vec::<u64>::new());
    }

    #[test]
    fn capacity_and_close_refuse_new_subscribers() {
        let hub = hub(0, 1);
        let subs: Vec<_> = (0..3).map(|_| subscribe(&hub, None)).collect();
        let refused = hub.subscribe(None, CancellationToken::new());
        assert_eq!(refused.err(), Some(SubscribeError::Full));
        drop(subs);
        assert_eq!(hub.client_count(), 0);
        hub.close();
        let refused = hub.subscribe(None, CancellationToken::new());
        assert_eq!(refused.err(), Some(SubscribeError::Closed));
    }
}
