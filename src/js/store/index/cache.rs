//! Decoded chunks and subject tables of cold pages (`cold`), shared by every
//! stream on a shard within a byte budget (`--index_cache_bytes`), least
//! recently used out. A shard is a thread, so the cache is one per thread
//! and takes no lock. Besides it each stream's index holds the one chunk it
//! read last (sequential readers stay in it for a chunk of reads).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use ahash::{AHashMap, AHashSet};
use bytes::Bytes;

use super::cold::Chunk;
use crate::limits::INDEX_CACHE_BYTES_DEFAULT;

/// A chunk: its page's id and its number in the page.
pub type ChunkKey = (u64, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Chunk(ChunkKey),
    Table(u64),
}

#[derive(Debug, Default)]
struct Held {
    chunks: AHashMap<ChunkKey, (Rc<Chunk>, u64)>,
    tables: AHashMap<u64, (Rc<Vec<Bytes>>, u64)>,
    /// What was used when (tick), oldest first.
    order: BTreeMap<u64, Key>,
    bytes: u64,
}

#[derive(Debug)]
pub struct ChunkCache {
    held: RefCell<Held>,
    tick: Cell<u64>,
    budget: Cell<u64>,
    /// Page ids given out on this shard (a page's chunks are keyed by it).
    ids: Cell<u64>,
}

thread_local! {
    static SHARD: Rc<ChunkCache> = Rc::new(ChunkCache::new(INDEX_CACHE_BYTES_DEFAULT));
}

/// Memory a decoded table takes.
fn table_bytes(t: &[Bytes]) -> u64 {
    t.iter().map(|b| b.len() as u64 + 32).sum::<u64>() + 24
}

impl Held {
    /// `key`, used last at `old`, is used again at `tick`.
    fn used(&mut self, old: u64, tick: u64, key: Key) {
        self.order.remove(&old);
        self.order.insert(tick, key);
    }

    /// Drops `key`; the bytes it held.
    fn drop_key(&mut self, key: Key) -> u64 {
        match key {
            Key::Chunk(k) => self.chunks.remove(&k).map_or(0, |(c, _)| c.bytes()),
            Key::Table(id) => self.tables.remove(&id).map_or(0, |(t, _)| table_bytes(&t)),
        }
    }
}

/// The value held under `key`, marked used at `tick`, and the tick it had.
fn touch<K: std::hash::Hash + Eq, V: Clone>(
    map: &mut AHashMap<K, (V, u64)>,
    key: &K,
    tick: u64,
) -> Option<(V, u64)> {
    let (v, t) = map.get_mut(key)?;
    Some((v.clone(), std::mem::replace(t, tick)))
}

impl ChunkCache {
    pub fn new(budget: u64) -> ChunkCache {
        ChunkCache {
            held: RefCell::default(),
            tick: Cell::new(0),
            budget: Cell::new(budget),
            ids: Cell::new(0),
        }
    }

    /// This shard's cache.
    pub fn shard() -> Rc<ChunkCache> {
        SHARD.with(Rc::clone)
    }

    /// Sets this shard's budget (bytes of decoded chunks and tables).
    pub fn set_budget(bytes: u64) {
        SHARD.with(|c| {
            c.budget.set(bytes);
            c.evict();
        });
    }

    /// A page id unique on this shard.
    pub fn page_id(&self) -> u64 {
        self.ids.set(self.ids.get() + 1);
        self.ids.get()
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.held.borrow().bytes
    }

    fn next_tick(&self) -> u64 {
        self.tick.set(self.tick.get() + 1);
        self.tick.get()
    }

    pub fn chunk(&self, key: ChunkKey) -> Option<Rc<Chunk>> {
        let tick = self.next_tick();
        let mut h = self.held.borrow_mut();
        let (c, old) = touch(&mut h.chunks, &key, tick)?;
        h.used(old, tick, Key::Chunk(key));
        Some(c)
    }

    pub fn table(&self, id: u64) -> Option<Rc<Vec<Bytes>>> {
        let tick = self.next_tick();
        let mut h = self.held.borrow_mut();
        let (v, old) = touch(&mut h.tables, &id, tick)?;
        h.used(old, tick, Key::Table(id));
        Some(v)
    }

    pub fn keep_chunk(&self, key: ChunkKey, c: Rc<Chunk>) {
        let tick = self.next_tick();
        {
            let mut h = self.held.borrow_mut();
            h.bytes += c.bytes();
            if let Some((old, t)) = h.chunks.insert(key, (c, tick)) {
                h.bytes -= old.bytes();
                h.order.remove(&t);
            }
            h.order.insert(tick, Key::Chunk(key));
        }
        self.evict();
    }

    pub fn keep_table(&self, id: u64, v: Rc<Vec<Bytes>>) {
        let tick = self.next_tick();
        {
            let mut h = self.held.borrow_mut();
            h.bytes += table_bytes(&v);
            if let Some((old, t)) = h.tables.insert(id, (v, tick)) {
                h.bytes -= table_bytes(&old);
                h.order.remove(&t);
            }
            h.order.insert(tick, Key::Table(id));
        }
        self.evict();
    }

    /// Drops the least recently used until the budget holds.
    fn evict(&self) {
        let mut h = self.held.borrow_mut();
        while h.bytes > self.budget.get() {
            let Some((_, key)) = h.order.pop_first() else {
                break;
            };
            h.bytes -= h.drop_key(key);
        }
    }

    /// Forgets what pages `ids` had here (they were dropped).
    pub fn forget(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let ids: AHashSet<u64> = ids.iter().copied().collect();
        let mut h = self.held.borrow_mut();
        let gone: Vec<(u64, Key)> = h
            .order
            .iter()
            .filter(|(_, k)| match k {
                Key::Chunk(c) => ids.contains(&c.0),
                Key::Table(id) => ids.contains(id),
            })
            .map(|(t, k)| (*t, *k))
            .collect();
        for (t, key) in gone {
            h.order.remove(&t);
            h.bytes -= h.drop_key(key);
        }
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize) -> Rc<Chunk> {
        Rc::new(Chunk::filled(n))
    }

    #[test]
    fn the_budget_holds_and_the_least_recently_used_go_first() {
        let one = chunk(1024).bytes();
        let c = ChunkCache::new(3 * one);
        for i in 0..3 {
            c.keep_chunk((1, i), chunk(1024));
        }
        assert_eq!(c.bytes(), 3 * one);
        assert!(c.chunk((1, 0)).is_some()); // used: (1, 1) is now the oldest
        c.keep_chunk((2, 0), chunk(1024));
        assert!(c.bytes() <= 3 * one);
        assert!(c.chunk((1, 1)).is_none());
        assert!(c.chunk((1, 0)).is_some() && c.chunk((2, 0)).is_some());
        let t = Rc::new(vec![Bytes::from_static(b"a.b"); 10]);
        c.keep_table(1, t);
        assert!(c.bytes() <= 3 * one && c.table(1).is_some());
        c.forget(&[1]);
        assert!(c.chunk((1, 0)).is_none() && c.table(1).is_none());
        assert!(c.chunk((2, 0)).is_some());
        assert_eq!(c.bytes(), one);
        // Smaller than one chunk: nothing stays.
        let tiny = ChunkCache::new(10);
        tiny.keep_chunk((1, 0), chunk(8));
        assert_eq!((tiny.bytes(), tiny.chunk((1, 0)).is_none()), (0, true));
    }
}
