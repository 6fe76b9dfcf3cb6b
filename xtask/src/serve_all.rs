//! `cargo xtask serve-all`: both demos at once, one instance of each or
//! several sharing a Redis, maybe behind nginx or over TLS, all stopped
//! together.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::future::{join_all, select_all};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

use harness::proxy::Nginx;
use harness::tls::Certificate;

use crate::flags;
use crate::servers::{self, DEMOS, Demo, Instance, Kind, Profile, Server};

const PATIENCE: Duration = Duration::from_secs(30);

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

    /// The certificate to serve with, with --tls.
    fn certificate(&self) -> Result<Option<Certificate>> {
        Ok(match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Certificate::given(cert, key)),
            _ if self.tls => Some(Certificate::generated()?),
            _ => None,
        })
    }

    /// Where nginx listens for each demo, with --proxy: a free port for 0.
    fn proxy_addrs(&self) -> Result<Option<[SocketAddr; 2]>> {
        if !self.proxy {
            return Ok(None);
        }
        let bind: IpAddr = self
            .bind
            .parse()
            .with_context(|| format!("--bind {}: not an IP address", self.bind))?;
        let addr = |kind| -> Result<SocketAddr> {
            let port = match self.proxy_port(kind) {
                0 => servers::free_port()?,
                port => port,
            };
            Ok(SocketAddr::new(bind, port))
        };
        Ok(Some([addr(Kind::WebSocket)?, addr(Kind::Sse)?]))
    }

    fn server_args(
        &self,
        port: u16,
        certificate: Option<&Certificate>,
        proxy: Option<SocketAddr>,
    ) -> Vec<String> {
        let mut args = vec![
            "--bind".into(),
            self.bind.clone(),
            "--port".into(),
            port.to_string(),
        ];
        if let Some(interval) = &self.interval {
            args.extend(["--interval".into(), interval.clone()]);
        }
        if let Some(redis) = &self.redis {
            args.extend(["--redis".into(), redis.clone()]);
        }
        if let Some(certificate) = certificate {
            args.extend(certificate.options());
            // The page's own origin is https:// now, which the servers do
            // not count as their own.
            for host in hosts(&self.bind) {
                args.extend(["--allowed-origin".into(), format!("https://{host}:{port}")]);
            }
        }
        if let Some(proxy) = proxy {
            // nginx reaches the instances from the address they listen on.
            args.extend([
                "--trusted-proxy".into(),
                upstream_ip(proxy.ip()).to_string(),
            ]);
            for host in hosts(&self.bind) {
                let origin = format!("http://{host}:{}", proxy.port());
                args.extend(["--allowed-origin".into(), origin]);
            }
        }
        args
    }
}

/// The names a page may be opened with on `bind`.
fn hosts(bind: &str) -> Vec<String> {
    match bind.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() || ip.is_unspecified() => {
            vec!["localhost".into(), "127.0.0.1".into()]
        }
        Ok(IpAddr::V6(ip)) => vec![format!("[{ip}]")],
        _ => vec![bind.to_owned()],
    }
}

/// Where a listener on `ip` is reached from this machine.
fn upstream_ip(ip: IpAddr) -> IpAddr {
    if ip.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        ip
    }
}

/// What stopped the wait for something else.
enum Stopped {
    Signal(&'static str),
    /// A server exited by itself: its index, and how.
    Server(usize, String),
    /// nginx exited by itself, and how.
    Nginx(String),
}

async fn serve(flags: &flags::ServeAll) -> Result<()> {
    // From the start: a Ctrl-C while the servers start is not lost.
    let mut signals = Signals::listen()?;
    let certificate = flags.certificate()?;
    let proxy = flags.proxy_addrs()?;
    let mut servers = Vec::new();
    for (demo, k, instance) in flags.instances() {
        let port = match flags.port(demo.kind, k) {
            // Its https:// origin is allowed by port, so the port must be known.
            0 if certificate.is_some() => servers::free_port()?,
            port => port,
        };
        let proxy = proxy.map(|addrs| match demo.kind {
            Kind::WebSocket => addrs[0],
            Kind::Sse => addrs[1],
        });
        let args = flags.server_args(port, certificate.as_ref(), proxy);
        match servers::start(demo, instance, &args, "info", Profile::Debug) {
            Ok(server) => servers.push(server),
            Err(error) => {
                stop_all(&mut servers, None).await;
                return Err(error);
            }
        }
    }
    let all = match servers.len() {
        2 => "both".to_owned(),
        count => format!("all {count}"),
    };

    let urls = {
        let (exit, urls) = exits_and_urls(&mut servers);
        until(&mut signals, exit, None, every_url(urls)).await
    };
    let urls = match urls {
        Ok(urls) => urls,
        Err(stopped) => return end(stopped, &mut servers, None, &all).await,
    };
    let urls: Vec<String> = match &certificate {
        Some(_) => urls.iter().map(|url| servers::https(url)).collect(),
        None => urls,
    };
    let mut nginx = match proxy {
        Some(listen) => {
            let started = nginx_in_front(&urls, &servers, listen);
            match started {
                Ok(nginx) => Some(nginx),
                Err(error) => {
                    stop_all(&mut servers, None).await;
                    return Err(error);
                }
            }
        }
        None => None,
    };
    if let Some(nginx) = &mut nginx {
        let listening = until(
            &mut signals,
            exits(&mut servers),
            None,
            nginx.listening(PATIENCE),
        )
        .await;
        match listening {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                stop_all(&mut servers, Some(nginx)).await;
                let others = match servers.len() {
                    2 => "both servers".to_owned(),
                    count => format!("all {count} servers"),
                };
                bail!("{error:#}; stopped {others} too");
            }
            Err(stopped) => return end(stopped, &mut servers, Some(nginx), &all).await,
        }
    }

