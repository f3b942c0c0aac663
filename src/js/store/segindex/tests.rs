//! Unit tests of index files and of recovery through them; each unwrap() is
//! an assertion on a fixed input.

use super::*;
use crate::js::store::record::{encode, KIND_DELETE, KIND_MSG};
use crate::js::store::recovery::recover;
use crate::js::store::segment::segment_name;

const HDR: &[u8] = b"NATS/1.0\r\nNats-Msg-Id: m1\r\nX-Other: y\r\nNats-TTL: 5s\r\n\r\n";

/// A segment of three messages (one with headers) and a delete record.
fn segment_bytes() -> Vec<u8> {
    let mut f = Vec::new();
    encode(&mut f, KIND_MSG, 1, 10, b"a.b", 0, b"one");
    let mut data = HDR.to_vec();
    data.extend_from_slice(b"two");
    encode(&mut f, KIND_MSG, 2, 11, b"a.c", HDR.len(), &data);
    encode(&mut f, KIND_MSG, 3, 12, b"a.b", 0, b"three");
    encode(&mut f, KIND_DELETE, 1, 13, b"", 0, b"");
    f
}

/// What recovery hands over, without the bodies.
type Seen = Vec<(u8, u64, i64, Bytes, usize, usize, u64, Option<String>)>;

fn recovered(dir: &Path) -> (Seen, usize) {
    let mut out = Vec::new();
    let mut bodies = 0;
    let (_, read, _) = recover(dir, "T", 1 << 20, |r| {
        let crate::js::store::recovery::Replayed::Record(r) = r else {
            return false;
        };
        bodies += usize::from(r.data.is_some());
        let id = crate::protocol::headers::get(r.hdr, b"Nats-Msg-Id")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let subject = Bytes::copy_from_slice(r.subject);
        out.push((r.kind, r.seq, r.ts, subject, r.hdr_len, r.len, r.off, id));
        false
    })
    .unwrap();
    assert_eq!(read, usize::from(bodies > 0));
    (out, bodies)
}

fn setup(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join(segment_name(1));
    let mut file = bytes.to_vec();
    file.resize(16384, 0); // preallocated: zeros after the records
    std::fs::write(&seg, &file).unwrap();
    (dir, seg)
}

#[test]
fn kept_headers_hold_only_what_recovery_reads() {
    let kept = kept_headers(HDR);
    assert_eq!(kept, b"NATS/1.0\r\nNats-Msg-Id: m1\r\nNats-TTL: 5s\r\n\r\n");
    assert_eq!(
        crate::protocol::headers::get(&kept, b"Nats-TTL"),
        Some(&b"5s"[..])
    );
    assert!(kept_headers(b"NATS/1.0\r\nA: b\r\n\r\n").is_empty());
    assert!(kept_headers(b"").is_empty());
}

#[test]
fn a_start_with_a_good_index_file_reads_no_segment_and_sees_the_same_records() {
    let (dir, seg) = setup(&segment_bytes());
    // First start: no index file; the scan builds one.
    let (first, bodies) = recovered(dir.path());
    assert_eq!(bodies, 4);
    assert_eq!(first.len(), 4);
    assert_eq!(first[1].7.as_deref(), Some("m1"));
    assert!(index_path(dir.path(), 1).exists());
    // Second start: everything from the index file, the same records.
    let (second, bodies) = recovered(dir.path());
    assert_eq!(bodies, 0);
    assert_eq!(second, first);
    let ix = SegIndex::load(dir.path(), 1, &seg).unwrap();
    assert_eq!((ix.len(), ix.markers), (4, true));
}

#[test]
fn damaged_index_files_are_never_trusted_and_are_rebuilt() {
    let (dir, seg) = setup(&segment_bytes());
    let (good, _) = recovered(dir.path());
    let path = index_path(dir.path(), 1);
    let file = std::fs::read(&path).unwrap();
    // Every flipped bit, and every truncation, is caught by the checks.
    for at in 0..file.len() {
        let mut bad = file.clone();
        bad[at] ^= 0x10;
        assert!(SegIndex::parse(1, Bytes::from(bad)).is_err(), "bit at {at}");
    }
    for len in 0..file.len() {
        let torn = Bytes::from(file[..len].to_vec());
        assert!(SegIndex::parse(1, torn).is_err(), "torn at {len}");
    }
    // A damaged file on disk: recovery scans the segment and rewrites it.
    let mut bad = file.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        SegIndex::load(dir.path(), 1, &seg),
        Err(Unusable::Damaged(_))
    ));
    let (again, bodies) = recovered(dir.path());
    assert_eq!((again, bodies), (good, 4));
    assert_eq!(std::fs::read(&path).unwrap(), file);
}

