//! nginx in front of the demos' instances, configured by the project's
//! `deploy/nginx.conf` itself: linked, never copied. That file includes three
//! files from its own folder, which say where the instances are and where
//! nginx listens; they are written into a folder of ours, beside the link.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt};
use tokio::process::Child;

/// The configuration every deployment and test uses.
pub fn config() -> PathBuf {
    crate::root().join("deploy").join("nginx.conf")
}

/// Debian's nginx: on the path for root, in /usr/sbin for others.
pub fn nginx() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// What goes beside `deploy/nginx.conf`: where nginx listens for each demo
/// (WebSocket, then SSE), and where the instances are.
pub fn includes(
    listen: [SocketAddr; 2],
    websocket: &[SocketAddr],
    sse: &[SocketAddr],
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
    [
        (
            "upstreams.conf",
            upstream("websocket_demo", websocket) + &upstream("sse_demo", sse),
        ),
        ("listen-websocket.conf", format!("listen {};\n", listen[0])),
        ("listen-sse.conf", format!("listen {};\n", listen[1])),
    ]
}

/// A running nginx of ours.
pub struct Nginx {
    child: Child,
    folder: PathBuf,
    /// Where it serves the WebSocket demo's instances.
    pub websocket: SocketAddr,
    /// Where it serves the Server-Sent Events demo's instances.
    pub sse: SocketAddr,
    /// Why it stopped, if it did: its first fatal error, or its last line.
    why: Arc<Mutex<String>>,
}

impl Nginx {
    /// For tests: nginx on two free ports of 127.0.0.1 in front of these
    /// instances, answering when this returns; panics saying why otherwise.
    /// A list may be empty: its upstream then points nowhere.
    pub async fn start(websocket: &[SocketAddr], sse: &[SocketAddr]) -> Nginx {
        let started = async {
            let free = || -> Result<SocketAddr> {
                Ok(SocketAddr::from(([127, 0, 0, 1], crate::free_port()?)))
            };
            let mut nginx = Nginx::spawn([free()?, free()?], websocket, sse)?;
            nginx.listening(Duration::from_secs(10)).await?;
            Ok::<_, anyhow::Error>(nginx)
        };
        started.await.unwrap_or_else(|why| panic!("{why:#}"))
    }

    /// Starts nginx listening on `listen` (WebSocket, then SSE; no port 0) in
    /// front of these instances, in its own process group (a terminal's
    /// Ctrl-C reaches only us), its stderr copied with `[nginx] ` before each
    /// line. It may not listen yet: see [`Nginx::listening`].
    pub fn spawn(
        listen: [SocketAddr; 2],
        websocket: &[SocketAddr],
        sse: &[SocketAddr],
    ) -> Result<Nginx> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let folder = std::env::temp_dir().join(format!(
            "demo-nginx-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&folder);
        let nowhere = [SocketAddr::from(([127, 0, 0, 1], 9))];
        let or_nowhere = |list: &[SocketAddr]| {
            if list.is_empty() {
                nowhere.to_vec()
            } else {
                list.to_vec()
            }
        };
        let written = (|| {
            std::fs::create_dir_all(folder.join("tmp"))?;
            for (name, text) in includes(listen, &or_nowhere(websocket), &or_nowhere(sse)) {
                std::fs::write(folder.join(name), text)?;
            }
            std::os::unix::fs::symlink(config(), folder.join("nginx.conf"))
        })();
        if let Err(error) = written {
            let _ = std::fs::remove_dir_all(&folder);
            return Err(error).with_context(|| format!("cannot prepare {}", folder.display()));
        }
        let spawned = tokio::process::Command::new(nginx())
            .arg("-e")
            .arg("stderr")
            .arg("-p")
            .arg(&folder)
            .arg("-c")
            .arg(folder.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&folder);
                if error.kind() == std::io::ErrorKind::NotFound {
                    bail!("nginx is not installed: apt-get install nginx (bash .ci/run does)");
                }
                return Err(error).context("cannot start nginx");
            }
        };
        let why = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(copy_errors(stderr, why.clone()));
        }
        Ok(Nginx {
            child,
            folder,
            websocket: listen[0],
            sse: listen[1],
            why,
        })
    }

    /// Waits until nginx answers on both ports (its own answer, not another
    /// program's on the same port); an error if it stops first.
    pub async fn listening(&mut self, patience: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let its last lines arrive before quoting them.
                tokio::time::sleep(Duration::from_millis(50)).await;
                bail!("nginx stopped by itself ({status}){}", self.why());
            }
            let mut answered = true;
            for addr in [self.websocket, self.sse] {
                let loopback = reachable(addr);
                let answer = tokio::time::timeout(
                    Duration::from_secs(2),
                    crate::http::get(loopback, "/healthz"),
                );
                let ours = matches!(answer.await, Ok(Ok(answer))
                    if answer.header("server").is_some_and(|server| server.starts_with("nginx")));
                answered &= ours;
            }
            if answered {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "nginx did not answer on {} and {} within {patience:?}",
                    self.websocket,
                    self.sse
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resolves when nginx exits, with how.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// `: <its first fatal error>` (or its last line), or nothing.
    pub fn why(&self) -> String {
        let last = self.why.lock().map(|line| line.clone()).unwrap_or_default();
        if last.is_empty() {
            last
        } else {
            format!(": {last}")
        }
    }

    /// Stops nginx with SIGTERM, so that its master stops its workers too (a
    /// killed master leaves them running); kills the whole group after 10 s.
    pub async fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("-TERM");
            let wait = tokio::time::timeout(Duration::from_secs(10), self.child.wait());
            if wait.await.is_err() {
                eprintln!("[nginx] did not stop within 10 s; killing it");
                self.signal_group("-KILL");
                let _ = self.child.wait().await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.folder);
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    /// Signals its process group: the master and its workers.
    fn signal_group(&self, signal: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args([signal, "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// Where a listener on `addr` is reached from this machine: listening on
/// every address, on the loopback one.
pub fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// Copies nginx's stderr with `[nginx] ` before each line, and keeps why it
/// stopped: its first fatal error, which its last line may only echo
/// ("still could not bind()"), without the time and process.
async fn copy_errors(from: impl AsyncRead + Unpin, why: Arc<Mutex<String>>) {
    let mut lines = tokio::io::BufReader::new(from).lines();
    let mut fatal = false;
    let mut to = tokio::io::stderr();
    while let Ok(Some(line)) = lines.next_line().await {
        let is_fatal = line.contains("[emerg]") || line.contains("[alert]");
        if !fatal && let Ok(mut why) = why.lock() {
            // `2026/01/02 03:04:05 [emerg] 12#12: bind() to ... failed`
            let message = line
                .split_once("#")
                .and_then(|(_, rest)| rest.split_once(": "));
            let message = message.map_or(line.as_str(), |(_, message)| message);
            message.clone_into(&mut why);
            fatal = is_fatal;
        }
        let _ = to.write_all(format!("[nginx] {line}\n").as_bytes()).await;
        let _ = to.flush().await;
    }
}

impl Drop for Nginx {
    /// Stopped without [`Nginx::stop`] (an error, a panic, the end of a
    /// test): TERM it and wait a little, without a runtime.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("-TERM");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                self.signal_group("-KILL");
            }
        }
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}
