//! The message bodies an index keeps: every message of a memory stream; for a
//! file stream the most recent ones and those read back, within a byte budget
//! (oldest go first).
//!
//! New messages arrive in sequence order, so they sit in a window of slots
//! indexed by `seq - first` (no allocation per message, O(1) removal); a body
//! read back from below the window goes to an ordered map. Bounds (file
//! streams): the bytes `evict` is given, and `WINDOW_SLOTS_MAX` slots, so
//! deleted messages inside the window cannot grow it without limit.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

/// At most this many window slots (48 bytes each) in a file stream.
const WINDOW_SLOTS_MAX: usize = 1 << 20;
/// What a body costs besides its bytes: its slot, and the rest of its
/// record in the buffer it is a slice of (kept alive with it).
const BODY_OVERHEAD: u64 = 96;

/// A kept message: its bytes (headers, then payload) and what serving it
/// takes besides, so that a cached message needs no index entry (which,
/// in a sealed segment, is read from its index file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub data: Bytes,
    pub ts: i64,
    /// The index's subject id (live while the message is).
    pub subj: u32,
    pub hdr_len: u32,
}

/// Memory a body holds, as the budget counts it.
fn cost(b: &Body) -> u64 {
    b.data.len() as u64 + BODY_OVERHEAD
}

#[derive(Debug, Default)]
pub struct Bodies {
    /// Sequence of `window[0]`.
    first: u64,
    window: VecDeque<Option<Body>>,
    /// Bodies in the window.
    live: usize,
    /// Bodies below the window, read back from disk.
    older: BTreeMap<u64, Body>,
    /// Bytes held (both parts).
    pub bytes: u64,
}

impl Bodies {
    pub fn get(&self, seq: u64) -> Option<&Body> {
        if seq >= self.first {
            self.window.get((seq - self.first) as usize)?.as_ref()
        } else {
            self.older.get(&seq)
        }
    }

    /// Keeps `data` as the body of `seq` (unless it has one).
    pub fn put(&mut self, seq: u64, data: Body) {
        if self.live == 0 && seq >= self.first {
            // Nothing in the window: it starts over at `seq`.
            self.window.clear();
            self.first = seq;
        }
        if seq < self.first {
            let len = cost(&data);
            if self.older.insert(seq, data).is_none() {
                self.bytes += len;
            }
            return;
        }
        let i = (seq - self.first) as usize;
        if i == self.window.len() {
            // The usual case: the next message.
            self.bytes += cost(&data);
            self.live += 1;
            self.window.push_back(Some(data));
            return;
        }
        if i > self.window.len() {
            self.window.resize(i + 1, None);
        }
        if self.window[i].is_none() {
            self.bytes += cost(&data);
            self.live += 1;
            self.window[i] = Some(data);
        }
    }

    /// Drops the body of `seq`, if kept.
    pub fn remove(&mut self, seq: u64) {
        let gone = if seq >= self.first {
            let slot = self.window.get_mut((seq - self.first) as usize);
            let gone = slot.and_then(Option::take);
            if gone.is_some() {
                self.live -= 1;
            }
            gone
        } else {
            self.older.remove(&seq)
        };
        if let Some(d) = gone {
            self.bytes -= cost(&d);
        }
        self.trim();
    }

    /// Drops the oldest bodies until at most `max` bytes (and at most
    /// `WINDOW_SLOTS_MAX` window slots) are held.
    pub fn evict(&mut self, max: u64) {
        while self.bytes > max {
            if let Some((_, d)) = self.older.pop_first() {
                self.bytes -= cost(&d);
            } else if !self.pop_front() {
                break;
            }
        }
        while self.window.len() > WINDOW_SLOTS_MAX {
            self.pop_front();
        }
        self.trim();
    }

    fn pop_front(&mut self) -> bool {
        match self.window.pop_front() {
            None => false,
            Some(slot) => {
                self.first += 1;
                if let Some(d) = slot {
                    self.bytes -= cost(&d);
                    self.live -= 1;
                }
                true
            }
        }
    }

    /// Empty slots at the front hold nothing: they go.
    fn trim(&mut self) {
        while self.window.front().is_some_and(Option::is_none) {
            self.window.pop_front();
            self.first += 1;
        }
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Body {
        Body {
            data: Bytes::from(vec![7u8; n]),
            ts: 1,
            subj: 0,
            hdr_len: 0,
        }
    }

    #[test]
    fn new_bodies_fill_the_window_and_old_ones_go_first() {
        let mut c = Bodies::default();
        for seq in 10..20 {
            c.put(seq, b(10));
        }
        let (ten, five) = (10 + BODY_OVERHEAD, 5 + BODY_OVERHEAD);
        assert_eq!((c.bytes, c.get(10).unwrap().data.len()), (10 * ten, 10));
        // A body read back from below the window.
        c.put(3, b(5));
        let len = c.get(3).map(|b| b.data.len());
        assert_eq!((c.bytes, len), (10 * ten + five, Some(5)));
        c.remove(12);
        assert_eq!((c.bytes, c.get(12)), (9 * ten + five, None));
        // The read-back body goes first, then the window's oldest.
        c.evict(8 * ten);
        assert_eq!(c.get(3), None);
        assert_eq!(c.get(10), None);
        assert!(c.get(11).is_some());
        assert_eq!(c.bytes, 8 * ten);
        // Putting twice counts once.
        c.put(13, b(10));
        assert_eq!(c.bytes, 8 * ten);
        // The slot of 12 (removed) goes with 11, as nothing is left before 13.
        c.remove(11);
        assert_eq!((c.first, c.bytes), (13, 7 * ten));
        for seq in 13..20 {
            c.remove(seq);
        }
        assert_eq!((c.bytes, c.window.len()), (0, 0));
        // An empty window starts over at the next body, however far on.
        c.put(1_000_000, b(1));
        assert_eq!((c.window.len(), c.first), (1, 1_000_000));
    }

    #[test]
    fn deleted_slots_cannot_grow_the_window_without_bound() {
        let mut c = Bodies::default();
        c.put(1, b(1)); // stays live at the front
        let far = 1 + WINDOW_SLOTS_MAX as u64 + 10;
        c.put(far, b(1));
        c.evict(u64::MAX);
        assert!(c.window.len() <= WINDOW_SLOTS_MAX);
        assert_eq!(c.get(1), None);
        assert!(c.get(far).is_some());
    }
}
