//! Latencies of millions of deliveries, kept small enough to travel from a
//! client process as one JSON line and to add up exactly across processes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Values (microseconds) in buckets: exact below 128, then 128 buckets for
/// every power of two, so a value is known to within 1/128 (0.8 %).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Values by bucket.
    counts: BTreeMap<u32, u64>,
    /// The largest value, exactly.
    max: u64,
    count: u64,
}

const EXACT: u64 = 128;
/// Bits of a value kept below its highest one: 7, for 128 buckets.
const KEPT: u32 = EXACT.trailing_zeros();

fn bucket(value: u64) -> u32 {
    if value < EXACT {
        return value as u32;
    }
    let high = 63 - value.leading_zeros();
    let below = (value >> (high - KEPT)) & (EXACT - 1);
    (high - KEPT + 1) * EXACT as u32 + below as u32
}

/// The smallest value of a bucket, and how many values it holds.
fn bounds(bucket: u32) -> (u64, u64) {
    let bucket = u64::from(bucket);
    if bucket < EXACT {
        return (bucket, 1);
    }
    let shift = bucket / EXACT - 1;
    ((EXACT + bucket % EXACT) << shift, 1 << shift)
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        *self.counts.entry(bucket(value)).or_default() += 1;
        self.max = self.max.max(value);
        self.count += 1;
    }

    pub fn add(&mut self, other: &Histogram) {
        for (bucket, count) in &other.counts {
            *self.counts.entry(*bucket).or_default() += count;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
    }

    /// The value a share `p` (0 to 1) of the values are at most: the middle
    /// of its bucket, and exactly the largest for 1.
    pub fn percentile(&self, p: f64) -> u64 {
        let rank = ((self.count as f64 * p).ceil() as u64).clamp(1, self.count.max(1));
        let mut seen = 0;
        for (bucket, count) in &self.counts {
            seen += count;
            if seen >= rank {
                let (low, width) = bounds(*bucket);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_that_holds_it() {
        for value in (0..5000).chain([1 << 20, (1 << 20) + 12345, u64::MAX / 3]) {
            let (low, width) = bounds(bucket(value));
            assert!(
                low <= value && value < low + width,
                "{value}: {low} +{width}"
            );
            assert!(width == 1 || width * EXACT <= value, "{value}: {width}");
        }
    }

    #[test]
    fn buckets_follow_each_other_without_gaps() {
        for bucket in 0..3000 {
            let (low, width) = bounds(bucket);
            assert_eq!(bounds(bucket + 1).0, low + width, "{bucket}");
        }
    }

    #[test]
    fn percentiles_are_within_a_bucket_and_the_maximum_is_exact() {
        let mut histogram = Histogram::default();
        for value in 1..=10_000 {
            histogram.record(value);
        }
        for (p, exact) in [(0.5, 5000.0), (0.9, 9000.0), (0.99, 9900.0)] {
            let found = histogram.percentile(p) as f64;
            assert!((found - exact).abs() / exact < 0.01, "p{p}: {found}");
        }
        assert_eq!(histogram.percentile(1.0), 10_000);
        assert_eq!(Histogram::default().percentile(0.5), 0);
    }

    #[test]
    fn histograms_add_up_as_if_one_had_recorded_everything() {
        let (mut one, mut two, mut both) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for value in [3, 700, 90_000] {
            one.record(value);
            both.record(value);
        }
        for value in [5, 1_000_000] {
            two.record(value);
            both.record(value);
        }
        one.add(&two);
        assert_eq!(one, both);
        assert_eq!(both.count, 5);
        let json = serde_json::to_string(&one).unwrap();
        assert_eq!(serde_json::from_str::<Histogram>(&json).unwrap(), both);
    }
}
