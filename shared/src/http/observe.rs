//! `GET /healthz` and `GET /metrics`, the same on both servers.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use warp::http::header::CONTENT_TYPE;
use warp::{Filter, Rejection, Reply};

use crate::core::Hub;
use crate::policy::{Reason, Rejections};

pub fn routes<F: Send + Sync + 'static>(
    hub: Arc<Hub<F>>,
    rejections: Arc<Rejections>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let health_hub = hub.clone();
    let health = warp::path!("healthz").map(move || {
        let hub = &health_hub;
        warp::reply::json(&serde_json::json!({
            "status": "ok",
            "clients": hub.client_count(),
            "lastEventId": hub.last_id().map(|id| id.to_string()),
        }))
    });
    let metrics = warp::path!("metrics").map(move || {
        warp::reply::with_header(
            render(&hub, &rejections),
            CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
    });
    warp::get().and(health.or(metrics))
}

/// The Prometheus text exposition format.
fn render<F>(hub: &Hub<F>, rejections: &Rejections) -> String {
    let stats = &hub.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |value: u64| [(String::new(), value)];
    metric(
        "demo_connected_clients",
        "gauge",
        "Clients connected now.",
        &one(hub.client_count() as u64),
    );
    metric(
        "demo_broadcasts_total",
        "counter",
        "Messages broadcast to every client.",
        &one(stats.broadcasts.load(Ordering::Relaxed)),
    );
    metric(
        "demo_deliveries_total",
        "counter",
        "Broadcasts queued for one client.",
        &one(stats.deliveries.load(Ordering::Relaxed)),
    );
    metric(
        "demo_slow_clients_disconnected_total",
        "counter",
        "Clients disconnected because their queue was full.",
        &one(stats.slow_disconnects.load(Ordering::Relaxed)),
    );
    let by_reason: Vec<_> = Reason::ALL
        .iter()
        .map(|reason| {
            let labels = format!("{{reason=\"{}\"}}", reason.label());
            (labels, rejections.count(*reason))
        })
        .collect();
    metric(
        "demo_rejected_total",
        "counter",
        "Inputs refused, by reason.",
        &by_reason,
    );
    metric(
        "demo_rate_limited_total",
        "counter",
        "Messages and requests refused by the rate limit.",
        &one(rejections.rate_limited.load(Ordering::Relaxed)),
    );
    out
}
