//! `cargo xtask bench`: how each server does with many clients, in numbers.
//!
//! Starts a release build of a server, connects N clients over loopback,
//! broadcasts M messages through it, and prints: how fast the clients
//! connected, the server's memory per connection, deliveries per second, the
//! latency from send to receipt at each client (percentiles), what became
//! of every message (broadcast, or refused or cut off and why; the run fails
//! unless every client got every one), and what held the run back. Clients
//! and server share this machine's cores, so the numbers are a floor, not a
//! ceiling; `--pin` gives the servers core 0 and the clients core 1.
//!
//! With `--redis`, the clients are spread over `--instances` servers sharing
//! that Redis (memory and CPU are their sums; Redis's own are not counted),
//! and the same run on one server with the in-process hub follows, for the
//! latency the backplane adds.
//!
//! The map: `phases.rs` runs one measurement, phase by phase. The clients
//! live in client processes (`worker.rs`, this program run as
//! `bench --worker`), as many as their open-file limit needs; `workers.rs`
//! starts and hears them, `wire.rs` is what they say to each other, and
//! `clients.rs` how a client talks to a server; `sender.rs` sends the
//! messages and accounts for each. `report.rs` prints the
//! numbers and writes `--json`; `charts.rs` draws them (`--report`,
//! `--compare`) with `svg.rs`; `histogram.rs` keeps the latencies,
//! `system.rs` reads `/proc` and pins processes, `tls.rs` is `--tls`'s
//! clients' side.

mod accounting;
mod charts;
mod clients;
mod histogram;
mod phases;
mod report;
mod sender;
mod svg;
mod system;
mod tls;
mod wire;
mod worker;
mod workers;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use harness::tls::Certificate;

use crate::flags;
use crate::servers::{self, DEMOS, Demo};
use phases::{Env, Setup};
use report::{Figures, Numbers, Record};

/// How long any phase may take before the benchmark gives up (connecting gets
/// a second more for every thousand clients).
const LIMIT: Duration = Duration::from_secs(120);

/// With `--pin`: the servers' core, and the clients' (and the bench's).
const SERVER_CORE: usize = 0;
const CLIENT_CORE: usize = 1;

/// Descriptors a server keeps for itself: it lowers its most clients to its
/// open-file limit less these (`shared/src/app.rs`), and the bench's sender
/// and health checks take a few more.
const SERVER_SPARE: u64 = 64 + 8;

/// Descriptors a client process keeps for other things than its clients.
const CLIENT_SPARE: u64 = 2000;

impl flags::Bench {
    pub fn run(self) -> Result<()> {
        if self.worker {
            return worker::run();
        }
        if !self.compare.is_empty() {
            let dir = self
                .report
                .as_deref()
                .context("--compare needs --report DIR")?;
            return charts::compare(&self.compare, dir);
        }
        let open_files = system::open_file_limit()?;
        let server_capacity = open_files.saturating_sub(SERVER_SPARE) as usize;
        let per_server = self.clients.div_ceil(self.instances);
        if per_server > server_capacity {
            bail!(
                "{} clients over {} server{} are {per_server} a server, more than the \
                 {server_capacity} one can hold with an open file limit of {open_files}: \
                 use --instances {} or more (with --redis), or fewer --clients",
                self.clients,
                self.instances,
                if self.instances == 1 { "" } else { "s" },
                self.clients.div_ceil(server_capacity.max(1))
            );
        }
        if self.clients > clients::MOST_CLIENTS {
            bail!(
                "at most {} clients: 5000 from each of 127.0.0.1 to 127.0.0.254",
                clients::MOST_CLIENTS
            );
        }
        if !self.no_build {
            build()?;
        }
        let client_exe = servers::target_dir()
            .join("release")
            .join(format!("xtask{}", std::env::consts::EXE_SUFFIX));
        if !client_exe.exists() {
            bail!(
                "no release build of xtask at {} for the clients: run without --no-build",
                client_exe.display()
            );
        }
        let cores = system::cores();
        if self.pin {
            if cores < 2 {
                bail!("--pin needs two cores, and this process may use {cores}");
            }
            // Before the runtime starts: its threads, the client processes
            // and the servers inherit it (the servers move to their core).
            system::pin(std::process::id(), CLIENT_CORE)?;
        }
        let certificate = match self.tls {
            true => Some(Certificate::generated()?),
            false => None,
        };
        let client_process_capacity = open_files.saturating_sub(CLIENT_SPARE).max(1) as usize;
        let env = Env {
            client_exe,
            dialer: clients::Dialer::new(certificate.as_ref().map(|c| c.cert.as_path()))?,
            certificate,
            pinned: self.pin,
            cores,
            client_cores: if self.pin { 1 } else { cores },
            client_process_capacity,
            server_capacity,
        };
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        let chosen = |demo: &&Demo| self.only.is_none_or(|kind| demo.kind == kind);
        let mut runs = Vec::new();
        for demo in DEMOS.iter().filter(chosen) {
            runtime.block_on(async {
                // Ctrl-C drops the run, and with it its servers and client
                // processes (killed when dropped); without this, the bench
                // would die at once and leave the servers running.
                tokio::select! {
                    benched = bench(demo, &self, &env, &mut runs) => benched,
                    _ = tokio::signal::ctrl_c() => bail!("interrupted"),
                }
            })?;
        }
        let (memory_bytes, _) = system::memory();
        let record = Record {
            command: command(),
            unix_time: system::unix_micros() / 1_000_000,
            cores: env.cores,
            memory_bytes,
            open_file_limit: open_files,
            runs: &runs,
        };
        if let Some(path) = &self.json {
            write_json(path, &record)?;
        }
        if let Some(dir) = &self.report {
            charts::report(dir, &record)?;
        }
        let failures: Vec<String> = runs.iter().filter_map(Figures::failure).collect();
        if !failures.is_empty() {
            bail!(
                "{} (see above): every client should get every message",
                failures.join("; ")
            );
        }
        Ok(())
    }
}

