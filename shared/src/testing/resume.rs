//! Readers that drop at random points of a burst and come back with the
//! last id they saw: the test of resuming, for either protocol, on one
//! instance or across several.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::{EventStream, PATIENCE, Random};

/// A client that can resume: the event stream, or a WebSocket client (in the
/// WebSocket demo's tests).
pub trait Resuming: Send + Sized + 'static {
    /// Connects to `addr`, resuming after `last_id` when there is one.
    fn open(addr: SocketAddr, last_id: Option<String>) -> impl Future<Output = Self> + Send;
    /// The next broadcast: its sequence number and id.
    fn next(&mut self) -> impl Future<Output = (u64, String)> + Send;
}

impl Resuming for EventStream {
    async fn open(addr: SocketAddr, last_id: Option<String>) -> Self {
        let headers: Vec<(&str, &str)> = last_id
            .iter()
            .map(|id| ("Last-Event-ID", id.as_str()))
            .collect();
        EventStream::open(addr, "/sse", &headers).await
    }

    async fn next(&mut self) -> (u64, String) {
        let event = self.next_event().await;
        let id = event.id.clone().expect("a broadcast has an id");
        (event.seq(), id)
    }
}

/// Readers of a burst, each with what it saw and how many connections it
/// took to see it.
pub struct Readers {
    readers: Vec<JoinHandle<(Vec<u64>, usize)>>,
    burst: u64,
}

impl Readers {
    /// `count` readers of `burst` broadcasts, each staying for 1 to `stay` of
    /// them at a time and reconnecting to the next of `addrs` in turn.
    pub fn start<C: Resuming>(addrs: &[SocketAddr], count: u64, burst: u64, stay: u64) -> Self {
        let random = Random::from_clock();
        let readers = (0..count)
            .map(|index| {
                let mut random = random.fork(index);
                let addrs = addrs.to_vec();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut last_id = None;
                    let mut connections = 0;
                    while seen.len() < burst as usize {
                        let to = addrs[connections % addrs.len()];
                        // Each connection reads at least one broadcast, which sets it again.
                        let mut client = C::open(to, last_id.take()).await;
                        connections += 1;
                        for _ in 0..1 + random.below(stay) {
                            let (seq, id) = client.next().await;
                            seen.push(seq);
                            last_id = Some(id);
                            if seen.len() == burst as usize {
                                break;
                            }
                        }
                    }
                    (seen, connections)
                })
            })
            .collect();
        Readers { readers, burst }
    }

    /// Each reader saw every id from `first` on exactly once, in order, over
    /// more than one connection.
    pub async fn saw_every_id_once(self, first: u64) {
        let expected: Vec<u64> = (first..first + self.burst).collect();
        for reader in self.readers {
            let (seen, connections) = timeout(PATIENCE * 6, reader)
                .await
                .expect("the reader finishes in time")
                .expect("the reader does not panic");
            assert!(connections > 1, "the reader should have reconnected");
            assert_eq!(seen, expected, "every id exactly once, in order");
        }
    }
}
