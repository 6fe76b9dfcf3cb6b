//! The binaries' common `main`: read the options, assemble a server from a
//! hub, a publisher and the demo's routes, and serve until a signal.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use warp::{Filter, Rejection, Reply};

use crate::backplane::{self, Redis};
use crate::config::{Config, Defaults, Parsed};
use crate::core::{Framer, Hub, HubConfig, Local, Publisher, ticker};
use crate::http::connections::SPARE_DESCRIPTORS;
use crate::http::{self, BindError, Connections, Context, Handover, Tasks, Transport, observe};
use crate::policy::rejections::LOG_WINDOW;
use crate::policy::{Inbox, Origins, Rejections, TrustedProxies};

/// Why a server did not start.
#[derive(Debug)]
pub enum StartError {
    Bind(BindError),
    Backplane(String),
    Tls(http::tls::TlsError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(error) => error.fmt(f),
            StartError::Backplane(why) => write!(f, "--redis: {why}"),
            StartError::Tls(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    /// Whether it speaks TLS (`https://`, `wss://`).
    pub tls: bool,
    pub hub: Arc<Hub>,
    /// Where broadcasts are published; tests publish here too.
    pub publisher: Arc<dyn Publisher>,
    context: Context,
}

impl Server {
    /// Binds, then serves the demo's `routes` (plus `/healthz` and
    /// `/metrics`) with broadcasts framed by `frame`, until [`Server::shutdown`];
    /// `defaults` say whether the routes upgrade connections.
    pub async fn start<R, T>(
        config: Config,
        defaults: &Defaults,
        frame: Framer,
        routes: impl FnOnce(Context) -> R,
    ) -> Result<Server, StartError>
    where
        R: Filter<Extract = (T,), Error = Rejection> + Clone + Send + Sync + 'static,
        T: Reply,
    {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                Some(http::tls::acceptor(cert, key).map_err(StartError::Tls)?)
            }
            _ => None,
        };
        let context_tls = tls.is_some();
        let wanted = SocketAddr::new(config.bind, config.port);
        let (listener, addr) = http::bind(wanted).await.map_err(StartError::Bind)?;
        let connection_limit = connection_limit();
        let max_clients = config.max_clients.min(connection_limit);
        if max_clients < config.max_clients {
            log::info!(
                "Taking at most {max_clients} clients, not --max-clients {}: \
                 the open-file limit allows no more connections",
                config.max_clients
            );
        }
        let hub_config = HubConfig {
            replay: config.replay,
            client_queue: config.client_queue as usize,
            max_clients,
        };
        let shutdown = CancellationToken::new();
        let tasks = Tasks::new();
        // One publisher for the whole server, and the one feed of its hub:
        // alone, or sharing a Redis stream.
        let (hub, publisher): (Arc<Hub>, Arc<dyn Publisher>) = match &config.redis {
            None => {
                let (hub, feed) = Hub::local(hub_config, frame);
                (hub, Arc::new(Local::new(feed)))
            }
            Some(url) => {
                let (hub, feed) = Hub::backplane(hub_config, frame, backplane::AHEAD);
                let stream = &config.redis_stream;
                let redis = Redis::new(url, stream, feed, config.replay, config.max_message)
                    .map_err(|error| StartError::Backplane(error.to_string()))?;
                tasks.spawn_named("the Redis backplane's reader", redis.run(shutdown.clone()));
                (hub, Arc::new(redis))
            }
        };
        let rejections = Arc::new(Rejections::default());
        let inbox = Inbox::new(
            publisher.clone(),
            rejections.clone(),
            config.rate,
            config.burst,
        );
        let context = Context {
            hub: hub.clone(),
            inbox: Arc::new(inbox),
            origins: Arc::new(Origins::new(&config.allowed_origins, addr, tls.is_some())),
            proxies: Arc::new(TrustedProxies::new(&config.trusted_proxies)),
            config: Arc::new(config),
            rejections: rejections.clone(),
            shutdown,
            tasks,
        };
        let stop = context.shutdown.clone();
        let tick = ticker::run(publisher.clone(), context.config.interval, stop);
        context.tasks.spawn_named("the ticker", tick);
        let summary = summarize_refusals(rejections.clone(), context.shutdown.clone());
        context
            .tasks
            .spawn_named("the summary of refusals", summary);
        let observed = observe::routes(
            hub.clone(),
            publisher.clone(),
            rejections,
            context.tasks.clone(),
        );
        let all_routes = routes(context.clone()).or(observed);
        let transport = Transport {
            shutdown: context.shutdown.clone(),
            tasks: context.tasks.clone(),
            rejections: context.rejections.clone(),
            connections: Connections::new(
                connection_limit,
                context.config.max_clients_per_address,
                context.proxies.clone(),
            ),
            request_timeout: context.config.request_timeout,
            tls,
            handover: if defaults.upgrades {
                Handover::Upgrades
            } else {
                Handover::EventStreams
            },
        };
        http::serve(listener, all_routes, transport);
        Ok(Server {
            addr,
            tls: context_tls,
            hub,
            publisher,
            context,
        })
    }

