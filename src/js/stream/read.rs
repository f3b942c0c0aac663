//! Reading a stream: one message from cache or disk (verifying its record),
//! runs of messages for consumers reading ahead, and the preview of accepted
//! messages whose write has not completed.

use bytes::Bytes;

use crate::js::store::index::StoredMsg;
use crate::js::store::record;
use crate::js::store::segindex;
use crate::js::store::segment as filelog;
use crate::js::stream::Stream;
use crate::limits::STREAM_CACHE_BYTES;

/// The end of a run `load_run` returned: the record after its last message
/// starts at `off` in segment `seg`; a run from `next` can start there.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    next: u64,
    seg: u64,
    off: u64,
}

/// Run ends a stream remembers: one per sequential reader (consumers
/// replaying, sources reading), the oldest forgotten.
const RUN_ENDS_MAX: usize = 8;

impl Stream {
    /// The first previewed (accepted, not yet committed) message at or after
    /// `from` whose subject passes `keep`.
    pub fn preview_next(&self, from: u64, keep: impl Fn(&[u8]) -> bool) -> Option<u64> {
        let pv = self.preview.borrow();
        let (first, last) = {
            let ix = self.ix.borrow();
            (ix.first_seq(), ix.last_seq())
        };
        // Only a preview that continues the index: messages accepted before it
        // began are delivered first, once committed.
        if pv
            .front()
            .is_none_or(|m| m.seq > last.max(first.saturating_sub(1)) + 1)
        {
            return None;
        }
        let at = pv.partition_point(|m| m.seq < from.max(first));
        pv.range(at..).find(|m| keep(&m.subject)).map(|m| m.seq)
    }

    /// Adds an accepted message to the preview (the stream has consumers).
    pub(super) fn preview_push(&self, m: StoredMsg) {
        let mut pv = self.preview.borrow_mut();
        // Accepted while there were no consumers: what the preview lacks is
        // read after its commit, and nothing past the hole before.
        if pv.back().is_some_and(|b| b.seq + 1 != m.seq) {
            pv.clear();
        }
        pv.push_back(m);
    }

    /// Previewed message `seq`, if it is still waiting for its write.
    pub fn preview_get(&self, seq: u64) -> Option<StoredMsg> {
        let pv = self.preview.borrow();
        if pv.front().is_none_or(|m| m.seq > seq) || seq < self.ix.borrow().first_seq() {
            return None;
        }
        let at = pv.partition_point(|m| m.seq < seq);
        pv.get(at).filter(|m| m.seq == seq).cloned()
    }

    /// Drops previewed messages that are now in the index (or were purged).
    pub(super) fn preview_committed(&self) {
        let last = self.ix.borrow().last_seq();
        let mut pv = self.preview.borrow_mut();
        while pv.front().is_some_and(|m| m.seq <= last) {
            pv.pop_front();
        }
    }

    /// Reads, with DMA, the index chunk the entry of `seq` needs if it is on
    /// disk and not cached, so that the lookup after it does not block the
    /// shard on a read (on failure the lookup reads it, and reports).
    /// `shared`: kept in the shard's cache (else only as the stream's last
    /// chunk: a sequential reader's).
    async fn read_index_chunk(&self, seq: u64, shared: bool) {
        let Some(r) = self.ix.borrow().chunk_to_read(seq) else {
            return;
        };
        if let Ok(bytes) = segindex::read_span_dma(&r.path, r.at, r.len).await {
            self.ix.borrow().chunk_read(&r, &bytes, shared);
        }
    }

