//! Building, finding and starting the two demo servers.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::oneshot;

/// The two servers' packages.
pub const WEBSOCKET: &str = "websocket-demo";
pub const SSE: &str = "server-sent-events-demo";

/// The workspace root: the folder above this crate.
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

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
    command
        .current_dir(root())
        .args(["build", "--package", WEBSOCKET, "--package", SSE]);
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
pub fn binary(package: &str, profile: Profile) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let folder = match profile {
        Profile::Debug => "debug",
        Profile::Release => "release",
    };
    target
        .join(folder)
        .join(format!("{package}{}", std::env::consts::EXE_SUFFIX))
}

/// A server started by [`start`].
pub struct Server {
    pub package: &'static str,
    pub child: Child,
    /// Resolves to the page URL once the server says where it listens.
    pub url: oneshot::Receiver<String>,
    /// The last line the server wrote on stderr: why it stopped, if it did.
    pub last_error: Arc<Mutex<String>>,
}

/// Starts `package` with `args`, in its own process group (so a terminal's
/// Ctrl-C reaches only us, and we decide how to stop it), copying its output
/// with every line prefixed by `[prefix] `. `log_level` applies unless
/// `RUST_LOG` says otherwise.
pub fn start(
    package: &'static str,
    prefix: &'static str,
    args: &[String],
    log_level: &str,
    profile: Profile,
) -> Result<Server> {
    let path = binary(package, profile);
    let mut command = tokio::process::Command::new(&path);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", log_level);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {} (build it first?)", path.display()))?;
    let (url_sender, url) = oneshot::channel();
    let last_error = Arc::new(Mutex::new(String::new()));
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(copy_lines(
            stdout,
            tokio::io::stdout(),
            prefix,
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
        package,
        child,
        url,
        last_error,
    })
}

/// Copies lines with a prefix; reports the first `listening on <url>` line.
async fn copy_lines(
    from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    prefix: &str,
    mut url: Option<oneshot::Sender<String>>,
    last: Option<Arc<Mutex<String>>>,
) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(found) = line.split("listening on ").nth(1) {
            if let Some(sender) = url.take() {
                let _ = sender.send(found.trim().to_owned());
            }
        }
        if let Some(last) = &last {
            if let Ok(mut last) = last.lock() {
                last.clone_from(&line);
            }
        }
        let _ = to
            .write_all(format!("[{prefix}] {line}\n").as_bytes())
            .await;
        let _ = to.flush().await;
    }
}

impl Server {
    /// Asks the server to stop as Ctrl-C would, and waits for it (killing it
    /// after 10 s).
    pub async fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
        }
        let wait = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait());
        if wait.await.is_err() {
            eprintln!(
                "[xtask] {} did not stop within 10 s; killing it",
                self.package
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
