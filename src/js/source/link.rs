//! One link of a target stream (its mirror, or one of its sources): the
//! origin it reads, where it stands, its tap's state, and what each message
//! from the origin becomes in the target. Pure: no I/O, no clock.

use std::rc::Rc;

use bytes::Bytes;

use crate::js::source::copy;
use crate::js::source::remote::Attempt;
use crate::js::stream::positions::LinkPos;
use crate::js::types::errors::ApiError;
use crate::js::types::seq::Nanos;
use crate::js::types::source::{Role, StreamSource};
use crate::limits::{
    LINK_CREDIT_BYTES, LINK_CREDIT_MSGS, LINK_CREDIT_RETURN_NS, LINK_RETRY_MAX_NS, LINK_RETRY_NS,
    LINK_SILENCE_NS, REMOTE_ANSWER_NS, REMOTE_ASK_EVERY_NS, REMOTE_BACKOFF_MAX_NS,
    REMOTE_BACKOFF_NS, REMOTE_SILENCE_NS,
};
use crate::shard::msg::{TapKey, TapStart};
use crate::subject::transform::Transform;

/// Where a link's tap is (for an external origin: its consumer).
#[derive(Debug, Clone, PartialEq)]
pub enum TapState {
    /// Not open; (re)open at this time.
    Closed { retry_at: Nanos },
    /// Asked to open at this time.
    Opening { key: TapKey, since: Nanos },
    /// Open; `origin` is the origin stream's uid.
    Open { key: TapKey, origin: u32 },
    /// An external origin's consumer, asked for or delivering.
    Remote(Box<Remote>),
}

/// One attempt at reading an external origin: the consumer asked for, the
/// target's subscriptions for the answer and the deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub key: TapKey,
    pub asked: Nanos,
    /// The answer inbox's subscription, while no answer came.
    pub answer_sub: Option<u32>,
    pub answer_inbox: String,
    pub deliver_sub: u32,
    pub deliver: String,
    pub attempt: Attempt,
    /// The consumer's name, once the origin answered.
    pub consumer: Option<String>,
    /// Last delivery sequence taken.
    pub dseq: u64,
    /// The way to the origin came back while this attempt was silent: ask
    /// again now rather than at the end of `REMOTE_SILENCE_NS`.
    pub kicked: bool,
}

pub struct Link {
    /// Never reused within the target (a number for `TapKey`).
    pub id: u32,
    pub role: Role,
    pub cfg: StreamSource,
    pub iname: Rc<str>,
    pub transforms: Vec<Transform>,
    pub filters: Vec<String>,
    pub tap: TapState,
    /// Generation of the last tap opened.
    pub gen: u32,
    /// Last origin sequence staged into the target (may not be written yet).
    pub applied: u64,
    /// Last origin sequence committed in the target.
    pub committed: u64,
    /// The origin's identity (empty: not known yet).
    pub ident: Rc<str>,
    /// Credit to give back to the tap: messages and bytes committed, and
    /// when the first of them committed.
    pub credit_msgs: u32,
    pub credit_bytes: u64,
    pub credit_since: Nanos,
    /// Matching origin messages after the last one the tap sent.
    pub pending: u64,
    /// Messages received and not yet applied.
    pub queued: u64,
    /// When the origin was last heard from (data or heartbeat; 0: never).
    pub heard: Nanos,
    pub error: Option<ApiError>,
    /// The next retry's delay.
    pub backoff: i64,
    /// External origins: failed attempts in a row, and the last request.
    pub fails: u32,
    pub last_ask: Nanos,
}

/// What a message from the origin becomes.
pub struct Copy {
    /// The stored sequence (mirrors); None: the next (sources).
    pub seq: Option<u64>,
    /// The origin's time (mirrors) or now's (sources, set by the caller).
    pub ts: Option<i64>,
    pub subject: Bytes,
    pub hdr_len: usize,
    /// Header block then payload.
    pub msg: Bytes,
}

impl Link {
    pub fn new(id: u32, role: Role, cfg: StreamSource, pos: LinkPos) -> Link {
        Link {
            id,
            role,
            iname: cfg.iname().into(),
            transforms: cfg.transforms(),
            filters: cfg.filters(),
            cfg,
            tap: TapState::Closed { retry_at: Nanos(0) },
            gen: 0,
            applied: pos.seq,
            committed: pos.seq,
            ident: pos.ident.into(),
            credit_msgs: 0,
            credit_bytes: 0,
            credit_since: Nanos(0),
            pending: 0,
            queued: 0,
            heard: Nanos(0),
            error: None,
            backoff: LINK_RETRY_NS,
            fails: 0,
            last_ask: Nanos(0),
        }
    }

