//! The `text/event-stream` wire format, framed once per event.
//!
//! The format is line based: a field per line, a blank line ends the event. A
//! line break inside a value would start a new field or a new event, so data is
//! split at every line break (CR, LF or CRLF, as the spec's parser does) into
//! several `data:` lines, which the browser joins back with `\n`.

use std::time::Duration;

use bytes::Bytes;

/// One event: optional `event:` name and `id:`, then the data.
pub fn event(name: Option<&str>, id: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(name) = name {
        push_field(&mut out, "event", name);
    }
    if let Some(id) = id {
        push_field(&mut out, "id", id);
    }
    for line in lines(data) {
        push_field(&mut out, "data", line);
    }
    out.push('\n');
    Bytes::from(out)
}

/// The heartbeat: an event named `ping`, which keeps proxies from closing an
/// idle stream and tells the page the link is alive. `onmessage` never sees
/// it (only unnamed events reach it); the page listens for `ping`.
pub const PING: Bytes = Bytes::from_static(b"event: ping\ndata: {}\n\n");

/// How long the browser waits before it reconnects a dropped stream.
pub fn retry(after: Duration) -> Bytes {
    Bytes::from(format!("retry: {}\n\n", after.as_millis()))
}

fn push_field(out: &mut String, field: &str, value: &str) {
    out.push_str(field);
    out.push_str(": ");
    out.push_str(value);
    out.push('\n');
}

/// Splits at CRLF, CR or LF, like the event-stream parser; never yields nothing.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_event_is_id_then_data_then_a_blank_line() {
        let frame = event(None, Some("a-1"), r#"{"message":"Hi"}"#);
        assert_eq!(frame, "id: a-1\ndata: {\"message\":\"Hi\"}\n\n");
    }

    #[test]
    fn line_breaks_in_data_cannot_start_a_field_or_an_event() {
        let frame = event(Some("missed"), None, "a\r\n\r\ndata: x\rid: 9\nb");
        assert_eq!(
            frame,
            "event: missed\ndata: a\ndata: \ndata: data: x\ndata: id: 9\ndata: b\n\n"
        );
    }

    #[test]
    fn the_heartbeat_is_a_named_event_with_data() {
        // An event with no data is never dispatched to the page.
        assert_eq!(PING, "event: ping\ndata: {}\n\n");
    }

    #[test]
    fn retry_is_in_milliseconds() {
        assert_eq!(retry(Duration::from_secs(2)), "retry: 2000\n\n");
    }
}
