//! Every message of a run accounted for: what the sender heard of each
//! (broadcast, refused, unanswered, not sent) and what the clients received,
//! so that a loss always comes with its cause: never broadcast, and why, or
//! broadcast but not delivered.

use std::collections::BTreeSet;

use serde::Serialize;

use super::sender::{Account, CutOff, Over};
use super::wire::Outcome;

/// What became of a run's messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accounting {
    /// How the sender sent: "WebSocket" or "POST /api".
    pub over: Over,
    /// Messages the bench was to send, and those it sent.
    pub messages: usize,
    pub sent: usize,
    /// The numbers of the broadcasts (from 1): those the sender heard of,
    /// and any that a client received.
    pub broadcast: Vec<usize>,
    /// Messages the server refused, by what it said, most often said first.
    pub refused: Vec<Refusals>,
    /// Refused messages broadcast all the same (a 504 says one may have
    /// gone out): more broadcasts than messages sent and not refused.
    pub refused_yet_broadcast: usize,
    /// Sent, but neither broadcast nor refused.
    pub unanswered: usize,
    /// Never sent: the sender had been cut off.
    pub not_sent: usize,
    /// How the sender's connection ended before the bench closed it.
    pub cut_off: Option<CutOff>,
    /// Messages never broadcast: refused, unanswered or not sent.
    pub never_broadcast: usize,
    /// Deliveries of broadcasts that clients did not get.
    pub not_delivered: u64,
    /// Clients missing each broadcast that some client did not get, by its
    /// number.
    #[serde(skip)]
    missing: Vec<(usize, u64)>,
    /// Clients that missed some broadcast (when every message was
    /// broadcast: the clients only say whether they got them all).
    #[serde(skip)]
    short: Option<usize>,
}

/// Messages refused with the same answer (but for its numbers: "retry in
/// 800 ms" and "retry in 750 ms" are one reason).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusals {
    pub count: usize,
    /// The first of these answers.
    pub said: String,
}

impl Accounting {
    /// `messages` messages meant for `clients` clients: the sender's
    /// account, and what the clients received.
    pub fn new(account: &Account, outcome: &Outcome, messages: usize, clients: usize) -> Self {
        let missing = |seq: usize| {
            outcome
                .missing
                .get(seq - 1)
                .copied()
                .unwrap_or(clients as u64)
        };
        let received = (1..=messages).filter(|seq| missing(*seq) < clients as u64);
        let broadcast: BTreeSet<usize> = account
            .broadcast
            .iter()
            .copied()
            .filter(|seq| (1..=messages).contains(seq))
            .chain(received)
            .collect();
        let refused = group(&account.refused);
        let answered = broadcast.len() + account.refused.len();
        let missing: Vec<(usize, u64)> = broadcast
            .iter()
            .map(|seq| (*seq, missing(*seq)))
            .filter(|(_, missing)| *missing > 0)
            .collect();
        Accounting {
            over: account.over,
            messages,
            sent: account.sent,
            refused_yet_broadcast: answered.saturating_sub(account.sent),
            unanswered: account.sent.saturating_sub(answered),
            not_sent: messages.saturating_sub(account.sent),
            cut_off: account.cut_off.clone(),
            never_broadcast: messages - broadcast.len(),
            short: (broadcast.len() == messages).then_some(outcome.short),
            not_delivered: missing.iter().map(|(_, missing)| missing).sum(),
            broadcast: broadcast.into_iter().collect(),
            refused,
            missing,
        }
    }

    /// Messages the server refused.
    pub fn refused_count(&self) -> usize {
        self.refused.iter().map(|refusals| refusals.count).sum()
    }

    /// Whether every message was broadcast and delivered to every client.
    pub fn whole(&self) -> bool {
        self.never_broadcast == 0 && self.not_delivered == 0
    }

    /// The first line of a run's results when the sender did not get every
    /// message broadcast: cut off, or refused.
    pub fn headline(&self) -> Option<String> {
        if let Some(cut) = &self.cut_off {
            return Some(format!(
                "SENDER CUT OFF after {} of its {} messages: {cut}; {} of the {} never broadcast",
                self.sent, self.messages, self.never_broadcast, self.messages
            ));
        }
        (self.never_broadcast > 0).then(|| {
            format!(
                "NOT BROADCAST: {} of the sender's {} messages ({})",
                self.never_broadcast,
                self.messages,
                self.causes().join(", ")
            )
        })
    }

    /// Why messages were not broadcast, in a few words each.
    fn causes(&self) -> Vec<String> {
        let mut causes = Vec::new();
        if self.refused_count() > 0 {
            causes.push(format!("{} refused", self.refused_count()));
        }
        if self.unanswered > 0 {
            causes.push(format!("{} unanswered", self.unanswered));
        }
        if self.not_sent > 0 {
            causes.push(format!("{} not sent", self.not_sent));
        }
        if let Some(cut) = &self.cut_off {
            causes.push(format!("the sender cut off: {cut}"));
        }
        causes
    }

