//! Unit tests of the index (and of cold pages against their index files).
// Unit tests only: each unwrap() here is an assertion on a fixed input.

use super::cold::Freezer;
use super::*;
use crate::js::store::segindex::{self, Builder, Run, SegIndex};

fn e(
    seq: u64,
    ts: i64,
    subject: &Bytes,
    hdr_len: usize,
    len: usize,
    seg: u64,
    off: u64,
) -> NewEntry<'_> {
    NewEntry {
        seq,
        ts,
        subject,
        hdr_len,
        len,
        at: Location { seg, off },
        data: None,
        flags: 0,
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn appends_removes_and_subject_state() {
    let mut ix = Index::new(true, 1);
    for (i, s) in ["a", "b", "a", "c", "a"].iter().enumerate() {
        let subject = b(s);
        ix.append(NewEntry {
            data: Some(b("hi")),
            ..e(i as u64 + 1, 100 + i as i64, &subject, 0, 2, 0, 0)
        });
    }
    assert_eq!(
        (ix.first_seq(), ix.last_seq(), ix.msgs, ix.num_subjects()),
        (1, 5, 5, 3)
    );
    assert_eq!(ix.bytes, 5 * (1 + 2 + 16));
    ix.remove(3);
    assert_eq!((ix.msgs, ix.deleted, ix.deleted_seqs()), (4, 1, vec![3]));
    ix.remove(1);
    assert_eq!(ix.first_seq(), 2);
    assert_eq!(ix.first_of(b"a"), Some(5));
    assert_eq!(ix.subject(b"a").unwrap().count, 1);
    assert_eq!(ix.next_matching(1, Some(b"c")), Some(4));
    assert_eq!(ix.next_matching(3, Some(b"*")), Some(4));
    ix.remove(5);
    assert_eq!(ix.subject(b"a").map(|s| s.count), None);
    assert_eq!(ix.subject(b"c").unwrap().last, 4);
    let removed = ix.raise_floor(10);
    assert_eq!(removed.len(), 2);
    assert_eq!(
        (ix.first_seq(), ix.last_seq(), ix.msgs, ix.bytes),
        (10, 9, 0, 0)
    );
    ix.append(e(10, 1, &b("z"), 0, 0, 0, 0));
    assert_eq!((ix.first_seq(), ix.last_seq()), (10, 10));
}

#[test]
fn moved_messages_land_in_their_slot() {
    let mut ix = Index::new(false, 1);
    for seq in [5u64, 6, 7] {
        ix.append(e(seq, 1, &b("a"), 0, 1, 2, seq * 10));
    }
    // Message 3 was moved forward; its old segment is gone.
    ix.insert_moved(e(3, 1, &b("k"), 0, 2, 9, 100));
    assert_eq!(
        (ix.first_seq(), ix.last_seq(), ix.msgs, ix.deleted),
        (3, 7, 4, 1)
    );
    assert_eq!(ix.entry(3).map(|e| (e.seg, e.off())), Some((9, 100)));
    assert_eq!(ix.subject(b"k").unwrap().count, 1);
    // Seen twice (original still on disk): only the location changes.
    ix.insert_moved(e(6, 1, &b("a"), 0, 1, 9, 200));
    assert_eq!((ix.msgs, ix.entry(6).map(|e| e.off())), (4, Some(200)));
    assert_eq!(ix.relocate(5, Location { seg: 9, off: 300 }), Some(2));
    // Past the end appends.
    ix.insert_moved(e(9, 1, &b("a"), 0, 1, 9, 400));
    assert_eq!((ix.last_seq(), ix.deleted), (9, 2));
    // An empty index whose sequence moved on (deletes of reclaimed
    // messages) takes an older moved message below its first.
    let mut ix = Index::new(false, 1);
    ix.skip_through(120);
    ix.insert_moved(e(1, 1, &b("k"), 0, 1, 9, 0));
    assert_eq!((ix.first_seq(), ix.last_seq(), ix.msgs), (1, 120, 1));
}

#[test]
fn filtered_counts_match_a_plain_scan() {
    let mut ix = Index::new(false, 1);
    let names = ["a.x", "a.y", "b.x", "a.z"];
    for seq in 1..=400u64 {
        let s = b(names[(seq * 7 % 4) as usize]);
        ix.append(e(seq, 0, &s, 0, 10, 1, seq));
    }
    for seq in (5..400).step_by(13) {
        ix.remove(seq);
    }
    let cases: Vec<Vec<Bytes>> = vec![
        vec![b("a.x")],
        vec![b("a.*")],
        vec![b("a.x"), b("b.x")],
        vec![b("*.x"), b("a.z")],
        vec![b("nope")],
    ];
    for filters in &cases {
        for from in [1, 2, 50, 199, 200, 399, 400, 401] {
            let expect = (from..=ix.last_seq())
                .filter(|q| {
                    ix.entry(*q).is_some_and(|e| {
                        let s = ix.subject_of(&e);
                        filters.iter().any(|f| crate::subject::matches(f, s))
                    })
                })
                .count() as u64;
            assert_eq!(
                ix.count_filtered(from, filters),
                expect,
                "{filters:?} from {from}"
            );
            let first = (from..=ix.last_seq()).find(|q| {
                ix.entry(*q).is_some_and(|e| {
                    let s = ix.subject_of(&e);
                    filters.iter().any(|f| crate::subject::matches(f, s))
                })
            });
            assert_eq!(
                ix.next_filtered(from, filters),
                first,
                "{filters:?} from {from}"
            );
        }
    }
}

#[test]
fn gaps_are_deleted_sequences() {
    let mut ix = Index::new(false, 1);
    ix.append(e(1, 1, &b("a"), 0, 1, 1, 0));
    ix.append(e(4, 1, &b("a"), 0, 1, 1, 0));
    assert_eq!((ix.msgs, ix.deleted, ix.deleted_seqs()), (2, 2, vec![2, 3]));
    assert_eq!(ix.subject(b"a").unwrap().last, 4);
    ix.remove(4);
    assert_eq!(ix.subject(b"a").unwrap().last, 1);
}

#[test]
fn an_entry_keeps_the_longest_headers_its_flags_and_far_offsets() {
    let mut ix = Index::new(false, 1);
    let subject = b("a");
    let hdr = crate::limits::HEADERS_MAX;
    ix.append(NewEntry {
        flags: 3,
        ..e(1, 5, &subject, hdr, hdr + 10, 7, 3 << 30)
    });
    let en = ix.entry(1).unwrap();
    assert_eq!(
        (en.hdr_len() as usize, en.flags(), en.deleted()),
        (hdr, 3, false)
    );
    assert_eq!((en.off(), en.len as usize), (3 << 30, hdr + 10));
    ix.set_flags(1, 1);
    let en = ix.entry(1).unwrap();
    assert_eq!((en.hdr_len() as usize, en.flags()), (hdr, 1));
    ix.remove(1);
    assert!(ix.entry(1).is_none());
}

#[test]
fn an_entry_stays_small() {
    // The per-message cost of a file stream's index; bodies live apart.
    assert_eq!(std::mem::size_of::<Entry>(), 32);
}

/// Two indexes of the same messages: `cold` leaves segment 1's entries in
/// its index file (under `dir`), `hot` keeps them in memory; `before` is
/// done to both before the freeze, which checks the entries against the
/// builder's runs (`runs`) or by decoding the file.
fn twins(dir: &std::path::Path) -> (Index, Index) {
    twins_with(dir, true, |_| {})
}

fn twins_with(dir: &std::path::Path, runs: bool, before: impl Fn(&mut Index)) -> (Index, Index) {
    let (mut cold, mut hot, ix, built) = twins_unfrozen(dir);
    let runs = if runs {
        Some(built.expect("runs in order"))
    } else {
        None
    };
    before(&mut cold);
    before(&mut hot);
    let path = segindex::index_path(dir, 1);
    assert!(cold.freeze(1, &ix, runs.as_deref(), path.clone()));
    assert!(!cold.freeze(1, &ix, runs.as_deref(), path), "frozen once");
    (cold, hot)
}

/// The twins before the freeze, segment 1's index file (written under
/// `dir`) and its builder's runs.
fn twins_unfrozen(dir: &std::path::Path) -> (Index, Index, SegIndex, Option<Vec<Run>>) {
    use crate::js::store::record::{KIND_DELETE, KIND_MSG};
    use crate::js::store::recovery::Recovered;
    let (mut cold, mut hot) = (Index::new(false, 1), Index::new(false, 1));
    let mut build = Builder::new(1);
    let names = ["a.x", "a.y", "b.x", "a.z", "c"];
    let hdr: &[u8] = b"NATS/1.0\r\nNats-TTL: never\r\n\r\n";
    let mut off = 0u64;
    // Sequence 700 is a gap: never stored.
    for seq in (1..=1500u64).filter(|s| *s != 700) {
        let subject = b(names[(seq * 7 % 5) as usize]);
        let (seg, hdr_len) = if seq <= 1200 { (1, 0) } else { (1201, 0) };
        let hdr_len = if seq % 100 == 0 { hdr.len() } else { hdr_len };
        let flags = if hdr_len > 0 {
            crate::js::stream::ttl::FLAG_NEVER
        } else {
            0
        };
        let len = hdr_len + (seq % 40) as usize;
        let m = NewEntry {
            flags,
            ..e(seq, 1000 + seq as i64 / 3, &subject, hdr_len, len, seg, off)
        };
        cold.append(m.clone());
        hot.append(m);
        if seg == 1 {
            let r = Recovered {
                seg: 1,
                off,
                kind: KIND_MSG,
                seq,
                ts: 1000 + seq as i64 / 3,
                subject: &subject,
                hdr_len,
                len,
                hdr: if hdr_len > 0 { hdr } else { b"" },
                data: None,
            };
            let end = off + crate::js::store::record::encoded_len(subject.len(), len) as u64;
            build.add(&r, 0, end);
            off = end;
            if seq == 900 {
                // A delete record among the messages is passed over.
                let r = Recovered {
                    kind: KIND_DELETE,
                    subject: b"",
                    len: 0,
                    hdr_len: 0,
                    hdr: b"",
                    off,
                    ..r
                };
                let end = off + crate::js::store::record::encoded_len(0, 0) as u64;
                build.add(&r, 0, end);
                off = end;
            }
        } else if seq == 1201 {
            off = 0;
        }
    }
    let file = build.finish();
    segindex::write_blocking(dir, 1, &file).unwrap();
    let ix = SegIndex::parse(1, Bytes::from(file)).unwrap();
    (cold, hot, ix, build.take_runs())
}

fn same(cold: &Index, hot: &Index) {
    let view = |ix: &Index, q: u64| {
        ix.entry(q).map(|e| {
            let s = ix.subject_of(&e).clone();
            (e.ts, e.seg, e.off(), e.len, e.hdr_len(), e.flags(), s)
        })
    };
    assert_eq!(
        (
            cold.first_seq(),
            cold.last_seq(),
            cold.msgs,
            cold.bytes,
            cold.deleted
        ),
        (
            hot.first_seq(),
            hot.last_seq(),
            hot.msgs,
            hot.bytes,
            hot.deleted
        )
    );
    for q in 0..=hot.last_seq() + 1 {
        assert_eq!(view(cold, q), view(hot, q), "entry {q}");
        assert_eq!(cold.is_live(q), hot.is_live(q), "live {q}");
        // A record is the live one only where the entry says (segments 1, 1201, 7).
        let at = hot.entry(q).map(|e| (e.seg, e.off()));
        for seg in [1, 1201, 7] {
            let off = at.filter(|a| a.0 == seg).map_or(0, |a| a.1);
            let want = at == Some((seg, off));
            assert_eq!(cold.live_at(q, seg, off), want, "at {q} in {seg}");
            assert_eq!(hot.live_at(q, seg, off), want, "at {q} in {seg}");
        }
    }
    assert_eq!(cold.deleted_seqs(), hot.deleted_seqs());
    let per_seg = |ix: &Index| {
        let mut m = std::collections::BTreeMap::new();
        ix.live_by_segment()
            .into_iter()
            .for_each(|(s, n)| *m.entry(s).or_insert(0) += n);
        m
    };
    assert_eq!(per_seg(cold), per_seg(hot));
    assert_eq!(cold.first_ts(), hot.first_ts());
    let filters: Vec<Vec<Bytes>> = vec![
        vec![],
        vec![b("a.x")],
        vec![b("a.*")],
        vec![b("*.x"), b("c")],
    ];
    for f in &filters {
        for from in [
            0, 1, 2, 333, 699, 700, 701, 1199, 1200, 1201, 1499, 1500, 1501,
        ] {
            assert_eq!(
                cold.count_filtered(from, f),
                hot.count_filtered(from, f),
                "{f:?} {from}"
            );
            assert_eq!(
                cold.next_filtered(from, f),
                hot.next_filtered(from, f),
                "{f:?} {from}"
            );
        }
        let one = f.first().map(|f| &f[..]);
        assert_eq!(cold.seqs_matching(one, 1300), hot.seqs_matching(one, 1300));
        assert_eq!(cold.count_matching(40, one), hot.count_matching(40, one));
    }
    for ts in [0, 1000, 1100, 1233, 1400, 1500, 9999] {
        assert_eq!(
            cold.first_at_or_after(ts),
            hot.first_at_or_after(ts),
            "ts {ts}"
        );
    }
}

#[test]
fn a_cold_page_answers_as_the_entries_in_memory_did() {
    // Checked against the builder's runs or by decoding the file; whole, or
    // trimmed at the front into the second run (1025 messages in the first).
    for (runs, trim) in [(true, 0), (false, 0), (true, 1030), (false, 1030)] {
        let dir = tempfile::tempdir().unwrap();
        let (cold, hot) = twins_with(dir.path(), runs, |ix| {
            for seq in 1..=trim {
                ix.remove(seq);
            }
        });
        answers_alike(cold, hot);
    }
}

fn answers_alike(mut cold: Index, mut hot: Index) {
    same(&cold, &hot);
    // Deletes at the front (the cold page is trimmed), inside, and of a
    // subject's last message; flags changed; a message moved by compaction.
    let mut x = 7u64;
    for seq in (1..=5).chain((20..1300).step_by(11)) {
        assert_eq!(
            cold.remove(seq).map(|r| r.size),
            hot.remove(seq).map(|r| r.size)
        );
        x = x.wrapping_mul(6364136223846793005).wrapping_add(seq);
        let q = x % 1500;
        assert_eq!(cold.remove(q).map(|r| r.seg), hot.remove(q).map(|r| r.seg));
    }
    for seq in [400, 401, 1250] {
        cold.set_flags(seq, 2);
        hot.set_flags(seq, 2);
    }
    let at = Location {
        seg: 1201,
        off: 1 << 20,
    };
    assert_eq!(cold.relocate(402, at), hot.relocate(402, at));
    assert_eq!(cold.first_of(b"a.x"), hot.first_of(b"a.x"));
    same(&cold, &hot);
    // A moved record filling a deleted slot (recovery).
    let s = b("k");
    cold.insert_moved(e(30, 5, &s, 0, 3, 1201, 77));
    hot.insert_moved(e(30, 5, &s, 0, 3, 1201, 77));
    same(&cold, &hot);
    // Emptying the page; then a purge to past the end.
    for seq in 1..=1200 {
        assert_eq!(cold.remove(seq).is_some(), hot.remove(seq).is_some());
    }
    same(&cold, &hot);
    assert_eq!(cold.raise_floor(2000).len(), hot.raise_floor(2000).len());
    same(&cold, &hot);
}

#[test]
fn contiguous_deletes_in_a_cold_page_cost_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cold, mut hot) = twins(dir.path());
    let dead_bytes = |ix: &Index| match &ix.pages.pages[0] {
        Page::Cold(c) => c.dead_bytes(),
        Page::Hot(_) => panic!("a cold page"),
    };
    // A purge by subject of a block, another block, then the gap between.
    for seq in (100..=700).chain(900..=1100).chain(701..=899) {
        assert_eq!(
            cold.remove(seq).is_some(),
            hot.remove(seq).is_some(),
            "{seq}"
        );
    }
    assert!(dead_bytes(&cold) <= 64, "{}", dead_bytes(&cold));
    same(&cold, &hot);
    // Scattered deletes turn the ranges into one bit a sequence.
    for seq in (2..99).step_by(2) {
        assert_eq!(
            cold.remove(seq).is_some(),
            hot.remove(seq).is_some(),
            "{seq}"
        );
    }
    assert_eq!(dead_bytes(&cold), 1200usize.div_ceil(64) * 8);
    same(&cold, &hot);
}