#[test]
fn a_stale_index_file_is_extended_or_rebuilt_from_the_segment() {
    let (dir, seg) = setup(&segment_bytes());
    recovered(dir.path());
    // Records appended after the index file was written (the active
    // segment after a clean shutdown, then a crash): the index file covers
    // a prefix, the rest is scanned from the segment.
    let mut more = segment_bytes();
    encode(&mut more, KIND_MSG, 4, 14, b"a.d", 0, b"four");
    std::fs::write(&seg, {
        let mut f = more.clone();
        f.resize(16384, 0);
        f
    })
    .unwrap();
    let (seen, bodies) = recovered(dir.path());
    assert_eq!(bodies, 1);
    assert_eq!(
        seen.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![1, 2, 3, 1, 4]
    );
    assert_eq!(SegIndex::load(dir.path(), 1, &seg).unwrap().len(), 5);
    // A segment whose last record is no longer the one the index file saw
    // (rewritten under the same name): the index file is not used.
    let mut other = Vec::new();
    encode(&mut other, KIND_MSG, 1, 10, b"a.b", 0, b"one");
    encode(&mut other, KIND_MSG, 2, 20, b"x", 0, b"2");
    encode(&mut other, KIND_MSG, 3, 21, b"x", 0, b"3");
    encode(&mut other, KIND_MSG, 4, 22, b"x", 0, b"4");
    encode(&mut other, KIND_MSG, 5, 23, b"x", 0, b"5");
    other.resize(16384, 0);
    std::fs::write(&seg, &other).unwrap();
    assert_eq!(
        SegIndex::load(dir.path(), 1, &seg).unwrap_err(),
        Unusable::Stale
    );
    let (seen, bodies) = recovered(dir.path());
    assert_eq!(bodies, 5);
    assert_eq!(seen[1].3, Bytes::from_static(b"x"));
}

#[test]
fn an_index_file_without_its_segment_is_removed() {
    let (dir, _) = setup(&segment_bytes());
    recovered(dir.path());
    std::fs::write(index_path(dir.path(), 99), b"x").unwrap();
    std::fs::write(dir.path().join("00000000000000000001.idx.tmp"), b"x").unwrap();
    recovered(dir.path());
    assert!(!index_path(dir.path(), 99).exists());
    assert!(!dir.path().join("00000000000000000001.idx.tmp").exists());
    assert!(index_path(dir.path(), 1).exists());
}

#[test]
fn records_written_on_the_next_block_past_an_index_file_are_found() {
    // The index file covers the first records; a later write (issued while
    // another was in flight) started on the next block, zeros between.
    let first = segment_bytes();
    let (dir, seg) = setup(&first);
    recovered(dir.path());
    let mut file = first.clone();
    file.resize(4096, 0);
    encode(&mut file, KIND_MSG, 4, 14, b"a.d", 0, b"four");
    file.resize(16384, 0);
    std::fs::write(&seg, &file).unwrap();
    let (seen, bodies) = recovered(dir.path());
    assert_eq!(bodies, 1);
    assert_eq!(seen.last().map(|r| (r.1, r.6)), Some((4, 4096)));
}

/// Segment 1 of `n` plain messages (no headers, consecutive sequences from
/// 1, two subjects) and segment `n + 1` with one more: its directory.
fn plain_segments(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Vec::new();
    for seq in 1..=n {
        let subject: &[u8] = if seq % 3 == 0 { b"p.b" } else { b"p.a" };
        encode(&mut f, KIND_MSG, seq, 100 + seq as i64, subject, 0, b"xyz");
    }
    f.resize(f.len().next_multiple_of(4096), 0);
    std::fs::write(dir.path().join(segment_name(1)), &f).unwrap();
    let mut g = Vec::new();
    encode(&mut g, KIND_MSG, n + 1, 100, b"p.a", 0, b"last");
    g.resize(4096, 0);
    std::fs::write(dir.path().join(segment_name(n + 1)), &g).unwrap();
    dir
}

/// What recovery offers: (whole segments offered, records handed over).
fn offers(dir: &Path, take: bool) -> (Vec<u64>, Vec<u64>, usize) {
    let (mut whole, mut recs) = (Vec::new(), Vec::new());
    let (_, read, _) = recover(dir, "T", 1 << 20, |r| match r {
        crate::js::store::recovery::Replayed::Whole { summary, .. } => {
            whole.push(summary.first);
            take
        }
        crate::js::store::recovery::Replayed::Record(r) => {
            recs.push(r.seq);
            false
        }
        _ => false,
    })
    .unwrap();
    (whole, recs, read)
}

