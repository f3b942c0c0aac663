//! A consumer's reads: from its read-ahead buffer, the stream's cache, the
//! preview of messages still being written, or disk. Disk reads are
//! `CONSUMER_READ_AHEAD_BYTES` long, and the next one starts as soon as a read
//! arrives, so a consumer replaying from disk delivers one buffer while the
//! next is read.

use crate::js::consumer::Consumer;
use crate::js::store::index::StoredMsg;
use crate::limits::CONSUMER_READ_AHEAD_BYTES;

impl Consumer {
    /// Reads message `seq` (None: gone from the stream).
    pub(super) async fn load(&self, seq: u64) -> Option<StoredMsg> {
        for _ in 0..2 {
            {
                let mut pf = self.prefetch.borrow_mut();
                while pf.front().is_some_and(|m| m.seq < seq) {
                    pf.pop_front();
                }
                if pf.front().is_some_and(|m| m.seq == seq) {
                    let m = pf.pop_front();
                    // Deleted since it was read: not served.
                    return m.filter(|_| self.stream.ix.borrow().is_live(seq));
                }
            }
            if let Some(m) = self.stream.ix.borrow().cached(seq) {
                return Some(m);
            }
            if !self.stream.is_file() {
                return None;
            }
            if let Some(m) = self.stream.preview_get(seq) {
                return Some(m);
            }
            let ahead = self.ahead.borrow_mut().take();
            match ahead {
                Some((start, task)) if start <= seq => {
                    let run = task.await;
                    self.take_run(run);
                }
                // A read of somewhere else (dropping it cancels it).
                _ => break,
            }
        }
        let run = self.stream.load_run(seq, CONSUMER_READ_AHEAD_BYTES).await;
        if run.first().map(|m| m.seq) != Some(seq) {
            return None;
        }
        self.take_run(run);
        let first = self.prefetch.borrow_mut().pop_front();
        first
    }

    /// Makes `run` the read-ahead buffer and starts reading what follows it.
    pub(super) fn take_run(&self, run: Vec<StoredMsg>) {
        let next = run.last().map(|m| m.seq + 1);
        *self.prefetch.borrow_mut() = run.into();
        let Some(next) = next else { return };
        if self.stream.ix.borrow().cached(next).is_some()
            || next > self.stream.ix.borrow().last_seq()
        {
            return;
        }
        let stream = self.stream.clone();
        let task =
            glommio::spawn_local(
                async move { stream.load_run(next, CONSUMER_READ_AHEAD_BYTES).await },
            );
        *self.ahead.borrow_mut() = Some((next, task));
    }
}
