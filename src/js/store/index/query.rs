//! Questions asked of an index: subjects matching a filter, the next or the
//! number of messages matching one, by time, the deleted sequences.

use bytes::Bytes;

use super::{Entry, Index, Page};

fn literal(f: &[u8]) -> bool {
    !f.contains(&b'*') && !f.contains(&b'>')
}

impl Index {
    /// Where messages of subjects matching any of `filters` lie at or after
    /// `from` (the first of one to the last of any; None: nowhere), when the
    /// index has cold pages: it bounds a scan that would otherwise decode
    /// every cold chunk to find nothing. Without cold pages, all of it.
    fn span(&self, from: u64, filters: &[&[u8]]) -> Option<(u64, u64)> {
        let cold = self.pages.pages.iter().any(|p| matches!(p, Page::Cold(_)));
        if !cold {
            return Some((from, u64::MAX));
        }
        let mut span: Option<(u64, u64)> = None;
        for (subject, id) in &self.subjects {
            if !filters.iter().any(|f| crate::subject::matches(f, subject)) {
                continue;
            }
            let Some(s) = self.subj[*id as usize].as_ref().filter(|s| s.last >= from) else {
                continue;
            };
            let (a, b) = span.unwrap_or((u64::MAX, 0));
            span = Some((a.min(s.first), b.max(s.last)));
        }
        span.map(|(a, b)| (a.max(from), b))
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
        if filter.is_none() {
            // No entry to read: liveness is all it takes (no chunk decoded).
            return self.next_live(from);
        }
        let from = from.max(self.first_seq());
        let mut found = None;
        let mut to = self.last_seq();
        let mut id = None;
        if let Some(f) = filter.filter(|f| literal(f)) {
            let s = self.subject(f)?;
            if s.last < from {
                return None;
            }
            to = s.last;
            id = Some(*self.subjects.get(f)?);
        }
        let start = match (id, filter) {
            (Some(_), Some(f)) => from.max(self.subject(f)?.first),
            (None, Some(f)) => {
                let (a, b) = self.span(from, &[f])?;
                to = to.min(b);
                a
            }
            _ => from,
        };
        self.scan(start, to, |seq, e| {
            let hit = match (id, filter) {
                (Some(id), _) => e.subj == id,
                (None, Some(f)) => crate::subject::matches(f, self.subject_of(e)),
                (None, None) => true,
            };
            if hit {
                found = Some(seq);
            }
            !hit
        });
        found
    }

    /// Count of live messages ≥ `from` matching `filter`.
    pub fn count_matching(&self, from: u64, filter: Option<&[u8]>) -> u64 {
        let all = filter.is_none_or(|f| f == b">");
        if all && from <= self.first_seq() {
            return self.msgs;
        }
        if all && self.deleted == 0 {
            return (self.last_seq() + 1).saturating_sub(from);
        }
        if let Some(f) = filter.filter(|f| literal(f)) {
            match self.subject(f) {
                None => return 0,
                Some(s) if from <= s.first => return s.count,
                Some(s) if from > s.last => return 0,
                Some(_) => {}
            }
        }
        let (from, to) = match filter.filter(|_| !all) {
            Some(f) => match self.span(from, &[f]) {
                Some(span) => span,
                None => return 0,
            },
            None => (from, u64::MAX),
        };
        let mut n = 0;
        self.scan(from, to, |_, e| {
            if all || filter.is_none_or(|f| crate::subject::matches(f, self.subject_of(e))) {
                n += 1;
            }
            true
        });
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
        let from = from.max(self.first_seq());
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
            if literal(f) {
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
        if !straddle.is_empty() {
            self.scan(from, scan_to, |_, e: &Entry| {
                if straddle.get(e.subj as usize).copied().unwrap_or(false) {
                    total += 1;
                }
                true
            });
        }
        total
    }

    /// First live sequence ≥ `from` matching any of `filters` (all if empty).
    pub fn next_filtered(&self, from: u64, filters: &[Bytes]) -> Option<u64> {
        match filters {
            [] => self.next_matching(from, None),
            [f] => self.next_matching(from, Some(f)),
            // Literal subjects are found through their own state.
            many if many.iter().all(|f| literal(f)) => many
                .iter()
                .filter_map(|f| self.next_matching(from, Some(f)))
                .min(),
            // One scan that stops at the first entry any filter takes (one scan
            // per filter would go to the end for a filter with nothing ahead).
            many => {
                let fs: Vec<&[u8]> = many.iter().map(|f| &f[..]).collect();
                let (from, to) = self.span(from, &fs)?;
                let mut found = None;
                self.scan(from, to, |seq, e| {
                    let s = self.subject_of(e);
                    if many.iter().any(|f| crate::subject::matches(f, s)) {
                        found = Some(seq);
                        return false;
                    }
                    true
                });
                found
            }
        }
    }

    /// The subject of live message `seq`.
    pub fn subject_at(&self, seq: u64) -> Option<&Bytes> {
        self.entry(seq).map(|e| self.subject_of(&e))
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
        // Timestamps rise with sequences: the first page with a later one,
        // then a binary search in it.
        for p in &self.pages.pages {
            let at = match p {
                Page::Hot(h) => {
                    let n = h.entries.len();
                    let (mut lo, mut hi) = (0usize, n);
                    while lo < hi {
                        let mid = (lo + hi) / 2;
                        // Deleted entries carry no timestamp: use the next live one.
                        let mut j = mid;
                        while j < n && h.entries[j].deleted() {
                            j += 1;
                        }
                        if j == n || h.entries[j].ts >= ts {
                            hi = mid;
                        } else {
                            lo = j + 1;
                        }
                    }
                    (lo..n)
                        .find(|&i| !h.entries[i].deleted())
                        .map(|i| h.lo + i as u64)
                }
                Page::Cold(c) => c.first_at_or_after(ts, self.reader()),
            };
            if let Some(at) = at {
                return self.next_live(at);
            }
        }
        None
    }

    /// Live sequences (ascending) whose subject matches `filter`.
    pub fn seqs_matching(&self, filter: Option<&[u8]>, below: u64) -> Vec<u64> {
        let mut out = Vec::new();
        if below == 0 {
            return out;
        }
        let (from, to) = match filter {
            Some(f) => match self.span(self.first_seq(), &[f]) {
                Some((a, b)) => (a, b.min(below - 1)),
                None => return out,
            },
            None => (self.first_seq(), below - 1),
        };
        self.scan(from, to, |seq, e| {
            if filter.is_none_or(|f| crate::subject::matches(f, self.subject_of(e))) {
                out.push(seq);
            }
            true
        });
        out
    }

    /// Interior deleted sequences, ascending.
    pub fn deleted_seqs(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for p in &self.pages.pages {
            match p {
                Page::Hot(h) => out.extend(
                    (h.lo..)
                        .zip(&h.entries)
                        .filter(|(_, e)| e.deleted())
                        .map(|(s, _)| s),
                ),
                Page::Cold(c) => c.dead_seqs(&mut out),
            }
        }
        out
    }
}
