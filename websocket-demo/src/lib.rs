//! The WebSocket demo: a page, and a WebSocket at `/` on the same port.
//!
//! Each client gets "Gotcha" when it connects, "Hello hello!" every interval,
//! and "Something changed" whenever any client sends a message.

mod handshake;
mod session;

use shared::config::Defaults;
use shared::pages::{self, Page};
use shared::server::Context;
use warp::{Filter, Rejection, Reply};

pub const DEFAULTS: Defaults = Defaults {
    name: "websocket-demo",
    about: "The WebSocket demo: a page and a WebSocket at / that pushes messages to every client",
    port: 8081,
    heartbeat: "30s",
    heartbeat_help: "Time between two pings; a client silent for two of them is disconnected",
};

const PAGE: Page = Page {
    title: "WebSocket demo",
    intro: include_str!("../static/intro.html"),
    script: include_str!("../static/client.js"),
};

/// Every route of the server.
pub fn routes(context: Context) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    handshake::route(context).or(pages::routes(PAGE))
}
