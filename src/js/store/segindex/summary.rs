//! The summary at the end of an index file: what start-up needs from a
//! sealed segment whose records are all plain messages (no delete, floor or
//! moved record, no header recovery reads, consecutive sequences), so that
//! recovery takes such a segment without decoding a record. It holds the
//! totals, each subject's count and first and last sequence, and a mark per
//! `CHUNK` messages with the checksum of that chunk's bytes (a cold page
//! checks every chunk it reads against it).
//!
//! ```text
//! 0  u32 flags (1: plain)    4  u32 chunks
//! 8  u64 messages            16 u64 their bytes (as stream state counts them)
//! 24 u64 first sequence      32 u64 last sequence (of the messages)
//! 40 i64 largest time        48 i64 the last message's time
//! then per subject of the table (none unless plain): u64 count, u64 first, u64 last
//! then per chunk: u64 sequence, i64 time, u32 offset in the records,
//! u32 crc32c of the chunk's records, then the record before it: u64
//! sequence, u64 end, u32 subject, i64 time
//! ```
//! little endian; its checksum, with the subject table's, is in the header.

use std::path::Path;

use bytes::Bytes;

use super::{Header, Mark, Prev, Unusable};
use crate::js::store::record::KIND_MSG;
use crate::js::store::recovery::Recovered;

/// Messages per chunk: the unit a cold page reads and caches (~5 KiB read).
pub const CHUNK: usize = 1024;
const PLAIN: u32 = 1;
const FIXED: usize = 56;
const PER_SUBJECT: usize = 24;
const PER_CHUNK: usize = 52;

/// One subject's messages in the segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubjectSum {
    pub count: u64,
    pub first: u64,
    pub last: u64,
}

/// Where a chunk starts: its first message's sequence and time, the mark to
/// decode from, and the checksum of its records' bytes.
#[derive(Debug, Clone, Copy)]
pub struct ChunkSum {
    pub seq: u64,
    pub ts: i64,
    pub mark: Mark,
    pub crc: u32,
}

/// Up to `CHUNK` message records as a builder took them, whatever else the
/// segment holds: where the first one is, and a checksum of what a hot index
/// entry says of each (`entry_sum`), so that a hot page going cold is checked
/// against its index file without decoding it (`Cold::freeze`).
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub seq: u64,
    pub ts: i64,
    pub mark: Mark,
    pub msgs: u32,
    pub sum: u64,
    pub ts_hi: i64,
}

/// One message record's part of a run's checksum: its sequence, offset,
/// lengths and time, mixed so that a difference in any shows. A sum of these
/// does not depend on order, so entries are summed in sequence order and
/// records in file order.
#[inline]
pub fn entry_sum(seq: u64, off: u64, len: u64, hdr_len: u64, ts: i64) -> u64 {
    let x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ off.rotate_left(23)
        ^ ((len << 32) | hdr_len).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ (ts as u64).rotate_left(41);
    x ^ (x >> 31)
}

/// The summary as records are added to a builder.
#[derive(Debug, Default)]
pub struct Tally {
    /// A record that is not a plain message was added.
    mixed: bool,
    msgs: u64,
    bytes: u64,
    lo: u64,
    hi: u64,
    ts_hi: i64,
    last_ts: i64,
    subjects: Vec<SubjectSum>,
    /// The message records in runs of `CHUNK`; in a plain segment the
    /// summary's chunks (their checksums are taken when the file is
    /// finished).
    runs: Vec<Run>,
    /// A message record came with a sequence not above the one before: the
    /// runs do not describe the file in order.
    unordered: bool,
    last_msg: u64,
}

impl Tally {
    /// Counts record `r` (subject `subj` in the table), which decodes from
    /// `mark`; `kept`: it has headers recovery reads.
    #[inline]
    pub fn add(&mut self, r: &Recovered, subj: u32, kept: bool, mark: Mark) {
        if r.kind == KIND_MSG {
            self.add_to_run(r, mark);
        }
        // Only a plain segment's summary is read: once it is not, nothing more
        // to count (a key-value stream's segments stop at the first delete).
        if self.mixed {
            return;
        }
        if r.kind != KIND_MSG || kept || (self.msgs > 0 && r.seq != self.hi.wrapping_add(1)) {
            self.mixed = true;
            return;
        }
        if self.msgs == 0 {
            self.lo = r.seq;
            self.ts_hi = r.ts;
        }
        self.msgs += 1;
        self.hi = r.seq;
        self.ts_hi = self.ts_hi.max(r.ts);
        self.last_ts = r.ts;
        let payload = r.len - r.hdr_len;
        self.bytes += crate::js::store::index::msg_size(false, r.subject.len(), r.hdr_len, payload);
        let i = subj as usize;
        if i >= self.subjects.len() {
            self.subjects.resize(i + 1, SubjectSum::default());
        }
        let s = &mut self.subjects[i];
        if s.count == 0 {
            s.first = r.seq;
        }
        s.count += 1;
        s.last = r.seq;
    }

