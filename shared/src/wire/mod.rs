//! The wire: how broadcasts and notices are written for the pages, as JSON
//! messages and as event-stream blocks.

pub mod message;
pub mod sse;

pub use message::{GOTCHA, Message, SOMETHING_CHANGED, broadcast_json, error_json, missed_json};