    print_urls(
        flags,
        &servers,
        &urls,
        nginx.as_ref(),
        certificate.as_ref(),
        &all,
    );
    let stopped = until(
        &mut signals,
        exits(&mut servers),
        nginx.as_mut(),
        std::future::pending::<()>(),
    )
    .await;
    match stopped {
        Err(stopped) => end(stopped, &mut servers, nginx.as_mut(), &all).await,
        Ok(()) => Ok(()),
    }
}

/// Starts nginx in front of the instances at `urls`.
fn nginx_in_front(urls: &[String], servers: &[Server], listen: [SocketAddr; 2]) -> Result<Nginx> {
    let mut upstreams = [Vec::new(), Vec::new()];
    for (url, server) in urls.iter().zip(servers) {
        let addr = servers::addr(url)?;
        let addr = SocketAddr::new(upstream_ip(addr.ip()), addr.port());
        let index = match server.demo.kind {
            Kind::WebSocket => 0,
            Kind::Sse => 1,
        };
        upstreams[index].push(addr);
    }
    Nginx::spawn(listen, &upstreams[0], &upstreams[1])
}

fn print_urls(
    flags: &flags::ServeAll,
    servers: &[Server],
    urls: &[String],
    nginx: Option<&Nginx>,
    certificate: Option<&Certificate>,
    all: &str,
) {
    let labels: Vec<String> = servers
        .iter()
        .map(|server| label(server.demo, server.instance))
        .collect();
    let proxied: Vec<(String, String)> = match nginx {
        Some(nginx) => DEMOS
            .iter()
            .map(|demo| (through_nginx(demo), servers::through(nginx, demo.kind)))
            .collect(),
        None => Vec::new(),
    };
    let width = labels
        .iter()
        .chain(proxied.iter().map(|(label, _)| label))
        .map(String::len)
        .max()
        .unwrap_or(0);
    for (label, url) in labels.iter().zip(urls) {
        say!("[xtask] {label:width$} {url}");
    }
    if flags.instances > 1 {
        say!("[xtask] The instances of each demo share one Redis stream.");
    }
    if let Some(certificate) = certificate {
        say!("[xtask] Certificate: {}", certificate.cert.display());
        if certificate.generated {
            let trust = match certificate.spki_sha256() {
                Ok(hash) => {
                    format!("or start Chromium with --ignore-certificate-errors-spki-list={hash}")
                }
                Err(_) => "or start Chromium with --ignore-certificate-errors".to_owned(),
            };
            say!(
                "[xtask] It is self-signed for localhost and 127.0.0.1: accept the browser's \
                 warning once, {trust}"
            );
            say!(
                "[xtask] To serve a trusted one: --tls-cert FILE --tls-key FILE (e.g. made by mkcert)."
            );
        }
    }
    if nginx.is_some() {
        say!("[xtask] nginx (deploy/nginx.conf) spreads pages over the instances; open these:");
        for (label, url) in &proxied {
            say!("[xtask] {label:width$} {url}");
        }
        say!("[xtask] Ctrl-C stops nginx and {all} servers.");
    } else {
        say!("[xtask] Open them in a browser; Ctrl-C stops {all}.");
    }
}

