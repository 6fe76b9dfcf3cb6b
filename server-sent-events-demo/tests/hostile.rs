//! Hostile clients, many at once, against the real binary: each row is one
//! shape of client that tries to pin the server's memory or descriptors, with
//! what the server must do to it and what each such connection may cost.

use std::net::SocketAddr;

use shared::policy::Reason;
use shared::testing::hostile::{self, Holding, Row, Seen, endless_head, row, silent, status_of};
use shared::testing::read_head;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const BINARY: &str = env!("CARGO_BIN_EXE_server-sent-events-demo");

/// Short limits, so that every row ends within seconds.
const ARGS: &[&str] = &[
    "--interval",
    "60m",
    "--heartbeat",
    "1s",
    "--request-timeout",
    "2s",
    // Every client here comes from 127.0.0.1; this table is not about that
    // cap, nor about the rate limit.
    "--max-clients-per-address",
    "100000",
    "--rate",
    "100000",
    "--burst",
    "100000",
];

async fn huge_headers(addr: SocketAddr, holding: Holding) -> Seen {
    let pad = "a".repeat(300 * 1024);
    let head = format!("GET /sse HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n");
    status_of(addr, head, holding).await
}

async fn long_last_event_id(addr: SocketAddr, holding: Holding) -> Seen {
    let id = "1".repeat(1024);
    let head = format!("GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {id}\r\n\r\n");
    status_of(addr, head, holding).await
}

async fn long_query_id(addr: SocketAddr, holding: Holding) -> Seen {
    let id = "1".repeat(1024);
    let head = format!("GET /sse?lastEventId={id} HTTP/1.1\r\nHost: x\r\n\r\n");
    status_of(addr, head, holding).await
}

/// 60 KiB of a body that says it has 64,000 bytes, then nothing.
async fn stalled_body(addr: SocketAddr, holding: Holding) -> Seen {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 64000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; 60 * 1024]).await.unwrap();
    holding.reached().await;
    let mut reader = BufReader::new(stream);
    Seen::Status(read_head(&mut reader).await.status)
}

#[tokio::test]
async fn no_hostile_client_pins_more_than_its_share() {
    use Seen::*;
    let slow = Some(Reason::SlowRequest);
    let too_large = Some(Reason::TooLarge);
    let rows = [
        row(
            "a connection that sends nothing",
            |addr, holding| Box::pin(silent(addr, holding)),
            Closed,
            4,
            slow,
        ),
        row(
            "a request head that never ends (8 KiB so far)",
            |addr, holding| Box::pin(endless_head(addr, "/sse", holding)),
            Closed,
            4,
            slow,
        ),
        row(
            "300 KiB of headers (hyper alone takes 400 KB)",
            |addr, holding| Box::pin(huge_headers(addr, holding)),
            Status(431),
            2,
            too_large,
        ),
        row(
            "a 1 KiB Last-Event-ID (it would be kept and echoed back)",
            |addr, holding| Box::pin(long_last_event_id(addr, holding)),
            Status(400),
            2,
            too_large,
        ),
        row(
            "a 1 KiB ?lastEventId=",
            |addr, holding| Box::pin(long_query_id(addr, holding)),
            Status(400),
            2,
            too_large,
        ),
        Row {
            // The body is kept as it arrives, up to --max-message (64 KiB),
            // besides hyper's read buffer: what keeps a crowd of these from
            // pinning it for long is the time limit.
            bound: 2 * 64 * 1024,
            ..row(
                "a POST body that stops after 60 KiB",
                |addr, holding| Box::pin(stalled_body(addr, holding)),
                Status(408),
                4,
                slow,
            )
        },
    ];
    hostile::check_table(BINARY, ARGS, &rows).await;
}

#[tokio::test]
async fn with_descriptors_exhausted_health_answers_and_a_new_stream_gets_503() {
    let stream = shared::testing::request("GET", "/sse", &[], "");
    hostile::check_descriptors_exhausted(BINARY, &stream).await;
}
