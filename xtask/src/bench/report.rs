//! What a run measured, as the lines the bench prints and as the figures
//! `--json` writes; and what held the run back.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::accounting::Accounting;
use super::wire::Outcome;

/// What one run measured.
pub struct Numbers {
    /// How many servers the clients were spread over.
    pub servers: usize,
    pub clients: usize,
    pub messages: usize,
    pub rate: f64,
    pub client_processes: usize,
    pub source_addresses: usize,
    pub connected_in: Duration,
    /// Clients connected over that time.
    pub connecting: Connecting,
    /// Of every server together.
    pub memory_before: u64,
    pub memory_with_clients: u64,
    /// Of every client process together, with every client connected.
    pub client_memory: u64,
    /// Of every server together, while the clients connected, and from the
    /// first send to the last receipt.
    pub server_cpu_connecting: f64,
    pub server_cpu_delivering: f64,
    /// Of the client processes and the bench (the sender) together, from the
    /// first send to the last receipt.
    pub client_cpu_delivering: f64,
    /// Of every other process on the machine, over the same time.
    pub other_cpu_delivering: f64,
    /// From the first send to the last receipt.
    pub delivering: Duration,
    /// From each broadcast's send to its last receipt, in the order sent.
    pub fanouts: Vec<Duration>,
    /// The time some broadcast was fanning out (their union).
    pub fanning_out: Duration,
    pub outcome: Outcome,
    /// What became of each message: broadcast, refused, never sent...
    pub accounting: Accounting,
    /// The machine: its cores (for the clients and servers together), and
    /// whether they had one each.
    pub cores: usize,
    pub pinned: bool,
    pub memory_total: u64,
    /// Still available with every client connected.
    pub memory_available: u64,
    /// The most clients one server can hold (its open-file limit less its spare).
    pub server_capacity: u64,
    pub client_process_capacity: u64,
}

impl Numbers {
    fn latency_ms(&self, p: f64) -> f64 {
        self.outcome.latencies.percentile(p) as f64 / 1000.0
    }

    fn bytes_per_connection(&self) -> f64 {
        self.memory_with_clients.saturating_sub(self.memory_before) as f64 / self.clients as f64
    }

    fn delivered(&self) -> u64 {
        self.outcome.received
    }

    fn deliveries_per_second(&self) -> f64 {
        self.delivered() as f64 / self.delivering.as_secs_f64().max(1e-9)
    }

    fn server_us_per_delivery(&self) -> f64 {
        self.server_cpu_delivering * 1e6 / self.delivered().max(1) as f64
    }

    fn server_us_per_connection(&self) -> f64 {
        self.server_cpu_connecting * 1e6 / self.clients as f64
    }

    /// The cores the servers, the clients and other processes kept busy
    /// while broadcasts fanned out (between broadcasts, ours wait for the
    /// next; others' are spread over the whole time).
    fn busy(&self) -> Busy {
        let seconds = match self.fanning_out {
            Duration::ZERO => self.delivering,
            fanning_out => fanning_out,
        };
        let seconds = seconds.as_secs_f64().max(1e-9);
        Busy {
            servers: self.server_cpu_delivering / seconds,
            clients: self.client_cpu_delivering / seconds,
            others: self.other_cpu_delivering / self.delivering.as_secs_f64().max(1e-9),
        }
    }

    /// A share `p` (0 to 1) of the broadcasts reached every client within this.
    fn fanout(&self, p: f64) -> Duration {
        let mut sorted = self.fanouts.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(index).copied().unwrap_or_default()
    }

