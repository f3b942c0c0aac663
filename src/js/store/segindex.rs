//! Segment index files: `<first seq>.idx` beside `<first seq>.seg`, a compact
//! copy of what recovery needs from each record of the segment (everything
//! but the payload), so start-up replays sealed segments without reading
//! them. An index file is a pure function of its segment's bytes: it is built
//! by the same scan recovery runs (at seal, at clean shutdown, and at start-up
//! for a segment without a good one), so it is never more than a cache and
//! any doubt about it (torn, flipped bit, stale, missing) means the segment is
//! scanned instead and the file rebuilt.
//!
//! ```text
//! header (88 bytes)
//! 0  "JCIX"            4  u32 version (3)
//! 8  u64 segment's first sequence
//! 16 u64 covered: segment bytes the records span (end of the last record)
//! 24 u64 offset of the last record (u64::MAX: none)
//! 32 u64 that record's first 8 bytes (length, crc32c), checked against the segment
//! 40 u64 records        48 u32 subjects        52 u32 flags (1: delete/floor records)
//! 56 u64 body length    64 u32 crc32c of the records
//! 68 u32 crc32c of the subject table then the summary
//! 72 u64 offset of the summary    80 u32 subject table length
//! 84 u32 crc32c of bytes 0..84
//! body: subjects (u16 length, bytes), then records, then the summary
//! (`summary`). Records are each relative to the
//! one before (a message record of a stream with one subject takes ~6 bytes):
//! u8 kind (bits 0-2) and which fields follow (bit 3: the sequence is the
//! previous one + 1; 4: the record starts where the previous one ended;
//! 5: kept headers follow; 6: same subject as before; 7: no header block),
//! then as varints (LEB128): [sequence] [offset] [subject] [header length]
//! header + payload length, timestamp minus the previous one (zigzag),
//! [kept-header length, kept headers: the record's header lines recovery reads
//! (message ids, rollups, sources, TTLs, markers) as a header block of their own]
//! ```
//!
//! Little endian. Memory: the records of one segment while it is built or
//! read, never more.

use std::path::{Path, PathBuf};

use ahash::AHashMap;
use bytes::Bytes;

use crate::js::store::recovery::Recovered;

mod summary;
pub use summary::{entry_sum, ChunkSum, Run, SubjectSum, Summary, CHUNK};

const MAGIC: &[u8; 4] = b"JCIX";
const VERSION: u32 = 3;
const HEADER: usize = 88;
const SEQ_NEXT: u8 = 0x08;
const OFF_NEXT: u8 = 0x10;
const KEPT_FOLLOW: u8 = 0x20;
const SUBJ_SAME: u8 = 0x40;
const NO_HDR: u8 = 0x80;

/// Appends `v` as a varint at `buf[*n..]` (at most 10 bytes; `add` puts at
/// most 7 of them after the tag, so 64 bytes always hold a record's fixed part).
#[inline]
fn put_varint(buf: &mut [u8; 64], n: &mut usize, mut v: u64) {
    while v >= 0x80 {
        buf[*n] = v as u8 | 0x80;
        *n += 1;
        v >>= 7;
    }
    buf[*n] = v as u8;
    *n += 1;
}

fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// What the next record is predicted from.
#[derive(Default, Clone, Copy, Debug)]
pub struct Prev {
    seq: u64,
    end: u64,
    subj: u32,
    ts: i64,
}
const FLAG_MARKERS: u32 = 1;

/// Header lines recovery reads from a stored message; the rest of a header
/// block stays in the segment.
const KEPT: [&[u8]; 6] = [
    b"Nats-Msg-Id",
    b"Nats-Rollup",
    b"Nats-Stream-Source",
    b"Nats-TTL",
    b"Nats-Marker-Reason",
    b"KV-Operation",
];

pub fn index_name(first: u64) -> String {
    format!("{first:020}.idx")
}

pub fn index_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(index_name(first))
}

