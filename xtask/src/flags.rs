//! Every task's options, in one place; `cargo xtask <task> --help` prints them.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};

use crate::servers::Kind;

/// The project's tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub struct Xtask {
    #[command(subcommand)]
    pub task: Task,
}

#[derive(Debug, Subcommand)]
pub enum Task {
    /// Run both demo servers together.
    ///
    /// Builds and runs both demo servers, prefixing their output with [ws] and
    /// [sse]. Ctrl-C stops both.
    ///
    /// With --instances N and --redis, runs N instances of each demo sharing
    /// that Redis, prefixed [ws1], [sse1], [ws2]... Instance k (from 1) listens
    /// on the port given plus 2(k-1): by default WebSocket on 8081, 8083,
    /// 8085... and SSE on 8080, 8082, 8084..., which never collide. If any
    /// instance stops by itself, all are stopped.
    ///
    /// With --proxy, nginx (configured by deploy/nginx.conf) listens in front
    /// of the instances, by default on 9081 (WebSocket) and 9080 (SSE): the
    /// URLs to open. With --tls, both serve https:// and wss:// (and HTTP/2)
    /// with a self-signed certificate made into target/tls/, or the one given.
    ServeAll(ServeAll),
    /// Check both demo pages in headless Chromium.
    ///
    /// Starts both demo servers on free ports, drives their pages in headless
    /// Chromium (Debian's chromium package), prints PASS or FAIL for each
    /// check, and saves screenshots under target/e2e/. Exits non-zero if any
    /// check fails.
    ///
    /// Then runs instances sharing a Redis of its own (redis-server), behind
    /// nginx with deploy/nginx.conf, and over TLS with the certificate in
    /// target/tls/ (made if missing).
    E2e(E2e),
    /// Measure both servers with many clients.
    ///
    /// The clients run in client processes of their own, as many as the
    /// open-file limit needs, from source addresses 127.0.0.1, 127.0.0.2...
    /// With --redis, the clients are spread over --instances servers sharing
    /// that Redis, and the same run with the in-process hub follows (when the
    /// clients fit one server), to show the latency the backplane adds.
    Bench(Bench),
}

#[derive(Debug, Args)]
pub struct ServeAll {
    /// Address both listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: String,
    /// WebSocket demo port (0 picks a free one)
    #[arg(long, value_name = "N", value_parser = port,
          default_value_t = Kind::WebSocket.demo().default_port)]
    pub ws_port: u16,
    /// Server-Sent Events demo port (0 picks a free one)
    #[arg(long, value_name = "N", value_parser = port,
          default_value_t = Kind::Sse.demo().default_port)]
    pub sse_port: u16,
    /// Time between two "Hello hello!" (default 3s)
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// Instances of each demo (above 1 needs --redis); each next one listens
    /// 2 ports above the one before
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = 1)]
    pub instances: usize,
    /// Share broadcasts between instances through the Redis at this URL
    /// (e.g. redis://127.0.0.1:6379/; DEMO_REDIS_URL is not used)
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Put nginx, configured by deploy/nginx.conf, in front of the instances
    /// (needs --redis)
    #[arg(long)]
    pub proxy: bool,
    /// nginx's port for the WebSocket demo (0 picks a free one)
    #[arg(long, value_name = "N", value_parser = port, default_value_t = 9081, requires = "proxy")]
    pub proxy_ws_port: u16,
    /// nginx's port for the Server-Sent Events demo (0 picks a free one)
    #[arg(long, value_name = "N", value_parser = port, default_value_t = 9080, requires = "proxy")]
    pub proxy_sse_port: u16,
    /// Serve https:// and wss:// (HTTP/2 and HTTP/1.1) with a self-signed
    /// certificate for localhost, made into target/tls/ once and reused
    #[arg(long)]
    pub tls: bool,
    /// Serve with this certificate chain (PEM) instead; implies --tls
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Run the binaries already built
    #[arg(long)]
    pub no_build: bool,
}

/// How far apart the ports of one demo's instances are: the default ports of
/// the two demos are next to each other, so their instances interleave.
const PORT_STEP: usize = 2;

#[derive(Debug, Args)]
pub struct E2e {
    /// Run the binaries already built
    #[arg(long)]
    pub no_build: bool,
}

