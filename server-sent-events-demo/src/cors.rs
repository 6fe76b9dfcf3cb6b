//! Cross-origin rules for `/sse` and `/api`: the server's allowed origins
//! (checked by `shared::http::check_origin`, which refuses others with 403),
//! told to browsers with CORS headers.

use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

/// The answer to a preflight `OPTIONS` from an allowed origin.
pub(crate) fn preflight() -> Response {
    let mut response = Response::new("".into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    let methods = HeaderValue::from_static("POST, OPTIONS");
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods.clone());
    headers.insert(header::ALLOW, methods);
    let allowed_headers = HeaderValue::from_static("Content-Type, Last-Event-ID");
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed_headers);
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Lets the browser hand the response to a page from `origin`.
pub(crate) fn allow(response: &mut Response, origin: Option<HeaderValue>) {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
}
