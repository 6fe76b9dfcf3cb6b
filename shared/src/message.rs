//! The JSON that travels between the servers and the pages.

use serde::{Deserialize, Serialize};

/// The message text the original demos sent to each new client.
pub const GOTCHA: &str = "Gotcha";
/// The message text the ticker broadcasts every interval.
pub const HELLO: &str = "Hello hello!";
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

/// An error answer, sent to the one client that caused it: `{"error":"..."}`.
pub fn error_json(error: &str) -> String {
    serde_json::json!({ "error": error }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_json_matches_the_originals() {
        assert_eq!(Message::new(GOTCHA).to_json(), r#"{"message":"Gotcha"}"#);
        assert_eq!(
            Message::new(HELLO).to_json(),
            r#"{"message":"Hello hello!"}"#
        );
    }

    #[test]
    fn error_json_escapes_its_text() {
        assert_eq!(error_json("bad \"x\""), r#"{"error":"bad \"x\""}"#);
    }
}
