//! The core: what a broadcast is and how it reaches every subscriber. No HTTP
//! and no WebSocket here: a server plugs in its own framing.

pub mod hub;
pub mod id;
pub mod publisher;
pub mod ticker;

pub use hub::{
    BackplaneFeed, Event, Framer, Hub, HubConfig, LocalFeed, Missed, MissedReason, SubscribeError,
    Subscription,
};
pub use id::{EventId, MAX_ID_LEN, ParseIdError};
pub use publisher::{Backplane, DELIVERY_BUCKETS, Link, Local, PublishError, Publisher};