    /// Counts of what the server refused.
    pub fn rejections(&self) -> &Rejections {
        &self.context.rejections
    }

    /// Begins a graceful shutdown: stop accepting, end every stream, tell every
    /// WebSocket client the server is going away.
    pub fn shutdown(&self) {
        self.context.shutdown.cancel();
        self.hub.close();
    }

    /// Waits for every connection and task to finish, at most the shutdown
    /// timeout. Returns false if some did not finish in time.
    pub async fn stopped(&self) -> bool {
        let tasks = &self.context.tasks;
        tasks.close();
        let limit = self.context.config.shutdown_timeout;
        tokio::time::timeout(limit, tasks.wait()).await.is_ok()
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down.
    async fn run_until(self, mut signals: Signals) {
        let signal = signals.recv().await;
        log::info!("{signal} received, shutting down");
        self.shutdown();
        if self.stopped().await {
            log::info!("Stopped");
        } else {
            log::warn!(
                "Some connections did not finish within {:?}; stopping anyway",
                self.context.config.shutdown_timeout
            );
        }
    }
}

/// How many connections the open-file limit leaves room for, keeping some
/// descriptors spare (see [`http::connections`]).
fn connection_limit() -> usize {
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((u64::MAX, u64::MAX));
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    soft.saturating_sub(SPARE_DESCRIPTORS).max(1)
}

/// Logs the summary of each flood of refusals once it ends, until shutdown.
async fn summarize_refusals(rejections: Arc<Rejections>, stop: CancellationToken) {
    let mut every = tokio::time::interval(LOG_WINDOW);
    loop {
        tokio::select! {
            _ = every.tick() => rejections.flush(),
            () = stop.cancelled() => break,
        }
    }
    rejections.flush();
}

/// Runs a server binary: parse options, start, serve until a signal. Errors a
/// user can cause print one line and exit with status 1.
pub fn main<R, T>(defaults: &Defaults, frame: Framer, routes: impl FnOnce(Context) -> R) -> ExitCode
where
    R: Filter<Extract = (T,), Error = Rejection> + Clone + Send + Sync + 'static,
    T: Reply,
{
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::parse(defaults, std::env::args_os()) {
        Parsed::Run(config) => *config,
        Parsed::Print(text) => {
            // Ignore a closed pipe (`--help | head`): nothing is left to tell.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            return ExitCode::SUCCESS;
        }
        Parsed::Error(line) => {
            eprintln!("{line}");
            return ExitCode::FAILURE;
        }
    };
    // Every client holds a file descriptor; the usual soft limit of 1024 would
    // refuse connections long before --max-clients.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::debug!("Open file limit: {limit}"),
        Err(error) => log::warn!("Cannot raise the open file limit: {error}"),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let signals = match Signals::listen() {
            Ok(signals) => signals,
            Err(error) => {
                eprintln!("error: cannot listen for Ctrl-C and SIGTERM: {error}");
                return ExitCode::FAILURE;
            }
        };
        match Server::start(config, defaults, frame, routes).await {
            Ok(server) => {
                // On stdout, whatever RUST_LOG says: people and `cargo xtask serve-all` look for it.
                let scheme = if server.tls { "https" } else { "http" };
                let line = format!(
                    "{} listening on {scheme}://{}/\n",
                    defaults.name, server.addr
                );
                let _ = std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes());
                server.run_until(signals).await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The signals that ask a server to stop, listened to from the moment this
/// is made: one that comes before the server waits for it is not lost.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Resolves on Ctrl-C (SIGINT) or SIGTERM, naming the one that came.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "Ctrl-C",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
