//! Unit tests of the index; each unwrap() is an assertion on a fixed input.

use super::*;

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
                        let s = ix.subject_of(e);
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
                    let s = ix.subject_of(e);
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
    let en = *ix.entry(1).unwrap();
    assert_eq!(
        (en.hdr_len() as usize, en.flags(), en.deleted()),
        (hdr, 3, false)
    );
    assert_eq!((en.off(), en.len as usize), (3 << 30, hdr + 10));
    ix.set_flags(1, 1);
    let en = *ix.entry(1).unwrap();
    assert_eq!((en.hdr_len() as usize, en.flags()), (hdr, 1));
    ix.remove(1);
    assert!(ix.entry(1).is_none());
}

#[test]
fn an_entry_stays_small() {
    // The per-message cost of a file stream's index; bodies live apart.
    assert_eq!(std::mem::size_of::<Entry>(), 32);
}
