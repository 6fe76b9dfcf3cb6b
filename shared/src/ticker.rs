//! The ticker: "Hello hello!" to everyone, every interval, as the originals did.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::message::HELLO;

/// Broadcasts [`HELLO`] every `every` (first after one interval, like
/// `setInterval`) until `stop` is cancelled.
pub async fn run(hub: Arc<Hub>, every: Duration, stop: CancellationToken) {
    let mut ticks = interval_at(Instant::now() + every, every);
    // After a stall, carry on at the normal pace instead of bursting.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let id = hub.publish(HELLO);
                log::debug!("Sent {HELLO:?} as {id} to {} client(s)", hub.client_count());
            }
            () = stop.cancelled() => break,
        }
    }
}