/// Runs `work` until it ends, or until a signal comes or a server or nginx
/// exits.
async fn until<T>(
    signals: &mut Signals,
    exit: impl Future<Output = (usize, String)>,
    nginx: Option<&mut Nginx>,
    work: impl Future<Output = T>,
) -> Result<T, Stopped> {
    let nginx_exit = async {
        match nginx {
            Some(nginx) => servers::describe(nginx.exited().await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        signal = signals.next() => Err(Stopped::Signal(signal)),
        (index, status) = exit => Err(Stopped::Server(index, status)),
        status = nginx_exit => Err(Stopped::Nginx(status)),
        done = work => Ok(done),
    }
}

/// Stops everything, and says why.
async fn end(
    stopped: Stopped,
    servers: &mut [Server],
    mut nginx: Option<&mut Nginx>,
    all: &str,
) -> Result<()> {
    match stopped {
        Stopped::Signal(signal) => {
            let (what, stopped) = match nginx {
                Some(_) => (
                    format!("nginx and {all} servers"),
                    format!("nginx and {all} servers"),
                ),
                None => (
                    format!("{all} servers"),
                    format!("{} servers", capitalized(all)),
                ),
            };
            say!("[xtask] {signal}: stopping {what}");
            stop_all(servers, nginx.as_deref_mut()).await;
            say!("[xtask] {stopped} stopped");
            Ok(())
        }
        Stopped::Server(index, status) => failed(status, index, servers, nginx).await,
        Stopped::Nginx(status) => {
            // Let its last lines arrive before quoting them.
            tokio::time::sleep(Duration::from_millis(50)).await;
            stop_all(servers, None).await;
            let why = nginx.map(|nginx| nginx.why()).unwrap_or_default();
            bail!("nginx stopped by itself ({status}){why}; stopped {all} servers too")
        }
    }
}

/// Each server's exit, as one future of the first: its index and how.
fn exits(servers: &mut [Server]) -> impl Future<Output = (usize, String)> + '_ {
    exits_and_urls(servers).0
}

/// Each server split in two: its exit, and its URL (with its label).
fn exits_and_urls(
    servers: &mut [Server],
) -> (
    impl Future<Output = (usize, String)> + '_,
    Vec<&mut oneshot::Receiver<String>>,
) {
    let (waits, urls): (Vec<_>, Vec<_>) = servers
        .iter_mut()
        .enumerate()
        .map(|(index, server)| {
            let exit = server.child.wait();
            let exit = Box::pin(async move { (index, servers::describe(exit.await)) });
            (exit, &mut server.url)
        })
        .unzip();
    // Only the first exit: the other waits (and their borrows) end with it.
    (async { select_all(waits).await.0 }, urls)
}

/// Every server's URL, once all listen; never, if one stops first (its exit
/// is reported instead).
async fn every_url(urls: Vec<&mut oneshot::Receiver<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for url in urls {
        match url.await {
            Ok(url) => found.push(url),
            Err(_) => std::future::pending().await,
        }
    }
    found
}

/// What the URL lines call a server: `WebSocket demo:`, or `WebSocket demo 2:`.
fn label(demo: &Demo, instance: Instance) -> String {
    match instance {
        Instance::Only => format!("{}:", long_name(demo)),
        Instance::Nth(n) => format!("{} {n}:", long_name(demo)),
    }
}

/// What the URL lines call a demo through nginx.
fn through_nginx(demo: &Demo) -> String {
    format!("{} through nginx:", long_name(demo))
}

fn long_name(demo: &Demo) -> &'static str {
    match demo.kind {
        Kind::WebSocket => "WebSocket demo",
        Kind::Sse => "Server-Sent Events demo",
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

async fn stop_all(servers: &mut [Server], nginx: Option<&mut Nginx>) {
    let nginx = async {
        if let Some(nginx) = nginx {
            nginx.stop().await;
        }
    };
    tokio::join!(join_all(servers.iter_mut().map(Server::stop)), nginx);
}

/// One server stopped by itself: stop the others (and nginx) and say which
/// failed, and why.
async fn failed(
    status: String,
    index: usize,
    servers: &mut [Server],
    nginx: Option<&mut Nginx>,
) -> Result<()> {
    // Let the last lines of its output arrive before quoting them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let with_nginx = if nginx.is_some() { " and nginx" } else { "" };
    stop_all(servers, nginx).await;
    let stopped = &servers[index];
    let why = stopped.last_error();
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    };
    let others = match servers.len() {
        2 => format!("stopped {}{with_nginx} too", servers[1 - index].name()),
        count => format!("stopped the other {}{with_nginx} too", count - 1),
    };
    bail!(
        "{} stopped by itself ({status}){why}; {others}",
        stopped.name()
    )
}

/// Ctrl-C and SIGTERM, listened to from the moment this is made.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn listen() -> Result<Signals> {
        let listen = |kind| signal(kind).context("cannot listen for Ctrl-C and SIGTERM");
        Ok(Signals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next Ctrl-C or SIGTERM, naming which.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "Ctrl-C",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
