//! What a server refuses, and the counters of what it refused: allowed
//! origins, token-bucket rate limits, and the reasons for rejection.
//!
//! A page from any site can open a WebSocket to any server the browser reaches
//! (cross-site WebSocket hijacking), so the `Origin` of a browser's request is
//! checked against a list. Each message a client sends becomes one delivery per
//! connected client, so senders are rate limited.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The origins whose pages may use the server.
#[derive(Debug, Clone)]
pub struct Origins {
    any: bool,
    allowed: Vec<String>,
}

impl Origins {
    /// The server's own origins on `bound`, plus `extra` (`*` allows all).
    pub fn new(extra: &[String], bound: SocketAddr) -> Origins {
        let port = bound.port();
        let mut allowed = vec![
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
            format!("http://[::1]:{port}"),
        ];
        if !bound.ip().is_unspecified() && !bound.ip().is_loopback() {
            allowed.push(format!("http://{bound}"));
        }
        allowed.extend(extra.iter().map(|origin| normalize(origin)));
        Origins {
            any: extra.iter().any(|origin| origin.trim() == "*"),
            allowed,
        }
    }

    /// Whether a request with this `Origin` header may go on. Requests without
    /// one come from non-browser clients, which no origin rule protects against.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(origin) => self.any || self.allowed.contains(&normalize(origin)),
        }
    }
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        TokenBucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            updated: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let earned = now.duration_since(self.updated).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    fn is_full(&self) -> bool {
        let earned = self.updated.elapsed().as_secs_f64() * self.rate;
        self.tokens + earned >= self.burst
    }
}

/// One token bucket per client address, in bounded memory.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

/// Past this many addresses, buckets that are full again are forgotten.
const TRACKED_ADDRESSES: usize = 10_000;

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn take(&self, client: IpAddr) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= TRACKED_ADDRESSES {
            // A full bucket is the same as a new one: nothing is lost.
            buckets.retain(|_, bucket| !bucket.is_full());
        }
        buckets
            .entry(client)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst))
            .take()
    }
}

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
    fn own_origins_are_allowed_by_default_and_others_only_when_listed() {
        let bound: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let origins = Origins::new(&["https://example.com/".into()], bound);
        assert!(origins.allows(None));
        assert!(origins.allows(Some("http://localhost:8081")));
        assert!(origins.allows(Some("http://127.0.0.1:8081")));
        assert!(origins.allows(Some("HTTPS://EXAMPLE.COM")));
        assert!(!origins.allows(Some("http://localhost:8080")));
        assert!(!origins.allows(Some("http://evil.example")));
        assert!(!origins.allows(Some("null")));
        assert!(Origins::new(&["*".into()], bound).allows(Some("http://evil.example")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_its_rate() {
        let mut bucket = TokenBucket::new(10.0, 3);
        for _ in 0..3 {
            assert_eq!(bucket.take(), Ok(()));
        }
        let wait = bucket.take().unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(bucket.take(), Ok(()));
        assert!(bucket.take().is_err());
    }

    #[test]
    fn reasons_are_indexed_in_order() {
        for (index, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index);
        }
    }
}