#[test]
fn a_page_that_differs_from_its_file_stays_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut hot) = twins(dir.path());
    let raw = std::fs::read(segindex::index_path(dir.path(), 1)).unwrap();
    let ix = SegIndex::parse(1, Bytes::from(raw)).unwrap();
    let path = segindex::index_path(dir.path(), 1);
    // A record of the segment that is not where the file says.
    hot.relocate(10, Location { seg: 1, off: 5 });
    assert!(!hot.freeze(1, &ix, None, path.clone()));
    // No page of that segment.
    assert!(!hot.freeze(77, &ix, None, path));
}

#[test]
fn entries_moved_before_the_freeze_stay_as_they_are() {
    // With runs, the moved entries make their runs differ: the file is
    // decoded instead.
    for runs in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (cold, hot) = twins_with(dir.path(), runs, |ix| {
            ix.relocate(10, Location { seg: 1201, off: 99 });
            ix.relocate(
                600,
                Location {
                    seg: 1201,
                    off: 199,
                },
            );
        });
        same(&cold, &hot);
        assert_eq!(cold.entry(600).map(|e| (e.seg, e.off())), Some((1201, 199)));
    }
}

#[test]
fn runs_check_a_page_without_its_file_and_catch_any_difference() {
    let dir = tempfile::tempdir().unwrap();
    let (_, hot, ix, runs) = twins_unfrozen(dir.path());
    let runs = runs.expect("runs in order");
    assert_eq!(runs.len(), 2, "1025 + 175 messages in segment 1");
    let Page::Hot(h) = &hot.pages.pages[0] else {
        panic!("a hot page")
    };
    let check = |runs: &[Run], ix: &SegIndex| {
        let mut f = Freezer::new(h.lo, &h.entries, 1);
        f.runs(runs, ix).is_some()
    };
    assert!(check(&runs, &ix));
    // Whole runs are not decoded: an index file with no record passes.
    let empty = SegIndex::parse(1, Bytes::from(Builder::new(1).finish())).unwrap();
    assert!(check(&runs, &empty));
    // A run's sum or count that is not the entries' fails.
    for k in 0..2 {
        let mut bad = runs.clone();
        bad[k].sum ^= 1 << 40;
        assert!(!check(&bad, &ix), "sum of run {k}");
        let mut bad = runs.clone();
        bad[k].msgs -= 1;
        assert!(!check(&bad, &ix), "count of run {k}");
    }
    // So does one entry's offset, length or time.
    let mut entries = h.entries.clone();
    entries[5].len += 1;
    let mut f = Freezer::new(h.lo, &entries, 1);
    assert!(f.runs(&runs, &ix).is_none());
}

