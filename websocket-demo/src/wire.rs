//! One client's connection, both ways: the only code that reads or writes
//! its socket.
//!
//! Reading: bytes are read into a buffer on the stack and fed at once to the
//! frame reader ([`frames::Reader`]); only bytes read past the end of a
//! message are kept, until the next call. So an idle connection holds no
//! read buffer. Writing: broadcasts are framed once by the hub, as whole
//! frames, and the same bytes are written to every client; a client's
//! frames waiting to go out are handed to the kernel in one vectored write.
//!
//! It also keeps the client's clocks ([`Clock`]): they run only while the
//! server waits on the socket for the client, never while the server is
//! busy elsewhere (a publish in flight, a slow Redis).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::frames::{self, Received, Violation};

/// Bytes read from the socket at a time, into a buffer on the stack.
const READ_SIZE: usize = 4096;

/// The most frames handed to the kernel in one write.
const MAX_BATCH: usize = 32;

/// What reading brought.
#[derive(Debug)]
pub enum Read {
    Received(Received),
    Refused(Violation),
    /// The connection ended (or failed) without a close frame.
    Gone,
}

/// A WebSocket connection to one client.
pub struct Wire<S> {
    io: S,
    reader: frames::Reader,
    /// Bytes read past the end of the last message, from `unread_from` on,
    /// not yet fed; no allocation once they are.
    unread: Vec<u8>,
    unread_from: usize,
    outgoing: Outgoing,
    pub clock: Clock,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(io: S, max_message: usize) -> Wire<S> {
        Wire {
            io,
            reader: frames::Reader::new(max_message),
            unread: Vec::new(),
            unread_from: 0,
            outgoing: Outgoing::default(),
            clock: Clock::new(),
        }
    }

    /// The next message or control frame from the client.
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Read> {
        if !self.unread.is_empty() {
            let unread = std::mem::take(&mut self.unread);
            let mut input = &unread[self.unread_from..];
            let read = self.feed(&mut input);
            if !input.is_empty() {
                self.unread_from = unread.len() - input.len();
                self.unread = unread;
            }
            if let Some(read) = read {
                return Poll::Ready(read);
            }
        }
        loop {
            let mut buffer = [0; READ_SIZE];
            let mut filled = ReadBuf::new(&mut buffer);
            match Pin::new(&mut self.io).poll_read(cx, &mut filled) {
                Poll::Pending => {
                    self.clock.wait();
                    return Poll::Pending;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Read::Gone),
                Poll::Ready(Ok(())) if filled.filled().is_empty() => {
                    return Poll::Ready(Read::Gone);
                }
                Poll::Ready(Ok(())) => {}
            }
            self.clock.hold();
            let mut input = filled.filled();
            let read = self.feed(&mut input);
            if let Some(read) = read {
                if !input.is_empty() {
                    self.unread = input.to_vec();
                    self.unread_from = 0;
                }
                return Poll::Ready(read);
            }
        }
    }

    fn feed(&mut self, input: &mut &[u8]) -> Option<Read> {
        let read = match self.reader.feed(input) {
            Ok(Some(received)) => Some(Read::Received(received)),
            Ok(None) => None,
            Err(violation) => Some(Read::Refused(violation)),
        };
        if matches!(read, Some(Read::Received(Received::Pong))) {
            self.clock.answered();
        }
        // Whatever the client has begun and not finished, since when.
        self.clock.in_progress(self.reader.in_progress());
        read
    }

    /// Queues a frame to write.
    pub fn send(&mut self, frame: Bytes) {
        self.outgoing.frames.push_back(frame);
    }

    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.outgoing.frames.is_empty()
    }

    /// Whether a whole batch is waiting: more frames wait for the next write.
    pub fn is_full(&self) -> bool {
        self.outgoing.frames.len() >= MAX_BATCH
    }

    /// Writes everything waiting, a batch per write; what a write took is
    /// accounted for at once, so a write cut short can be finished later.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outgoing.poll_write(cx, &mut self.io)
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    pub async fn read(&mut self) -> Read {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }
}

/// Frames on their way to the client, oldest first; the first may be partly
/// written.
#[derive(Default)]
struct Outgoing {
    frames: VecDeque<Bytes>,
    /// Bytes of the first frame already written.
    written: usize,
}

