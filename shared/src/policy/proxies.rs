//! Who the client is behind a reverse proxy.
//!
//! Behind a proxy every request comes from the proxy's address, so rate
//! limits and logs would see one client. A trusted proxy says who its client
//! is in `X-Forwarded-For`; anyone else could write anything there, so the
//! header is believed only from an address on the `--trusted-proxy` list.

use std::net::{IpAddr, SocketAddr};

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    addresses: Vec<IpAddr>,
}

impl TrustedProxies {
    pub fn new(addresses: &[IpAddr]) -> TrustedProxies {
        TrustedProxies {
            addresses: addresses.iter().copied().map(canonical).collect(),
        }
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.addresses.contains(&canonical(ip))
    }

    /// The client a request from `peer` is for: `peer` itself, unless `peer`
    /// is a trusted proxy and `forwarded_for` names the client. Read from the
    /// right, the header lists the hops nearest first: the first one that is
    /// not a trusted proxy is the client (what is further left, the client
    /// wrote itself).
    pub fn client(&self, peer: SocketAddr, forwarded_for: Option<&str>) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let hops: Vec<IpAddr> = header
            .rsplit(',')
            .map_while(|hop| hop.trim().parse().ok())
            .collect();
        let client = hops
            .iter()
            .find(|hop| !self.trusts(**hop))
            .or(hops.last())
            .copied();
        client.map_or(peer, |ip| SocketAddr::new(canonical(ip), peer.port()))
    }
}

/// IPv4 addresses written as IPv6 (`::ffff:a.b.c.d`) as the IPv4 they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(&["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()])
    }

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_trusted_proxy_names_its_client() {
        let client = proxies().client(peer("10.0.0.1:5000"), Some("203.0.113.7"));
        assert_eq!(client.ip(), "203.0.113.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn anyone_else_is_taken_as_the_client_whatever_it_says() {
        let client = proxies().client(peer("198.51.100.9:5000"), Some("203.0.113.7"));
        assert_eq!(client, peer("198.51.100.9:5000"));
    }

    #[test]
    fn what_the_client_wrote_itself_is_ignored() {
        // The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended it.
        let header = Some("1.2.3.4, 203.0.113.7");
        let client = proxies().client(peer("10.0.0.1:5000"), header);
        assert_eq!(client.ip(), "203.0.113.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked_back_to_the_client() {
        let header = Some("203.0.113.7, 10.0.0.2");
        let client = proxies().client(peer("10.0.0.1:5000"), header);
        assert_eq!(client.ip(), "203.0.113.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_header_that_is_not_addresses_leaves_the_peer() {
        let client = proxies().client(peer("10.0.0.1:5000"), Some("garbage"));
        assert_eq!(client, peer("10.0.0.1:5000"));
    }
}