#[derive(Debug, Args)]
pub struct Bench {
    /// Clients to connect
    #[arg(long, value_name = "N", value_parser = at_least_one::<usize>, default_value_t = 10_000)]
    pub clients: usize,
    /// Messages to broadcast
    #[arg(long, value_name = "M", value_parser = at_least_one::<usize>, default_value_t = 100)]
    pub messages: usize,
    /// Messages sent per second (0.5 is one every 2 s)
    #[arg(long, value_name = "R", value_parser = positive, default_value_t = 20.0)]
    pub rate: f64,
    /// Run one server's benchmark
    #[arg(long, value_name = "SERVER")]
    pub only: Option<Kind>,
    /// Broadcast through the Redis at this URL, then compare with the
    /// in-process hub
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Server instances the clients are spread over (above 1 needs --redis);
    /// messages are sent through the first
    #[arg(long, value_name = "K", value_parser = at_least_one::<usize>, default_value_t = 1)]
    pub instances: usize,
    /// Use the release binaries already built
    #[arg(long)]
    pub no_build: bool,
    /// Run the servers on core 0 and the clients on core 1 (with taskset),
    /// for figures that compare across runs and machines
    #[arg(long)]
    pub pin: bool,
    /// Serve https:// and wss:// with a self-signed certificate (kept in
    /// target/tls/), and connect the clients over TLS
    #[arg(long)]
    pub tls: bool,
    /// Also write the figures of every run to FILE, as JSON
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Also write the figures to DIR/figures.json and draw them: SVG charts
    /// (latency, memory, CPU, connecting) and a page showing them,
    /// DIR/index.html
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Run nothing: draw the runs of these files (from --json or --report)
    /// on the same charts, into --report DIR, each named by its file (or by
    /// its folder, for a figures.json)
    #[arg(long, value_name = "FILE", num_args = 1.., requires = "report")]
    pub compare: Vec<PathBuf>,
    /// Be one of the bench's client processes (it starts them itself)
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Options for the servers, after `--` (`-- --rate 5 --burst 5`); each
    /// takes the place of the bench's own for that flag (it lifts the rate
    /// limits and the caps per address)
    #[arg(last = true, value_name = "SERVER OPTIONS")]
    pub server_options: Vec<String>,
}

/// Server options the bench sets for its own workings, and what to use
/// instead.
const BENCH_OWNS: [(&str, &str); 6] = [
    ("--port", "each server listens on a free port"),
    (
        "--interval",
        "the servers broadcast nothing but the bench's messages",
    ),
    ("--redis", "use the bench's own --redis"),
    ("--redis-stream", "each run has a stream of its own"),
    ("--tls-cert", "use the bench's own --tls"),
    ("--tls-key", "use the bench's own --tls"),
];

impl Bench {
    fn check(&self) -> Result<()> {
        instances_need_redis(self.instances, self.redis.as_deref())?;
        for option in &self.server_options {
            let flag = option.split('=').next().unwrap_or_default();
            if let Some((_, why)) = BENCH_OWNS.iter().find(|(owned, _)| *owned == flag) {
                bail!("the bench sets the servers' {flag} itself: {why}");
            }
        }
        Ok(())
    }
}

impl Xtask {
    /// The command line, or `None` once help was asked for and printed. A bad
    /// option is an error of one line, like every other error of the tasks.
    pub fn from_env() -> Result<Option<Xtask>> {
        Xtask::from_args(std::env::args_os())
    }

    fn from_args(
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    ) -> Result<Option<Xtask>> {
        let error = match Xtask::try_parse_from(args) {
            Ok(xtask) => {
                xtask.task.check()?;
                return Ok(Some(xtask));
            }
            Err(error) => error,
        };
        match (error.kind(), std::error::Error::source(&error)) {
            // No task at all gets the list of tasks, as --help does.
            (
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                | ErrorKind::DisplayVersion,
                _,
            ) => {
                say!("{}", error.render().to_string().trim_end());
                Ok(None)
            }
            // The value parsers below write whole sentences.
            (ErrorKind::ValueValidation, Some(sentence)) => bail!("{sentence}"),
            _ => bail!("{} (see --help)", first_line(&error)),
        }
    }
}

impl Task {
    /// What clap cannot say alone: options that do not go together.
    fn check(&self) -> Result<()> {
        match self {
            Task::ServeAll(serve) => serve.check(),
            Task::E2e(_) => Ok(()),
            Task::Bench(bench) => bench.check(),
        }
    }
}