#[test]
fn an_unreadable_cold_page_is_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cold, _) = twins(dir.path());
    std::fs::remove_file(segindex::index_path(dir.path(), 1)).unwrap();
    // The message is unreadable (logged), the rest answers.
    assert!(cold.entry(10).is_none());
    assert!(cold.entry(1300).is_some());
    assert_eq!(cold.msgs, 1499);
    // A purge through it ends (the messages are dropped, counted).
    cold.raise_floor(1250);
    assert_eq!((cold.first_seq(), cold.msgs), (1250, 251));
}

/// A plain segment taken whole from its index file's summary answers as the
/// same segment appended message by message and frozen does.
#[test]
fn a_segment_taken_from_its_summary_answers_as_one_replayed() {
    use crate::js::store::record::{encoded_len, KIND_MSG};
    use crate::js::store::recovery::Recovered;
    use crate::js::store::segindex::Summary;
    let dir = tempfile::tempdir().unwrap();
    let (mut whole, mut replayed) = (Index::new(false, 1), Index::new(false, 1));
    let mut build = Builder::new(1);
    let names = ["a.x", "a.y", "b.x", "c"];
    let mut off = 0u64;
    for seq in 1..=2500u64 {
        let subject = b(names[(seq * 7 % 4) as usize]);
        let (ts, len) = (1000 + seq as i64 / 3, (seq % 40) as usize);
        replayed.append(e(seq, ts, &subject, 0, len, 1, off));
        let r = Recovered {
            seg: 1,
            off,
            kind: KIND_MSG,
            seq,
            ts,
            subject: &subject,
            hdr_len: 0,
            len,
            hdr: b"",
            data: None,
        };
        let end = off + encoded_len(subject.len(), len) as u64;
        build.add(&r, 0, end);
        off = end;
    }
    let file = build.finish();
    segindex::write_blocking(dir.path(), 1, &file).unwrap();
    // The segment the file describes (its last record's head as the builder had it).
    let seg = dir.path().join("1.seg");
    std::fs::write(&seg, vec![0u8; off as usize]).unwrap();
    let s = Summary::load(dir.path(), 1, &seg).unwrap().unwrap();
    let path = segindex::index_path(dir.path(), 1);
    assert!(whole.append_summary(1, &s, path.clone()));
    assert!(
        !whole.append_summary(1, &s, path.clone()),
        "not after the last"
    );
    let ix = SegIndex::parse(1, Bytes::from(file)).unwrap();
    assert!(replayed.freeze(1, &ix, None, path));
    same(&whole, &replayed);
    let state = |ix: &Index, n: &str| ix.subject(n.as_bytes()).map(|s| (s.count, s.first, s.last));
    for n in names {
        assert_eq!(state(&whole, n), state(&replayed, n), "{n}");
    }
    assert_eq!(whole.last_ts, replayed.last_ts);
    // What follows, and removals through the page, alike.
    for ix in [&mut whole, &mut replayed] {
        ix.append(e(2501, 2000, &b("a.x"), 0, 3, 2501, 0));
        for seq in [5, 1030, 2500, 1] {
            assert!(ix.remove(seq).is_some());
        }
    }
    same(&whole, &replayed);
    for n in names {
        assert_eq!(state(&whole, n), state(&replayed, n), "{n}");
    }
    // A flipped bit in the records on disk fails its chunk's checksum: the
    // entries of that chunk read as unreadable (logged), the rest as before.
    let mut file = std::fs::read(segindex::index_path(dir.path(), 1)).unwrap();
    let (at, _) = ix.records_span();
    file[at as usize + 100] ^= 0x01;
    std::fs::write(segindex::index_path(dir.path(), 1), &file).unwrap();
    whole.forget(&whole.pages.cold_ids());
    assert!(whole.is_live(10) && whole.entry(10).is_none());
    // Noted, so that the next start rebuilds the file from its segment.
    assert!(segindex::damaged_path(dir.path(), 1).exists());
    let at = |ix: &Index| ix.entry(2000).map(|e| (e.seg, e.off(), e.len, e.ts));
    assert_eq!(at(&whole), at(&replayed));
    assert!(at(&whole).is_some());
}

#[test]
fn a_cached_message_is_served_without_its_entry_and_never_once_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cold, mut hot) = twins(dir.path());
    let read = |seq: u64| StoredMsg {
        seq,
        ts: 1000 + seq as i64 / 3,
        subject: b(["a.x", "a.y", "b.x", "a.z", "c"][(seq * 7 % 5) as usize]),
        hdr_len: 0,
        data: Bytes::from(vec![b'x'; (seq % 40) as usize]),
    };
    // As a read from disk leaves it; then the index file goes, so no entry
    // of the cold page can be read, and the body is still served.
    cold.fill_cache(&read(10));
    std::fs::remove_file(segindex::index_path(dir.path(), 1)).unwrap();
    assert!(cold.entry(10).is_none());
    assert_eq!(cold.cached(10), Some(read(10)));
    // A removed message's body goes with it; a dead one is never kept.
    hot.fill_cache(&read(11));
    assert_eq!(hot.cached(11), Some(read(11)));
    assert!(hot.remove(11).is_some());
    assert_eq!(hot.cached(11), None);
    hot.fill_cache(&read(11));
    assert_eq!(hot.cached(11), None);
}
