//! Limits: max_age expiry, max_msgs/max_bytes/max_msgs_per_subject with
//! discard old, and reclaiming segments (whole-segment deletion, compaction).

use bytes::Bytes;

use crate::js::store::record;
use crate::js::store::segment as filelog;
use crate::js::stream::{Pending, Stream};

impl Stream {
    /// Removes messages past `max_age`; true if any went.
    pub fn expire(&self, now: i64) -> bool {
        let max_age = self.cfg.borrow().max_age;
        if max_age <= 0 {
            return false;
        }
        let cutoff = now - max_age;
        let mut any = false;
        loop {
            let oldest = self.ix.borrow().oldest();
            match oldest {
                Some((seq, ts)) if ts <= cutoff => {
                    let r = self.ix.borrow_mut().remove(seq);
                    if let Some(r) = r {
                        self.segment_lost(r.seg);
                    }
                    any = true;
                }
                _ => break,
            }
        }
        if any {
            let first = self.ix.borrow().first_seq();
            self.stage(record::KIND_FLOOR, first);
        }
        let window = self.cfg.borrow().duplicate_window;
        self.dedupe.borrow_mut().expire(now - window);
        any
    }

    /// Applies the limits (discard old) after a config change.
    pub fn enforce_limits(&self) {
        let per = self.cfg.borrow().max_msgs_per_subject;
        if per > 0 {
            let over: Vec<Bytes> = self
                .ix
                .borrow()
                .subjects_matching(b">")
                .into_iter()
                .filter(|(_, n)| *n > per as u64)
                .map(|(s, _)| s)
                .collect();
            for s in over {
                self.trim_subject(&s, per as u64);
            }
        }
        self.enforce_global();
    }

    pub(super) fn trim_subject(&self, subject: &[u8], max: u64) {
        loop {
            let first = {
                let mut ix = self.ix.borrow_mut();
                match ix.subject(subject) {
                    Some(s) if s.count > max => ix.first_of(subject),
                    _ => None,
                }
            };
            match first {
                Some(seq) => {
                    self.remove_and_record(seq);
                }
                None => break,
            }
        }
    }

    pub(super) fn enforce_global(&self) {
        let cfg = self.cfg.borrow().clone();
        let mut moved = false;
        loop {
            let (msgs, bytes, first) = {
                let ix = self.ix.borrow();
                (ix.msgs, ix.bytes, ix.first_seq())
            };
            let over = (cfg.max_msgs > 0 && msgs > cfg.max_msgs as u64)
                || (cfg.max_bytes > 0 && bytes > cfg.max_bytes as u64);
            if !over || msgs == 0 {
                break;
            }
            let r = self.ix.borrow_mut().remove(first);
            if let Some(r) = r {
                self.segment_lost(r.seg);
            }
            moved = true;
        }
        if moved {
            let first = self.ix.borrow().first_seq();
            self.stage(record::KIND_FLOOR, first);
        }
    }

    /// Deletes segments whose messages are all gone (never the active one).
    pub async fn gc_segments(&self) {
        let doomed: Vec<u64> = match self.log.borrow().as_ref() {
            None => return,
            Some(log) => {
                // A segment holding delete/floor records speaks for older
                // segments: it goes only once nothing older is left.
                let mut oldest = true;
                let mut out = Vec::new();
                for (k, s) in &log.segs {
                    let gone = *k != log.active && s.live == 0 && (oldest || !s.markers);
                    if gone {
                        out.push(*k);
                    } else {
                        oldest = false;
                    }
                }
                out
            }
        };
        if !doomed.is_empty() {
            // The copies in those records carry link positions.
            self.save_positions().await;
        }
        for first in doomed {
            let seg = self
                .log
                .borrow_mut()
                .as_mut()
                .and_then(|l| l.take_segment(first));
            if let Some(seg) = seg {
                filelog::discard_segment(seg, &self.name).await;
            }
        }
        self.compact().await;
    }

    /// Compaction: when the oldest segment holds a few live messages and keeps a
    /// newer, dead segment (one with delete records) from being reclaimed, copy
    /// those messages forward (same sequence and time, `KIND_MOVED`). Once that
    /// write commits, the oldest segment has no live message and goes, and the
    /// dead ones after it follow.
    pub(super) async fn compact(&self) {
        if self.moves_pending.get() > 0 || self.closed.get() {
            return;
        }
        let target = {
            let log = self.log.borrow();
            let Some(log) = log.as_ref() else { return };
            let mut it = log.segs.iter();
            match (it.next(), it.next()) {
                (Some((&oldest, s0)), Some((&second, s1)))
                    if oldest != log.active
                        && second != log.active
                        && s0.live > 0
                        && s0.live <= crate::limits::COMPACT_LIVE_MAX
                        && s1.live == 0 =>
                {
                    Some((oldest, second))
                }
                _ => None,
            }
        };
        let Some((oldest, second)) = target else {
            return;
        };
        let seqs: Vec<u64> = {
            let ix = self.ix.borrow();
            // Moved messages sit below their segment's name: scan from the first.
            (ix.first_seq()..second.min(ix.last_seq() + 1))
                .filter(|&q| ix.entry(q).is_some_and(|e| e.seg == oldest))
                .collect()
        };
        let mut msgs = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(m) = self.load(seq).await {
                msgs.push(m);
            }
        }
        let mut w = self.w.borrow_mut();
        let ix = self.ix.borrow();
        for m in msgs {
            // Deleted meanwhile: nothing to move (its delete is staged already).
            if ix.entry(m.seq).is_none_or(|e| e.seg != oldest) {
                continue;
            }
            let rel = w.staged.len();
            record::encode(
                &mut w.staged,
                record::KIND_MOVED,
                m.seq,
                m.ts,
                &m.subject,
                m.hdr_len,
                &m.data,
            );
            w.pending.push(Pending::Move { seq: m.seq, rel });
            self.moves_pending.set(self.moves_pending.get() + 1);
        }
        drop(ix);
        drop(w);
        self.wake.notify();
    }
}
