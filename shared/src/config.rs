//! The options both servers take, from flags or environment variables.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser};

/// What differs between the two servers: their option sets, and whether
/// their routes upgrade connections.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub name: &'static str,
    /// What `--version` prints after the name: the demo crate's version.
    pub version: &'static str,
    pub about: &'static str,
    pub port: u16,
    /// The interval of the event stream's `ping` events, or of WebSocket pings.
    pub heartbeat: &'static str,
    pub heartbeat_help: &'static str,
    /// The Redis stream the demo's instances share, unless `--redis-stream`.
    pub stream: &'static str,
    /// Whether routes upgrade connections (the WebSocket handshake). A server
    /// whose routes do not hands its event streams on plain connections to a
    /// writer without hyper's buffers instead (`http::Handover`).
    pub upgrades: bool,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on
    #[arg(long, env = "DEMO_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,

    /// Port to listen on (0 picks a free port)
    #[arg(long, env = "DEMO_PORT")]
    pub port: u16,

    /// Time between two "Hello hello!" broadcasts (e.g. 3s, 500ms)
    #[arg(long, env = "DEMO_INTERVAL", default_value = "3s", value_parser = parse_period)]
    pub interval: Duration,

    /// How many recent broadcasts are kept for clients that resume
    #[arg(long, env = "DEMO_REPLAY", default_value_t = 1024)]
    pub replay: usize,

    /// How many broadcasts may wait for one client before it is disconnected as too slow
    #[arg(long, env = "DEMO_CLIENT_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub client_queue: u32,

    /// Heartbeat interval
    #[arg(long, env = "DEMO_HEARTBEAT", value_parser = parse_period)]
    pub heartbeat: Duration,

    /// Longest wait for connections to finish after Ctrl-C or SIGTERM
    #[arg(long, env = "DEMO_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Largest message a client may send, in bytes (WebSocket message or POST body)
    #[arg(long, env = "DEMO_MAX_MESSAGE", default_value_t = 64 * 1024, value_parser = at_least_one())]
    pub max_message: usize,

    /// An origin whose pages may connect, besides the server's own
    /// (http://localhost:PORT, http://127.0.0.1:PORT); repeat it for several,
    /// or give * to allow every origin (unsafe: any site could use the server)
    #[arg(
        long = "allowed-origin",
        env = "DEMO_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_parser = parse_origin
    )]
    pub allowed_origins: Vec<String>,

    /// Messages per second one client may send (WebSocket connection, or client address on POST /api)
    #[arg(long, env = "DEMO_RATE", default_value_t = 10.0, value_parser = parse_rate)]
    pub rate: f64,

    /// Messages a client may send in a burst above the rate
    #[arg(long, env = "DEMO_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: u32,

    /// Most clients connected at once; more get 503. Lowered at start to
    /// what the open-file limit allows
    #[arg(long, env = "DEMO_MAX_CLIENTS", default_value_t = 100_000, value_parser = at_least_one())]
    pub max_clients: usize,

    /// Most connections open at once from one client address (an IPv6 /64
    /// counts as one); more get 503
    #[arg(long, env = "DEMO_MAX_CLIENTS_PER_ADDRESS", default_value_t = 256, value_parser = at_least_one())]
    pub max_clients_per_address: usize,

    /// Longest a client may take to send a request head, a request body, or
    /// one WebSocket message; slower ones get 408 or close code 1008
    #[arg(long, env = "DEMO_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_period)]
    pub request_timeout: Duration,

    /// Share broadcasts with other instances through the Redis at this URL
    /// (e.g. redis://127.0.0.1:6379/); without it, this server is alone
    #[arg(long, env = "DEMO_REDIS_URL", value_parser = parse_redis_url)]
    pub redis: Option<String>,

    /// A reverse proxy whose X-Forwarded-For names the client (rate limits,
    /// logs); repeat it for several. From anyone else the header is ignored
    #[arg(
        long = "trusted-proxy",
        env = "DEMO_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Serve https:// and wss:// (HTTP/2 and HTTP/1.1) with this certificate
    /// chain (PEM); needs --tls-key
    #[arg(long, env = "DEMO_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "DEMO_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// The Redis stream the instances share (with --redis)
    #[arg(long, env = "DEMO_REDIS_STREAM")]
    pub redis_stream: String,
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

