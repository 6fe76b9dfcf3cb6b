//! What the bench and its client processes tell each other: one JSON object
//! a line, on the client process's stdin and stdout.
//!
//! The bench sends a [`Plan`], then the time of every broadcast it sends, then
//! [`ToWorker::Finish`]; it closes stdin to make the process exit. The process
//! answers that its clients are connected, how many deliveries arrived so far,
//! and at the end its [`Outcome`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;
use crate::servers::Kind;

/// One client process's share of the clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    #[serde(with = "kind")]
    pub kind: Kind,
    /// The servers; client `n` connects to `targets[n % targets.len()]`.
    pub targets: Vec<SocketAddr>,
    /// Its clients' numbers among all the clients of the run: from `first`,
    /// `count` of them.
    pub first: usize,
    pub count: usize,
    pub messages: usize,
    /// With TLS: the certificate to trust (PEM).
    pub tls: Option<PathBuf>,
    /// How many of its clients may be connecting at once.
    pub connecting: usize,
    /// How long the process may live, whatever it is told: it exits then.
    pub lifetime_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToWorker {
    Plan(Plan),
    /// Broadcast `seq` (from 1) was sent at `at_us` (µs since the Unix epoch).
    Sent {
        seq: usize,
        at_us: u64,
    },
    /// Stop waiting: say what arrived, then close every connection.
    Finish,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromWorker {
    /// Every client of the plan is connected and greeted: how many were
    /// greeted in each millisecond (since the Unix epoch), for the chart of
    /// clients connected over time.
    Connected {
        greeted: BTreeMap<u64, u32>,
    },
    /// A client could not connect, or the plan could not be followed.
    Failed {
        error: String,
    },
    /// Deliveries received so far, by every client of the process together.
    Progress {
        received: u64,
    },
    Outcome(Outcome),
}

/// What one process's clients received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub clients: usize,
    /// Deliveries, each broadcast counted once a client.
    pub received: u64,
    /// By broadcast, from 1: how many of the clients never got it.
    pub missing: Vec<u64>,
    /// Clients that missed at least one broadcast.
    pub short: usize,
    /// Why clients stopped listening before the end, and how many did.
    pub ended: BTreeMap<String, usize>,
    /// Broadcasts that were not the bench's, or came twice to one client.
    pub unexpected: u64,
    /// From send to receipt, in µs.
    pub latencies: Histogram,
    /// When the last delivery arrived, in µs since the Unix epoch.
    pub last_receipt_us: u64,
    /// The same, of each broadcast, from 1 (0 where none arrived).
    pub last_by_seq: Vec<u64>,
}

impl Outcome {
    /// Two processes' outcomes as one.
    pub fn add(&mut self, other: &Outcome) {
        self.clients += other.clients;
        self.received += other.received;
        if self.missing.len() < other.missing.len() {
            self.missing.resize(other.missing.len(), 0);
        }
        for (mine, theirs) in self.missing.iter_mut().zip(&other.missing) {
            *mine += theirs;
        }
        self.short += other.short;
        for (why, count) in &other.ended {
            *self.ended.entry(why.clone()).or_default() += count;
        }
        self.unexpected += other.unexpected;
        self.latencies.add(&other.latencies);
        self.last_receipt_us = self.last_receipt_us.max(other.last_receipt_us);
        if self.last_by_seq.len() < other.last_by_seq.len() {
            self.last_by_seq.resize(other.last_by_seq.len(), 0);
        }
        for (mine, theirs) in self.last_by_seq.iter_mut().zip(&other.last_by_seq) {
            *mine = (*mine).max(*theirs);
        }
    }

    pub fn lost(&self) -> u64 {
        self.missing.iter().sum()
    }
}

/// A line of the protocol, or why it is not one.
pub fn parse<T: for<'de> Deserialize<'de>>(line: &str) -> anyhow::Result<T> {
    serde_json::from_str(line).map_err(|error| anyhow::anyhow!("bad line {line:?}: {error}"))
}

pub fn line<T: Serialize>(message: &T) -> String {
    let mut line = serde_json::to_string(message).expect("the protocol's messages serialize");
    line.push('\n');
    line
}

/// A [`Kind`] by its `--only` name.
mod kind {
    use clap::ValueEnum;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::servers::Kind;

    pub fn serialize<S: Serializer>(kind: &Kind, serializer: S) -> Result<S::Ok, S::Error> {
        let value = kind.to_possible_value().expect("no kind is skipped");
        serializer.serialize_str(value.get_name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
        let name = String::deserialize(deserializer)?;
        Kind::from_str(&name, false).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_written() {
        let plan = Plan {
            kind: Kind::Sse,
            targets: vec!["127.0.0.1:8080".parse().unwrap()],
            first: 5,
            count: 7,
            messages: 3,
            tls: Some("target/tls/cert.pem".into()),
            connecting: 32,
            lifetime_secs: 60,
        };
        for message in [
            ToWorker::Plan(plan),
            ToWorker::Sent { seq: 1, at_us: 2 },
            ToWorker::Finish,
        ] {
            let line = line(&message);
            assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
            assert_eq!(parse::<ToWorker>(&line).unwrap(), message);
        }
        let outcome = Outcome {
            missing: vec![0, 1],
            ..Outcome::default()
        };
        let connected = FromWorker::Connected {
            greeted: [(1_733_000_000_123, 40), (1_733_000_000_125, 2)].into(),
        };
        for message in [connected, FromWorker::Outcome(outcome)] {
            assert_eq!(parse::<FromWorker>(&line(&message)).unwrap(), message);
        }
        assert!(line(&ToWorker::Finish).contains("\"finish\""));
    }

    #[test]
    fn outcomes_add_up_broadcast_by_broadcast() {
        let mut one = Outcome {
            clients: 2,
            received: 3,
            missing: vec![1, 0],
            short: 1,
            last_by_seq: vec![7, 9],
            ..Outcome::default()
        };
        let two = Outcome {
            clients: 1,
            received: 1,
            missing: vec![0, 1, 1],
            short: 1,
            ended: [("closed".to_owned(), 1)].into(),
            last_by_seq: vec![8, 0, 5],
            ..Outcome::default()
        };
        one.add(&two);
        assert_eq!((one.clients, one.received, one.short), (3, 4, 2));
        assert_eq!(one.missing, [1, 1, 1]);
        assert_eq!(one.lost(), 3);
        assert_eq!(one.ended["closed"], 1);
        assert_eq!(one.last_by_seq, [8, 9, 5]);
    }
}