    #[inline]
    fn add_to_run(&mut self, r: &Recovered, mark: Mark) {
        self.unordered |= !self.runs.is_empty() && r.seq <= self.last_msg;
        self.last_msg = r.seq;
        if self.runs.last().is_none_or(|run| run.msgs == CHUNK as u32) {
            self.runs.push(Run {
                seq: r.seq,
                ts: r.ts,
                mark,
                msgs: 0,
                sum: 0,
                ts_hi: r.ts,
            });
        }
        let Some(run) = self.runs.last_mut() else {
            return;
        };
        let sum = entry_sum(r.seq, r.off, r.len as u64, r.hdr_len as u64, r.ts);
        run.msgs += 1;
        run.sum = run.sum.wrapping_add(sum);
        run.ts_hi = run.ts_hi.max(r.ts);
    }

    /// The runs of message records (None if they came out of order).
    pub fn take_runs(&mut self) -> Option<Vec<Run>> {
        let runs = std::mem::take(&mut self.runs);
        (!self.unordered).then_some(runs)
    }

    /// The summary's bytes for `subjects` table entries and these `records`.
    pub fn encode(&self, subjects: usize, records: &[u8]) -> Vec<u8> {
        let plain = !self.mixed && self.msgs > 0;
        let chunks = if plain { &self.runs[..] } else { &[] };
        // Not plain: nothing reads the counts (partial), so none is written.
        let subjects = if plain { subjects } else { 0 };
        let mut out = Vec::with_capacity(FIXED + subjects * PER_SUBJECT + chunks.len() * PER_CHUNK);
        out.extend_from_slice(&(if plain { PLAIN } else { 0 }).to_le_bytes());
        out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
        for v in [self.msgs, self.bytes, self.lo, self.hi] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.ts_hi.to_le_bytes());
        out.extend_from_slice(&self.last_ts.to_le_bytes());
        for i in 0..subjects {
            let s = self.subjects.get(i).copied().unwrap_or_default();
            for v in [s.count, s.first, s.last] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        for (c, run) in chunks.iter().enumerate() {
            let end = chunks
                .get(c + 1)
                .map_or(records.len(), |n| n.mark.at as usize);
            let crc = crc32c::crc32c(&records[run.mark.at as usize..end]);
            out.extend_from_slice(&run.seq.to_le_bytes());
            out.extend_from_slice(&run.ts.to_le_bytes());
            out.extend_from_slice(&run.mark.at.to_le_bytes());
            out.extend_from_slice(&crc.to_le_bytes());
            put_prev(&mut out, &run.mark.prev);
        }
        out
    }
}

fn put_prev(out: &mut Vec<u8>, p: &Prev) {
    out.extend_from_slice(&p.seq.to_le_bytes());
    out.extend_from_slice(&p.end.to_le_bytes());
    out.extend_from_slice(&p.subj.to_le_bytes());
    out.extend_from_slice(&p.ts.to_le_bytes());
}

/// A plain segment's summary, read from its index file without its records.
#[derive(Debug)]
pub struct Summary {
    pub first: u64,
    /// Segment bytes the records span.
    pub covered: u64,
    pub msgs: u64,
    pub bytes: u64,
    pub lo: u64,
    pub hi: u64,
    pub ts_hi: i64,
    pub last_ts: i64,
    /// The subject table, and each entry's messages.
    pub names: Vec<Bytes>,
    pub subjects: Vec<SubjectSum>,
    pub chunks: Vec<ChunkSum>,
    /// Where the records are in the file, and their length.
    pub records_at: u64,
    pub records_len: u64,
}

struct Fields<'a> {
    b: &'a [u8],
    at: usize,
}

