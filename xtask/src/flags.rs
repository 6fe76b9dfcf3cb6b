//! Every task's options, in one place; `cargo xtask <task> --help` prints them.

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
        let error = match Xtask::try_parse() {
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
