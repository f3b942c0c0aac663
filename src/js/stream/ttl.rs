//! Per-message TTL (`Nats-TTL`) and subject delete markers, as nats-server
//! 2.11+ has them: the header's grammar, the message flags the index keeps,
//! the expiry queue, and the marker a stream writes when max_age or a TTL
//! takes the last message of a subject. Pure: no files, no timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::protocol::headers;

/// Index flag: `Nats-TTL: never`; max_age does not remove it.
pub const FLAG_NEVER: u8 = 1;
/// Index flag: a subject delete marker (or a KV purge); when it goes, no
/// new marker is written for its subject.
pub const FLAG_MARKER: u8 = 2;

/// A `Nats-TTL` value nats-server refuses (10165).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTtl;

/// What a message's `Nats-TTL` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    None,
    Never,
    Secs(i64),
}

impl Ttl {
    /// The header's value: a Go duration of at least 1 s (`30s`, `1m30s`),
    /// whole seconds (`30`), or `never` (any case). A duration below 1 s,
    /// a negative or unreadable number is invalid; `0` as a number is none.
    pub fn parse(v: &[u8]) -> Result<Ttl, InvalidTtl> {
        let text = std::str::from_utf8(v).map_err(|_| InvalidTtl)?;
        if text.eq_ignore_ascii_case("never") {
            return Ok(Ttl::Never);
        }
        if let Some(ns) = crate::conf::go_duration_ns(text) {
            if ns < 1_000_000_000 {
                return Err(InvalidTtl);
            }
            return Ok(Ttl::Secs(ns / 1_000_000_000));
        }
        // Not a duration: whole seconds (Go's parseInt64: digits only).
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidTtl);
        }
        match text.parse::<i64>() {
            Ok(0) => Ok(Ttl::None),
            Ok(n) => Ok(Ttl::Secs(n)),
            Err(_) => Err(InvalidTtl),
        }
    }

    /// When a message stored at `ts` expires (None: it does not by TTL).
    pub fn expires_at(self, ts: i64) -> Option<i64> {
        match self {
            Ttl::Secs(s) => Some(ts.saturating_add(s.saturating_mul(1_000_000_000))),
            Ttl::None | Ttl::Never => None,
        }
    }

    /// The TTL of a header block; an absent or empty header is none.
    pub fn of(hdr: &[u8]) -> Result<Ttl, InvalidTtl> {
        match headers::get(hdr, b"Nats-TTL") {
            None | Some(b"") => Ok(Ttl::None),
            Some(v) => Ttl::parse(v),
        }
    }
}

/// The index flags of a message with headers `hdr` (markers are looked for
/// only where the stream writes them).
pub fn flags_of(hdr: &[u8], ttl: Ttl, markers: bool) -> u8 {
    let mut f = 0;
    if ttl == Ttl::Never {
        f |= FLAG_NEVER;
    }
    if markers && is_marker(hdr) {
        f |= FLAG_MARKER;
    }
    f
}

/// A subject delete marker, or a KV purge (which stands for one).
pub fn is_marker(hdr: &[u8]) -> bool {
    !hdr.is_empty()
        && (headers::get(hdr, b"Nats-Marker-Reason").is_some_and(|v| !v.is_empty())
            || headers::get(hdr, b"KV-Operation") == Some(b"PURGE"))
}

/// The header block of the marker written when max_age or a TTL removes the
/// last message of a subject; its rollup takes that message away.
pub fn marker_headers(ttl_secs: i64) -> Vec<u8> {
    let ttl = crate::js::consumer::advisory::go_duration(ttl_secs * 1_000_000_000);
    headers::block(
        None,
        &[
            ("Nats-Marker-Reason", b"MaxAge"),
            ("Nats-TTL", ttl.as_bytes()),
            ("Nats-Rollup", b"sub"),
        ],
    )
}

