//! One run, phase by phase, each with a time limit: starting the servers,
//! connecting the clients (in their own processes), broadcasting through the
//! first server while every client listens, and collecting what arrived.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::time::{Instant, sleep_until, timeout_at};

use super::accounting::Accounting;
use super::clients::{self, Dialer};
use super::report::{Connecting, Numbers};
use super::sender::Account;
use super::system::{self, cpu_seconds, resident_bytes, unix_micros};
use super::wire::{FromWorker, Outcome, Plan, ToWorker};
use super::workers::Workers;
use super::{LIMIT, SERVER_CORE};
use crate::flags;
use crate::servers::{self, Demo, Instance, Kind, Server};
use harness::tls::Certificate;

/// What every run of one `cargo xtask bench` shares.
pub struct Env {
    /// The release build of this program, which the client processes run.
    pub client_exe: PathBuf,
    pub certificate: Option<Certificate>,
    pub dialer: Dialer,
    pub pinned: bool,
    /// The machine's, for the servers and clients together.
    pub cores: usize,
    /// Cores the clients have: a client process each.
    pub client_cores: usize,
    /// The most clients one client process may hold.
    pub client_process_capacity: usize,
    /// The most clients one server may hold.
    pub server_capacity: usize,
}

/// The servers of one run: how many, and the Redis they share, if any.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub instances: usize,
    pub redis: Option<&'a str>,
}

/// Starts the servers, runs every phase, stops them: what was measured.
pub async fn measure(
    demo: &'static Demo,
    flags: &flags::Bench,
    setup: Setup<'_>,
    env: &Env,
) -> Result<Numbers> {
    // A stream of this run's own: its ids begin at 1, as the messages do.
    let stream = format!("bench:{}:{}", demo.prefix, unix_micros() / 1000);
    let mut targets = Vec::new();
    let measured = async {
        for n in 1..=setup.instances {
            let instance = match setup.instances {
                1 => Instance::Only,
                _ => Instance::Nth(n),
            };
            let redis = setup.redis.map(|url| (url, stream.as_str()));
            targets.push(Target::start(demo, instance, flags, redis, env).await?);
        }
        run_clients(demo.kind, flags, env, &targets).await
    }
    .await;
    for target in &mut targets {
        target.server.stop().await;
    }
    if let Some(url) = setup.redis {
        forget(url, &[&stream, &format!("{stream}:meta")]);
    }
    measured
}

/// A release build of one server, started for many clients, and where it is.
struct Target {
    server: Server,
    addr: SocketAddr,
    pid: u32,
}

impl Target {
    /// Starts one instance of `demo`; with `redis` (a URL and a stream), waits
    /// until it has reached Redis.
    async fn start(
        demo: &'static Demo,
        instance: Instance,
        flags: &flags::Bench,
        redis: Option<(&str, &str)>,
        env: &Env,
    ) -> Result<Target> {
        // Only the benchmark's own messages: no ticks (with Redis they fall
        // on the clock's slots of the interval, so a day's: at midnight UTC
        // only), and no limits in the way unless asked (the clients come
        // from a few addresses, so the cap per address goes up too).
        let most = (flags.clients + 10).to_string();
        let own = [
            ("--rate", "1000000"),
            ("--burst", "1000000"),
            ("--client-queue", "4096"),
            ("--max-clients", &most),
            ("--max-clients-per-address", &most),
        ];
        let mut args: Vec<String> = ["--port", "0", "--interval", "1440m"]
            .map(String::from)
            .to_vec();
        args.extend(server_options(&own, &flags.server_options));
        if let Some((url, stream)) = redis {
            args.extend(["--redis", url, "--redis-stream", stream].map(String::from));
        }
        if let Some(certificate) = &env.certificate {
            args.extend(certificate.options());
        }
        let mut server = servers::start(demo, instance, &args, "warn", servers::Profile::Release)?;
        let url = server.listening(LIMIT).await?;
        let addr = servers::addr(&url)?;
        let pid = server.child.id().context("the server exited")?;
        if env.pinned {
            system::pin(pid, SERVER_CORE)?;
        }
        if redis.is_some() {
            env.dialer.healthy(addr, LIMIT).await?;
        }
        Ok(Target { server, addr, pid })
    }
}

