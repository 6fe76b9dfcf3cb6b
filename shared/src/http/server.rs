//! The connection loop both demos run: accept, serve warp routes over HTTP/1.1
//! with upgrades, and shut down cleanly.
//!
//! warp's own `serve` hides the connection, but a push server needs it: a stalled
//! event stream must be cut at the socket (hyper stops polling a body whose
//! client does not read, so ending the body is not enough), and shutdown must
//! reach every connection. So each connection is served here with hyper, and
//! every request carries a [`Conn`] that a route can use to close it.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::http;
use warp::{Filter, Rejection, Reply};

use super::context::Conn;
use super::refusal::answer_rejection;
use crate::policy::{Reason, Rejections};

/// Listening failed, on `addr`.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match self.source.kind() {
            io::ErrorKind::AddrInUse => " (is another server running? choose another --port)",
            io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
            io::ErrorKind::AddrNotAvailable => " (no such address on this machine)",
            _ => "",
        };
        write!(f, "cannot listen on {}: {}{hint}", self.addr, self.source)
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Listens on `addr` (port 0 picks a free port); the address it got.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let bind_error = |source| BindError { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// What the connection loop needs of the server around it.
#[derive(Clone)]
pub struct Lifecycle {
    /// Cancelled to stop accepting and wind every connection down.
    pub shutdown: CancellationToken,
    /// Where connections run, so that shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Where requests hyper cannot parse are counted.
    pub rejections: Arc<Rejections>,
}

/// Serves `routes` on `listener`, in a task of `lifecycle.tasks`, until
/// `lifecycle.shutdown` is cancelled. What no route answers gets a JSON error.
pub fn serve<F, R>(listener: TcpListener, routes: F, lifecycle: Lifecycle)
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let service = TowerToHyperService::new(warp::service(routes.recover(answer_rejection)));
    let tasks = lifecycle.tasks.clone();
    tasks.spawn(accept_loop(listener, service, lifecycle));
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

async fn accept_loop(listener: TcpListener, service: impl Routes, lifecycle: Lifecycle) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = lifecycle.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let connection = serve_connection(stream, peer, service.clone(), lifecycle.clone());
                lifecycle.tasks.spawn(connection);
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
    lifecycle: Lifecycle,
) {
    let _ = stream.set_nodelay(true);
    let conn = Conn {
        peer,
        close: CancellationToken::new(),
    };
    let close = conn.close.clone();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(conn.clone());
        service.call(request)
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
        () = lifecycle.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection => result,
                () = close.cancelled() => Ok(()),
            }
        }
    };
    match result {
        Err(error) if error.is_parse() => {
            let what = error.to_string();
            lifecycle
                .rejections
                .record(Reason::MalformedHttp, peer, &what);
        }
        Err(error) => log::debug!("{peer}: connection ended: {error}"),
        Ok(()) => {}
    }
}
