//! A Redis of our own for the tasks and tests that need one: `redis-server`
//! on a free port of 127.0.0.1, keeping nothing on disk, killed when dropped.
//! Never someone else's: `tests/serve_all.rs` compiles this file too.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running `redis-server` of ours.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts `redis-server` on a free port; says how to install it if missing.
    pub fn start() -> Result<Redis> {
        // A port free now may be taken before Redis binds it: try a few.
        for _ in 0..5 {
            if let Some(redis) = Redis::try_start(free_port()?)? {
                return Ok(redis);
            }
        }
        bail!("redis-server did not start on any of 5 free ports")
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn try_start(port: u16) -> Result<Option<Redis>> {
        let spawned = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            // Nothing is written, but never into the current folder.
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                bail!("redis-server is not installed: apt-get install redis-server")
            }
            Err(error) => return Err(error).context("cannot start redis-server"),
        };
        // From here on, dropping `redis` kills it.
        let mut redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis.child.try_wait()?.is_some() {
                return Ok(None);
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Someone else's server on this port would answer too: ours
                // must still be running.
                std::thread::sleep(Duration::from_millis(20));
                return Ok(redis.child.try_wait()?.is_none().then_some(redis));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(None)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port below the kernel's ephemeral range (32768 and up), where
/// port 0 and outgoing connections take theirs.
fn free_port() -> Result<u16> {
    for attempt in 0..100u64 {
        let random = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), attempt);
        let port = 20_000 + (random % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port between 20000 and 32000")
}
