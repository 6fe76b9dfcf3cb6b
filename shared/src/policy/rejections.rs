//! The reasons an input is refused, and the counts of what was refused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an input was refused; each is counted under its own label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A browser page from an origin not on the list.
    Origin,
    /// A request hyper could not parse as HTTP.
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
    /// A method `/api` does not take.
    Method,
    /// A body that is not declared as JSON.
    ContentType,
    /// The server has `--max-clients` clients already.
    Capacity,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
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
        }
    }
}

/// Counts of refused inputs, by reason, and of rate-limited messages.
#[derive(Debug, Default)]
pub struct Rejections {
    by_reason: [AtomicU64; Reason::ALL.len()],
    pub rate_limited: AtomicU64,
}

impl Rejections {
    /// Counts a rejection and logs it, once, with what was wrong.
    pub fn record(&self, reason: Reason, peer: SocketAddr, what: &str) {
        self.by_reason[reason as usize].fetch_add(1, Ordering::Relaxed);
        log::info!("Refused input from {peer} ({}): {what}", reason.label());
    }

    /// Counts a rate-limited message or request and logs it.
    pub fn record_rate_limited(&self, peer: SocketAddr) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        log::info!("Rate limited {peer}");
    }

    pub fn count(&self, reason: Reason) -> u64 {
        self.by_reason[reason as usize].load(Ordering::Relaxed)
    }
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
}
