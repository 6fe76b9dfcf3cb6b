//! Which pages may use the server.
//!
//! A page from any site can open a WebSocket to any server the browser reaches
//! (cross-site WebSocket hijacking), and send it requests, so the `Origin` of
//! a browser's request is checked against a list.

use std::net::SocketAddr;

/// The origins whose pages may use the server.
#[derive(Debug, Clone)]
pub struct Origins {
    any: bool,
    allowed: Vec<String>,
}

impl Origins {
    /// The server's own origins on `bound` (`https://` ones when it speaks
    /// TLS), plus `extra` (`*` allows all).
    pub fn new(extra: &[String], bound: SocketAddr, tls: bool) -> Origins {
        let port = bound.port();
        let scheme = if tls { "https" } else { "http" };
        let mut allowed = vec![
            format!("{scheme}://localhost:{port}"),
            format!("{scheme}://127.0.0.1:{port}"),
            format!("{scheme}://[::1]:{port}"),
        ];
        if !bound.ip().is_unspecified() && !bound.ip().is_loopback() {
            allowed.push(format!("{scheme}://{bound}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origins_are_allowed_by_default_and_others_only_when_listed() {
        let bound: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let origins = Origins::new(&["https://example.com/".into()], bound, false);
        assert!(origins.allows(None));
        assert!(origins.allows(Some("http://localhost:8081")));
        assert!(origins.allows(Some("http://127.0.0.1:8081")));
        assert!(origins.allows(Some("HTTPS://EXAMPLE.COM")));
        assert!(!origins.allows(Some("http://localhost:8080")));
        assert!(!origins.allows(Some("http://evil.example")));
        assert!(!origins.allows(Some("null")));
    }

    #[test]
    fn over_tls_the_own_origins_are_https() {
        let bound: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let origins = Origins::new(&[], bound, true);
        assert!(origins.allows(Some("https://localhost:8443")));
        assert!(!origins.allows(Some("http://localhost:8443")));
    }

    #[test]
    fn a_star_allows_every_origin() {
        let bound: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert!(Origins::new(&["*".into()], bound, false).allows(Some("http://evil.example")));
    }
}
