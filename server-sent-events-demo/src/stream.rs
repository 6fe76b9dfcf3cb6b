//! `GET /sse`: one event stream per client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use shared::guard::Reason;
use shared::hub::Subscription;
use shared::message::{GOTCHA, Message};
use shared::server::{Conn, Context, refuse, refuse_subscription, streaming_response};
use shared::sse;
use tokio::time::{Instant, Interval, interval_at};
use warp::http::{HeaderMap, StatusCode, header};
use warp::reply::Response;
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
    context: Context,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::path!("sse"))
        .and(warp::header::headers_cloned())
        .and(warp::query::<Resume>())
        .and(warp::ext::get::<Conn>())
        .map(move |headers: HeaderMap, query: Resume, conn: Conn| {
            let origin = match cors::origin(&context, &headers) {
                Ok(origin) => origin,
                Err(why) => {
                    return refuse(&context, &conn, Reason::Origin, StatusCode::FORBIDDEN, &why);
                }
            };
            // EventSource sends the header when it reconnects; it wins over the
            // query, which only a first connection can carry.
            let header = headers
                .get("last-event-id")
                .and_then(|value| value.to_str().ok());
            let since = header.map(str::to_owned).or(query.last_event_id);
            let mut response = open(&context, since.as_deref(), conn);
            cors::allow(&mut response, origin);
            response
        })
}

fn open(context: &Context, since: Option<&str>, conn: Conn) -> Response {
    // An evicted client is cut at the socket: its body is no longer polled.
    let subscription = match context.hub.subscribe(since, conn.close.clone()) {
        Ok(subscription) => subscription,
        Err(error) => return refuse_subscription(context, &conn, error),
    };
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
        opening.push_back(sse::event(Some("missed"), None, &missed.to_json()));
    }
    let every = context.config.heartbeat;
    let client = Client {
        peer: conn.peer,
        opening,
        subscription,
        heartbeat: interval_at(Instant::now() + every, every),
    };
    let body = futures_util::stream::unfold(client, |mut client| async move {
        let chunk = client.next_chunk().await?;
        Some((chunk, client))
    });
    streaming_response(
        &[
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONNECTION, "keep-alive"),
            // Tells nginx-like proxies not to buffer the stream.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body.boxed(),
    )
}

/// The state of one open stream.
struct Client {
    peer: SocketAddr,
    opening: VecDeque<Bytes>,
    subscription: Subscription,
    heartbeat: Interval,
}

impl Client {
    /// What to write next; `None` ends the stream (shutdown or eviction).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.opening.pop_front() {
            return Some(chunk);
        }
        tokio::select! {
            event = self.subscription.next() => event.map(|event| event.sse.clone()),
            _ = self.heartbeat.tick() => Some(sse::KEEP_ALIVE),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        log::info!("Closed connection 😱 ({})", self.peer);
    }
}
