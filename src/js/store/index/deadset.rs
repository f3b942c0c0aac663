//! The sequences of a cold page with no live record in its segment: as
//! ranges while they are few (a purge, a run of deletes or of sequences
//! never stored there costs 16 bytes, however long), as one bit a sequence
//! of the page once the ranges would take more than the bits.

/// See the module doc. Sequences below the page's first (its front trimmed)
/// may be either; nobody asks about them.
/// Ranges kept at most (16 KiB), however large the page.
const RANGES_MAX: usize = 1024;

#[derive(Debug)]
pub enum DeadSet {
    /// Ascending, disjoint, never adjacent, inclusive.
    Ranges(Vec<(u64, u64)>),
    /// Bit `i` of `words`: sequence `base + i`.
    Bits { base: u64, words: Vec<u64> },
}

impl Default for DeadSet {
    fn default() -> Self {
        DeadSet::Ranges(Vec::new())
    }
}

impl DeadSet {
    /// The set of `base..` whose bits are set in `words` (`n` sequences),
    /// as ranges if they take less memory.
    pub fn from_bits(base: u64, n: u64, words: Vec<u64>) -> DeadSet {
        let bit = |i: u64| words[(i / 64) as usize] & (1 << (i % 64)) != 0;
        // Ranges start where a set bit follows a clear one.
        let mut starts = 0usize;
        let mut carry = 0u64;
        for w in &words {
            starts += (w & !((w << 1) | carry)).count_ones() as usize;
            carry = w >> 63;
        }
        if starts * 16 > words.len() * 8 || starts > RANGES_MAX {
            return DeadSet::Bits { base, words };
        }
        let mut ranges = Vec::with_capacity(starts);
        let mut i = 0;
        while i < n {
            if !bit(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < n && bit(i) {
                i += 1;
            }
            ranges.push((base + start, base + i - 1));
        }
        DeadSet::Ranges(ranges)
    }

    /// No sequence in it (bits always hold one: the set only grows, and
    /// an empty one is ranges).
    pub fn is_empty(&self) -> bool {
        matches!(self, DeadSet::Ranges(r) if r.is_empty())
    }

    pub fn contains(&self, seq: u64) -> bool {
        match self {
            DeadSet::Ranges(r) => {
                let p = r.partition_point(|(_, end)| *end < seq);
                r.get(p).is_some_and(|(start, _)| *start <= seq)
            }
            DeadSet::Bits { base, words } => {
                let Some(i) = seq.checked_sub(*base) else {
                    return false;
                };
                words
                    .get((i / 64) as usize)
                    .is_some_and(|w| w & (1 << (i % 64)) != 0)
            }
        }
    }

    /// Adds `seq` of the page `lo..=hi` (not in the set yet); ranges turn
    /// into bits when those would take less memory.
    pub fn insert(&mut self, seq: u64, lo: u64, hi: u64) {
        match self {
            DeadSet::Ranges(r) => {
                let p = r.partition_point(|(_, end)| *end < seq);
                let joins_left = p > 0 && r[p - 1].1 + 1 == seq;
                let joins_right = r.get(p).is_some_and(|(start, _)| *start == seq + 1);
                match (joins_left, joins_right) {
                    (true, true) => {
                        r[p - 1].1 = r[p].1;
                        r.remove(p);
                    }
                    (true, false) => r[p - 1].1 = seq,
                    (false, true) => r[p].0 = seq,
                    (false, false) => r.insert(p, (seq, seq)),
                }
                // Also past RANGES_MAX: an insert shifts the ranges after it.
                let bits_bytes = (hi - lo + 1).div_ceil(64) * 8;
                if r.len() as u64 * 16 > bits_bytes || r.len() > RANGES_MAX {
                    *self = self.to_bits(lo, hi);
                }
            }
            DeadSet::Bits { base, words } => {
                let i = seq - *base;
                words[(i / 64) as usize] |= 1 << (i % 64);
            }
        }
    }

    fn to_bits(&self, lo: u64, hi: u64) -> DeadSet {
        let mut words = vec![0u64; (hi - lo + 1).div_ceil(64) as usize];
        if let DeadSet::Ranges(r) = self {
            for (start, end) in r {
                for seq in (*start).max(lo)..=(*end).min(hi) {
                    let i = seq - lo;
                    words[(i / 64) as usize] |= 1 << (i % 64);
                }
            }
        }
        DeadSet::Bits { base: lo, words }
    }

    /// The first sequence of `from..=to` not in the set.
    pub fn next_absent(&self, from: u64, to: u64) -> Option<u64> {
        let s = match self {
            DeadSet::Ranges(r) => {
                let p = r.partition_point(|(_, end)| *end < from);
                match r.get(p) {
                    Some((start, end)) if *start <= from => end + 1,
                    _ => from,
                }
            }
            DeadSet::Bits { base, words } => {
                let mut i = from - base;
                let end = to - base;
                loop {
                    if i > end {
                        return None;
                    }
                    let w = words[(i / 64) as usize] >> (i % 64);
                    if w == u64::MAX >> (i % 64) {
                        i = (i / 64 + 1) * 64;
                        continue;
                    }
                    break base + i + u64::from((!w).trailing_zeros());
                }
            }
        };
        (s <= to).then_some(s)
    }

    /// Memory it takes (what it holds on the heap).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        match self {
            DeadSet::Ranges(r) => r.capacity() * 16,
            DeadSet::Bits { words, .. } => words.capacity() * 8,
        }
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::{DeadSet, RANGES_MAX};
    use std::collections::BTreeSet;

