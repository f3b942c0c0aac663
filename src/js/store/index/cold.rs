//! Cold pages: the entries of a sealed segment left on disk, in its index
//! file (`segindex`), once that file is written and checked against them.
//! In memory a cold page keeps its dead sequences (no live record of them in
//! the segment: `deadset`), a mark every `CHUNK` records to decode from, and the few
//! entries that differ from the file: moved by compaction or refilled by
//! recovery (`moved`), and the messages with flags (`flags`). An entry is
//! read by decoding its chunk from the file (one pread), and decoded chunks
//! are kept in the shard's cache (`cache`).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::Bytes;

use super::cache::{ChunkCache, ChunkKey};
use super::deadset::DeadSet;
use super::Entry;
use crate::js::store::record::{KIND_MOVED, KIND_MSG};
use crate::js::store::recovery::Recovered;
use crate::js::store::segindex::{self, Mark, Run, SegIndex, Summary};

/// Message records per chunk: the unit decoded and cached (~40 KiB decoded,
/// ~5 KiB read); a mark (64 bytes) per chunk stays in memory.
pub use crate::js::store::segindex::CHUNK;

/// The first sequence and time of a chunk, where it starts in the file, and
/// the checksum of its bytes (checked on every read).
#[derive(Debug, Clone, Copy)]
struct ChunkMark {
    seq: u64,
    ts: i64,
    mark: Mark,
    crc: u32,
}

#[derive(Debug)]
pub struct Cold {
    /// Unique per index: the chunk cache's key.
    id: u64,
    /// Sequences covered: `lo` moves up as the front is trimmed.
    pub lo: u64,
    pub hi: u64,
    /// `lo` when the page went cold: chunks decode the records from it.
    base: u64,
    pub seg: u64,
    path: PathBuf,
    records_at: u64,
    records_len: u64,
    /// The sequences with no live record in this segment (deleted, never
    /// stored here, or moved). Empty when none is (`live` > 0: every
    /// sequence of the page live there, as in a segment nothing was removed
    /// from) or every one is (`live` 0).
    dead: DeadSet,
    /// Sequences of the page not in `dead`.
    pub live: u64,
    marks: Vec<ChunkMark>,
    /// The largest time of a message record in the page.
    ts_hi: i64,
    /// Live messages whose record is not the one in this segment.
    pub moved: BTreeMap<u64, Entry>,
    /// The non-zero flags of live messages read from the file.
    flags: BTreeMap<u64, u8>,
}

/// Decoded chunk: the page's message records in it, ascending.
#[derive(Debug, Default)]
pub struct Chunk {
    seqs: Vec<u64>,
    entries: Vec<Entry>,
}

impl Chunk {
    /// Where `seq` is (Ok) or would be (Err), as `binary_search` answers;
    /// sequences in a chunk are mostly consecutive, so the direct slot first.
    fn position(&self, seq: u64) -> Result<usize, usize> {
        let guess = seq.wrapping_sub(self.seqs.first().copied().unwrap_or(0)) as usize;
        match self.seqs.get(guess) {
            Some(q) if *q == seq => Ok(guess),
            _ => self.seqs.binary_search(&seq),
        }
    }

    fn get(&self, seq: u64) -> Option<Entry> {
        self.position(seq).ok().map(|i| self.entries[i])
    }

    /// Memory it takes.
    pub fn bytes(&self) -> u64 {
        (self.seqs.capacity() * 8 + self.entries.capacity() * std::mem::size_of::<Entry>()) as u64
            + 64
    }

    /// `n` entries (for tests of the cache).
    #[cfg(test)]
    pub fn filled(n: usize) -> Chunk {
        Chunk {
            seqs: (1..=n as u64).collect(),
            entries: vec![Entry::gap(); n],
        }
    }
}

/// What reading a cold page takes: the shard's chunk cache, the chunk the
/// stream read last, and its subjects' ids (a decoded entry names its
/// subject by id).
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub cache: &'a ChunkCache,
    pub last: &'a RefCell<Option<(ChunkKey, Rc<Chunk>)>>,
    pub subjects: &'a AHashMap<Bytes, u32>,
}

