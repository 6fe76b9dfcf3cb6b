//! The WebSocket demo: a page, and a WebSocket at `/` on the same port.
//!
//! Each client gets "Gotcha" when it connects, "Hello hello!" every interval,
//! and "Something changed" whenever any client sends a message.

mod frames;
mod handshake;
mod session;
mod wire;

use bytes::Bytes;
use shared::config::Defaults;
use shared::core::EventId;
use shared::http::Context;
use shared::http::pages::{self, Page};
use shared::wire::broadcast_json;
use warp::{Filter, Rejection, Reply};

pub const DEFAULTS: Defaults = Defaults {
    name: "websocket-demo",
    version: env!("CARGO_PKG_VERSION"),
    about: "The WebSocket demo: a page and a WebSocket at / that pushes messages to every client",
    port: 8081,
    heartbeat: "30s",
    stream: "demo:websocket",
    upgrades: true,
    heartbeat_help: "Time between two pings; a client silent for two of them is disconnected",
};

const PAGE: Page = Page {
    title: "WebSocket demo",
    intro: include_str!("../static/intro.html"),
    script: include_str!("../static/client.js"),
};

/// A broadcast as this server sends it: the whole WebSocket text frame,
/// header and `{"id":"...","message":"..."}`, written as is to every client.
pub fn frame(id: EventId, message: &str) -> Bytes {
    frames::frame(frames::TEXT, broadcast_json(id, message).as_bytes())
}

/// Every route of the server.
pub fn routes(context: Context) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let heartbeat = context.config.heartbeat;
    handshake::route(context).or(pages::routes(PAGE, heartbeat))
}
