//! Clients that stop reading, against a server binary: they are cut off, the
//! others get every broadcast, and what the server holds for them stays
//! bounded. The server is the real binary, so that its resident memory, read
//! from outside, is its own; its broadcasts, 1 KiB each, reach it through a
//! Redis stream of the test's own, as another instance's would (what a
//! client sends is only ever broadcast as Something changed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::hostile::Binary;
use super::redis::{self, Redis};
use super::resume::Resuming;
use super::{PATIENCE, id_of, until};

const STALLED: usize = 50;
const HEALTHY: usize = 5;
const BURST: u64 = 5000;
const STREAM: &str = "stalled";

/// Opens [`STALLED`] connections with `stall`, which then read nothing, and
/// [`HEALTHY`] readers `C`; has the server broadcast once with `first` (a
/// client's message: its id gives the run the burst goes on with), then
/// [`BURST`] broadcasts of 1 KiB. Every reader must get every broadcast, in
/// order; every stalled client be cut off, its connection ended; and the
/// server's memory grow by less than 32 MiB meanwhile.
pub async fn check<C: Resuming>(
    binary: &str,
    stall: impl AsyncFn(SocketAddr) -> TcpStream,
    first: impl AsyncFnOnce(SocketAddr),
) {
    let redis = Redis::start();
    let url = redis.url();
    let args = [
        "--interval",
        "60m",
        "--redis",
        &url,
        "--redis-stream",
        STREAM,
    ];
    let server = Binary::start(binary, &args).await;
    let clients = async || server.metric("demo_connected_clients").await as usize;
    until("the server reached Redis", async || {
        server.health().await.0 == 200
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(stall(server.addr).await);
    }
    let mut readers = Vec::new();
    let mut progress = Vec::new();
    for _ in 0..HEALTHY {
        let mut reader = C::open(server.addr, None).await;
        let read = Arc::new(AtomicU64::new(0));
        progress.push(read.clone());
        readers.push(tokio::spawn(async move {
            for count in 1..=1 + BURST {
                assert_eq!(reader.next().await.0, count, "every broadcast, in order");
                read.store(count, Ordering::Relaxed);
            }
            reader
        }));
    }
    until("everyone joined", async || {
        clients().await == STALLED + HEALTHY
    })
    .await;
    first(server.addr).await;
    let last_id = async || {
        let (_, health) = server.health().await;
        health["lastEventId"].as_str().map(id_of)
    };
    until("the first broadcast", async || last_id().await.is_some()).await;
    let first = last_id().await.expect("an id");

    let before = server.resident_bytes();
    let kib = "x".repeat(1024);
    let caught_up = |seq| {
        let read = |reader: &Arc<AtomicU64>| reader.load(Ordering::Relaxed);
        progress.iter().all(|reader| read(reader) >= seq)
    };
    redis::broadcast(&redis, STREAM, first, BURST, &kib, caught_up).await;
    let mut healthy = Vec::new();
    for reader in readers {
        let reader = timeout(PATIENCE, reader).await;
        healthy.push(
            reader
                .expect("the readers finish in time")
                .expect("they get all"),
        );
    }
    until("every stalled client was cut off", async || {
        server.metric("demo_slow_clients_disconnected_total").await == STALLED as u64
    })
    .await;
    let growth = server.resident_bytes().saturating_sub(before);
    println!(
        "{STALLED} stalled clients, {BURST} broadcasts of 1 KiB: \
         the server's resident memory grew {} KiB",
        growth / 1024
    );
    // The bound: the replay buffer (1024 x ~1 KiB) plus, per stalled client,
    // at most its queue of shared pointers and the socket buffers it pinned.
    assert!(growth < 32 * 1024 * 1024, "memory grew by {growth} bytes");
    until("only the readers are left", async || {
        clients().await == HEALTHY
    })
    .await;
    // Each stalled client, reading again, gets what was on its way, then
    // the end of its connection.
    for mut connection in stalled {
        let ended = timeout(PATIENCE, connection.read_to_end(&mut Vec::new())).await;
        assert!(ended.is_ok(), "a stalled client's connection should end");
    }
    drop(healthy);
}
