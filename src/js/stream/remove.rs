//! Removing messages: MSG.DELETE (with erase: the record overwritten on disk),
//! the delete and floor records that make removals durable, and PURGE.

use std::cell::Cell;
use std::rc::Rc;

use crate::js::store::record;
use crate::js::store::segment as filelog;
use crate::js::stream::Stream;
use crate::js::types::errors::ApiError;

/// A deleted message's record to overwrite on disk.
pub(super) struct Erase {
    pub(super) seq: u64,
    pub(super) seg: u64,
    pub(super) off: u64,
    pub(super) len: usize,
    pub(super) done: Rc<Cell<Option<Result<(), ApiError>>>>,
}

impl Stream {
    /// Removes message `seq` (MSG.DELETE); durable before it returns Ok. With
    /// `erase` the record's bytes on disk are then overwritten too.
    pub async fn delete_msg(&self, seq: u64, erase: bool) -> Result<(), ApiError> {
        let at = {
            let ix = self.ix.borrow();
            ix.entry(seq).map(|e| {
                (
                    e.seg,
                    e.off(),
                    record::encoded_len(ix.subject_of(&e).len(), e.len as usize),
                )
            })
        };
        let removed = self.remove_and_record(seq);
        if !removed {
            return Err(ApiError::msg_delete_failed("no message found"));
        }
        self.sync_point().await?;
        match at {
            Some((seg, off, len)) if erase && self.is_file() => {
                // The erased record may carry a link position.
                self.save_positions().await;
                let done = Rc::new(Cell::new(None));
                self.w.borrow_mut().erases.push(Erase {
                    seq,
                    seg,
                    off,
                    len,
                    done: done.clone(),
                });
                self.wake.notify();
                self.wait_done(&done).await
            }
            _ => Ok(()),
        }
    }

    /// Overwrites a deleted message's record in place with a delete record of
    /// the same length (zeros where its subject, headers and payload were).
    /// Runs in the writer with no write in flight, so it races with nothing.
    pub(super) async fn erase(&self, e: &Erase) -> Result<(), ApiError> {
        let fail =
            |why: String| ApiError::msg_delete_failed(format!("message erase failed: {why}"));
        let file = {
            let mut log = self.log.borrow_mut();
            match log.as_mut().and_then(|l| l.segs.get_mut(&e.seg)) {
                Some(s) => {
                    s.erased = s.erased.wrapping_add(1);
                    s.reader()
                }
                // The segment is gone already: nothing left to erase.
                None => return Ok(()),
            }
        };
        let file = match file {
            Some(f) => f,
            None => return Ok(()),
        };
        let mut rec = Vec::with_capacity(e.len);
        record::encode(
            &mut rec,
            record::KIND_DELETE,
            e.seq,
            crate::js::types::json::now_nanos(),
            b"",
            0,
            &vec![0; e.len - record::HEADER],
        );
        let file = match file {
            filelog::SegRead::Raw(f) => f,
            filelog::SegRead::Packed(p) => {
                // Compressed at rest: packed again with the record overwritten.
                let len = p.layout.raw_len;
                let mut raw = p
                    .read(0, len as usize)
                    .await
                    .map_err(|x| fail(x.to_string()))?;
                let at = e.off as usize;
                if raw.len() < at + e.len {
                    return Err(fail("short read".into()));
                }
                raw[at..at + e.len].copy_from_slice(&rec);
                let done = self.repack(e.seg, &raw).await;
                self.erase_done(e.seg);
                return done.map_err(|x| fail(x.to_string()));
            }
        };
        let start = e.off & !4095;
        let end = (e.off + e.len as u64 + 4095) & !4095;
        let mut blocks = filelog::read_blocks(file.clone(), start, (end - start) as usize)
            .await
            .map_err(|x| fail(x.to_string()))?;
        if blocks.len() < (e.off - start) as usize + e.len {
            return Err(fail("short read".into()));
        }
        // Past the end of the file reads as zeros; write whole blocks back.
        blocks.resize((end - start) as usize, 0);
        let at = (e.off - start) as usize;
        blocks[at..at + e.len].copy_from_slice(&rec);
        // The writer keeps its own copy of the active segment's last block.
        if let Some(log) = self.log.borrow_mut().as_mut() {
            log.patch_carry(e.seg, start, &blocks);
        }
        let job = filelog::WriteJob::single(file, start, &blocks);
        let done = job.run().await;
        self.erase_done(e.seg);
        done.map_err(|x| fail(x.to_string()))
    }

    /// An erase in segment `seg` is done: a packed copy begun while it ran
    /// (whose read may have missed its write) is stale too.
    fn erase_done(&self, seg: u64) {
        if let Some(s) = self
            .log
            .borrow_mut()
            .as_mut()
            .and_then(|l| l.segs.get_mut(&seg))
        {
            s.erased = s.erased.wrapping_add(1);
        }
    }

    /// Removes `seq` from the index, staging its delete (or floor) record
    /// (also how retention drops a message every consumer is done with).
    pub fn remove_and_record(&self, seq: u64) -> bool {
        let (removed, first_before, first_after) = {
            let mut ix = self.ix.borrow_mut();
            let before = ix.first_seq();
            let r = ix.remove(seq);
            (r, before, ix.first_seq())
        };
        let Some(r) = removed else { return false };
        self.segment_lost(r.seg);
        if seq == first_before {
            self.stage(record::KIND_FLOOR, first_after);
        } else {
            self.stage(record::KIND_DELETE, seq);
        }
        true
    }

    /// PURGE: everything, or by filter, below `seq`, or keeping the newest `keep`.
    pub async fn purge(
        &self,
        filter: Option<&str>,
        seq: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, ApiError> {
        let filter = filter.filter(|f| !f.is_empty() && *f != ">");
        let purged;
        {
            let mut ix = self.ix.borrow_mut();
            let last = ix.last_seq();
            match filter {
                None => {
                    let floor = match (seq, keep) {
                        (Some(s), _) => s,
                        (None, Some(k)) if k > 0 => {
                            // Keep the newest k live messages.
                            let live = ix.seqs_matching(None, u64::MAX);
                            if (live.len() as u64) <= k {
                                return Ok(0);
                            }
                            live[live.len() - k as usize]
                        }
                        _ => last + 1,
                    };
                    let removed = ix.raise_floor(floor);
                    let next = ix.last_seq() + 1;
                    drop(ix);
                    // A floor past the end moves the next sequence with it.
                    let mut w = self.w.borrow_mut();
                    w.next_seq = w.next_seq.max(next);
                    drop(w);
                    purged = removed.len() as u64;
                    for r in &removed {
                        self.segment_lost(r.seg);
                    }
                    let first = self.ix.borrow().first_seq();
                    self.stage(record::KIND_FLOOR, first);
                }
                Some(f) => {
                    let mut seqs = ix.seqs_matching(Some(f.as_bytes()), seq.unwrap_or(u64::MAX));
                    if let Some(k) = keep {
                        let k = k as usize;
                        if seq.is_none() {
                            // nats-server keeps the newest k of the whole filter.
                            seqs.truncate(seqs.len().saturating_sub(k));
                        }
                    }
                    drop(ix);
                    purged = seqs.len() as u64;
                    for s in seqs {
                        self.remove_and_record(s);
                    }
                }
            }
        }
        self.gc_segments().await;
        self.sync_point()
            .await
            .map_err(|e| ApiError::purge_failed(e.description))?;
        Ok(purged)
    }
}
