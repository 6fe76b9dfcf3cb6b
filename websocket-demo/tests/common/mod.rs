//! WebSocket helpers for both test files: a real client, a watcher of what is
//! broadcast, and a raw socket that sends frames no client library would.

// Each test file uses its own part of these.
#![allow(dead_code)]

use std::net::SocketAddr;

use futures_util::StreamExt;
use serde_json::{Value, json};
use shared::Server;
use shared::core::EventId;
use shared::testing::{self, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const UPGRADE: &str =
    "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
pub const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
pub const V13: &str = "Sec-WebSocket-Version: 13\r\n";

pub async fn start(options: &[&str]) -> Server {
    testing::start(
        &websocket_demo::DEFAULTS,
        websocket_demo::frame,
        websocket_demo::routes,
        options,
    )
    .await
}

pub async fn connect(addr: SocketAddr, query: &str) -> Client {
    let url = format!("ws://{addr}/{query}");
    let (client, _) = timeout(PATIENCE, connect_async(url))
        .await
        .expect("the handshake finishes in time")
        .expect("the handshake succeeds");
    client
}

/// Connects and checks the first message is the per-client Gotcha.
pub async fn connect_and_greet(addr: SocketAddr, query: &str) -> Client {
    let mut client = connect(addr, query).await;
    assert_eq!(next_json(&mut client).await, json!({ "message": "Gotcha" }));
    client
}

/// The next text message as JSON, skipping pings.
pub async fn next_json<S>(client: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = timeout(PATIENCE, client.next())
            .await
            .expect("a message arrives in time")
            .expect("the connection stays open")
            .expect("the message is valid");
        match message {
            Message::Text(text) => {
                return serde_json::from_str(&text).expect("the server sends JSON");
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// A WebSocket client that resumes with `?since=` (see
/// `shared::testing::resume`).
pub struct Resumer(Client);

impl testing::resume::Resuming for Resumer {
    async fn open(addr: SocketAddr, last_id: Option<String>) -> Self {
        let query = last_id.map_or_else(String::new, |id| format!("?since={id}"));
        Resumer(connect_and_greet(addr, &query).await)
    }

    async fn next(&mut self) -> (u64, String) {
        let message = next_json(&mut self.0).await;
        let id = message["id"].as_str().expect("a broadcast has an id");
        (testing::seq_of(id), id.to_owned())
    }
}

/// The sequence number of a broadcast's id.
pub fn seq(message: &Value) -> u64 {
    let id = message["id"].as_str();
    testing::seq_of(id.unwrap_or_else(|| panic!("no id in {message}")))
}

/// Reads until the server's close frame and returns its code.
pub async fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match timeout(PATIENCE, client.next())
            .await
            .expect("the server closes in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|frame| frame.code.into()),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// A well-behaved client that watches what is broadcast.
pub struct Watcher {
    client: Client,
    /// The last id it read.
    last_id: Option<EventId>,
}

impl Watcher {
    pub async fn connect(addr: SocketAddr) -> Watcher {
        Watcher {
            client: connect_and_greet(addr, "").await,
            last_id: None,
        }
    }

    pub async fn next(&mut self) -> Value {
        let message = next_json(&mut self.client).await;
        if let Some(id) = message["id"].as_str() {
            self.last_id = Some(testing::id_of(id));
        }
        message
    }

    /// Fails unless the next message is a tick: nothing else was broadcast.
    pub async fn next_tick_only(&mut self, case: &str) {
        let message = self.next().await;
        assert_eq!(
            message["message"], "Hello hello!",
            "after {case}: {message}"
        );
    }

    /// Reads every broadcast up to `last`; fails unless each is a tick.
    pub async fn only_ticks_through(&mut self, last: EventId) {
        while self.last_id.is_none_or(|seen| seen < last) {
            self.next_tick_only("the last case").await;
        }
    }
}

pub const FIN: u8 = 0x80;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// Builds a client frame: `head` is the first byte (FIN, RSV, opcode).
pub fn frame(head: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![head];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=65535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x11, 0x22, 0x33, 0x44];
        out.extend_from_slice(&key);
        out.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, byte)| byte ^ key[i % 4]),
        );
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A WebSocket opened by hand, read and written frame by frame.
pub struct RawSocket(BufReader<TcpStream>);

impl RawSocket {
    /// Just the handshake: nothing is read after the 101, not even the
    /// greeting, as a client that stalls or never answers.
    pub async fn handshake(addr: SocketAddr) -> RawSocket {
        let stream = TcpStream::connect(addr).await.expect("the server accepts");
        RawSocket::handshake_on(stream).await
    }

    /// The handshake on a connection the test made itself.
    pub async fn handshake_on(mut stream: TcpStream) -> RawSocket {
        stream
            .write_all(format!("{UPGRADE}{KEY}{V13}\r\n").as_bytes())
            .await
            .expect("the handshake is sent");
        let mut reader = BufReader::new(stream);
        let head = testing::read_head(&mut reader).await;
        assert_eq!(head.status, 101, "{head:?}");
        RawSocket(reader)
    }

    /// The handshake, then the greeting.
    pub async fn open(addr: SocketAddr) -> RawSocket {
        RawSocket::greeted(RawSocket::handshake(addr).await).await
    }

    /// `socket`, once it has read the greeting.
    pub async fn greeted(mut socket: RawSocket) -> RawSocket {
        let (opcode, gotcha) = socket.read_frame().await.expect("the greeting");
        assert_eq!(
            (opcode, gotcha.as_slice()),
            (TEXT, br#"{"message":"Gotcha"}"#.as_slice())
        );
        socket
    }

    /// The connection itself, for a client that goes its own way.
    pub fn into_inner(self) -> TcpStream {
        self.0.into_inner()
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        // The server may close before it has read everything we send.
        let _ = self.0.get_mut().write_all(bytes).await;
    }

    /// One server frame (never masked, never fragmented here): its opcode and
    /// payload; `None` at EOF.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let read = async {
            let mut head = [0; 2];
            self.0.read_exact(&mut head).await.ok()?;
            let len = match head[1] & 0x7f {
                126 => u64::from(self.0.read_u16().await.ok()?),
                127 => self.0.read_u64().await.ok()?,
                len => u64::from(len),
            };
            let mut payload = vec![0; len as usize];
            self.0.read_exact(&mut payload).await.ok()?;
            Some((head[0] & 0x0f, payload))
        };
        timeout(PATIENCE, read)
            .await
            .expect("the server answers in time")
    }

    /// Reads until the server's close frame; its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        while let Some((opcode, payload)) = self.read_frame().await {
            if opcode == CLOSE {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
        None
    }

    /// Reads, answering nothing, until the server ends the connection; the
    /// opcodes of the frames it sent.
    pub async fn opcodes_until_dropped(&mut self) -> Vec<u8> {
        let read = async {
            let mut opcodes = Vec::new();
            while let Some((opcode, _)) = self.read_frame().await {
                opcodes.push(opcode);
            }
            opcodes
        };
        timeout(PATIENCE, read)
            .await
            .expect("the server drops the connection in time")
    }

    /// Reads until a text frame with an error (skipping broadcasts); its text.
    pub async fn next_error(&mut self) -> String {
        loop {
            let (opcode, payload) = self.read_frame().await.expect("the connection stays open");
            let message: Value = match opcode {
                TEXT => serde_json::from_slice(&payload).unwrap(),
                _ => continue,
            };
            if let Some(error) = message["error"].as_str() {
                return error.to_owned();
            }
        }
    }
}
