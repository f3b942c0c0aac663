//! Limits: max_age expiry, max_msgs/max_bytes/max_msgs_per_subject with
//! discard old, and reclaiming segments (whole-segment deletion, compaction).

use std::cell::Cell;

use bytes::Bytes;

use crate::js::store::record;
use crate::js::store::segment as filelog;
use crate::js::stream::{ttl, Ingest, Pending, Stream};
use crate::limits::EXPIRY_BATCH;

/// What expiry did with one message.
enum Expired {
    Removed,
    /// Its subject delete marker is staged.
    Marking,
    /// Kept for now (its marker could not be staged).
    Kept,
}

impl Stream {
    /// Removes messages past `max_age` (not those with `Nats-TTL: never`)
    /// and those whose TTL ran out; where that would take the last message
    /// of a subject and the stream has delete markers, a marker goes in its
    /// place instead (its rollup removes it). True if any went.
    pub fn expire(&self, now: i64) -> bool {
        let (window, max_age, ttl, sdm) = {
            let c = self.cfg.borrow();
            let sdm = c.subject_delete_marker_ttl / 1_000_000_000;
            (c.duplicate_window, c.max_age, c.allow_msg_ttl, sdm)
        };
        // Message ids expire whether or not messages do.
        self.dedupe.borrow_mut().expire(now - window);
        {
            let ix = self.ix.borrow();
            self.marking.borrow_mut().retain(|s| ix.is_live(*s));
        }
        let mut any = false;
        // At most EXPIRY_BATCH removals in one go: the caller comes back at
        // once (after other work) when `expiry_backlog` says more are due.
        let mut budget = EXPIRY_BATCH;
        if max_age > 0 {
            any |= self.expire_aged(now - max_age, sdm, &mut budget);
        }
        if ttl && budget > 0 {
            any |= self.expire_ttls(now, sdm, &mut budget);
            let live = self.ix.borrow().msgs as usize;
            if self.expiries.borrow().len() > 2 * live + 1024 {
                let ix = self.ix.borrow();
                self.expiries
                    .borrow_mut()
                    .compact(|seq| ix.entry(seq).is_some());
            }
        }
        self.expiry_backlog.set(budget == 0);
        any
    }

    /// max_age: from the oldest message on, up to `cutoff`.
    fn expire_aged(&self, cutoff: i64, sdm: i64, budget: &mut usize) -> bool {
        // While every removal is at the front, one floor record says them all.
        let mut front = true;
        let mut floor_moved = false;
        let mut any = false;
        let mut from = self.ix.borrow().first_seq();
        loop {
            let next = {
                let ix = self.ix.borrow();
                ix.next_matching(from, None)
                    .and_then(|s| ix.entry(s).map(|e| (s, e.ts, e.flags())))
            };
            let Some((seq, ts, flags)) = next else { break };
            if ts > cutoff || *budget == 0 {
                break;
            }
            *budget -= 1;
            from = seq + 1;
            if flags & ttl::FLAG_NEVER != 0 {
                front = false;
                continue;
            }
            match self.expire_one(seq, flags, sdm, front) {
                Expired::Removed => {
                    any = true;
                    floor_moved |= front;
                }
                Expired::Marking | Expired::Kept => front = false,
            }
        }
        if floor_moved {
            let first = self.ix.borrow().first_seq();
            self.stage(record::KIND_FLOOR, first);
        }
        any
    }

    /// Per-message TTLs that ran out by `now`, in sequence order (a run
    /// from the front of the stream is said by one floor record).
    fn expire_ttls(&self, now: i64, sdm: i64, budget: &mut usize) -> bool {
        let mut due = Vec::new();
        {
            let mut e = self.expiries.borrow_mut();
            while due.len() < *budget {
                match e.pop_due(now) {
                    Some(d) => due.push(d),
                    None => break,
                }
            }
        }
        *budget -= due.len();
        due.sort_unstable_by_key(|(_, seq)| *seq);
        let mut any = false;
        let mut floor_moved = false;
        let mut again = Vec::new();
        for (at, seq) in due {
            let (flags, front) = {
                let ix = self.ix.borrow();
                match ix.entry(seq) {
                    Some(e) => (e.flags(), seq == ix.first_seq()),
                    None => continue, // removed otherwise
                }
            };
            match self.expire_one(seq, flags, sdm, front) {
                Expired::Removed => {
                    any = true;
                    floor_moved |= front;
                }
                // Until the marker's rollup (or a later pass) removes it.
                Expired::Marking | Expired::Kept => again.push((at, seq)),
            }
        }
        if floor_moved {
            let first = self.ix.borrow().first_seq();
            self.stage(record::KIND_FLOOR, first);
        }
        let mut e = self.expiries.borrow_mut();
        for (at, seq) in again {
            e.push(at, seq);
        }
        any
    }