impl Cold {
    /// A cold page for the entries `entries` (sequences from `lo`) of
    /// segment `seg`, if its index file `ix` (at `path`) describes every
    /// live one in that segment exactly: the same offset, lengths and time,
    /// the message records of the page's sequences in ascending order (live
    /// entries in other segments, moved by compaction, are kept as they
    /// are). None otherwise (the page stays in memory). `runs`: the
    /// builder's runs of the file's message records, if it has them.
    pub fn freeze(
        id: u64,
        lo: u64,
        entries: &VecDeque<Entry>,
        seg: u64,
        ix: &SegIndex,
        runs: Option<&[Run]>,
        path: PathBuf,
    ) -> Option<Cold> {
        if entries.is_empty() {
            return None;
        }
        // The builder's runs spare decoding the file; a run that does not
        // match (an entry moved away since, say) falls back to decoding.
        let by_runs = runs.and_then(|runs| {
            let mut f = Freezer::new(lo, entries, seg);
            f.runs(runs, ix)?;
            f.finish(id, ix, path.clone())
        });
        by_runs.or_else(|| {
            let mut f = Freezer::new(lo, entries, seg);
            for r in ix.iter_marked() {
                let (mark, r) = r.ok()?;
                f.record(mark, &r)?;
            }
            f.finish(id, ix, path)
        })
    }

