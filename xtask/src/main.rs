//! The project's tasks, run as `cargo xtask <task>` (see `.cargo/config.toml`).

/// `println!` that ignores a closed stdout (`cargo xtask ... | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod e2e;
mod serve_all;
mod servers;

use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask <task> [OPTIONS]

Tasks:
  serve-all   run both demo servers together (--help for its options)
  e2e         check both demo pages in headless Chromium
  bench       measure both servers with many clients (--help for its options)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve-all") => serve_all::run(&args[1..]),
        Some("e2e") => e2e::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        None | Some("-h" | "--help" | "help") => {
            say!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown task '{other}'\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("[xtask] error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
