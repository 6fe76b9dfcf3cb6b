//! `GET /healthz` and `GET /metrics`, the same on both servers.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use warp::http::StatusCode;
use warp::http::header::CONTENT_TYPE;
use warp::{Filter, Rejection, Reply};

use super::tasks::Tasks;
use crate::core::{DELIVERY_BUCKETS, Hub, Publisher};
use crate::policy::{Reason, Rejections};

pub fn routes(
    hub: Arc<Hub>,
    publisher: Arc<dyn Publisher>,
    rejections: Arc<Rejections>,
    tasks: Tasks,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let (health_hub, health_publisher) = (hub.clone(), publisher.clone());
    let health = warp::path!("healthz").map(move || health(&health_hub, &*health_publisher));
    let metrics = warp::path!("metrics").map(move || {
        warp::reply::with_header(
            render(&hub, &*publisher, &rejections, &tasks),
            CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
    });
    warp::get().and(health.or(metrics))
}

/// 200 with the clients and the newest id; 503 while a backplane the server
/// needs is out of reach, saying why.
fn health(hub: &Hub, publisher: &dyn Publisher) -> warp::reply::Response {
    let mut body = serde_json::json!({
        "status": "ok",
        "clients": hub.client_count(),
        "lastEventId": hub.last_id().map(|id| id.to_string()),
    });
    let mut status = StatusCode::OK;
    if let Some(backplane) = publisher.backplane() {
        let up = backplane.up();
        body["backplane"] = serde_json::json!({ "up": up, "detail": backplane.detail() });
        if !up {
            body["status"] = "degraded".into();
            status = StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// The Prometheus text exposition format.
fn render(hub: &Hub, publisher: &dyn Publisher, rejections: &Rejections, tasks: &Tasks) -> String {
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
    metric(
        "demo_panics_total",
        "counter",
        "Connections and tasks that panicked (a bug: each is logged at error level).",
        &one(tasks.panics()),
    );
    if let Some(backplane) = publisher.backplane() {
        metric(
            "demo_backplane_up",
            "gauge",
            "1 while the backplane (Redis) is reachable.",
            &one(u64::from(backplane.up())),
        );
        metric(
            "demo_backplane_reconnects_total",
            "counter",
            "Times the backplane was reached again after being lost.",
            &one(backplane.reconnects),
        );
        metric(
            "demo_backplane_ticks_total",
            "counter",
            "Ticks this instance claimed, and so broadcast.",
            &one(backplane.ticks),
        );
        metric(
            "demo_backplane_publish_errors_total",
            "counter",
            "Broadcasts the backplane could not take.",
            &one(backplane.publish_errors),
        );
        let skipped: Vec<_> = backplane
            .skipped
            .iter()
            .map(|(reason, count)| (format!("{{reason=\"{reason}\"}}"), *count))
            .collect();
        metric(
            "demo_backplane_skipped_entries_total",
            "counter",
            "Stream entries that were no broadcast (another writer's), skipped, by reason.",
            &skipped,
        );
        metric(
            "demo_backplane_losses_total",
            "counter",
            "Times broadcasts went before this instance read them (every client let go, to resume and be told).",
            &one(backplane.losses),
        );
        let name = "demo_backplane_delivery_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From publishing to delivery on this instance."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, count) in DELIVERY_BUCKETS.iter().zip(&backplane.delivery_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let count = backplane.delivery_count;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", backplane.delivery_seconds);
        let _ = writeln!(out, "{name}_count {count}");
    }
    out
}
