//! Applying a written batch to the index (and the acks it releases), or
//! failing every pending publish when a write failed.

use bytes::Bytes;

use crate::js::store::record;
use crate::js::stream::{pub_ack, pub_err, Pending, Rollup, Stream};
use crate::js::types::errors::ApiError;
use crate::limits::STREAM_CACHE_BYTES;

impl Stream {
    /// Applies one committed batch to the index; returns the replies to send.
    pub(super) fn commit(
        &self,
        pending: Vec<Pending>,
        seg: u64,
        base: u64,
        batch: &Bytes,
    ) -> Vec<(Bytes, Vec<u8>)> {
        let mut replies = Vec::new();
        let cfg = self.cfg.borrow().clone();
        let mut touched: Vec<Bytes> = Vec::new();
        // Count this batch into its segment first: removals below may hit it.
        let stored_here = pending
            .iter()
            .filter(|p| matches!(p, Pending::Msg { .. }))
            .count() as u64;
        if stored_here > 0 {
            if let Some(log) = self.log.borrow_mut().as_mut() {
                if let Some(s) = log.segs.get_mut(&seg) {
                    s.live += stored_here;
                }
            }
        }
        for p in pending {
            match p {
                Pending::Msg {
                    seq,
                    ts,
                    subject,
                    hdr_len,
                    data,
                    len,
                    rel,
                    reply,
                    msg_id,
                    rollup,
                } => {
                    let data = data.unwrap_or_else(|| {
                        let at = rel + record::HEADER + subject.len();
                        batch.slice(at..at + len)
                    });
                    {
                        let mut ix = self.ix.borrow_mut();
                        // A purge past the end may have moved the first sequence
                        // beyond a message still in flight: it is stored and gone.
                        if seq >= ix.first_seq() && seq > ix.last_seq() {
                            ix.append(
                                seq,
                                ts,
                                &subject,
                                hdr_len,
                                len,
                                seg,
                                base + rel as u64,
                                Some(data),
                            );
                        }
                    }
                    {
                        let mut w = self.w.borrow_mut();
                        w.msgs -= 1;
                        let size = {
                            let ix = self.ix.borrow();
                            ix.entry(seq).map_or(0, |e| ix.size_of(e))
                        };
                        w.bytes = w.bytes.saturating_sub(size);
                        if let Some(e) = w.subj_pending.get_mut(&subject) {
                            e.0 -= 1;
                            if e.0 == 0 {
                                w.subj_pending.remove(&subject);
                            }
                        }
                        if let Some(id) = &msg_id {
                            w.ids.remove(id);
                        }
                    }
                    if let Some(id) = msg_id.clone() {
                        self.dedupe.borrow_mut().insert(id, seq, ts);
                    }
                    *self.last_msg_id.borrow_mut() = msg_id;
                    match rollup {
                        Rollup::None => {}
                        Rollup::Subject => {
                            let older = self.ix.borrow().seqs_matching(Some(&subject), seq);
                            for s in older {
                                self.remove_and_record(s);
                            }
                        }
                        Rollup::All => {
                            let removed = self.ix.borrow_mut().raise_floor(seq);
                            for r in &removed {
                                self.segment_lost(r.seg);
                            }
                            self.stage(record::KIND_FLOOR, seq);
                        }
                    }
                    if cfg.max_msgs_per_subject > 0 {
                        touched.push(subject.clone());
                    }
                    if let Some(r) = reply {
                        replies.push((r, pub_ack(&self.name, seq, false)));
                    }
                }
                Pending::Dup { seq, reply } => {
                    replies.push((reply, pub_ack(&self.name, seq, true)))
                }
                Pending::Op(done) => done.set(Some(Ok(()))),
                Pending::Move { seq, rel } => {
                    self.moves_pending
                        .set(self.moves_pending.get().saturating_sub(1));
                    let old = self.ix.borrow_mut().relocate(seq, seg, base + rel as u64);
                    if let (Some(old), Some(log)) = (old, self.log.borrow_mut().as_mut()) {
                        if let Some(s) = log.segs.get_mut(&old) {
                            s.live = s.live.saturating_sub(1);
                        }
                        if let Some(s) = log.segs.get_mut(&seg) {
                            s.live += 1;
                        }
                    }
                }
            }
        }
        for s in touched {
            self.trim_subject(&s, cfg.max_msgs_per_subject as u64);
        }
        if cfg.max_msgs > 0 || cfg.max_bytes > 0 {
            self.enforce_global();
        }
        self.ix.borrow_mut().evict(STREAM_CACHE_BYTES);
        self.preview_committed();
        replies
    }

    /// Fails every pending publish after a failed write; returns the replies.
    pub(super) fn fail(&self, pending: Vec<Pending>, err: &ApiError) -> Vec<(Bytes, Vec<u8>)> {
        let mut replies = Vec::new();
        let mut w = self.w.borrow_mut();
        // Everything accepted after the failed batch was numbered after it: fail it too.
        let later = std::mem::take(&mut w.pending);
        w.staged.clear();
        w.msgs = 0;
        w.bytes = 0;
        w.subj_pending.clear();
        w.ids.clear();
        w.next_seq = self.ix.borrow().last_seq() + 1;
        w.last_msg_id = self.last_msg_id.borrow().clone();
        w.markers_staged = false;
        drop(w);
        // Their sequences will be given again: consumers that delivered them
        // go back to the last committed message.
        self.preview.borrow_mut().clear();
        crate::js::consumer::rewind_all(self);
        // Deletes already applied in memory may have been in the lost write:
        // stage them again, so the disk catches up with what readers saw.
        if self.is_file() {
            let (first, deleted) = {
                let ix = self.ix.borrow();
                (ix.first_seq(), ix.deleted_seqs())
            };
            self.stage(record::KIND_FLOOR, first);
            for seq in deleted {
                self.stage(record::KIND_DELETE, seq);
            }
        }
        for p in pending.into_iter().chain(later) {
            match p {
                Pending::Msg { reply: Some(r), .. } => replies.push((r, pub_err(&self.name, err))),
                Pending::Dup { reply, .. } => replies.push((reply, pub_err(&self.name, err))),
                Pending::Op(done) => done.set(Some(Err(err.clone()))),
                Pending::Move { .. } => self
                    .moves_pending
                    .set(self.moves_pending.get().saturating_sub(1)),
                Pending::Msg { .. } => {}
            }
        }
        replies
    }
}
