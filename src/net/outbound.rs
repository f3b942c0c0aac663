//! A connection's outbound queue and the slow-consumer verdict.
//!
//! Bound: `cap` bytes queued or being written (`--max_pending`, default 64 MiB).
//! Past `STALL_THRESHOLD_PERCENT` of it (or `STALL_BYTES_MAX`), producers are
//! told to stall until the write loop drains it (at most `STALL_WAIT_MAX`);
//! past the cap the connection is cut as a slow consumer and its queue dropped.

use crate::limits::{STALL_BYTES_MAX, STALL_THRESHOLD_PERCENT};
use crate::protocol::ops;

/// What a producer should do after queueing to this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Over the stall threshold: the producer should pause briefly.
    Stall,
    /// Over the cap: the connection must be closed as a slow consumer.
    Slow,
}

#[derive(Debug)]
pub struct Outbound {
    /// Bytes waiting for the writer.
    pub buf: Vec<u8>,
    /// Bytes the writer has taken and is writing now.
    pub in_flight: usize,
    cap: usize,
    /// No more output is accepted: the connection is closing.
    pub closing: bool,
    /// Queued output is thrown away (slow consumer, dead socket).
    pub discard: bool,
    /// Messages (MSG/HMSG) queued, and their payload bytes (headers included),
    /// for monitoring: counted here, where the queue is borrowed anyway.
    pub msgs: u64,
    pub bytes: u64,
}

impl Outbound {
    pub fn new(cap: usize) -> Self {
        Outbound {
            buf: Vec::new(),
            in_flight: 0,
            cap,
            closing: false,
            discard: false,
            msgs: 0,
            bytes: 0,
        }
    }

    pub fn pending(&self) -> usize {
        self.buf.len() + self.in_flight
    }

    /// True when producers feeding this connection should stall.
    pub fn over_stall_threshold(&self) -> bool {
        let pending = self.pending();
        pending * 100 > self.cap * STALL_THRESHOLD_PERCENT || pending > STALL_BYTES_MAX
    }

    pub fn verdict(&self) -> Verdict {
        if self.pending() > self.cap {
            Verdict::Slow
        } else if self.over_stall_threshold() {
            Verdict::Stall
        } else {
            Verdict::Ok
        }
    }

    /// Queues raw protocol bytes (INFO, PONG, +OK, -ERR).
    pub fn push(&mut self, bytes: &[u8]) -> Verdict {
        if self.closing || self.discard {
            return Verdict::Ok;
        }
        self.buf.extend_from_slice(bytes);
        self.verdict()
    }

    /// Queues a MSG/HMSG.
    pub fn push_msg(
        &mut self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        hdr_len: Option<usize>,
        msg: &[u8],
    ) -> Verdict {
        if self.closing || self.discard {
            return Verdict::Ok;
        }
        ops::encode_msg(&mut self.buf, subject, sid, reply, hdr_len, msg);
        self.msgs += 1;
        self.bytes += msg.len() as u64;
        self.verdict()
    }

    /// Queues an LMSG/HMSG on a leaf connection.
    pub fn push_leaf_msg(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        queues: &[&[u8]],
        hdr_len: Option<usize>,
        msg: &[u8],
    ) -> Verdict {
        if self.closing || self.discard {
            return Verdict::Ok;
        }
        crate::protocol::leaf::encode_msg(&mut self.buf, subject, reply, queues, hdr_len, msg);
        self.msgs += 1;
        self.bytes += msg.len() as u64;
        self.verdict()
    }

    /// Queues `-ERR '<text>'`.
    pub fn push_err(&mut self, text: &str) {
        if !self.closing && !self.discard {
            ops::encode_err(&mut self.buf, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_cap() {
        let mut out = Outbound::new(100);
        assert_eq!(out.push(&[0; 75]), Verdict::Ok);
        assert_eq!(out.push(&[0; 1]), Verdict::Stall);
        out.in_flight = 24;
        assert_eq!(out.verdict(), Verdict::Stall);
        assert_eq!(out.push(&[0; 1]), Verdict::Slow);
    }

    #[test]
    fn a_large_cap_still_stalls_at_the_byte_bound() {
        let mut out = Outbound::new(64 << 20);
        assert_eq!(out.push(&vec![0; STALL_BYTES_MAX]), Verdict::Ok);
        assert_eq!(out.push(&[0; 1]), Verdict::Stall);
        out.buf.clear();
        assert_eq!(out.verdict(), Verdict::Ok);
    }

    #[test]
    fn closed_queue_accepts_nothing() {
        let mut out = Outbound::new(100);
        out.closing = true;
        out.push(b"PONG\r\n");
        out.push_err("x");
        assert!(out.buf.is_empty());
    }
}
