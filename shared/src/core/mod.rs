//! The core: what a broadcast is and how it reaches every subscriber. No HTTP
//! and no WebSocket here: a server plugs in its own framing.

pub mod hub;
pub mod id;
pub mod publisher;
pub mod redis;
pub mod ticker;

pub use hub::{Event, Framer, Hub, HubConfig, Missed, MissedReason, SubscribeError, Subscription};
pub use id::{EventId, MAX_ID_LEN, ParseIdError};
pub use publisher::{Backplane, DELIVERY_BUCKETS, Local, PublishError, Publisher};
