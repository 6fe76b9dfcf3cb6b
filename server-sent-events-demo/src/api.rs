//! `POST /api`: a client's message, answered and broadcast as "Something changed".
//!
//! Every refusal has its own status and a JSON body saying what was wrong:
//! 403 origin, 405 method, 415 content type, 413 size, 400 not the expected
//! JSON, 429 over the rate limit (with `Retry-After`).

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use shared::guard::{RateLimiter, Reason};
use shared::message::{Message, SOMETHING_CHANGED};
use shared::server::{Conn, Context, error_response, refuse};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::cors;

pub(crate) fn route(
    context: Context,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let limiter = Arc::new(RateLimiter::new(context.config.rate, context.config.burst));
    warp::path!("api")
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::ext::get::<Conn>())
        .and(warp::body::stream())
        .then(move |method, headers, conn, body| {
            let api = Api {
                context: context.clone(),
                limiter: limiter.clone(),
                conn,
            };
            async move { api.handle(method, &headers, body).await }
        })
}

struct Api {
    context: Context,
    limiter: Arc<RateLimiter>,
    conn: Conn,
}

/// Why a request was turned down: what to count, what to answer.
type Refusal = (Option<Reason>, StatusCode, String);

impl Api {
    async fn handle<S, B>(&self, method: Method, headers: &HeaderMap, body: S) -> Response
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        let origin = match cors::origin(&self.context, headers) {
            Ok(origin) => origin,
            Err(why) => return self.refuse((Some(Reason::Origin), StatusCode::FORBIDDEN, why)),
        };
        let mut response = match method {
            Method::OPTIONS => cors::preflight(),
            Method::POST => match self.receive(headers, body).await {
                Ok(response) => response,
                Err(refusal) => self.refuse(refusal),
            },
            other => {
                let why = format!("{other} is not allowed here: use POST");
                let mut response =
                    self.refuse((Some(Reason::Method), StatusCode::METHOD_NOT_ALLOWED, why));
                let allow = HeaderValue::from_static("POST, OPTIONS");
                response.headers_mut().insert(header::ALLOW, allow);
                response
            }
        };
        cors::allow(&mut response, origin);
        response
    }

    async fn receive<S, B>(&self, headers: &HeaderMap, body: S) -> Result<Response, Refusal>
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        if let Err(wait) = self.limiter.take(self.conn.peer.ip()) {
            self.context.rejections.record_rate_limited(self.conn.peer);
            let seconds = wait.as_secs_f64().ceil().max(1.0);
            let why = format!(
                "rate limit: at most {} messages a second (bursts of {}); retry in {seconds} s",
                self.context.config.rate, self.context.config.burst
            );
            let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, &why);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds as u64));
            return Ok(response);
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            let why = "the body must be JSON, sent as Content-Type: application/json";
            return Err((
                Some(Reason::ContentType),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                why.into(),
            ));
        }
        let limit = self.context.config.max_message;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large(limit));
        }
        let body = read_limited(body, limit).await?;
        let bad = |why: String| (Some(Reason::BadMessage), StatusCode::BAD_REQUEST, why);
        let text = std::str::from_utf8(&body).map_err(|_| {
            (
                Some(Reason::InvalidUtf8),
                StatusCode::BAD_REQUEST,
                "the body is not valid UTF-8".into(),
            )
        })?;
        let message: Message = serde_json::from_str(text).map_err(|error| {
            bad(format!(
                "expected a JSON object with a string \"message\" ({error})"
            ))
        })?;
        log::info!("Received: {}", message.to_json());
        let id = self.context.hub.publish(SOMETHING_CHANGED);
        log::debug!(
            "Sent {SOMETHING_CHANGED:?} as {id} to {} client(s)",
            self.context.hub.client_count()
        );
        Ok(warp::reply::json(&serde_json::json!({ "id": id.to_string() })).into_response())
    }

    fn refuse(&self, (reason, status, why): Refusal) -> Response {
        match reason {
            Some(reason) => refuse(&self.context, &self.conn, reason, status, &why),
            None => {
                log::info!(
                    "Refused a request from {} ({status}): {why}",
                    self.conn.peer
                );
                error_response(status, &why)
            }
        }
    }
}

/// Reads the body, refusing it as soon as it passes `limit` bytes.
async fn read_limited<S, B>(mut body: S, limit: usize) -> Result<BytesMut, Refusal>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|error| {
            (
                None,
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {error}"),
            )
        })?;
        if collected.len() + chunk.remaining() > limit {
            return Err(too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            collected.extend_from_slice(part);
            let read = part.len();
            chunk.advance(read);
        }
    }
    Ok(collected)
}

fn too_large(limit: usize) -> Refusal {
    let why = format!("the body is over {limit} bytes");
    (Some(Reason::TooLarge), StatusCode::PAYLOAD_TOO_LARGE, why)
}