    /// What the sender heard of its messages, and what came of the
    /// broadcasts: lines to print (indented), for `clients` clients.
    pub fn lines(&self, clients: usize) -> Vec<String> {
        let mut lines = vec![self.sender_line()];
        for Refusals { count, said } in &self.refused {
            lines.push(format!("    {count} refused, the first saying: {said}"));
        }
        if self.refused_yet_broadcast > 0 {
            let (count, were) = match self.refused_yet_broadcast {
                1 => (1, "was"),
                count => (count, "were"),
            };
            lines.push(format!(
                "    {count} of the refused {were} broadcast all the same (answered \"may have gone \
                 out\")"
            ));
        }
        if self.refused_count() > 0 && self.over == Over::WebSocket {
            // The k-th broadcast is timed from the k-th send: which message a
            // refusal was for, a WebSocket does not say.
            lines.push(
                "    (latencies are from the send of the same number, perhaps an earlier message)"
                    .to_owned(),
            );
        }
        let broadcasts = self.broadcast.len();
        if self.never_broadcast > 0 {
            lines.push(format!(
                "  NEVER BROADCAST: {} of the {} messages ({}): {} deliveries fewer",
                self.never_broadcast,
                self.messages,
                self.causes().join(", "),
                self.never_broadcast as u64 * clients as u64
            ));
        }
        if self.not_delivered == 0 {
            lines.push(match (self.never_broadcast, broadcasts) {
                (0, _) => format!(
                    "  lost: none: each of the {clients} clients got all {} broadcasts",
                    self.messages
                ),
                (_, 0) => "  broadcast but not delivered: nothing was broadcast".to_owned(),
                _ => format!(
                    "  broadcast but not delivered: none: each of the {clients} clients got \
                     all {broadcasts} broadcasts"
                ),
            });
        } else {
            let each: Vec<String> = runs(&self.missing)
                .into_iter()
                .map(|(from, to, missing)| format!("{}: {missing}", span(from, to)))
                .collect();
            let short = match self.short {
                Some(short) => format!("; {short} clients missed some"),
                None => String::new(),
            };
            lines.push(format!(
                "  LOST: {} deliveries of {}: broadcast but not delivered{short} (clients \
                 missing each broadcast: {})",
                self.not_delivered,
                broadcasts as u64 * clients as u64,
                each.join(", ")
            ));
        }
        lines
    }

    fn sender_line(&self) -> String {
        let spans = ids(&self.broadcast);
        let over = self.over;
        if self.whole() && self.refused.is_empty() && self.cut_off.is_none() {
            return format!(
                "  sender ({over}): all {} messages broadcast ({})",
                self.messages, spans
            );
        }
        let broadcast = match self.broadcast.len() {
            0 => "0 broadcast".to_owned(),
            count => format!("{count} broadcast ({spans})"),
        };
        let ended = match &self.cut_off {
            Some(cut) => format!(
                "{} unanswered when the connection ended ({cut}), {} not sent after it",
                self.unanswered, self.not_sent
            ),
            // Neither a broadcast nor an error came back, on a connection
            // still open: the server dropped the answers.
            None if self.unanswered > 0 => format!(
                "{} unanswered on a connection still open, {} not sent",
                self.unanswered, self.not_sent
            ),
            None => format!("{} unanswered, {} not sent", self.unanswered, self.not_sent),
        };
        format!(
            "  sender ({over}): {} messages, {} sent: {broadcast}, {} refused, {ended}",
            self.messages,
            self.sent,
            self.refused_count(),
        )
    }

    /// Why the run failed, if it did: messages never broadcast, and why, or
    /// deliveries lost.
    pub fn failure(&self) -> Option<String> {
        let mut failures = Vec::new();
        if self.never_broadcast > 0 {
            failures.push(format!(
                "{} of {} messages never broadcast ({})",
                self.never_broadcast,
                self.messages,
                self.causes().join(", ")
            ));
        }
        if self.not_delivered > 0 {
            failures.push(format!(
                "{} deliveries of broadcasts lost",
                self.not_delivered
            ));
        }
        (!failures.is_empty()).then(|| failures.join(", "))
    }
}

