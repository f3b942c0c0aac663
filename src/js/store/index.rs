//! A stream's in-memory index: sequence → message location (and cached bytes),
//! per-subject first/last/count, deleted sequences, totals. Rebuilt from the
//! segments at start; memory streams keep every message's bytes here.
//!
//! Entries sit in a deque indexed by `seq - first_seq`; an interior delete marks
//! its entry, a delete at the front pops it. Memory: one 32-byte entry per
//! sequence between first and last, bounded by the stream's own limits, plus
//! the cached bodies (`bodies`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::Bytes;

use crate::js::store::bodies::{Bodies, Body};
use crate::limits::REMOVED_LOG_MAX;
use cache::{ChunkCache, ChunkKey};
use cold::{Chunk, Reader};
use pages::{Page, Pages};

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub ts: i64,
    /// Segment (its first sequence) of the record; memory streams use 0.
    pub seg: u64,
    /// Byte offset of the record in its segment (`off()`; segments stay
    /// below `SEGMENT_BYTES_MAX` plus one write, far below 4 GiB).
    off: u32,
    pub len: u32,
    pub subj: u32,
    /// Header length (bits 0-16: up to `HEADERS_MAX` inclusive), deleted
    /// (bit 20), `ttl::FLAG_*` (bits 24-31): one word, so an entry is 32 bytes.
    bits: u32,
}

const HDR_MASK: u32 = (1 << 17) - 1;
const DELETED: u32 = 1 << 20;
const _: () = assert!(crate::limits::HEADERS_MAX as u32 <= HDR_MASK);

impl Entry {
    /// A sequence with no message (deleted, or never stored).
    fn gap() -> Entry {
        Entry {
            ts: 0,
            seg: 0,
            off: 0,
            len: 0,
            subj: 0,
            bits: DELETED,
        }
    }

    pub fn off(&self) -> u64 {
        u64::from(self.off)
    }

    pub fn hdr_len(&self) -> u32 {
        self.bits & HDR_MASK
    }

    pub fn deleted(&self) -> bool {
        self.bits & DELETED != 0
    }

    /// What the message's headers ask of expiry (`ttl::FLAG_*`).
    pub fn flags(&self) -> u8 {
        (self.bits >> 24) as u8
    }

    fn set_deleted(&mut self) {
        self.bits |= DELETED;
    }

    fn set_flags(&mut self, flags: u8) {
        self.bits = (self.bits & 0x00ff_ffff) | (u32::from(flags) << 24);
    }

    fn set_off(&mut self, off: u64) {
        self.off = u32::try_from(off).expect("segments stay below 4 GiB (SEGMENT_BYTES_MAX)");
    }
}

#[derive(Debug, Clone)]
pub struct SubjState {
    pub subject: Bytes,
    pub count: u64,
    /// May be stale (too low) after deletes; `first_of` repairs it.
    pub first: u64,
    pub last: u64,
}

/// A message as read from the index or a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsg {
    pub seq: u64,
    pub ts: i64,
    pub subject: Bytes,
    pub hdr_len: usize,
    /// Header block then payload.
    pub data: Bytes,
}

impl StoredMsg {
    pub fn hdr(&self) -> &[u8] {
        &self.data[..self.hdr_len]
    }
    pub fn payload(&self) -> &[u8] {
        &self.data[self.hdr_len..]
    }
}

/// Where a message's record is: its segment (named by its first sequence)
/// and the record's byte offset in it. Memory streams use 0/0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Location {
    pub seg: u64,
    pub off: u64,
}

/// A message entering the index.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub seq: u64,
    pub ts: i64,
    pub subject: &'a [u8],
    pub hdr_len: usize,
    /// Header block plus payload.
    pub len: usize,
    pub at: Location,
    /// The message bytes to cache (always, for memory streams).
    pub data: Option<Bytes>,
    /// `ttl::FLAG_*`.
    pub flags: u8,
}