/// The outcome of reading the command line.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    /// `--help` or `--version`: print this and exit successfully.
    Print(String),
    /// A bad option, as one line.
    Error(String),
}

impl Config {
    /// Reads options from `args` (the program name first) and the environment.
    pub fn parse<I, T>(defaults: &Defaults, args: I) -> Parsed
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Cli::command()
            .name(defaults.name)
            .version(defaults.version)
            .about(defaults.about)
            .mut_arg("port", |arg| {
                arg.default_value(defaults.port.to_string()).required(false)
            })
            .mut_arg("redis_stream", |arg| {
                arg.default_value(defaults.stream).required(false)
            })
            .mut_arg("heartbeat", |arg| {
                arg.default_value(defaults.heartbeat)
                    .required(false)
                    .help(defaults.heartbeat_help)
            });
        let matches = match command.try_get_matches_from(args) {
            Ok(matches) => matches,
            Err(error) => return from_clap_error(error),
        };
        match Cli::from_arg_matches(&matches) {
            Ok(cli) => Parsed::Run(Box::new(cli.config)),
            Err(error) => from_clap_error(error),
        }
    }
}

fn from_clap_error(error: clap::Error) -> Parsed {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Parsed::Print(error.to_string()),
        _ => {
            // clap's message, without the usage and hint it appends after a
            // blank line, folded into one line.
            let text = error.to_string();
            let what = text.split("\n\n").next().unwrap_or_default();
            let line = what.split_whitespace().collect::<Vec<_>>().join(" ");
            Parsed::Error(format!("{line} (see --help)"))
        }
    }
}

/// `*`, or an origin as browsers send it: `http(s)://host[:port]`, no path.
fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/');
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let bad = |c: char| c.is_whitespace() || "/?#@".contains(c);
    match host {
        _ if origin == "*" => Ok(origin.to_owned()),
        Some(host) if !host.is_empty() && !host.contains(bad) => Ok(origin.to_owned()),
        _ => Err(format!(
            "'{text}' is not an origin like https://example.com or http://192.168.1.5:8081 (or * for every origin)"
        )),
    }
}

/// A URL the Redis client can connect to (checked now, connected later).
fn parse_redis_url(text: &str) -> Result<String, String> {
    use redis::IntoConnectionInfo;
    match text.trim().into_connection_info() {
        Ok(_) => Ok(text.trim().to_owned()),
        Err(error) => Err(format!(
            "'{text}' is not a Redis URL like redis://127.0.0.1:6379/ ({error})"
        )),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a positive number of messages per second"
        )),
    }
}

/// A count that must be at least 1 (a limit of 0 would refuse everything).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// The longest duration an option takes: a day.
const LONGEST: Duration = Duration::from_secs(24 * 60 * 60);

/// The period of something repeated: at least a millisecond.
fn parse_period(text: &str) -> Result<Duration, String> {
    let period = parse_duration(text)?;
    if period < Duration::from_millis(1) {
        return Err(format!("'{}' is too short (at least 1ms)", text.trim()));
    }
    Ok(period)
}