impl ServeAll {
    /// The port of `demo`'s instance `k` (from 0): the one given plus 2k, or
    /// 0 (a free one) for every instance.
    pub fn port(&self, kind: Kind, k: usize) -> u16 {
        match self.base_port(kind) {
            0 => 0,
            base => (usize::from(base) + PORT_STEP * k) as u16,
        }
    }

    fn base_port(&self, kind: Kind) -> u16 {
        match kind {
            Kind::WebSocket => self.ws_port,
            Kind::Sse => self.sse_port,
        }
    }

    /// Whether to serve https:// and wss://.
    pub fn over_tls(&self) -> bool {
        self.tls || self.tls_cert.is_some()
    }

    /// nginx's port in front of `kind`'s instances (0: a free one).
    pub fn proxy_port(&self, kind: Kind) -> u16 {
        match kind {
            Kind::WebSocket => self.proxy_ws_port,
            Kind::Sse => self.proxy_sse_port,
        }
    }

    fn check(&self) -> Result<()> {
        instances_need_redis(self.instances, self.redis.as_deref())?;
        if self.proxy && self.redis.is_none() {
            bail!(
                "--proxy needs --redis URL: instances behind a proxy must share one Redis stream"
            );
        }
        if self.proxy && self.over_tls() {
            bail!(
                "--proxy and --tls do not go together: deploy/nginx.conf speaks plain HTTP \
                 to the instances (a deployment ends TLS in nginx)"
            );
        }
        let last = self.instances - 1;
        for (kind, flag) in [(Kind::WebSocket, "--ws-port"), (Kind::Sse, "--sse-port")] {
            let base = self.base_port(kind);
            if base != 0 && usize::from(base) + PORT_STEP * last > usize::from(u16::MAX) {
                bail!(
                    "{} instances from {flag} {base} go past port 65535",
                    self.instances
                );
            }
        }
        let ports = |kind| (0..self.instances).map(move |k| self.port(kind, k));
        let ws: Vec<u16> = ports(Kind::WebSocket).collect();
        if let Some(port) = ports(Kind::Sse).find(|port| *port != 0 && ws.contains(port)) {
            bail!(
                "both demos would listen on port {port}: give --ws-port and --sse-port \
                 one odd and one even port, or ports further apart"
            );
        }
        if self.proxy {
            let (ws_proxy, sse_proxy) = (self.proxy_ws_port, self.proxy_sse_port);
            if ws_proxy != 0 && ws_proxy == sse_proxy {
                bail!(
                    "nginx cannot listen on port {ws_proxy} for both demos: \
                     give --proxy-ws-port and --proxy-sse-port different ports"
                );
            }
            let taken = |port: &u16| {
                *port != 0 && (ws.contains(port) || ports(Kind::Sse).any(|each| each == *port))
            };
            if let Some(port) = [ws_proxy, sse_proxy].iter().find(|port| taken(port)) {
                bail!(
                    "nginx and an instance would both listen on port {port}: \
                     give --proxy-ws-port and --proxy-sse-port other ports"
                );
            }
        }
        Ok(())
    }
}

/// Instances share broadcasts only through Redis: without it, pages on
/// different instances would not see each other's messages.
fn instances_need_redis(instances: usize, redis: Option<&str>) -> Result<()> {
    if instances > 1 && redis.is_none() {
        bail!(
            "--instances {instances} needs --redis URL: instances share broadcasts only through Redis"
        );
    }
    Ok(())
}

/// Clap's message without its "error: " label, usage and tips, which take
/// several lines; keeps the possible values when it lists them, and the
/// options it lists after a colon ("required arguments were not provided:").
fn first_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let mut lines = rendered.lines().map(str::trim);
    let first = lines.next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if first.ends_with(':') {
        let listed: Vec<&str> = lines.take_while(|line| !line.is_empty()).collect();
        return format!("{first} {}", listed.join(", "));
    }
    match lines.find(|line| line.starts_with("[possible values:")) {
        Some(values) => format!("{first} {values}"),
        None => first.to_owned(),
    }
}

fn port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a port number (see --help)"))
}

fn positive(text: &str) -> Result<f64, String> {
    text.parse()
        .ok()
        .filter(|number: &f64| *number > 0.0 && number.is_finite())
        .ok_or_else(|| format!("'{text}' is not a number above 0 (see --help)"))
}

fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(text: &str) -> Result<T, String> {
    text.parse()
        .ok()
        .filter(|number| *number >= T::from(1))
        .ok_or_else(|| format!("'{text}' is not a number of at least 1 (see --help)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Option<Xtask>> {
        Xtask::from_args(["xtask"].into_iter().chain(args.split_whitespace()))
    }

    fn one_line_error(args: &str) -> String {
        let error = parse(args).expect_err(args);
        let line = format!("{error:#}");
        assert!(!line.contains('\n'), "{line}");
        line
    }

    #[test]
    fn the_declaration_is_consistent() {
        use clap::CommandFactory;
        Xtask::command().debug_assert();
    }

    #[test]
    fn every_default_is_the_one_the_help_promises() {
        let Some(Xtask {
            task: Task::ServeAll(serve),
        }) = parse("serve-all").unwrap()
        else {
            panic!("not serve-all");
        };
        assert_eq!(
            (serve.bind.as_str(), serve.ws_port, serve.sse_port),
            ("127.0.0.1", 8081, 8080)
        );
        assert_eq!(serve.instances, 1);
        let Some(Xtask {
            task: Task::Bench(bench),
        }) = parse("bench").unwrap()
        else {
            panic!("not bench");
        };
        assert_eq!(
            (bench.clients, bench.messages, bench.rate),
            (10_000, 100, 20.0)
        );
        assert_eq!(bench.only, None);
        assert_eq!((bench.instances, bench.redis), (1, None));
    }

    fn serve_all(args: &str) -> ServeAll {
        match parse(&format!("serve-all {args}")) {
            Ok(Some(Xtask {
                task: Task::ServeAll(serve),
            })) => serve,
            other => panic!("{args}: {other:?}"),
        }
    }

    #[test]
    fn instances_of_the_two_demos_interleave_and_never_collide() {
        let serve = serve_all("--instances 3 --redis redis://127.0.0.1:1/");
        let ports = |kind| (0..3).map(|k| serve.port(kind, k)).collect::<Vec<_>>();
        assert_eq!(ports(Kind::WebSocket), [8081, 8083, 8085]);
        assert_eq!(ports(Kind::Sse), [8080, 8082, 8084]);
        let free = serve_all("--instances 2 --redis redis://x/ --ws-port 0 --sse-port 0");
        assert_eq!(free.port(Kind::WebSocket, 1), 0);
    }

    #[test]
    fn several_instances_need_redis_and_ports_that_fit() {
        let without_redis =
            "--instances 2 needs --redis URL: instances share broadcasts only through Redis";
        assert_eq!(one_line_error("serve-all --instances 2"), without_redis);
        assert_eq!(one_line_error("bench --instances 2"), without_redis);
        assert_eq!(
            one_line_error(
                "serve-all --instances 2 --redis redis://x/ --ws-port 9000 --sse-port 9002"
            ),
            "both demos would listen on port 9002: give --ws-port and --sse-port \
             one odd and one even port, or ports further apart"
        );
        assert_eq!(
            one_line_error("serve-all --instances 3 --redis redis://x/ --sse-port 65532"),
            "3 instances from --sse-port 65532 go past port 65535"
        );
        serve_all("--instances 2 --redis redis://x/ --ws-port 9000 --sse-port 9004");
    }

    #[test]
    fn nginx_listens_on_9081_and_9080_unless_told() {
        let serve = serve_all("--proxy --redis redis://x/");
        assert_eq!(
            (
                serve.proxy_port(Kind::WebSocket),
                serve.proxy_port(Kind::Sse)
            ),
            (9081, 9080)
        );
        let free = serve_all("--proxy --redis redis://x/ --proxy-ws-port 0 --proxy-sse-port 0");
        assert_eq!(free.proxy_port(Kind::WebSocket), 0);
        assert!(!serve.over_tls());
        assert!(serve_all("--tls-cert c.pem --tls-key k.pem").over_tls());
    }

    #[test]
    fn a_proxy_needs_redis_plain_http_and_ports_of_its_own() {
        assert_eq!(
            one_line_error("serve-all --proxy"),
            "--proxy needs --redis URL: instances behind a proxy must share one Redis stream"
        );
        assert_eq!(
            one_line_error("serve-all --proxy --redis redis://x/ --tls"),
            "--proxy and --tls do not go together: deploy/nginx.conf speaks plain HTTP \
             to the instances (a deployment ends TLS in nginx)"
        );
        assert_eq!(
            one_line_error("serve-all --proxy --redis redis://x/ --proxy-sse-port 9081"),
            "nginx cannot listen on port 9081 for both demos: \
             give --proxy-ws-port and --proxy-sse-port different ports"
        );
        assert_eq!(
            one_line_error(
                "serve-all --proxy --redis redis://x/ --instances 2 --proxy-ws-port 8083"
            ),
            "nginx and an instance would both listen on port 8083: \
             give --proxy-ws-port and --proxy-sse-port other ports"
        );
        assert_eq!(
            one_line_error("serve-all --proxy-ws-port 9000"),
            "the following required arguments were not provided: --proxy (see --help)"
        );
        assert_eq!(
            one_line_error("serve-all --tls-cert c.pem"),
            "the following required arguments were not provided: --tls-key <FILE> (see --help)"
        );
    }

    #[test]
    fn only_takes_the_two_demos_by_name() {
        let Some(Xtask {
            task: Task::Bench(bench),
        }) = parse("bench --only sse").unwrap()
        else {
            panic!("not bench");
        };
        assert_eq!(bench.only, Some(Kind::Sse));
        assert_eq!(
            one_line_error("bench --only nope"),
            "invalid value 'nope' for '--only <SERVER>' [possible values: websocket, sse] (see --help)"
        );
    }

    #[test]
    fn bench_measures_plainly_unless_told_and_hides_its_client_processes_option() {
        let Some(Xtask {
            task: Task::Bench(bench),
        }) = parse("bench").unwrap()
        else {
            panic!("not bench");
        };
        assert!(!bench.pin && !bench.tls && !bench.worker && bench.json.is_none());
        let Some(Xtask {
            task: Task::Bench(bench),
        }) = parse("bench --pin --tls --json figures.json").unwrap()
        else {
            panic!("not bench");
        };
        assert!(bench.pin && bench.tls);
        assert_eq!(bench.json, Some("figures.json".into()));
        assert!(bench.report.is_none() && bench.compare.is_empty());
        use clap::CommandFactory;
        let mut command = Xtask::command();
        let help = command
            .find_subcommand_mut("bench")
            .expect("bench")
            .render_long_help()
            .to_string();
        assert!(
            help.contains("--pin") && !help.contains("--worker"),
            "{help}"
        );
    }

    #[test]
    fn bench_compares_files_into_a_report_folder() {
        let Some(Xtask {
            task: Task::Bench(bench),
        }) = parse("bench --compare a.json b/figures.json --report out").unwrap()
        else {
            panic!("not bench");
        };
        assert_eq!(
            bench.compare,
            ["a.json", "b/figures.json"].map(PathBuf::from)
        );
        assert_eq!(bench.report, Some("out".into()));
        assert_eq!(
            one_line_error("bench --compare a.json"),
            "the following required arguments were not provided: --report <DIR> (see --help)"
        );
    }

    #[test]
    fn bench_passes_options_after_a_double_dash_to_the_servers_but_not_its_own() {
        let Some(Xtask {
            task: Task::Bench(bench),
        }) = parse("bench --clients 20 -- --rate 2 --burst=3").unwrap()
        else {
            panic!("not bench");
        };
        assert_eq!(bench.clients, 20);
        assert_eq!(bench.server_options, ["--rate", "2", "--burst=3"]);
        assert_eq!(
            one_line_error("bench -- --port 9000"),
            "the bench sets the servers' --port itself: each server listens on a free port"
        );
        assert_eq!(
            one_line_error("bench -- --redis-stream=x"),
            "the bench sets the servers' --redis-stream itself: each run has a stream of its own"
        );
    }

    #[test]
    fn bad_values_and_options_are_one_line_each() {
        assert_eq!(
            one_line_error("serve-all --sse-port 70000"),
            "'70000' is not a port number (see --help)"
        );
        assert_eq!(
            one_line_error("bench --rate 0"),
            "'0' is not a number above 0 (see --help)"
        );
        assert_eq!(
            one_line_error("bench --messages 0"),
            "'0' is not a number of at least 1 (see --help)"
        );
        assert_eq!(
            one_line_error("e2e --fast"),
            "unexpected argument '--fast' found (see --help)"
        );
        assert_eq!(
            one_line_error("deploy"),
            "unrecognized subcommand 'deploy' (see --help)"
        );
    }
}