impl Fields<'_> {
    fn u32(&mut self) -> u32 {
        self.at += 4;
        super::u32_at(self.b, self.at - 4)
    }
    fn u64(&mut self) -> u64 {
        self.at += 8;
        super::u64_at(self.b, self.at - 8)
    }
    fn i64(&mut self) -> i64 {
        self.u64() as i64
    }
}

impl Summary {
    /// Reads the summary of `dir/<first>.idx` if the segment at `seg` is a
    /// plain one and the file still describes it (None: not plain; the
    /// records are replayed instead). Header, subject table and summary are
    /// checked; the records are not read.
    pub fn load(dir: &Path, first: u64, seg: &Path) -> Result<Option<Summary>, Unusable> {
        use std::os::unix::fs::FileExt;
        let path = super::index_path(dir, first);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(_) => return Err(Unusable::Damaged("unreadable")),
        };
        let len = file
            .metadata()
            .map_err(|_| Unusable::Damaged("unreadable"))?
            .len();
        let mut head = [0u8; super::HEADER];
        file.read_exact_at(&mut head, 0)
            .map_err(|_| Unusable::Damaged("short header"))?;
        let h = Header::parse(first, &head, len)?;
        let read = |at: u64, n: u64| {
            let mut b = vec![0u8; n as usize];
            file.read_exact_at(&mut b, at)
                .map(|_| b)
                .map_err(|_| Unusable::Damaged("length"))
        };
        let table = read(super::HEADER as u64, u64::from(h.table_len))?;
        let sum = read(h.summary_at, len - h.summary_at)?;
        if crc32c::crc32c_append(crc32c::crc32c(&table), &sum) != h.meta_crc {
            return Err(Unusable::Damaged("summary checksum"));
        }
        let names = super::parse_table(Bytes::from(table), h.subjects)?;
        let s = Summary::parse(&h, names, &sum)?;
        super::still_describes(h.covered, h.last, seg)?;
        Ok(s)
    }

    fn parse(h: &Header, names: Vec<Bytes>, b: &[u8]) -> Result<Option<Summary>, Unusable> {
        let bad = Unusable::Damaged("summary");
        if b.len() < FIXED {
            return Err(bad);
        }
        let mut f = Fields { b, at: 0 };
        let flags = f.u32();
        if flags & PLAIN == 0 {
            return Ok(None);
        }
        let nchunks = f.u32() as usize;
        let need = FIXED + names.len() * PER_SUBJECT + nchunks * PER_CHUNK;
        if b.len() != need {
            return Err(bad);
        }
        let (msgs, bytes, lo, hi) = (f.u64(), f.u64(), f.u64(), f.u64());
        let (ts_hi, last_ts) = (f.i64(), f.i64());
        let subjects: Vec<SubjectSum> = (0..names.len())
            .map(|_| SubjectSum {
                count: f.u64(),
                first: f.u64(),
                last: f.u64(),
            })
            .collect();
        let records_len = h.summary_at - h.records_at;
        let mut chunks = Vec::with_capacity(nchunks);
        for _ in 0..nchunks {
            let (seq, ts, at, crc) = (f.u64(), f.i64(), f.u32(), f.u32());
            let prev = Prev {
                seq: f.u64(),
                end: f.u64(),
                subj: f.u32(),
                ts: f.i64(),
            };
            chunks.push(ChunkSum {
                seq,
                ts,
                mark: Mark { at, prev },
                crc,
            });
        }
        // What a cold page relies on: consecutive sequences, every message
        // counted once, chunks in order within the records.
        let counted: u64 = subjects.iter().map(|s| s.count).sum();
        let ordered = chunks.windows(2).all(|w| w[0].mark.at < w[1].mark.at)
            && chunks
                .last()
                .is_none_or(|c| u64::from(c.mark.at) < records_len)
            && chunks
                .iter()
                .enumerate()
                .all(|(i, c)| c.seq == lo + (i * CHUNK) as u64);
        if msgs == 0
            || hi < lo
            || hi - lo + 1 != msgs
            || counted != msgs
            || h.count != msgs
            || !ordered
        {
            return Err(bad);
        }
        if chunks.len() != (msgs as usize).div_ceil(CHUNK) {
            return Err(bad);
        }
        Ok(Some(Summary {
            first: h.first,
            covered: h.covered,
            msgs,
            bytes,
            lo,
            hi,
            ts_hi,
            last_ts,
            names,
            subjects,
            chunks,
            records_at: h.records_at,
            records_len,
        }))
    }
}