    /// What held the run back, in a sentence: who kept the cores busy while
    /// broadcasts fanned out, and whether the rate left them time between.
    pub fn limit(&self) -> String {
        let Busy {
            servers,
            clients,
            others,
        } = self.busy();
        let cores = self.cores as f64;
        let memory = if self.memory_available < self.memory_total / 10 {
            format!(
                "memory (only {:.1} GiB left of {:.1}); ",
                gib(self.memory_available),
                gib(self.memory_total)
            )
        } else {
            String::new()
        };
        let busy = format!(
            "servers {servers:.2} cores, clients {clients:.2}, other processes {others:.2}, \
             while broadcasts fanned out"
        );
        let cpu = if self.pinned {
            // Other processes may run on either core.
            let full = 0.9 - others / 2.0;
            match (servers >= full, clients >= full) {
                (true, true) => format!("both cores ({busy}; one core each)"),
                (true, false) => format!("the servers' core ({busy}; one core each)"),
                (false, true) => format!("the clients' core ({busy}; one core each)"),
                (false, false) => format!("not the cores ({busy}; one core each)"),
            }
        } else if servers + clients + others >= 0.85 * cores {
            format!("the {} cores ({busy})", self.cores)
        } else {
            format!("not the cores ({busy}, of {})", self.cores)
        };
        let shared = if others >= 0.2 {
            format!("; other processes took {others:.2} cores: figures are lower than alone")
        } else {
            String::new()
        };
        let window = self.delivering.as_secs_f64();
        let pace = if self.fanouts.len() > 1 && self.fanning_out.as_secs_f64() >= 0.9 * window {
            format!(
                "; broadcasts queued behind each other: {}/s is more than this fans out",
                self.rate
            )
        } else {
            format!(
                "; between broadcasts ({}/s) it idled {:.0} % of the time",
                self.rate,
                100.0 * (1.0 - self.fanning_out.as_secs_f64() / window.max(1e-9))
            )
        };
        format!("{memory}{cpu}{pace}{shared}")
    }

    pub fn print(&self, title: &str) {
        for line in self.lines(title) {
            say!("{line}");
        }
    }

    /// The results, a line each: the title, then, first when the sender did
    /// not get every message broadcast, what happened to it.
    fn lines(&self, title: &str) -> Vec<String> {
        let mut lines = vec![title.to_owned()];
        lines.extend(
            self.accounting
                .headline()
                .map(|headline| format!("  {headline}")),
        );
        let clients = self.clients;
        let (memory, cpu) = match self.servers {
            1 => ("server memory".to_owned(), "server CPU time".to_owned()),
            count => (
                format!("memory of the {count} servers together"),
                format!("CPU time of the {count} servers together"),
            ),
        };
        let percentile = |p: f64| format!("{:.2} ms", self.latency_ms(p));
        lines.push(format!(
            "  {clients} clients connected in {:.2} s ({:.0} a second), from {} client \
             process{} and {} source address{}",
            self.connected_in.as_secs_f64(),
            clients as f64 / self.connected_in.as_secs_f64(),
            self.client_processes,
            plural(self.client_processes, "es"),
            self.source_addresses,
            plural(self.source_addresses, "es"),
        ));
        lines.push(format!(
            "  {memory}: {:.1} MiB before, {:.1} MiB with every client: {:.1} KiB per connection",
            mib(self.memory_before),
            mib(self.memory_with_clients),
            self.bytes_per_connection() / 1024.0
        ));
        let sent = match self.accounting.broadcast.len() {
            all if all == self.messages => format!("{all} broadcasts"),
            some => format!("{} messages ({some} broadcast)", self.messages),
        };
        lines.push(format!(
            "  {sent} at {}/s: {} deliveries in {:.2} s = {:.0} deliveries a second",
            self.rate,
            self.delivered(),
            self.delivering.as_secs_f64(),
            self.deliveries_per_second()
        ));
        lines.push(format!(
            "  {cpu}: {:.2} s connecting ({:.1} µs a connection), {:.2} s delivering \
             ({:.2} µs a delivery)",
            self.server_cpu_connecting,
            self.server_us_per_connection(),
            self.server_cpu_delivering,
            self.server_us_per_delivery()
        ));
        lines.push(format!(
            "  latency from send to receipt: p50 {}, p90 {}, p99 {}, max {}",
            percentile(0.50),
            percentile(0.90),
            percentile(0.99),
            percentile(1.0)
        ));
        lines.push(format!(
            "  a broadcast reached every client in {:.0} ms (median; slowest {:.0} ms); \
             some broadcast was fanning out {:.2} s of the {:.2} s",
            self.fanout(0.5).as_secs_f64() * 1000.0,
            self.fanout(1.0).as_secs_f64() * 1000.0,
            self.fanning_out.as_secs_f64(),
            self.delivering.as_secs_f64()
        ));
        lines.extend(self.accounting.lines(clients));
        for (why, count) in &self.outcome.ended {
            lines.push(format!("  {count} clients stopped early: {why}"));
        }
        if self.outcome.unexpected > 0 {
            lines.push(format!(
                "  {} broadcasts came twice to a client, or were not the bench's",
                self.outcome.unexpected
            ));
        }
        lines.push(format!("  limited by: {}", self.limit()));
        lines.push(format!(
            "  room: memory {:.1} GiB available of {:.1} with every client (clients: {:.0} MiB, \
             {:.1} KiB each); descriptors {} clients a server of {}, {} a client process of {}",
            gib(self.memory_available),
            gib(self.memory_total),
            mib(self.client_memory),
            self.client_memory as f64 / clients as f64 / 1024.0,
            clients.div_ceil(self.servers),
            self.server_capacity,
            clients.div_ceil(self.client_processes),
            self.client_process_capacity,
        ));
        let per_delivery = self.server_us_per_delivery();
        if per_delivery > 0.0 {
            let broadcast_ms = per_delivery * clients as f64 / 1000.0;
            lines.push(format!(
                "  so: a server core delivers ~{:.0} a second; a broadcast to all {clients} \
                 costs {broadcast_ms:.0} ms of server CPU, so every server core added (clients \
                 elsewhere) keeps up with ~{:.1} more broadcasts a second to all of them",
                1e6 / per_delivery,
                1000.0 / broadcast_ms
            ));
        }
        lines
    }

