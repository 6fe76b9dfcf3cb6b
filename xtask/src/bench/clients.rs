//! How the bench's clients talk to a server: a TCP connection from a source
//! address of their own, TLS if asked, then a WebSocket or an event stream;
//! and the connection of the sender (`sender.rs`), which broadcasts through
//! one server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::sender::Sender;
use crate::servers::Kind;

/// A connection, with or without TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
pub type Connection = Box<dyn Stream>;

/// Clients per source address. Each connection from one address takes one of
/// its ~28,000 ephemeral ports (when it binds, whatever the server): a few
/// thousand an address leaves the kernel's port search room to be quick.
const CLIENTS_PER_ADDRESS: usize = 5000;

/// The most clients the source addresses 127.0.0.1 to 127.0.0.254 fit.
pub const MOST_CLIENTS: usize = 254 * CLIENTS_PER_ADDRESS;

/// The address client `n` of a run connects from: 127.0.0.1 for the first
/// 5000, 127.0.0.2 for the next... (all of 127.0.0.0/8 is this machine).
pub fn source(client: usize) -> IpAddr {
    let host = 1 + (client / CLIENTS_PER_ADDRESS).min(253);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, host as u8))
}

/// How many source addresses `clients` clients use.
pub fn sources(clients: usize) -> usize {
    clients.div_ceil(CLIENTS_PER_ADDRESS).max(1)
}

/// Opens connections, with TLS if it has a certificate to trust.
#[derive(Clone)]
pub struct Dialer {
    tls: Option<TlsConnector>,
}

impl Dialer {
    pub fn new(cert: Option<&Path>) -> Result<Dialer> {
        let tls = cert.map(super::tls::connector).transpose()?;
        Ok(Dialer { tls })
    }

    /// A connection to `to` from `from` (any port of it).
    pub async fn open(&self, to: SocketAddr, from: IpAddr) -> Result<Connection> {
        let socket = TcpSocket::new_v4().context("socket")?;
        // Closed with a reset, not a FIN: the closing side of a connection
        // keeps its port in TIME_WAIT for a minute, and the next run's
        // clients, binding the same addresses, would have to search past
        // tens of thousands of them (connecting took 10 s instead of 1).
        socket.set_zero_linger()?;
        socket
            .bind(SocketAddr::new(from, 0))
            .with_context(|| format!("bind {from}"))?;
        let tcp = socket.connect(to).await.context("connect")?;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = ServerName::try_from("localhost").expect("a valid name");
        let stream = tls.connect(name, tcp).await.context("TLS handshake")?;
        Ok(Box::new(stream))
    }

    fn url(&self, addr: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{addr}/")
    }

    /// A WebSocket to the server at `to`, after its greeting.
    pub async fn websocket(
        &self,
        to: SocketAddr,
        from: IpAddr,
    ) -> Result<WebSocketStream<Connection>> {
        let stream = self.open(to, from).await?;
        // Small buffers: a client holds tens of thousands of these.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (mut socket, _) =
            tokio_tungstenite::client_async_with_config(self.url(to), stream, Some(config))
                .await
                .context("WebSocket handshake")?;
        socket
            .next()
            .await
            .context("closed before the greeting")?
            .context("greeting")?;
        Ok(socket)
    }

    /// An event stream from the server at `to`, read up to its greeting.
    pub async fn event_stream(
        &self,
        to: SocketAddr,
        from: IpAddr,
    ) -> Result<BufReader<Connection>> {
        let mut stream = self.open(to, from).await?;
        stream
            .write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await?;
        // Events are short lines: a small buffer, for many clients.
        let mut reader = BufReader::with_capacity(1024, stream);
        let mut line = String::new();
        // Up to the greeting: the head, `retry:`, then `data: {"message":"Gotcha"}`.
        while !line.contains("Gotcha") {
            next_line(&mut reader, &mut line).await?;
        }
        Ok(reader)
    }

    /// Waits until the server at `addr` answers `/healthz` with 200 (with
    /// `--redis`: once it has reached Redis; it cannot publish before).
    pub async fn healthy(&self, addr: SocketAddr, patience: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let ask = tokio::time::timeout(Duration::from_secs(2), self.health(addr));
            let answer = match ask.await {
                Ok(Ok(answer)) => answer,
                Ok(Err(error)) => format!("{error:#}"),
                Err(_) => "no answer within 2 s".to_owned(),
            };
            if answer.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let body = answer.split("\r\n\r\n").last().unwrap_or_default();
                bail!("{addr} was not healthy within {patience:?}: {body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn health(&self, addr: SocketAddr) -> Result<String> {
        let mut stream = self.open(addr, addr.ip()).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        // A TLS server may close without a close_notify: what came is enough.
        let _ = stream.read_to_end(&mut answer).await;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    /// The sender of a run's broadcasts, connected to the server at `to`.
    pub async fn sender(&self, kind: Kind, to: SocketAddr) -> Result<Sender> {
        let from = to.ip();
        Ok(match kind {
            Kind::WebSocket => Sender::websocket(self.websocket(to, from).await?),
            Kind::Sse => Sender::api(self.open(to, from).await?),
        })
    }
}

/// The number `seq` of a broadcast from its id `<run>-<seq>`.
pub fn seq(id: &str) -> Option<usize> {
    id.rsplit_once('-')?.1.trim().parse().ok()
}

/// The `seq` of a WebSocket broadcast, `{"id":"<run>-<seq>","message":"..."}`;
/// `None` for anything else.
pub fn websocket_seq(text: &str) -> Option<usize> {
    let id = text.split("\"id\":\"").nth(1)?.split('"').next()?;
    seq(id)
}

/// The `seq` of an event stream's `id: <run>-<seq>` line; `None` for any other.
pub fn event_seq(line: &str) -> Option<usize> {
    seq(line.strip_prefix("id: ")?)
}

/// Reads the next line into `line`; the end of the stream is an error.
pub async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut String,
) -> Result<()> {
    line.clear();
    if reader.read_line(line).await? == 0 {
        bail!("the server closed the connection");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_share_a_source_address_five_thousand_at_a_time() {
        assert_eq!(source(0).to_string(), "127.0.0.1");
        assert_eq!(source(4999).to_string(), "127.0.0.1");
        assert_eq!(source(5000).to_string(), "127.0.0.2");
        assert_eq!(source(99_999).to_string(), "127.0.0.20");
        assert_eq!(source(MOST_CLIENTS - 1).to_string(), "127.0.0.254");
        assert_eq!((sources(1), sources(5000), sources(100_000)), (1, 1, 20));
    }

    #[test]
    fn broadcasts_are_told_by_their_seq_and_nothing_else_is() {
        assert_eq!(websocket_seq(r#"{"id":"18f-42","message":"x"}"#), Some(42));
        assert_eq!(websocket_seq(r#"{"message":"Gotcha"}"#), None);
        assert_eq!(event_seq("id: 18f-7\n"), Some(7));
        assert_eq!(event_seq("data: {\"id\":\"1-2\"}\n"), None);
        assert_eq!(seq("nope"), None);
    }
}
