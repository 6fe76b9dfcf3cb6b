//! The connection loop both demos run: accept, serve warp routes over HTTP/1.1
//! (with upgrades, or handing event streams over to [`direct`]), and shut
//! down cleanly.
//!
//! warp's own `serve` hides the connection, but a push server needs it: a stalled
//! event stream must be cut at the socket (hyper stops polling a body whose
//! client does not read, so ending the body is not enough), and shutdown must
//! reach every connection. So each connection is served here with hyper, and
//! every request carries a [`Conn`] that a route can use to close it.

use std::convert::Infallible;
use std::error::Error as _;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use warp::http;
use warp::{Filter, Rejection, Reply};

use super::connections::{Admission, Connections};
use super::context::Conn;
use super::direct::{self, Handed};
use super::refusal::{Refusal, answer_rejection};
use super::request;
use super::tasks::Tasks;
use super::tls::Streams;
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

/// How many connections may wait to be accepted. The usual 128 overflows
/// when thousands of clients come back at once (after a restart, say), and
/// each connection the kernel drops waits a second before it tries again.
/// The kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

/// Listens on `addr` (port 0 picks a free port); the address it got.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let bind_error = |source| BindError { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    // As std and tokio do: a restarted server may take its port back while
    // the old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    let listener = socket.listen(BACKLOG).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// What the connection loop needs of the server around it.
#[derive(Clone)]
pub struct Transport {
    /// Cancelled to stop accepting and wind every connection down.
    pub shutdown: CancellationToken,
    /// Where connections run, so that shutdown can wait for them.
    pub tasks: Tasks,
    /// Where refused connections and requests are counted.
    pub rejections: Arc<Rejections>,
    /// Which connections are served.
    pub connections: Arc<Connections>,
    /// Longest a client may take to send a request head.
    pub request_timeout: Duration,
    /// With TLS: `https://` and `wss://`, and HTTP/2 by ALPN.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// What a plain connection may be handed over to.
    pub handover: Handover,
}

/// What a plain HTTP/1.1 connection may be handed over to once a route has
/// answered: hyper lets go of a connection either for an upgrade or before
/// it writes an answer, and of one kind of connection only, so a server picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// Upgrades (the WebSocket handshake), through hyper; an event stream, if
    /// a route answered one, would be written by hyper too.
    Upgrades,
    /// Event streams: written by [`direct`], without hyper's buffers, however
    /// the request was sent and whichever of its connection's requests it is.
    EventStreams,
}

/// The largest request head (request line and headers) a client may send;
/// more gets 431. Browsers send 1 to 2 KiB, and hyper's own ceiling would let
/// one connection pin about 400 KiB.
pub const MAX_HEADER_SIZE: usize = 16 * 1024;

/// The most a connection's read buffer holds at once (a request head fits).
const READ_BUFFER: usize = MAX_HEADER_SIZE + 1024;

/// How long a connection answered from the reserve may take to send its one
/// request: short, so that the reserve turns over.
const RESERVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `routes` on `listener`, in a task of `transport.tasks`, until
/// `transport.shutdown` is cancelled. What no route answers gets a JSON error.
pub fn serve<F, R>(listener: TcpListener, routes: F, transport: Transport)
where
    F: Filter<Extract = (R,), Error = Rejection> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let service = warp::service(routes.recover(answer_rejection));
    let tasks = transport.tasks.clone();
    tasks.spawn_named("the accept loop", accept_loop(listener, service, transport));
}

/// The warp routes as a service, shared by every connection.
trait Routes:
    tower_service::Service<
        http::Request<Incoming>,
        Response = warp::reply::Response,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Routes for S where
    S: tower_service::Service<
            http::Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

