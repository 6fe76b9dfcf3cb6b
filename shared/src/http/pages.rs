//! The demo pages, embedded in each binary so it runs from any directory.
//!
//! Both pages share one layout, style sheet and script (state, counters, log,
//! and the `window.demo` API the browser tests call); each demo brings its
//! title, its explanation (`static/intro.html`) and its client script. The
//! scripts are ES modules: `client.js` imports what it uses from `/common.js`
//! and the connection from `/realtime.js`, the client module any page of an
//! app built on these servers can import (see README, "Client module").

use std::time::Duration;

use bytes::Bytes;
use warp::http::HeaderValue;
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use warp::reply::Response;
use warp::{Filter, Rejection};

/// What one demo's page adds to the shared layout.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub title: &'static str,
    /// The explanation under the title: HTML, the demo's own `static/intro.html`
    /// (never user input).
    pub intro: &'static str,
    /// The client script, an ES module served as `/client.js`.
    pub script: &'static str,
}

const LAYOUT: &str = include_str!("../../static/index.html");
const STYLE: &str = include_str!("../../static/style.css");
const COMMON_SCRIPT: &str = include_str!("../../static/common.js");
/// The browser client: connect, topics, resume, backoff, heartbeat, tokens.
const CLIENT_MODULE: &str = include_str!("../../static/realtime.js");
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

impl Page {
    /// The page's HTML: the shared layout with this demo's title and intro,
    /// and the server's heartbeat, which the page listens for.
    pub fn html(&self, heartbeat: Duration) -> String {
        LAYOUT
            .replace("{{title}}", self.title)
            .replace("{{intro}}", self.intro)
            .replace("{{heartbeat_ms}}", &heartbeat.as_millis().to_string())
    }
}

/// A file's response: its bytes, its type, and `no-cache` (the browser
/// revalidates, so a new build's files are picked up at once).
fn file(content: Bytes, content_type: &'static str) -> impl Fn() -> Response + Clone {
    move || {
        let mut response = Response::new(content.clone().into());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// `GET /`, `GET /client.js`, `GET /common.js`, `GET /style.css` and the
/// client module, [`client_module`].
pub fn routes(
    page: Page,
    heartbeat: Duration,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let html = Bytes::from(page.html(heartbeat));
    let index = warp::path::end().map(file(html, "text/html; charset=utf-8"));
    let script =
        warp::path!("client.js").map(file(Bytes::from_static(page.script.as_bytes()), JAVASCRIPT));
    let common = warp::path!("common.js").map(file(
        Bytes::from_static(COMMON_SCRIPT.as_bytes()),
        JAVASCRIPT,
    ));
    let style = warp::path!("style.css").map(file(
        Bytes::from_static(STYLE.as_bytes()),
        "text/css; charset=utf-8",
    ));
    warp::get()
        .and(
            index
                .or(script)
                .unify()
                .or(common)
                .unify()
                .or(style)
                .unify(),
        )
        .or(client_module())
        .unify()
}

/// `GET /realtime.js`: the browser client module (`shared/static/realtime.js`),
/// at this one path on every server, for pages that are not the demos' too.
pub fn client_module() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::get().and(warp::path!("realtime.js")).map(file(
        Bytes::from_static(CLIENT_MODULE.as_bytes()),
        JAVASCRIPT,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_takes_the_title_and_intro() {
        let page = Page {
            title: "Demo",
            intro: "Hello <code>x</code>",
            script: "",
        };
        let html = page.html(Duration::from_secs(15));
        assert!(html.contains("<title>Demo</title>"));
        assert!(html.contains("<h1>Demo</h1>"));
        assert!(html.contains("<p>Hello <code>x</code></p>"));
        assert!(html.contains(r#"data-heartbeat-ms="15000""#));
        assert!(!html.contains("{{"));
    }
}
