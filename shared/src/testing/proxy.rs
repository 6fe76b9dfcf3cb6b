//! nginx of the test's own in front of the test's instances (see
//! [`harness::proxy`]), and a rolling restart of instances behind it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use harness::proxy::{Nginx, config, includes, nginx};

use super::PATIENCE;

/// What one client of a rolling restart saw.
#[derive(Default)]
pub struct Track {
    /// The `seq` of every broadcast, in order of arrival.
    pub seen: std::sync::Mutex<Vec<u64>>,
    /// Missed-messages notices.
    pub missed: std::sync::atomic::AtomicU64,
    /// Connections it opened.
    pub opened: std::sync::atomic::AtomicU64,
    /// Set when the test is over: stop once this `seq` is seen.
    pub until: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Track {
    pub fn saw(&self, seq: u64) {
        self.seen.lock().unwrap().push(seq);
    }

    pub fn last(&self) -> Option<u64> {
        self.seen.lock().unwrap().last().copied()
    }

    /// Whether the client may stop: it saw the test's last broadcast.
    pub fn done(&self) -> bool {
        let until = self.until.load(std::sync::atomic::Ordering::Relaxed);
        until > 0 && self.last().is_some_and(|last| last >= until)
    }
}

/// A client of a rolling restart: connects to the proxy at the address,
/// keeps `Track` up to date, reconnects (resuming) whenever it is dropped,
/// and returns once `Track::done`.
pub type RollingClient =
    fn(SocketAddr, std::sync::Arc<Track>) -> futures_util::future::BoxFuture<'static, ()>;

/// Runs `clients` clients through nginx in front of three instances of the
/// server at `binary` sharing a Redis, while ticks keep coming, and restarts
/// the instances one after another with SIGTERM. Every client must end with
/// every id from its first on exactly once, but where it was told with a
/// missed notice that some were lost (counted and printed).
pub async fn rolling_restart(binary: &str, websocket: bool, clients: usize, client: RollingClient) {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::hostile::Binary;
    use super::redis::Redis;

    super::raise_open_files(clients as u64 * 4 + 1000);
    let redis = Redis::start();
    let url = redis.url();
    let args = |port: &str| -> Vec<String> {
        [
            "--port",
            port,
            "--redis",
            &url,
            "--interval",
            "50ms",
            "--trusted-proxy",
            "127.0.0.1",
            "--replay",
            "4096",
            "--client-queue",
            "4096",
            "--shutdown-timeout",
            "2s",
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect()
    };
    let start = |port: u16| {
        let args = args(&port.to_string());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Binary::start(binary, &args).await
        }
    };
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Some(start(0).await));
    }
    let addrs: Vec<SocketAddr> = instances
        .iter()
        .flatten()
        .map(|instance| instance.addr)
        .collect();
    let nginx = if websocket {
        Nginx::start(&addrs, &[]).await
    } else {
        Nginx::start(&[], &addrs).await
    };
    let front = if websocket {
        nginx.websocket
    } else {
        nginx.sse
    };
    let until = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tracks: Vec<Arc<Track>> = (0..clients)
        .map(|_| {
            Arc::new(Track {
                until: until.clone(),
                ..Track::default()
            })
        })
        .collect();
    let tasks: Vec<_> = tracks
        .iter()
        .map(|track| tokio::spawn(client(front, track.clone())))
        .collect();
    let deadline = Instant::now() + PATIENCE * 3;
    while tracks.iter().any(|track| track.last().is_none()) {
        assert!(
            Instant::now() < deadline,
            "every client connected and got a tick"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for (index, instance) in instances.iter_mut().enumerate() {
        let old = instance.take().expect("the instance runs");
        let port = old.addr.port();
        let status = old.terminate().await;
        assert!(status.success(), "instance {index} exited with {status}");
        // Back on its own port, where nginx looks for it.
        *instance = Some(start(port).await);
        // The restart's pace, not a wait for a state: the next goes half a
        // second later, its clients back or not. (Waiting until every client
        // is back spaces the restarts by 1 to 3 s, and then nginx's
        // `max_fails=1 fail_timeout=5s` can take all three out at once: it
        // lets one WebSocket a worker through every 5 s until one ends.)
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The last broadcast of the test: every client must reach it.
    let health = super::http(addrs[0], &super::request("GET", "/healthz", &[], "")).await;
    let health: serde_json::Value = serde_json::from_str(&health.body).expect("JSON");
    let last = super::seq_of(health["lastEventId"].as_str().expect("an id"));
    until.store(last, Ordering::Relaxed);
    for task in tasks {
        tokio::time::timeout(PATIENCE * 3, task)
            .await
            .expect("every client reaches the last broadcast")
            .expect("the client runs");
    }

    let (mut duplicates, mut gaps, mut notices, mut reconnects) = (0, 0, 0, 0);
    for track in &tracks {
        let seen = track.seen.lock().unwrap();
        for pair in seen.windows(2) {
            match pair[1].cmp(&(pair[0] + 1)) {
                std::cmp::Ordering::Less => duplicates += 1,
                std::cmp::Ordering::Greater => gaps += 1,
                std::cmp::Ordering::Equal => {}
            }
        }
        notices += track.missed.load(Ordering::Relaxed);
        reconnects += track.opened.load(Ordering::Relaxed) - 1;
    }
    println!(
        "{clients} clients through nginx, 3 instances restarted one by one: \
         {reconnects} reconnections, {duplicates} duplicates, {gaps} gaps, \
         {notices} missed notices"
    );
    assert_eq!(duplicates, 0, "no broadcast twice");
    assert!(
        gaps <= notices,
        "every gap was told: {gaps} gaps, {notices} notices"
    );
    assert!(
        reconnects as usize >= clients,
        "clients were moved between instances"
    );
    drop(nginx);
    drop(redis);
}
