//! `POST /api`: a client's message, answered and broadcast as "Something changed".

use bytes::{Buf, BytesMut};
use futures_util::{Stream, StreamExt};
use shared::message::{Message, SOMETHING_CHANGED};
use shared::server::Context;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

pub(crate) fn route(
    context: Context,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api")
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method, headers, body| {
            let context = context.clone();
            async move {
                match receive(&context, method, &headers, body).await {
                    Ok(response) => response,
                    Err(rejected) => rejected.into_response(),
                }
            }
        })
}

/// A request `/api` turns down, with the status and the reason it answers.
struct Rejected(StatusCode, String);

impl Rejected {
    fn into_response(self) -> Response {
        let Rejected(status, why) = self;
        log::info!("Refused a POST /api ({status}): {why}");
        let mut response = warp::reply::with_status(
            warp::reply::json(&serde_json::json!({ "error": why })),
            status,
        )
        .into_response();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

async fn receive<S, B>(
    context: &Context,
    method: Method,
    headers: &HeaderMap,
    body: S,
) -> Result<Response, Rejected>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    if method != Method::POST {
        return Err(Rejected(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed here: use POST"),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Rejected(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent as Content-Type: application/json".into(),
        ));
    }
    let limit = context.config.max_message;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    let body = read_limited(body, limit).await?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        Rejected(
            StatusCode::BAD_REQUEST,
            "the body is not valid UTF-8".into(),
        )
    })?;
    let message: Message = serde_json::from_str(text).map_err(|error| {
        Rejected(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON object with a string \"message\" ({error})"),
        )
    })?;
    log::info!("Received: {}", message.to_json());
    let id = context.hub.publish(SOMETHING_CHANGED);
    log::debug!(
        "Sent {SOMETHING_CHANGED:?} as {id} to {} client(s)",
        context.hub.client_count()
    );
    Ok(warp::reply::json(&serde_json::json!({ "id": id.to_string() })).into_response())
}

/// Reads the body, refusing it as soon as it passes `limit` bytes.
async fn read_limited<S, B>(mut body: S, limit: usize) -> Result<BytesMut, Rejected>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut collected = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|error| {
            Rejected(
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

fn too_large(limit: usize) -> Rejected {
    Rejected(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over {limit} bytes"),
    )
}