    /// The figures `--json` keeps of this run.
    pub fn figures(&self, server: &str, setup: &str, tls: bool) -> Figures {
        let busy = self.busy();
        let ms = |p| round(self.latency_ms(p), 3);
        Figures {
            server: server.to_owned(),
            setup: setup.to_owned(),
            instances: self.servers,
            tls,
            pinned: self.pinned,
            clients: self.clients,
            messages: self.messages,
            rate: self.rate,
            connect_seconds: round(self.connected_in.as_secs_f64(), 3),
            bytes_per_connection: self.bytes_per_connection().round(),
            deliveries_per_second: self.deliveries_per_second().round(),
            server_cpu_us_per_delivery: round(self.server_us_per_delivery(), 3),
            server_cpu_us_per_connection: round(self.server_us_per_connection(), 1),
            latency_ms: Latency {
                p50: ms(0.50),
                p90: ms(0.90),
                p99: ms(0.99),
                max: ms(1.0),
            },
            latency_percentiles: Percentiles {
                ms: percents()
                    .iter()
                    .map(|percent| ms(percent / 100.0))
                    .collect(),
                percent: percents(),
            },
            connecting: self.connecting.clone(),
            fanout_ms: Fanout {
                median: round(self.fanout(0.5).as_secs_f64() * 1000.0, 1),
                max: round(self.fanout(1.0).as_secs_f64() * 1000.0, 1),
            },
            lost: self.outcome.lost(),
            refused: self.accounting.refused_count(),
            sender: self.accounting.clone(),
            server_cores_busy: round(busy.servers, 3),
            client_cores_busy: round(busy.clients, 3),
            other_cores_busy: round(busy.others, 3),
            limited_by: self.limit(),
        }
    }
}

/// Cores kept busy while broadcasts fanned out.
struct Busy {
    servers: f64,
    clients: f64,
    others: f64,
}