/// Messages with a TTL by expiry time: one 16-byte entry per stored message
/// that has a TTL, plus entries of messages removed otherwise, which are
/// dropped when they come due or when `compact` finds them (the owner calls
/// it once the queue holds more than twice the stream's messages).
#[derive(Default)]
pub struct Expiries {
    heap: BinaryHeap<Reverse<(i64, u64)>>,
}

impl Expiries {
    pub fn push(&mut self, at: i64, seq: u64) {
        self.heap.push(Reverse((at, seq)));
    }

    /// The next entry due at `now`, taken off the queue.
    pub fn pop_due(&mut self, now: i64) -> Option<(i64, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Keeps only the entries of messages `live` says are still stored.
    pub fn compact(&mut self, live: impl Fn(u64) -> bool) {
        self.heap.retain(|Reverse((_, seq))| live(*seq));
    }

    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_grammar_is_nats_server_s() {
        assert_eq!(Ttl::parse(b"30s"), Ok(Ttl::Secs(30)));
        assert_eq!(Ttl::parse(b"1m30s"), Ok(Ttl::Secs(90)));
        assert_eq!(Ttl::parse(b"1.5s"), Ok(Ttl::Secs(1)));
        assert_eq!(Ttl::parse(b"2h"), Ok(Ttl::Secs(7200)));
        assert_eq!(Ttl::parse(b"5"), Ok(Ttl::Secs(5)));
        assert_eq!(Ttl::parse(b"NEVER"), Ok(Ttl::Never));
        assert_eq!(Ttl::parse(b"never"), Ok(Ttl::Never));
        assert_eq!(Ttl::parse(b"00"), Ok(Ttl::None));
        // Below a second, zero as a duration, negative, unreadable.
        assert_eq!(Ttl::parse(b"500ms"), Err(InvalidTtl));
        assert_eq!(Ttl::parse(b"0"), Err(InvalidTtl));
        assert_eq!(Ttl::parse(b"0s"), Err(InvalidTtl));
        assert_eq!(Ttl::parse(b"-5"), Err(InvalidTtl));
        assert_eq!(Ttl::parse(b"-5s"), Err(InvalidTtl));
        assert_eq!(Ttl::parse(b"abc"), Err(InvalidTtl));
        assert_eq!(Ttl::parse(b"5x"), Err(InvalidTtl));
        assert_eq!(
            Ttl::of(b"NATS/1.0\r\nNats-TTL: 2s\r\n\r\n"),
            Ok(Ttl::Secs(2))
        );
        assert_eq!(Ttl::of(b"NATS/1.0\r\nA: 1\r\n\r\n"), Ok(Ttl::None));
        assert_eq!(Ttl::of(b""), Ok(Ttl::None));
    }

    #[test]
    fn markers_and_flags() {
        assert_eq!(
            marker_headers(300),
            b"NATS/1.0\r\nNats-Marker-Reason: MaxAge\r\nNats-TTL: 5m0s\r\nNats-Rollup: sub\r\n\r\n"
        );
        assert!(is_marker(&marker_headers(1)));
        assert!(is_marker(b"NATS/1.0\r\nKV-Operation: PURGE\r\n\r\n"));
        assert!(!is_marker(b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n"));
        assert!(!is_marker(b""));
        let never = b"NATS/1.0\r\nNats-TTL: never\r\n\r\n";
        assert_eq!(flags_of(never, Ttl::of(never).unwrap(), true), FLAG_NEVER);
        let m = marker_headers(2);
        assert_eq!(flags_of(&m, Ttl::of(&m).unwrap(), true), FLAG_MARKER);
    }

    #[test]
    fn expiries_come_due_in_time_order() {
        let mut e = Expiries::default();
        e.push(30, 3);
        e.push(10, 1);
        e.push(20, 2);
        assert_eq!(e.pop_due(5), None);
        assert_eq!(e.pop_due(25), Some((10, 1)));
        assert_eq!(e.pop_due(25), Some((20, 2)));
        assert_eq!(e.pop_due(25), None);
        e.compact(|seq| seq != 3);
        assert_eq!(e.len(), 0);
    }
}
