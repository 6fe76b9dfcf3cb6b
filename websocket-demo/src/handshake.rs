//! The WebSocket opening handshake (RFC 6455, section 4.2), checked strictly so
//! that every bad request gets the status that says what is wrong.

use hyper::upgrade::OnUpgrade;
use serde::Deserialize;
use shared::http::{self, Conn, Context, Refusal, check_origin, check_since};
use shared::policy::Reason;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::http::{HeaderMap, HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::session;

#[derive(Deserialize)]
struct Resume {
    /// The id of the last message the client saw.
    since: Option<String>,
}

/// `GET /` with `Upgrade: websocket`; any other request passes on to the page.
pub(crate) fn route(
    context: Context,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::path::end())
        .and(warp::header::headers_cloned())
        .and_then(|headers: HeaderMap| async move {
            if asks_for_websocket(&headers) {
                Ok(headers)
            } else {
                Err(warp::reject())
            }
        })
        // A bad query string is this handshake's error, not a request for the page.
        .and(
            warp::query::<Resume>()
                .map(Some)
                .or(warp::any().map(|| None))
                .unify(),
        )
        .and(warp::ext::optional::<OnUpgrade>())
        .and(http::conn(context.proxies.clone()))
        .map(
            move |headers: HeaderMap,
                  resume: Option<Resume>,
                  upgrade: Option<OnUpgrade>,
                  conn: Conn| {
                let peer = conn.peer;
                accept(&context, &headers, resume, upgrade, conn)
                    .unwrap_or_else(|refusal| refusal.answer(&context.rejections, peer))
            },
        )
}

fn asks_for_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// A valid key is 16 bytes in base64: 22 significant characters and `==`.
fn valid_key(key: &[u8]) -> bool {
    let alphabet = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24 && key.ends_with(b"==") && key[..22].iter().all(alphabet)
        // The last character carries 2 bits of the key and 4 of padding.
        && b"AQgw".contains(&key[21])
}

fn accept(
    context: &Context,
    headers: &HeaderMap,
    resume: Option<Resume>,
    upgrade: Option<OnUpgrade>,
    conn: Conn,
) -> Result<Response, Refusal> {
    check_origin(&context.origins, headers)?;
    let bad = |why: &str| Refusal::new(Reason::Handshake, StatusCode::BAD_REQUEST, why);
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(bad("the Connection header must include upgrade"));
    }
    let version = headers.get(header::SEC_WEBSOCKET_VERSION);
    if version.map(HeaderValue::as_bytes) != Some(b"13") {
        let why = "only WebSocket version 13 is supported";
        let refusal = Refusal::new(Reason::Handshake, StatusCode::UPGRADE_REQUIRED, why);
        let supported = HeaderValue::from_static("13");
        return Err(refusal.with_header(header::SEC_WEBSOCKET_VERSION, supported));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes);
    let Some(key) = key.filter(|key| valid_key(key)) else {
        return Err(bad("Sec-WebSocket-Key must be 16 bytes in base64"));
    };
    let Some(upgrade) = upgrade else {
        return Err(bad("this connection cannot be upgraded"));
    };
    let Some(resume) = resume else {
        return Err(bad("invalid query string: give since=<id> at most once"));
    };
    check_since(resume.since.as_deref())?;
    // Subscribe before answering, so the client misses nothing after the 101.
    // The hub evicts a client too far behind by cancelling its connection's
    // own way out, which nothing else cancels once the connection is served.
    let evicted = conn.close.clone();
    let since = resume.since.as_deref();
    let subscription = context.hub.subscribe(since, evicted.clone())?;

    let session = session::run(upgrade, subscription, evicted, context.clone(), conn);
    context.tasks.spawn(session);

    let mut response = Response::new("".into());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let accept_key = derive_accept_key(key);
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    // The accept key is base64, always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_for_length_alphabet_and_padding() {
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ"));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25j*Q=="));
        assert!(!valid_key(b""));
    }

    #[test]
    fn the_accept_key_matches_the_rfc_example() {
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
