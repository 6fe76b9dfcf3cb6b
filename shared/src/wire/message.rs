//! The JSON that travels between the servers and the pages.

use serde::{Deserialize, Serialize};

use crate::core::{EventId, Missed};

/// The message text the original demos sent to each new client.
pub const GOTCHA: &str = "Gotcha";
/// The message text broadcast when a client sends something.
pub const SOMETHING_CHANGED: &str = "Something changed";

/// The wire message of both demos: `{"message":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message: String,
}

impl Message {
    pub fn new(text: impl Into<String>) -> Self {
        Message {
            message: text.into(),
        }
    }

    /// The message as compact JSON.
    pub fn to_json(&self) -> String {
        // Serializing a struct of one string cannot fail.
        serde_json::to_string(self).expect("a Message always serializes")
    }
}

/// A broadcast with its id, as one WebSocket message: `{"id":"...","message":"..."}`.
pub fn broadcast_json(id: EventId, message: &str) -> String {
    #[derive(Serialize)]
    struct Broadcast<'a> {
        id: String,
        message: &'a str,
    }
    let id = id.to_string();
    serde_json::to_string(&Broadcast { id, message }).expect("strings always serialize")
}

/// The missed-messages notice: `{"missed":true,"since":"...","reason":"..."}`.
pub fn missed_json(missed: &Missed) -> String {
    #[derive(Serialize)]
    struct Notice<'a> {
        missed: bool,
        since: &'a str,
        reason: &'a str,
    }
    let notice = Notice {
        missed: true,
        since: &missed.since,
        reason: missed.reason.as_str(),
    };
    serde_json::to_string(&notice).expect("strings always serialize")
}

/// An error answer, sent to the one client that caused it: `{"error":"..."}`.
pub fn error_json(error: &str) -> String {
    serde_json::json!({ "error": error }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::MissedReason;

    #[test]
    fn message_json_matches_the_originals() {
        assert_eq!(Message::new(GOTCHA).to_json(), r#"{"message":"Gotcha"}"#);
        assert_eq!(
            Message::new("Hello hello!").to_json(),
            r#"{"message":"Hello hello!"}"#
        );
    }

    #[test]
    fn a_broadcast_carries_its_id() {
        let id = EventId { run: 0xa, seq: 7 };
        assert_eq!(broadcast_json(id, "Hi"), r#"{"id":"a-7","message":"Hi"}"#);
    }

    #[test]
    fn the_missed_notice_names_the_id_and_the_reason() {
        let missed = Missed {
            since: "a-1".into(),
            reason: MissedReason::Expired,
        };
        assert_eq!(
            missed_json(&missed),
            r#"{"missed":true,"since":"a-1","reason":"expired"}"#
        );
    }

    #[test]
    fn error_json_escapes_its_text() {
        assert_eq!(error_json("bad \"x\""), r#"{"error":"bad \"x\""}"#);
    }
}
