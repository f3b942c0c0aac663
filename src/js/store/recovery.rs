//! Recovery: the scan of a stream's segment files at start-up (blocking,
//! before the shard accepts clients). Every record is verified (crc32c) and
//! handed over in file order; one segment is in memory at a time.
//!
//! Policy: a bad record is dropped and logged and the scan resynchronises on
//! the next valid record that continues the sequence; a bad tail of the last
//! segment (a torn write) is truncated and synced, so stale bytes can never be
//! read as records later. A record is never served unverified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::js::store::packed;
use crate::js::store::record::{self, Decoded};
use crate::js::store::segindex::{self, SegIndex, Summary, Unusable};
use crate::js::store::segment::{align_up, Segment};

/// A record found by recovery (in a segment, or in its index file).
pub struct Recovered<'a> {
    pub seg: u64,
    pub off: u64,
    pub kind: u8,
    pub seq: u64,
    pub ts: i64,
    pub subject: &'a [u8],
    /// Length of the header block, and of header block plus payload.
    pub hdr_len: usize,
    pub len: usize,
    /// The header block; from an index file only the lines recovery reads
    /// (`segindex::kept_headers`).
    pub hdr: &'a [u8],
    /// Header block then payload, when the segment was read (slices of its
    /// buffer: one segment is held at a time).
    pub data: Option<bytes::Bytes>,
}

