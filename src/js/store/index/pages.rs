//! The index's entries in pages, each a run of consecutive sequences: hot
//! pages hold a 32-byte entry per sequence in memory (the active segment's
//! messages, memory streams, and what could not go cold); cold pages
//! (`cold`) leave a sealed segment's entries in its index file. A hot page
//! takes the messages of one segment (its owner), so that it can go cold
//! whole once that segment's index file is written.

use std::collections::VecDeque;

use super::cold::Cold;
use super::Entry;

#[derive(Debug)]
pub struct Hot {
    pub lo: u64,
    /// The segment its messages are in (None: only deleted sequences yet).
    pub owner: Option<u64>,
    pub entries: VecDeque<Entry>,
}

#[derive(Debug)]
pub enum Page {
    Hot(Hot),
    Cold(Box<Cold>),
}

impl Page {
    pub fn lo(&self) -> u64 {
        match self {
            Page::Hot(h) => h.lo,
            Page::Cold(c) => c.lo,
        }
    }
    pub fn hi(&self) -> u64 {
        match self {
            Page::Hot(h) => h.lo + h.entries.len() as u64 - 1,
            Page::Cold(c) => c.hi,
        }
    }
}

/// Pages in sequence order, back to back: `pages[i + 1].lo() ==
/// pages[i].hi() + 1`, and no page is empty.
#[derive(Debug)]
pub struct Pages {
    pub pages: VecDeque<Page>,
    /// The front page's `lo` and the back page's `hi`, kept here because
    /// every lookup asks (with no page: the next sequence, and one less).
    first: u64,
    last: u64,
    /// The page found last (a reader moving through a stream stays in one).
    hint: std::cell::Cell<usize>,
}

impl Pages {
    pub fn new(first: u64) -> Pages {
        Pages {
            pages: VecDeque::new(),
            first,
            last: first - 1,
            hint: std::cell::Cell::new(0),
        }
    }

    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// No page; the next sequence is `first`.
    pub fn clear(&mut self, first: u64) {
        self.pages.clear();
        self.first = first;
        self.last = first - 1;
    }

    /// The page holding `seq`.
    #[inline]
    pub fn find(&self, seq: u64) -> Option<usize> {
        if seq < self.first || seq > self.last {
            return None;
        }
        // Most lookups are in the last (hot) page, or where the last one was.
        let n = self.pages.len();
        if self.pages[n - 1].lo() <= seq {
            return Some(n - 1);
        }
        let h = self.hint.get();
        if self
            .pages
            .get(h)
            .is_some_and(|p| p.lo() <= seq && seq <= p.hi())
        {
            return Some(h);
        }
        let i = self.pages.partition_point(|p| p.lo() <= seq) - 1;
        self.hint.set(i);
        Some(i)
    }

    /// The hot entry at `seq` (deleted or not), if its page is hot.
    pub fn hot_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        let i = self.find(seq)?;
        match &mut self.pages[i] {
            Page::Hot(h) => h.entries.get_mut((seq - h.lo) as usize),
            Page::Cold(_) => None,
        }
    }

    pub fn cold_mut(&mut self, seq: u64) -> Option<&mut Cold> {
        let i = self.find(seq)?;
        match &mut self.pages[i] {
            Page::Cold(c) => Some(c),
            Page::Hot(_) => None,
        }
    }

    /// Adds `e` as the next sequence, in segment `owner`'s page (None: a
    /// deleted sequence, any hot page takes it).
    #[inline]
    pub fn push_back(&mut self, e: Entry, owner: Option<u64>) {
        if let Some(Page::Hot(h)) = self.pages.back_mut() {
            if owner.is_none() || h.owner.is_none() || h.owner == owner {
                h.owner = h.owner.or(owner);
                h.entries.push_back(e);
                self.last += 1;
                return;
            }
        }
        self.last += 1;
        let lo = self.last;
        self.pages.push_back(Page::Hot(Hot {
            lo,
            owner,
            entries: VecDeque::from([e]),
        }));
    }

    /// The ids of the cold pages.
    pub fn cold_ids(&self) -> Vec<u64> {
        let cold = |p: &Page| match p {
            Page::Cold(c) => Some(c.id()),
            Page::Hot(_) => None,
        };
        self.pages.iter().filter_map(cold).collect()
    }

    /// Adds a cold page right after the last sequence.
    pub fn push_cold(&mut self, c: Cold) {
        assert_eq!(c.lo, self.last + 1, "a page after the last");
        self.last = c.hi;
        self.pages.push_back(Page::Cold(Box::new(c)));
    }

    /// Adds deleted sequences below the first, down to `seq`.
    pub fn extend_front(&mut self, seq: u64) {
        let first = self.first();
        if seq >= first {
            return;
        }
        let gaps = (first - seq) as usize;
        self.first = seq;
        match self.pages.front_mut() {
            Some(Page::Hot(h)) => {
                for _ in 0..gaps {
                    h.entries.push_front(Entry::gap());
                }
                h.lo = seq;
            }
            _ => self.pages.push_front(Page::Hot(Hot {
                lo: seq,
                owner: None,
                entries: std::iter::repeat_n(Entry::gap(), gaps).collect(),
            })),
        }
    }

    /// Drops dead sequences at the front so the first is live (or no page
    /// is left); returns how many went, and the cold pages dropped (by id).
    #[inline]
    pub fn trim_front(&mut self, dropped: &mut Vec<u64>) -> u64 {
        let mut n = 0;
        while let Some(p) = self.pages.front_mut() {
            match p {
                Page::Hot(h) => {
                    let before = h.entries.len();
                    while h.entries.front().is_some_and(Entry::deleted) {
                        h.entries.pop_front();
                    }
                    let k = (before - h.entries.len()) as u64;
                    h.lo += k;
                    n += k;
                    if !h.entries.is_empty() {
                        break;
                    }
                }
                Page::Cold(c) => match c.next_live(c.lo) {
                    Some(s) => {
                        n += s - c.lo;
                        c.lo = s;
                        break;
                    }
                    None => {
                        n += c.hi - c.lo + 1;
                        dropped.push(c.id());
                    }
                },
            }
            self.pages.pop_front();
        }
        self.first += n;
        n
    }
}