/// What a removal took away (for byte accounting and segment bookkeeping).
#[derive(Debug, Clone, Copy)]
pub struct Removed {
    pub seq: u64,
    pub seg: u64,
    pub size: u64,
}

#[derive(Debug)]
pub struct Index {
    /// An entry per sequence from the first to the last, in pages.
    pages: Pages,
    /// Decoded chunks of cold pages: the shard's cache, and the chunk read
    /// last.
    cache: Rc<ChunkCache>,
    last: RefCell<Option<(ChunkKey, Rc<Chunk>)>>,
    pub msgs: u64,
    pub bytes: u64,
    /// Interior deleted entries.
    pub deleted: u64,
    subjects: AHashMap<Bytes, u32>,
    subj: Vec<Option<SubjState>>,
    free: Vec<u32>,
    /// The subject interned last (an id in `subj`, maybe freed since).
    last_subj: u32,
    memory: bool,
    /// Header block + payload of cached live messages (see `Bodies`), kept
    /// apart from the entries so an entry stays small.
    bodies: Bodies,
    /// Timestamp of the last message ever stored (kept after removals).
    pub last_ts: i64,
    /// Messages removed so far (a generation counter for consumers' counts).
    pub removals: u64,
    /// The most recent removals (sequence, subject), at most
    /// `REMOVED_LOG_MAX`, kept only while `track_removals` (the stream has
    /// consumers): consumers correct their pending counts from it, and recount
    /// when they fell behind it.
    pub recent_removed: VecDeque<(u64, Bytes)>,
    pub track_removals: bool,
}

/// nats-server's accounting size of a message (`bytes` in stream state).
pub fn msg_size(memory: bool, subject: usize, hdr: usize, payload: usize) -> u64 {
    if memory {
        (subject + hdr + payload + 16) as u64
    } else if hdr == 0 {
        (22 + subject + payload + 8) as u64
    } else {
        (22 + subject + 4 + hdr + payload + 8) as u64
    }
}

impl Index {
    pub fn new(memory: bool, first_seq: u64) -> Index {
        Index {
            pages: Pages::new(first_seq.max(1)),
            cache: ChunkCache::shard(),
            last: RefCell::new(None),
            msgs: 0,
            bytes: 0,
            deleted: 0,
            subjects: AHashMap::new(),
            subj: Vec::new(),
            free: Vec::new(),
            last_subj: 0,
            memory,
            bodies: Bodies::default(),
            last_ts: 0,
            removals: 0,
            recent_removed: VecDeque::new(),
            track_removals: false,
        }
    }

    /// First sequence of the stream (last + 1 when empty).
    pub fn first_seq(&self) -> u64 {
        self.pages.first()
    }
    pub fn last_seq(&self) -> u64 {
        self.pages.last()
    }
    pub fn num_subjects(&self) -> usize {
        self.subjects.len()
    }

    /// Live message `seq`'s entry (read from a cold page's file if need be).
    #[inline]
    pub fn entry(&self, seq: u64) -> Option<Entry> {
        self.entry_in(self.pages.find(seq)?, seq)
    }

    /// `entry`, with the page that holds `seq` found.
    #[inline]
    fn entry_in(&self, page: usize, seq: u64) -> Option<Entry> {
        match &self.pages.pages[page] {
            Page::Hot(h) => h
                .entries
                .get((seq - h.lo) as usize)
                .filter(|e| !e.deleted())
                .copied(),
            Page::Cold(c) => c.get(seq, self.reader()),
        }
    }

