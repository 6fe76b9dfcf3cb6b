//! What a run measured, as the lines the bench prints and as the figures
//! `--json` writes; and what held the run back.

use std::time::Duration;

use serde::Serialize;

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
    /// What the server said of each message it refused to broadcast.
    pub refused: Vec<String>,
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
        let clients = self.clients;
        let (memory, cpu) = match self.servers {
            1 => ("server memory".to_owned(), "server CPU time".to_owned()),
            count => (
                format!("memory of the {count} servers together"),
                format!("CPU time of the {count} servers together"),
            ),
        };
        let percentile = |p: f64| format!("{:.2} ms", self.latency_ms(p));
        say!("{title}");
        say!(
            "  {clients} clients connected in {:.2} s ({:.0} a second), from {} client \
             process{} and {} source address{}",
            self.connected_in.as_secs_f64(),
            clients as f64 / self.connected_in.as_secs_f64(),
            self.client_processes,
            plural(self.client_processes, "es"),
            self.source_addresses,
            plural(self.source_addresses, "es"),
        );
        say!(
            "  {memory}: {:.1} MiB before, {:.1} MiB with every client: {:.1} KiB per connection",
            mib(self.memory_before),
            mib(self.memory_with_clients),
            self.bytes_per_connection() / 1024.0
        );
        say!(
            "  {} broadcasts at {}/s: {} deliveries in {:.2} s = {:.0} deliveries a second",
            self.messages,
            self.rate,
            self.delivered(),
            self.delivering.as_secs_f64(),
            self.deliveries_per_second()
        );
        say!(
            "  {cpu}: {:.2} s connecting ({:.1} µs a connection), {:.2} s delivering \
             ({:.2} µs a delivery)",
            self.server_cpu_connecting,
            self.server_us_per_connection(),
            self.server_cpu_delivering,
            self.server_us_per_delivery()
        );
        say!(
            "  latency from send to receipt: p50 {}, p90 {}, p99 {}, max {}",
            percentile(0.50),
            percentile(0.90),
            percentile(0.99),
            percentile(1.0)
        );
        say!(
            "  a broadcast reached every client in {:.0} ms (median; slowest {:.0} ms); \
             some broadcast was fanning out {:.2} s of the {:.2} s",
            self.fanout(0.5).as_secs_f64() * 1000.0,
            self.fanout(1.0).as_secs_f64() * 1000.0,
            self.fanning_out.as_secs_f64(),
            self.delivering.as_secs_f64()
        );
        self.print_losses();
        say!("  limited by: {}", self.limit());
        say!(
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
        );
        let per_delivery = self.server_us_per_delivery();
        if per_delivery > 0.0 {
            let broadcast_ms = per_delivery * clients as f64 / 1000.0;
            say!(
                "  so: a server core delivers ~{:.0} a second; a broadcast to all {clients} \
                 costs {broadcast_ms:.0} ms of server CPU, so every server core added (clients \
                 elsewhere) keeps up with ~{:.1} more broadcasts a second to all of them",
                1e6 / per_delivery,
                1000.0 / broadcast_ms
            );
        }
    }

    fn print_losses(&self) {
        if let Some(first) = self.refused.first() {
            say!(
                "  REFUSED: the server did not broadcast {} of the {} messages sent (the first \
                 said {first}); it may have published some all the same (a timeout), so \
                 broadcasts may be missing below, and latencies be off by a send",
                self.refused.len(),
                self.messages
            );
        }
        let outcome = &self.outcome;
        let lost = outcome.lost();
        if lost == 0 && outcome.unexpected == 0 {
            say!(
                "  lost: none: each of the {} clients got all {} broadcasts",
                self.clients,
                self.messages
            );
            return;
        }
        let by_broadcast: Vec<String> = outcome
            .missing
            .iter()
            .enumerate()
            .filter(|(_, missing)| **missing > 0)
            .map(|(index, missing)| format!("#{}: {missing}", index + 1))
            .collect();
        say!(
            "  LOST: {lost} deliveries of {}; {} clients missed some (clients missing each \
             broadcast: {})",
            self.clients * self.messages,
            outcome.short,
            by_broadcast.join(", ")
        );
        for (why, count) in &outcome.ended {
            say!("  {count} clients stopped early: {why}");
        }
        if outcome.unexpected > 0 {
            say!(
                "  {} broadcasts came twice to a client, or were not the bench's",
                outcome.unexpected
            );
        }
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
            fanout_ms: Fanout {
                median: round(self.fanout(0.5).as_secs_f64() * 1000.0, 1),
                max: round(self.fanout(1.0).as_secs_f64() * 1000.0, 1),
            },
            lost: self.outcome.lost(),
            refused: self.refused.len(),
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
    /// From a broadcast's send to its last receipt, over the broadcasts.
    pub fanout_ms: Fanout,
    pub lost: u64,
    /// Messages the sender sent that the server refused to broadcast.
    pub refused: usize,
    pub server_cores_busy: f64,
    pub client_cores_busy: f64,
    /// Other processes on the machine, over the whole delivery.
    pub other_cores_busy: f64,
    pub limited_by: String,
}

#[derive(Debug, Serialize)]
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

/// The file `--json` writes: the machine, then every run.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
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

    /// 1000 clients, 10 broadcasts at 1/s over 10 s, on 2 cores.
    fn numbers(server_cpu: f64, fanning_out: f64) -> Numbers {
        Numbers {
            servers: 1,
            clients: 1000,
            messages: 10,
            rate: 1.0,
            client_processes: 2,
            source_addresses: 1,
            connected_in: Duration::from_secs(1),
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
            outcome: Outcome {
                received: 10_000,
                missing: vec![0; 10],
                ..Outcome::default()
            },
            refused: Vec::new(),
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
