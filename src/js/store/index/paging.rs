//! The index's cold pages as a whole: sealed segments' entries going to
//! their index files (`freeze`, `append_summary`), the reads that bring
//! chunks back (`chunk_to_read`, `chunk_read`, with DMA by the caller), and
//! the shard's cache they share (`cache`).

use std::path::PathBuf;

use super::cache::ChunkCache;
use super::cold::Cold;
use super::pages::Page;
use super::{Entry, Index};
use crate::js::store::segindex::{Run, SegIndex, Summary};

/// A read of a cold page's chunk (`Index::chunk_to_read`).
pub struct ChunkRead {
    seq: u64,
    page: u64,
    chunk: usize,
    pub path: PathBuf,
    pub at: u64,
    pub len: u64,
}

impl Index {
    /// The read (with DMA, by the caller) that finding live `seq`'s entry
    /// takes, if its page is cold and its chunk not cached; hand the bytes
    /// to `chunk_read`. Without it the lookup reads them itself, blocking.
    pub fn chunk_to_read(&self, seq: u64) -> Option<ChunkRead> {
        let Page::Cold(c) = &self.pages.pages[self.pages.find(seq)?] else {
            return None;
        };
        let (chunk, at, len) = c.chunk_to_read(seq, self.reader())?;
        Some(ChunkRead {
            seq,
            page: c.id(),
            chunk,
            path: c.path().clone(),
            at,
            len,
        })
    }

    /// A chunk read for `chunk_to_read`, into the shard's cache (`shared`:
    /// a random read) or only as the stream's last (a sequential reader's,
    /// which would only push out what others use), if its page is still
    /// there.
    pub fn chunk_read(&self, r: &ChunkRead, bytes: &[u8], shared: bool) {
        if let Some(Page::Cold(c)) = self.pages.find(r.seq).map(|i| &self.pages.pages[i]) {
            if c.id() == r.page {
                c.chunk_read(r.chunk, bytes, self.reader(), shared);
            }
        }
    }

    /// Takes segment `seg`'s messages whole from its index file's summary
    /// (`s`, the file at `path`) as a cold page: as appending each one and
    /// freezing the segment would (false: not after the last sequence, or a
    /// memory stream; nothing changed).
    pub fn append_summary(&mut self, seg: u64, s: &Summary, path: PathBuf) -> bool {
        let after = s.lo > self.last_seq() || (self.pages.is_empty() && s.lo >= self.first_seq());
        if self.memory || !after {
            return false;
        }
        if self.msgs == 0 {
            self.clear(s.lo);
        }
        while self.last_seq() + 1 < s.lo {
            self.pages.push_back(Entry::gap(), None);
            self.deleted += 1;
        }
        for (name, n) in s.names.iter().zip(&s.subjects) {
            if n.count > 0 {
                self.intern_slow(name, n.count, n.first, n.last);
            }
        }
        self.msgs += s.msgs;
        self.bytes += s.bytes;
        self.last_ts = s.last_ts;
        let id = self.cache.page_id();
        self.pages.push_cold(Cold::from_summary(id, seg, s, path));
        true
    }

    /// Leaves segment `seg`'s entries in its index file (`ix`, at `path`),
    /// if they are all as that file has them (checked against the `runs` its
    /// builder took, else by decoding it); false if they stay in memory.
    pub fn freeze(&mut self, seg: u64, ix: &SegIndex, runs: Option<&[Run]>, path: PathBuf) -> bool {
        let hot = |p: &Page| matches!(p, Page::Hot(h) if h.owner == Some(seg));
        let Some(i) = self.pages.pages.iter().rposition(hot) else {
            return false;
        };
        let Page::Hot(h) = &self.pages.pages[i] else {
            return false;
        };
        let id = self.cache.page_id();
        match Cold::freeze(id, h.lo, &h.entries, seg, ix, runs, path) {
            Some(c) => {
                self.pages.pages[i] = Page::Cold(Box::new(c));
                true
            }
            None => false,
        }
    }

    /// Forgets what dropped cold pages `ids` have in the cache.
    pub(super) fn forget(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        self.cache.forget(ids);
        let mut last = self.last.borrow_mut();
        if last.as_ref().is_some_and(|(k, _)| ids.contains(&k.0)) {
            *last = None;
        }
    }
}

/// Sets this shard's budget for decoded cold-page chunks (`cache`).
pub fn set_cache_budget(bytes: u64) {
    ChunkCache::set_budget(bytes);
}

impl Drop for Index {
    /// A stream's pages leave the shard's cache with it.
    fn drop(&mut self) {
        self.forget(&self.pages.cold_ids());
    }
}
