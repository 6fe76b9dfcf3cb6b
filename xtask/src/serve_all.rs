//! `cargo xtask serve-all`: both demos at once, one instance of each or
//! several sharing a Redis, all stopped together.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::future::{join_all, select_all};

use crate::flags;
use crate::servers::{self, DEMOS, Demo, Instance, Kind, Profile, Server};

impl flags::ServeAll {
    pub fn run(self) -> Result<()> {
        if !self.no_build {
            servers::build(Profile::Debug)?;
        }
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        runtime.block_on(serve(&self))
    }

    /// Every server to start: each demo's instances, WebSocket first.
    fn instances(&self) -> Vec<(&'static Demo, usize, Instance)> {
        DEMOS
            .iter()
            .flat_map(|demo| {
                (0..self.instances).map(move |k| {
                    let instance = match self.instances {
                        1 => Instance::Only,
                        _ => Instance::Nth(k + 1),
                    };
                    (demo, k, instance)
                })
            })
            .collect()
    }

    fn server_args(&self, demo: &Demo, k: usize) -> Vec<String> {
        let mut args = vec![
            "--bind".into(),
            self.bind.clone(),
            "--port".into(),
            self.port(demo.kind, k).to_string(),
        ];
        if let Some(interval) = &self.interval {
            args.extend(["--interval".into(), interval.clone()]);
        }
        if let Some(redis) = &self.redis {
            args.extend(["--redis".into(), redis.clone()]);
        }
        args
    }
}

async fn serve(flags: &flags::ServeAll) -> Result<()> {
    let mut servers = Vec::new();
    for (demo, k, instance) in flags.instances() {
        match servers::start(
            demo,
            instance,
            &flags.server_args(demo, k),
            "info",
            Profile::Debug,
        ) {
            Ok(server) => servers.push(server),
            Err(error) => {
                stop_all(&mut servers).await;
                return Err(error);
            }
        }
    }
    let all = match servers.len() {
        2 => "both".to_owned(),
        count => format!("all {count}"),
    };
    // Each server split in two: its exit, and its URL (which is printed).
    let (exits, urls): (Vec<_>, Vec<_>) = servers
        .iter_mut()
        .enumerate()
        .map(|(index, server)| {
            let exit = server.child.wait();
            let exit = Box::pin(async move { (index, exit.await) });
            let label = label(server.demo, server.instance);
            (exit, (label, &mut server.url))
        })
        .collect();
    let urls = async {
        let width = urls.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
        let mut printed = Vec::new();
        for (label, url) in urls {
            match url.await {
                Ok(url) => printed.push(format!("[xtask] {label:width$} {url}")),
                // It stopped: its exit is reported instead.
                Err(_) => std::future::pending().await,
            }
        }
        for line in printed {
            say!("{line}");
        }
        if flags.instances > 1 {
            say!("[xtask] The instances of each demo share one Redis stream.");
        }
        say!("[xtask] Open them in a browser; Ctrl-C stops {all}.");
        std::future::pending::<()>().await;
    };
    tokio::select! {
        signal = signal() => {
            say!("[xtask] {signal}: stopping {all} servers");
            stop_all(&mut servers).await;
            say!("[xtask] {} servers stopped", capitalized(&all));
            Ok(())
        }
        // Only the first exit: the other waits (and their borrows) end here.
        (index, status) = async { select_all(exits).await.0 } => {
            failed(describe(status), index, &mut servers).await
        }
        () = urls => Ok(()),
    }
}

/// What the URL lines call a server: `WebSocket demo:`, or `WebSocket demo 2:`.
fn label(demo: &Demo, instance: Instance) -> String {
    let name = match demo.kind {
        Kind::WebSocket => "WebSocket demo",
        Kind::Sse => "Server-Sent Events demo",
    };
    match instance {
        Instance::Only => format!("{name}:"),
        Instance::Nth(n) => format!("{name} {n}:"),
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

async fn stop_all(servers: &mut [Server]) {
    join_all(servers.iter_mut().map(Server::stop)).await;
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(error) => format!("unknown status ({error})"),
    }
}

/// One server stopped by itself: stop the others and say which failed, and why.
async fn failed(status: String, index: usize, servers: &mut [Server]) -> Result<()> {
    // Let the last lines of its output arrive before quoting them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop_all(servers).await;
    let stopped = &servers[index];
    let why = stopped.last_error();
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    };
    let others = match servers.len() {
        2 => format!("stopped {} too", servers[1 - index].name()),
        count => format!("stopped the other {} too", count - 1),
    };
    bail!(
        "{} stopped by itself ({status}){why}; {others}",
        stopped.name()
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