#[test]
fn a_sealed_plain_segment_is_offered_whole_from_its_summary() {
    let dir = plain_segments(2500);
    let seg = dir.path().join(segment_name(1));
    // First start: no index files; both segments are read.
    let (whole, recs, read) = offers(dir.path(), true);
    assert_eq!((whole.len(), recs.len(), read), (0, 2501, 2));
    // Then the sealed one is offered whole; the last one's records follow.
    let (whole, recs, read) = offers(dir.path(), true);
    assert_eq!((whole, recs, read), (vec![1], vec![2501], 0));
    // Not taken: its records follow as before.
    let (whole, recs, _) = offers(dir.path(), false);
    assert_eq!((whole.len(), recs.len()), (1, 2501));
    let s = Summary::load(dir.path(), 1, &seg).unwrap().unwrap();
    assert_eq!((s.lo, s.hi, s.msgs, s.chunks.len()), (1, 2500, 2500, 3));
    let size = crate::js::store::index::msg_size(false, 3, 0, 3);
    assert_eq!(s.bytes, 2500 * size);
    let by_name: Vec<_> = s.names.iter().cloned().zip(s.subjects.clone()).collect();
    assert_eq!(
        by_name,
        vec![
            (
                Bytes::from_static(b"p.a"),
                SubjectSum {
                    count: 1667,
                    first: 1,
                    last: 2500
                }
            ),
            (
                Bytes::from_static(b"p.b"),
                SubjectSum {
                    count: 833,
                    first: 3,
                    last: 2499
                }
            ),
        ]
    );
    assert_eq!((s.ts_hi, s.last_ts), (2600, 2600));
    // A segment with anything else (headers, a delete) has none to offer.
    let (mixed, _) = setup(&segment_bytes());
    recovered(mixed.path());
    let seg = mixed.path().join(segment_name(1));
    assert!(Summary::load(mixed.path(), 1, &seg).unwrap().is_none());
}

#[test]
fn a_damaged_summary_is_never_trusted() {
    let dir = plain_segments(1500);
    let seg = dir.path().join(segment_name(1));
    offers(dir.path(), true);
    let path = index_path(dir.path(), 1);
    let file = std::fs::read(&path).unwrap();
    let good = Summary::load(dir.path(), 1, &seg).unwrap().unwrap();
    let ix = SegIndex::parse(1, Bytes::from(file.clone())).unwrap();
    let (records_at, records_len) = ix.records_span();
    let records = records_at as usize..(records_at + records_len) as usize;
    // A flipped bit outside the records is caught when the summary is
    // read; one inside them is left to the chunk checksums (not read here).
    for at in (0..file.len()).step_by(3) {
        let mut bad = file.clone();
        bad[at] ^= 0x04;
        std::fs::write(&path, &bad).unwrap();
        match Summary::load(dir.path(), 1, &seg) {
            Err(_) => assert!(!records.contains(&at), "bit at {at}"),
            Ok(s) => {
                assert!(records.contains(&at), "bit at {at}");
                let s = s.unwrap();
                assert_eq!((s.lo, s.hi, s.bytes), (good.lo, good.hi, good.bytes));
                let crc = |s: &Summary| s.chunks.iter().map(|c| c.crc).collect::<Vec<_>>();
                assert_eq!(crc(&s), crc(&good));
            }
        }
    }
    // A torn file is never read as a summary.
    std::fs::write(&path, &file[..file.len() - 1]).unwrap();
    assert!(Summary::load(dir.path(), 1, &seg).is_err());
    // A damaged one is not offered: the segment is read and the file rebuilt.
    let (whole, recs, read) = offers(dir.path(), true);
    assert_eq!((whole.len(), recs.len(), read), (0, 1501, 1));
    assert_eq!(std::fs::read(&path).unwrap(), file);
}

#[test]
fn a_packed_segment_recovers_as_the_one_written_and_loses_to_it() {
    use crate::js::store::packed::{pack, packed_name};
    let dir = plain_segments(2500);
    let seg = dir.path().join(segment_name(1));
    offers(dir.path(), true);
    let raw = std::fs::read(&seg).unwrap();
    let end = raw.len() - raw.iter().rev().take_while(|b| **b == 0).count();
    let file = futures_lite::future::block_on(pack(1, &raw[..end], || async {})).unwrap();
    let sz = dir.path().join(packed_name(1));
    // Packing cut short after its copy was complete: the segment as written stays.
    std::fs::write(&sz, &file).unwrap();
    let (whole, recs, read) = offers(dir.path(), true);
    assert_eq!((whole, recs.len(), read), (vec![1], 1, 0));
    assert!(!sz.exists() && seg.exists());
    // Packed: offered whole through its index file, or scanned without one.
    std::fs::write(&sz, &file).unwrap();
    std::fs::remove_file(&seg).unwrap();
    assert_eq!(offers(dir.path(), true), (vec![1], vec![2501], 0));
    std::fs::remove_file(index_path(dir.path(), 1)).unwrap();
    let (whole, recs, read) = offers(dir.path(), true);
    assert_eq!((whole.len(), recs, read), (0, (1..=2501).collect(), 1));
    assert!(sz.exists() && !seg.exists());
    assert_eq!(offers(dir.path(), true), (vec![1], vec![2501], 0));
    // An index file found damaged when read is rebuilt at the next start.
    mark_damaged(&index_path(dir.path(), 1), 1);
    let (whole, recs, read) = offers(dir.path(), true);
    assert_eq!((whole.len(), recs.len(), read), (0, 2501, 1));
    assert!(!damaged_path(dir.path(), 1).exists());
    // A packed segment whose table is damaged is set aside; the rest loads.
    let mut bad = file.clone();
    bad[45] ^= 1;
    std::fs::write(&sz, &bad).unwrap();
    let (whole, recs, _) = offers(dir.path(), true);
    assert_eq!((whole.len(), recs), (0, vec![2501]));
    assert!(!sz.exists() && sz.with_extension("sz.damaged").exists());
}
