//! The demo pages, embedded in each binary so it runs from any directory.
//!
//! Both pages share one layout, style sheet and script (state, counters, log,
//! and the `window.demo` API the browser tests call); each demo brings its
//! title, its explanation (`static/intro.html`) and its client script. The
//! scripts are ES modules: `client.js` imports what it uses from `/common.js`.

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

/// `GET /`, `GET /client.js`, `GET /common.js` and `GET /style.css`.
pub fn routes(
    page: Page,
    heartbeat: Duration,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let html = Bytes::from(page.html(heartbeat));
    let file = |content: Bytes, content_type: &'static str| {
        move || {
            let mut response = Response::new(content.clone().into());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
    };
    let javascript = "text/javascript; charset=utf-8";
    let index = warp::path::end().map(file(html, "text/html; charset=utf-8"));
    let script =
        warp::path!("client.js").map(file(Bytes::from_static(page.script.as_bytes()), javascript));
    let common = warp::path!("common.js").map(file(
        Bytes::from_static(COMMON_SCRIPT.as_bytes()),
        javascript,
    ));
    let style = warp::path!("style.css").map(file(
        Bytes::from_static(STYLE.as_bytes()),
        "text/css; charset=utf-8",
    ));
    warp::get().and(
        index
            .or(script)
            .unify()
            .or(common)
            .unify()
            .or(style)
            .unify(),
    )
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
