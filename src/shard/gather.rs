//! Gathers: one shard asks every peer for its part of an answer (a listing,
//! account usage, monitoring counters) and waits for the parts, a bounded time.
//!
//! Bound: one entry per gather in progress; a gather ends (answered or timed
//! out) within `GATHER_TIMEOUT`, and a part arriving after its end is dropped.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ahash::AHashMap;

use crate::notify::Notify;

struct Pending<P> {
    parts: Vec<P>,
    waiting: usize,
    done: Rc<Notify>,
}

/// The gathers of one kind in progress on one shard.
pub struct Gathers<P> {
    next: Cell<u64>,
    open: RefCell<AHashMap<u64, Rc<RefCell<Pending<P>>>>>,
}

impl<P> Default for Gathers<P> {
    fn default() -> Self {
        Gathers {
            next: Cell::new(0),
            open: RefCell::new(AHashMap::new()),
        }
    }
}

impl<P> Gathers<P> {
    /// Starts a gather expecting `peers` parts; returns its id (sent with the
    /// question, so the parts can name it).
    pub fn open(&self, peers: usize) -> u64 {
        let id = self.next.get();
        self.next.set(id + 1);
        let pending = Pending {
            parts: Vec::with_capacity(peers),
            waiting: peers,
            done: Rc::new(Notify::new()),
        };
        self.open
            .borrow_mut()
            .insert(id, Rc::new(RefCell::new(pending)));
        id
    }

    /// A peer's part of gather `id` arrived.
    pub fn part(&self, id: u64, part: P) {
        let Some(g) = self.open.borrow().get(&id).cloned() else {
            return; // it timed out: dropped
        };
        let mut g = g.borrow_mut();
        g.parts.push(part);
        g.waiting = g.waiting.saturating_sub(1);
        if g.waiting == 0 {
            g.done.notify();
        }
    }

    /// Waits until every part of gather `id` arrived or `GATHER_TIMEOUT`
    /// passed, and returns the parts that did.
    pub async fn wait(&self, id: u64) -> Vec<P> {
        let Some(g) = self.open.borrow().get(&id).cloned() else {
            return Vec::new();
        };
        let done = {
            let g = g.borrow();
            (g.waiting > 0).then(|| g.done.clone())
        };
        if let Some(done) = done {
            let timeout = glommio::timer::sleep(crate::limits::GATHER_TIMEOUT);
            futures_lite::future::or(done.wait(), timeout).await;
        }
        self.open.borrow_mut().remove(&id);
        let parts = std::mem::take(&mut g.borrow_mut().parts);
        parts
    }
}