/// The header lines of `hdr` that recovery reads, as a block of their own
/// (empty when there are none).
pub fn kept_headers(hdr: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if hdr.is_empty() {
        return out;
    }
    let mut lines = hdr.split(|b| *b == b'\n');
    lines.next(); // status line
    for line in lines {
        let name = line.split(|b| *b == b':').next().unwrap_or(b"");
        if line.contains(&b':') && KEPT.contains(&name) {
            if out.is_empty() {
                out.extend_from_slice(b"NATS/1.0\r\n");
            }
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    if !out.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// An index file being built from a segment's records, in file order.
pub struct Builder {
    first: u64,
    /// Subject ids by the subject's hash (checked against `names`; on a
    /// collision the newer subject takes the slot and the older one gets a
    /// second id when it comes again: a repeated table entry, never a wrong
    /// one). Keyed by hash so that a lookup compares bytes once, inline:
    /// a libc memcmp per record cost more than all the rest of `add`.
    ids: AHashMap<u64, u32>,
    hasher: ahash::RandomState,
    /// The subjects by id.
    names: Vec<Bytes>,
    /// The id of the empty subject (delete and floor records), once seen.
    empty: Option<u32>,
    table: Vec<u8>,
    records: Vec<u8>,
    count: u64,
    covered: u64,
    last: Option<(u64, u64)>,
    markers: bool,
    prev: Prev,
    tally: summary::Tally,
}

impl Builder {
    /// The segment it is the index file of.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Room for `n` more bytes of records, exactly.
    pub fn reserve(&mut self, n: usize) {
        self.records.reserve_exact(n);
    }

    /// Segment bytes its records span.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    pub fn new(first: u64) -> Builder {
        Builder {
            first,
            ids: AHashMap::new(),
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
            names: Vec::new(),
            empty: None,
            table: Vec::new(),
            records: Vec::new(),
            count: 0,
            covered: 0,
            last: None,
            markers: false,
            prev: Prev::default(),
            tally: summary::Tally::default(),
        }
    }

    /// The table id of `subject`, added if new.
    fn subject_id(&mut self, subject: &[u8]) -> u32 {
        let same = |id: u32, names: &[Bytes]| {
            names
                .get(id as usize)
                .is_some_and(|n| crate::subject::same(n, subject))
        };
        // A run of one subject skips the hash, and so does the empty subject
        // of delete and floor records.
        if self.count > 0 && same(self.prev.subj, &self.names) {
            return self.prev.subj;
        }
        if subject.is_empty() {
            if let Some(id) = self.empty {
                return id;
            }
        }
        let h = self.hasher.hash_one(subject);
        if let Some(&id) = self.ids.get(&h) {
            if same(id, &self.names) {
                return id;
            }
        }
        let id = self.names.len() as u32;
        self.names.push(Bytes::copy_from_slice(subject));
        self.ids.insert(h, id);
        if subject.is_empty() {
            self.empty = Some(id);
        }
        self.table
            .extend_from_slice(&(subject.len() as u16).to_le_bytes());
        self.table.extend_from_slice(subject);
        id
    }

    /// Adds a record; `head` is its first 8 bytes in the segment, `end` the
    /// offset just past it.
    pub fn add(&mut self, r: &Recovered, head: u64, end: u64) {
        let p = self.prev;
        let subj = self.subject_id(r.subject);
        let kept = kept_headers(r.hdr);
        let mut tag = r.kind & 0x07;
        tag |= if r.seq == p.seq.wrapping_add(1) {
            SEQ_NEXT
        } else {
            0
        };
        tag |= if r.off == p.end { OFF_NEXT } else { 0 };
        tag |= if kept.is_empty() { 0 } else { KEPT_FOLLOW };
        tag |= if subj == p.subj { SUBJ_SAME } else { 0 };
        tag |= if r.hdr_len == 0 { NO_HDR } else { 0 };
        // The fixed part is put together on the stack and copied once.
        let mut buf = [0u8; 64];
        let mut n = 1;
        buf[0] = tag;
        if tag & SEQ_NEXT == 0 {
            put_varint(&mut buf, &mut n, r.seq);
        }
        if tag & OFF_NEXT == 0 {
            put_varint(&mut buf, &mut n, r.off);
        }
        if tag & SUBJ_SAME == 0 {
            put_varint(&mut buf, &mut n, u64::from(subj));
        }
        if tag & NO_HDR == 0 {
            put_varint(&mut buf, &mut n, r.hdr_len as u64);
        }
        put_varint(&mut buf, &mut n, r.len as u64);
        let dt = r.ts.wrapping_sub(p.ts);
        put_varint(&mut buf, &mut n, ((dt << 1) ^ (dt >> 63)) as u64);
        if !kept.is_empty() {
            put_varint(&mut buf, &mut n, kept.len() as u64);
        }
        let mark = Mark {
            at: self.records.len() as u32,
            prev: p,
        };
        self.tally.add(r, subj, !kept.is_empty(), mark);
        self.records.extend_from_slice(&buf[..n]);
        self.records.extend_from_slice(&kept);
        self.prev = Prev {
            seq: r.seq,
            end,
            subj,
            ts: r.ts,
        };
        self.count += 1;
        self.covered = end;
        self.last = Some((r.off, head));
        if !matches!(
            r.kind,
            crate::js::store::record::KIND_MSG | crate::js::store::record::KIND_MOVED
        ) {
            self.markers = true;
        }
    }

    /// Its message records in runs (`Cold::freeze` checks a hot page
    /// against them), taken once the file's bytes are made; None if they
    /// came out of order.
    pub fn take_runs(&mut self) -> Option<Vec<Run>> {
        self.tally.take_runs()
    }

    /// The file's bytes.
    pub fn finish(&self) -> Vec<u8> {
        // The body is the table, the records and the summary: one
        // allocation, one copy.
        let summary = self.tally.encode(self.names.len(), &self.records);
        let body_len = self.table.len() + self.records.len() + summary.len();
        let meta_crc = crc32c::crc32c_append(crc32c::crc32c(&self.table), &summary);
        let (last_off, last_head) = self.last.unwrap_or((u64::MAX, 0));
        let mut out = Vec::with_capacity(HEADER + body_len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        for v in [self.first, self.covered, last_off, last_head, self.count] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        let flags = if self.markers { FLAG_MARKERS } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(body_len as u64).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&self.records).to_le_bytes());
        out.extend_from_slice(&meta_crc.to_le_bytes());
        let summary_at = HEADER + self.table.len() + self.records.len();
        out.extend_from_slice(&(summary_at as u64).to_le_bytes());
        out.extend_from_slice(&(self.table.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&self.table);
        out.extend_from_slice(&self.records);
        out.extend_from_slice(&summary);
        out
    }
}

/// An index file's header, checked.
struct Header {
    first: u64,
    covered: u64,
    last: Option<(u64, u64)>,
    count: u64,
    subjects: u32,
    markers: bool,
    records_crc: u32,
    meta_crc: u32,
    table_len: u32,
    records_at: u64,
    summary_at: u64,
}

impl Header {
    /// The header at the start of a file of `len` bytes, the index file of
    /// segment `first`.
    fn parse(first: u64, b: &[u8], len: u64) -> Result<Header, Unusable> {
        let bad = Unusable::Damaged;
        if b.len() < HEADER {
            return Err(bad("short header"));
        }
        if &b[..4] != MAGIC {
            return Err(bad("not an index file"));
        }
        if u32_at(b, 4) != VERSION {
            return Err(Unusable::Version);
        }
        if u32_at(b, 84) != crc32c::crc32c(&b[..84]) {
            return Err(bad("header checksum"));
        }
        if Some(len) != (HEADER as u64).checked_add(u64_at(b, 56)) {
            return Err(bad("length"));
        }
        if u64_at(b, 8) != first {
            return Err(Unusable::Stale);
        }
        let table_len = u32_at(b, 80);
        let records_at = HEADER as u64 + u64::from(table_len);
        let summary_at = u64_at(b, 72);
        if summary_at < records_at || summary_at > len {
            return Err(bad("layout"));
        }
        Ok(Header {
            first,
            covered: u64_at(b, 16),
            last: match u64_at(b, 24) {
                u64::MAX => None,
                off => Some((off, u64_at(b, 32))),
            },
            count: u64_at(b, 40),
            subjects: u32_at(b, 48),
            markers: u32_at(b, 52) & FLAG_MARKERS != 0,
            records_crc: u32_at(b, 64),
            meta_crc: u32_at(b, 68),
            table_len,
            records_at,
            summary_at,
        })
    }
}

/// The `n` subjects of a subject table.
fn parse_table(b: Bytes, n: u32) -> Result<Vec<Bytes>, Unusable> {
    let bad = Unusable::Damaged("subject table");
    let mut subjects = Vec::with_capacity((n as usize).min(b.len() / 2));
    let mut at = 0usize;
    for _ in 0..n {
        let len = b
            .get(at..at + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
            .filter(|len| at + 2 + len <= b.len())
            .ok_or(bad.clone())?;
        subjects.push(b.slice(at + 2..at + 2 + len));
        at += 2 + len;
    }
    if at != b.len() {
        return Err(bad);
    }
    Ok(subjects)
}

/// Whether segment `seg` still ends where an index file says (its records
/// span `covered` bytes, and the last one, at `last.0`, begins with `last.1`).
fn still_describes(covered: u64, last: Option<(u64, u64)>, seg: &Path) -> Result<(), Unusable> {
    let (off, head) = last.unwrap_or((0, 0));
    let want = if last.is_some() { 8 } else { 0 };
    let (b, len) =
        crate::js::store::packed::read_span(seg, off, want).map_err(|_| Unusable::Stale)?;
    if covered > len || b.len() != want {
        return Err(Unusable::Stale);
    }
    if last.is_some() && u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) != head {
        return Err(Unusable::Stale);
    }
    Ok(())
}

/// A checked index file.
#[derive(Debug)]
pub struct SegIndex {
    pub first: u64,
    pub covered: u64,
    /// The last record's offset and first 8 bytes, for the staleness check.
    pub last: Option<(u64, u64)>,
    pub markers: bool,
    subjects: Vec<Bytes>,
    count: u64,
    records: Bytes,
    /// Offset of the records in the file (header and subject table before).
    records_at: u64,
}

/// A place in an index file's records to start decoding from: the record at
/// `at` (an offset into the records) decodes against `prev`.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub at: u32,
    pub prev: Prev,
}

/// Why an index file was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    Missing,
    Damaged(&'static str),
    /// Written in another format (by another version of jetcore).
    Version,
    /// It does not describe the segment as it is now.
    Stale,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Missing => f.write_str("missing"),
            Unusable::Damaged(why) => write!(f, "damaged ({why})"),
            Unusable::Version => f.write_str("in another version's format"),
            Unusable::Stale => f.write_str("stale (the segment changed after it was written)"),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl SegIndex {
    /// Parses and checks a file's bytes (checksums, every record in bounds).
    pub fn parse(first: u64, file: Bytes) -> Result<SegIndex, Unusable> {
        let ix = SegIndex::parse_built(first, file)?;
        // Every record in bounds, naming a subject in the table.
        let mut n = 0u64;
        for r in ix.iter() {
            r.map_err(Unusable::Damaged)?;
            n += 1;
        }
        if n != ix.count {
            return Err(Unusable::Damaged("record count"));
        }
        Ok(ix)
    }

    /// Parses a file's bytes checking the header, the checksums and the
    /// subject table, not each record (bytes just built here; a reader of
    /// the records still meets a damaged one as an error).
    pub fn parse_built(first: u64, file: Bytes) -> Result<SegIndex, Unusable> {
        let bad = Unusable::Damaged;
        let h = Header::parse(first, &file, file.len() as u64)?;
        let (records_at, summary_at) = (h.records_at as usize, h.summary_at as usize);
        let table = &file[HEADER..records_at];
        if crc32c::crc32c_append(crc32c::crc32c(table), &file[summary_at..]) != h.meta_crc {
            return Err(bad("summary checksum"));
        }
        let records = file.slice(records_at..summary_at);
        if crc32c::crc32c(&records) != h.records_crc {
            return Err(bad("records checksum"));
        }
        let subjects = parse_table(file.slice(HEADER..records_at), h.subjects)?;
        Ok(SegIndex {
            first,
            covered: h.covered,
            last: h.last,
            markers: h.markers,
            subjects,
            count: h.count,
            records,
            records_at: h.records_at,
        })
    }

    /// Reads and checks `dir/<first>.idx` against its segment (`seg`, whose
    /// last record must still be where the index says, with the same length
    /// and checksum).
    pub fn load(dir: &Path, first: u64, seg: &Path) -> Result<SegIndex, Unusable> {
        let raw = match std::fs::read(index_path(dir, first)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(_) => return Err(Unusable::Damaged("unreadable")),
        };
        let ix = SegIndex::parse(first, Bytes::from(raw))?;
        still_describes(ix.covered, ix.last, seg)?;
        Ok(ix)
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records' bytes.
    pub fn records(&self) -> &[u8] {
        &self.records
    }

    /// Offset of the records in the file, and their length.
    pub fn records_span(&self) -> (u64, u64) {
        (self.records_at, self.records.len() as u64)
    }

    /// The records, in file order, as recovery hands them over (no body).
    pub fn iter(&self) -> impl Iterator<Item = Result<Recovered<'_>, &'static str>> + '_ {
        self.iter_marked().map(|r| r.map(|(_, r)| r))
    }

    /// The records with the mark each one decodes from.
    pub fn iter_marked(
        &self,
    ) -> impl Iterator<Item = Result<(Mark, Recovered<'_>), &'static str>> + '_ {
        self.iter_marked_from(Mark {
            at: 0,
            prev: Prev::default(),
        })
    }

    /// The records from `from` on, with the mark each one decodes from.
    pub fn iter_marked_from(
        &self,
        from: Mark,
    ) -> impl Iterator<Item = Result<(Mark, Recovered<'_>), &'static str>> + '_ {
        let mut at = (from.at as usize).min(self.records.len());
        let mut p = from.prev;
        let b = &self.records;
        std::iter::from_fn(move || {
            if at == b.len() {
                return None;
            }
            let mark = Mark {
                at: at as u32,
                prev: p,
            };
            let r = decode(self.first, &self.subjects, b, &mut at, &mut p);
            if r.is_none() {
                at = b.len();
            }
            Some(r.map(|r| (mark, r)).ok_or("record"))
        })
    }
}

/// Decodes the records in `b` (a stretch of a segment's index file's records
/// starting at `from`), handing each to `each`; false if one is damaged.
pub fn decode_run(
    seg: u64,
    subjects: &[Bytes],
    b: &[u8],
    from: Mark,
    mut each: impl FnMut(&Recovered),
) -> bool {
    let mut at = 0usize;
    let mut p = from.prev;
    while at < b.len() {
        match decode(seg, subjects, b, &mut at, &mut p) {
            Some(r) => each(&r),
            None => return false,
        }
    }
    true
}

/// The record at `at` (moved past it), given the one before.
fn decode<'a>(
    seg: u64,
    subjects: &'a [Bytes],
    b: &'a [u8],
    at: &mut usize,
    p: &mut Prev,
) -> Option<Recovered<'a>> {
    let tag = *b.get(*at)?;
    *at += 1;
    let seq = match tag & SEQ_NEXT {
        0 => varint(b, at)?,
        _ => p.seq.wrapping_add(1),
    };
    let off = match tag & OFF_NEXT {
        0 => varint(b, at)?,
        _ => p.end,
    };
    let subj = match tag & SUBJ_SAME {
        0 => u32::try_from(varint(b, at)?).ok()?,
        _ => p.subj,
    };
    let hdr_len = match tag & NO_HDR {
        0 => varint(b, at)? as usize,
        _ => 0,
    };
    let len = varint(b, at)? as usize;
    let z = varint(b, at)?;
    let ts = p.ts.wrapping_add(((z >> 1) as i64) ^ -((z & 1) as i64));
    let hdr = match tag & KEPT_FOLLOW {
        0 => &[][..],
        _ => {
            let n = varint(b, at)? as usize;
            let end = at.checked_add(n).filter(|e| *e <= b.len())?;
            let h = &b[*at..end];
            *at = end;
            h
        }
    };
    let subject = &subjects.get(subj as usize)?[..];
    if hdr_len > len {
        return None;
    }
    *p = Prev {
        seq,
        end: off + crate::js::store::record::encoded_len(subject.len(), len) as u64,
        subj,
        ts,
    };
    Some(Recovered {
        seg,
        off,
        kind: tag & 0x07,
        seq,
        ts,
        subject,
        hdr_len,
        len,
        hdr,
        data: None,
    })
}