async fn accept_loop(listener: TcpListener, service: impl Routes, transport: Transport) {
    let mut failures = Failures::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = transport.shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                failures.recovered();
                let admission = transport.connections.admit(peer);
                let connection =
                    serve_connection(stream, peer, admission, service.clone(), transport.clone());
                transport.tasks.spawn_for(peer, connection);
            }
            Err(error) => {
                failures.failed(&error);
                // Out of file descriptors, typically: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Accept failures come in bursts (out of descriptors, say): the first of a
/// burst is logged, the rest counted and told in one line when it ends.
#[derive(Default)]
struct Failures {
    in_burst: u64,
}

impl Failures {
    fn failed(&mut self, error: &io::Error) {
        if self.in_burst == 0 {
            log::warn!("Cannot accept connections: {error}");
        }
        self.in_burst += 1;
    }

    fn recovered(&mut self) {
        if self.in_burst > 0 {
            log::warn!(
                "Accepting connections again after {} failed attempt(s)",
                self.in_burst
            );
            self.in_burst = 0;
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    admission: Admission,
    routes: impl Routes,
    transport: Transport,
) {
    let _ = stream.set_nodelay(true);
    let (slot, refusal, close) = match admission {
        Admission::Served(slot) => (slot, None, CancellationToken::new()),
        Admission::Reserve(slot, refusal, close) => (slot, Some(refusal), close),
    };
    let reserved = slot.is_reserve();
    let conn = Conn {
        peer,
        close: close.clone(),
        _slot: Arc::new(slot),
    };
    let head_timeout = if reserved {
        RESERVE_TIMEOUT
    } else {
        transport.request_timeout
    };
    // Where a route's event stream waits for `direct`, on a plain connection
    // that hands them over.
    let parked = (transport.tls.is_none() && transport.handover == Handover::EventStreams)
        .then(Parked::default);
    let requests = Arc::new(AtomicU64::new(0));
    let service = Answers {
        routes: TowerToHyperService::new(routes),
        conn: conn.clone(),
        refusal,
        rejections: transport.rejections.clone(),
        parked: parked.clone(),
        requests: requests.clone(),
    };
    // Each kind of connection boxed: the task holds a pointer, and each
    // connection only what its own kind needs.
    let result = match (&transport.tls, parked) {
        (None, Some(parked)) => {
            let served = Box::pin(serve_handing_over(
                stream,
                service,
                &transport,
                head_timeout,
                reserved,
                &close,
            ));
            match served.await {
                Ok(Some((stream, unread))) => {
                    let Some(handed) = parked.take() else { return };
                    let rejections = &transport.rejections;
                    let writing = direct::serve(stream, unread, handed, conn, rejections);
                    return Box::pin(writing).await;
                }
                Ok(None) => Ok(()),
                Err(error) => Err(error),
            }
        }
        (None, None) => {
            Box::pin(serve_plain(
                stream,
                service,
                &transport,
                head_timeout,
                reserved,
                &close,
            ))
            .await
        }
        (Some(acceptor), _) => {
            let handshake = Box::pin(tokio::time::timeout(head_timeout, acceptor.accept(stream)));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    let why = format!("TLS handshake failed: {error}");
                    return transport.rejections.record(Reason::Tls, peer, &why);
                }
                Err(_) => {
                    let why = "no TLS handshake within the time limit";
                    return transport.rejections.record(Reason::Tls, peer, why);
                }
            };
            Box::pin(serve_tls(
                tls,
                service,
                &transport,
                head_timeout,
                reserved,
                &close,
            ))
            .await
        }
    };
    let rejections = &transport.rejections;
    let error = match result {
        Ok(()) => return,
        Err(error) => error,
    };
    match error.downcast_ref::<hyper::Error>() {
        Some(error) if error.is_parse_too_large() => {
            rejections.record(Reason::TooLarge, peer, &error.to_string());
        }
        Some(error) if error.is_parse() => {
            rejections.record(Reason::MalformedHttp, peer, &error.to_string());
        }
        // An idle keep-alive connection timing out is normal; one that never
        // finished a request head is a slow or silent client.
        Some(error) if error.is_timeout() && requests.load(Ordering::Relaxed) == 0 => {
            let why = "no request head within the time limit";
            rejections.record(Reason::SlowRequest, peer, why);
        }
        _ => log::debug!("{peer}: connection ended: {error}"),
    }
}

/// What answers a connection's requests: the routes, behind the checks every
/// request passes first.
#[derive(Clone)]
struct Answers<S> {
    routes: TowerToHyperService<S>,
    conn: Conn,
    /// Over a limit: what every request but `/healthz` and `/metrics` gets.
    refusal: Option<Refusal>,
    rejections: Arc<Rejections>,
    /// Where an event stream is parked for `direct`, if this connection
    /// hands them over.
    parked: Option<Parked>,
    /// How many requests the connection has carried.
    requests: Arc<AtomicU64>,
}

// Nothing in it is ever pinned (each answer is a future of its own), so a
// connection can be polled without pinning and taken back from hyper.
impl<S> Unpin for Answers<S> {}

impl<S: Routes> Service<http::Request<Incoming>> for Answers<S> {
    type Response = warp::reply::Response;
    type Error = HandedOver;
    // Boxed: the routes' future is large, and needed only until the answer.
    type Future = BoxFuture<'static, Result<Self::Response, HandedOver>>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        self.requests.fetch_add(1, Ordering::Relaxed);
        request.extensions_mut().insert(self.conn.clone());
        let refused = request::check(&request)
            .err()
            .or_else(|| match &self.refusal {
                // Over a limit, only health and metrics are answered as usual.
                Some(refusal) if !matches!(request.uri().path(), "/healthz" | "/metrics") => {
                    Some(refusal.clone())
                }
                _ => None,
            });
        if let Some(refusal) = refused {
            let answer = refusal.answer(&self.rejections, self.conn.peer);
            return Box::pin(std::future::ready(Ok(answer)));
        }
        let handing = self
            .parked
            .clone()
            .map(|parked| (parked, request.version(), request::asks_close(&request)));
        let answering = self.routes.call(request);
        Box::pin(async move {
            let response = match answering.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            match handing {
                Some((parked, version, close)) if direct::is_event_stream(&response) => {
                    parked.put(Handed {
                        response,
                        version,
                        close,
                    });
                    // A turn for hyper to flush what it still holds of an
                    // answer to a request pipelined before this one.
                    tokio::task::yield_now().await;
                    Err(HandedOver)
                }
                _ => Ok(response),
            }
        })
    }
}

