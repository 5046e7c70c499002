//! Loss, duplicate and order accounting, free of I/O so it can be tested with
//! fabricated acks and deliveries.
//!
//! Every message a visitor connection sends carries that connection's number
//! (`v`) and a per-connection counter (`n`, 0, 1, 2, … in send order) in its
//! `clientMsgId`/`ref` (`lg-{v}-{n}`). The sender's [`SenderLedger`] checks the
//! acks; each receiving connection (another tab of the conversation, an agent)
//! keeps a [`SeqTrack`] per sender it expects messages from. At the end,
//! [`tally`] adds everything up:
//!
//! - **lost**: a message sent but neither acknowledged nor refused with an
//!   `error` frame by the end of the grace period; a delivery an expected
//!   receiver never got of a message its sender had acknowledged;
//! - **duplicated**: a second ack (or delivery) of the same `n`, or an ack the
//!   server marked `duplicate: true` (the generator never retries);
//! - **out of order**: an ack (or delivery) of a smaller `n` than one already
//!   seen from that sender, or an ack whose stored `seq` does not increase;
//! - **unexpected**: an ack of an `n` never sent, a frame that names no
//!   generator message, or a delivery from a sender this receiver should not
//!   hear from (another conversation: misrouted).

use std::collections::BTreeMap;

/// The id of message `n` of visitor connection `v`: used as `clientMsgId` and `ref`.
pub fn message_id(v: u32, n: u64) -> String {
    format!("lg-{v}-{n}")
}

/// Reads `lg-{v}-{n}` back.
pub fn parse_message_id(id: &str) -> Option<(u32, u64)> {
    let rest = id.strip_prefix("lg-")?;
    let (v, n) = rest.split_once('-')?;
    Some((v.parse().ok()?, n.parse().ok()?))
}

/// What one observation of message `n` was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first time, in order.
    First,
    /// The first time, but after a larger `n` of the same sender.
    OutOfOrder,
    /// Seen before.
    Duplicate,
}

/// Which of one sender's messages an observer has seen, and in what order.
#[derive(Debug, Default, Clone)]
pub struct SeqTrack {
    seen: Vec<bool>,
    distinct: u64,
    highest: Option<u64>,
    /// Observations of an `n` already seen.
    pub duplicates: u64,
    /// First observations of an `n` smaller than one seen before.
    pub out_of_order: u64,
}

impl SeqTrack {
    /// Records message `n`. The caller bounds `n` (see [`SenderLedger::on_ack`]).
    pub fn record(&mut self, n: u64) -> Seen {
        let i = usize::try_from(n).unwrap_or(usize::MAX);
        if i >= self.seen.len() {
            self.seen.resize(i.saturating_add(1), false);
        }
        if self.seen[i] {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        self.seen[i] = true;
        self.distinct += 1;
        match self.highest {
            Some(h) if n < h => {
                self.out_of_order += 1;
                Seen::OutOfOrder
            }
            _ => {
                self.highest = Some(n);
                Seen::First
            }
        }
    }

    /// Whether `n` was seen.
    pub fn has(&self, n: u64) -> bool {
        usize::try_from(n).is_ok_and(|i| self.seen.get(i).copied().unwrap_or(false))
    }

    /// How many different messages were seen.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    /// How many messages `reference` has seen that this track has not.
    pub fn missing_from(&self, reference: &SeqTrack) -> u64 {
        reference
            .seen
            .iter()
            .enumerate()
            .filter(|&(i, &s)| s && !self.seen.get(i).copied().unwrap_or(false))
            .count() as u64
    }
}

/// What an ack was, for the caller's latency accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The first ack of a message that was sent (in order or not).
    New(Seen),
    /// A second ack.
    Duplicate,
    /// An ack of a message never sent.
    Unexpected,
}

/// One sending connection's messages and their answers.
#[derive(Debug, Default, Clone)]
pub struct SenderLedger {
    sent: u64,
    /// Acks received.
    pub acks: SeqTrack,
    /// Messages answered with an `error` frame instead of an ack.
    pub refused: SeqTrack,
    last_server_seq: Option<u64>,
    /// First acks whose stored `seq` did not increase (counted in out-of-order).
    pub seq_regressions: u64,
    /// First acks the server marked `duplicate: true` (counted in duplicates).
    pub server_duplicates: u64,
    /// Answers naming a message never sent.
    pub unexpected: u64,
}

