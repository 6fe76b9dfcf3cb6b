//! The bench's side of its client processes: starting them, telling them,
//! hearing them, and making sure they end with the run.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use super::wire::{self, FromWorker, Plan, ToWorker};

/// The client processes of one run.
pub struct Workers {
    children: Vec<Worker>,
    /// What they say, with the number of the one that said it.
    heard: mpsc::UnboundedReceiver<(usize, FromWorker)>,
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

impl Workers {
    /// Starts `exe bench --worker` once a plan, and gives each its plan.
    pub async fn start(exe: &Path, plans: Vec<Plan>) -> Result<Workers> {
        let (said, heard) = mpsc::unbounded_channel();
        let mut children = Vec::new();
        for (n, plan) in plans.into_iter().enumerate() {
            let mut child = tokio::process::Command::new(exe)
                .args(["bench", "--worker"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // However the bench ends, its clients end with it: killed
                // when dropped, and exiting at the end of their stdin.
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", exe.display()))?;
            let pid = child.id().context("a client process exited at once")?;
            let stdout = child.stdout.take().context("no stdout")?;
            tokio::spawn(hear(n, stdout, said.clone()));
            let mut worker = Worker {
                stdin: child.stdin.take(),
                child,
                pid,
            };
            worker.tell(&ToWorker::Plan(plan)).await?;
            children.push(worker);
        }
        Ok(Workers { children, heard })
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.children.iter().map(|worker| worker.pid)
    }

    pub async fn tell_all(&mut self, message: &ToWorker) -> Result<()> {
        for worker in &mut self.children {
            worker.tell(message).await?;
        }
        Ok(())
    }

    /// The next thing one of them says; `None` once all have stopped talking.
    pub async fn next(&mut self) -> Option<(usize, FromWorker)> {
        self.heard.recv().await
    }

    /// Closes their stdin, which ends them, and waits (killing any still
    /// there after 10 s).
    pub async fn end(mut self) {
        for worker in &mut self.children {
            worker.stdin = None;
        }
        for worker in &mut self.children {
            let wait = tokio::time::timeout(Duration::from_secs(10), worker.child.wait());
            if wait.await.is_err() {
                eprintln!(
                    "[xtask] client process {} did not exit; killing it",
                    worker.pid
                );
                let _ = worker.child.kill().await;
            }
        }
    }
}

impl Worker {
    async fn tell(&mut self, message: &ToWorker) -> Result<()> {
        let stdin = self.stdin.as_mut().context("already told to end")?;
        stdin
            .write_all(wire::line(message).as_bytes())
            .await
            .with_context(|| format!("client process {} has stopped", self.pid))
    }
}

/// Forwards what client process `n` says, line by line (a line that is not
/// the protocol's is printed as it is), then that it has gone.
async fn hear(
    n: usize,
    stdout: impl tokio::io::AsyncRead + Unpin,
    said: mpsc::UnboundedSender<(usize, FromWorker)>,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match wire::parse::<FromWorker>(&line) {
            Ok(message) => {
                let _ = said.send((n, message));
            }
            Err(_) => say!("[clients {n}] {line}"),
        }
    }
    // It keeps its stdout open until the bench closes its stdin: before
    // that, this is the end of it.
    let error = "the client process exited".to_owned();
    let _ = said.send((n, FromWorker::Failed { error }));
}
