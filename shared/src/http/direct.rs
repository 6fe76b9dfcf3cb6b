//! Event streams on plain connections, written without hyper.
//!
//! hyper keeps two 8 KiB buffers for every HTTP/1.1 connection for as long
//! as it lives (one to read requests, one to write response heads), and an
//! event stream lives as long as its page: most of what the server holds for
//! a client would be those buffers. So hyper reads every request, and when a
//! route answers one with an event stream on a plain connection, the server
//! takes the connection back from hyper before it writes a byte (see
//! `Handover` in `server.rs`) and the stream is written here, chunked, as its
//! body yields, straight from the shared bytes. However the request came
//! (split, with bare LF line ends, in absolute form, over HTTP/1.0, after
//! other requests on its connection), this is the one writer of event
//! streams on plain connections.
//!
//! Nothing may follow such a request on its connection: its answer would
//! wait behind the endless stream. A request already sent behind it is
//! refused with 400 before the stream opens; anything sent later ends the
//! stream cleanly, with its last chunk, and the connection.

use std::io::IoSlice;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use warp::http::{self, StatusCode, Version, header};
use warp::reply::Response;

use super::context::Conn;
use super::refusal::Refusal;
use crate::policy::{Reason, Rejections};

/// A route's event stream, answered on a plain connection, for [`serve`].
pub struct Handed {
    pub response: Response,
    /// The request's version: HTTP/1.0 has no chunked encoding.
    pub version: Version,
    /// The client asked to close the connection after this answer.
    pub close: bool,
}

/// Whether `response` is an event stream (and so streams for as long as its
/// client stays).
pub fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == "text/event-stream")
}

/// Writes `handed` on `stream`, which hyper let go of having read `unread`
/// past the request, until the stream ends, the client goes or sends more,
/// or `conn.close` is cancelled.
pub async fn serve(
    mut stream: TcpStream,
    unread: Bytes,
    handed: Handed,
    conn: Conn,
    rejections: &Rejections,
) {
    let peer = conn.peer;
    let close = conn.close.clone();
    // Blank lines may come before a request (RFC 9112 §2.2); anything else
    // is a request sent behind this one.
    if !unread.iter().all(|byte| matches!(byte, b'\r' | b'\n')) {
        drop(handed);
        let why = "a request sent behind a request for an event stream would never be \
                   answered: send it on a connection of its own";
        let refusal = Refusal::new(Reason::MalformedHttp, StatusCode::BAD_REQUEST, why);
        let answer = refusal.answer(rejections, peer);
        return Box::pin(answer_whole(stream, answer, &close)).await;
    }
    drop(unread);
    let chunked = handed.version != Version::HTTP_10;
    let framing = if chunked {
        Framing::Chunked {
            close: handed.close,
        }
    } else {
        Framing::UntilClose
    };
    let (parts, mut body) = handed.response.into_parts();
    let head = response_head(&parts, framing);
    // The head's parts are not kept for the stream's life.
    drop(parts);
    let written = write_all(&mut stream, &[&head], &close).await;
    drop(head);
    if written.is_err() {
        return;
    }
    loop {
        let frame = tokio::select! {
            // In this order: what is ready to write (the opening, at least)
            // goes out before anything the client sent ends the stream.
            biased;
            frame = body.frame() => frame,
            () = close.cancelled() => return,
            sent = client_sends(&stream) => {
                if !sent {
                    log::debug!("{peer}: the client closed its stream");
                    return;
                }
                let why = "sent more on a connection that carries an event stream: \
                           it would never be answered, so the stream ends";
                rejections.record(Reason::MalformedHttp, peer, why);
                return Box::pin(end(stream, chunked, &close)).await;
            }
        };
        // What else is ready goes out with it: one chunk, one write.
        let mut batch = Vec::new();
        let mut ended = false;
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        batch.push(data);
                    }
                }
                // The stream ended (shutdown): the last chunk says so.
                Some(Err(_)) | None => {
                    ended = true;
                    break;
                }
            }
            if batch.len() < BATCH {
                next = body.frame().now_or_never();
            }
        }
        if !batch.is_empty() {
            let length: usize = batch.iter().map(Bytes::len).sum();
            let size = format!("{length:x}\r\n");
            let mut chunk: Vec<&[u8]> = Vec::with_capacity(batch.len() + 2);
            if chunked {
                chunk.push(size.as_bytes());
            }
            chunk.extend(batch.iter().map(|data| &data[..]));
            if chunked {
                chunk.push(b"\r\n");
            }
            if write_all(&mut stream, &chunk, &close).await.is_err() {
                return;
            }
        }
        if ended {
            if chunked {
                let _ = write_all(&mut stream, &[LAST_CHUNK], &close).await;
            }
            return;
        }
    }
}