/// Answers alike but for their numbers, counted, most common first (the
/// first heard first among equals).
fn group(answers: &[String]) -> Vec<Refusals> {
    let mut groups: Vec<(String, Refusals)> = Vec::new();
    for said in answers {
        let mut key = String::new();
        let mut digits = false;
        for c in said.chars() {
            match (c.is_ascii_digit(), digits) {
                (true, true) => {}
                (true, false) => key.push('0'),
                (false, _) => key.push(c),
            }
            digits = c.is_ascii_digit();
        }
        match groups.iter_mut().find(|(seen, _)| *seen == key) {
            Some((_, refusals)) => refusals.count += 1,
            None => groups.push((
                key,
                Refusals {
                    count: 1,
                    said: said.clone(),
                },
            )),
        }
    }
    let mut groups: Vec<Refusals> = groups.into_iter().map(|(_, refusals)| refusals).collect();
    groups.sort_by_key(|refusals| std::cmp::Reverse(refusals.count));
    groups
}

/// Numbered values as runs of consecutive numbers with the same value:
/// `(from, to, value)`.
fn runs<T: PartialEq + Copy>(numbered: &[(usize, T)]) -> Vec<(usize, usize, T)> {
    let mut runs: Vec<(usize, usize, T)> = Vec::new();
    for &(n, value) in numbered {
        match runs.last_mut() {
            Some((_, to, last)) if *to + 1 == n && *last == value => *to = n,
            _ => runs.push((n, n, value)),
        }
    }
    runs
}

/// Numbers as spans: `#1-#5, #7`.
fn ids(numbers: &[usize]) -> String {
    let numbered: Vec<(usize, ())> = numbers.iter().map(|n| (*n, ())).collect();
    let spans: Vec<String> = runs(&numbered)
        .into_iter()
        .map(|(from, to, ())| span(from, to))
        .collect();
    spans.join(", ")
}

