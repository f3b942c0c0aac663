//! Message ids remembered for duplicate detection (`Nats-Msg-Id`), within the
//! duplicate window and the `DEDUPE_*` bounds.

use std::collections::VecDeque;

use ahash::AHashMap;

use crate::limits::{DEDUPE_BYTES_MAX, DEDUPE_IDS_MAX};

/// Remembered message ids within the duplicate window, oldest first.
#[derive(Default)]
pub(super) struct Dedupe {
    pub(super) ids: AHashMap<String, u64>,
    order: VecDeque<(i64, String)>,
    bytes: usize,
}

impl Dedupe {
    pub(super) fn insert(&mut self, id: String, seq: u64, ts: i64) {
        self.bytes += id.len();
        while self.order.len() >= DEDUPE_IDS_MAX || self.bytes > DEDUPE_BYTES_MAX {
            match self.order.pop_front() {
                Some((_, old)) => {
                    self.bytes -= old.len();
                    self.ids.remove(&old);
                }
                None => break,
            }
        }
        self.ids.insert(id.clone(), seq);
        self.order.push_back((ts, id));
    }
    pub(super) fn expire(&mut self, cutoff: i64) {
        while self.order.front().is_some_and(|(ts, _)| *ts < cutoff) {
            let (_, id) = self.order.pop_front().expect("checked");
            self.bytes -= id.len();
            self.ids.remove(&id);
        }
    }
}
