//! Behind nginx (`deploy/nginx.conf`), with instances restarted one after
//! another while broadcasts keep coming.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use shared::testing::proxy::{self, Track};
use shared::testing::seq_of;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// A client as the page is: resumes with `?since=` after any drop, after a
/// short pause.
async fn client(front: SocketAddr, track: Arc<Track>) {
    let mut since = String::new();
    while !track.done() {
        let Ok((mut socket, _)) = connect_async(format!("ws://{front}/{since}")).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        track.opened.fetch_add(1, Ordering::Relaxed);
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let message: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            if message["missed"] == true {
                track.missed.fetch_add(1, Ordering::Relaxed);
            } else if let Some(id) = message["id"].as_str() {
                track.saw(seq_of(id));
                since = format!("?since={id}");
                if track.done() {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_through_nginx_lose_nothing_in_a_rolling_restart() {
    proxy::rolling_restart(
        env!("CARGO_BIN_EXE_websocket-demo"),
        true,
        1000,
        |front, track| Box::pin(client(front, track)),
    )
    .await;
}
