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

use crate::js::store::record::{self, Decoded};
use crate::js::store::segment::{align_up, Segment};

/// A record found by recovery.
pub struct Recovered {
    pub seg: u64,
    pub off: u64,
    pub kind: u8,
    pub seq: u64,
    pub ts: i64,
    /// Slices of the segment's buffer (one segment is held at a time).
    pub subject: bytes::Bytes,
    pub hdr_len: usize,
    pub data: bytes::Bytes,
}

/// Scans every segment in `dir` in order, handing each valid record to
/// `each`. Returns the segments (without open files).
pub fn recover(
    dir: &Path,
    stream: &str,
    max_record: usize,
    mut each: impl FnMut(Recovered),
) -> std::io::Result<BTreeMap<u64, Segment>> {
    let names = segment_files(dir)?;
    let mut segs = BTreeMap::new();
    let mut scan = Scan {
        stream,
        max_record,
        last_msg_seq: 0,
    };
    let count = names.len();
    for (i, (first, path)) in names.into_iter().enumerate() {
        let buf = bytes::Bytes::from(std::fs::read(&path)?);
        let last = i + 1 == count;
        let (end, markers) = scan.segment(first, &path, &buf, last, &mut each);
        if last && buf[end..].iter().any(|b| *b != 0) {
            // Cut a torn tail so stale bytes can never be read as records later.
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(end as u64)?;
            f.sync_all()?;
        }
        let seg = Segment {
            path,
            file: None,
            size: end as u64,
            live: 0,
            markers,
        };
        segs.insert(first, seg);
    }
    Ok(segs)
}

/// The segment files of a stream directory, by first sequence.
fn segment_files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            names.push((first, path));
        }
    }
    names.sort();
    Ok(names)
}

/// The scan's state across segments.
struct Scan<'a> {
    stream: &'a str,
    max_record: usize,
    /// Message sequences only go up: an older one is a stale record.
    last_msg_seq: u64,
}

impl Scan<'_> {
    /// Scans one segment's bytes; returns where its valid records end, and
    /// whether it holds delete or floor records.
    fn segment(
        &mut self,
        first: u64,
        path: &Path,
        buf: &bytes::Bytes,
        last: bool,
        each: &mut impl FnMut(Recovered),
    ) -> (usize, bool) {
        let stream = self.stream;
        let (mut pos, mut end, mut markers) = (0usize, 0usize, false);
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
                    if r.kind == record::KIND_MSG && r.seq <= self.last_msg_seq {
                        crate::warn!(
                            "JetStream stream '{stream}': segment {} offset {pos}: sequence {} out of order, record ignored",
                            path.display(),
                            r.seq
                        );
                    } else {
                        if r.kind == record::KIND_MSG {
                            self.last_msg_seq = r.seq;
                        } else if r.kind != record::KIND_MOVED {
                            markers = true;
                        }
                        let subj_at = pos + record::HEADER;
                        let data_at = subj_at + r.subject.len();
                        each(Recovered {
                            seg: first,
                            off: pos as u64,
                            kind: r.kind,
                            seq: r.seq,
                            ts: r.ts,
                            subject: buf.slice(subj_at..data_at),
                            hdr_len: r.hdr_len,
                            data: buf.slice(data_at..pos + n),
                        });
                    }
                    pos += n;
                    end = pos;
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
        let segs = super::recover(dir.path(), "T", 1 << 20, |r| recs.push(r)).unwrap();
        let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(recs[1].off, 4096);
        assert_eq!(segs[&1].size, good as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good as u64);
    }
}