impl SenderLedger {
    /// Numbers the next message.
    pub fn on_send(&mut self) -> u64 {
        let n = self.sent;
        self.sent += 1;
        n
    }

    /// How many messages were sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// An ack of message `n`, stored with `server_seq`, flagged `duplicate` by the server.
    pub fn on_ack(&mut self, n: u64, server_seq: Option<u64>, server_duplicate: bool) -> AckOutcome {
        if n >= self.sent {
            self.unexpected += 1;
            return AckOutcome::Unexpected;
        }
        let seen = self.acks.record(n);
        if seen == Seen::Duplicate {
            return AckOutcome::Duplicate;
        }
        if server_duplicate {
            self.server_duplicates += 1;
        }
        if let Some(seq) = server_seq {
            if self.last_server_seq.is_some_and(|last| seq <= last) && seen == Seen::First {
                self.seq_regressions += 1;
            }
            self.last_server_seq = Some(self.last_server_seq.map_or(seq, |l| l.max(seq)));
        }
        AckOutcome::New(seen)
    }

    /// An `error` frame answering message `n`. True the first time `n` is answered at all.
    pub fn on_error(&mut self, n: u64) -> bool {
        if n >= self.sent {
            self.unexpected += 1;
            return false;
        }
        let first = !self.acks.has(n) && !self.refused.has(n);
        self.refused.record(n);
        first
    }

    /// Messages sent and never answered.
    pub fn lost(&self) -> u64 {
        (0..self.sent)
            .filter(|&n| !self.acks.has(n) && !self.refused.has(n))
            .count() as u64
    }
}

/// One receiving connection: the messages it got from each sender.
#[derive(Debug, Default, Clone)]
pub struct ReceiverLedger {
    /// The senders whose messages this connection must receive, or every sender (agents).
    pub expects: Expects,
    /// What arrived, per sender.
    pub from: BTreeMap<u32, SeqTrack>,
    /// Deliveries from a sender this connection must not hear from.
    pub misrouted: u64,
    /// Deliveries naming no generator message, or an `n` beyond anything planned.
    pub unexpected: u64,
}

/// Whose messages a receiver must get.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Expects {
    /// These senders (the other tabs of a visitor's conversation).
    #[default]
    None,
    /// These senders only.
    Senders(Vec<u32>),
    /// Every sender (an agent: the site's fan-out).
    All,
}

impl Expects {
    fn contains(&self, v: u32) -> bool {
        match self {
            Expects::None => false,
            Expects::Senders(s) => s.contains(&v),
            Expects::All => true,
        }
    }
}

impl ReceiverLedger {
    /// A receiver expecting `expects`.
    pub fn new(expects: Expects) -> Self {
        Self {
            expects,
            ..Self::default()
        }
    }

    /// A `message` frame carrying message `n` of sender `v`; `max_n` bounds what could
    /// have been sent. True if it was the first delivery of that message here.
    pub fn on_message(&mut self, v: u32, n: u64, max_n: u64) -> bool {
        if n > max_n {
            self.unexpected += 1;
            return false;
        }
        if !self.expects.contains(v) {
            self.misrouted += 1;
            return false;
        }
        self.from.entry(v).or_default().record(n) != Seen::Duplicate
    }
}

/// Everything added up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Messages sent.
    pub sent: u64,
    /// Messages acknowledged (once each).
    pub acked: u64,
    /// Messages answered with an `error` frame.
    pub refused: u64,
    /// Messages with no answer.
    pub lost: u64,
    /// Repeated acks, and acks flagged `duplicate: true`.
    pub duplicated: u64,
    /// Acks out of send order, or with a stored `seq` that did not increase.
    pub out_of_order: u64,
    /// Deliveries the receivers should get: for each receiver, the acked messages of its senders.
    pub deliveries_expected: u64,
    /// Deliveries received (once each) of those.
    pub delivered: u64,
    /// Expected deliveries that never arrived.
    pub deliveries_lost: u64,
    /// Repeated deliveries.
    pub deliveries_duplicated: u64,
    /// Deliveries out of their sender's order.
    pub deliveries_out_of_order: u64,
    /// Deliveries to a connection that must not get them.
    pub misrouted: u64,
    /// Answers or deliveries that name nothing the generator sent.
    pub unexpected: u64,
}