/// One run's figures, for tracking across runs.
#[derive(Debug, Serialize)]
pub struct Figures {
    pub server: String,
    /// "alone", "N instances through Redis", "in-process hub"
    pub setup: String,
    pub instances: usize,
    pub tls: bool,
    pub pinned: bool,
    pub clients: usize,
    pub messages: usize,
    pub rate: f64,
    pub connect_seconds: f64,
    /// The servers' resident memory with every client, less before, a client.
    pub bytes_per_connection: f64,
    pub deliveries_per_second: f64,
    /// The servers' CPU time from the first send to the last receipt, a delivery.
    pub server_cpu_us_per_delivery: f64,
    /// The servers' CPU time while the clients connected, a client.
    pub server_cpu_us_per_connection: f64,
    pub latency_ms: Latency,
    /// The whole distribution of the latencies, for the charts.
    pub latency_percentiles: Percentiles,
    /// Clients connected over time while they connected, for the charts.
    pub connecting: Connecting,
    /// From a broadcast's send to its last receipt, over the broadcasts.
    pub fanout_ms: Fanout,
    /// Deliveries that did not happen: of messages never broadcast, and of
    /// broadcasts clients did not get (`sender` tells which).
    pub lost: u64,
    /// Messages the sender sent that the server refused to broadcast.
    pub refused: usize,
    /// What became of every message, and how the sender's connection ended.
    pub sender: Accounting,
    pub server_cores_busy: f64,
    pub client_cores_busy: f64,
    /// Other processes on the machine, over the whole delivery.
    pub other_cores_busy: f64,
    pub limited_by: String,
}

impl Figures {
    /// Why this run fails the bench, if it does: messages never broadcast
    /// (and why), or broadcasts not delivered.
    pub fn failure(&self) -> Option<String> {
        let why = self.sender.failure()?;
        Some(format!("{} ({}): {why}", self.server, self.setup))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct Fanout {
    pub median: f64,
    pub max: f64,
}

/// The shares of the deliveries (in %) whose latency `--json` keeps: every
/// percent, and the tail.
fn percents() -> Vec<f64> {
    (0..100)
        .map(f64::from)
        .chain([99.5, 99.9, 99.99, 100.0])
        .collect()
}

/// The latency within which each share of the deliveries arrived, in ms:
/// the whole distribution in 104 points, kept so that charts of runs made
/// earlier can be drawn from their files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub percent: Vec<f64>,
    pub ms: Vec<f64>,
}

/// Clients connected while they connected: how many, every `step_ms` from
/// when the client processes started (the first sample at 0, the last once
/// every client was).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Connecting {
    pub step_ms: u64,
    pub connected: Vec<u64>,
}

/// A sample every 5 ms, or every 200th of the time connecting took when
/// that is longer: at most 201 samples.
const STEP_MS: u64 = 5;
const SAMPLES: u64 = 200;

impl Connecting {
    /// From how many clients were greeted in each millisecond (since the
    /// epoch), and when connecting began.
    pub fn new(greeted: &BTreeMap<u64, u32>, from_ms: u64) -> Connecting {
        let Some(last) = greeted.keys().next_back() else {
            return Connecting::default();
        };
        let span = last.saturating_sub(from_ms);
        let step_ms = span.div_ceil(SAMPLES).max(STEP_MS);
        let sample = |ms: u64| (ms.saturating_sub(from_ms).div_ceil(step_ms)) as usize;
        // Every greeting is at most `span` after `from_ms`: its sample fits.
        let mut connected = vec![0; sample(*last) + 1];
        for (ms, count) in greeted {
            connected[sample(*ms)] += u64::from(*count);
        }
        let mut sum = 0;
        for each in &mut connected {
            sum += *each;
            *each = sum;
        }
        Connecting { step_ms, connected }
    }
}

/// The file `--json` writes: the machine, then every run.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// The command that made it, for the report page and the charts.
    pub command: String,
    pub unix_time: u64,
    pub cores: usize,
    pub memory_bytes: u64,
    pub open_file_limit: u64,
    pub runs: &'a [Figures],
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / 1073741824.0
}

