//! Every task's options, in one place; `cargo xtask <task> --help` prints them.

use std::ffi::OsString;

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
    ServeAll(ServeAll),
    /// Check both demo pages in headless Chromium.
    ///
    /// Starts both demo servers on free ports, drives their pages in headless
    /// Chromium (Debian's chromium package), prints PASS or FAIL for each
    /// check, and saves screenshots under target/e2e/. Exits non-zero if any
    /// check fails.
    E2e(E2e),
    /// Measure both servers with many clients.
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
    /// Run the binaries already built
    #[arg(long)]
    pub no_build: bool,
}

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
    /// Messages sent per second
    #[arg(long, value_name = "R", value_parser = at_least_one::<f64>, default_value_t = 20.0)]
    pub rate: f64,
    /// Run one server's benchmark
    #[arg(long, value_name = "SERVER")]
    pub only: Option<Kind>,
    /// Use the release binaries already built
    #[arg(long)]
    pub no_build: bool,
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
            Ok(xtask) => return Ok(Some(xtask)),
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

/// Clap's message without its "error: " label, usage and tips, which take
/// several lines; keeps the possible values when it lists them.
fn first_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let mut lines = rendered.lines().map(str::trim);
    let first = lines.next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    match lines.find(|line| line.starts_with("[possible values:")) {
        Some(values) => format!("{first} {values}"),
        None => first.to_owned(),
    }
}

fn port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a port number (see --help)"))
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
    fn bad_values_and_options_are_one_line_each() {
        assert_eq!(
            one_line_error("serve-all --sse-port 70000"),
            "'70000' is not a port number (see --help)"
        );
        assert_eq!(
            one_line_error("bench --rate 0.5"),
            "'0.5' is not a number of at least 1 (see --help)"
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
