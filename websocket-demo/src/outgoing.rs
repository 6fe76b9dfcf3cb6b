//! What the server writes to a WebSocket client: frames encoded once, and
//! written many at a time.
//!
//! A broadcast is framed once by the hub, as the whole WebSocket frame
//! (header and payload), and the same bytes are written to every client: no
//! client encodes or copies it. A client's writer gathers what is waiting and
//! hands it to the kernel in one vectored write. tungstenite still reads what
//! the client sends; it writes nothing (see [`Inbound`]): the server's frames
//! all go through here, so they can never interleave.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A final, unmasked frame (servers never mask) with `payload`.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        length @ 0..=125 => out.put_u8(length as u8),
        length @ 126..=65535 => {
            out.put_u8(126);
            out.put_u16(length as u16);
        }
        length => {
            out.put_u8(127);
            out.put_u64(length as u64);
        }
    }
    out.put_slice(payload);
    out.freeze()
}

/// A close frame with `code` and `reason` (cut to fit a control frame).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(CLOSE, &payload)
}

/// The server's ping: a frame with nothing in it, the same for everyone.
pub const SERVER_PING: Bytes = Bytes::from_static(&[0x80 | PING, 0]);

/// The most frames handed to the kernel in one write.
const MAX_BATCH: usize = 32;

/// Frames on their way to the client, oldest first; the first may be partly
/// written. Kept outside the future that writes them, so that a write cut
/// short (the session ends) can still be finished before a close frame.
#[derive(Default)]
pub struct Outgoing {
    frames: VecDeque<Bytes>,
    /// Bytes of the first frame already written.
    written: usize,
}

impl Outgoing {
    pub fn push(&mut self, frame: Bytes) {
        self.frames.push_back(frame);
    }

    pub fn is_full(&self) -> bool {
        self.frames.len() >= MAX_BATCH
    }

    /// Writes everything waiting, a batch per write; cancel-safe: what a
    /// write took is accounted for at once.
    pub async fn flush<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx, writer)).await
    }

    fn poll_flush<W: AsyncWrite + Unpin>(
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

/// The client's side of the connection as tungstenite sees it: it reads
/// frames from it, and what it would write (its automatic answers to pings
/// and close frames) goes nowhere: the session answers those itself.
pub struct Inbound<R> {
    inner: R,
}

impl<R> Inbound<R> {
    pub fn new(inner: R) -> Inbound<R> {
        Inbound { inner }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Inbound<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for Inbound<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_length_as_rfc_6455_says() {
        assert_eq!(frame(TEXT, b"hi")[..], [0x81, 2, b'h', b'i']);
        let medium = frame(TEXT, &[b'x'; 300]);
        assert_eq!(medium[..4], [0x81, 126, 1, 44]);
        assert_eq!(medium.len(), 304);
        let large = frame(TEXT, &vec![b'x'; 70_000]);
        assert_eq!(large[..2], [0x81, 127]);
        assert_eq!(large[2..10], 70_000u64.to_be_bytes());
    }

    #[test]
    fn a_close_frame_has_its_code_then_its_reason_cut_to_fit() {
        assert_eq!(
            close(1001, "bye")[..],
            [0x88, 5, 0x03, 0xE9, b'b', b'y', b'e']
        );
        let long = close(1008, &"é".repeat(100));
        assert!(
            long.len() <= 2 + 125,
            "a control frame carries at most 125 bytes"
        );
    }

    #[tokio::test]
    async fn everything_waiting_goes_out_in_order_even_through_short_writes() {
        let (mut client, mut server) = tokio::io::duplex(7);
        let mut outgoing = Outgoing::default();
        for text in ["one", "two", "three"] {
            outgoing.push(frame(TEXT, text.as_bytes()));
        }
        let reading = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut client, &mut all)
                .await
                .unwrap();
            all
        });
        outgoing.flush(&mut server).await.unwrap();
        drop(server);
        let expected = [
            frame(TEXT, b"one"),
            frame(TEXT, b"two"),
            frame(TEXT, b"three"),
        ]
        .concat();
        assert_eq!(reading.await.unwrap(), expected);
    }
}
