//! The demo pages, embedded in each binary so it runs from any directory.

use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use warp::{Filter, Rejection, Reply};

/// One page's files: the HTML and its script.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub html: &'static str,
    pub script: &'static str,
}

/// The style sheet and script both pages share.
const STYLE: &str = include_str!("../static/style.css");
const COMMON_SCRIPT: &str = include_str!("../static/common.js");

/// `GET /`, `GET /client.js`, `GET /common.js` and `GET /style.css`.
pub fn routes(page: Page) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let file = |content: &'static str, content_type: &'static str| {
        move || {
            warp::reply::with_header(
                warp::reply::with_header(content, CONTENT_TYPE, content_type),
                CACHE_CONTROL,
                "no-cache",
            )
        }
    };
    let index = warp::path::end().map(file(page.html, "text/html; charset=utf-8"));
    let script = warp::path!("client.js").map(file(page.script, "text/javascript; charset=utf-8"));
    let common =
        warp::path!("common.js").map(file(COMMON_SCRIPT, "text/javascript; charset=utf-8"));
    let style = warp::path!("style.css").map(file(STYLE, "text/css; charset=utf-8"));
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
