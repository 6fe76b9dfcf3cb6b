//! The server loop both demos run: accept, serve warp routes over HTTP/1.1 with
//! upgrades, stream long-lived bodies from shared bytes, and shut down cleanly.
//!
//! warp's own `serve` hides the connection, but a push server needs it: a stalled
//! event stream must be cut at the socket (hyper stops polling a body whose
//! client does not read, so ending the body is not enough), and shutdown must
//! reach every connection. So each connection is served here with hyper, and
//! every request carries a [`Conn`] that a route can use to close it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::http;
use warp::{Filter, Rejection, Reply};

use crate::config::Config;
use crate::guard::{Origins, Reason, Rejections};
use crate::hub::{Hub, HubConfig, SubscribeError};
use crate::{observe, ticker};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The connection a request came on; get it with `warp::ext::get::<Conn>()`.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    /// Cancel to drop the connection at once, whatever it is doing.
    pub close: CancellationToken,
}

/// What routes share: the hub, the options, and the server's lifecycle.
#[derive(Clone)]
pub struct Context {
    pub hub: Arc<Hub>,
    pub config: Arc<Config>,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Tasks the server waits for before it exits (WebSocket sessions).
    pub tasks: TaskTracker,
    /// The origins whose pages may connect.
    pub origins: Arc<Origins>,
    /// Counts of what the server refused.
    pub rejections: Arc<Rejections>,
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    context: Context,
}

/// Binding failed; the message names the address and the cause.
#[derive(Debug)]
pub struct BindError(pub String);

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BindError {}