/// An event stream a route answered on a plain connection, waiting for the
/// connection to be handed over to `direct`.
#[derive(Clone, Default)]
struct Parked(Arc<Mutex<Option<Handed>>>);

impl Parked {
    fn put(&self, handed: Handed) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(handed);
    }

    fn take(&self) -> Option<Handed> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// What the service tells hyper when it parked an event stream: hyper then
/// stops, writing nothing, and the connection is handed over.
#[derive(Debug)]
struct HandedOver;

impl fmt::Display for HandedOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("handed over to write an event stream")
    }
}

impl std::error::Error for HandedOver {}

/// hyper's HTTP/1.1 settings for plain connections.
fn http1(head_timeout: Duration, reserved: bool) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .max_header_size(MAX_HEADER_SIZE)
        // hyper's read buffer grows to 400 KB by default as a body streams
        // in; bodies are read in pieces this size instead.
        .max_buf_size(READ_BUFFER)
        .header_read_timeout(head_timeout)
        // A connection served from the reserve answers one request and closes.
        .keep_alive(!reserved);
    builder
}

/// HTTP/1.1 over a plain connection, with upgrades.
async fn serve_plain<S>(
    stream: TcpStream,
    service: S,
    transport: &Transport,
    head_timeout: Duration,
    reserved: bool,
    close: &CancellationToken,
) -> Result<(), BoxError>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<BoxError>,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
{
    let connection = http1(head_timeout, reserved)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    drive(pin!(connection), close, &transport.shutdown)
        .await
        .map_err(BoxError::from)
}

