//! What both demo servers share, in layers that depend one way, each on the
//! ones before it only:
//!
//! 1. [`core`]: what a broadcast is and how it reaches every subscriber: ids,
//!    the hub with its replay buffer and bounded queues, the publisher (the
//!    seam a backplane plugs into) and the ticker. No HTTP or WebSocket crate.
//! 2. [`backplane`]: several instances sharing one log of broadcasts (Redis
//!    Streams): a publisher that appends, and the reader that feeds the hub.
//! 3. [`wire`]: how broadcasts and notices are written for the pages: the
//!    JSON messages and the event-stream framing.
//! 4. [`policy`]: what the servers accept: allowed origins, rate limits, the
//!    reasons for a refusal, and the one path every client message takes
//!    (rate limit, validate, publish, log).
//! 5. [`http`]: the connection loop, what routes share ([`http::Context`]),
//!    refusals, the pages, `/healthz` and `/metrics`, and the guard that
//!    keeps a panicking connection from going unseen.
//! 6. [`app`]: the binaries' common `main`, which assembles a server from a
//!    hub, a publisher and a demo's routes.
//!
//! [`config`] (the options) depends on nothing here; [`http`] and [`app`]
//! read it. Each demo crate adds its protocol on top: its framing of a
//! broadcast and its routes.

pub mod app;
pub mod backplane;
pub mod config;
pub mod core;
pub mod http;
pub mod policy;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

pub use app::Server;
pub use config::{Config, Defaults};