/// The servers' options: the bench's `own`, but for those `given` sets
/// again, then `given`.
fn server_options(own: &[(&str, &str)], given: &[String]) -> Vec<String> {
    let replaced = |flag: &str| {
        given
            .iter()
            .any(|option| option.split('=').next() == Some(flag))
    };
    own.iter()
        .filter(|(flag, _)| !replaced(flag))
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .chain(given.iter().cloned())
        .collect()
}

/// Deletes the keys of a run's stream with `redis-cli`, which comes with
/// redis-server; without it, says what is left.
fn forget(url: &str, keys: &[&str]) {
    let deleted = std::process::Command::new("redis-cli")
        .args(["-u", url, "DEL"])
        .args(keys)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !deleted.is_ok_and(|status| status.success()) {
        say!(
            "  (could not delete {} from Redis: no redis-cli?)",
            keys.join(" ")
        );
    }
}

/// Clients connecting to one server at once.
const CONNECTING_PER_SERVER: usize = 64;

/// How many clients each client process holds: as few processes as their
/// open-file limit allows, but one for each core the clients have.
pub fn shares(clients: usize, most: usize, cores: usize) -> Vec<usize> {
    let processes = clients
        .div_ceil(most.max(1))
        .max(cores)
        .clamp(1, clients.max(1));
    (0..processes)
        .map(|n| clients / processes + usize::from(n < clients % processes))
        .collect()
}

/// The time the clients have to connect: two minutes, and a second more for
/// every thousand clients.
fn connect_limit(clients: usize) -> Duration {
    LIMIT + Duration::from_secs(clients as u64 / 1000)
}

/// Processes' CPU time and memory, summed.
fn cpu(pids: impl IntoIterator<Item = u32>) -> f64 {
    pids.into_iter().map(cpu_seconds).sum()
}

fn memory(pids: impl IntoIterator<Item = u32>) -> u64 {
    pids.into_iter().map(resident_bytes).sum()
}

