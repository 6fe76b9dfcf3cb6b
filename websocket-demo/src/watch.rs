//! What a client does, watched on the way in: whether it answers pings, and
//! since when a message of its has been arriving without being finished.
//!
//! tungstenite assembles fragmented messages out of sight, so a client could
//! start a message and never finish it, pinning its buffer for as long as it
//! likes. [`Watched`] reads the frame heads as the bytes pass (nothing is
//! buffered or copied) to know when a data message is in progress.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When the client last answered a ping, and since when a message has been
/// arriving; shared by the socket's reader and the session's watchdog.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// Milliseconds after `started`.
    answered: AtomicU64,
    /// Milliseconds after `started`, plus one; 0 when no message is arriving.
    message_since: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            answered: AtomicU64::new(0),
            message_since: AtomicU64::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The client answered a ping: it reads what it is sent.
    pub fn answered(&self) {
        self.answered.store(self.now(), Ordering::Relaxed);
    }

    /// How long since the client last answered a ping (or since it connected).
    pub fn silent_for(&self) -> Duration {
        let since = self.answered.load(Ordering::Relaxed);
        Duration::from_millis(self.now().saturating_sub(since))
    }

    /// How long the message now arriving has been arriving, if one is.
    pub fn message_for(&self) -> Option<Duration> {
        match self.message_since.load(Ordering::Relaxed) {
            0 => None,
            since => Some(Duration::from_millis(self.now().saturating_sub(since - 1))),
        }
    }

    fn message_started(&self) {
        let now = self.now() + 1;
        let _ = self
            .message_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn message_ended(&self) {
        self.message_since.store(0, Ordering::Relaxed);
    }
}

/// Where the reader is in the client's stream of frames.
#[derive(Debug)]
enum Frames {
    /// Reading a frame head: at most 14 bytes.
    Head { bytes: [u8; 14], have: usize },
    /// Skipping a frame's payload; `last` if it ends a data message.
    Payload { left: u64, last: bool },
}

impl Frames {
    fn new() -> Frames {
        Frames::Head {
            bytes: [0; 14],
            have: 0,
        }
    }

    /// Follows `data` through frame heads and payloads, telling `activity`
    /// when a data message starts and ends. Anything malformed is left to
    /// tungstenite, which reads the same bytes and refuses them.
    fn feed(&mut self, mut data: &[u8], activity: &Activity) {
        while !data.is_empty() {
            match self {
                Frames::Head { bytes, have } => {
                    bytes[*have] = data[0];
                    *have += 1;
                    data = &data[1..];
                    if let Some((opcode, fin, length)) = parse_head(&bytes[..*have]) {
                        // Data (1, 2) and continuation (0) frames make up messages;
                        // control frames (8 and up) come between them.
                        let data_frame = opcode < 8;
                        if data_frame {
                            activity.message_started();
                        }
                        *self = Frames::Payload {
                            left: length,
                            last: data_frame && fin,
                        };
                    }
                }
                Frames::Payload { left, .. } => {
                    let skip = (*left).min(data.len() as u64);
                    *left -= skip;
                    data = &data[skip as usize..];
                }
            }
            if let Frames::Payload { left: 0, last } = *self {
                if last {
                    activity.message_ended();
                }
                *self = Frames::new();
            }
        }
    }
}

/// A whole frame head's opcode, FIN bit and payload length; `None` until
/// `head` holds all of it.
fn parse_head(head: &[u8]) -> Option<(u8, bool, u64)> {
    let [first, second, rest @ ..] = head else {
        return None;
    };
    let masked = second & 0x80 != 0;
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let needed = extended + if masked { 4 } else { 0 };
    if rest.len() < needed {
        return None;
    }
    let length = match extended {
        0 => u64::from(second & 0x7f),
        _ => rest[..extended]
            .iter()
            .fold(0, |length, byte| length << 8 | u64::from(*byte)),
    };
    Some((first & 0x0f, first & 0x80 != 0, length))
}

/// A client's connection, with its incoming frames watched.
pub struct Watched<S> {
    inner: S,
    frames: Frames,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Watched<S> {
        Watched {
            inner,
            frames: Frames::new(),
            activity,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        this.frames.feed(&buf.filled()[before..], &this.activity);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame head: masked, with `length` bytes of payload.
    fn head(first: u8, length: usize) -> Vec<u8> {
        let mut out = vec![first];
        match length {
            0..=125 => out.push(0x80 | length as u8),
            126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(length as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    fn frame(first: u8, length: usize) -> Vec<u8> {
        let mut out = head(first, length);
        out.resize(out.len() + length, b'x');
        out
    }

    #[test]
    fn a_whole_message_leaves_nothing_in_progress() {
        let activity = Activity::new();
        let mut frames = Frames::new();
        frames.feed(&frame(0x81, 300), &activity);
        assert_eq!(activity.message_for(), None);
    }

    #[test]
    fn an_unfinished_fragmented_message_stays_in_progress_across_pings() {
        let activity = Activity::new();
        let mut frames = Frames::new();
        frames.feed(&frame(0x01, 70_000), &activity);
        frames.feed(&frame(0x89, 4), &activity);
        assert!(
            activity.message_for().is_some(),
            "the text frame had no FIN"
        );
        frames.feed(&frame(0x80, 10), &activity);
        assert_eq!(activity.message_for(), None, "the continuation ended it");
    }

    #[test]
    fn a_frame_arriving_byte_by_byte_is_in_progress_until_its_last_byte() {
        let activity = Activity::new();
        let mut frames = Frames::new();
        let bytes = frame(0x81, 200);
        for byte in &bytes[..bytes.len() - 1] {
            frames.feed(std::slice::from_ref(byte), &activity);
        }
        assert!(activity.message_for().is_some());
        frames.feed(&bytes[bytes.len() - 1..], &activity);
        assert_eq!(activity.message_for(), None);
    }

    #[test]
    fn control_frames_alone_start_no_message() {
        let activity = Activity::new();
        let mut frames = Frames::new();
        frames.feed(&[frame(0x89, 0), frame(0x8a, 125)].concat(), &activity);
        assert_eq!(activity.message_for(), None);
    }
}
