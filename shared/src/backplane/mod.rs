//! Backplanes: several instances of a server sharing one log of broadcasts,
//! so that every instance delivers the same broadcasts, in the same order,
//! with the same ids, and a client resumes on any of them.
//!
//! A backplane is a [`Publisher`](crate::core::Publisher) (it appends each
//! broadcast to the log) and the one feed of its instance's hub (a
//! [`BackplaneFeed`](crate::core::BackplaneFeed): it delivers what it reads
//! back, with the log's ids, and loads the log's tail for resumes). Redis
//! Streams are the one engine today; another would be a sibling module.

pub mod redis;

pub use redis::{BadUrl, Redis};

/// How many broadcasts past the newest an instance has a resuming client's
/// id may be, and still be waited for: the client comes from an instance
/// that read further, and this one will soon catch up.
pub const AHEAD: u64 = 1024;
