//! `GET /sse`: one event stream per client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use shared::core::Subscription;
use shared::http::{Conn, Context, Refusal, check_origin};
use shared::wire::{GOTCHA, Message, missed_json, sse};
use tokio::time::{Instant, Interval, interval_at};
use warp::http::{HeaderMap, HeaderValue, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::cors;

/// How long a browser waits before reconnecting a dropped stream.
pub const RETRY: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct Resume {
    /// For a first connection that resumes: `/sse?lastEventId=...`.
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

pub(crate) fn route(
    context: Context<Bytes>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::path!("sse"))
        .and(warp::header::headers_cloned())
        .and(warp::query::<Resume>())
        .and(warp::ext::get::<Conn>())
        .map(move |headers: HeaderMap, query: Resume, conn: Conn| {
            let peer = conn.peer;
            open(&context, &headers, query, conn)
                .unwrap_or_else(|refusal| refusal.answer(&context.rejections, peer))
        })
}

fn open(
    context: &Context<Bytes>,
    headers: &HeaderMap,
    query: Resume,
    conn: Conn,
) -> Result<Response, Refusal> {
    let origin = check_origin(&context.origins, headers)?;
    // EventSource sends the header when it reconnects; it wins over the
    // query, which only a first connection can carry.
    let header = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    let since = header.map(str::to_owned).or(query.last_event_id);
    // An evicted client is cut at the socket: its body is no longer polled.
    let subscription = context.hub.subscribe(since.as_deref(), conn.close)?;
    log::info!(
        "Opened connection 🎉 ({}; {} connected)",
        conn.peer,
        context.hub.client_count()
    );
    let mut opening = VecDeque::from([
        sse::retry(RETRY),
        sse::event(None, None, &Message::new(GOTCHA).to_json()),
    ]);
    if let Some(missed) = &subscription.missed {
        opening.push_back(sse::event(Some("missed"), None, &missed_json(missed)));
    }
    let every = context.config.heartbeat;
    let client = Client {
        peer: conn.peer,
        opening,
        subscription,
        heartbeat: interval_at(Instant::now() + every, every),
    };
    let mut response = warp::reply::stream(client).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONNECTION, "keep-alive"),
        // Tells nginx-like proxies not to buffer the stream.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    cors::allow(&mut response, origin);
    Ok(response)
}

/// One open stream, written as it is polled: the opening, then broadcasts and
/// heartbeats. The chunks are the hub's shared bytes, never copied.
struct Client {
    peer: SocketAddr,
    opening: VecDeque<Bytes>,
    subscription: Subscription<Bytes>,
    heartbeat: Interval,
}

impl futures_util::Stream for Client {
    type Item = Result<Bytes, std::convert::Infallible>;

    /// Ends (`None`) at shutdown or eviction, when the hub lets go.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if let Some(chunk) = self.opening.pop_front() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        if let Poll::Ready(event) = self.subscription.poll_next(cx) {
            return Poll::Ready(event.map(|event| Ok(event.frame.clone())));
        }
        match self.heartbeat.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(sse::KEEP_ALIVE))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        log::info!("Closed connection 😱 ({})", self.peer);
    }
}
