//! The WebSocket frame format (RFC 6455, section 5), both ways: the frames
//! the server writes, encoded once, and a reader of what a client sends.
//!
//! The reader takes the client's bytes however they are split (a byte at a
//! time or many frames at once) and gives back whole messages and control
//! frames, or the violation that ends the connection, with the close code
//! the RFC asks for. It buffers nothing between messages: a text message is
//! put together in a buffer that exists only while the message arrives, up
//! to the size limit, and a control frame's payload (125 bytes at most) only
//! while that frame arrives. It does no I/O: [`crate::wire`] feeds it.

use bytes::{BufMut, Bytes, BytesMut};
use shared::policy::Reason;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// Close codes the server sends.
pub const PROTOCOL_ERROR: u16 = 1002;
pub const UNSUPPORTED: u16 = 1003;
pub const INVALID_DATA: u16 = 1007;
pub const POLICY: u16 = 1008;
pub const TOO_BIG: u16 = 1009;

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

/// One whole thing a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text message, whole (fragments put together) and valid UTF-8.
    Text(String),
    /// A ping, with the payload its pong must carry.
    Ping(Vec<u8>),
    Pong,
    /// A close frame, with its code if it has one (a valid one).
    Close(Option<u16>),
}

/// Why what a client sent ends its connection: the close code RFC 6455 asks
/// for, and the reason it is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: Reason,
    pub why: String,
}

impl Violation {
    fn new(code: u16, reason: Reason, why: impl Into<String>) -> Violation {
        Violation {
            code,
            reason,
            why: why.into(),
        }
    }

    fn protocol(why: &str) -> Violation {
        Violation::new(PROTOCOL_ERROR, Reason::Protocol, why)
    }
}

/// Reads a client's frames from its bytes, as they come.
#[derive(Debug)]
pub struct Reader {
    max_message: usize,
    state: State,
    /// Whether a text message has begun and not ended (its frames may have
    /// control frames between them).
    open: bool,
    /// The text message arriving; no allocation between messages.
    message: Vec<u8>,
    /// The payload of the control frame arriving.
    control: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// A frame head, up to 14 bytes: 2, the extended length, the mask key.
    Head { bytes: [u8; 14], have: u8 },
    /// A frame's payload: `left` bytes to come, unmasked with `mask` from
    /// position `at`.
    Payload {
        opcode: u8,
        fin: bool,
        left: u64,
        mask: [u8; 4],
        at: usize,
    },
}

const NEW_HEAD: State = State::Head {
    bytes: [0; 14],
    have: 0,
};

impl Reader {
    /// Messages (all their fragments together) and frames are refused above
    /// `max_message` bytes.
    pub fn new(max_message: usize) -> Reader {
        Reader {
            max_message,
            state: NEW_HEAD,
            open: false,
            message: Vec::new(),
            control: Vec::new(),
        }
    }

    /// Whether the client is in the middle of something: a frame begun, or
    /// a message whose last fragment has not come.
    pub fn in_progress(&self) -> bool {
        self.open || !matches!(self.state, State::Head { have: 0, .. })
    }

