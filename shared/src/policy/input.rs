//! One path for what a client sends, whichever protocol carried it: a rate
//! limit verdict, then validation, then the broadcast it causes, each counted
//! and logged the same way on both servers.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::core::{EventId, PublishError, Publisher};
use crate::wire::{Message, SOMETHING_CHANGED};

use super::rate::{RateLimiter, TokenBucket};
use super::rejections::{Reason, Rejections, clip};

/// Why a client's message was not broadcast; its `Display` is what the client
/// is told.
#[derive(Debug)]
pub enum Refused {
    /// Over the rate limit: try again after `wait`.
    RateLimited {
        wait: Duration,
        rate: f64,
        burst: u32,
    },
    /// Not `{"message": "..."}`.
    BadMessage(serde_json::Error),
    /// Valid, but it could not be published.
    Unavailable(PublishError),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::RateLimited { wait, rate, burst } => write!(
                f,
                "rate limit: at most {rate} messages a second (bursts of {burst}); retry in {} ms",
                wait.as_millis() + 1
            ),
            Refused::BadMessage(error) => write!(
                f,
                "expected a JSON object with a string \"message\" ({})",
                clip(&error.to_string())
            ),
            Refused::Unavailable(error) if error.unconfirmed => {
                write!(
                    f,
                    "{error}; it may have gone out, so sending it again may repeat it"
                )
            }
            Refused::Unavailable(error) => write!(f, "{error}; try again later"),
        }
    }
}

/// Where client messages go in.
pub struct Inbox {
    publisher: Arc<dyn Publisher>,
    rejections: Arc<Rejections>,
    rate: f64,
    burst: u32,
    /// One limit per client address, across all its connections and requests.
    per_address: RateLimiter,
}

impl Inbox {
    /// Clients may send `rate` messages a second, in bursts of `burst`.
    pub fn new(
        publisher: Arc<dyn Publisher>,
        rejections: Arc<Rejections>,
        rate: f64,
        burst: u32,
    ) -> Inbox {
        Inbox {
            publisher,
            rejections,
            rate,
            burst,
            per_address: RateLimiter::new(rate, burst),
        }
    }

    /// A fresh bucket for a connection that sends many messages.
    pub fn bucket(&self) -> TokenBucket {
        TokenBucket::new(self.rate, self.burst)
    }

    /// The rate limit's verdict on one more message from `peer`: charged to
    /// its address, and to its connection's own bucket if it has one (a
    /// WebSocket), so that neither many connections nor one can go past it.
    pub fn admit(
        &self,
        peer: SocketAddr,
        connection: Option<&mut TokenBucket>,
    ) -> Result<(), Refused> {
        let taken = match connection {
            Some(bucket) => bucket
                .take()
                .and_then(|()| self.per_address.take(peer.ip())),
            None => self.per_address.take(peer.ip()),
        };
        taken.map_err(|wait| {
            self.rejections.record_rate_limited(peer);
            Refused::RateLimited {
                wait,
                rate: self.rate,
                burst: self.burst,
            }
        })
    }

    /// Checks that `text` is `{"message": "..."}` and broadcasts "Something
    /// changed" for it; the broadcast's id.
    pub async fn publish(&self, peer: SocketAddr, text: &str) -> Result<EventId, Refused> {
        let message: Message = serde_json::from_str(text).map_err(|error| {
            let refused = Refused::BadMessage(error);
            let what = refused.to_string();
            self.rejections.record(Reason::BadMessage, peer, &what);
            refused
        })?;
        log::info!("Received: {}", clip(&message.to_json()));
        let id = self
            .publisher
            .publish(SOMETHING_CHANGED)
            .await
            .map_err(|error| {
                log::warn!("Message from {peer} not broadcast: {error}");
                Refused::Unavailable(error)
            })?;
        log::debug!("Sent {SOMETHING_CHANGED:?} as {id}");
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Hub, HubConfig, Local};

    fn inbox(rate: f64, burst: u32) -> (Inbox, Arc<Hub>, Arc<Rejections>) {
        let (hub, feed) = Hub::local(HubConfig::default(), |_, message| message.to_owned().into());
        let rejections = Arc::new(Rejections::default());
        let publisher = Arc::new(Local::new(feed));
        let inbox = Inbox::new(publisher, rejections.clone(), rate, burst);
        (inbox, hub, rejections)
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    #[tokio::test]
    async fn a_message_is_broadcast_as_something_changed() {
        let (inbox, hub, _) = inbox(10.0, 20);
        let id = inbox.publish(peer(), r#"{"message":"Hi"}"#).await.unwrap();
        assert_eq!(hub.last_id(), Some(id));
    }

    #[tokio::test]
    async fn anything_else_is_refused_counted_and_not_broadcast() {
        let (inbox, hub, rejections) = inbox(10.0, 20);
        let refused = inbox.publish(peer(), r#"{"message":7}"#).await.unwrap_err();
        assert!(matches!(refused, Refused::BadMessage(_)), "{refused:?}");
        assert!(refused.to_string().starts_with("expected a JSON object"));
        assert_eq!(rejections.count(Reason::BadMessage), 1);
        assert_eq!(hub.last_id(), None);
    }

    #[test]
    fn an_address_over_its_burst_is_refused_with_the_wait() {
        let (inbox, _, rejections) = inbox(0.1, 2);
        assert!(inbox.admit(peer(), None).is_ok());
        assert!(inbox.admit(peer(), None).is_ok());
        let refused = inbox.admit(peer(), None).unwrap_err();
        assert!(refused.to_string().starts_with("rate limit: at most 0.1"));
        assert_eq!(
            rejections
                .rate_limited
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn a_connection_is_held_to_its_own_bucket() {
        let (inbox, _, _) = inbox(0.1, 2);
        let mut bucket = inbox.bucket();
        bucket.take().unwrap();
        assert!(inbox.admit(peer(), Some(&mut bucket)).is_ok());
        assert!(inbox.admit(peer(), Some(&mut bucket)).is_err());
    }

    #[test]
    fn connections_from_one_address_share_its_limit() {
        let (inbox, _, _) = inbox(0.1, 2);
        let mut connections: Vec<_> = (0..3).map(|_| inbox.bucket()).collect();
        assert!(inbox.admit(peer(), Some(&mut connections[0])).is_ok());
        assert!(inbox.admit(peer(), Some(&mut connections[1])).is_ok());
        assert!(inbox.admit(peer(), Some(&mut connections[2])).is_err());
        let elsewhere: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        assert!(inbox.admit(elsewhere, Some(&mut connections[2])).is_ok());
    }
}