/// HTTP/1.1 over a plain connection that hands event streams over: its
/// socket, and what hyper had read past the request, once a route's event
/// stream is parked.
async fn serve_handing_over<S>(
    stream: TcpStream,
    service: S,
    transport: &Transport,
    head_timeout: Duration,
    reserved: bool,
    close: &CancellationToken,
) -> Result<Option<(TcpStream, Bytes)>, BoxError>
where
    S: hyper::service::HttpService<Incoming, Error = HandedOver> + Unpin,
    S::Future: Unpin,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
{
    let connection = http1(head_timeout, reserved).serve_connection(TokioIo::new(stream), service);
    let mut handing = HandingOver(Some(connection));
    match drive(Pin::new(&mut handing), close, &transport.shutdown).await {
        Err(error)
            if error
                .source()
                .is_some_and(|source| source.is::<HandedOver>()) =>
        {
            Ok(handing.0.take().map(|connection| {
                let parts = connection.into_parts();
                (parts.io.into_inner(), parts.read_buf)
            }))
        }
        Err(error) => Err(error.into()),
        Ok(()) => Ok(None),
    }
}

/// A plain connection served without shutting its socket when it ends, so
/// that it can be taken back from hyper.
struct HandingOver<S>(Option<hyper::server::conn::http1::Connection<TokioIo<TcpStream>, S>>)
where
    S: hyper::service::HttpService<Incoming>;

impl<S> Future for HandingOver<S>
where
    S: hyper::service::HttpService<Incoming> + Unpin,
    S::Future: Unpin,
    S::Error: Into<BoxError>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Some(connection) => connection.poll_without_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<S> Graceful for HandingOver<S>
where
    S: hyper::service::HttpService<Incoming> + Unpin,
    S::Error: Into<BoxError>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        if let Some(connection) = &mut self.get_mut().0 {
            Pin::new(connection).graceful_shutdown();
        }
    }
}

/// HTTP/2 or HTTP/1.1 (by ALPN) over TLS.
async fn serve_tls<S, B>(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    service: S,
    transport: &Transport,
    head_timeout: Duration,
    reserved: bool,
    close: &CancellationToken,
) -> Result<(), BoxError>
where
    S: Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Error: Into<BoxError>,
    Streams: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    let streams = Streams {
        tasks: transport.tasks.clone(),
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(streams);
    builder
        .http1()
        .timer(TokioTimer::new())
        // Bounds the request head too (hyper-util sets no head limit).
        .max_buf_size(MAX_HEADER_SIZE)
        .header_read_timeout(head_timeout)
        .keep_alive(!reserved);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_SIZE as u32);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
    drive(pin!(connection), close, &transport.shutdown).await
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The most HTTP/2 streams (event streams, requests) one connection may
/// have open at once.
pub const MAX_STREAMS: u32 = 128;

/// A connection hyper serves, which can be asked to finish gracefully.
trait Graceful {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<C: Graceful + ?Sized> Graceful for Pin<Box<C>> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        self.get_mut().as_mut().graceful_shutdown();
    }
}

impl<I, S> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, E, B> Graceful for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper_util::server::conn::auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// Serves `connection` until it ends, `close` cuts it, or shutdown asks it to
/// finish (HTTP/2: GOAWAY) and it does (or `close` cuts it then).
async fn drive<C, E>(
    mut connection: Pin<&mut C>,
    close: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>> + Graceful + ?Sized,
{
    tokio::select! {
        result = connection.as_mut() => result,
        () = close.cancelled() => Ok(()),
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection => result,
                () = close.cancelled() => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::join_all;

    #[tokio::test]
    async fn a_port_in_use_is_one_clear_error() {
        let (_listener, addr) = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let error = bind(addr).await.unwrap_err();
        let said = error.to_string();
        assert!(said.contains(&addr.to_string()), "{said}");
        assert!(said.contains("choose another --port"), "{said}");
    }

    #[tokio::test]
    async fn a_burst_of_connections_waits_whole_in_the_backlog() {
        // Far more than the usual backlog of 128, none accepted yet.
        let (_listener, addr) = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let connects = (0..1000)
            .map(|_| tokio::time::timeout(Duration::from_millis(900), TcpStream::connect(addr)));
        let waiting = join_all(connects)
            .await
            .into_iter()
            .filter(|connected| matches!(connected, Ok(Ok(_))))
            .count();
        // The kernel caps the backlog at net.core.somaxconn.
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        assert_eq!(waiting, 1000.min(cap + 1));
    }
}
