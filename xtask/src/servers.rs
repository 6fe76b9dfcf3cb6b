//! The two demo servers: what they are, and building, finding and starting
//! them. nginx in front of their instances and the certificate they serve
//! https:// with come from the `harness` crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use harness::proxy::Nginx;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::oneshot;

/// How a demo's clients listen and talk back: over one WebSocket both ways, or
/// an event stream from `/sse` and `POST /api` back. Also `bench --only`'s value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    #[value(name = "websocket")]
    WebSocket,
    Sse,
}

/// One demo server, as the tasks know it.
#[derive(Debug)]
pub struct Demo {
    /// Its package, which is also its binary's name.
    pub package: &'static str,
    /// What its output lines start with, in brackets.
    pub prefix: &'static str,
    /// How reports name it.
    pub name: &'static str,
    pub kind: Kind,
    /// Its port unless told otherwise.
    pub default_port: u16,
}

/// Both demos; every task goes through this table rather than naming packages.
pub static DEMOS: [Demo; 2] = [
    Demo {
        package: "websocket-demo",
        prefix: "ws",
        name: "WebSocket",
        kind: Kind::WebSocket,
        default_port: 8081,
    },
    Demo {
        package: "server-sent-events-demo",
        prefix: "sse",
        name: "SSE",
        kind: Kind::Sse,
        default_port: 8080,
    },
];

impl Kind {
    /// The demo of this kind.
    pub fn demo(self) -> &'static Demo {
        DEMOS
            .iter()
            .find(|demo| demo.kind == self)
            .expect("DEMOS has a demo of every kind")
    }
}

pub use harness::{free_port, root, target_dir};

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Which build of the servers to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

/// `cargo build` of both servers, once.
pub fn build(profile: Profile) -> Result<()> {
    let mut command = Command::new(cargo());
    command.current_dir(root()).arg("build");
    for demo in &DEMOS {
        command.args(["--package", demo.package]);
    }
    if profile == Profile::Release {
        command.arg("--release");
    }
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("building the servers failed ({status})");
    }
    Ok(())
}

/// Where `cargo build` put a server's binary.
pub fn binary(demo: &Demo, profile: Profile) -> PathBuf {
    let target = target_dir();
    let folder = match profile {
        Profile::Debug => "debug",
        Profile::Release => "release",
    };
    target
        .join(folder)
        .join(format!("{}{}", demo.package, std::env::consts::EXE_SUFFIX))
}

/// Which instance of a demo a server is: the only one, or one of several
/// sharing a Redis, numbered from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    Only,
    Nth(usize),
}

impl Instance {
    /// What its output lines start with, in brackets: `ws`, or `ws2`.
    pub fn prefix(self, demo: &Demo) -> String {
        match self {
            Instance::Only => demo.prefix.to_owned(),
            Instance::Nth(n) => format!("{}{n}", demo.prefix),
        }
    }

    /// How messages name it: `websocket-demo`, or `websocket-demo 2`.
    pub fn name(self, demo: &Demo) -> String {
        match self {
            Instance::Only => demo.package.to_owned(),
            Instance::Nth(n) => format!("{} {n}", demo.package),
        }
    }
}

/// A server started by [`start`].
pub struct Server {
    pub demo: &'static Demo,
    pub instance: Instance,
    pub child: Child,
    /// Resolves to the page URL once the server says where it listens.
    pub url: oneshot::Receiver<String>,
    /// The last line the server wrote on stderr: why it stopped, if it did.
    pub last_error: Arc<Mutex<String>>,
}