fn plural(count: usize, suffix: &str) -> &str {
    if count == 1 { "" } else { suffix }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sender::{Account, CutOff};

    /// 1000 clients, 10 broadcasts at 1/s over 10 s, on 2 cores.
    fn numbers(server_cpu: f64, fanning_out: f64) -> Numbers {
        let outcome = Outcome {
            received: 10_000,
            missing: vec![0; 10],
            ..Outcome::default()
        };
        let account = Account {
            sent: 10,
            broadcast: (1..=10).collect(),
            ..Account::default()
        };
        Numbers {
            servers: 1,
            clients: 1000,
            messages: 10,
            rate: 1.0,
            client_processes: 2,
            source_addresses: 1,
            connected_in: Duration::from_secs(1),
            connecting: Connecting::default(),
            memory_before: 0,
            memory_with_clients: 1000 * 10240,
            client_memory: 0,
            server_cpu_connecting: 0.0,
            server_cpu_delivering: server_cpu,
            client_cpu_delivering: 0.0,
            other_cpu_delivering: 0.0,
            delivering: Duration::from_secs(10),
            fanouts: vec![Duration::from_secs_f64(fanning_out / 10.0); 10],
            fanning_out: Duration::from_secs_f64(fanning_out),
            accounting: Accounting::new(&account, &outcome, 10, 1000),
            outcome,
            cores: 2,
            pinned: false,
            memory_total: 16 << 30,
            memory_available: 8 << 30,
            server_capacity: 19_928,
            client_process_capacity: 18_000,
        }
    }

    #[test]
    fn the_cores_limit_when_busy_while_broadcasts_fan_out() {
        // 2 s of server CPU over 1 s of fanning out: both cores.
        let limit = numbers(2.0, 1.0).limit();
        assert!(
            limit.starts_with("the 2 cores (servers 2.00 cores"),
            "{limit}"
        );
        assert!(limit.ends_with("it idled 90 % of the time"), "{limit}");
    }

    #[test]
    fn a_quiet_machine_is_not_limited_by_its_cores() {
        let limit = numbers(0.5, 1.0).limit();
        assert!(
            limit.starts_with("not the cores (servers 0.50 cores"),
            "{limit}"
        );
    }

    #[test]
    fn broadcasts_fanning_out_all_along_have_queued() {
        let limit = numbers(19.0, 9.5).limit();
        assert!(
            limit.ends_with("broadcasts queued behind each other: 1/s is more than this fans out"),
            "{limit}"
        );
    }

    #[test]
    fn memory_running_out_comes_first_and_others_are_named() {
        let mut tight = numbers(0.5, 1.0);
        tight.memory_available = 1 << 30;
        tight.other_cpu_delivering = 5.0;
        let limit = tight.limit();
        assert!(
            limit.starts_with("memory (only 1.0 GiB left of 16.0)"),
            "{limit}"
        );
        assert!(limit.contains("other processes took 0.50 cores"), "{limit}");
    }

    /// The same run, its sender cut off after 6 messages: 3 broadcast, 1
    /// refused, 2 unanswered, 4 never sent.
    fn cut_off() -> Numbers {
        let mut run = numbers(0.1, 1.0);
        run.outcome = Outcome {
            received: 3000,
            missing: [0, 0, 0].into_iter().chain([1000; 7]).collect(),
            ..Outcome::default()
        };
        let account = Account {
            sent: 6,
            broadcast: (1..=3).collect(),
            refused: vec![r#"{"error":"rate limit: retry in 10 ms"}"#.into()],
            cut_off: Some(CutOff {
                code: Some(1008),
                reason: "rate limit exceeded, repeatedly".into(),
            }),
            ..Account::default()
        };
        run.accounting = Accounting::new(&account, &run.outcome, 10, 1000);
        run
    }

    #[test]
    fn a_run_whose_sender_was_cut_off_says_so_first() {
        let lines = cut_off().lines("websocket-demo:");
        assert_eq!(lines[0], "websocket-demo:");
        assert_eq!(
            lines[1],
            "  SENDER CUT OFF after 6 of its 10 messages: close 1008 \"rate limit exceeded, \
             repeatedly\"; 7 of the 10 never broadcast"
        );
        let delivered = "  10 messages (3 broadcast) at 1/s: 3000 deliveries in 10.00 s = 300 \
                         deliveries a second";
        assert!(lines.contains(&delivered.to_owned()), "{lines:#?}");
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with("  NEVER BROADCAST: 7 of the 10 messages")),
            "{lines:#?}"
        );
        let whole = numbers(0.1, 1.0).lines("websocket-demo:");
        assert!(
            whole[1].starts_with("  1000 clients connected in"),
            "{whole:#?}"
        );
        assert!(
            whole.contains(
                &"  lost: none: each of the 1000 clients got all 10 broadcasts".to_owned()
            )
        );
    }

    #[test]
    fn the_figures_say_how_the_sender_was_cut_off_and_the_run_fails() {
        let figures = cut_off().figures("websocket-demo", "alone", false);
        let json = serde_json::to_value(&figures).unwrap();
        let sender = &json["sender"];
        assert_eq!(sender["cut_off"]["code"], 1008);
        assert_eq!(
            sender["cut_off"]["reason"],
            "rate limit exceeded, repeatedly"
        );
        assert_eq!(sender["over"], "WebSocket");
        assert_eq!(
            (sender["sent"].as_u64(), sender["not_sent"].as_u64()),
            (Some(6), Some(4))
        );
        assert_eq!(sender["broadcast"], serde_json::json!([1, 2, 3]));
        assert_eq!(sender["refused"][0]["count"], 1);
        assert_eq!(
            (
                sender["unanswered"].as_u64(),
                sender["never_broadcast"].as_u64()
            ),
            (Some(2), Some(7))
        );
        assert_eq!(
            (json["refused"].as_u64(), json["lost"].as_u64()),
            (Some(1), Some(7000))
        );
        assert_eq!(
            figures.failure().unwrap(),
            "websocket-demo (alone): 7 of 10 messages never broadcast (1 refused, 2 unanswered, \
             4 not sent, the sender cut off: close 1008 \"rate limit exceeded, repeatedly\")"
        );
        assert_eq!(
            numbers(0.1, 1.0).figures("sse", "alone", false).failure(),
            None
        );
    }

    #[test]
    fn the_figures_keep_the_whole_latency_distribution_with_the_printed_percentiles() {
        let mut run = numbers(0.1, 1.0);
        for us in 1..=10_000 {
            run.outcome.latencies.record(us);
        }
        let figures = run.figures("websocket-demo", "alone", false);
        let curve = &figures.latency_percentiles;
        assert_eq!(curve.percent.len(), 104);
        assert_eq!(curve.percent.len(), curve.ms.len());
        let at = |percent: f64| curve.ms[curve.percent.iter().position(|p| *p == percent).unwrap()];
        let latency = &figures.latency_ms;
        assert_eq!(
            [at(50.0), at(90.0), at(99.0), at(100.0)],
            [latency.p50, latency.p90, latency.p99, latency.max]
        );
        assert_eq!(latency.max, 10.0);
        assert!(
            curve.ms.windows(2).all(|pair| pair[0] <= pair[1]),
            "{curve:?}"
        );
        assert!(
            run.lines("t:")
                .iter()
                .any(|line| line.contains(&format!("p99 {:.2} ms", latency.p99)))
        );
    }

    #[test]
    fn clients_connected_are_sampled_every_few_ms_until_the_last() {
        let greeted = [(1000, 2), (1003, 1), (1012, 5)].into();
        assert_eq!(
            Connecting::new(&greeted, 1000),
            Connecting {
                step_ms: 5,
                connected: vec![2, 3, 3, 8]
            }
        );
        // A long connect: 200 steps, the last sample holding everyone.
        let slow = Connecting::new(&[(5, 1), (20_000, 1)].into(), 0);
        assert_eq!((slow.step_ms, slow.connected.len()), (100, 201));
        assert_eq!(
            (slow.connected[1], slow.connected[199], slow.connected[200]),
            (1, 1, 2)
        );
        assert_eq!(Connecting::new(&BTreeMap::new(), 0), Connecting::default());
    }

    #[test]
    fn the_figures_are_those_a_tracker_reads() {
        let figures = numbers(0.1, 1.0).figures("websocket-demo", "alone", false);
        let json = serde_json::to_value(&figures).unwrap();
        for field in [
            "clients",
            "connect_seconds",
            "bytes_per_connection",
            "deliveries_per_second",
            "server_cpu_us_per_delivery",
            "lost",
        ] {
            assert!(json.get(field).is_some(), "{field} missing in {json}");
        }
        assert_eq!(json["bytes_per_connection"], 10240.0);
        assert_eq!(json["deliveries_per_second"], 1000.0);
        assert_eq!(json["server_cpu_us_per_delivery"], 10.0);
        assert!(json["latency_ms"]["p99"].is_number());
    }
}