    /// What reading a cold page takes.
    fn reader(&self) -> Reader<'_> {
        Reader {
            cache: &self.cache,
            last: &self.last,
            subjects: &self.subjects,
        }
    }

    /// Whether `seq` is a live message (no file read).
    pub fn is_live(&self, seq: u64) -> bool {
        match self.pages.find(seq).map(|i| &self.pages.pages[i]) {
            Some(Page::Hot(h)) => !h.entries[(seq - h.lo) as usize].deleted(),
            Some(Page::Cold(c)) => c.is_live(seq),
            None => false,
        }
    }

    /// Whether live message `seq`'s record is the one at `off` in segment
    /// `seg` (no file read).
    pub fn live_at(&self, seq: u64, seg: u64, off: u64) -> bool {
        match self.pages.find(seq).map(|i| &self.pages.pages[i]) {
            Some(Page::Hot(h)) => {
                let e = &h.entries[(seq - h.lo) as usize];
                !e.deleted() && e.seg == seg && e.off() == off
            }
            Some(Page::Cold(c)) => c.live_at(seq, seg, off),
            None => false,
        }
    }

    /// The first live sequence ≥ `from` (no file read).
    pub fn next_live(&self, from: u64) -> Option<u64> {
        let from = from.max(self.first_seq());
        let mut i = self.pages.find(from)?;
        while let Some(p) = self.pages.pages.get(i) {
            let start = from.max(p.lo());
            let found = match p {
                Page::Hot(h) => h
                    .entries
                    .range((start - h.lo) as usize..)
                    .position(|e| !e.deleted())
                    .map(|k| start + k as u64),
                Page::Cold(c) => c.next_live(start),
            };
            if found.is_some() {
                return found;
            }
            i += 1;
        }
        None
    }

    /// Calls `f` with each live entry from `from` to `to` ascending, until
    /// it returns false. Cold pages are decoded a chunk at a time.
    pub fn scan(&self, from: u64, to: u64, mut f: impl FnMut(u64, &Entry) -> bool) {
        let to = to.min(self.last_seq());
        let from = from.max(self.first_seq());
        let Some(mut i) = self.pages.find(from) else {
            return;
        };
        while let Some(p) = self.pages.pages.get(i) {
            if p.lo() > to {
                return;
            }
            match p {
                Page::Hot(h) => {
                    let (a, b) = (from.max(h.lo), to.min(p.hi()));
                    let run = h.entries.range((a - h.lo) as usize..=(b - h.lo) as usize);
                    for (seq, e) in (a..).zip(run) {
                        if !e.deleted() && !f(seq, e) {
                            return;
                        }
                    }
                }
                Page::Cold(c) => {
                    if !c.scan(from, to, self.reader(), &mut f) {
                        return;
                    }
                }
            }
            i += 1;
        }
    }

    /// Sets the `ttl::FLAG_*` of live message `seq`.
    pub fn set_flags(&mut self, seq: u64, flags: u8) {
        if let Some(e) = self.pages.hot_mut(seq) {
            if !e.deleted() {
                e.set_flags(flags);
            }
        } else if let Some(c) = self.pages.cold_mut(seq) {
            c.set_flags(seq, flags);
        }
    }

    pub fn subject_of(&self, e: &Entry) -> &Bytes {
        self.subject_named(e.subj)
    }

    /// The subject of id `id` (a live message's).
    fn subject_named(&self, id: u32) -> &Bytes {
        &self.subj[id as usize]
            .as_ref()
            .expect("live subject")
            .subject
    }

    pub fn size_of(&self, e: &Entry) -> u64 {
        let subj = self.subject_of(e).len();
        msg_size(
            self.memory,
            subj,
            e.hdr_len() as usize,
            (e.len - e.hdr_len()) as usize,
        )
    }

    pub fn first_ts(&self) -> i64 {
        self.oldest().map_or(0, |(_, ts)| ts)
    }

    /// Adds a message above the last sequence; a gap is recorded as deleted
    /// sequences (or skipped when the stream is empty).
    pub fn append(&mut self, m: NewEntry) {
        assert!(
            m.seq > self.last_seq() || (self.pages.is_empty() && m.seq >= self.first_seq()),
            "sequence {} not after {}",
            m.seq,
            self.last_seq()
        );
        assert!(m.hdr_len <= m.len, "headers within the message");
        if self.msgs == 0 {
            self.clear(m.seq);
        }
        while self.last_seq() + 1 < m.seq {
            self.pages.push_back(Entry::gap(), None);
            self.deleted += 1;
        }
        let entry = self.new_entry(&m);
        self.pages.push_back(entry, Some(m.at.seg));
        self.last_ts = m.ts;
    }

    /// No entry; the next sequence is `first`.
    fn clear(&mut self, first: u64) {
        self.forget(&self.pages.cold_ids());
        self.pages.clear(first);
        self.deleted = 0;
    }

    /// The entry for `m`, counted into the totals and its subject.
    fn new_entry(&mut self, m: &NewEntry) -> Entry {
        let subj = self.intern(m.subject, m.seq);
        if let Some(d) = &m.data {
            let body = Body {
                data: d.clone(),
                ts: m.ts,
                subj,
                hdr_len: m.hdr_len as u32,
            };
            self.bodies.put(m.seq, body);
        }
        self.msgs += 1;
        self.bytes += msg_size(self.memory, m.subject.len(), m.hdr_len, m.len - m.hdr_len);
        let mut e = Entry {
            ts: m.ts,
            seg: m.at.seg,
            off: 0,
            len: m.len as u32,
            subj,
            bits: m.hdr_len as u32,
        };
        e.set_off(m.at.off);
        e.set_flags(m.flags);
        e
    }

    /// Removes message `seq`; None if it is not there.
    pub fn remove(&mut self, seq: u64) -> Option<Removed> {
        let page = self.pages.find(seq)?;
        let e = self.entry_in(page, seq)?;
        let (size, seg, id) = (self.size_of(&e), e.seg, e.subj);
        match &mut self.pages.pages[page] {
            Page::Hot(h) => h.entries[(seq - h.lo) as usize].set_deleted(),
            Page::Cold(c) => c.kill(seq),
        }
        self.bodies.remove(seq);
        self.msgs -= 1;
        self.bytes -= size;
        self.deleted += 1;
        self.removals += 1;
        if self.track_removals {
            if self.recent_removed.len() == REMOVED_LOG_MAX {
                self.recent_removed.pop_front();
            }
            let subject = self.subject_named(id).clone();
            self.recent_removed.push_back((seq, subject));
        }
        let s = self.subj[id as usize].as_mut().expect("live subject");
        s.count -= 1;
        if s.count == 0 {
            let s = self.subj[id as usize].take().expect("live subject");
            self.subjects.remove(&s.subject);
            self.free.push(id);
        } else if s.first == seq {
            s.first = seq + 1; // repaired lazily by first_of
        } else if s.last == seq {
            let mut last = seq;
            while last > self.first_seq() {
                last -= 1;
                // A dead sequence has no entry (no file read).
                if self.entry(last).is_some_and(|e| e.subj == id) {
                    break;
                }
            }
            self.subj[id as usize].as_mut().expect("live subject").last = last;
        }
        self.trim_front();
        Some(Removed { seq, seg, size })
    }

    /// Removes live message `seq` whose entry cannot be read (its cold
    /// page's index file is gone or damaged, which was logged): its bytes
    /// and subject are unknown, so only the message count is corrected.
    fn drop_unreadable(&mut self, seq: u64) {
        crate::error!("JetStream index: message {seq} removed without its entry (unreadable)");
        if let Some(c) = self.pages.cold_mut(seq) {
            c.kill(seq);
        }
        self.bodies.remove(seq);
        self.msgs -= 1;
        self.deleted += 1;
        self.removals += 1;
        self.trim_front();
    }

    /// Drops deleted entries from the front so the first is a live message.
    fn trim_front(&mut self) {
        let mut dropped = Vec::new();
        self.deleted -= self.pages.trim_front(&mut dropped);
        self.forget(&dropped);
        if self.pages.is_empty() {
            self.deleted = 0;
        }
    }

    /// Moves the first sequence up to `floor` (purge / restart); entries below go.
    pub fn raise_floor(&mut self, floor: u64) -> Vec<Removed> {
        let mut out = Vec::new();
        // trim_front keeps the first on a live message, so each removal advances it.
        while self.msgs > 0 && self.first_seq() < floor {
            let seq = self.first_seq();
            match self.remove(seq) {
                Some(r) => out.push(r),
                None => self.drop_unreadable(seq),
            }
        }
        if floor > self.last_seq() {
            self.clear(floor);
        }
        out
    }

    /// Points live message `seq` at a new location (compaction moved it);
    /// returns the segment it was in.
    pub fn relocate(&mut self, seq: u64, at: Location) -> Option<u64> {
        if let Some(e) = self.pages.hot_mut(seq) {
            if e.deleted() {
                return None;
            }
            let old = e.seg;
            e.seg = at.seg;
            e.set_off(at.off);
            return Some(old);
        }
        let mut e = self.entry(seq)?;
        let old = e.seg;
        e.seg = at.seg;
        e.set_off(at.off);
        self.pages.cold_mut(seq)?.put(seq, e);
        Some(old)
    }

    /// Recovery of a moved record: message `m.seq` at a new location, whether
    /// or not its original record (in a reclaimed segment) was seen. Sequences
    /// between it and the rest of the index read as deleted.
    pub fn insert_moved(&mut self, m: NewEntry) {
        if self.relocate(m.seq, m.at).is_some() {
            return;
        }
        if m.seq > self.last_seq() || (self.msgs == 0 && m.seq >= self.first_seq()) {
            self.append(m);
            return;
        }
        // Below the first sequence: extend the front with deleted slots.
        if m.seq < self.first_seq() {
            self.deleted += self.first_seq() - m.seq;
            self.pages.extend_front(m.seq);
        }
        // Fill the deleted slot at `seq` as a live message.
        assert!(!self.is_live(m.seq), "a moved record fills a deleted slot");
        let e = self.new_entry(&m);
        match self.pages.hot_mut(m.seq) {
            Some(slot) => *slot = e,
            None => self
                .pages
                .cold_mut(m.seq)
                .expect("a sequence in a page")
                .put(m.seq, e),
        }
        self.deleted -= 1;
    }

    /// Live messages per segment, as (segment, count) runs.
    pub fn live_by_segment(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut add = |seg: u64, n: u64| match out.last_mut() {
            Some((s, k)) if *s == seg => *k += n,
            _ => out.push((seg, n)),
        };
        for p in &self.pages.pages {
            match p {
                Page::Hot(h) => h
                    .entries
                    .iter()
                    .filter(|e| !e.deleted())
                    .for_each(|e| add(e.seg, 1)),
                Page::Cold(c) => {
                    add(c.seg, c.live);
                    c.moved.values().for_each(|e| add(e.seg, 1));
                }
            }
        }
        out
    }

    /// Counts one more message with `subject` at `seq`; its subject id.
    fn intern(&mut self, subject: &[u8], seq: u64) -> u32 {
        // Runs of one subject (a replay, a busy publisher) skip the hash.
        let last = self.last_subj as usize;
        if let Some(Some(s)) = self.subj.get_mut(last) {
            if crate::subject::same(&s.subject, subject) {
                s.count += 1;
                s.first = s.first.min(seq);
                s.last = s.last.max(seq);
                return last as u32;
            }
        }
        let id = self.intern_slow(subject, 1, seq, seq);
        self.last_subj = id;
        id
    }

    /// Counts `n` more messages with `subject`, from `first` to `last`.
    fn intern_slow(&mut self, subject: &[u8], n: u64, first: u64, last: u64) -> u32 {
        match self.subjects.get(subject) {
            Some(&id) => {
                let s = self.subj[id as usize].as_mut().expect("live subject");
                s.count += n;
                s.first = s.first.min(first);
                s.last = s.last.max(last);
                id
            }
            None => {
                let subject = Bytes::copy_from_slice(subject);
                let state = SubjState {
                    subject: subject.clone(),
                    count: n,
                    first,
                    last,
                };
                let id = match self.free.pop() {
                    Some(id) => {
                        self.subj[id as usize] = Some(state);
                        id
                    }
                    None => {
                        self.subj.push(Some(state));
                        (self.subj.len() - 1) as u32
                    }
                };
                self.subjects.insert(subject, id);
                id
            }
        }
    }

    /// Makes sure `seq` counts as used: past the end, the sequences up to it
    /// become deleted ones (or the empty stream's first moves past it).
    pub fn skip_through(&mut self, seq: u64) {
        if seq <= self.last_seq() {
            return;
        }
        if self.msgs == 0 {
            self.clear(seq + 1);
            return;
        }
        while self.last_seq() < seq {
            self.pages.push_back(Entry::gap(), None);
            self.deleted += 1;
        }
    }

    /// Subject state by literal subject.
    pub fn subject(&self, subject: &[u8]) -> Option<&SubjState> {
        let id = *self.subjects.get(subject)?;
        self.subj[id as usize].as_ref()
    }

    /// The first live sequence of a subject, repairing the lazy `first`.
    pub fn first_of(&mut self, subject: &[u8]) -> Option<u64> {
        let id = *self.subjects.get(subject)?;
        let seq = self.first_live(subject)?;
        self.subj[id as usize].as_mut()?.first = seq;
        Some(seq)
    }

    /// `first_of` without the repair (past the subject's last when none is left).
    pub fn first_live(&self, subject: &[u8]) -> Option<u64> {
        let id = *self.subjects.get(subject)?;
        let s = self.subj[id as usize].as_ref()?;
        let mut seq = s.first.max(self.first_seq());
        while seq <= s.last {
            // A dead sequence has no entry (no file read).
            if self.entry(seq).is_some_and(|e| e.subj == id) {
                break;
            }
            seq += 1;
        }
        Some(seq)
    }

    /// Cached data of `seq`, if any.
    /// A body is kept only while its message is live (a removal drops it),
    /// and with what its entry would say, so no entry is looked up.
    pub fn cached(&self, seq: u64) -> Option<StoredMsg> {
        let b = self.bodies.get(seq)?;
        let subject = self.subj.get(b.subj as usize)?.as_ref()?.subject.clone();
        Some(StoredMsg {
            seq,
            ts: b.ts,
            subject,
            hdr_len: b.hdr_len as usize,
            data: b.data.clone(),
        })
    }

    /// Drops cached bytes of the oldest messages until at most `max` are held
    /// (file streams; a memory stream's bodies are its messages).
    pub fn evict(&mut self, max: u64) {
        if !self.memory {
            self.bodies.evict(max);
        }
    }

    /// Keeps message `m`, read from disk, in the cache (if it is live).
    pub fn fill_cache(&mut self, m: &StoredMsg) {
        if self.memory || !self.is_live(m.seq) {
            return;
        }
        if let Some(&subj) = self.subjects.get(&m.subject) {
            let body = Body {
                data: m.data.clone(),
                ts: m.ts,
                subj,
                hdr_len: m.hdr_len as u32,
            };
            self.bodies.put(m.seq, body);
        }
    }

    /// Sequence of the oldest live message, by timestamp order == sequence order.
    pub fn oldest(&self) -> Option<(u64, i64)> {
        if self.msgs == 0 {
            None
        } else {
            let first = self.next_live(self.first_seq())?;
            self.entry(first).map(|e| (first, e.ts))
        }
    }
}

mod cache;
mod cold;
mod deadset;
mod pages;
mod paging;
pub use paging::{set_cache_budget, ChunkRead};
mod query;
// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests;
