//! Entries another program writes into a backplane's stream (issue 16):
//! written with the redis crate as that program would, the ids to resume
//! from around them, and what a resuming client must get, whatever its
//! protocol ([`Client`]).

use std::net::SocketAddr;

use serde_json::Value;

use super::metric;
use crate::core::{EventId, Publisher};

/// What a client reads next: the missed notice, or a broadcast's id.
#[derive(Debug)]
pub enum Read {
    Notice(Value),
    Broadcast(EventId),
}

/// A client of either protocol, as these tests read it.
pub trait Client: Send + Sized {
    /// Connects to `addr`, resuming after `since`.
    fn resume(addr: SocketAddr, since: EventId) -> impl Future<Output = Self> + Send;
    /// The next notice or broadcast, skipping anything else.
    fn read(&mut self) -> impl Future<Output = Read> + Send;
}

/// The broadcasts `client` reads up to `marker`, and the missed notice if
/// one came first.
pub async fn read_through<C: Client>(
    client: &mut C,
    marker: EventId,
) -> (Option<Value>, Vec<EventId>) {
    let mut notice = None;
    let mut ids = Vec::new();
    loop {
        match client.read().await {
            Read::Notice(missed) => {
                assert!(notice.is_none() && ids.is_empty(), "{missed} after {ids:?}");
                notice = Some(missed);
            }
            Read::Broadcast(id) => {
                ids.push(id);
                if id == marker {
                    return (notice, ids);
                }
            }
        }
    }
}

/// Clients resume on the servers at `addrs` from each of `sinces` (none
/// past the newest broadcast), then `publisher` publishes a marker, which
/// each reads up to.
pub async fn resume<C: Client>(
    addrs: &[SocketAddr],
    publisher: &dyn Publisher,
    sinces: &[EventId],
) -> (EventId, Vec<Resumed>) {
    let mut clients = Vec::new();
    for addr in addrs {
        for since in sinces {
            clients.push((*addr, *since, C::resume(*addr, *since).await));
        }
    }
    let marker = publisher
        .publish("marker")
        .await
        .expect("the marker is published");
    let mut resumed = Vec::new();
    for (addr, since, mut client) in clients {
        let (notice, got) = read_through(&mut client, marker).await;
        resumed.push(Resumed {
            addr,
            since,
            notice,
            got,
        });
    }
    (marker, resumed)
}

/// Appends an entry with `id` (or `*`) and `fields` to `stream` of the
/// Redis at `url`, as another program would; its id.
pub async fn xadd(url: &str, stream: &str, id: &str, fields: &[(&str, &[u8])]) -> EventId {
    let client = redis::Client::open(url).expect("a Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let mut command = redis::cmd("XADD");
    command.arg(stream).arg(id);
    for (name, value) in fields {
        command.arg(*name).arg(*value);
    }
    let added: String = command
        .query_async(&mut connection)
        .await
        .expect("XADD works");
    let (run, seq) = added.split_once('-').expect("<run>-<seq>");
    EventId {
        run: run.parse().expect("a run"),
        seq: seq.parse().expect("a seq"),
    }
}

/// An id as the stream writes it: both parts in decimal.
pub fn entry(run: u64, seq: u64) -> String {
    format!("{run}-{seq}")
}

/// What another writer may leave in `stream` after `newest`: the next id
/// with no message (as in the issue), a message that is not UTF-8, one
/// longer than `max_message`, an entry of a later run, and a message like
/// any other, which is a broadcast. Their ids, and the broadcast's.
pub async fn write_entries(
    url: &str,
    stream: &str,
    newest: EventId,
    max_message: usize,
) -> (Vec<EventId>, EventId) {
    let large = "x".repeat(max_message + 1);
    let next = entry(newest.run, newest.seq + 1);
    let later_run = entry(newest.run + 1, 1);
    let entries = vec![
        xadd(url, stream, &next, &[("note", b"written by hand")]).await,
        xadd(url, stream, "*", &[("message", &[0xff, 0xfe, b'x'])]).await,
        xadd(url, stream, "*", &[("message", large.as_bytes())]).await,
        xadd(url, stream, &later_run, &[("note", b"of another run")]).await,
        xadd(url, stream, "*", &[("message", b"from another program")]).await,
    ];
    let broadcast = entries[4];
    (entries, broadcast)
}

/// Begins `stream` as another program would, with ids of its own scheme
/// (milliseconds): an entry with no message, a broadcast, a message that is
/// not UTF-8 and one longer than `max_message`. Their ids, and the
/// broadcast's.
pub async fn begin_stream(url: &str, stream: &str, max_message: usize) -> (Vec<EventId>, EventId) {
    let large = "x".repeat(max_message + 1);
    let entries = vec![
        xadd(url, stream, "*", &[("note", b"begun by another program")]).await,
        xadd(url, stream, "*", &[("message", b"from another program")]).await,
        xadd(url, stream, "*", &[("message", &[0xc3, 0x28])]).await,
        xadd(url, stream, "*", &[("message", large.as_bytes())]).await,
    ];
    let broadcast = entries[1];
    (entries, broadcast)
}

/// Each of `ids`, and the ids just before and after it, up to `newest`.
pub fn around(ids: &[EventId], newest: EventId) -> Vec<EventId> {
    let mut sinces: Vec<EventId> = ids
        .iter()
        .flat_map(|id| {
            let before = id.seq.saturating_sub(1);
            [(id.run, before), (id.run, id.seq), (id.run, id.seq + 1)]
        })
        .map(|(run, seq)| EventId { run, seq })
        .filter(|since| *since <= newest)
        .collect();
    sinces.sort();
    sinces.dedup();
    sinces
}

/// What a client resuming from `since` on the server at `addr` got: the
/// missed notice if one came, then the broadcasts through a marker.
#[derive(Debug)]
pub struct Resumed {
    pub addr: SocketAddr,
    pub since: EventId,
    pub notice: Option<Value>,
    pub got: Vec<EventId>,
}

/// Each client must have got every one of `broadcasts` (the last is the
/// marker) after its id, in order, or the notice and the marker only, and
/// no notice from `served_from` on.
pub fn check_resumed(resumed: Vec<Resumed>, broadcasts: &[EventId], served_from: EventId) {
    let marker = *broadcasts.last().expect("the marker");
    for Resumed {
        addr,
        since,
        notice,
        got,
    } in resumed
    {
        let after: Vec<EventId> = broadcasts
            .iter()
            .filter(|id| **id > since)
            .copied()
            .collect();
        match notice {
            None => assert_eq!(got, after, "resumed on {addr} from {since}"),
            Some(notice) => {
                assert!(since < served_from, "{notice} on {addr} from {since}");
                assert_eq!(got, [marker], "after {notice} on {addr}");
            }
        }
    }
}

/// Nothing panicked, no broadcast was lost, and the entries that were no
/// broadcast were counted under their reasons: `no_message` of them
/// without a message, and one each not UTF-8 and too large.
pub async fn assert_skipped_not_lost(addr: SocketAddr, no_message: u64) {
    assert_eq!(metric(addr, "demo_panics_total").await, 0);
    assert_eq!(metric(addr, "demo_backplane_losses_total").await, 0);
    for (reason, count) in [
        ("no_message", no_message),
        ("not_text", 1),
        ("too_large", 1),
    ] {
        let name = format!("demo_backplane_skipped_entries_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(addr, &name).await, count, "{reason} on {addr}");
    }
}