    fn check(set: &DeadSet, model: &BTreeSet<u64>, lo: u64, hi: u64) {
        for seq in lo..=hi {
            assert_eq!(set.contains(seq), model.contains(&seq), "{seq}");
        }
        for from in lo..=hi {
            let want = (from..=hi).find(|s| !model.contains(s));
            assert_eq!(set.next_absent(from, hi), want, "from {from}");
        }
    }

    #[test]
    fn ranges_answer_like_a_set_and_stay_small() {
        let (lo, hi) = (1000, 1000 + 4095);
        let (mut set, mut model) = (DeadSet::default(), BTreeSet::new());
        // A purge of a contiguous block, inserted out of order.
        for seq in (1500..2500).rev().chain(3000..3100) {
            set.insert(seq, lo, hi);
            model.insert(seq);
        }
        assert!(
            matches!(&set, DeadSet::Ranges(r) if r.len() == 2),
            "{set:?}"
        );
        check(&set, &model, lo, hi);
        // Filling the hole between two ranges joins them.
        for seq in 2500..3000 {
            set.insert(seq, lo, hi);
            model.insert(seq);
        }
        assert!(
            matches!(&set, DeadSet::Ranges(r) if r == &[(1500, 3099)]),
            "{set:?}"
        );
        assert!(set.bytes() <= 64, "{}", set.bytes());
        check(&set, &model, lo, hi);
    }

    #[test]
    fn scattered_deletes_turn_into_bits_and_keep_answering() {
        let (lo, hi) = (1, 4096);
        let (mut set, mut model) = (DeadSet::default(), BTreeSet::new());
        // Every third sequence: a range each, until bits are smaller.
        for seq in (lo..=hi).step_by(3) {
            set.insert(seq, lo, hi);
            model.insert(seq);
        }
        assert!(matches!(set, DeadSet::Bits { .. }));
        assert_eq!(set.bytes(), 4096 / 8);
        check(&set, &model, lo, hi);
        assert_eq!(set.next_absent(hi, hi), None); // 4096 = 1 + 3 * 1365: dead
        assert_eq!(set.next_absent(hi - 1, hi), Some(hi - 1));
        assert!(!set.is_empty());
    }

    #[test]
    fn a_large_page_keeps_at_most_ranges_max_ranges() {
        let (lo, hi) = (1, 10_000_000);
        let (mut set, mut model) = (DeadSet::default(), BTreeSet::new());
        for seq in (lo..).step_by(1000).take(RANGES_MAX) {
            set.insert(seq, lo, hi);
            model.insert(seq);
        }
        assert!(matches!(&set, DeadSet::Ranges(r) if r.len() == RANGES_MAX));
        set.insert(hi, lo, hi);
        model.insert(hi);
        assert!(matches!(set, DeadSet::Bits { .. }));
        for seq in model.iter().copied().chain([2, 999, 1002, hi - 1]) {
            assert_eq!(set.contains(seq), model.contains(&seq), "{seq}");
        }
        assert_eq!(set.next_absent(1, hi), Some(2));
        assert_eq!(set.next_absent(hi, hi), None);
    }

    #[test]
    fn bits_from_a_freeze_become_ranges_when_smaller() {
        // Sequences 10..=209: 70..=129 and 200..=209 dead.
        let mut words = vec![0u64; 4];
        for i in (60..120).chain(190..200) {
            words[i / 64] |= 1 << (i % 64);
        }
        let set = DeadSet::from_bits(10, 200, words.clone());
        assert!(
            matches!(&set, DeadSet::Ranges(r) if r == &[(70, 129), (200, 209)]),
            "{set:?}"
        );
        // Alternating bits: 100 ranges would take more than 32 bytes.
        let alternating = vec![0x5555_5555_5555_5555u64; 4];
        let model: BTreeSet<u64> = (10..266).filter(|s| (s - 10) % 2 == 0).collect();
        let set = DeadSet::from_bits(10, 256, alternating);
        assert!(matches!(set, DeadSet::Bits { .. }));
        check(&set, &model, 10, 265);
        assert!(DeadSet::from_bits(10, 200, vec![0; 4]).is_empty());
    }
}