/// Starts `demo` with `args`, in its own process group (so a terminal's
/// Ctrl-C reaches only us, and we decide how to stop it), copying its output
/// with every line prefixed by `[ws] ` or `[sse] ` (`[ws2] `... for one of
/// several instances). `log_level` applies unless `RUST_LOG` says otherwise.
pub fn start(
    demo: &'static Demo,
    instance: Instance,
    args: &[String],
    log_level: &str,
    profile: Profile,
) -> Result<Server> {
    let path = binary(demo, profile);
    let mut command = tokio::process::Command::new(&path);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        // Only a task's --redis decides: the lone servers of e2e or bench
        // must not share a Redis named in the environment.
        .env_remove("DEMO_REDIS_URL");
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", log_level);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {} (build it first?)", path.display()))?;
    let (url_sender, url) = oneshot::channel();
    let last_error = Arc::new(Mutex::new(String::new()));
    let prefix = instance.prefix(demo);
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(copy_lines(
            stdout,
            tokio::io::stdout(),
            prefix.clone(),
            Some(url_sender),
            None,
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(copy_lines(
            stderr,
            tokio::io::stderr(),
            prefix,
            None,
            Some(last_error.clone()),
        ));
    }
    Ok(Server {
        demo,
        instance,
        child,
        url,
        last_error,
    })
}

/// Copies lines with a prefix; reports the first `listening on <url>` line.
async fn copy_lines(
    from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    prefix: String,
    mut url: Option<oneshot::Sender<String>>,
    last: Option<Arc<Mutex<String>>>,
) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(found) = line.split("listening on ").nth(1)
            && let Some(sender) = url.take()
        {
            let _ = sender.send(found.trim().to_owned());
        }
        if let Some(last) = &last
            && let Ok(mut last) = last.lock()
        {
            last.clone_from(&line);
        }
        let _ = to
            .write_all(format!("[{prefix}] {line}\n").as_bytes())
            .await;
        let _ = to.flush().await;
    }
}

impl Server {
    /// How messages name it: `websocket-demo`, or `websocket-demo 2`.
    pub fn name(&self) -> String {
        self.instance.name(self.demo)
    }

    /// Its page URL, once it listens; an error if it stops first or takes
    /// longer than `patience`.
    pub async fn listening(&mut self, patience: Duration) -> Result<String> {
        let name = self.name();
        tokio::time::timeout(patience, &mut self.url)
            .await
            .map_err(|_| anyhow!("{name} did not start within {patience:?}"))?
            .map_err(|_| anyhow!("{name} stopped before listening: {}", self.last_error()))
    }

    /// Sends the server `signal` (`INT`, `STOP`, `CONT`...).
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.child.id().context("the server has exited")?;
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// Asks the server to stop as Ctrl-C would, and waits for it (killing it
    /// after 10 s).
    pub async fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // A frozen server would never see the INT.
        let _ = self.signal("CONT");
        let _ = self.signal("INT");
        let wait = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait());
        if wait.await.is_err() {
            eprintln!(
                "[xtask] {} did not stop within 10 s; killing it",
                self.name()
            );
            let _ = self.child.kill().await;
        }
    }

    /// The last line it wrote on stderr.
    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .map(|line| line.clone())
            .unwrap_or_default()
    }
}

/// How an exit is told: `exit status: 1`.
pub fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("unknown status ({error})"),
    }
}

/// A server's page URL over TLS (the servers say `https://` themselves; this
/// keeps a URL given as `http://` right).
pub fn https(url: &str) -> String {
    match url.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => url.to_owned(),
    }
}

/// The address in a page URL such as `http://127.0.0.1:8081/`.
pub fn addr(url: &str) -> Result<SocketAddr> {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("not an address: {url}"))
}

/// Waits until the server at `url` answers `/healthz` with 200. With
/// `--redis`, that is once it has reached Redis: it cannot publish before.
pub async fn healthy(url: &str, patience: Duration) -> Result<()> {
    let addr = addr(url)?;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        // A frozen server must not hang the wait.
        let answer =
            tokio::time::timeout(Duration::from_secs(2), harness::http::get(addr, "/healthz"))
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("no answer within 2 s")));
        let why = match answer {
            Ok(answer) if answer.status == 200 => return Ok(()),
            Ok(answer) => answer.body,
            Err(error) => error.to_string(),
        };
        if tokio::time::Instant::now() > deadline {
            bail!("{url} was not healthy within {patience:?}: {why}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page URL of `kind` through `nginx`.
pub fn through(nginx: &Nginx, kind: Kind) -> String {
    let addr = match kind {
        Kind::WebSocket => nginx.websocket,
        Kind::Sse => nginx.sse,
    };
    format!("http://{}/", harness::proxy::reachable(addr))
}