/// What recovery hands over, in file order.
pub enum Replayed<'a> {
    /// A valid record.
    Record(Recovered<'a>),
    /// A segment is done: its checked index file, at `path` (for the index
    /// to leave the segment's entries there). The last segment's goes on
    /// growing: `path` is then a link to the file as it is now
    /// (`segindex::pinned_path`), which no later write of the index changes.
    Indexed {
        first: u64,
        index: &'a SegIndex,
        path: PathBuf,
    },
    /// A sealed segment of plain messages that can be taken whole from its
    /// index file's summary (at `path`), its records unread. If it is not
    /// taken, its records follow as usual.
    Whole { summary: &'a Summary, path: PathBuf },
}

/// Replays every segment in `dir` in order, handing each valid record to
/// `each`: from the segment's index file where a good one covers it, else
/// from the segment itself (and the index file is written again). A sealed
/// segment of plain messages is offered whole first (`Replayed::Whole`;
/// `each` returns true when it takes it, and its answer to anything else
/// is ignored). Returns
/// the segments (without open files), how many of them were read, and the
/// index file of the last one (to go on with as it grows).
pub fn recover(
    dir: &Path,
    stream: &str,
    max_record: usize,
    mut each: impl FnMut(Replayed) -> bool,
) -> std::io::Result<(BTreeMap<u64, Segment>, usize, Option<segindex::Builder>)> {
    let names = segment_files(dir)?;
    remove_orphan_indexes(dir, &names);
    let mut segs = BTreeMap::new();
    let mut scan = Scan {
        stream,
        max_record,
        last_msg_seq: 0,
        read: 0,
    };
    let count = names.len();
    let mut building = None;
    for (i, (first, path)) in names.into_iter().enumerate() {
        let last = i + 1 == count;
        if let Some(e) = packed::is_packed(&path)
            .then(|| packed::read_span(&path, 0, 0).err())
            .flatten()
        {
            // A packed segment whose header or table is damaged: its
            // messages cannot be found; kept aside for inspection.
            crate::error!(
                "JetStream stream '{stream}': segment {}: {e}; set aside as .damaged, its messages lost",
                path.display()
            );
            let _ = std::fs::rename(&path, path.with_extension("sz.damaged"));
            continue;
        }
        if let Some(s) = scan.summary(dir, first, &path, last)? {
            let whole = Replayed::Whole {
                summary: &s,
                path: segindex::index_path(dir, first),
            };
            if each(whole) {
                scan.last_msg_seq = s.hi;
                let seg = Segment::found(path, s.covered, false);
                segs.insert(first, seg);
                building = None;
                continue;
            }
        }
        let mut records = |r: Recovered| {
            each(Replayed::Record(r));
        };
        let (seg, build, index) = scan.recover_segment(dir, first, path, last, &mut records)?;
        let path = match last {
            false => Some(segindex::index_path(dir, first)),
            true => segindex::pin(dir, first),
        };
        if let (Some(index), Some(path)) = (&index, path) {
            each(Replayed::Indexed { first, index, path });
        }
        segs.insert(first, seg);
        building = build;
    }
    Ok((segs, scan.read, building))
}

/// The index file of segment `first` from its bytes (`buf`, read whole),
/// built by the scan recovery runs.
pub fn index_of(stream: &str, first: u64, path: &Path, buf: &bytes::Bytes) -> Vec<u8> {
    let mut scan = Scan {
        stream,
        max_record: crate::limits::RECORD_BYTES_MAX,
        last_msg_seq: 0,
        read: 0,
    };
    let mut build = segindex::Builder::new(first);
    scan.segment(first, path, buf, 0, false, &mut |r, head, end| {
        build.add(&r, head, end as u64)
    });
    build.finish()
}

/// Index files (and their temporaries) whose segment is gone, and the pins
/// of the last run (`segindex::pin`).
fn remove_orphan_indexes(dir: &Path, segs: &[(u64, PathBuf)]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".idx.pin") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        if let Some(idx) = name.strip_suffix(".bad") {
            // Found damaged when read (`segindex::mark_damaged`): rebuilt below.
            crate::warn!(
                "JetStream: index file {} failed a check when read; rebuilding it from its segment",
                dir.join(idx).display()
            );
            let _ = std::fs::remove_file(dir.join(idx));
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let first = name
            .strip_suffix(".idx")
            .or_else(|| name.strip_suffix(".idx.tmp"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            if name.ends_with(".tmp") || segs.iter().all(|(f, _)| *f != first) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// True when `buf`, read from file offset `from`, holds no record at `from`
/// or at the next block (where a write issued while another was in flight
/// starts).
fn nothing_after(buf: &[u8], from: usize) -> bool {
    let zero_at = |p: usize| buf.get(p..p + 4).is_none_or(|b| b == [0; 4]);
    let next = align_up(from as u64) as usize;
    zero_at(0) && zero_at(next - from)
}
/// The segment files of a stream directory, by first sequence: as written
/// (`.seg`) or packed (`.sz`). Both for one segment: packing was cut short
/// after the packed copy was complete; the one as written stays.
fn segment_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut names: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let first = name
            .strip_suffix(".seg")
            .or_else(|| name.strip_suffix(".sz"))
            .and_then(|n| n.parse::<u64>().ok());
        if name.ends_with(".sz.tmp") {
            let _ = std::fs::remove_file(&path);
        }
        let Some(first) = first else { continue };
        match names.insert(first, path) {
            Some(other) if packed::is_packed(&other) => {
                let _ = std::fs::remove_file(&other);
            }
            Some(other) => {
                let packed = names.insert(first, other).expect("just put");
                let _ = std::fs::remove_file(&packed);
            }
            None => {}
        }
    }
    Ok(names.into_iter().collect())
}

/// The scan's state across segments.
struct Scan<'a> {
    stream: &'a str,
    max_record: usize,
    /// Message sequences only go up: an older one is a stale record.
    last_msg_seq: u64,
    /// Segments read (not replayed from their index files alone).
    read: usize,
}

impl Scan<'_> {
    /// One segment: its index file's records, then whatever the segment holds
    /// past them (all of it without a good index file); the index file is
    /// written again when anything was read from the segment. Returns the
    /// segment, the builder of the last one's index file, and the checked
    /// index file.
    fn recover_segment(
        &mut self,
        dir: &Path,
        first: u64,
        path: PathBuf,
        last: bool,
        each: &mut impl FnMut(Recovered),
    ) -> std::io::Result<(Segment, Option<segindex::Builder>, Option<SegIndex>)> {
        let stream = self.stream;
        let mut build = segindex::Builder::new(first);
        let (mut start, mut markers) = (0usize, false);
        match SegIndex::load(dir, first, &path) {
            Ok(ix) => {
                start = ix.covered as usize;
                markers = ix.markers;
                let past = !self.nothing_past(&path, start)?;
                // With more past it, or for the last segment (whose index goes
                // on as it is written), a new index file holds these records
                // too. Only the last record's head is kept, and ix has it.
                let rebuild = past || last;
                if rebuild {
                    // Exactly what the file had: no doubling slack to keep.
                    build.reserve(ix.records_span().1 as usize);
                }
                for r in ix.iter() {
                    let r = r.expect("checked when loaded");
                    if rebuild {
                        let head = ix.last.filter(|l| l.0 == r.off).map_or(0, |l| l.1);
                        let end = r.off + record::encoded_len(r.subject.len(), r.len) as u64;
                        build.add(&r, head, end);
                    }
                    if self.admit(&r, &path) {
                        each(r);
                    }
                }
                if !past {
                    let seg = Segment::found(path, start as u64, markers);
                    return Ok((seg, last.then_some(build), Some(ix)));
                }
            }
            Err(Unusable::Missing) => {}
            Err(why) => crate::warn!(
                "JetStream stream '{stream}': index file of segment {} {why}; rebuilding it from the segment",
                path.display()
            ),
        }
        let buf = match packed::read_whole(&path) {
            Ok(b) => bytes::Bytes::from(b),
            // A packed segment with a damaged block: what it held is lost.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                crate::error!(
                    "JetStream stream '{stream}': segment {}: {e}; its messages are lost",
                    path.display()
                );
                bytes::Bytes::new()
            }
            Err(e) => return Err(e),
        };
        self.read += 1;
        let (end, more) = self.segment(first, &path, &buf, start, last, &mut |r, head, end| {
            build.add(&r, head, end as u64);
            each(r);
        });
        if last && !packed::is_packed(&path) && buf[end..].iter().any(|b| *b != 0) {
            // Cut a torn tail so stale bytes can never be read as records later.
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(end as u64)?;
            f.sync_all()?;
        }
        let file = build.finish();
        let written = segindex::write_blocking(dir, first, &file);
        if let Err(e) = &written {
            crate::warn!(
                "JetStream stream '{stream}': writing the index file of segment {}: {e}",
                path.display()
            );
        }
        let seg = Segment::found(path, end as u64, markers || more);
        let index = written
            .ok()
            .and_then(|_| SegIndex::parse_built(first, bytes::Bytes::from(file)).ok());
        Ok((seg, last.then_some(build), index))
    }

    /// The summary of a sealed segment of plain messages that its index file
    /// still describes whole and that continues the sequence (None
    /// otherwise: its records are replayed, and a bad file is reported then).
    fn summary(
        &self,
        dir: &Path,
        first: u64,
        path: &Path,
        last: bool,
    ) -> std::io::Result<Option<Summary>> {
        if last {
            return Ok(None); // its index goes on as it is written
        }
        let Ok(Some(s)) = Summary::load(dir, first, path) else {
            return Ok(None);
        };
        if s.lo <= self.last_msg_seq || !self.nothing_past(path, s.covered as usize)? {
            return Ok(None);
        }
        Ok(Some(s))
    }

    /// Whether the segment holds no record past `from` (a few bytes read).
    fn nothing_past(&self, path: &Path, from: usize) -> std::io::Result<bool> {
        let want = align_up(from as u64) as usize - from + 4;
        let (buf, _) = packed::read_span(path, from as u64, want)?;
        Ok(nothing_after(&buf, from))
    }

    /// Message sequences only go up: an older one is a stale record.
    fn admit(&mut self, r: &Recovered, path: &Path) -> bool {
        if r.kind == record::KIND_MSG {
            if r.seq <= self.last_msg_seq {
                crate::warn!(
                    "JetStream stream '{}': segment {} offset {}: sequence {} out of order, record ignored",
                    self.stream,
                    path.display(),
                    r.off,
                    r.seq
                );
                return false;
            }
            self.last_msg_seq = r.seq;
        }
        true
    }

    /// Scans one segment's bytes from `pos`; returns where its valid records
    /// end, and whether it holds delete or floor records. `each` gets every
    /// record with its first 8 bytes and where it ends.
    fn segment(
        &mut self,
        first: u64,
        path: &Path,
        buf: &bytes::Bytes,
        mut pos: usize,
        last: bool,
        each: &mut impl FnMut(Recovered, u64, usize),
    ) -> (usize, bool) {
        let stream = self.stream;
        let (mut end, mut markers) = (pos, false);
        while pos < buf.len() {
            match record::decode(&buf[pos..], self.max_record) {
                Decoded::End => {
                    // A write issued while another was in flight starts at the
                    // next block; the zeros before it are padding.
                    let next = align_up(pos as u64) as usize;
                    if next > pos && next + 4 <= buf.len() && buf[next..next + 4] != [0; 4] {
                        pos = next;
                        continue;
                    }
                    break;
                }
                Decoded::Record(r, n) => {
                    let subj_at = pos + record::HEADER;
                    let data_at = subj_at + r.subject.len();
                    let rec = Recovered {
                        seg: first,
                        off: pos as u64,
                        kind: r.kind,
                        seq: r.seq,
                        ts: r.ts,
                        subject: &buf[subj_at..data_at],
                        hdr_len: r.hdr_len,
                        len: r.data.len(),
                        hdr: &buf[data_at..data_at + r.hdr_len],
                        data: Some(buf.slice(data_at..pos + n)),
                    };
                    if self.admit(&rec, path) {
                        if !matches!(r.kind, record::KIND_MSG | record::KIND_MOVED) {
                            markers = true;
                        }
                        let head = u64::from_le_bytes(buf[pos..pos + 8].try_into().expect("8"));
                        each(rec, head, pos + n);
                    }
                    pos += n;
                    end = pos;
                }
                // A record that ended 1-3 bytes short of a block, then a write
                // that started on the next one: the zeros are too few for a
                // length, so the length read spans into that write.
                Decoded::Bad(_) if gap_before_next_block(buf, pos, self.max_record) => {
                    pos = align_up(pos as u64) as usize;
                }
                Decoded::Bad(why) => match resync(buf, pos + 1, self.max_record, self.last_msg_seq)
                {
                    Some(next) => {
                        crate::error!(
                            "JetStream stream '{stream}': segment {} offset {pos}: {why}; dropped {} damaged bytes",
                            path.display(),
                            next - pos
                        );
                        pos = next;
                    }
                    None => {
                        if buf[pos..].iter().any(|b| *b != 0) {
                            crate::error!(
                                "JetStream stream '{stream}': segment {} offset {pos}: {why}; dropped the last {} bytes{}",
                                path.display(),
                                buf.len() - pos,
                                if last { " (torn write), truncated" } else { "" }
                            );
                        }
                        break;
                    }
                },
            }
        }
        (end, markers)
    }
}

