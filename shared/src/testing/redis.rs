//! A Redis server of the test's own (see [`harness::redis`]), and what a
//! test writes into it by hand.

pub use harness::redis::Redis;

use crate::core::EventId;

/// Broadcasts `count` messages of `message` with the ids after `after`, by
/// appending them to `stream` as another instance would: how a test makes a
/// server binary given `--redis` broadcast what the test chooses (what a
/// client sends is only ever broadcast as Something changed). A few at a
/// time, each time once `caught_up(the last seq so far)` holds, so that
/// readers that keep up are never left a whole queue behind.
pub async fn broadcast(
    redis: &Redis,
    stream: &str,
    after: EventId,
    count: u64,
    message: &str,
    mut caught_up: impl FnMut(u64) -> bool,
) {
    // A Lua script appends a chunk in one step; the server's reader takes it
    // as it would another instance's entries.
    const APPEND: &str = "for seq = tonumber(ARGV[2]), tonumber(ARGV[3]) do \
        redis.call('XADD', KEYS[1], ARGV[1] .. '-' .. seq, 'message', ARGV[4]) end";
    // Well below the 1024 broadcasts a client may fall behind by default.
    const CHUNK: u64 = 256;
    let run = after.run.to_string();
    let mut first = after.seq + 1;
    let end = after.seq + count;
    while first <= end {
        let last = (first + CHUNK - 1).min(end);
        let (from, to) = (first.to_string(), last.to_string());
        let said = redis.cli(&["EVAL", APPEND, "1", stream, &run, &from, &to, message]);
        assert!(
            !said.starts_with("ERR"),
            "appending to {stream} failed: {said}"
        );
        let what = format!("the readers read up to {run}-{last}");
        super::eventually(&what, || caught_up(last)).await;
        first = last + 1;
    }
}
