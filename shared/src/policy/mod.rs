//! Policy: what the servers accept from clients, and the counts of what they
//! refused. Origins, rate limits, the reasons for a refusal, and the one path
//! every client message takes.

pub mod input;
pub mod origins;
pub mod proxies;
pub mod rate;
pub mod rejections;

pub use input::{Inbox, Refused};
pub use origins::Origins;
pub use proxies::TrustedProxies;
pub use rate::{RateLimiter, TokenBucket, address_key};
pub use rejections::{Reason, Rejections, clip};
