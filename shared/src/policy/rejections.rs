//! The reasons an input is refused, and the counts of what was refused.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why an input was refused; each is counted under its own label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A browser page from an origin not on the list.
    Origin,
    /// A request that is not HTTP/1.1 as RFC 9112 has it (unparsable, no
    /// `Host` or several), a body on an event stream's `GET`, or a request
    /// sent behind an event stream on its connection.
    MalformedHttp,
    /// A WebSocket upgrade request that breaks RFC 6455.
    Handshake,
    /// A WebSocket frame that breaks RFC 6455.
    Protocol,
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// A message or body over the size limit.
    TooLarge,
    /// A binary WebSocket message.
    Binary,
    /// Not JSON, or not `{"message": "..."}`.
    BadMessage,
    /// A method `/api` does not take, or one the server does not know (`get`).
    Method,
    /// A body that is not declared as JSON.
    ContentType,
    /// The server has `--max-clients` clients, or as many connections as
    /// its open-file limit allows, already.
    Capacity,
    /// The client's address has `--max-clients-per-address` connections already.
    AddressLimit,
    /// A request head, a request body or a WebSocket message that took longer
    /// than `--request-timeout`, or a connection that sent no request at all.
    SlowRequest,
    /// WebSocket pings (or the page's own ping messages) faster than allowed.
    TooManyPings,
    /// A TLS handshake that failed (or plain HTTP sent to the TLS port).
    Tls,
}

impl Reason {
    pub const ALL: [Reason; 15] = [
        Reason::Origin,
        Reason::MalformedHttp,
        Reason::Handshake,
        Reason::Protocol,
        Reason::InvalidUtf8,
        Reason::TooLarge,
        Reason::Binary,
        Reason::BadMessage,
        Reason::Method,
        Reason::ContentType,
        Reason::Capacity,
        Reason::AddressLimit,
        Reason::SlowRequest,
        Reason::TooManyPings,
        Reason::Tls,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Origin => "origin",
            Reason::MalformedHttp => "malformed_http",
            Reason::Handshake => "handshake",
            Reason::Protocol => "protocol",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::TooLarge => "too_large",
            Reason::Binary => "binary",
            Reason::BadMessage => "bad_message",
            Reason::Method => "method",
            Reason::ContentType => "content_type",
            Reason::Capacity => "capacity",
            Reason::AddressLimit => "address_limit",
            Reason::SlowRequest => "slow_request",
            Reason::TooManyPings => "too_many_pings",
            Reason::Tls => "tls",
        }
    }
}

/// Counts of refused inputs, by reason, and of rate-limited messages.
///
/// Each refusal is logged, but a flood of one kind is not: past
/// [`LOGGED_PER_WINDOW`] lines of a kind in a [`LOG_WINDOW`], the rest are
/// counted and summed up in one line when the window ends.
#[derive(Debug, Default)]
pub struct Rejections {
    by_reason: [AtomicU64; Reason::ALL.len()],
    pub rate_limited: AtomicU64,
    /// Log lines by kind: every reason, then rate limiting.
    log: Mutex<[LogWindow; Reason::ALL.len() + 1]>,
}

/// How long a flood of one kind of refusal is summed up over.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);
/// Lines of one kind logged in a window before the rest are only counted.
pub const LOGGED_PER_WINDOW: u32 = 5;

#[derive(Debug, Default, Clone, Copy)]
struct LogWindow {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Rejections {
    /// Counts a rejection and logs it with what was wrong (cut short if long).
    pub fn record(&self, reason: Reason, peer: SocketAddr, what: &str) {
        self.by_reason[reason as usize].fetch_add(1, Ordering::Relaxed);
        if self.may_log(reason as usize) {
            let what = clip(what);
            log::info!("Refused input from {peer} ({}): {what}", reason.label());
        }
    }

    /// Counts a rate-limited message or request and logs it.
    pub fn record_rate_limited(&self, peer: SocketAddr) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        if self.may_log(Reason::ALL.len()) {
            log::info!("Rate limited {peer}");
        }
    }

    pub fn count(&self, reason: Reason) -> u64 {
        self.by_reason[reason as usize].load(Ordering::Relaxed)
    }

    /// Whether one more line of this kind may be logged in its window.
    fn may_log(&self, kind: usize) -> bool {
        let mut log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        let window = &mut log[kind];
        let now = Instant::now();
        if window
            .started
            .is_none_or(|started| now - started >= LOG_WINDOW)
        {
            summarize(kind, window);
            *window = LogWindow {
                started: Some(now),
                ..LogWindow::default()
            };
        }
        if window.logged < LOGGED_PER_WINDOW {
            window.logged += 1;
            true
        } else {
            window.suppressed += 1;
            false
        }
    }

    /// Logs the summary of every window that has ended; call it now and then
    /// so that the last burst of a flood is summed up too.
    pub fn flush(&self) {
        let mut log = self.log.lock().unwrap_or_else(|poison| poison.into_inner());
        let now = Instant::now();
        for (kind, window) in log.iter_mut().enumerate() {
            if window
                .started
                .is_some_and(|started| now - started >= LOG_WINDOW)
            {
                summarize(kind, window);
                *window = LogWindow::default();
            }
        }
    }
}

fn summarize(kind: usize, window: &LogWindow) {
    if window.suppressed == 0 {
        return;
    }
    let label = Reason::ALL
        .get(kind)
        .map_or("rate_limited", |reason| reason.label());
    log::info!(
        "... and {} more refused ({label}) in the last {} s, not logged one by one",
        window.suppressed,
        LOG_WINDOW.as_secs()
    );
}

/// The most of a client's text that goes into a log line or an answer.
pub const CLIP: usize = 200;

/// `text`, cut to [`CLIP`] bytes (at a character boundary) with a note of
/// its whole length: what a client sends is never logged or echoed whole.
pub fn clip(text: &str) -> Cow<'_, str> {
    if text.len() <= CLIP {
        return Cow::Borrowed(text);
    }
    let mut end = CLIP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}... ({} bytes)", &text[..end], text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order() {
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index);
        }
    }

    #[test]
    fn long_text_is_clipped_with_its_length() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(300);
        let clipped = clip(&long);
        assert!(clipped.ends_with("... (600 bytes)"), "{clipped}");
        assert!(clipped.len() < CLIP + 20);
    }

    #[test]
    fn a_flood_is_counted_whole_but_logged_a_few_times() {
        let rejections = Rejections::default();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let logged = (0..100)
            .filter(|_| rejections.may_log(Reason::Origin as usize))
            .count();
        assert_eq!(logged, LOGGED_PER_WINDOW as usize);
        rejections.record(Reason::Origin, peer, "x");
        assert_eq!(rejections.count(Reason::Origin), 1);
        assert!(
            rejections.may_log(Reason::Binary as usize),
            "other kinds are logged"
        );
    }
}
