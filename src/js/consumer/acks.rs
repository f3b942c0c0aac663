//! Acknowledgements (`$JS.ACK...` with body `+ACK`, `-NAK [delay]`, `+WPI`,
//! `+NXT [request]`, `+TERM [reason]`): decoding, the state change
//! (`State::apply_ack`, pure), and the shell that publishes what follows from
//! it (sampled-ack metrics, the terminated advisory, the confirmation of an
//! ack sent as a request, a next request).

use std::rc::Rc;

use bytes::Bytes;
use serde::Deserialize;

use crate::js::consumer::state::{Pend, State};
use crate::js::consumer::Consumer;
use crate::js::types::json;
use crate::js::types::seq::{ConsumerSeq, DeliveryCount, Nanos, StreamSeq};
use crate::limits::ACK_REPLIES_MAX;
use crate::shard::Shard;

/// What an ack's body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckKind<'a> {
    /// `+ACK` (also an empty body and `+OK`).
    Ack,
    /// `+NXT`: ack, then a pull request with the rest of the body.
    Next(&'a str),
    /// `-NAK`: redeliver after this many ns (0 = now).
    Nak(i64),
    /// `+WPI`: still working, restart the ack wait.
    Progress,
    /// `+TERM`: never redeliver; an optional reason for the advisory.
    Term(Option<&'a str>),
    /// Anything else: accepted and ignored, as nats-server does.
    Unknown,
}

impl<'a> AckKind<'a> {
    pub fn parse(body: &'a [u8]) -> AckKind<'a> {
        let text = std::str::from_utf8(body).unwrap_or("");
        let (verb, arg) = match text.find(' ') {
            Some(i) => (&text[..i], text[i + 1..].trim()),
            None => (text.trim(), ""),
        };
        match verb {
            "" | "+ACK" | "+OK" => AckKind::Ack,
            "+NXT" => AckKind::Next(arg),
            "-NAK" => AckKind::Nak(parse_nak_delay(arg)),
            "+WPI" => AckKind::Progress,
            "+TERM" => AckKind::Term((!arg.is_empty()).then_some(arg)),
            _ => AckKind::Unknown,
        }
    }
}

/// What an ack changed.
#[derive(Debug, Default)]
pub struct AckOutcome {
    /// Messages no longer pending (acked or terminated).
    pub removed: Vec<StreamSeq>,
    /// A single acked message, for the sampled-ack metric.
    pub sampled: Option<Pend>,
    /// A terminated message and the reason given.
    pub terminated: Option<(Pend, Option<String>)>,
    /// The delivery loop has something new to do.
    pub wake: bool,
}

/// The consumer's ack settings an ack needs.
#[derive(Debug, Clone, Copy)]
pub struct AckRules {
    /// `ack_policy: all`: an ack settles everything up to it.
    pub all: bool,
    pub ack_wait: i64,
    /// Given-up messages stay recorded below the floor (interest/workqueue).
    pub keep_given_up: bool,
}

impl State {
    /// Applies an ack of the delivery of `sseq`.
    pub fn apply_ack(
        &mut self,
        kind: &AckKind,
        sseq: StreamSeq,
        rules: AckRules,
        now: Nanos,
    ) -> AckOutcome {
        let mut out = AckOutcome::default();
        let lowest = self.settles_lowest(sseq, rules.all);
        self.last_activity = now;
        match kind {
            AckKind::Ack | AckKind::Next(_) => {
                if rules.all {
                    let upto: Vec<StreamSeq> =
                        self.pending.range(..=sseq).map(|(s, _)| *s).collect();
                    for s in upto {
                        self.settle(s);
                        out.removed.push(s);
                    }
                } else if let Some(p) = self.pending.get(&sseq).copied() {
                    self.settle(sseq);
                    out.removed.push(sseq);
                    out.sampled = Some(p);
                }
            }
            AckKind::Nak(delay) => {
                if self.pending.contains_key(&sseq) {
                    let deadline = (*delay > 0).then(|| now.after(*delay));
                    self.reschedule(sseq, deadline);
                    out.wake = true;
                }
            }
            AckKind::Progress => {
                // A message already due is redelivered anyway.
                if self.pending.contains_key(&sseq) && !self.due.contains(&sseq) {
                    self.reschedule(sseq, Some(now.after(rules.ack_wait.max(1))));
                }
            }
            AckKind::Term(reason) => {
                if let Some(p) = self.pending.get(&sseq).copied() {
                    self.settle(sseq);
                    out.removed.push(sseq);
                    out.terminated = Some((p, reason.map(str::to_string)));
                }
            }
            AckKind::Unknown => {}
        }
        if !out.removed.is_empty() {
            self.last_ack = now;
            self.dirty = true;
            out.wake = true;
            self.update_floor(lowest, rules.keep_given_up);
        }
        self.check();
        out
    }
}

impl Consumer {
    /// An ack of the delivery (`sseq`, `cseq`, `dc`); `reply` is set when it
    /// was sent as a request.
    pub fn ack(
        self: &Rc<Self>,
        shard: &Shard,
        sseq: StreamSeq,
        cseq: ConsumerSeq,
        dc: DeliveryCount,
        reply: Option<&Bytes>,
        body: &[u8],
    ) {
        let reply = reply.filter(|r| !r.is_empty());
        // An ack for a delivery whose write failed (or a crash lost) must not
        // settle the new message that was given its sequence since.
        if self.st.borrow().is_lost(sseq, cseq) {
            if let Some(r) = reply {
                shard.reply(r, None, b"");
            }
            return;
        }
        let (rules, sample) = {
            let c = self.cfg.borrow();
            let rules = AckRules {
                all: c.ack() == crate::js::types::consumer_config::AckPolicy::All,
                ack_wait: c.ack_wait,
                keep_given_up: self.keeps_given_up(),
            };
            (rules, c.sample_percent())
        };
        let now = Nanos::now();
        let kind = AckKind::parse(body);
        // Published after the state borrow ends (a publish may re-enter).
        let out = self.st.borrow_mut().apply_ack(&kind, sseq, rules, now);
        if let Some(p) = out.sampled {
            self.sample_ack(shard, sample, sseq, p, now);
        }
        if let Some((p, reason)) = &out.terminated {
            self.advisory_term(shard, sseq, p.cseq, dc.max(p.dc), reason.as_deref());
        }
        if !out.removed.is_empty() {
            crate::js::consumer::retention::retain_check(
                &self.stream,
                out.removed.iter().map(|s| s.0),
            );
        }
        let mut wake = out.wake;
        match (&kind, reply) {
            (AckKind::Next(req), Some(_)) => self.pull_request(shard, reply, req.as_bytes()),
            (AckKind::Next(_), None) => {}
            (_, Some(r)) => wake |= self.confirm(shard, r, !out.removed.is_empty()),
            (_, None) => {}
        }
        if wake {
            self.wake.notify();
        }
    }

    /// Confirms an ack sent as a request: a durable confirms it once the state
    /// holding it is saved (up to `ACK_REPLIES_MAX` wait; beyond, at once).
    /// True when the confirmation waits for the next save.
    fn confirm(self: &Rc<Self>, shard: &Shard, reply: &Bytes, changed: bool) -> bool {
        // A deleted consumer saves no more: its acks are confirmed at once.
        // One stopping at shutdown queues them for its last save (after that
        // save, they get no answer and the client asks again).
        let deleted = self.closed.get()
            && !self
                .stream
                .consumers
                .borrow()
                .get(&self.name)
                .is_some_and(|c| Rc::ptr_eq(c, self));
        let mut st = self.st.borrow_mut();
        if self.slots.is_some() && !deleted && st.ack_replies.len() < ACK_REPLIES_MAX && changed {
            st.ack_replies.push(Bytes::copy_from_slice(reply));
            return true;
        }
        drop(st);
        shard.reply(reply, None, b"");
        false
    }
}

/// `-NAK` delay: `{"delay":<ns>}` or a Go duration ("5s"); 0 = now.
pub fn parse_nak_delay(arg: &str) -> i64 {
    if arg.is_empty() {
        return 0;
    }
    if arg.starts_with('{') {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct D {
            delay: i64,
        }
        return json::decode_as::<D>(arg.as_bytes()).map_or(0, |d| d.delay.max(0));
    }
    // A Go duration; a bare number has no unit, so Go (and nats-server)
    // refuse it, where the command line's parser reads seconds.
    if arg.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    crate::config::parse_duration(arg).map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::js::consumer::state::Delivery;

    #[test]
    fn ack_bodies() {
        assert_eq!(AckKind::parse(b""), AckKind::Ack);
        assert_eq!(AckKind::parse(b"+ACK"), AckKind::Ack);
        assert_eq!(
            AckKind::parse(b"+NXT {\"batch\":2}"),
            AckKind::Next("{\"batch\":2}")
        );
        assert_eq!(AckKind::parse(b"-NAK {\"delay\":5}"), AckKind::Nak(5));
        assert_eq!(AckKind::parse(b"-NAK 2s"), AckKind::Nak(2_000_000_000));
        assert_eq!(
            AckKind::parse(b"+TERM bad input"),
            AckKind::Term(Some("bad input"))
        );
        assert_eq!(AckKind::parse(b"+TERM"), AckKind::Term(None));
        assert_eq!(AckKind::parse(b"what"), AckKind::Unknown);
    }

    #[test]
    fn nak_delays() {
        assert_eq!(parse_nak_delay(""), 0);
        assert_eq!(parse_nak_delay(r#"{"delay":5000}"#), 5000);
        assert_eq!(parse_nak_delay("2s"), 2_000_000_000);
        assert_eq!(parse_nak_delay("1m30s"), 90_000_000_000);
        assert_eq!(parse_nak_delay("250ms"), 250_000_000);
        assert_eq!(parse_nak_delay("{bad"), 0);
        assert_eq!(parse_nak_delay("x"), 0);
        assert_eq!(parse_nak_delay("5"), 0);
    }

    fn delivered(n: u64) -> State {
        let mut st = State::new(Nanos(0));
        st.cursor = StreamSeq(1);
        for s in 1..=n {
            st.record_delivery(Delivery {
                sseq: StreamSeq(s),
                cseq: ConsumerSeq(s),
                dc: DeliveryCount::FIRST,
                redelivery: false,
                ts: Nanos(0),
                now: Nanos(0),
                deadline: Some(Nanos(1_000)),
            });
        }
        st
    }

    #[test]
    fn acks_settle_nak_and_progress_reschedule_term_reports() {
        let one = AckRules {
            all: false,
            ack_wait: 500,
            keep_given_up: false,
        };
        let mut st = delivered(3);
        let out = st.apply_ack(&AckKind::Ack, StreamSeq(2), one, Nanos(10));
        assert_eq!(out.removed, vec![StreamSeq(2)]);
        assert!(out.sampled.is_some());
        assert_eq!(st.floor_stream, StreamSeq(0));
        let out = st.apply_ack(&AckKind::Nak(0), StreamSeq(1), one, Nanos(10));
        assert!(out.wake && st.due.contains(&StreamSeq(1)));
        let out = st.apply_ack(&AckKind::Nak(100), StreamSeq(1), one, Nanos(10));
        assert!(out.wake && !st.due.contains(&StreamSeq(1)));
        assert!(st.timers.contains(&(Nanos(110), StreamSeq(1))));
        st.apply_ack(&AckKind::Progress, StreamSeq(3), one, Nanos(20));
        assert!(st.timers.contains(&(Nanos(520), StreamSeq(3))));
        let out = st.apply_ack(&AckKind::Term(Some("no")), StreamSeq(1), one, Nanos(30));
        assert_eq!(out.terminated.unwrap().1.as_deref(), Some("no"));
        assert_eq!(st.floor_stream, StreamSeq(2));
        let all = AckRules { all: true, ..one };
        let mut st = delivered(4);
        let out = st.apply_ack(&AckKind::Ack, StreamSeq(3), all, Nanos(10));
        assert_eq!(out.removed.len(), 3);
        assert_eq!(
            (st.floor_stream, st.floor_consumer),
            (StreamSeq(3), ConsumerSeq(3))
        );
    }
}
