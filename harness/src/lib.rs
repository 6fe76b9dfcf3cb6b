//! What the servers' tests (through `shared::testing`) and the project's
//! tasks (`xtask`) start and talk to, written once:
//!
//! - [`redis`]: a `redis-server` of their own, on a free port;
//! - [`proxy`]: nginx configured by `deploy/nginx.conf`, in front of instances;
//! - [`tls`]: a self-signed certificate for localhost, and clients that trust it;
//! - [`http`]: raw HTTP/1.1, any request, a malformed one too;
//! - [`free_port`], and where the workspace and its build are.
//!
//! No server code (warp, hyper): xtask builds without the servers' stack.
//! What a task may report fails with an `anyhow` error; what only tests use
//! panics with a sentence saying what went wrong, as tests do.

pub mod http;
pub mod proxy;
pub mod redis;
pub mod tls;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The workspace's root: the folder above this crate.
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// Where cargo builds: `target/` unless `CARGO_TARGET_DIR` says otherwise.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// A port free now on 127.0.0.1, for a program whose port must be known
/// before it starts. Taken below the kernel's range of ephemeral ports (32768
/// and up), where port 0 and outgoing connections take theirs, so that
/// nothing started meanwhile takes it first.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = fastrand::u16(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port between 20000 and 32000")
}