impl Outgoing {
    fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<io::Result<()>> {
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_BATCH];
            let mut count = 0;
            for (index, frame) in self.frames.iter().take(MAX_BATCH).enumerate() {
                let skip = if index == 0 { self.written } else { 0 };
                slices[count] = IoSlice::new(&frame[skip..]);
                count += 1;
            }
            let mut taken =
                ready!(Pin::new(&mut *writer).poll_write_vectored(cx, &slices[..count]))?;
            if taken == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while let Some(first) = self.frames.front() {
                let left = first.len() - self.written;
                if taken < left {
                    self.written += taken;
                    break;
                }
                taken -= left;
                self.written = 0;
                self.frames.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The client's clocks: how long it has been silent (no pong), and how long
/// the message it is sending has been arriving. They count only the time
/// the server spent waiting on the socket for the client: while the server
/// does something else before it reads on (publishes a message, say), the
/// client is not kept waiting and neither clock moves.
#[derive(Debug)]
pub struct Clock {
    /// The client's time so far: the time spent waiting on it, up to
    /// `waiting_since` if the server is waiting now.
    spent: Duration,
    waiting_since: Option<Instant>,
    /// The client's time at its last pong (or when it connected).
    answered: Duration,
    /// The client's time when what it is in the middle of began.
    began: Option<Duration>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            spent: Duration::ZERO,
            waiting_since: None,
            answered: Duration::ZERO,
            began: None,
        }
    }

    /// The server waits on the client, from now: the clocks run.
    pub fn wait(&mut self) {
        self.waiting_since.get_or_insert_with(Instant::now);
    }

    /// The server has stopped waiting on the client: the clocks stop.
    pub fn hold(&mut self) {
        if let Some(since) = self.waiting_since.take() {
            self.spent += since.elapsed();
        }
    }

    fn now(&self) -> Duration {
        self.spent
            + self
                .waiting_since
                .map_or(Duration::ZERO, |since| since.elapsed())
    }

    fn answered(&mut self) {
        self.answered = self.now();
    }

    fn in_progress(&mut self, in_progress: bool) {
        if !in_progress {
            self.began = None;
        } else if self.began.is_none() {
            self.began = Some(self.now());
        }
    }

    /// The client's time since it last answered a ping (or connected).
    pub fn silent_for(&self) -> Duration {
        self.now().saturating_sub(self.answered)
    }

    /// The client's time since it began the message (or frame) it is in the
    /// middle of, if it is.
    pub fn message_for(&self) -> Option<Duration> {
        self.began.map(|began| self.now().saturating_sub(began))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{TEXT, frame};

    #[tokio::test]
    async fn everything_waiting_goes_out_in_order_even_through_short_writes() {
        let (mut client, server) = tokio::io::duplex(7);
        let mut wire = Wire::new(server, 1024);
        for text in ["one", "two", "three"] {
            wire.send(frame(TEXT, text.as_bytes()));
        }
        let reading = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut client, &mut all)
                .await
                .unwrap();
            all
        });
        wire.flush().await.unwrap();
        drop(wire);
        let expected = [
            frame(TEXT, b"one"),
            frame(TEXT, b"two"),
            frame(TEXT, b"three"),
        ]
        .concat();
        assert_eq!(reading.await.unwrap(), expected);
    }

    /// A client's text frame: masked, final.
    fn client_text(text: &str) -> Vec<u8> {
        let key = [7, 1, 2, 3];
        let mut out = vec![0x81, 0x80 | text.len() as u8];
        out.extend_from_slice(&key);
        out.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    #[tokio::test]
    async fn messages_read_together_come_out_one_at_a_time_and_the_rest_waits() {
        let (mut client, server) = tokio::io::duplex(4096);
        let mut wire = Wire::new(server, 1024);
        let both = [client_text("one"), client_text("two")].concat();
        tokio::io::AsyncWriteExt::write_all(&mut client, &both)
            .await
            .unwrap();
        for text in ["one", "two"] {
            match wire.read().await {
                Read::Received(Received::Text(got)) => assert_eq!(got, text),
                other => panic!("{other:?}"),
            }
        }
        assert!(wire.unread.is_empty() && wire.unread.capacity() == 0);
        drop(client);
        assert!(matches!(wire.read().await, Read::Gone));
    }

    #[tokio::test(start_paused = true)]
    async fn the_clocks_count_only_the_time_spent_waiting_on_the_client() {
        let mut clock = Clock::new();
        clock.wait();
        tokio::time::advance(Duration::from_secs(2)).await;
        clock.in_progress(true);
        tokio::time::advance(Duration::from_secs(1)).await;
        clock.hold();
        // The server publishes for a minute: not the client's time.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(clock.silent_for(), Duration::from_secs(3));
        assert_eq!(clock.message_for(), Some(Duration::from_secs(1)));
        clock.wait();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(clock.message_for(), Some(Duration::from_secs(2)));
        clock.answered();
        clock.in_progress(false);
        assert_eq!(clock.silent_for(), Duration::ZERO);
        assert_eq!(clock.message_for(), None);
    }
}