/// Finds the next offset ≥ `from` holding a valid record that continues the
/// sequence, or None.
/// Fewer than 4 bytes, all zero, from `pos` to the end of its block, and a
/// whole record at the start of the next: padding, not damage.
fn gap_before_next_block(buf: &[u8], pos: usize, max_record: usize) -> bool {
    let next = align_up(pos as u64) as usize;
    next - pos < 4
        && next < buf.len()
        && buf[pos..next].iter().all(|&b| b == 0)
        && matches!(
            record::decode(&buf[next..], max_record),
            Decoded::Record(..)
        )
}

fn resync(buf: &[u8], from: usize, max_record: usize, last_seq: u64) -> Option<usize> {
    (from..buf.len().saturating_sub(record::HEADER)).find(|&p| {
        let kind = buf[p + 8];
        if !matches!(
            kind,
            record::KIND_MSG | record::KIND_DELETE | record::KIND_FLOOR | record::KIND_MOVED
        ) || buf[p + 9] != 0
        {
            return false;
        }
        match record::decode(&buf[p..], max_record) {
            Decoded::Record(r, _) => r.kind != record::KIND_MSG || r.seq > last_seq,
            _ => false,
        }
    })
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    #[test]
    fn a_record_ending_short_of_a_block_then_a_write_on_the_next_is_padding() {
        use crate::js::store::record::{encode, encoded_len, KIND_MSG};
        let dir = tempfile::tempdir().unwrap();
        let sized = |file: &mut Vec<u8>, seq, len| {
            encode(
                file,
                KIND_MSG,
                seq,
                10,
                b"a",
                0,
                &vec![7; len - encoded_len(1, 0)],
            );
        };
        let mut file = Vec::new();
        // Ends 2 bytes short of the block (too few zeros for a length); the
        // next write starts on the next block.
        sized(&mut file, 1, 4094);
        file.resize(4096, 0);
        // Ends 1 byte short; the next record follows at once, and its length
        // (512) has a zero low byte: that byte is not padding.
        sized(&mut file, 2, 4095);
        sized(&mut file, 3, 512);
        assert_eq!(file[8191], 0);
        file.resize(12_288, 0);
        sized(&mut file, 4, 100);
        assert!(super::gap_before_next_block(&file, 4094, 1 << 20));
        assert!(!super::gap_before_next_block(&file, 8191, 1 << 20));
        let path = dir.path().join(crate::js::store::segment::segment_name(1));
        std::fs::write(&path, &file).unwrap();
        let mut recs = Vec::new();
        super::recover(dir.path(), "T", 1 << 20, |r| {
            if let super::Replayed::Record(r) = r {
                recs.push((r.seq, r.off))
            }
            false
        })
        .unwrap();
        assert_eq!(recs, vec![(1, 0), (2, 4096), (3, 8191), (4, 12_288)]);
    }

    #[test]
    fn recovery_skips_padding_between_overlapped_writes_and_cuts_a_torn_tail() {
        use crate::js::store::record::{encode, KIND_MSG};
        let dir = tempfile::tempdir().unwrap();
        let mut file = Vec::new();
        encode(&mut file, KIND_MSG, 1, 10, b"a", 0, b"one");
        // The second write of a pipeline starts on the next block.
        file.resize(4096, 0);
        encode(&mut file, KIND_MSG, 2, 11, b"a", 0, b"two");
        let good = file.len();
        encode(&mut file, KIND_MSG, 3, 12, b"a", 0, b"three");
        file.truncate(file.len() - 2); // torn
        file.resize(8192, 0);
        let path = dir.path().join(crate::js::store::segment::segment_name(1));
        std::fs::write(&path, &file).unwrap();
        let mut recs = Vec::new();
        let (segs, read, _) = super::recover(dir.path(), "T", 1 << 20, |r| {
            if let super::Replayed::Record(r) = r {
                recs.push((r.seq, r.off))
            }
            false
        })
        .unwrap();
        assert_eq!(read, 1);
        assert_eq!(recs, vec![(1, 0), (2, 4096)]);
        assert_eq!(segs[&1].size, good as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good as u64);
    }
}