/// Reads the subject table of an index file whose records start at
/// `records_at` (blocking: a cold page of the index being loaded).
pub fn read_table(path: &Path, records_at: u64) -> std::io::Result<Vec<Bytes>> {
    let b = Bytes::from(read_span(path, HEADER as u64, records_at - HEADER as u64)?);
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < b.len() {
        let len = b
            .get(at..at + 2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]) as usize)
            .filter(|len| at + 2 + len <= b.len())
            .ok_or_else(|| std::io::Error::other("damaged subject table"))?;
        out.push(b.slice(at + 2..at + 2 + len));
        at += 2 + len;
    }
    Ok(out)
}

/// `len` bytes of the file at `path` from `at`, through the DMA API (a
/// running shard's read).
pub async fn read_span_dma(path: &Path, at: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let io = |e: glommio::GlommioError<()>| std::io::Error::other(e.to_string());
    let file = glommio::io::DmaFile::open(path).await.map_err(io)?;
    let read = file.read_at(at, len as usize).await.map_err(io);
    let _ = file.close().await;
    let bytes = read?;
    if bytes.len() as u64 != len {
        return Err(std::io::Error::other("short read"));
    }
    Ok(bytes.to_vec())
}

/// `len` bytes of the file at `path` from `at` (blocking pread).
pub fn read_span(path: &Path, at: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    std::fs::File::open(path)?.read_exact_at(&mut buf, at)?;
    Ok(buf)
}

