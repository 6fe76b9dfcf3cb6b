//! `POST /api`: a client's message, answered and broadcast as "Something changed".
//!
//! Every refusal has its own status and a JSON body saying what was wrong:
//! 403 origin, 405 method, 415 content type, 413 size, 400 not the expected
//! JSON, 408 a body slower than `--request-timeout`, 429 over the rate limit
//! (with `Retry-After`), 503 when the broadcast cannot be published, 504 when
//! Redis took it but did not confirm it in time.
//!
//! Only the body's arrival is timed against the client. The wait for Redis
//! after it is the server's: bounded by the backplane's answer timeout and
//! answered 504 ("it may have gone out"), never counted as a slow request.

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use shared::http::{self, Conn, Context, Refusal, check_origin};
use shared::policy::{Reason, Refused};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::cors;

pub(crate) fn route(
    context: Context,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api")
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(http::conn(context.proxies.clone()))
        .and(warp::body::stream())
        .then(move |method, headers, conn: Conn, body| {
            let context = context.clone();
            async move {
                let peer = conn.peer;
                handle(&context, method, &headers, conn, body)
                    .await
                    .unwrap_or_else(|refusal| refusal.answer(&context.rejections, peer))
            }
        })
}

async fn handle<S, B>(
    context: &Context,
    method: Method,
    headers: &HeaderMap,
    conn: Conn,
    body: S,
) -> Result<Response, Refusal>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let origin = check_origin(&context.origins, headers)?;
    let answer = match method {
        Method::OPTIONS => Ok(cors::preflight()),
        Method::POST => receive(context, headers, &conn, body).await,
        other => {
            let why = format!("{other} is not allowed here: use POST");
            let allow = HeaderValue::from_static("POST, OPTIONS");
            let refusal = Refusal::new(Reason::Method, StatusCode::METHOD_NOT_ALLOWED, why);
            Err(refusal.with_header(header::ALLOW, allow))
        }
    };
    // The browser shows a page from an allowed origin every answer, refusals too.
    let mut response =
        answer.unwrap_or_else(|refusal| refusal.answer(&context.rejections, conn.peer));
    cors::allow(&mut response, origin);
    Ok(response)
}

async fn receive<S, B>(
    context: &Context,
    headers: &HeaderMap,
    conn: &Conn,
    body: S,
) -> Result<Response, Refusal>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let inbox = &context.inbox;
    inbox.admit(conn.peer, None).map_err(refusal)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        let why = "the body must be JSON, sent as Content-Type: application/json";
        let status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Err(Refusal::new(Reason::ContentType, status, why));
    }
    let limit = context.config.max_message;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    // A body that stalls would hold its buffer and connection for as long as
    // the client liked.
    let deadline = context.config.request_timeout;
    // Room for what the client declared (within the limit), taken at once
    // rather than doubled as it arrives.
    let expected = declared.unwrap_or(0).min(limit as u64) as usize;
    let body = tokio::time::timeout(deadline, read_limited(body, limit, expected))
        .await
        .map_err(|_| {
            let why = format!("the body did not arrive within {deadline:?}");
            Refusal::new(Reason::SlowRequest, StatusCode::REQUEST_TIMEOUT, why)
        })??;
    let text = std::str::from_utf8(&body).map_err(|_| {
        let why = "the body is not valid UTF-8";
        Refusal::new(Reason::InvalidUtf8, StatusCode::BAD_REQUEST, why)
    })?;
    let id = inbox.publish(conn.peer, text).await.map_err(refusal)?;
    Ok(warp::reply::json(&serde_json::json!({ "id": id.to_string() })).into_response())
}

/// The answer to a message the inbox refused; it has counted it already.
fn refusal(refused: Refused) -> Refusal {
    let why = refused.to_string();
    match refused {
        Refused::RateLimited { wait, .. } => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            Refusal::uncounted(StatusCode::TOO_MANY_REQUESTS, why)
                .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
        }
        Refused::BadMessage(_) => Refusal::uncounted(StatusCode::BAD_REQUEST, why),
        // Sent, but not confirmed: a retry may repeat it.
        Refused::Unavailable(error) if error.unconfirmed => {
            Refusal::uncounted(StatusCode::GATEWAY_TIMEOUT, why)
        }
        // The backplane is reconnecting: a retry in a moment may well work.
        Refused::Unavailable(_) => Refusal::uncounted(StatusCode::SERVICE_UNAVAILABLE, why)
            .with_header(header::RETRY_AFTER, HeaderValue::from(2)),
    }
}

/// Reads the body, refusing it as soon as it passes `limit` bytes.
async fn read_limited<S, B>(mut body: S, limit: usize, expected: usize) -> Result<BytesMut, Refusal>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut collected = BytesMut::with_capacity(expected);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|error| {
            let why = format!("the body could not be read: {error}");
            Refusal::uncounted(StatusCode::BAD_REQUEST, why)
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
    Refusal::new(Reason::TooLarge, StatusCode::PAYLOAD_TOO_LARGE, why)
}