    /// Reads message `seq` (cache, else disk, verifying the record).
    pub async fn load(&self, seq: u64) -> Option<StoredMsg> {
        if let Some(m) = self.ix.borrow().cached(seq) {
            return Some(m);
        }
        self.read_index_chunk(seq, true).await;
        let (seg, off, len, subj_len) = {
            let ix = self.ix.borrow();
            let e = ix.entry(seq)?;
            let subj_len = ix.subject_of(&e).len();
            (
                e.seg,
                e.off(),
                record::encoded_len(subj_len, e.len as usize),
                subj_len,
            )
        };
        let file = self.log.borrow().as_ref()?.segs.get(&seg)?.reader()?;
        let bytes = match file.read_at(off, len).await {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                crate::error!(
                    "JetStream stream '{}': reading sequence {seq}: {e}",
                    self.name
                );
                return None;
            }
        };
        match record::decode(&bytes, len) {
            record::Decoded::Record(r, _)
                if r.seq == seq
                    && matches!(r.kind, record::KIND_MSG | record::KIND_MOVED)
                    && r.subject.len() == subj_len =>
            {
                let msg = StoredMsg {
                    seq,
                    ts: r.ts,
                    subject: Bytes::copy_from_slice(r.subject),
                    hdr_len: r.hdr_len,
                    data: Bytes::copy_from_slice(r.data),
                };
                let mut ix = self.ix.borrow_mut();
                ix.fill_cache(&msg);
                ix.evict(STREAM_CACHE_BYTES);
                Some(msg)
            }
            _ => {
                crate::error!(
                    "JetStream stream '{}': sequence {seq} failed its checksum on read; not served, and dropped",
                    self.name
                );
                // What recovery does with a record it finds damaged (start-up
                // reads no sealed segment that has an index file); only where
                // the index still points (compaction may have moved it).
                let mut ix = self.ix.borrow_mut();
                let here = ix
                    .entry(seq)
                    .is_some_and(|e| e.seg == seg && e.off() == off);
                let removed = here.then(|| ix.remove(seq)).flatten();
                drop(ix);
                if let Some(r) = removed {
                    self.segment_lost(r.seg);
                }
                None
            }
        }
    }

    /// Reads message `seq` and the live messages stored after it in the same
    /// segment, about `window` bytes in one read (sequential consumers read
    /// ahead this way instead of one read per message): consecutive live
    /// messages (the next one's record may be elsewhere, as a message moved by
    /// compaction is). Only records the index still points at are returned;
    /// the cache is left alone.
    pub async fn load_run(&self, seq: u64, window: usize) -> Vec<StoredMsg> {
        if let Some(m) = self.ix.borrow().cached(seq) {
            return vec![m];
        }
        let hint = {
            let mut ends = self.run_ends.borrow_mut();
            let at = ends.iter().position(|r| r.next == seq);
            at.and_then(|i| ends.remove(i))
        };
        // A run that ended at its segment's end: the next is in another.
        let inside = |h: &RunEnd| {
            let log = self.log.borrow();
            log.as_ref()
                .and_then(|l| l.segs.get(&h.seg))
                .is_some_and(|s| h.off < s.size)
        };
        let mut out = Vec::new();
        if let Some(h) = hint.filter(inside) {
            if !self.ix.borrow().is_live(seq) {
                return out;
            }
            // Where the run before ended: its records are checked against the
            // index like any other (`live_at`), with no entry read. Only dead
            // records there (the segment's tail): read through the index.
            out = self.read_run(seq, h.seg, h.off, window).await;
        }
        if out.is_empty() {
            self.read_index_chunk(seq, false).await;
            let at = self.ix.borrow().entry(seq).map(|e| (e.seg, e.off()));
            let Some((seg, off)) = at else {
                return out;
            };
            out = self.read_run(seq, seg, off, window).await;
        }
        if out.first().map(|m| m.seq) != Some(seq) {
            return self.load(seq).await.into_iter().collect();
        }
        out
    }

    /// `load_run` from `off` in segment `seg`: the live messages there from
    /// `seq` on, consecutive (remembering where they end).
    async fn read_run(&self, seq: u64, seg: u64, off: u64, window: usize) -> Vec<StoredMsg> {
        let Some(file) = self
            .log
            .borrow()
            .as_ref()
            .and_then(|l| l.segs.get(&seg))
            .and_then(|s| s.reader())
        else {
            return Vec::new();
        };
        let start = off & !(filelog::BLOCK - 1);
        let bytes = match file
            .read_blocks(start, window.max(filelog::BLOCK as usize))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                crate::error!(
                    "JetStream stream '{}': reading sequence {seq}: {e}",
                    self.name
                );
                return Vec::new();
            }
        };
        // Messages are slices of the one read buffer: no copy per message.
        let buf = Bytes::from(bytes);
        let bytes = &buf[..];
        let mut out: Vec<StoredMsg> = Vec::new();
        let mut pos = (off - start) as usize;
        let mut end = off;
        {
            let ix = self.ix.borrow();
            while pos < bytes.len() {
                match record::decode(&bytes[pos..], crate::limits::RECORD_BYTES_MAX) {
                    record::Decoded::Record(r, n) => {
                        let here = start + pos as u64;
                        let msg = matches!(r.kind, record::KIND_MSG | record::KIND_MOVED);
                        if msg && r.seq >= seq && ix.live_at(r.seq, seg, here) {
                            // The live message after the last one, or the run ends.
                            let want = match out.last() {
                                None => seq,
                                Some(m) if r.seq == m.seq + 1 => r.seq,
                                Some(m) => ix.next_matching(m.seq + 1, None).unwrap_or(0),
                            };
                            if r.seq != want {
                                break;
                            }
                            let at = |part: &[u8]| {
                                let from = part.as_ptr() as usize - bytes.as_ptr() as usize;
                                buf.slice(from..from + part.len())
                            };
                            out.push(StoredMsg {
                                seq: r.seq,
                                ts: r.ts,
                                subject: at(r.subject),
                                hdr_len: r.hdr_len,
                                data: at(r.data),
                            });
                            end = here + n as u64;
                        }
                        pos += n;
                    }
                    // The window ends inside a record, at the tail, or at damage
                    // (the first record was checked by recovery; read it singly).
                    _ => break,
                }
            }
        }
        if let Some(last) = out.last() {
            let mut ends = self.run_ends.borrow_mut();
            if ends.len() == RUN_ENDS_MAX {
                ends.pop_front();
            }
            ends.push_back(RunEnd {
                next: last.seq + 1,
                seg,
                off: end,
            });
        }
        out
    }
}
