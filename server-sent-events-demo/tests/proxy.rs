//! Behind nginx (`deploy/nginx.conf`), with instances restarted one after
//! another while broadcasts keep coming.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shared::testing::EventStream;
use shared::testing::proxy::{self, Track};
use shared::testing::seq_of;

/// A client as `EventSource` is: after any drop, reconnects with
/// `Last-Event-ID`, after a short pause.
async fn client(front: SocketAddr, track: Arc<Track>) {
    let mut last_id: Option<String> = None;
    while !track.done() {
        let headers: Vec<(&str, &str)> = last_id
            .iter()
            .map(|id| ("Last-Event-ID", id.as_str()))
            .collect();
        let Ok(mut stream) = EventStream::try_open(front, "/sse", &headers).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        track.opened.fetch_add(1, Ordering::Relaxed);
        while let Some(block) = stream.next_block().await {
            if block.event.as_deref() == Some("missed") {
                track.missed.fetch_add(1, Ordering::Relaxed);
            } else if let Some(id) = block.id {
                track.saw(seq_of(&id));
                last_id = Some(id);
                if track.done() {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_through_nginx_lose_nothing_in_a_rolling_restart() {
    proxy::rolling_restart(
        env!("CARGO_BIN_EXE_server-sent-events-demo"),
        false,
        1000,
        |front, track| Box::pin(client(front, track)),
    )
    .await;
}
