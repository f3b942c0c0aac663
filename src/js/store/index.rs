//! A stream's in-memory index: sequence → message location (and cached bytes),
//! per-subject first/last/count, deleted sequences, totals. Rebuilt from the
//! segments at start; memory streams keep every message's bytes here.
//!
//! Entries sit in a deque indexed by `seq - first_seq`; an interior delete marks
//! its entry, a delete at the front pops it. Memory: one 32-byte entry per
//! sequence between first and last, bounded by the stream's own limits, plus
//! the cached bodies (`bodies`).

use std::collections::VecDeque;

use ahash::AHashMap;
use bytes::Bytes;

use crate::js::store::bodies::Bodies;
use crate::limits::REMOVED_LOG_MAX;

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
    entries: VecDeque<Entry>,
    /// Sequence of `entries[0]`; when empty, the next sequence is `first`.
    first: u64,
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
            entries: VecDeque::new(),
            first: first_seq.max(1),
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
        self.first
    }
    pub fn last_seq(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }
    pub fn num_subjects(&self) -> usize {
        self.subjects.len()
    }

    pub fn entry(&self, seq: u64) -> Option<&Entry> {
        if seq < self.first {
            return None;
        }
        self.entries
            .get((seq - self.first) as usize)
            .filter(|e| !e.deleted())
    }

    /// Sets the `ttl::FLAG_*` of live message `seq`.
    pub fn set_flags(&mut self, seq: u64, flags: u8) {
        if seq >= self.first {
            if let Some(e) = self.entries.get_mut((seq - self.first) as usize) {
                if !e.deleted() {
                    e.set_flags(flags);
                }
            }
        }
    }

    pub fn subject_of(&self, e: &Entry) -> &Bytes {
        &self.subj[e.subj as usize]
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
        self.entries
            .iter()
            .find(|e| !e.deleted())
            .map_or(0, |e| e.ts)
    }

    /// Adds a message above the last sequence; a gap is recorded as deleted
    /// sequences (or skipped when the stream is empty).
    pub fn append(&mut self, m: NewEntry) {
        assert!(
            m.seq > self.last_seq() || (self.entries.is_empty() && m.seq >= self.first),
            "sequence {} not after {}",
            m.seq,
            self.last_seq()
        );
        assert!(m.hdr_len <= m.len, "headers within the message");
        if self.msgs == 0 {
            self.entries.clear();
            self.deleted = 0;
            self.first = m.seq;
        }
        while self.last_seq() + 1 < m.seq {
            self.entries.push_back(Entry::gap());
            self.deleted += 1;
        }
        let entry = self.new_entry(&m);
        self.entries.push_back(entry);
        self.last_ts = m.ts;
    }

    /// The entry for `m`, counted into the totals and its subject.
    fn new_entry(&mut self, m: &NewEntry) -> Entry {
        let subj = self.intern(m.subject, m.seq);
        if let Some(d) = &m.data {
            self.cache(m.seq, d.clone());
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
        if seq < self.first {
            return None;
        }
        let i = (seq - self.first) as usize;
        let size;
        let seg;
        {
            let e = self.entries.get(i)?;
            if e.deleted() {
                return None;
            }
            size = self.size_of(e);
            seg = e.seg;
        }
        let e = &mut self.entries[i];
        e.set_deleted();
        let id = e.subj;
        self.uncache(seq);
        self.msgs -= 1;
        self.bytes -= size;
        self.deleted += 1;
        self.removals += 1;
        if self.track_removals {
            if self.recent_removed.len() == REMOVED_LOG_MAX {
                self.recent_removed.pop_front();
            }
            let subject = self.subj[id as usize]
                .as_ref()
                .expect("live subject")
                .subject
                .clone();
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
            let subj = id;
            let mut last = seq;
            while last > self.first {
                last -= 1;
                let e = &self.entries[(last - self.first) as usize];
                if !e.deleted() && e.subj == subj {
                    break;
                }
            }
            self.subj[id as usize].as_mut().expect("live subject").last = last;
        }
        self.trim_front();
        Some(Removed { seq, seg, size })
    }

    /// Drops deleted entries from the front so `first` is a live message.
    fn trim_front(&mut self) {
        while self.entries.front().is_some_and(|e| e.deleted()) {
            self.entries.pop_front();
            self.first += 1;
            self.deleted -= 1;
        }
        if self.entries.is_empty() {
            self.deleted = 0;
        }
    }

    /// Moves the first sequence up to `floor` (purge / restart); entries below go.
    pub fn raise_floor(&mut self, floor: u64) -> Vec<Removed> {
        let mut out = Vec::new();
        // trim_front keeps `first` on a live message, so each removal advances it.
        while self.msgs > 0 && self.first < floor {
            let seq = self.first;
            out.extend(self.remove(seq));
        }
        if floor > self.last_seq() {
            self.entries.clear();
            self.deleted = 0;
            self.first = floor;
        }
        out
    }

    /// Points live message `seq` at a new location (compaction moved it);
    /// returns the segment it was in.
    pub fn relocate(&mut self, seq: u64, at: Location) -> Option<u64> {
        if seq < self.first {
            return None;
        }
        let e = self.entries.get_mut((seq - self.first) as usize)?;
        if e.deleted() {
            return None;
        }
        let old = e.seg;
        e.seg = at.seg;
        e.set_off(at.off);
        Some(old)
    }

    /// Recovery of a moved record: message `m.seq` at a new location, whether
    /// or not its original record (in a reclaimed segment) was seen. Sequences
    /// between it and the rest of the index read as deleted.
    pub fn insert_moved(&mut self, m: NewEntry) {
        if self.relocate(m.seq, m.at).is_some() {
            return;
        }
        if m.seq > self.last_seq() || (self.msgs == 0 && m.seq >= self.first) {
            self.append(m);
            return;
        }
        // Below the first sequence: extend the front with deleted slots.
        while m.seq < self.first {
            self.entries.push_front(Entry::gap());
            self.first -= 1;
            self.deleted += 1;
        }
        // Fill the deleted slot at `seq` as a live message.
        let i = (m.seq - self.first) as usize;
        assert!(
            self.entries[i].deleted(),
            "a moved record fills a deleted slot"
        );
        self.entries[i] = self.new_entry(&m);
        self.deleted -= 1;
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
        let id = self.intern_slow(subject, seq);
        self.last_subj = id;
        id
    }

    fn intern_slow(&mut self, subject: &[u8], seq: u64) -> u32 {
        match self.subjects.get(subject) {
            Some(&id) => {
                let s = self.subj[id as usize].as_mut().expect("live subject");
                s.count += 1;
                s.first = s.first.min(seq);
                s.last = s.last.max(seq);
                id
            }
            None => {
                let subject = Bytes::copy_from_slice(subject);
                let state = SubjState {
                    subject: subject.clone(),
                    count: 1,
                    first: seq,
                    last: seq,
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
            self.entries.clear();
            self.deleted = 0;
            self.first = seq + 1;
            return;
        }
        while self.last_seq() < seq {
            self.entries.push_back(Entry::gap());
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
        let (mut seq, last) = {
            let s = self.subj[id as usize].as_ref()?;
            (s.first.max(self.first), s.last)
        };
        while seq <= last {
            if let Some(e) = self.entry(seq) {
                if e.subj == id {
                    break;
                }
            }
            seq += 1;
        }
        self.subj[id as usize].as_mut()?.first = seq;
        Some(seq)
    }

    /// Subjects matching `filter`, with their counts, sorted by subject.
    pub fn subjects_matching(&self, filter: &[u8]) -> Vec<(Bytes, u64)> {
        let mut out: Vec<(Bytes, u64)> = self
            .subjects
            .iter()
            .filter(|(s, _)| crate::subject::matches(filter, s))
            .map(|(s, id)| {
                (
                    s.clone(),
                    self.subj[*id as usize].as_ref().map_or(0, |st| st.count),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// First live sequence ≥ `from` whose subject matches `filter` (all if None).
    pub fn next_matching(&self, from: u64, filter: Option<&[u8]>) -> Option<u64> {
        let from = from.max(self.first);
        if let Some(f) = filter {
            if !f.contains(&b'*') && !f.contains(&b'>') {
                let s = self.subject(f)?;
                if s.last < from {
                    return None;
                }
                let start = from.max(s.first);
                let id = *self.subjects.get(f)?;
                return (start..=s.last).find(|&q| self.entry(q).is_some_and(|e| e.subj == id));
            }
        }
        let mut seq = from;
        let last = self.last_seq();
        while seq <= last {
            if let Some(e) = self.entry(seq) {
                if filter.is_none_or(|f| crate::subject::matches(f, self.subject_of(e))) {
                    return Some(seq);
                }
            }
            seq += 1;
        }
        None
    }

    /// Count of live messages ≥ `from` matching `filter`.
    pub fn count_matching(&self, from: u64, filter: Option<&[u8]>) -> u64 {
        let all = filter.is_none_or(|f| f == b">");
        if all && from <= self.first {
            return self.msgs;
        }
        if all && self.deleted == 0 {
            return (self.last_seq() + 1).saturating_sub(from);
        }
        if let Some(f) = filter.filter(|f| !f.contains(&b'*') && !f.contains(&b'>')) {
            match self.subject(f) {
                None => return 0,
                Some(s) if from <= s.first => return s.count,
                Some(s) if from > s.last => return 0,
                Some(_) => {}
            }
        }
        let mut n = 0;
        let mut seq = from.max(self.first);
        while seq <= self.last_seq() {
            if let Some(e) = self.entry(seq) {
                if filter.is_none_or(|f| crate::subject::matches(f, self.subject_of(e))) {
                    n += 1;
                }
            }
            seq += 1;
        }
        n
    }

    /// Count of live messages ≥ `from` matching any of `filters` (all if
    /// empty; the filters do not overlap). Uses the per-subject counts; scans
    /// entries (one id lookup each) only from `from` when a matching subject
    /// has messages on both sides of it.
    pub fn count_filtered(&self, from: u64, filters: &[Bytes]) -> u64 {
        if filters.is_empty() {
            return self.count_matching(from, None);
        }
        let from = from.max(self.first);
        let mut total = 0;
        // Subjects with messages on both sides of `from` are counted by one
        // scan of the entries from `from` to the last of their messages.
        let mut straddle: Vec<bool> = Vec::new();
        let mut scan_to = 0;
        let mut consider = |id: u32| {
            let Some(s) = self.subj[id as usize].as_ref() else {
                return;
            };
            if from <= s.first {
                total += s.count;
            } else if from <= s.last {
                if straddle.is_empty() {
                    straddle = vec![false; self.subj.len()];
                }
                straddle[id as usize] = true;
                scan_to = scan_to.max(s.last);
            }
        };
        for f in filters {
            if !f.contains(&b'*') && !f.contains(&b'>') {
                if let Some(id) = self.subjects.get(f) {
                    consider(*id);
                }
            } else {
                for (subject, id) in &self.subjects {
                    if crate::subject::matches(f, subject) {
                        consider(*id);
                    }
                }
            }
        }
        for seq in from..=scan_to {
            let e = &self.entries[(seq - self.first) as usize];
            if !e.deleted() && straddle[e.subj as usize] {
                total += 1;
            }
        }
        total
    }

    /// First live sequence ≥ `from` matching any of `filters` (all if empty).
    pub fn next_filtered(&self, from: u64, filters: &[Bytes]) -> Option<u64> {
        let literal = |f: &Bytes| !f.contains(&b'*') && !f.contains(&b'>');
        match filters {
            [] => self.next_matching(from, None),
            [f] => self.next_matching(from, Some(f)),
            // Literal subjects are found through their own state.
            many if many.iter().all(literal) => many
                .iter()
                .filter_map(|f| self.next_matching(from, Some(f)))
                .min(),
            // One scan that stops at the first entry any filter takes (one scan
            // per filter would go to the end for a filter with nothing ahead).
            many => {
                let last = self.last_seq();
                let mut seq = from.max(self.first);
                while seq <= last {
                    if let Some(e) = self.entry(seq) {
                        let s = self.subject_of(e);
                        if many.iter().any(|f| crate::subject::matches(f, s)) {
                            return Some(seq);
                        }
                    }
                    seq += 1;
                }
                None
            }
        }
    }

    /// The subject of live message `seq`.
    pub fn subject_at(&self, seq: u64) -> Option<&Bytes> {
        self.entry(seq).map(|e| self.subject_of(e))
    }

    /// The last live sequence of every subject matching one of `filters`, ascending.
    pub fn last_per_subject(&self, filters: &[Bytes]) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .subj
            .iter()
            .flatten()
            .filter(|s| {
                filters.is_empty()
                    || filters
                        .iter()
                        .any(|f| crate::subject::matches(f, &s.subject))
            })
            .map(|s| s.last)
            .collect();
        out.sort_unstable();
        out
    }

    /// First live sequence with a timestamp ≥ `ts`.
    pub fn first_at_or_after(&self, ts: i64) -> Option<u64> {
        // Timestamps rise with sequences: binary search over the entries.
        let n = self.entries.len();
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            // Deleted entries carry no timestamp: use the next live one.
            let mut j = mid;
            while j < n && self.entries[j].deleted() {
                j += 1;
            }
            if j == n || self.entries[j].ts >= ts {
                hi = mid;
            } else {
                lo = j + 1;
            }
        }
        (lo..n)
            .find(|&i| !self.entries[i].deleted())
            .map(|i| self.first + i as u64)
    }

    /// Live sequences (ascending) whose subject matches `filter`.
    pub fn seqs_matching(&self, filter: Option<&[u8]>, below: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let end = below.min(self.last_seq() + 1);
        let mut seq = self.first;
        while seq < end {
            if let Some(e) = self.entry(seq) {
                if filter.is_none_or(|f| crate::subject::matches(f, self.subject_of(e))) {
                    out.push(seq);
                }
            }
            seq += 1;
        }
        out
    }

    /// Interior deleted sequences, ascending.
    pub fn deleted_seqs(&self) -> Vec<u64> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.deleted())
            .map(|(i, _)| self.first + i as u64)
            .collect()
    }

    /// Cached data of `seq`, if any.
    pub fn cached(&self, seq: u64) -> Option<StoredMsg> {
        let e = self.entry(seq)?;
        let data = self.bodies.get(seq)?.clone();
        Some(StoredMsg {
            seq,
            ts: e.ts,
            subject: self.subject_of(e).clone(),
            hdr_len: e.hdr_len() as usize,
            data,
        })
    }

    fn cache(&mut self, seq: u64, data: Bytes) {
        self.bodies.put(seq, data);
    }

    fn uncache(&mut self, seq: u64) {
        self.bodies.remove(seq);
    }

    /// Drops cached bytes of the oldest messages until at most `max` are held
    /// (file streams; a memory stream's bodies are its messages).
    pub fn evict(&mut self, max: u64) {
        if !self.memory {
            self.bodies.evict(max);
        }
    }

    /// Sets the cached bytes of `seq` after reading it from disk.
    pub fn fill_cache(&mut self, seq: u64, data: Bytes) {
        if !self.memory && self.entry(seq).is_some() {
            self.cache(seq, data);
        }
    }

    /// Sequence of the oldest live message, by timestamp order == sequence order.
    pub fn oldest(&self) -> Option<(u64, i64)> {
        if self.msgs == 0 {
            None
        } else {
            self.entry(self.first).map(|e| (self.first, e.ts))
        }
    }
}

#[cfg(test)]
mod tests;