/// Every phase in turn, on servers already started: connecting the clients
/// (spread over the servers), sending through the first, receiving.
async fn run_clients(
    kind: Kind,
    flags: &flags::Bench,
    env: &Env,
    targets: &[Target],
) -> Result<Numbers> {
    let server_pids: Vec<u32> = targets.iter().map(|target| target.pid).collect();
    let addrs: Vec<SocketAddr> = targets.iter().map(|target| target.addr).collect();
    let memory_before = memory(server_pids.clone());
    let cpu_before = cpu(server_pids.clone());

    let limit = connect_limit(flags.clients);
    let lifetime = limit + 3 * LIMIT + Duration::from_secs_f64(flags.messages as f64 / flags.rate);
    let shares = shares(flags.clients, env.client_process_capacity, env.client_cores);
    // The servers listen with a backlog of 128: more connections at once
    // than that overflow it, and the dropped SYNs are sent again a second
    // later. Half of it a server, spread over the client processes.
    let connecting_at_once = (CONNECTING_PER_SERVER * targets.len() / shares.len()).max(1);
    let mut first = 0;
    let plans = shares
        .into_iter()
        .map(|count| {
            let plan = Plan {
                kind,
                targets: addrs.clone(),
                first,
                count,
                messages: flags.messages,
                tls: env
                    .certificate
                    .as_ref()
                    .map(|certificate| certificate.cert.clone()),
                connecting: connecting_at_once,
                lifetime_secs: lifetime.as_secs(),
            };
            first += count;
            plan
        })
        .collect();

    let connecting = Instant::now();
    let connecting_from_ms = unix_micros() / 1000;
    let mut workers = Workers::start(&env.client_exe, plans).await?;
    let measured = async {
        let greeted = connect(&mut workers, limit).await?;
        let connected_in = connecting.elapsed();
        let meter = Meter {
            servers: server_pids.clone(),
            clients: workers.pids().chain([std::process::id()]).collect(),
        };
        let memory_with_clients = memory(server_pids.clone());
        let client_memory = memory(workers.pids());
        let (_, memory_available) = system::memory();
        let at_connected = meter.cpu();

        let delivered = deliver(kind, flags, env, addrs[0], &mut workers, &meter).await?;
        let last = delivered
            .outcome
            .last_receipt_us
            .max(delivered.first_sent_us);
        let spans = fanouts(&delivered.sent_us, &delivered.outcome.last_by_seq);
        let (memory_total, _) = system::memory();
        Ok(Numbers {
            servers: targets.len(),
            clients: flags.clients,
            messages: flags.messages,
            rate: flags.rate,
            client_processes: workers.len(),
            source_addresses: clients::sources(flags.clients),
            connected_in,
            connecting: Connecting::new(&greeted, connecting_from_ms),
            memory_before,
            memory_with_clients,
            client_memory,
            server_cpu_connecting: at_connected.servers - cpu_before,
            server_cpu_delivering: delivered.cpu.servers - at_connected.servers,
            client_cpu_delivering: delivered.cpu.clients - at_connected.clients,
            other_cpu_delivering: ((delivered.cpu.machine - at_connected.machine)
                - (delivered.cpu.servers - at_connected.servers)
                - (delivered.cpu.clients - at_connected.clients))
                .max(0.0),
            delivering: Duration::from_micros(last - delivered.first_sent_us),
            fanning_out: fanning_out(&spans),
            fanouts: spans
                .iter()
                .map(|(from, to)| Duration::from_micros(to - from))
                .collect(),
            accounting: Accounting::new(
                &delivered.account,
                &delivered.outcome,
                flags.messages,
                flags.clients,
            ),
            outcome: delivered.outcome,
            cores: env.cores,
            pinned: env.pinned,
            memory_total,
            memory_available,
            server_capacity: env.server_capacity as u64,
            client_process_capacity: env.client_process_capacity as u64,
        })
    }
    .await;
    workers.end().await;
    measured
}

/// The processes whose CPU time a run counts: the servers', and the clients'
/// (the client processes and the bench, which sends).
struct Meter {
    servers: Vec<u32>,
    clients: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    servers: f64,
    clients: f64,
    /// Every process of the machine's: ours, and others'.
    machine: f64,
}

impl Meter {
    fn cpu(&self) -> CpuTime {
        CpuTime {
            servers: cpu(self.servers.iter().copied()),
            clients: cpu(self.clients.iter().copied()),
            machine: system::machine_cpu_seconds(),
        }
    }
}

/// Each broadcast's fan-out, in µs since the epoch: from its send to its
/// last receipt (none for a broadcast no client got, or whose send is not
/// known).
fn fanouts(sent_us: &[u64], last_by_seq: &[u64]) -> Vec<(u64, u64)> {
    sent_us
        .iter()
        .zip(last_by_seq)
        .filter(|(sent, last)| **sent > 0 && **last > 0)
        .map(|(sent, last)| (*sent, (*last).max(*sent)))
        .collect()
}

/// The time some broadcast was fanning out: the union of the fan-outs.
fn fanning_out(fanouts: &[(u64, u64)]) -> Duration {
    let mut spans = fanouts.to_vec();
    spans.sort_unstable();
    let (mut total, mut reached) = (0, 0);
    for (from, to) in spans {
        let from = from.max(reached);
        if to > from {
            total += to - from;
            reached = to;
        }
    }
    Duration::from_micros(total)
}

