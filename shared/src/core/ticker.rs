//! The ticker: "Hello hello!" to everyone, every interval, as the originals did.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use super::publisher::Publisher;

/// What the ticker broadcasts.
pub const HELLO: &str = "Hello hello!";

/// Publishes [`HELLO`] every `every` (first after one interval, like
/// `setInterval`) until `stop` is cancelled, for each interval the publisher
/// lets this instance claim.
pub async fn run(publisher: Arc<dyn Publisher>, every: Duration, stop: CancellationToken) {
    // Instances that share a backplane tick at the same moments, the starts
    // of the slots, so that the one that claims a slot ticks on time.
    let first = match publisher.backplane() {
        Some(_) => until_next_slot(every),
        None => every,
    };
    let mut ticks = interval_at(Instant::now() + first, every);
    // After a stall, carry on at the normal pace instead of bursting.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => break,
        }
        if !publisher.claim_tick(slot(every)).await {
            continue;
        }
        match publisher.publish(HELLO).await {
            Ok(id) => log::debug!("Sent {HELLO:?} as {id}"),
            Err(error) => log::warn!("Tick not sent: {error}"),
        }
    }
}

/// The number of whole intervals since the Unix epoch: the same on every
/// instance whose clock agrees. Taken a little after the tick, so that a
/// tick that fires a hair early still counts in its own slot.
fn slot(every: Duration) -> u64 {
    let now = since_epoch() + every / 4;
    (now.as_nanos() / every.as_nanos().max(1)) as u64
}

/// How long until the next slot begins.
fn until_next_slot(every: Duration) -> Duration {
    let every_nanos = every.as_nanos().max(1);
    let into = since_epoch().as_nanos() % every_nanos;
    Duration::from_nanos((every_nanos - into) as u64)
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