fn span(from: usize, to: usize) -> String {
    match from == to {
        true => format!("#{from}"),
        false => format!("#{from}-#{to}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 clients, `missing` by broadcast; as many missed some as missed
    /// the broadcast most missed.
    fn outcome(missing: &[u64]) -> Outcome {
        Outcome {
            clients: 4,
            missing: missing.to_vec(),
            short: missing.iter().copied().max().unwrap_or(0) as usize,
            ..Outcome::default()
        }
    }

    fn account(sent: usize, broadcast: &[usize], refused: &[&str]) -> Account {
        Account {
            over: Over::WebSocket,
            sent,
            broadcast: broadcast.iter().copied().collect(),
            refused: refused.iter().map(|said| said.to_string()).collect(),
            cut_off: None,
        }
    }

    #[test]
    fn a_whole_run_is_one_line_and_no_headline() {
        let accounting = Accounting::new(&account(3, &[1, 2, 3], &[]), &outcome(&[0, 0, 0]), 3, 4);
        assert!(accounting.whole());
        assert_eq!((accounting.headline(), accounting.failure()), (None, None));
        assert_eq!(
            accounting.lines(4),
            [
                "  sender (WebSocket): all 3 messages broadcast (#1-#3)",
                "  lost: none: each of the 4 clients got all 3 broadcasts",
            ]
        );
    }

    #[test]
    fn a_sender_cut_off_accounts_for_every_message_and_says_so_first() {
        // 10 messages: #1 and #2 broadcast, two refused, the connection
        // closed with two more unanswered, four never sent. One client
        // missed #2.
        let mut cut = account(
            6,
            &[1, 2],
            &[
                r#"{"error":"rate limit: retry in 800 ms"}"#,
                r#"{"error":"rate limit: retry in 50 ms"}"#,
            ],
        );
        cut.cut_off = Some(CutOff {
            code: Some(1008),
            reason: "rate limit exceeded, repeatedly".into(),
        });
        let accounting = Accounting::new(&cut, &outcome(&[0, 1, 4, 4, 4, 4, 4, 4, 4, 4]), 10, 4);
        assert_eq!(accounting.broadcast, [1, 2]);
        assert_eq!(
            (
                accounting.unanswered,
                accounting.not_sent,
                accounting.never_broadcast
            ),
            (2, 4, 8)
        );
        assert_eq!(accounting.not_delivered, 1);
        assert_eq!(
            accounting.refused,
            [Refusals {
                count: 2,
                said: r#"{"error":"rate limit: retry in 800 ms"}"#.into()
            }]
        );
        assert_eq!(
            accounting.headline().unwrap(),
            "SENDER CUT OFF after 6 of its 10 messages: close 1008 \"rate limit exceeded, \
             repeatedly\"; 8 of the 10 never broadcast"
        );
        let lines = accounting.lines(4);
        assert_eq!(
            lines[0],
            "  sender (WebSocket): 10 messages, 6 sent: 2 broadcast (#1-#2), 2 refused, \
             2 unanswered when the connection ended (close 1008 \"rate limit exceeded, \
             repeatedly\"), 4 not sent after it"
        );
        assert_eq!(
            lines[1],
            r#"    2 refused, the first saying: {"error":"rate limit: retry in 800 ms"}"#
        );
        assert!(
            lines[2].starts_with("    (latencies are from the send"),
            "{lines:#?}"
        );
        assert_eq!(
            lines[3],
            "  NEVER BROADCAST: 8 of the 10 messages (2 refused, 2 unanswered, 4 not sent, the \
             sender cut off: close 1008 \"rate limit exceeded, repeatedly\"): 32 deliveries fewer"
        );
        assert_eq!(
            lines[4],
            "  LOST: 1 deliveries of 8: broadcast but not delivered (clients missing each \
             broadcast: #2: 1)"
        );
        assert_eq!(
            accounting.failure().unwrap(),
            "8 of 10 messages never broadcast (2 refused, 2 unanswered, 4 not sent, the sender \
             cut off: close 1008 \"rate limit exceeded, repeatedly\"), 1 deliveries of \
             broadcasts lost"
        );
    }

    #[test]
    fn what_a_client_received_was_broadcast_even_if_the_sender_was_told_otherwise() {
        // /api: #1 answered, the second answered 504 yet broadcast as #2,
        // the third refused for good.
        let mut api = account(
            3,
            &[1],
            &[
                "504 Gateway Timeout: {\"error\":\"... it may have gone out\"}",
                "503 Service Unavailable: {\"error\":\"... try again later\"}",
            ],
        );
        api.over = Over::Api;
        let accounting = Accounting::new(&api, &outcome(&[0, 0, 4]), 3, 4);
        assert_eq!(accounting.broadcast, [1, 2]);
        assert_eq!(
            (
                accounting.refused_yet_broadcast,
                accounting.unanswered,
                accounting.never_broadcast
            ),
            (1, 0, 1)
        );
        assert_eq!(accounting.refused.len(), 2);
        assert_eq!(
            accounting.headline().unwrap(),
            "NOT BROADCAST: 1 of the sender's 3 messages (2 refused)"
        );
        let lines = accounting.lines(4);
        let went_out =
            "    1 of the refused was broadcast all the same (answered \"may have gone out\")";
        assert!(lines.contains(&went_out.to_owned()), "{lines:#?}");
        // Over /api, ids say which message each broadcast is: no caveat.
        assert!(
            !lines.iter().any(|line| line.contains("latencies")),
            "{lines:#?}"
        );
        assert!(
            lines.contains(
                &"  broadcast but not delivered: none: each of the 4 clients got all 2 broadcasts"
                    .to_owned()
            ),
            "{lines:#?}"
        );
    }

    #[test]
    fn broadcasts_no_client_got_are_lost_not_unsent() {
        // The sender heard #3 broadcast; no client got it.
        let accounting = Accounting::new(&account(3, &[1, 2, 3], &[]), &outcome(&[0, 2, 4]), 3, 4);
        assert_eq!(
            (accounting.never_broadcast, accounting.not_delivered),
            (0, 6)
        );
        assert_eq!(accounting.headline(), None);
        assert_eq!(
            accounting.lines(4)[1],
            "  LOST: 6 deliveries of 12: broadcast but not delivered; 4 clients missed some \
             (clients missing each broadcast: #2: 2, #3: 4)"
        );
        assert_eq!(
            accounting.failure().unwrap(),
            "6 deliveries of broadcasts lost"
        );
    }

    #[test]
    fn answers_dropped_on_an_open_connection_are_unanswered_and_said_so() {
        let accounting = Accounting::new(
            &account(5, &[1, 2], &[r#"{"error":"try again later"}"#]),
            &outcome(&[0, 0, 4, 4, 4]),
            5,
            4,
        );
        assert_eq!(
            accounting.headline().unwrap(),
            "NOT BROADCAST: 3 of the sender's 5 messages (1 refused, 2 unanswered)"
        );
        assert_eq!(
            accounting.lines(4)[0],
            "  sender (WebSocket): 5 messages, 5 sent: 2 broadcast (#1-#2), 1 refused, \
             2 unanswered on a connection still open, 0 not sent"
        );
    }

    #[test]
    fn numbers_run_together_when_consecutive_and_alike() {
        let numbered = [(1, 'a'), (2, 'a'), (3, 'b'), (5, 'b'), (6, 'b')];
        assert_eq!(runs(&numbered), [(1, 2, 'a'), (3, 3, 'b'), (5, 6, 'b')]);
        assert_eq!(
            (span(4, 4), span(4, 9)),
            ("#4".to_owned(), "#4-#9".to_owned())
        );
        assert_eq!(ids(&[1, 2, 3, 5, 7, 8]), "#1-#3, #5, #7-#8");
        let answers = ["a 1", "b", "a 22", "b", "b"].map(String::from);
        let grouped = group(&answers);
        assert_eq!(
            grouped,
            [
                Refusals {
                    count: 3,
                    said: "b".into()
                },
                Refusals {
                    count: 2,
                    said: "a 1".into()
                },
            ]
        );
    }
}
