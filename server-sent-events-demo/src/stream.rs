//! `GET /sse`: one event stream per client.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use shared::core::Subscription;
use shared::http::{self, Conn, Context, Refusal, check_no_body, check_origin, check_since, tls};
use shared::wire::{GOTCHA, Message, missed_json, sse};
use tokio::time::{Instant, Interval, interval_at};
use tokio_util::sync::{CancellationToken, DropGuard};
use warp::http::{HeaderMap, HeaderValue, header};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::cors;

/// How long a browser waits before reconnecting a dropped stream: a time
/// picked for each stream in this range, so that after a restart the browsers
/// do not all come back in the same instant.
pub const RETRY: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(5);

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
        .and(http::conn(context.proxies.clone()))
        .map(move |headers: HeaderMap, query: Resume, conn: Conn| {
            let peer = conn.peer;
            open(&context, &headers, query, conn)
                .unwrap_or_else(|refusal| refusal.answer(&context.rejections, peer))
        })
}

fn open(
    context: &Context,
    headers: &HeaderMap,
    query: Resume,
    conn: Conn,
) -> Result<Response, Refusal> {
    check_no_body(headers)?;
    let origin = check_origin(&context.origins, headers)?;
    // EventSource sends the header when it reconnects; it wins over the
    // query, which only a first connection can carry.
    let header = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    let since = header.map(str::to_owned).or(query.last_event_id);
    check_since(since.as_deref())?;
    // How a stream that stalls is cut. Over HTTP/1.1, at the socket: its
    // writer no longer polls the body of a client that does not read. Over
    // HTTP/2, the stream alone is reset; the connection's other streams go on.
    let over_http2 = tls::stream_reset();
    let cut = over_http2.clone().unwrap_or_else(|| conn.close.clone());
    let subscription = context.hub.subscribe(since.as_deref(), cut.clone())?;
    log::info!(
        "Opened connection 🎉 ({}; {} connected)",
        conn.peer,
        context.hub.client_count()
    );
    let mut opening = VecDeque::from([
        sse::retry(retry_for(conn.peer)),
        sse::event(None, None, &Message::new(GOTCHA).to_json()),
    ]);
    if let Some(missed) = &subscription.missed {
        opening.push_back(sse::event(Some("missed"), None, &missed_json(missed)));
    }
    let every = context.config.heartbeat;
    let progress = Progress::new();
    let watching = CancellationToken::new();
    let stalled = watchdog(progress.clone(), every, conn.peer, cut, watching.clone());
    context.tasks.spawn(stalled);
    let client = Client {
        peer: conn.peer,
        opening,
        subscription,
        heartbeat: interval_at(Instant::now() + every, every),
        progress,
        _watching: watching.drop_guard(),
    };
    let mut response = warp::reply::stream(client).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        // Tells nginx-like proxies not to buffer the stream.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // HTTP/2 has no Connection header (its connections are all kept alive).
    if over_http2.is_none() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    cors::allow(&mut response, origin);
    Ok(response)
}

/// A time in [`RETRY`], different from one stream to the next.
fn retry_for(peer: SocketAddr) -> Duration {
    // std's RandomState is seeded afresh each time: random enough for jitter.
    let random = RandomState::new().hash_one(peer);
    let (low, high) = (RETRY.start().as_millis(), RETRY.end().as_millis());
    Duration::from_millis((low + u128::from(random) % (high - low + 1)) as u64)
}

/// When the stream last handed its writer a chunk. The writer (hyper, or
/// `direct` on plain connections) polls the body only when the socket takes
/// more, so a client that stopped reading stops the heartbeat too: the
/// watchdog, outside the body, notices.
struct Progress {
    started: Instant,
    /// Milliseconds after `started`.
    last: AtomicU64,
}

impl Progress {
    fn new() -> Arc<Progress> {
        Arc::new(Progress {
            started: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn made(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    fn stalled_for(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// Cuts a stream that took nothing for two heartbeats (`cut`: its connection,
/// or over HTTP/2 the stream alone): its client neither reads nor lets the
/// heartbeat through. Ends with the stream.
async fn watchdog(
    progress: Arc<Progress>,
    every: Duration,
    peer: SocketAddr,
    cut: CancellationToken,
    done: CancellationToken,
) {
    let mut checks = interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = checks.tick() => {}
            () = done.cancelled() => return,
        }
        if progress.stalled_for() > 2 * every {
            log::info!("Closing {peer}: it has read nothing for two heartbeats");
            cut.cancel();
            return;
        }
    }
}

/// One open stream, written as it is polled: the opening, then broadcasts and
/// heartbeats. The chunks are the hub's shared bytes, never copied.
struct Client {
    peer: SocketAddr,
    opening: VecDeque<Bytes>,
    subscription: Subscription,
    heartbeat: Interval,
    progress: Arc<Progress>,
    /// Stops the watchdog when the stream ends.
    _watching: DropGuard,
}

impl futures_util::Stream for Client {
    type Item = Result<Bytes, std::convert::Infallible>;

    /// Ends (`None`) at shutdown or eviction, when the hub lets go.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.progress.made();
        if let Some(chunk) = self.opening.pop_front() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        if let Poll::Ready(event) = self.subscription.poll_next(cx) {
            return Poll::Ready(event.map(|event| Ok(event.frame.clone())));
        }
        match self.heartbeat.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(sse::PING))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        log::info!("Closed connection 😱 ({})", self.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stream_gets_its_own_retry_within_the_range() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let retries: std::collections::HashSet<_> = (0..50).map(|_| retry_for(peer)).collect();
        assert!(
            retries.iter().all(|retry| RETRY.contains(retry)),
            "{retries:?}"
        );
        assert!(retries.len() > 10, "spread out: {retries:?}");
    }
}