/// Waits until every client process says its clients are connected (the
/// first that cannot connect one ends the wait): how many were greeted in
/// each millisecond since the epoch.
async fn connect(workers: &mut Workers, limit: Duration) -> Result<BTreeMap<u64, u32>> {
    let deadline = Instant::now() + limit;
    let (mut connected, mut all) = (0, BTreeMap::new());
    while connected < workers.len() {
        match timeout_at(deadline, workers.next()).await {
            Ok(Some((_, FromWorker::Connected { greeted }))) => {
                connected += 1;
                for (ms, count) in greeted {
                    *all.entry(ms).or_insert(0) += count;
                }
            }
            Ok(Some((n, FromWorker::Failed { error }))) => {
                bail!("a client of client process {n} could not connect: {error}")
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("the client processes stopped"),
            Err(_) => bail!(
                "the clients did not all connect within {limit:?} \
                 ({connected} of {} client processes had theirs)",
                workers.len()
            ),
        }
    }
    Ok(all)
}

/// What the clients received, when the first broadcast went out, what
/// became of each message, and the CPU time when the last delivery was
/// counted.
struct Delivered {
    outcome: Outcome,
    first_sent_us: u64,
    /// When each broadcast was sent, by its number from 1, in µs since the
    /// epoch (0: not known).
    sent_us: Vec<u64>,
    account: Account,
    cpu: CpuTime,
}

/// Sends the broadcasts at the chosen rate, telling the client processes when
/// each went out, until all of them have received everything (or everything
/// the sender knows was broadcast, once it has stopped), or two minutes after
/// the last send (what is missing then is lost).
async fn deliver(
    kind: Kind,
    flags: &flags::Bench,
    env: &Env,
    addr: SocketAddr,
    workers: &mut Workers,
    meter: &Meter,
) -> Result<Delivered> {
    let mut sender = env.dialer.sender(kind, addr).await.context("sender")?;
    let started = Instant::now();
    let sending_limit =
        started + LIMIT + Duration::from_secs_f64(flags.messages as f64 / flags.rate);
    let mut receiving_limit = sending_limit + LIMIT;
    let mut reporting_limit = None;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / flags.rate));
    let every = Duration::from_secs(5);
    let mut progress = tokio::time::interval_at(started + every, every);
    let expected = flags.clients * flags.messages;
    let mut received = vec![0; workers.len()];
    let mut outcomes: Vec<Option<Outcome>> = vec![None; workers.len()];
    let (mut sent, mut first_sent_us) = (0, 0);
    let mut sent_us = vec![0; flags.messages];
    // Taken whenever more deliveries are counted: the time after the last
    // one is waiting, not work.
    let mut cpu = meter.cpu();
    let mut counted = 0;
    let (mut told_refused, mut stopped) = (false, false);
    while outcomes.iter().any(Option::is_none) {
        let account = sender.account();
        if let Some(first) = account.refused.first()
            && !told_refused
        {
            say!("  ... the server refused a message: {first}");
            told_refused = true;
        }
        if !stopped && (account.cut_off.is_some() || sent == flags.messages) {
            stopped = true;
            receiving_limit = receiving_limit.min(Instant::now() + LIMIT);
            if let Some(cut) = &account.cut_off {
                say!(
                    "  ... the sender was cut off after {} messages ({cut}): it sends no more",
                    account.sent
                );
            }
        }
        // Once the sender has stopped and heard every answer, the broadcasts
        // it knows of are all there will be: no need to wait for the others.
        let broadcasts = account.broadcast.len();
        let arrived: u64 = received.iter().sum();
        if stopped
            && account.settled()
            && broadcasts < flags.messages
            && arrived >= (flags.clients * broadcasts) as u64
            && reporting_limit.is_none()
        {
            workers.tell_all(&ToWorker::Finish).await?;
            reporting_limit = Some(Instant::now() + Duration::from_secs(30));
        }
        tokio::select! {
            _ = ticks.tick(), if !stopped => {
                sent += 1;
                let at_us = unix_micros();
                if sent == 1 {
                    first_sent_us = at_us;
                }
                let seq = match timeout_at(sending_limit, sender.send()).await {
                    Ok(seq) => seq,
                    Err(_) => {
                        sender.give_up(format!("the server took no message for {LIMIT:?}"));
                        None
                    }
                };
                if let Some(seq) = seq
                    && let Some(slot) = seq.checked_sub(1).and_then(|at| sent_us.get_mut(at))
                {
                    *slot = at_us;
                    workers.tell_all(&ToWorker::Sent { seq, at_us }).await?;
                }
            }
            heard = workers.next() => {
                match heard {
                    Some((n, FromWorker::Progress { received: so_far })) => received[n] = so_far,
                    Some((n, FromWorker::Outcome(outcome))) => {
                        received[n] = outcome.received;
                        outcomes[n] = Some(outcome);
                    }
                    Some((n, FromWorker::Failed { error })) => bail!("client process {n}: {error}"),
                    Some((_, FromWorker::Connected { .. })) => {}
                    None => bail!("the client processes stopped"),
                }
                let now: u64 = received.iter().sum();
                if now > counted {
                    (counted, cpu) = (now, meter.cpu());
                }
            }
            _ = progress.tick() => {
                let received: u64 = received.iter().sum();
                let after = started.elapsed().as_secs_f64();
                say!("  ... {received} of {expected} deliveries after {after:.0} s");
            }
            () = sleep_until(receiving_limit), if reporting_limit.is_none() => {
                let Account { sent, broadcast, refused, .. } = sender.account();
                let waiting = sent.saturating_sub(broadcast.len() + refused.len());
                say!(
                    "  ... not everything arrived within {LIMIT:?} of the last send, and {waiting} \
                     messages are still unanswered: the rest is lost"
                );
                workers.tell_all(&ToWorker::Finish).await?;
                reporting_limit = Some(Instant::now() + Duration::from_secs(30));
            }
            () = sleep_until(reporting_limit.unwrap_or(receiving_limit)), if reporting_limit.is_some() => {
                bail!("the client processes did not say what arrived within 30 s of being asked")
            }
        }
    }
    let account = sender.close().await;
    let mut outcome = Outcome::default();
    for each in outcomes.iter().flatten() {
        outcome.add(each);
    }
    Ok(Delivered {
        outcome,
        first_sent_us,
        sent_us,
        account,
        cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_fan_outs_count_once() {
        // The last was received, but when it was sent is not known.
        let spans = fanouts(&[1, 10, 20, 30, 0], &[5, 25, 22, 0, 40]);
        assert_eq!(spans, [(1, 5), (10, 25), (20, 22)]);
        assert_eq!(fanning_out(&spans), Duration::from_micros(19));
        assert_eq!(fanning_out(&[]), Duration::ZERO);
    }

    #[test]
    fn options_given_for_the_servers_replace_the_benchs_own() {
        let own = [
            ("--rate", "1000000"),
            ("--burst", "1000000"),
            ("--replay", "9"),
        ];
        let given = ["--rate", "2", "--burst=3", "--heartbeat", "5s"].map(String::from);
        assert_eq!(
            server_options(&own, &given),
            [
                "--replay",
                "9",
                "--rate",
                "2",
                "--burst=3",
                "--heartbeat",
                "5s"
            ]
        );
        assert_eq!(server_options(&own[2..], &[]), ["--replay", "9"]);
    }

    #[test]
    fn clients_go_to_as_few_processes_as_fit_but_one_a_core() {
        assert_eq!(shares(1000, 18_000, 2), [500, 500]);
        assert_eq!(shares(1000, 18_000, 1), [1000]);
        assert_eq!(shares(1, 18_000, 2), [1]);
        let big = shares(100_000, 18_000, 2);
        assert_eq!(big.len(), 6);
        assert_eq!(big.iter().sum::<usize>(), 100_000);
        assert!(big.iter().all(|share| (16_666..=16_667).contains(share)));
    }
}
