//! Long-lived responses served without hyper.
//!
//! hyper keeps two 8 KiB buffers for every HTTP/1.1 connection for as long
//! as it lives (one to read requests, one to write response heads), and an
//! event stream lives as long as its page: most of what the server holds for
//! a client would be those buffers. So a plain connection whose first request
//! is a `GET` of a streaming path (`/sse`) is served here: the head is parsed
//! with httparse (hyper's own parser), the request goes through the same warp
//! routes, and the response is written with chunked encoding as its body
//! yields, straight from the shared bytes. Anything else, or anything not
//! plainly well formed, goes to hyper untouched (nothing is read from the
//! connection until this path is sure it is its own).

use std::io::IoSlice;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use warp::http;

use super::context::Conn;

/// The largest request head looked at here; longer ones go to hyper, which
/// answers them (431 past its own limit).
const HEAD: usize = 4096;

/// Whether `stream`'s first request is a complete `GET` of one of `paths`;
/// waits for it at most `timeout`. `None`: the client sent nothing in time.
pub async fn wants(stream: &TcpStream, paths: &[&str], timeout: Duration) -> Option<bool> {
    if paths.is_empty() {
        return Some(false);
    }
    let mut head = vec![0; HEAD];
    let peeked = tokio::time::timeout(timeout, stream.peek(&mut head)).await;
    let Ok(Ok(length)) = peeked else {
        return None;
    };
    let text = &head[..length];
    let asks = paths.iter().any(|path| {
        let wanted = format!("GET {path}");
        text.starts_with(wanted.as_bytes()) && matches!(text.get(wanted.len()), Some(b' ' | b'?'))
    });
    Some(asks && parse(text).is_some())
}

/// A complete, well-formed request head at the start of `bytes`: the request
/// and the head's length.
fn parse(bytes: &[u8]) -> Option<(http::Request<Empty<Bytes>>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(length) = parsed.parse(bytes).ok()? else {
        return None;
    };
    if parsed.version != Some(1) {
        return None;
    }
    let mut request = http::Request::get(parsed.path?).version(http::Version::HTTP_11);
    for header in parsed.headers.iter() {
        request = request.header(header.name, header.value);
    }
    Some((request.body(Empty::new()).ok()?, length))
}

/// Serves the request [`wants`] found: answers it through `routes` and, if
/// the answer streams, writes it as it comes until it ends, the client goes,
/// or `close` is cancelled.
pub async fn serve<S>(mut stream: TcpStream, conn: Conn, mut routes: S)
where
    S: tower_service::Service<
            http::Request<Empty<Bytes>>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        >,
{
    let peer = conn.peer;
    let close = conn.close.clone();
    let mut head = vec![0; HEAD];
    let Ok(read) = stream.peek(&mut head).await else {
        return;
    };
    let Some((mut request, length)) = parse(&head[..read]) else {
        return;
    };
    // The head, taken off the connection now that it is ours.
    if stream.read_exact(&mut head[..length]).await.is_err() {
        return;
    }
    drop(head);
    // Held to the end: the connection's place among the server's is freed
    // when it ends.
    request.extensions_mut().insert(conn.clone());
    let Ok(response) = routes.call(request).await;
    let (parts, mut body) = response.into_parts();
    let streaming = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| value == "text/event-stream");
    if !streaming {
        // A refusal, typically: the whole answer, then the connection ends.
        let body = body
            .collect()
            .await
            .map(|all| all.to_bytes())
            .unwrap_or_default();
        let head = response_head(&parts, Some(body.len()));
        let _ = write_all(&mut stream, &[&head, &body], &close).await;
        return;
    }
    let head = response_head(&parts, None);
    if write_all(&mut stream, &[&head], &close).await.is_err() {
        return;
    }
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            gone = client_gone(&stream) => {
                if gone {
                    log::debug!("{peer}: the client closed its stream");
                }
                return;
            }
            () = close.cancelled() => return,
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
            chunk.push(size.as_bytes());
            chunk.extend(batch.iter().map(|data| &data[..]));
            chunk.push(b"\r\n");
            if write_all(&mut stream, &chunk, &close).await.is_err() {
                return;
            }
        }
        if ended {
            let _ = write_all(&mut stream, &[b"0\r\n\r\n"], &close).await;
            return;
        }
    }
}

/// The most events written in one chunk.
const BATCH: usize = 64;

/// Resolves once the client has closed its side (true) or sent something it
/// should not (false: a stream takes no further request).
async fn client_gone(stream: &TcpStream) -> bool {
    let mut byte = [0; 1];
    loop {
        if stream.readable().await.is_err() {
            return true;
        }
        match stream.try_read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return true,
        }
    }
}

/// The status line and headers of a response; with `length`, a fixed body
/// and the connection closing after it, else a chunked body.
fn response_head(parts: &http::response::Parts, length: Option<usize>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    let reason = parts.status.canonical_reason().unwrap_or("");
    head.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", parts.status.as_u16()).as_bytes());
    for (name, value) in &parts.headers {
        if name == http::header::CONNECTION || name == http::header::CONTENT_LENGTH {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match length {
        Some(length) => {
            head.extend_from_slice(
                format!("content-length: {length}\r\nconnection: close\r\n").as_bytes(),
            );
        }
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n"),
    }
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
