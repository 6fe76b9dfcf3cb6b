//! `cargo xtask serve-all`: both demos at once, stopped together.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::flags;
use crate::servers::{self, Demo, Kind, Profile, Server};

impl flags::ServeAll {
    pub fn run(self) -> Result<()> {
        if !self.no_build {
            servers::build(Profile::Debug)?;
        }
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        runtime.block_on(serve(&self))
    }

    fn server_args(&self, demo: &Demo) -> Vec<String> {
        let port = match demo.kind {
            Kind::WebSocket => self.ws_port,
            Kind::Sse => self.sse_port,
        };
        let mut args = vec![
            "--bind".into(),
            self.bind.clone(),
            "--port".into(),
            port.to_string(),
        ];
        if let Some(interval) = &self.interval {
            args.extend(["--interval".into(), interval.clone()]);
        }
        args
    }
}

async fn serve(flags: &flags::ServeAll) -> Result<()> {
    let start = |kind: Kind| {
        let demo = kind.demo();
        servers::start(demo, &flags.server_args(demo), "info", Profile::Debug)
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
