//! The Server-Sent Events demo: a page, an event stream at `/sse`, and
//! `POST /api` for the one thing SSE cannot do, talking back to the server.

mod api;
mod cors;
mod stream;

use bytes::Bytes;
use shared::config::Defaults;
use shared::core::EventId;
use shared::http::Context;
use shared::http::pages::{self, Page};
use shared::wire::{Message, sse};
use warp::{Filter, Rejection, Reply};

pub const DEFAULTS: Defaults = Defaults {
    name: "server-sent-events-demo",
    version: env!("CARGO_PKG_VERSION"),
    about: "The Server-Sent Events demo: a page, an event stream at /sse and POST /api",
    port: 8080,
    heartbeat: "15s",
    stream: "demo:sse",
    upgrades: false,
    heartbeat_help: "Time between two ping events on every event stream",
};

const PAGE: Page = Page {
    title: "Server-Sent Events demo",
    intro: include_str!("../static/intro.html"),
    script: include_str!("../static/client.js"),
};

/// A broadcast as this server sends it: an event-stream block, `id:` then
/// `data: {"message":"..."}`.
pub fn frame(id: EventId, message: &str) -> Bytes {
    sse::event(
        None,
        Some(&id.to_string()),
        &Message::new(message).to_json(),
    )
}

/// Every route of the server.
pub fn routes(context: Context) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let heartbeat = context.config.heartbeat;
    stream::route(context.clone())
        .or(api::route(context))
        .or(pages::routes(PAGE, heartbeat))
}