impl Server {
    /// Binds, then serves `routes` until [`Server::shutdown`].
    pub async fn start<F, R>(
        config: Config,
        routes: impl FnOnce(Context) -> F,
    ) -> Result<Server, BindError>
    where
        F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
        R: Reply,
    {
        let wanted = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(wanted).await.map_err(|error| {
            let hint = match error.kind() {
                std::io::ErrorKind::AddrInUse => {
                    " (is another server running? choose another --port)"
                }
                std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
                std::io::ErrorKind::AddrNotAvailable => " (no such address on this machine)",
                _ => "",
            };
            BindError(format!("cannot listen on {wanted}: {error}{hint}"))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|error| BindError(format!("cannot read the bound address: {error}")))?;
        let hub = Hub::new(HubConfig {
            replay: config.replay,
            client_queue: config.client_queue as usize,
            max_clients: config.max_clients,
        });
        let context = Context {
            hub: hub.clone(),
            origins: Arc::new(Origins::new(&config.allowed_origins, addr)),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            rejections: Arc::new(Rejections::default()),
        };
        let all_routes = routes(context.clone())
            .or(observe::routes(context.clone()))
            .recover(answer_rejection);
        let service = TowerToHyperService::new(warp::service(all_routes));
        context.tasks.spawn(ticker::run(
            hub.clone(),
            context.config.interval,
            context.shutdown.clone(),
        ));
        context
            .tasks
            .spawn(accept_loop(listener, service, context.clone()));
        Ok(Server { addr, hub, context })
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
    pub async fn run_until_signal(self) {
        let signal = crate::shutdown::signal().await;
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

/// The warp routes as a hyper service, shared by every connection.
trait Routes:
    Service<
        http::Request<Incoming>,
        Response = warp::reply::Response,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Routes for S where
    S: Service<
            http::Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

async fn accept_loop(listener: TcpListener, service: impl Routes, context: Context) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = context.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let connection = serve_connection(stream, peer, service.clone(), context.clone());
                context.tasks.spawn(connection);
            }
            Err(error) => {
                // Out of file descriptors, typically: wait instead of spinning.
                log::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    service: impl Routes,
    context: Context,
) {
    let _ = stream.set_nodelay(true);
    let conn = Conn {
        peer,
        close: CancellationToken::new(),
    };
    let close = conn.close.clone();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(conn.clone());
        let response = service.call(request);
        async move {
            let Ok(response) = response.await;
            Ok::<_, Infallible>(into_streaming(response))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = close.cancelled() => Ok(()),
        () = context.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection => result,
                () = close.cancelled() => Ok(()),
            }
        }
    };
    match result {
        Err(error) if error.is_parse() => {
            context
                .rejections
                .record(Reason::MalformedHttp, peer, &error.to_string());
        }
        Err(error) => log::debug!("{peer}: connection ended: {error}"),
        Ok(()) => {}
    }
}

/// A response extension asking the server to stream this body instead of the
/// (empty) one the route returned. It lets a warp route answer with a stream of
/// shared `Bytes`, written as they come, with no copy per client.
#[derive(Clone)]
pub struct StreamingBody(Arc<Mutex<Option<BoxStream<'static, Bytes>>>>);

/// A response whose body is `stream`, with the given headers.
pub fn streaming_response(
    headers: &[(http::HeaderName, &'static str)],
    stream: BoxStream<'static, Bytes>,
) -> warp::reply::Response {
    let mut response = warp::reply::Response::new("".into());
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, http::HeaderValue::from_static(value));
    }
    response
        .extensions_mut()
        .insert(StreamingBody(Arc::new(Mutex::new(Some(stream)))));
    response
}

fn into_streaming(response: warp::reply::Response) -> http::Response<Body> {
    let (mut parts, body) = response.into_parts();
    let stream = parts
        .extensions
        .remove::<StreamingBody>()
        .and_then(|StreamingBody(slot)| slot.lock().ok()?.take());
    let body = match stream {
        Some(stream) => StreamBody::new(stream.map(|bytes| Ok::<_, BoxError>(Frame::data(bytes))))
            .boxed_unsync(),
        None => body.map_err(BoxError::from).boxed_unsync(),
    };
    http::Response::from_parts(parts, body)
}

/// Runs a server binary: parse options, start, serve until a signal. Errors a
/// user can cause print one line and exit with status 1.
pub fn main<F, R>(
    defaults: &crate::config::Defaults,
    routes: impl FnOnce(Context) -> F,
) -> std::process::ExitCode
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply,
{
    use crate::config::Parsed;
    use std::process::ExitCode;

    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::parse(defaults, std::env::args_os()) {
        Parsed::Run(config) => config,
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
        match Server::start(config, routes).await {
            Ok(server) => {
                // On stdout, whatever RUST_LOG says: people and `cargo xtask serve-all` look for it.
                let line = format!("{} listening on http://{}/\n", defaults.name, server.addr);
                let _ = std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes());
                server.run_until_signal().await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// An error answer: `status`, with `{"error": why}` as a JSON body.
pub fn error_response(status: http::StatusCode, why: &str) -> warp::reply::Response {
    let body = warp::reply::json(&serde_json::json!({ "error": why }));
    warp::reply::with_status(body, status).into_response()
}

/// What no route answered (an unknown path, a bad query string...), as a
/// JSON error like every other refusal, instead of warp's plain text.
async fn answer_rejection(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    use http::StatusCode;
    use warp::reject::{
        InvalidHeader, InvalidQuery, LengthRequired, MethodNotAllowed, MissingHeader,
        PayloadTooLarge, UnsupportedMediaType,
    };
    fn known<T: std::fmt::Display + 'static>(
        rejection: &Rejection,
        status: StatusCode,
    ) -> Option<(StatusCode, String)> {
        rejection
            .find::<T>()
            .map(|error| (status, error.to_string()))
    }
    let bad = StatusCode::BAD_REQUEST;
    let answer = if rejection.is_not_found() {
        Some((StatusCode::NOT_FOUND, "no such page".to_owned()))
    } else {
        known::<InvalidQuery>(&rejection, bad)
            .or_else(|| known::<InvalidHeader>(&rejection, bad))
            .or_else(|| known::<MissingHeader>(&rejection, bad))
            .or_else(|| known::<LengthRequired>(&rejection, StatusCode::LENGTH_REQUIRED))
            .or_else(|| known::<PayloadTooLarge>(&rejection, StatusCode::PAYLOAD_TOO_LARGE))
            .or_else(|| {
                known::<UnsupportedMediaType>(&rejection, StatusCode::UNSUPPORTED_MEDIA_TYPE)
            })
            .or_else(|| known::<MethodNotAllowed>(&rejection, StatusCode::METHOD_NOT_ALLOWED))
    };
    let (status, why) = answer.unwrap_or_else(|| {
        log::error!("Unexpected rejection: {rejection:?}");
        let why = "internal error".to_owned();
        (StatusCode::INTERNAL_SERVER_ERROR, why)
    });
    if status == StatusCode::NOT_FOUND {
        log::debug!("Refused a request: {status} {why}");
    } else {
        log::info!("Refused a request: {status} {why}");
    }
    Ok(error_response(status, &why))
}

/// Counts and logs a refused request, and answers it with `status`.
pub fn refuse(
    context: &Context,
    conn: &Conn,
    reason: Reason,
    status: http::StatusCode,
    why: &str,
) -> warp::reply::Response {
    let what = format!("{} {why}", status.as_u16());
    context.rejections.record(reason, conn.peer, &what);
    error_response(status, why)
}

/// The answer when the hub will not take a new client: 503 either way, counted
/// as a capacity refusal when it is full.
pub fn refuse_subscription(
    context: &Context,
    conn: &Conn,
    error: SubscribeError,
) -> warp::reply::Response {
    let status = http::StatusCode::SERVICE_UNAVAILABLE;
    match error {
        SubscribeError::Full => {
            let why = "the server has as many clients as it takes";
            refuse(context, conn, Reason::Capacity, status, why)
        }
        SubscribeError::Closed => error_response(status, "the server is shutting down"),
    }
}
