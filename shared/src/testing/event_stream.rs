//! An event stream read as a browser reads it: block by block, with the
//! id it last saw. Only tokio and std: the SSE tests need no WebSocket crate.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{PATIENCE, Response, id_of, read_head, seq_of};
use crate::core::EventId;

/// The data line of every tick.
const TICK: &str = r#"{"message":"Hello hello!"}"#;

/// One block of an event stream, up to its blank line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Block {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Vec<String>,
    pub retry: Option<String>,
    pub comments: Vec<String>,
}

impl Block {
    /// A block of one `data:` line and nothing else.
    pub fn only_data(text: &str) -> Block {
        Block {
            data: vec![text.to_owned()],
            ..Block::default()
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data.join("\n")).expect("the data is JSON")
    }

    pub fn seq(&self) -> u64 {
        let id = self.id.as_deref();
        seq_of(id.unwrap_or_else(|| panic!("no id in {self:?}")))
    }

    /// The heartbeat: `event: ping` with empty JSON data, nothing else.
    pub fn is_ping(&self) -> bool {
        let ping = Block {
            event: Some("ping".into()),
            ..Block::only_data("{}")
        };
        *self == ping
    }

    /// An id and the tick's data, nothing else.
    pub fn is_tick(&self) -> bool {
        let tick = Block {
            id: self.id.clone(),
            ..Block::only_data(TICK)
        };
        self.id.is_some() && *self == tick
    }

    fn parse(text: &str) -> Block {
        let mut block = Block::default();
        for line in text.lines().filter(|line| !line.is_empty()) {
            if let Some(comment) = line.strip_prefix(':') {
                block.comments.push(comment.trim().to_owned());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "event" => block.event = Some(value),
                "id" => block.id = Some(value),
                "data" => block.data.push(value),
                "retry" => block.retry = Some(value),
                // A field the server never writes was forged by a message.
                other => panic!("unexpected field {other:?} in {text:?}"),
            }
        }
        block
    }
}

/// An open `GET /sse` (or any event stream), read chunk by chunk as a browser
/// would. Only tokio and std: the SSE tests need no WebSocket crate.
pub struct EventStream {
    reader: BufReader<TcpStream>,
    pending: String,
    pub head: Response,
    /// The last id read, as `EventSource` keeps it.
    pub last_id: Option<EventId>,
    /// The `retry:` the stream opened with, in milliseconds.
    pub retry: u64,
}

impl EventStream {
    /// Opens `path` and checks the opening every stream has: `retry:` alone
    /// (1 to 5 s, picked for each stream), then the Gotcha alone, without an
    /// id (it is not part of the stream).
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> EventStream {
        match EventStream::try_open(addr, path, headers).await {
            Ok(stream) => stream,
            Err(head) => panic!("the stream did not open: {head:?}"),
        }
    }

    /// As [`EventStream::open`], but a stream that does not open (no
    /// connection, or an answer other than 200) is an `Err` with the answer,
    /// if any, for a client that tries again.
    pub async fn try_open(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<EventStream, Option<Response>> {
        let mut stream = TcpStream::connect(addr).await.map_err(|_| None)?;
        let mut head =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.map_err(|_| None)?;
        let mut reader = BufReader::new(stream);
        let head = read_head(&mut reader).await;
        if head.status != 200 {
            return Err(Some(head));
        }
        let mut stream = EventStream {
            reader,
            pending: String::new(),
            head,
            last_id: None,
            retry: 0,
        };
        let retry = stream.next_block().await.expect("the retry block");
        let milliseconds: u64 = retry
            .retry
            .as_deref()
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        let retry_only = Block {
            retry: Some(milliseconds.to_string()),
            ..Block::default()
        };
        assert_eq!(retry, retry_only);
        assert!((1000..=5000).contains(&milliseconds), "{retry:?}");
        stream.retry = milliseconds;
        let gotcha = stream.next_block().await.expect("the greeting");
        assert_eq!(gotcha, Block::only_data(r#"{"message":"Gotcha"}"#));
        Ok(stream)
    }

    /// The next block, or `None` when the stream ends.
    pub async fn next_block(&mut self) -> Option<Block> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let text: String = self.pending.drain(..end + 2).collect();
                let block = Block::parse(&text);
                if let Some(id) = &block.id {
                    self.last_id = Some(id_of(id));
                }
                return Some(block);
            }
            let chunk = tokio::time::timeout(PATIENCE, self.read_chunk())
                .await
                .expect("the stream moves in time")?;
            self.pending.push_str(&chunk);
        }
    }

    /// The next block that carries data, skipping comments, `retry:` and
    /// the heartbeat's `ping` events.
    pub async fn next_event(&mut self) -> Block {
        loop {
            let block = self.next_block().await.expect("the stream stays open");
            if !block.data.is_empty() && !block.is_ping() {
                return block;
            }
        }
    }

    /// Fails unless the next event is a tick: nothing else was broadcast.
    pub async fn next_tick_only(&mut self, case: &str) {
        let event = self.next_event().await;
        assert!(event.is_tick(), "after {case}: {event:?}");
    }

    /// Reads every event up to `last`; fails unless each is a tick.
    pub async fn only_ticks_through(&mut self, last: EventId) {
        while self.last_id.is_none_or(|seen| seen < last) {
            self.next_tick_only("the last case").await;
        }
    }

    /// One chunk of the chunked body; `None` at its end or on EOF.
    async fn read_chunk(&mut self) -> Option<String> {
        let mut size = String::new();
        if self.reader.read_line(&mut size).await.ok()? == 0 {
            return None;
        }
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return None;
        }
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).await.ok()?;
        data.truncate(size);
        Some(String::from_utf8(data).expect("the stream is UTF-8"))
    }
}