    /// Removes one expired message (without a record when `front`: the
    /// caller stages a floor), or stages the subject delete marker that
    /// replaces it.
    fn expire_one(&self, seq: u64, flags: u8, sdm: i64, front: bool) -> Expired {
        if sdm > 0 && flags & ttl::FLAG_MARKER == 0 {
            if self.marking.borrow().contains(&seq) {
                return Expired::Marking;
            }
            let last_of = {
                let ix = self.ix.borrow();
                let subject = ix.subject_at(seq).cloned().expect("a live message");
                let alone = ix.subject(&subject).is_some_and(|s| s.count == 1)
                    && !self.w.borrow().subj_pending.contains_key(&subject);
                alone.then_some(subject)
            };
            if let Some(subject) = last_of {
                let hdr = Bytes::from(ttl::marker_headers(sdm));
                let n = hdr.len();
                return match self.ingest(&subject, None, Some(n), &hdr) {
                    Ingest::Accepted => {
                        self.marking.borrow_mut().insert(seq);
                        Expired::Marking
                    }
                    // Refused (a full ingest queue, the limits): next pass.
                    _ => Expired::Kept,
                };
            }
        }
        if front {
            let r = self.ix.borrow_mut().remove(seq);
            if let Some(r) = r {
                self.segment_lost(r.seg);
            }
        } else {
            self.remove_and_record(seq);
        }
        Expired::Removed
    }

    /// After an update turned on TTLs or delete markers: reads every stored
    /// message's headers once, scheduling TTLs and flagging markers, as if
    /// the stream had had them from the start.
    pub async fn rescan_expiry(&self) {
        let (ttls, markers) = {
            let c = self.cfg.borrow();
            (c.allow_msg_ttl, c.subject_delete_marker_ttl > 0)
        };
        let mut seq = self.ix.borrow().first_seq();
        loop {
            let next = self.ix.borrow().next_matching(seq, None);
            let Some(at) = next else { break };
            let run = self
                .load_run(at, crate::limits::CONSUMER_READ_AHEAD_BYTES)
                .await;
            if run.is_empty() {
                seq = at + 1; // unreadable (logged): skip it
                continue;
            }
            for m in &run {
                let Ok(ttl) = ttl::Ttl::of(m.hdr()) else {
                    continue;
                };
                if let Some(at) = ttl.expires_at(m.ts).filter(|_| ttls) {
                    self.expiries.borrow_mut().push(at, m.seq);
                }
                let flags = ttl::flags_of(m.hdr(), ttl, markers);
                self.ix.borrow_mut().set_flags(m.seq, flags);
                seq = m.seq + 1;
            }
        }
    }

    /// Expiry times of the messages recovered with a TTL.
    pub fn restore_expiries(&self, found: Vec<(i64, u64)>) {
        let mut e = self.expiries.borrow_mut();
        for (at, seq) in found {
            e.push(at, seq);
        }
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
                // segments: it goes only once nothing older is left (on
                // disk: none waits for the deleter either).
                let mut oldest = self.dead.borrow().is_empty() && !self.deleter.get();
                let mut out = Vec::new();
                for (k, s) in &log.segs {
                    // One being packed goes at a later round (its new file
                    // must not outlive it).
                    let gone =
                        *k != log.active && s.live == 0 && (oldest || !s.markers) && !s.packing;
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
                self.dead.borrow_mut().push_back(seg);
            }
        }
        self.start_deleter();
        self.compact().await;
    }

    /// Deletes the dead segments one after another, each paced (see
    /// `discard_segment`), in a task of its own: one per stream at a time.
    fn start_deleter(&self) {
        if self.deleter.get() || self.dead.borrow().is_empty() {
            return;
        }
        self.deleter.set(true);
        let (dead, running, name) = (self.dead.clone(), self.deleter.clone(), self.name.clone());
        glommio::spawn_local(async move {
            loop {
                let seg = dead.borrow_mut().pop_front();
                let Some(seg) = seg else { break };
                filelog::discard_segment(seg, &name).await;
            }
            running.set(false);
        })
        .detach();
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

/// Room left under the server's `max_memory_store` and `max_file_store`, as
/// this shard knows it: set from every shard's usage each `EXPIRY_TICK`
/// (`Js::measure_room`), taken down by each message this shard accepts in
/// between. A publish finding no room left is refused with nats-server's
/// 10023, as nats-server refuses once usage is over the limit. Between two
/// ticks, other shards' publishes are not seen here: the server may go over
/// by what they accept in one tick.
#[derive(Debug, Default)]
pub struct Room {
    memory: Cell<i64>,
    file: Cell<i64>,
}

impl Room {
    fn of(&self, memory: bool) -> &Cell<i64> {
        if memory {
            &self.memory
        } else {
            &self.file
        }
    }

    /// Room left for the storage kind (`memory` or file); negative when over.
    pub fn left(&self, memory: bool) -> i64 {
        self.of(memory).get()
    }

    /// A message of `size` bytes was accepted.
    pub fn take(&self, memory: bool, size: u64) {
        let c = self.of(memory);
        c.set(c.get().saturating_sub(size as i64));
    }

    pub fn set(&self, memory: i64, file: i64) {
        self.memory.set(memory);
        self.file.set(file);
    }
}
