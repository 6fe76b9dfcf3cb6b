//! What both demo servers share: the wire messages, the broadcast hub, the
//! ticker, the event-stream format, the server loop and the options.

pub mod config;
pub mod guard;
pub mod hub;
pub mod message;
pub mod observe;
pub mod pages;
pub mod server;
pub mod shutdown;
pub mod sse;
#[cfg(feature = "testing")]
pub mod testing;
pub mod ticker;

pub use config::{Config, Defaults};
pub use hub::{Event, EventId, Hub, Missed, Subscription};
pub use message::Message;
pub use server::{Conn, Context, Server};

/// Re-exported so the WebSocket server speaks the same version the hub frames for.
pub use tokio_tungstenite;
