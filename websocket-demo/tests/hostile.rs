//! Hostile clients, many at once, against the real binary: each row is one
//! shape of client that tries to pin the server's memory or descriptors, with
//! what the server must do to it and what each such connection may cost.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{FIN, KEY, PING, RawSocket, TEXT, UPGRADE, V13, frame};
use shared::policy::Reason;
use shared::testing::hostile::{
    self, Holding, Row, Seen, endless_head, row, silent, status_of, until_closed,
};
use tokio::io::AsyncWriteExt;

const BINARY: &str = env!("CARGO_BIN_EXE_websocket-demo");

/// Short limits, so that every row ends within seconds.
const ARGS: &[&str] = &[
    "--interval",
    "60m",
    "--heartbeat",
    "1s",
    "--request-timeout",
    "2s",
    // Every client here comes from 127.0.0.1; this table is not about that cap.
    "--max-clients-per-address",
    "100000",
];

/// What one connection may cost, whatever the client does: the target.
const KIB_64: u64 = 64 * 1024;

/// Sends `frame` every `every`, reading nothing, until the server is gone.
async fn send_until_closed(socket: RawSocket, bytes: Vec<u8>, every: Duration) -> Seen {
    let mut stream = socket.into_inner();
    while stream.write_all(&bytes).await.is_ok() {
        tokio::time::sleep(every).await;
    }
    Seen::Closed
}

async fn huge_headers(addr: SocketAddr, holding: Holding) -> Seen {
    let pad = "a".repeat(300 * 1024);
    let head = format!("{UPGRADE}{KEY}{V13}X-Pad: {pad}\r\n\r\n");
    status_of(addr, head, holding).await
}

async fn long_since(addr: SocketAddr, holding: Holding) -> Seen {
    let since = "1".repeat(1024);
    let head = format!(
        "GET /?since={since} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{KEY}{V13}\r\n"
    );
    status_of(addr, head, holding).await
}

/// A 60 KiB text frame without FIN, then pings (and pongs to the server's
/// pings) to look alive: the message never ends.
async fn unfinished_message(addr: SocketAddr, holding: Holding) -> Seen {
    let mut socket = RawSocket::open(addr).await;
    socket
        .send(&frame(TEXT, &vec![b' '; 60 * 1024], true))
        .await;
    holding.reached().await;
    let mut pings = tokio::time::interval(Duration::from_millis(700));
    loop {
        tokio::select! {
            _ = pings.tick() => socket.send(&frame(FIN | PING, b"", true)).await,
            frame_read = socket.read_frame() => match frame_read {
                Some((0x8, payload)) if payload.len() >= 2 => {
                    return Seen::CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                }
                Some((0x9, payload)) => socket.send(&frame(FIN | 0xA, &payload, true)).await,
                Some(_) => {}
                None => return Seen::Closed,
            },
        }
    }
}

async fn ping_flood(addr: SocketAddr, holding: Holding) -> Seen {
    let mut socket = RawSocket::open(addr).await;
    let pings: Vec<u8> = (0..50).flat_map(|_| frame(FIN | PING, b"", true)).collect();
    socket.send(&pings).await;
    holding.reached().await;
    send_until_closed(socket, pings, Duration::from_millis(50)).await
}

async fn pings_but_never_reads(addr: SocketAddr, holding: Holding) -> Seen {
    let mut socket = RawSocket::open(addr).await;
    let ping = frame(FIN | PING, b"", true);
    socket.send(&ping).await;
    holding.reached().await;
    send_until_closed(socket, ping, Duration::from_millis(700)).await
}

async fn never_answers(addr: SocketAddr, holding: Holding) -> Seen {
    let socket = RawSocket::open(addr).await;
    holding.reached().await;
    // Reading is allowed: what it never does is answer a ping.
    until_closed(&mut socket.into_inner()).await
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
            |addr, holding| Box::pin(endless_head(addr, "/", holding)),
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
            "a 1 KiB ?since= (it would be kept and echoed back)",
            |addr, holding| Box::pin(long_since(addr, holding)),
            Status(400),
            2,
            too_large,
        ),
        Row {
            // A message may be up to --max-message (64 KiB) while it arrives
            // (held once, as it comes: 72 KiB a connection measured here,
            // 140 KiB when tungstenite held the frame and the message). What
            // keeps a crowd of these from pinning it for long is the time limit.
            bound: 2 * KIB_64 + 48 * 1024,
            ..row(
                "an unfinished 60 KiB fragmented message, kept alive",
                |addr, holding| Box::pin(unfinished_message(addr, holding)),
                CloseCode(1008),
                5,
                slow,
            )
        },
        row(
            "a flood of pings, never reading the pongs",
            |addr, holding| Box::pin(ping_flood(addr, holding)),
            Closed,
            3,
            Some(Reason::TooManyPings),
        ),
        row(
            "pings now and then, never reading",
            |addr, holding| Box::pin(pings_but_never_reads(addr, holding)),
            Closed,
            5,
            None,
        ),
        row(
            "reads, but never answers a ping",
            |addr, holding| Box::pin(never_answers(addr, holding)),
            Closed,
            5,
            None,
        ),
    ];
    hostile::check_table(BINARY, ARGS, &rows).await;
}

#[tokio::test]
async fn with_descriptors_exhausted_health_answers_and_a_new_client_gets_503() {
    let handshake = format!("{UPGRADE}{KEY}{V13}\r\n");
    hostile::check_descriptors_exhausted(BINARY, handshake.as_bytes()).await;
}
