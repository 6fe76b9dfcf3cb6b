//! The Server-Sent Events demo: a page, an event stream at `/sse`, and
//! `POST /api` for the one thing SSE cannot do, talking back to the server.

mod api;
mod cors;
mod stream;

use shared::config::Defaults;
use shared::pages::{self, Page};
use shared::server::Context;
use warp::{Filter, Rejection, Reply};

pub const DEFAULTS: Defaults = Defaults {
    name: "server-sent-events-demo",
    about: "The Server-Sent Events demo: a page, an event stream at /sse and POST /api",
    port: 8080,
    heartbeat: "15s",
    heartbeat_help: "Time between two keep-alive comments on an idle event stream",
};

const PAGE: Page = Page {
    title: "Server-Sent Events demo",
    intro: include_str!("../static/intro.html"),
    script: include_str!("../static/client.js"),
};

/// Every route of the server.
pub fn routes(context: Context) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    stream::route(context.clone())
        .or(api::route(context))
        .or(pages::routes(PAGE))
}