impl Tally {
    /// Lost, duplicated and out-of-order, acks and deliveries together.
    pub fn lost_total(&self) -> u64 {
        self.lost + self.deliveries_lost
    }

    /// Duplicates, acks and deliveries together.
    pub fn duplicated_total(&self) -> u64 {
        self.duplicated + self.deliveries_duplicated
    }

    /// Out of order, acks and deliveries together.
    pub fn out_of_order_total(&self) -> u64 {
        self.out_of_order + self.deliveries_out_of_order
    }

    /// Nothing lost, duplicated, reordered, refused, misrouted or unexpected, and something was sent.
    pub fn clean(&self) -> bool {
        self.sent > 0
            && self.acked == self.sent
            && self.lost_total() == 0
            && self.duplicated_total() == 0
            && self.out_of_order_total() == 0
            && self.refused == 0
            && self.misrouted == 0
            && self.unexpected == 0
    }
}

/// Adds up the senders (indexed by visitor number) and the receivers.
pub fn tally(senders: &[SenderLedger], receivers: &[ReceiverLedger]) -> Tally {
    let mut t = Tally::default();
    for s in senders {
        t.sent += s.sent;
        t.acked += s.acks.distinct();
        t.refused += s.refused.distinct();
        t.lost += s.lost();
        t.duplicated += s.acks.duplicates + s.server_duplicates;
        t.out_of_order += s.acks.out_of_order + s.seq_regressions;
        t.unexpected += s.unexpected;
    }
    let empty = SeqTrack::default();
    for r in receivers {
        t.misrouted += r.misrouted;
        t.unexpected += r.unexpected;
        for got in r.from.values() {
            t.deliveries_duplicated += got.duplicates;
            t.deliveries_out_of_order += got.out_of_order;
        }
        let expected: Vec<u32> = match &r.expects {
            Expects::None => Vec::new(),
            Expects::Senders(s) => s.clone(),
            Expects::All => (0..senders.len() as u32).collect(),
        };
        for v in expected {
            let Some(sender) = senders.get(v as usize) else {
                continue;
            };
            let got = r.from.get(&v).unwrap_or(&empty);
            let want = sender.acks.distinct();
            let missing = got.missing_from(&sender.acks);
            t.deliveries_expected += want;
            t.delivered += want - missing;
            t.deliveries_lost += missing;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender_with(sent: u64) -> SenderLedger {
        let mut s = SenderLedger::default();
        for _ in 0..sent {
            s.on_send();
        }
        s
    }

    #[test]
    fn ids_round_trip_and_refuse_strangers() {
        assert_eq!(parse_message_id(&message_id(7, 123)), Some((7, 123)));
        assert_eq!(parse_message_id("m-1"), None);
        assert_eq!(parse_message_id("lg-x-1"), None);
        assert_eq!(parse_message_id("lg-1"), None);
    }

    #[test]
    fn every_ack_in_order_is_clean() {
        let mut s = sender_with(3);
        for n in 0..3 {
            assert_eq!(s.on_ack(n, Some(n + 1), false), AckOutcome::New(Seen::First));
        }
        let t = tally(&[s], &[]);
        assert_eq!((t.sent, t.acked, t.lost, t.duplicated, t.out_of_order), (3, 3, 0, 0, 0));
        assert!(t.clean());
    }

    #[test]
    fn a_missing_ack_is_lost() {
        let mut s = sender_with(3);
        s.on_ack(0, Some(1), false);
        s.on_ack(2, Some(2), false);
        let t = tally(&[s], &[]);
        assert_eq!((t.acked, t.lost), (2, 1));
        assert!(!t.clean());
    }

    #[test]
    fn a_repeated_ack_is_a_duplicate_and_not_counted_twice() {
        let mut s = sender_with(2);
        s.on_ack(0, Some(1), false);
        assert_eq!(s.on_ack(0, Some(1), false), AckOutcome::Duplicate);
        s.on_ack(1, Some(2), false);
        let t = tally(&[s], &[]);
        assert_eq!((t.acked, t.duplicated, t.lost, t.out_of_order), (2, 1, 0, 0));
        assert!(!t.clean());
    }

    #[test]
    fn an_ack_the_server_marks_duplicate_counts_as_a_duplicate() {
        let mut s = sender_with(1);
        s.on_ack(0, Some(1), true);
        let t = tally(&[s], &[]);
        assert_eq!((t.acked, t.duplicated), (1, 1));
        assert!(!t.clean());
    }

    #[test]
    fn a_smaller_counter_after_a_larger_one_is_out_of_order() {
        let mut s = sender_with(3);
        s.on_ack(0, Some(1), false);
        s.on_ack(2, Some(3), false);
        assert_eq!(s.on_ack(1, Some(2), false), AckOutcome::New(Seen::OutOfOrder));
        let t = tally(&[s], &[]);
        // The stored seq went down too, but one ack counts once.
        assert_eq!((t.acked, t.lost, t.duplicated, t.out_of_order), (3, 0, 0, 1));
        assert!(!t.clean());
    }

    #[test]
    fn a_stored_seq_that_does_not_increase_is_out_of_order() {
        let mut s = sender_with(2);
        s.on_ack(0, Some(5), false);
        s.on_ack(1, Some(5), false);
        let t = tally(&[s], &[]);
        assert_eq!(t.out_of_order, 1);
    }

    #[test]
    fn an_ack_of_a_message_never_sent_is_unexpected() {
        let mut s = sender_with(1);
        assert_eq!(s.on_ack(1, Some(1), false), AckOutcome::Unexpected);
        s.on_ack(0, Some(1), false);
        let t = tally(&[s], &[]);
        assert_eq!((t.unexpected, t.acked, t.lost), (1, 1, 0));
        assert!(!t.clean());
    }

    #[test]
    fn a_refusal_answers_a_message_but_fails_the_run() {
        let mut s = sender_with(2);
        s.on_ack(0, Some(1), false);
        assert!(s.on_error(1));
        assert!(!s.on_error(1));
        let t = tally(&[s], &[]);
        assert_eq!((t.acked, t.refused, t.lost), (1, 1, 0));
        assert!(!t.clean());
    }

    #[test]
    fn nothing_sent_is_not_clean() {
        assert!(!tally(&[SenderLedger::default()], &[]).clean());
    }

    #[test]
    fn receivers_must_get_every_acked_message_once_in_order() {
        let mut a = sender_with(3);
        let mut b = sender_with(2);
        for n in 0..3 {
            a.on_ack(n, Some(n + 1), false);
        }
        for n in 0..2 {
            b.on_ack(n, Some(n + 1), false);
        }
        // An agent hears everyone: it misses a's 1, gets b's 0 twice, and b's out of order.
        let mut agent = ReceiverLedger::new(Expects::All);
        assert!(agent.on_message(0, 0, 10));
        agent.on_message(0, 2, 10);
        agent.on_message(1, 1, 10);
        agent.on_message(1, 0, 10);
        assert!(!agent.on_message(1, 0, 10));
        // A tab of b's conversation hears only b; a message of a is misrouted.
        let mut tab = ReceiverLedger::new(Expects::Senders(vec![1]));
        tab.on_message(1, 0, 10);
        tab.on_message(1, 1, 10);
        tab.on_message(0, 0, 10);
        tab.on_message(1, 99, 10);
        let t = tally(&[a, b], &[agent, tab]);
        assert_eq!(t.deliveries_expected, 5 + 2);
        assert_eq!(t.delivered, 4 + 2);
        assert_eq!(t.deliveries_lost, 1);
        assert_eq!(t.deliveries_duplicated, 1);
        assert_eq!(t.deliveries_out_of_order, 1);
        assert_eq!(t.misrouted, 1);
        assert_eq!(t.unexpected, 1);
        assert!(!t.clean());
    }

    #[test]
    fn a_delivery_of_an_unacked_message_is_not_expected_but_not_an_error() {
        let mut a = sender_with(2);
        a.on_ack(0, Some(1), false);
        let mut agent = ReceiverLedger::new(Expects::All);
        agent.on_message(0, 0, 10);
        agent.on_message(0, 1, 10);
        let t = tally(&[a], &[agent]);
        assert_eq!((t.deliveries_expected, t.delivered, t.deliveries_lost), (1, 1, 0));
        // The missing ack itself is lost.
        assert_eq!(t.lost, 1);
    }
}
