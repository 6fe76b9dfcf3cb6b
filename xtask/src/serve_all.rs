//! `cargo xtask serve-all`: both demos at once, stopped together.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::servers::{self, Demo, Kind, Profile, Server};

const USAGE: &str = "\
Usage: cargo xtask serve-all [OPTIONS]

Builds and runs both demo servers, prefixing their output with [ws] and [sse].
Ctrl-C stops both.

Options:
  --bind ADDR          address both listen on (default 127.0.0.1)
  --ws-port N          WebSocket demo port (default 8081; 0 picks a free one)
  --sse-port N         Server-Sent Events demo port (default 8080; 0 picks a free one)
  --interval DURATION  time between two \"Hello hello!\" (default 3s)
  --no-build           run the binaries already built
  -h, --help           print this";

struct Options {
    bind: String,
    ws_port: String,
    sse_port: String,
    interval: Option<String>,
    build: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Option<Options>> {
        let mut options = Options {
            bind: "127.0.0.1".into(),
            ws_port: Kind::WebSocket.demo().default_port.to_string(),
            sse_port: Kind::Sse.demo().default_port.to_string(),
            interval: None,
            build: true,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value (see --help)"))
            };
            match arg.as_str() {
                "--bind" => options.bind = value("--bind")?,
                "--ws-port" => options.ws_port = port(value("--ws-port")?)?,
                "--sse-port" => options.sse_port = port(value("--sse-port")?)?,
                "--interval" => options.interval = Some(value("--interval")?),
                "--no-build" => options.build = false,
                "-h" | "--help" => return Ok(None),
                other => bail!("unknown option '{other}' (see --help)"),
            }
        }
        Ok(Some(options))
    }

    fn server_args(&self, demo: &Demo) -> Vec<String> {
        let port = match demo.kind {
            Kind::WebSocket => &self.ws_port,
            Kind::Sse => &self.sse_port,
        };
        let mut args = vec![
            "--bind".into(),
            self.bind.clone(),
            "--port".into(),
            port.clone(),
        ];
        if let Some(interval) = &self.interval {
            args.extend(["--interval".into(), interval.clone()]);
        }
        args
    }
}

fn port(text: String) -> Result<String> {
    match text.parse::<u16>() {
        Ok(_) => Ok(text),
        Err(_) => bail!("'{text}' is not a port number (see --help)"),
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let Some(options) = Options::parse(args)? else {
        say!("{USAGE}");
        return Ok(());
    };
    if options.build {
        servers::build(Profile::Debug)?;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(serve(&options))
}

async fn serve(options: &Options) -> Result<()> {
    let start = |kind: Kind| {
        let demo = kind.demo();
        servers::start(demo, &options.server_args(demo), "info", Profile::Debug)
    };
    let mut ws = start(Kind::WebSocket)?;
    let mut sse = match start(Kind::Sse) {
        Ok(sse) => sse,
        Err(error) => {
            ws.stop().await;
            return Err(error);
        }
    };
    let urls = async {
        let ws_url = (&mut ws.url).await;
        let sse_url = (&mut sse.url).await;
        if let (Ok(ws_url), Ok(sse_url)) = (ws_url, sse_url) {
            say!("[xtask] WebSocket demo:          {ws_url}");
            say!("[xtask] Server-Sent Events demo: {sse_url}");
            say!("[xtask] Open them in a browser; Ctrl-C stops both.");
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        signal = signal() => {
            say!("[xtask] {signal}: stopping both servers");
            tokio::join!(ws.stop(), sse.stop());
            say!("[xtask] Both servers stopped");
            Ok(())
        }
        status = ws.child.wait() => failed(describe(status), &ws, &mut sse).await,
        status = sse.child.wait() => failed(describe(status), &sse, &mut ws).await,
        () = urls => Ok(()),
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("unknown status ({error})"),
    }
}

/// One server stopped by itself: stop the other and say which failed, and why.
async fn failed(status: String, stopped: &Server, other: &mut Server) -> Result<()> {
    // Let the last lines of its output arrive before quoting them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    other.stop().await;
    let why = stopped.last_error();
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    };
    bail!(
        "{} stopped by itself ({status}){why}; stopped {} too",
        stopped.demo.package,
        other.demo.package
    )
}

/// Resolves on Ctrl-C or SIGTERM, naming which.
async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
            _ = terminate.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