/// The most events written in one chunk.
const BATCH: usize = 64;

/// The end of a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How long what a client still sends is read after the server's last word
/// (see [`linger`]).
const LINGER: Duration = Duration::from_secs(1);

/// Resolves once the client has sent something (true: a stream takes no
/// further request) or closed its side (false). Blank lines are no request
/// (RFC 9112 §2.2: some clients end a request with one more).
async fn client_sends(stream: &TcpStream) -> bool {
    let mut byte = [0; 1];
    loop {
        if stream.readable().await.is_err() {
            return false;
        }
        match stream.try_read(&mut byte) {
            Ok(0) => return false,
            Ok(_) if matches!(byte[0], b'\r' | b'\n') => continue,
            Ok(_) => return true,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return false,
        }
    }
}

/// Ends a stream whose client sent more: its last chunk, then the connection.
async fn end(mut stream: TcpStream, chunked: bool, close: &CancellationToken) {
    if chunked && write_all(&mut stream, &[LAST_CHUNK], close).await.is_err() {
        return;
    }
    linger(stream).await;
}

/// Writes the whole of a short answer, then closes.
async fn answer_whole(mut stream: TcpStream, answer: Response, close: &CancellationToken) {
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map(|all| all.to_bytes())
        .unwrap_or_default();
    let head = response_head(&parts, Framing::Length(body.len()));
    if write_all(&mut stream, &[&head, &body], close).await.is_ok() {
        linger(stream).await;
    }
}

/// Closes `stream` after the server's last word: its own side first, then
/// what the client still sends is read and dropped until it closes too (for
/// [`LINGER`] at most). Closing with bytes left unread would reset the
/// connection, and the client could lose the answer before it reads it.
async fn linger(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0; 512];
    let drain = async {
        while let Ok(read) = stream.read(&mut sink).await {
            if read == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// How a response's body is delimited.
#[derive(Clone, Copy)]
enum Framing {
    /// This many bytes, then the connection closes.
    Length(usize),
    /// Chunks; and whether the connection closes after the last.
    Chunked { close: bool },
    /// By the end of the connection (HTTP/1.0, which has no chunks).
    UntilClose,
}

/// The status line and headers of a response, delimited by `framing`.
fn response_head(parts: &http::response::Parts, framing: Framing) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    let reason = parts.status.canonical_reason().unwrap_or("");
    head.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", parts.status.as_u16()).as_bytes());
    for (name, value) in &parts.headers {
        if [
            header::CONNECTION,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::DATE,
        ]
        .contains(name)
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    // RFC 9110 §6.6.1: an origin server with a clock sends the date.
    let date = httpdate::fmt_http_date(SystemTime::now());
    head.extend_from_slice(format!("date: {date}\r\n").as_bytes());
    let framing = match framing {
        Framing::Length(length) => format!("content-length: {length}\r\nconnection: close\r\n"),
        Framing::Chunked { close: false } => {
            "transfer-encoding: chunked\r\nconnection: keep-alive\r\n".to_owned()
        }
        Framing::Chunked { close: true } => {
            "transfer-encoding: chunked\r\nconnection: close\r\n".to_owned()
        }
        Framing::UntilClose => "connection: close\r\n".to_owned(),
    };
    head.extend_from_slice(framing.as_bytes());
    head.extend_from_slice(b"\r\n");
    head
}

/// Writes every part, in one vectored write when the socket takes it, unless
/// `close` is cancelled first.
async fn write_all(
    stream: &mut TcpStream,
    parts: &[&[u8]],
    close: &CancellationToken,
) -> std::io::Result<()> {
    let writing = async {
        let mut parts: Vec<&[u8]> = parts
            .iter()
            .copied()
            .filter(|part| !part.is_empty())
            .collect();
        while !parts.is_empty() {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
            let mut written = stream.write_vectored(&slices).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while let Some(first) = parts.first_mut() {
                if written < first.len() {
                    *first = &first[written..];
                    break;
                }
                written -= first.len();
                parts.remove(0);
            }
        }
        Ok(())
    };
    tokio::select! {
        written = writing => written,
        () = close.cancelled() => Err(std::io::ErrorKind::ConnectionAborted.into()),
    }
}