/// The servers, and this program for the client processes: release builds,
/// in one cargo command.
fn build() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .current_dir(servers::root())
        .args(["build", "--release", "--package", "xtask"]);
    for demo in &DEMOS {
        command.args(["--package", demo.package]);
    }
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("building the servers and the clients failed ({status})");
    }
    Ok(())
}

/// One server's benchmark: alone, or over instances sharing Redis and then
/// alone again, to show what the backplane adds. Adds each run's figures to
/// `runs`.
async fn bench(
    demo: &'static Demo,
    flags: &flags::Bench,
    env: &Env,
    runs: &mut Vec<Figures>,
) -> Result<()> {
    let alone = Setup {
        instances: 1,
        redis: None,
    };
    let name = match flags.tls {
        true => format!("{} over TLS", demo.package),
        false => demo.package.to_owned(),
    };
    let mut run = |setup: &str, title: String, numbers: Numbers| {
        numbers.print(&title);
        runs.push(numbers.figures(demo.package, setup, flags.tls));
    };
    let Some(redis) = flags.redis.as_deref() else {
        let numbers = phases::measure(demo, flags, alone, env).await?;
        run("alone", format!("{name}:"), numbers);
        return Ok(());
    };
    let shared = Setup {
        instances: flags.instances,
        redis: Some(redis),
    };
    let instances = match flags.instances {
        1 => "one instance".to_owned(),
        count => format!("{count} instances"),
    };
    let through_redis = phases::measure(demo, flags, shared, env).await?;
    run(
        &format!("{instances} through Redis"),
        format!("{name}, {instances} through Redis:"),
        through_redis,
    );
    if flags.clients > env.server_capacity {
        say!(
            "  (no run with the in-process hub to compare: {} clients do not fit one \
             server, which holds {})",
            flags.clients,
            env.server_capacity
        );
        return Ok(());
    }
    let in_process = phases::measure(demo, flags, alone, env).await?;
    run(
        "in-process hub",
        format!("{name}, one instance with the in-process hub:"),
        in_process,
    );
    let [.., through_redis, in_process] = runs.as_slice() else {
        unreachable!("two runs were just added");
    };
    let added = |pick: fn(&report::Latency) -> f64| {
        pick(&through_redis.latency_ms) - pick(&in_process.latency_ms)
    };
    // Below zero when spreading the clients over instances saved more than
    // the trip through Redis cost.
    say!(
        "  latency the backplane adds at {} clients ({instances} through Redis, \
         less one in-process): p50 {:+.2} ms, p99 {:+.2} ms",
        flags.clients,
        added(|latency| latency.p50),
        added(|latency| latency.p99)
    );
    Ok(())
}

/// This command, as typed: `cargo xtask bench ...`.
fn command() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|arg| match arg.contains(char::is_whitespace) {
            true => format!("'{arg}'"),
            false => arg,
        })
        .collect();
    format!("cargo xtask {}", args.join(" "))
}

fn write_json(path: &Path, record: &Record) -> Result<()> {
    let json = serde_json::to_string_pretty(record).context("cannot write the figures")?;
    std::fs::write(path, json + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    say!("figures written to {}", path.display());
    Ok(())
}
