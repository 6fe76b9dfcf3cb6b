//! nginx of the test's own, in front of the test's instances, configured by
//! the project's `deploy/nginx.conf` itself (linked, not copied), on free
//! ports, stopped when dropped.

use std::fmt::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// The configuration every deployment uses.
pub fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx.conf")
}

/// A running nginx.
pub struct Nginx {
    child: Child,
    folder: PathBuf,
    /// Where it serves the WebSocket demo's instances.
    pub websocket: SocketAddr,
    /// Where it serves the event-stream demo's instances.
    pub sse: SocketAddr,
}

/// What goes beside `deploy/nginx.conf`: the instances and the ports.
pub fn includes(
    websocket: &[SocketAddr],
    sse: &[SocketAddr],
    ports: (u16, u16),
) -> [(&'static str, String); 3] {
    let upstream = |name: &str, instances: &[SocketAddr]| {
        let mut text = format!("upstream {name} {{\n    least_conn;\n");
        for instance in instances {
            // One failure takes an instance out for 5 s: clients go elsewhere.
            let _ = writeln!(text, "    server {instance} max_fails=1 fail_timeout=5s;");
        }
        text.push_str("}\n");
        text
    };
    let upstreams = upstream("websocket_demo", websocket) + &upstream("sse_demo", sse);
    [
        ("upstreams.conf", upstreams),
        (
            "listen-websocket.conf",
            format!("listen 127.0.0.1:{};\n", ports.0),
        ),
        (
            "listen-sse.conf",
            format!("listen 127.0.0.1:{};\n", ports.1),
        ),
    ]
}

impl Nginx {
    /// Starts nginx in front of these instances (a list may be empty: its
    /// upstream then points nowhere).
    pub fn start(websocket: &[SocketAddr], sse: &[SocketAddr]) -> Nginx {
        let folder =
            std::env::temp_dir().join(format!("demo-nginx-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(folder.join("tmp")).expect("a folder for nginx");
        let nowhere = [SocketAddr::from(([127, 0, 0, 1], 9))];
        let pick = |list: &[SocketAddr]| {
            if list.is_empty() {
                nowhere.to_vec()
            } else {
                list.to_vec()
            }
        };
        let ports = (free_port(), free_port());
        for (name, text) in includes(&pick(websocket), &pick(sse), ports) {
            std::fs::write(folder.join(name), text).expect("an include is written");
        }
        std::os::unix::fs::symlink(config(), folder.join("nginx.conf")).expect("the link is made");
        let child = Command::new(nginx())
            .arg("-e")
            .arg("stderr")
            .arg("-p")
            .arg(&folder)
            .arg("-c")
            .arg(folder.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start nginx: {error} (apt-get install nginx)"));
        let nginx = Nginx {
            child,
            folder,
            websocket: SocketAddr::from(([127, 0, 0, 1], ports.0)),
            sse: SocketAddr::from(([127, 0, 0, 1], ports.1)),
        };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(nginx.websocket).is_err()
            || std::net::TcpStream::connect(nginx.sse).is_err()
        {
            assert!(Instant::now() < deadline, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM, so that the master stops its workers too (a killed master
        // would leave them running).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// Debian's nginx: on the path for root, in /usr/sbin for others.
pub fn nginx() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// A free port below the kernel's ephemeral range (32768 and up), where the
/// servers' port 0 and outgoing connections take theirs: nothing started
/// meanwhile takes it first.
pub fn free_port() -> u16 {
    for attempt in 0..100u64 {
        let random = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), attempt);
        let port = 20_000 + (random % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000")
}

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
        Nginx::start(&addrs, &[])
    } else {
        Nginx::start(&[], &addrs)
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
        // Let its clients find their way back before the next goes.
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
