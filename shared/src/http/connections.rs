//! Which connections are served: never more than the open-file limit allows,
//! never more than `--max-clients-per-address` from one address, and a few
//! descriptors kept in reserve so that a server at its cap still answers:
//! `/healthz` and `/metrics` as usual, anything else with 503.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;

use super::refusal::Refusal;
use crate::policy::{Reason, TrustedProxies, address_key};

/// Connections answered from the reserve at once; a newer one pushes the
/// oldest out, so a flood of silent connections cannot hold the reserve.
pub const RESERVE: usize = 32;

/// Descriptors a server keeps for itself beyond its connections: the
/// listener, the runtime's own, standard streams, and the reserve.
pub const SPARE_DESCRIPTORS: usize = 32 + RESERVE;

/// The open connections, by client address.
pub struct Connections {
    /// Most connections served as usual.
    limit: usize,
    per_address: usize,
    /// Proxies carry many clients' connections: no cap per address for them.
    proxies: Arc<TrustedProxies>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    served: usize,
    by_address: HashMap<IpAddr, usize>,
    /// The reserve's connections, oldest first, each with its way out.
    reserve: VecDeque<(u64, CancellationToken)>,
    next_reserve: u64,
}

/// What a new connection gets.
pub enum Admission {
    /// Served as usual.
    Served(Slot),
    /// Over a limit: served from the reserve, one request, answered with
    /// this refusal unless it asks for `/healthz` or `/metrics`. Cancelling
    /// the token drops it.
    Reserve(Slot, Refusal, CancellationToken),
}

/// A connection's place; dropping it frees the place.
pub struct Slot {
    connections: Arc<Connections>,
    address: IpAddr,
    /// The reserve's key, for a connection served from the reserve.
    reserve: Option<u64>,
}

impl Connections {
    /// At most `limit` connections served as usual, `per_address` of them
    /// from one address (an IPv6 /64 counts as one) other than `proxies`.
    pub fn new(limit: usize, per_address: usize, proxies: Arc<TrustedProxies>) -> Arc<Connections> {
        Arc::new(Connections {
            limit,
            per_address,
            proxies,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Takes a place for a connection from `peer`.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Admission {
        let address = address_key(peer.ip());
        let mut state = self.state();
        let from_address = state.by_address.get(&address).copied().unwrap_or(0);
        let capped = !self.proxies.trusts(peer.ip());
        let refusal = if capped && from_address >= self.per_address {
            let why = format!(
                "your address has {} connections open already: close some and try again",
                self.per_address
            );
            Refusal::new(Reason::AddressLimit, StatusCode::SERVICE_UNAVAILABLE, why)
        } else if state.served >= self.limit {
            let why = "the server has as many connections as it takes: try again later";
            Refusal::new(Reason::Capacity, StatusCode::SERVICE_UNAVAILABLE, why)
        } else {
            state.served += 1;
            *state.by_address.entry(address).or_insert(0) += 1;
            return Admission::Served(Slot {
                connections: self.clone(),
                address,
                reserve: None,
            });
        };
        if state.reserve.len() >= RESERVE
            && let Some((_, oldest)) = state.reserve.pop_front()
        {
            oldest.cancel();
        }
        let key = state.next_reserve;
        state.next_reserve += 1;
        let close = CancellationToken::new();
        state.reserve.push_back((key, close.clone()));
        let slot = Slot {
            connections: self.clone(),
            address,
            reserve: Some(key),
        };
        Admission::Reserve(slot, refusal, close)
    }

    /// Connections served as usual now.
    pub fn served(&self) -> usize {
        self.state().served
    }
}

impl Slot {
    /// Whether this connection is served from the reserve.
    pub fn is_reserve(&self) -> bool {
        self.reserve.is_some()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.connections.state();
        match self.reserve {
            Some(key) => state.reserve.retain(|(each, _)| *each != key),
            None => {
                state.served -= 1;
                if let Some(count) = state.by_address.get_mut(&self.address) {
                    *count -= 1;
                    if *count == 0 {
                        state.by_address.remove(&self.address);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn served(admission: Admission) -> Slot {
        match admission {
            Admission::Served(slot) => slot,
            Admission::Reserve(_, refusal, _) => panic!("refused: {refusal:?}"),
        }
    }

    fn refused(admission: Admission) -> (Slot, Refusal, CancellationToken) {
        match admission {
            Admission::Served(_) => panic!("served"),
            Admission::Reserve(slot, refusal, close) => (slot, refusal, close),
        }
    }

    #[test]
    fn past_the_limit_connections_are_answered_from_the_reserve() {
        let connections = Connections::new(2, 10, Arc::default());
        let _a = served(connections.admit(peer("192.0.2.1:1")));
        let b = served(connections.admit(peer("192.0.2.2:1")));
        let (_, refusal, _) = refused(connections.admit(peer("192.0.2.3:1")));
        assert_eq!(refusal.reason, Some(Reason::Capacity));
        drop(b);
        let _c = served(connections.admit(peer("192.0.2.3:1")));
        assert_eq!(connections.served(), 2);
    }

    #[test]
    fn one_address_gets_at_most_its_share() {
        let connections = Connections::new(100, 2, Arc::default());
        let _slots: Vec<_> = (0..2)
            .map(|port| served(connections.admit(peer(&format!("192.0.2.1:{port}")))))
            .collect();
        let (_, refusal, _) = refused(connections.admit(peer("192.0.2.1:9")));
        assert_eq!(refusal.reason, Some(Reason::AddressLimit));
        served(connections.admit(peer("192.0.2.2:1")));
        // One IPv6 /64 is one address.
        let _v6: Vec<_> = ["[2001:db8::1]:1", "[2001:db8::2]:1"]
            .iter()
            .map(|text| served(connections.admit(peer(text))))
            .collect();
        refused(connections.admit(peer("[2001:db8::3]:1")));
    }

    #[test]
    fn a_trusted_proxy_is_not_capped_as_one_address() {
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let connections = Connections::new(100, 2, Arc::new(TrustedProxies::new(&[proxy])));
        let _slots: Vec<_> = (0..5)
            .map(|port| served(connections.admit(peer(&format!("10.0.0.1:{port}")))))
            .collect();
    }

    #[test]
    fn a_full_reserve_drops_its_oldest_connection_for_a_new_one() {
        let connections = Connections::new(0, 10, Arc::default());
        let first = refused(connections.admit(peer("192.0.2.1:1")));
        let mut rest: Vec<_> = (0..RESERVE - 1)
            .map(|port| refused(connections.admit(peer(&format!("192.0.2.2:{port}")))))
            .collect();
        assert!(!first.2.is_cancelled());
        rest.push(refused(connections.admit(peer("192.0.2.3:1"))));
        assert!(first.2.is_cancelled(), "the oldest made room");
        assert!(rest.iter().all(|(_, _, close)| !close.is_cancelled()));
    }
}
