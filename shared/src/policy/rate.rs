//! Rate limits: each message a client sends becomes one delivery per
//! connected client, so senders are limited with token buckets.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::time::Instant;

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
}

/// One rate limit per client address (an IPv6 /64 counts as one address): a
/// keyed GCRA limiter, O(1) a request whatever the number of addresses, that
/// forgets addresses once they are back to a full burst.
pub struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Checks since addresses were last forgotten.
    checks: AtomicU64,
}

/// How many checks go by between two sweeps of the addresses back to a full
/// burst: the sweep is O(addresses), so it is spread over many O(1) checks.
const SWEEP_EVERY: u64 = 4096;

impl RateLimiter {
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        // Config refuses a rate of zero and a burst under 1.
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("a period of at least 1ns")
            .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"));
        RateLimiter {
            limiter: governor::RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes a token for `client`'s address, or says how long until one is there.
    pub fn take(&self, client: IpAddr) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // An address back to a full burst is the same as a new one.
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&address_key(client))
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// How many addresses are remembered now.
    pub fn addresses(&self) -> usize {
        self.limiter.len()
    }
}

/// The address a client is counted under: itself for IPv4, its /64 for
/// IPv6 (one host usually holds a whole /64, so any narrower key could be
/// dodged by changing address).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_address_gets_its_burst_then_waits() {
        let limiter = RateLimiter::new(0.1, 3);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.take(client), Ok(()));
        }
        let wait = limiter.take(client).unwrap_err();
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            limiter.take(other),
            Ok(()),
            "another address has its own burst"
        );
    }

    #[test]
    fn addresses_in_one_ipv6_64_share_a_limit() {
        let limiter = RateLimiter::new(0.1, 1);
        assert!(limiter.take("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(
            limiter
                .take("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_err()
        );
        assert!(limiter.take("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn addresses_back_to_a_full_burst_are_forgotten() {
        // A token every nanosecond: every address is full again at once.
        let limiter = RateLimiter::new(1e9, 1);
        for index in 0..SWEEP_EVERY {
            let client = IpAddr::V4((index as u32).into());
            limiter.take(client).unwrap();
        }
        assert!(
            limiter.addresses() < 10,
            "{} remembered",
            limiter.addresses()
        );
    }
}
