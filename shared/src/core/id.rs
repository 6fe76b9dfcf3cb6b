//! Broadcast ids: `<run>-<seq>`, the same on the wire and in the replay buffer.

use std::fmt;
use std::str::FromStr;

/// The id of one broadcast: the run of the stream that issued it, and its
/// place in that run. Written `<run>-<seq>`, with `run` in hex.
///
/// `seq` strictly increases within a run; `run` changes whenever the stream
/// starts afresh (a server's start, or a backplane's new stream), so an id
/// from before is never mistaken for a current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    pub run: u64,
    pub seq: u64,
}

/// The longest text an id can have: 16 hex digits, `-`, 20 decimal digits,
/// with room to spare. Longer text cannot be an id.
pub const MAX_ID_LEN: usize = 64;

/// Text that is not an id `<run>-<seq>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIdError;

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an event id like 18eb2c4d-42")
    }
}

impl std::error::Error for ParseIdError {}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{}", self.run, self.seq)
    }
}

impl FromStr for EventId {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<Self, ParseIdError> {
        let (run, seq) = text.trim().split_once('-').ok_or(ParseIdError)?;
        Ok(EventId {
            run: u64::from_str_radix(run, 16).map_err(|_| ParseIdError)?,
            seq: seq.parse().map_err(|_| ParseIdError)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_run_in_hex_then_seq() {
        let id = EventId {
            run: 0xabc,
            seq: 42,
        };
        assert_eq!(id.to_string(), "abc-42");
        assert_eq!("abc-42".parse::<EventId>(), Ok(id));
    }

    #[test]
    fn text_that_is_not_an_id_does_not_parse() {
        for bad in ["abc", "x-1", "1-x", "", "-", "1-2-3"] {
            assert_eq!(bad.parse::<EventId>(), Err(ParseIdError), "{bad:?}");
        }
    }
}