/// Parses `3s`, `500ms`, `2m`, `1.5s`, or a plain number of seconds, up to a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 3s or 500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        other => return Err(format!("unknown unit '{other}' (use ms, s or m)")),
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if duration <= LONGEST => Ok(duration),
        _ => Err(format!("'{text}' is out of range (at most a day: 1440m)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults {
        name: "demo",
        version: "1.2.3",
        about: "A demo",
        port: 8081,
        heartbeat: "30s",
        heartbeat_help: "Ping interval",
        stream: "demo:test",
        upgrades: false,
    };

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("1441m").is_err());
        assert!(parse_duration("18446744073709551615").is_err());
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_period("0s").is_err());
        assert!(parse_period("0.0001ms").is_err());
        assert_eq!(parse_period("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn defaults_apply_and_flags_override_them() {
        let parsed = Config::parse(&DEFAULTS, ["demo"]);
        let Parsed::Run(config) = parsed else {
            panic!("defaults should parse: {parsed:?}")
        };
        assert_eq!(config.port, 8081);
        assert_eq!(config.interval, Duration::from_secs(3));
        assert_eq!(config.heartbeat, Duration::from_secs(30));
        let Parsed::Run(config) = Config::parse(&DEFAULTS, ["demo", "--port", "9000"]) else {
            panic!("--port should parse")
        };
        assert_eq!(config.port, 9000);
    }

    #[test]
    fn a_bad_option_is_one_line() {
        let Parsed::Error(line) = Config::parse(&DEFAULTS, ["demo", "--port", "http"]) else {
            panic!("a bad port should not parse")
        };
        assert!(
            line.starts_with("error: invalid value 'http' for '--port"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn redis_urls_are_checked_at_once() {
        let parsed = Config::parse(&DEFAULTS, ["demo", "--redis", "redis://127.0.0.1:6379/"]);
        let Parsed::Run(config) = parsed else {
            panic!("a Redis URL should parse: {parsed:?}")
        };
        assert_eq!(config.redis.as_deref(), Some("redis://127.0.0.1:6379/"));
        assert_eq!(config.redis_stream, "demo:test");
        let Parsed::Error(line) = Config::parse(&DEFAULTS, ["demo", "--redis", "http://x"]) else {
            panic!("an http URL is not Redis's")
        };
        assert!(line.contains("is not a Redis URL"), "{line}");
    }

    #[test]
    fn limits_and_periods_refuse_zero() {
        for args in [
            ["--interval", "0s"],
            ["--heartbeat", "0ms"],
            ["--max-clients", "0"],
            ["--max-clients-per-address", "0"],
            ["--request-timeout", "0s"],
            ["--max-message", "0"],
            ["--client-queue", "0"],
            ["--burst", "0"],
            ["--rate", "0"],
        ] {
            let parsed = Config::parse(&DEFAULTS, ["demo"].into_iter().chain(args));
            let Parsed::Error(line) = parsed else {
                panic!("{args:?} should be refused, got {parsed:?}")
            };
            assert!(line.contains(args[0]), "{args:?}: {line}");
        }
    }

    #[test]
    fn origins_are_checked_as_browsers_send_them() {
        for good in [
            "*",
            "http://example.com",
            "https://a.example:8443/",
            "http://[::1]:80",
        ] {
            assert!(parse_origin(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "example.com",
            "ftp://x",
            "http://",
            "http://x.com/app",
            "http://a b",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad:?}");
        }
        let parsed = Config::parse(&DEFAULTS, ["demo", "--allowed-origin", "example.com"]);
        let Parsed::Error(line) = parsed else {
            panic!("an origin without a scheme should be refused, got {parsed:?}")
        };
        assert!(line.contains("is not an origin like"), "{line}");
    }

    #[test]
    fn version_prints_the_name_and_version() {
        let parsed = Config::parse(&DEFAULTS, ["demo", "--version"]);
        let Parsed::Print(text) = parsed else {
            panic!("--version should print, got {parsed:?}")
        };
        assert_eq!(text, "demo 1.2.3\n");
    }

    #[test]
    fn help_lists_the_options() {
        let Parsed::Print(help) = Config::parse(&DEFAULTS, ["demo", "--help"]) else {
            panic!("--help should print")
        };
        for option in [
            "--bind",
            "--port",
            "--interval",
            "DEMO_PORT",
            "[default: 8081]",
        ] {
            assert!(help.contains(option), "help lacks {option}: {help}");
        }
    }
}
