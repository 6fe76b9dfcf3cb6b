//! Raw HTTP/1.1, written by hand so that any request can be sent, a
//! malformed one too, and any answer read: the tests' refusal tables, the
//! tasks' health checks and the wait for nginx all go through here.

use std::io;
use std::net::SocketAddr;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::net::TcpStream;

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A `Connection: close` request for `path` with `method`, headers and body.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// `GET path` on a new connection to `addr`: the whole answer.
pub async fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    send(addr, &request("GET", path, &[], "")).await
}

/// Sends `request` (raw bytes) on a new connection to `addr`: the whole answer.
pub async fn send(addr: SocketAddr, request: &[u8]) -> io::Result<Response> {
    exchange(TcpStream::connect(addr).await?, request).await
}

/// Sends `request` over `stream` (plain or TLS) and reads one whole answer:
/// up to its Content-Length, the end of its chunks, or the end of the
/// connection.
pub async fn exchange<S>(mut stream: S, request: &[u8]) -> io::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The server may answer (and close) before it reads all of a bad request.
    let _ = stream.write_all(request).await;
    let mut raw = Vec::new();
    let mut buffer = vec![0; 16 * 1024];
    while !is_complete(&raw) {
        match stream.read(&mut buffer).await {
            // A close without TLS's close_notify is an error: the answer is in.
            Ok(0) | Err(_) => break,
            Ok(read) => raw.extend_from_slice(&buffer[..read]),
        }
    }
    parse(&raw)
}

/// Reads a response head off `reader`, leaving the body to read: a
/// [`Response`] with an empty body.
pub async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Response> {
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        if reader.read_line(&mut head).await? == 0 {
            break;
        }
    }
    parse(head.as_bytes())
}

/// Whether `raw` holds a whole answer: up to its Content-Length, or its
/// last chunk.
pub fn is_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse::<usize>().ok());
    match length {
        Some(length) => body.len() >= length,
        None if head.contains("transfer-encoding: chunked") => body.ends_with("0\r\n\r\n"),
        None => false,
    }
}

/// An answer, or a head alone, as raw bytes: the body put back together
/// when it is chunked.
pub fn parse(raw: &[u8]) -> io::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            let error = format!("not an HTTP response: {text:?}");
            io::Error::new(io::ErrorKind::InvalidData, error)
        })?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The data of a chunked body, as far as it has come.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_answer_is_put_back_together() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert!(is_complete(raw));
        let response = parse(raw).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("transfer-encoding"), Some("chunked"));
        assert_eq!(response.body, "abcde");
    }

    #[test]
    fn an_answer_is_complete_at_its_length_and_not_before() {
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab"
        ));
        assert!(is_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
        ));
    }

    #[test]
    fn what_is_not_http_is_an_error_that_quotes_it() {
        let error = parse(b"SSH-2.0-OpenSSH").unwrap_err();
        assert!(error.to_string().contains("SSH-2.0"), "{error}");
    }
}