    /// Reads from `input` up to the end of the next whole message or control
    /// frame, and returns it; `None` when `input` ran out before one ended.
    /// What it did not read is left in `input`. After a violation, read on
    /// only to wait for the client's close frame: a broken frame head gives
    /// the same violation again, and nothing is read as a message.
    pub fn feed(&mut self, input: &mut &[u8]) -> Result<Option<Received>, Violation> {
        loop {
            match &mut self.state {
                State::Head { bytes, have } => {
                    let needed = head_length(&bytes[..usize::from(*have)]);
                    if usize::from(*have) == needed {
                        let head = *bytes;
                        self.state = self.start(&head[..needed])?;
                        continue;
                    }
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (needed - usize::from(*have)).min(input.len());
                    let start = usize::from(*have);
                    bytes[start..start + take].copy_from_slice(&input[..take]);
                    *have += take as u8;
                    *input = &input[take..];
                }
                State::Payload { left: 0, .. } => {
                    if let Some(received) = self.finish()? {
                        return Ok(Some(received));
                    }
                }
                State::Payload {
                    opcode,
                    left,
                    mask,
                    at,
                    ..
                } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = (*left).min(input.len() as u64) as usize;
                    let into = if *opcode >= CLOSE {
                        &mut self.control
                    } else {
                        &mut self.message
                    };
                    // The whole frame at once, rather than doubling as it comes.
                    into.reserve_exact(usize::try_from(*left).unwrap_or(usize::MAX));
                    let key = *mask;
                    into.extend(
                        input[..take]
                            .iter()
                            .enumerate()
                            .map(|(index, byte)| byte ^ key[(*at + index) % 4]),
                    );
                    *at = (*at + take) % 4;
                    *left -= take as u64;
                    *input = &input[take..];
                }
            }
        }
    }

    /// Checks a whole frame head against the RFC and the limits; the state
    /// that reads its payload.
    fn start(&mut self, head: &[u8]) -> Result<State, Violation> {
        let fin = head[0] & 0x80 != 0;
        let reserved_bits = head[0] & 0x70 != 0;
        let opcode = head[0] & 0x0f;
        let masked = head[1] & 0x80 != 0;
        let length = match head[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([head[2], head[3]])),
            127 => u64::from_be_bytes(head[2..10].try_into().unwrap_or([0xff; 8])),
            short => u64::from(short),
        };
        let too_big = |length: u64| {
            Violation::new(
                TOO_BIG,
                Reason::TooLarge,
                format!(
                    "a message of {length} bytes or more, over the limit of {}",
                    self.max_message
                ),
            )
        };
        if length > self.max_message as u64 {
            return Err(too_big(length));
        }
        if reserved_bits {
            return Err(Violation::protocol(
                "a reserved bit is set, and no extension was agreed",
            ));
        }
        if !masked {
            return Err(Violation::protocol("a client's frames must be masked"));
        }
        if opcode >= CLOSE {
            if !fin {
                return Err(Violation::protocol("a fragmented control frame"));
            }
            if length > 125 {
                return Err(Violation::protocol("a control frame over 125 bytes"));
            }
            if !matches!(opcode, CLOSE | PING | PONG) {
                return Err(Violation::protocol("a reserved control opcode"));
            }
        } else {
            match opcode {
                CONTINUATION if !self.open => {
                    return Err(Violation::protocol(
                        "a continuation frame with no message to continue",
                    ));
                }
                CONTINUATION => {
                    let total = self.message.len() as u64 + length;
                    if total > self.max_message as u64 {
                        return Err(too_big(total));
                    }
                }
                _ if self.open => {
                    return Err(Violation::protocol(
                        "a new message before the last one ended",
                    ));
                }
                TEXT => self.open = true,
                BINARY => {
                    return Err(Violation::new(
                        UNSUPPORTED,
                        Reason::Binary,
                        "binary messages are not supported: send JSON text",
                    ));
                }
                _ => return Err(Violation::protocol("a reserved data opcode")),
            }
        }
        let mut mask = [0; 4];
        mask.copy_from_slice(&head[head.len() - 4..]);
        Ok(State::Payload {
            opcode,
            fin,
            left: length,
            mask,
            at: 0,
        })
    }

    /// A frame's payload has all come: what it completes, if anything.
    fn finish(&mut self) -> Result<Option<Received>, Violation> {
        let State::Payload { opcode, fin, .. } = self.state else {
            return Ok(None);
        };
        self.state = NEW_HEAD;
        match opcode {
            PING => Ok(Some(Received::Ping(std::mem::take(&mut self.control)))),
            PONG => {
                self.control = Vec::new();
                Ok(Some(Received::Pong))
            }
            CLOSE => close_frame(&std::mem::take(&mut self.control)).map(Some),
            _ if !fin => Ok(None),
            _ => {
                self.open = false;
                let message = std::mem::take(&mut self.message);
                String::from_utf8(message)
                    .map(|text| Some(Received::Text(text)))
                    .map_err(|_| invalid_utf8())
            }
        }
    }
}

fn invalid_utf8() -> Violation {
    Violation::new(
        INVALID_DATA,
        Reason::InvalidUtf8,
        "text must be valid UTF-8",
    )
}

/// How long a frame head is, as far as `head` (its first bytes) tells: 2
/// until the second byte says more.
fn head_length(head: &[u8]) -> usize {
    let Some(second) = head.get(1) else {
        return 2;
    };
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// A close frame's payload: nothing, or a code the client may send and a
/// UTF-8 reason.
fn close_frame(payload: &[u8]) -> Result<Received, Violation> {
    let [high, low, reason @ ..] = payload else {
        return match payload.len() {
            0 => Ok(Received::Close(None)),
            _ => Err(Violation::protocol("a close frame with a 1-byte payload")),
        };
    };
    let code = u16::from_be_bytes([*high, *low]);
    if !may_send(code) {
        return Err(Violation::protocol("a close frame with an invalid code"));
    }
    std::str::from_utf8(reason).map_err(|_| invalid_utf8())?;
    Ok(Received::Close(Some(code)))
}

/// Close codes an endpoint may put in a close frame (RFC 6455, 7.4): the
/// defined ones, less those that only describe a connection that ended
/// without one (1005, 1006, 1015), and the ranges left to libraries and
/// applications.
fn may_send(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

#[cfg(test)]
mod tests;
