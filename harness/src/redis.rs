//! A Redis of our own, for the tests and the tasks that need one:
//! `redis-server` on a free port of 127.0.0.1, keeping nothing on disk,
//! stopped (and its folder removed) when dropped. Never someone else's. A
//! test may stop it, freeze it and start it again on the same port to inject
//! faults.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Longest `redis-server` may take to listen.
const PATIENCE: Duration = Duration::from_secs(10);

/// A running (or stopped) `redis-server` of ours.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    /// Its working folder: nothing is written there, but never into ours.
    folder: PathBuf,
}

impl Redis {
    /// Starts `redis-server` on a free port; panics saying why (for tests).
    pub fn start() -> Redis {
        Redis::try_start().unwrap_or_else(|why| panic!("{why:#}"))
    }

    /// Starts `redis-server` on a free port; says how to install it if missing.
    pub fn try_start() -> Result<Redis> {
        // A port free now may be taken before Redis binds it: try a few.
        for _ in 0..5 {
            let port = crate::free_port()?;
            let folder =
                std::env::temp_dir().join(format!("demo-redis-{}-{port}", std::process::id()));
            let mut redis = Redis {
                child: None,
                port,
                folder,
            };
            if redis.try_spawn()? {
                return Ok(redis);
            }
        }
        bail!("redis-server did not start on any of 5 free ports")
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills it: clients see their connections drop, and everything it held
    /// is gone (it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open, and nothing is answered
    /// until [`Redis::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server: it answers everything sent meanwhile.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} redis-server failed");
    }

    /// Starts it again, empty, on the same port (for tests: panics if it
    /// cannot).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + PATIENCE;
        while !self.try_spawn().unwrap_or_else(|why| panic!("{why:#}")) {
            assert!(Instant::now() < deadline, "redis-server did not come back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one command with `redis-cli`, returning what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs (it comes with redis-server)");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Starts `redis-server` on our port: `Ok(false)` if it stopped (the
    /// port was taken after all) or did not listen in time.
    fn try_spawn(&mut self) -> Result<bool> {
        let _ = std::fs::create_dir_all(&self.folder);
        let spawned = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.folder)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "redis-server is not installed: apt-get install redis-server (bash .ci/run does)"
                )
            }
            Err(error) => return Err(error).context("cannot start redis-server"),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if TcpStream::connect(self.addr()).is_ok() {
                // Someone else's server on this port answers too: ours must
                // still be running.
                std::thread::sleep(Duration::from_millis(20));
                if child.try_wait()?.is_none() {
                    self.child = Some(child);
                    return Ok(true);
                }
            }
            if child.try_wait()?.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}
