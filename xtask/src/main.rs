//! The project's tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).
//!
//! `flags.rs` declares every task's options; `servers.rs` knows the two demos
//! and starts them; each task has its own file: `serve_all.rs`, `e2e.rs`
//! (with `e2e/cdp.rs`, a small DevTools client) and `bench.rs`. What the
//! servers' tests start too (a Redis and an nginx of our own, certificates)
//! comes from the `harness` crate.

/// `println!` that ignores a closed stdout (`cargo xtask ... | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod e2e;
mod flags;
mod serve_all;
mod servers;

use std::process::ExitCode;

use flags::{Task, Xtask};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("[xtask] error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let Some(xtask) = Xtask::from_env()? else {
        return Ok(());
    };
    match xtask.task {
        Task::ServeAll(flags) => flags.run(),
        Task::E2e(flags) => flags.run(),
        Task::Bench(flags) => flags.run(),
    }
}
