//! Refused requests: one type for every refusal, answered the same way (a
//! status and `{"error": why}`), counted by reason and logged once.

use std::convert::Infallible;
use std::net::SocketAddr;

use warp::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::core::{MAX_ID_LEN, SubscribeError};
use crate::policy::{Origins, Reason, Rejections, clip};

/// Why a request was turned down: what to count, what to answer.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The counter it goes under; `None` for what is no fault of the client
    /// (the server shutting down) or already counted elsewhere.
    pub reason: Option<Reason>,
    pub status: StatusCode,
    /// What the client is told.
    pub why: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    pub fn new(reason: Reason, status: StatusCode, why: impl Into<String>) -> Refusal {
        Refusal {
            reason: Some(reason),
            ..Refusal::uncounted(status, why)
        }
    }

    /// A refusal that is not counted under any reason.
    pub fn uncounted(status: StatusCode, why: impl Into<String>) -> Refusal {
        Refusal {
            reason: None,
            status,
            why: why.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the answer (`Allow`, `Retry-After`...).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Refusal {
        self.headers.push((name, value));
        self
    }

    /// Counts and logs the refusal of `peer`'s request, and answers it.
    pub fn answer(self, rejections: &Rejections, peer: SocketAddr) -> Response {
        match self.reason {
            Some(reason) => {
                let what = format!("{} {}", self.status.as_u16(), self.why);
                rejections.record(reason, peer, &what);
            }
            None => log::debug!("Refused {peer}: {} {}", self.status.as_u16(), self.why),
        }
        let mut response = error_response(self.status, &self.why);
        response.headers_mut().extend(self.headers);
        response
    }
}

impl From<SubscribeError> for Refusal {
    /// 503 either way; counted as a capacity refusal when the hub is full.
    fn from(error: SubscribeError) -> Refusal {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        match error {
            SubscribeError::Full => Refusal::new(
                Reason::Capacity,
                status,
                "the server has as many clients as it takes",
            ),
            SubscribeError::Closed => Refusal::uncounted(status, "the server is shutting down"),
            // Behind a proxy, another instance may take it at once.
            SubscribeError::Starting => Refusal::uncounted(
                status,
                "the server is catching up with the others: try again in a moment",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        }
    }
}

/// The request's `Origin` when `origins` allows it (`None` when it has none,
/// as non-browser clients and same-origin `EventSource` requests do), or the
/// 403 refusal. The WebSocket handshake and CORS both ask here.
pub fn check_origin(
    origins: &Origins,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, Refusal> {
    let origin = headers.get(header::ORIGIN);
    let text = origin.map(|value| value.to_str().unwrap_or("?"));
    if origins.allows(text) {
        return Ok(origin.cloned());
    }
    let why = format!("origin {} is not allowed", clip(text.unwrap_or_default()));
    Err(Refusal::new(Reason::Origin, StatusCode::FORBIDDEN, why))
}

/// Refuses with 400 an id to resume from that is too long to be one, so
/// that no client can make the server keep (and echo back) a large one.
pub fn check_since(since: Option<&str>) -> Result<(), Refusal> {
    match since {
        Some(since) if since.len() > MAX_ID_LEN => {
            let why = format!("an event id is at most {MAX_ID_LEN} bytes");
            Err(Refusal::new(Reason::TooLarge, StatusCode::BAD_REQUEST, why))
        }
        _ => Ok(()),
    }
}

/// Refuses with 400 a request that carries a body where none belongs (a
/// `GET` of an event stream): a client that sends one expects it read, and
/// it would be ignored. `Content-Length: 0` is no body.
pub fn check_no_body(headers: &HeaderMap) -> Result<(), Refusal> {
    let declared = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|length| length != "0");
    if declared {
        let why = "a request for an event stream has no body";
        return Err(Refusal::new(
            Reason::MalformedHttp,
            StatusCode::BAD_REQUEST,
            why,
        ));
    }
    Ok(())
}

/// An error answer: `status`, with `{"error": why}` as a JSON body.
pub fn error_response(status: StatusCode, why: &str) -> Response {
    let body = warp::reply::json(&serde_json::json!({ "error": why }));
    warp::reply::with_status(body, status).into_response()
}

/// What no route answered (an unknown path, a bad query string...), as a
/// JSON error like every other refusal, instead of warp's plain text.
pub async fn answer_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject::{
        InvalidHeader, InvalidQuery, LengthRequired, MethodNotAllowed, MissingHeader,
        PayloadTooLarge, UnsupportedMediaType,
    };
    fn known<T: std::fmt::Display + 'static>(
        rejection: &Rejection,
        status: StatusCode,
    ) -> Option<(StatusCode, String)> {
        rejection
            .find::<T>()
            .map(|error| (status, error.to_string()))
    }
    let bad = StatusCode::BAD_REQUEST;
    let answer = if rejection.is_not_found() {
        Some((StatusCode::NOT_FOUND, "no such page".to_owned()))
    } else {
        known::<InvalidQuery>(&rejection, bad)
            .or_else(|| known::<InvalidHeader>(&rejection, bad))
            .or_else(|| known::<MissingHeader>(&rejection, bad))
            .or_else(|| known::<LengthRequired>(&rejection, StatusCode::LENGTH_REQUIRED))
            .or_else(|| known::<PayloadTooLarge>(&rejection, StatusCode::PAYLOAD_TOO_LARGE))
            .or_else(|| {
                known::<UnsupportedMediaType>(&rejection, StatusCode::UNSUPPORTED_MEDIA_TYPE)
            })
            .or_else(|| known::<MethodNotAllowed>(&rejection, StatusCode::METHOD_NOT_ALLOWED))
    };
    let (status, why) = answer.unwrap_or_else(|| {
        log::error!("Unexpected rejection: {rejection:?}");
        let why = "internal error".to_owned();
        (StatusCode::INTERNAL_SERVER_ERROR, why)
    });
    if status == StatusCode::NOT_FOUND {
        log::debug!("Refused a request: {status} {why}");
    } else {
        log::info!("Refused a request: {status} {why}");
    }
    Ok(error_response(status, &why))
}