    /// A cold page for a plain segment taken whole from its index file's
    /// summary (every sequence from `s.lo` to `s.hi` a live message there).
    pub fn from_summary(id: u64, seg: u64, s: &Summary, path: PathBuf) -> Cold {
        let marks = s
            .chunks
            .iter()
            .map(|c| ChunkMark {
                seq: c.seq,
                ts: c.ts,
                mark: c.mark,
                crc: c.crc,
            })
            .collect();
        Cold {
            id,
            lo: s.lo,
            hi: s.hi,
            base: s.lo,
            seg,
            path,
            records_at: s.records_at,
            records_len: s.records_len,
            dead: DeadSet::default(), // every sequence live
            live: s.msgs,
            marks,
            ts_hi: s.ts_hi,
            moved: BTreeMap::new(),
            flags: BTreeMap::new(),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// True when the segment holds no live record of `seq`.
    fn is_dead(&self, seq: u64) -> bool {
        if self.dead.is_empty() {
            return self.live == 0;
        }
        self.dead.contains(seq)
    }

    fn set_dead(&mut self, seq: u64) {
        if self.is_dead(seq) {
            return;
        }
        self.dead.insert(seq, self.lo, self.hi);
        self.live -= 1;
        self.flags.remove(&seq);
        if self.live == 0 {
            self.dead = DeadSet::default();
        }
    }

    /// Memory its dead sequences take.
    #[cfg(test)]
    pub fn dead_bytes(&self) -> usize {
        self.dead.bytes()
    }

    /// Whether `seq` (in the page) is a live message.
    pub fn is_live(&self, seq: u64) -> bool {
        !self.is_dead(seq) || self.moved.contains_key(&seq)
    }

    /// Whether the live record of `seq` (in the page) is the one at `off` in
    /// segment `seg`. No file read: a live record in the file is the only
    /// record of its sequence in the segment (ascending, checked at freeze).
    pub fn live_at(&self, seq: u64, seg: u64, off: u64) -> bool {
        if !self.is_dead(seq) {
            return seg == self.seg;
        }
        self.moved
            .get(&seq)
            .is_some_and(|e| e.seg == seg && e.off() == off)
    }

    /// The first live sequence ≥ `from` in the page.
    pub fn next_live(&self, from: u64) -> Option<u64> {
        if self.moved.is_empty() {
            return self.next_live_in_file(from);
        }
        let moved = self.moved.range(from..).next().map(|(s, _)| *s);
        match (moved, self.next_live_in_file(from)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The dead sequences of the page from `lo`, ascending.
    pub fn dead_seqs(&self, out: &mut Vec<u64>) {
        for seq in self.lo..=self.hi {
            if !self.is_live(seq) {
                out.push(seq);
            }
        }
    }

    /// Marks live message `seq` removed.
    pub fn kill(&mut self, seq: u64) {
        if self.moved.remove(&seq).is_none() {
            self.set_dead(seq);
        }
    }

    /// Replaces live message `seq`'s entry (its record moved, its flags changed).
    pub fn put(&mut self, seq: u64, e: Entry) {
        self.set_dead(seq);
        self.moved.insert(seq, e);
    }

    /// Flags of a message read from the file.
    pub fn set_flags(&mut self, seq: u64, flags: u8) {
        if let Some(e) = self.moved.get_mut(&seq) {
            e.set_flags(flags);
        } else if !self.is_dead(seq) {
            if flags == 0 {
                self.flags.remove(&seq);
            } else {
                self.flags.insert(seq, flags);
            }
        }
    }

    /// Index of the chunk holding `seq`.
    fn chunk_of(&self, seq: u64) -> usize {
        // Chunks of consecutive sequences: the direct guess, checked.
        let first = self.marks.first().map_or(0, |m| m.seq);
        let guess = (seq.saturating_sub(first) / CHUNK as u64) as usize;
        let fits = |c: usize| {
            self.marks.get(c).is_some_and(|m| m.seq <= seq)
                && self.marks.get(c + 1).is_none_or(|m| m.seq > seq)
        };
        if fits(guess) {
            return guess;
        }
        self.marks
            .partition_point(|m| m.seq <= seq)
            .saturating_sub(1)
    }

    /// Live entry `seq`, read from the file if need be (None: not live, or
    /// the file could not be read, which is logged).
    pub fn get(&self, seq: u64, rd: Reader) -> Option<Entry> {
        if seq < self.lo || seq > self.hi {
            return None;
        }
        if self.is_dead(seq) {
            return self.moved.get(&seq).copied();
        }
        let mut e = self.chunk(self.chunk_of(seq), rd)?.get(seq)?;
        if !self.flags.is_empty() {
            e.set_flags(self.flags.get(&seq).copied().unwrap_or(0));
        }
        Some(e)
    }

    /// Calls `f` with each live entry from `from` to `to` ascending, until it
    /// returns false (then false).
    pub fn scan(
        &self,
        from: u64,
        to: u64,
        rd: Reader,
        f: &mut dyn FnMut(u64, &Entry) -> bool,
    ) -> bool {
        let (from, to) = (from.max(self.lo), to.min(self.hi));
        if from > to {
            return true;
        }
        let mut moved = self.moved.range(from..=to).peekable();
        let mut seq = from;
        while seq <= to {
            // The next live message read from the file, if any before `to`.
            let next = self.next_live_in_file(seq).filter(|s| *s <= to);
            let file_entry = match next {
                Some(s) => {
                    let c = self.chunk_of(s);
                    let chunk = self.chunk(c, rd);
                    let end = self.marks.get(c + 1).map_or(self.hi, |m| m.seq - 1).min(to);
                    Some((s, end, chunk))
                }
                None => None,
            };
            // Moved entries before the chunk's first live one.
            let stop = file_entry.as_ref().map_or(to, |(s, _, _)| *s - 1);
            while let Some((s, e)) = moved.next_if(|(s, _)| **s <= stop) {
                if !f(*s, e) {
                    return false;
                }
            }
            let Some((s, end, chunk)) = file_entry else {
                return true;
            };
            let Some(chunk) = chunk else {
                seq = end + 1; // unreadable (logged)
                continue;
            };
            let start = chunk.position(s).unwrap_or_else(|i| i);
            for (q, e) in chunk.seqs[start..].iter().zip(&chunk.entries[start..]) {
                if *q > end {
                    break;
                }
                while let Some((ms, me)) = moved.next_if(|(ms, _)| **ms < *q) {
                    if !f(*ms, me) {
                        return false;
                    }
                }
                if self.is_dead(*q) {
                    continue;
                }
                let mut e = *e;
                e.set_flags(self.flags.get(q).copied().unwrap_or(0));
                if !f(*q, &e) {
                    return false;
                }
            }
            seq = end + 1;
        }
        true
    }

    /// The first sequence ≥ `from` with a live record in the segment.
    fn next_live_in_file(&self, from: u64) -> Option<u64> {
        let s = from.max(self.lo);
        if self.dead.is_empty() {
            return (self.live > 0 && s <= self.hi).then_some(s);
        }
        self.dead.next_absent(s, self.hi)
    }

    /// The first sequence of the page with a time ≥ `ts` (live or not), if
    /// any: the marks narrow it to one chunk.
    pub fn first_at_or_after(&self, ts: i64, rd: Reader) -> Option<u64> {
        if self.ts_hi < ts {
            return None;
        }
        let c = self.marks.partition_point(|m| m.ts < ts).saturating_sub(1);
        for c in c..self.marks.len() {
            let chunk = self.chunk(c, rd)?;
            if let Some(i) = chunk.entries.iter().position(|e| e.ts >= ts) {
                return Some(chunk.seqs[i].max(self.lo));
            }
        }
        None
    }

    /// Chunk `c`, from the cache or the file.
    fn chunk(&self, c: usize, rd: Reader) -> Option<Rc<Chunk>> {
        let key = (self.id, c as u32);
        if let Some((k, ch)) = &*rd.last.borrow() {
            if *k == key {
                return Some(ch.clone());
            }
        }
        if let Some(ch) = rd.cache.chunk(key) {
            *rd.last.borrow_mut() = Some((key, ch.clone()));
            return Some(ch);
        }
        let (at, len) = self.chunk_span(c);
        let bytes = segindex::read_span(&self.path, at, len);
        self.keep(c, bytes.and_then(|b| self.decode(c, &b, rd)), rd, true)
    }

    /// Where the chunk holding live `seq` is in the file, if it is not
    /// cached: (chunk, file offset, length), for a caller to read it with
    /// DMA and hand it to `chunk_read`.
    pub fn chunk_to_read(&self, seq: u64, rd: Reader) -> Option<(usize, u64, u64)> {
        if seq < self.lo || seq > self.hi || self.is_dead(seq) {
            return None;
        }
        let c = self.chunk_of(seq);
        let key = (self.id, c as u32);
        let last = rd.last.borrow().as_ref().is_some_and(|(k, _)| *k == key);
        if last || rd.cache.chunk(key).is_some() {
            return None;
        }
        let (at, len) = self.chunk_span(c);
        Some((c, at, len))
    }

    /// Chunk `c`, read by the caller (`bytes`), into the cache (`shared`)
    /// or only as the stream's last.
    pub fn chunk_read(&self, c: usize, bytes: &[u8], rd: Reader, shared: bool) {
        self.keep(c, self.decode(c, bytes, rd), rd, shared);
    }

    /// File offset and length of chunk `c`.
    fn chunk_span(&self, c: usize) -> (u64, u64) {
        let at = u64::from(self.marks[c].mark.at);
        let to = self
            .marks
            .get(c + 1)
            .map_or(self.records_len, |m| u64::from(m.mark.at));
        (self.records_at + at, to - at)
    }

    /// A chunk decoded (or why not) into the cache, or reported.
    fn keep(
        &self,
        c: usize,
        got: std::io::Result<Chunk>,
        rd: Reader,
        shared: bool,
    ) -> Option<Rc<Chunk>> {
        let key = (self.id, c as u32);
        match got {
            Ok(ch) => {
                let ch = Rc::new(ch);
                if shared {
                    rd.cache.keep_chunk(key, ch.clone());
                }
                *rd.last.borrow_mut() = Some((key, ch.clone()));
                Some(ch)
            }
            Err(e) => {
                let damaged = e.kind() == std::io::ErrorKind::InvalidData;
                crate::error!(
                    "JetStream index file {}: reading entries of sequences {}..: {e}{}",
                    self.path.display(),
                    self.marks.get(c).map_or(0, |m| m.seq),
                    if damaged {
                        "; it is rebuilt from its segment at the next start"
                    } else {
                        ""
                    }
                );
                if damaged {
                    segindex::mark_damaged(&self.path, self.seg);
                }
                None
            }
        }
    }

    /// Chunk `c` from its bytes, checked against its checksum.
    fn decode(&self, c: usize, bytes: &[u8], rd: Reader) -> std::io::Result<Chunk> {
        let table = match rd.cache.table(self.id) {
            Some(t) => t,
            None => {
                let t = Rc::new(segindex::read_table(&self.path, self.records_at)?);
                rd.cache.keep_table(self.id, t.clone());
                t
            }
        };
        let from = self.marks[c];
        let damaged = |why| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        if crc32c::crc32c(bytes) != from.crc {
            return Err(damaged("checksum of a chunk"));
        }
        let mut chunk = Chunk {
            seqs: Vec::with_capacity(CHUNK),
            entries: Vec::with_capacity(CHUNK),
        };
        // Runs of one subject (the table entry itself, by address) map to
        // the index's id once, not by a hash lookup per record.
        let mut memo: Option<(*const u8, usize, u32)> = None;
        let whole = segindex::decode_run(self.seg, &table, bytes, from.mark, |r| {
            if !matches!(r.kind, KIND_MSG | KIND_MOVED) || r.seq < self.base || r.seq > self.hi {
                return;
            }
            let here = (r.subject.as_ptr(), r.subject.len());
            let id = match memo {
                Some((at, len, id)) if (at, len) == here => id,
                _ => {
                    let id = rd.subjects.get(r.subject).copied().unwrap_or(u32::MAX);
                    memo = Some((here.0, here.1, id));
                    id
                }
            };
            let mut e = Entry {
                ts: r.ts,
                seg: self.seg,
                off: 0,
                len: r.len as u32,
                subj: id,
                bits: r.hdr_len as u32,
            };
            e.set_off(r.off);
            chunk.seqs.push(r.seq);
            chunk.entries.push(e);
        });
        if !whole {
            return Err(damaged("a damaged record"));
        }
        Ok(chunk)
    }
}

/// A hot page's entries checked against its segment's index file, a record
/// (`record`) or a builder's run of message records (`run`) at a time, into
/// the parts of a cold page (`finish`).
pub(super) struct Freezer<'a> {
    lo: u64,
    hi: u64,
    seg: u64,
    entries: &'a VecDeque<Entry>,
    dead: Vec<u64>,
    marks: Vec<ChunkMark>,
    flags: BTreeMap<u64, u8>,
    /// Records of the page taken one at a time (a mark every `CHUNK`).
    records: usize,
    /// Live entries found as the file has them.
    matched: u64,
    /// The last sequence taken.
    prev: u64,
    ts_hi: i64,
}

impl<'a> Freezer<'a> {
    pub(super) fn new(lo: u64, entries: &'a VecDeque<Entry>, seg: u64) -> Freezer<'a> {
        let n = entries.len() as u64;
        Freezer {
            lo,
            hi: lo + n - 1,
            seg,
            entries,
            dead: vec![u64::MAX; n.div_ceil(64) as usize],
            marks: Vec::new(),
            flags: BTreeMap::new(),
            records: 0,
            matched: 0,
            prev: 0,
            ts_hi: i64::MIN,
        }
    }

    /// Live entry `e` of `seq` is as the file has it.
    fn live(&mut self, seq: u64, e: &Entry) {
        let i = seq - self.lo;
        self.dead[(i / 64) as usize] &= !(1 << (i % 64));
        self.matched += 1;
        if e.flags() != 0 {
            self.flags.insert(seq, e.flags());
        }
    }

    /// Record `r` (decoded from `mark`); None if its entry says otherwise.
    fn record(&mut self, mark: Mark, r: &Recovered) -> Option<()> {
        if !matches!(r.kind, KIND_MSG | KIND_MOVED) || r.seq < self.lo || r.seq > self.hi {
            return Some(());
        }
        if r.seq <= self.prev {
            return None;
        }
        self.prev = r.seq;
        if self.records.is_multiple_of(CHUNK) {
            self.marks.push(ChunkMark {
                seq: r.seq,
                ts: r.ts,
                mark,
                crc: 0,
            });
        }
        self.records += 1;
        self.ts_hi = self.ts_hi.max(r.ts);
        let e = self.entries[(r.seq - self.lo) as usize];
        if e.deleted() || e.seg != self.seg {
            return Some(()); // dead, or moved elsewhere (kept in `moved`)
        }
        if e.off() != r.off
            || e.len as usize != r.len
            || e.hdr_len() as usize != r.hdr_len
            || e.ts != r.ts
        {
            return None;
        }
        self.live(r.seq, &e);
        Some(())
    }

    /// The builder's runs of the file's message records: a run wholly in
    /// the page is checked by its sum, the one the page starts in (its front
    /// trimmed) record by record, and those below the page skipped.
    pub(super) fn runs(&mut self, runs: &[Run], ix: &SegIndex) -> Option<()> {
        for (c, run) in runs.iter().enumerate() {
            let next = runs.get(c + 1);
            let end = next.map_or(u64::MAX, |n| n.seq);
            if end <= self.lo {
                continue;
            }
            if run.seq >= self.lo {
                self.run(run, end)?;
                continue;
            }
            let stop = next.map_or(ix.records().len(), |n| n.mark.at as usize);
            for r in ix.iter_marked_from(run.mark) {
                let (mark, r) = r.ok()?;
                if mark.at as usize >= stop {
                    break;
                }
                self.record(mark, &r)?;
            }
        }
        Some(())
    }

    /// Run `run`, whose sequences end below `end`: its records' sum is that
    /// of the entries it names (the page's entries in this segment, live or
    /// deleted, in its range).
    fn run(&mut self, run: &Run, end: u64) -> Option<()> {
        if run.seq <= self.prev || run.seq > self.hi {
            return None;
        }
        self.marks.push(ChunkMark {
            seq: run.seq,
            ts: run.ts,
            mark: run.mark,
            crc: 0,
        });
        let to = end.min(self.hi + 1);
        let (mut n, mut sum) = (0u32, 0u64);
        for seq in run.seq..to {
            let e = self.entries[(seq - self.lo) as usize];
            if e.seg != self.seg {
                continue; // a gap, or live in another segment
            }
            n += 1;
            let len = u64::from(e.len);
            let hdr = u64::from(e.hdr_len());
            sum = sum.wrapping_add(segindex::entry_sum(seq, e.off(), len, hdr, e.ts));
            if !e.deleted() {
                self.live(seq, &e);
            }
        }
        if n != run.msgs || sum != run.sum {
            return None;
        }
        self.prev = to - 1;
        self.ts_hi = self.ts_hi.max(run.ts_hi);
        Some(())
    }

    /// The cold page, if every live entry of this segment was found.
    fn finish(mut self, id: u64, ix: &SegIndex, path: PathBuf) -> Option<Cold> {
        // Live entries elsewhere stay as they are; every other one was matched.
        let mut moved = BTreeMap::new();
        let mut here = 0u64;
        let live = (self.lo..).zip(self.entries).filter(|(_, e)| !e.deleted());
        for (seq, e) in live {
            if e.seg == self.seg {
                here += 1;
            } else {
                moved.insert(seq, *e);
            }
        }
        if self.matched != here {
            return None;
        }
        let (records_at, records_len) = ix.records_span();
        let records = ix.records();
        for c in 0..self.marks.len() {
            let end = self
                .marks
                .get(c + 1)
                .map_or(records.len(), |m| m.mark.at as usize);
            let at = self.marks[c].mark.at as usize;
            self.marks[c].crc = crc32c::crc32c(&records[at..end]);
        }
        let n = self.hi - self.lo + 1;
        let mut page = Cold {
            id,
            lo: self.lo,
            hi: self.hi,
            base: self.lo,
            seg: self.seg,
            path,
            records_at,
            records_len,
            dead: DeadSet::from_bits(self.lo, n, self.dead),
            live: self.matched,
            marks: self.marks,
            ts_hi: self.ts_hi,
            moved,
            flags: self.flags,
        };
        if page.live == 0 || page.live == n {
            page.dead = DeadSet::default(); // none live, or all
        }
        Some(page)
    }
}