    /// Where the tap starts: after what the target has, else where the
    /// config says (a source's start time is not before the target's last
    /// message when the target has lost its copies to limits or a purge).
    pub fn start(&self, target_last: u64, offset: u64) -> TapStart {
        let have = match self.role {
            Role::Mirror => self.applied.max(target_last.saturating_sub(offset)),
            Role::Source => self.applied,
        };
        if have > 0 {
            return TapStart::Seq(have + 1);
        }
        // A mirror whose origin was created again copies it from its start.
        if self.role == Role::Mirror && offset > 0 {
            return TapStart::First;
        }
        if self.cfg.opt_start_seq > 0 {
            return TapStart::Seq(self.cfg.opt_start_seq);
        }
        let time = self
            .cfg
            .opt_start_time
            .as_deref()
            .and_then(crate::js::types::json::parse_rfc3339);
        match time {
            Some(t) => TapStart::Time(t),
            None => TapStart::First,
        }
    }

    /// The tap key of the next open.
    pub fn next_key(&mut self, shard: u16, uid: u32) -> TapKey {
        self.gen += 1;
        TapKey {
            shard,
            uid,
            link: self.id,
            gen: self.gen,
        }
    }

    /// Whether `key` is the tap this link has now (opening or open).
    pub fn current(&self, key: TapKey) -> bool {
        match &self.tap {
            TapState::Opening { key: k, .. } | TapState::Open { key: k, .. } => *k == key,
            TapState::Remote(r) => r.key == key,
            TapState::Closed { .. } => false,
        }
    }

    /// An external origin's attempt failed: nats-server's backoff, 10 s more
    /// per failure in a row up to 2 minutes, and never sooner than 2 s after
    /// the last request.
    pub fn retry_remote(&mut self, now: Nanos, jitter: i64) -> TapState {
        self.fails += 1;
        let backoff = (REMOTE_BACKOFF_NS * i64::from(self.fails)).min(REMOTE_BACKOFF_MAX_NS);
        let earliest = self.last_ask.after(REMOTE_ASK_EVERY_NS);
        let at = now.after(backoff + jitter).max(earliest);
        std::mem::replace(&mut self.tap, TapState::Closed { retry_at: at })
    }

    /// Replaces the tap's state, returning the old one (to close it).
    pub fn take_tap(&mut self, next: TapState) -> TapState {
        std::mem::replace(&mut self.tap, next)
    }

    /// The tap failed or went quiet: try again after the backoff.
    pub fn retry_later(&mut self, now: Nanos) {
        self.tap = TapState::Closed {
            retry_at: now.after(self.backoff),
        };
        self.backoff = (self.backoff * 2).min(LINK_RETRY_MAX_NS);
    }

    /// Whether the link must (re)open now: closed and due, or opening or
    /// open without a word from the origin for `LINK_SILENCE_NS`.
    pub fn due(&self, now: Nanos) -> bool {
        match &self.tap {
            TapState::Closed { retry_at } => *retry_at <= now,
            TapState::Opening { since, .. } => now.since(*since) >= LINK_SILENCE_NS,
            TapState::Open { .. } => now.since(self.heard) >= LINK_SILENCE_NS,
            TapState::Remote(_) => self.deadline() <= now,
        }
    }

    /// When the link next needs attention (None: it waits for an event).
    pub fn deadline(&self) -> Nanos {
        let credit = if self.credit_msgs > 0 {
            self.credit_since.after(LINK_CREDIT_RETURN_NS)
        } else {
            Nanos(i64::MAX)
        };
        let tap = match &self.tap {
            TapState::Closed { retry_at } => *retry_at,
            TapState::Opening { since, .. } => since.after(LINK_SILENCE_NS),
            TapState::Open { .. } => self.heard.after(LINK_SILENCE_NS),
            TapState::Remote(r) if r.answer_sub.is_some() => r.asked.after(REMOTE_ANSWER_NS),
            TapState::Remote(r) if r.kicked => Nanos(0),
            TapState::Remote(r) => self.heard.max(r.asked).after(REMOTE_SILENCE_NS),
        };
        tap.min(credit)
    }

    /// A leaf connection came up (the way to external origins may be back):
    /// an external link waiting to retry tries now, and one whose consumer
    /// has been silent asks again now instead of
    /// waiting out `REMOTE_SILENCE_NS` (nats-server retries its mirrors and
    /// sources on a leaf connection the same way). True when it changed.
    /// A link that heard from its origin within `LEAF_UP_QUIET_NS` is alive
    /// and left alone.
    pub fn kick(&mut self, now: Nanos) -> bool {
        if self.cfg.external.is_none() {
            return false;
        }
        let heard = self.heard;
        match &mut self.tap {
            TapState::Closed { retry_at } if *retry_at > now => {
                *retry_at = now;
                true
            }
            TapState::Remote(r)
                if r.answer_sub.is_none()
                    && now.since(heard.max(r.asked)) >= crate::limits::LEAF_UP_QUIET_NS =>
            {
                r.kicked = true;
                true
            }
            _ => false,
        }
    }

    /// Counts one committed copy as credit to return.
    pub fn committed(&mut self, seq: u64, bytes: u64, now: Nanos) {
        self.committed = seq;
        self.owe(bytes, now);
    }

    /// One message's credit to return (committed, or skipped).
    pub fn owe(&mut self, bytes: u64, now: Nanos) {
        if self.credit_msgs == 0 {
            self.credit_since = now;
        }
        self.credit_msgs += 1;
        self.credit_bytes += bytes;
    }