/// Writes an index file at start-up (blocking, like the scan it follows):
/// a temporary name first, so a torn write never has the real one.
pub fn write_blocking(dir: &Path, first: u64, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{}.tmp", index_name(first)));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, index_path(dir, first))
}

/// Writes an index file from a running shard, through the DMA API.
pub async fn write(dir: &Path, first: u64, bytes: &[u8]) -> std::io::Result<()> {
    use futures_lite::AsyncWriteExt;
    let io = |e: glommio::GlommioError<()>| std::io::Error::other(e.to_string());
    let tmp = dir.join(format!("{}.tmp", index_name(first)));
    let file = glommio::io::DmaFile::create(&tmp).await.map_err(io)?;
    let mut w = glommio::io::DmaStreamWriterBuilder::new(file)
        .with_buffer_size(128 * 1024)
        .build();
    w.write_all(bytes).await?;
    w.close().await?;
    glommio::io::rename(&tmp, index_path(dir, first))
        .await
        .map_err(io)
}

/// A second name for segment `first`'s index file as it is now (an index
/// file is only ever replaced by a rename, so this one never changes): the
/// cold page of a segment still being written reads it. Removed with the
/// segment, and at every start-up. None if the link cannot be made.
pub fn pin(dir: &Path, first: u64) -> Option<PathBuf> {
    let pinned = pinned_path(dir, first);
    let _ = std::fs::remove_file(&pinned);
    std::fs::hard_link(index_path(dir, first), &pinned)
        .ok()
        .map(|_| pinned)
}

/// Notes that segment `first`'s index file (at `path`, or its pin) failed a
/// check when read: the next start-up rebuilds it from the segment.
pub fn mark_damaged(path: &Path, first: u64) {
    let dir = path.parent().unwrap_or(Path::new("."));
    let _ = std::fs::write(damaged_path(dir, first), b"");
}

pub fn damaged_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{}.bad", index_name(first)))
}

pub fn pinned_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{}.pin", index_name(first)))
}

/// Removes the index file of the segment at `segment` (before the segment
/// goes), and its pin; a missing one is fine.
pub async fn remove(segment: &Path) {
    let _ = glommio::io::remove(segment.with_extension("idx")).await;
    let _ = glommio::io::remove(segment.with_extension("idx.pin")).await;
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests;