    /// Whether the credit held should go back now (`LINK_CREDIT_RETURN_NS`).
    pub fn credit_due(&self, now: Nanos) -> bool {
        self.credit_msgs > 0
            && (self.credit_msgs >= LINK_CREDIT_MSGS / 4
                || self.credit_bytes >= LINK_CREDIT_BYTES / 4
                || now.since(self.credit_since) >= LINK_CREDIT_RETURN_NS)
    }

    /// The copy of origin message `seq`, or None when it is skipped (already
    /// applied, or no transform matches). `target_next` is the target's next
    /// sequence; `offset` the mirror's.
    pub fn copy(
        &self,
        seq: u64,
        ts: i64,
        subject: &Bytes,
        hdr: &Bytes,
        payload: &Bytes,
        offset: u64,
    ) -> Option<Copy> {
        if seq <= self.applied {
            return None;
        }
        let new_subject = copy::subject(&self.transforms, subject)?;
        let source = self.role == Role::Source;
        let value;
        let extra = if source {
            value = copy::source_value(&self.iname, seq, subject, &self.ident);
            Some(("Nats-Stream-Source", value.as_str()))
        } else {
            None
        };
        let (hdr_len, msg) = match copy::headers(hdr, source, extra) {
            Some(h) => {
                let mut m = Vec::with_capacity(h.len() + payload.len());
                m.extend_from_slice(&h);
                m.extend_from_slice(payload);
                (h.len(), Bytes::from(m))
            }
            None if hdr.is_empty() => (0, payload.clone()),
            None => {
                let mut m = Vec::with_capacity(hdr.len() + payload.len());
                m.extend_from_slice(hdr);
                m.extend_from_slice(payload);
                (hdr.len(), Bytes::from(m))
            }
        };
        let subject = if new_subject == subject[..] {
            subject.clone()
        } else {
            Bytes::from(new_subject)
        };
        Some(Copy {
            seq: (!source).then_some(seq + offset),
            ts: (!source).then_some(ts),
            subject,
            hdr_len,
            msg,
        })
    }

    /// The lag stream info shows: what the origin has that the target has
    /// not yet applied.
    pub fn lag(&self) -> u64 {
        self.pending + self.queued
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn link(role: Role, json: &str) -> Link {
        Link::new(
            1,
            role,
            serde_json::from_str(json).unwrap(),
            LinkPos::default(),
        )
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn start_positions() {
        let mut l = link(Role::Source, r#"{"name":"O"}"#);
        assert_eq!(l.start(0, 0), TapStart::First);
        l.applied = 41;
        assert_eq!(l.start(0, 0), TapStart::Seq(42));
        let l = link(
            Role::Source,
            r#"{"name":"O","opt_start_seq":42,"opt_start_time":"2024-01-01T00:00:00Z"}"#,
        );
        assert_eq!(l.start(0, 0), TapStart::Seq(42));
        let l = link(
            Role::Mirror,
            r#"{"name":"O","opt_start_time":"1970-01-01T00:00:01Z"}"#,
        );
        assert_eq!(l.start(0, 0), TapStart::Time(1_000_000_000));
        // A mirror that holds origin sequences 1..=10 (offset 0) resumes at 11.
        assert_eq!(l.start(10, 0), TapStart::Seq(11));
        // After the origin was created again: the mirror's 10 are an old
        // life, and the new one is copied from its start.
        assert_eq!(l.start(10, 10), TapStart::First);
    }

    #[test]
    fn copies_of_sources_and_mirrors() {
        let mut s = link(
            Role::Source,
            r#"{"name":"O","subject_transforms":[{"src":"o.*","dest":"c.{{wildcard(1)}}"}]}"#,
        );
        s.ident = "abc".into();
        let hdr = b("NATS/1.0\r\nNats-Expected-Stream: O\r\nX: 1\r\n\r\n");
        let c = s.copy(5, 9, &b("o.a"), &hdr, &b("data"), 0).unwrap();
        assert_eq!((c.seq, c.ts), (None, None));
        assert_eq!(&c.subject[..], b"c.a");
        let text = String::from_utf8(c.msg.to_vec()).unwrap();
        assert_eq!(
            text,
            "NATS/1.0\r\nX: 1\r\nNats-Stream-Source: O 5 o.* c.{{wildcard(1)}} o.a abc\r\n\r\ndata"
        );
        assert_eq!(c.hdr_len, text.len() - 4);
        s.applied = 5;
        assert!(s.copy(5, 9, &b("o.a"), &hdr, &b("data"), 0).is_none());
        let m = link(Role::Mirror, r#"{"name":"O"}"#);
        let c = m
            .copy(7, 9, &b("o.a"), &Bytes::new(), &b("data"), 100)
            .unwrap();
        assert_eq!((c.seq, c.ts, c.hdr_len), (Some(107), Some(9), 0));
        assert_eq!(&c.msg[..], b"data");
    }
}
