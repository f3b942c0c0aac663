//! Applying a written batch to the index (and the acks it releases), or
//! failing every pending publish when a write failed.

use bytes::Bytes;

use crate::js::store::index::{Index, Location, NewEntry};
use crate::js::store::record;
use crate::js::stream::{pub_err, Outgoing, Pending, Rollup, Staged, Stream};
use crate::js::types::errors::ApiError;
use crate::limits::STREAM_CACHE_BYTES;
use crate::protocol::headers;

impl Stream {
    /// Applies one committed batch to the index; returns the replies to send.
    /// `seg` and `base` say where the batch was written (0/0: not written).
    pub(super) fn commit(
        &self,
        pending: Vec<Pending>,
        seg: u64,
        base: u64,
        batch: &Bytes,
    ) -> Vec<Outgoing> {
        let mut replies = Vec::with_capacity(pending.len());
        let per_subject = self.cfg.borrow().max_msgs_per_subject;
        let mut touched: Vec<Bytes> =
            Vec::with_capacity(if per_subject > 0 { pending.len() } else { 0 });
        for p in pending {
            match p {
                Pending::Msg(m) => {
                    if per_subject > 0 {
                        touched.push(m.subject.clone());
                    }
                    let seq = m.seq;
                    let at = Location { seg, off: base };
                    if let Some(r) = self.commit_msg(m, at, batch, &mut replies) {
                        replies.push(Outgoing::reply(r, self.ack(seq, false)));
                    }
                }
                Pending::Dup { seq, reply } => {
                    replies.push(Outgoing::reply(reply, self.ack(seq, true)))
                }
                Pending::Op(done) => done.set(Some(Ok(()))),
                Pending::Move { seq, rel } => self.commit_move(seq, seg, base + rel as u64),
            }
        }
        for s in touched {
            self.trim_subject(&s, per_subject as u64);
        }
        let global = {
            let cfg = self.cfg.borrow();
            cfg.max_msgs > 0 || cfg.max_bytes > 0
        };
        if global {
            self.enforce_global();
        }
        self.ix.borrow_mut().evict(STREAM_CACHE_BYTES);
        self.preview_committed();
        replies
    }

    /// One committed message: into the index (its record at `batch_at` plus
    /// its offset in the batch), out of the write state, its rollup applied.
    /// Returns the reply subject to ack.
    fn commit_msg(
        &self,
        mut m: Staged,
        batch_at: Location,
        batch: &Bytes,
        out: &mut Vec<Outgoing>,
    ) -> Option<Bytes> {
        let data = m.data.take().unwrap_or_else(|| {
            let at = m.rel + record::HEADER + m.subject.len();
            batch.slice(at..at + m.len)
        });
        {
            let mut ix = self.ix.borrow_mut();
            // A purge past the end may have moved the first sequence beyond a
            // message still in flight: it is stored and gone.
            if m.seq >= ix.first_seq() && m.seq > ix.last_seq() {
                if let Some(o) = self.republished(&ix, &m, &data) {
                    out.push(o);
                }
                // Counted into its segment before anything can remove it.
                self.segment_gained(batch_at.seg, 1);
                ix.append(NewEntry {
                    seq: m.seq,
                    ts: m.ts,
                    subject: &m.subject,
                    hdr_len: m.hdr_len,
                    len: m.len,
                    at: Location {
                        seg: batch_at.seg,
                        off: batch_at.off + m.rel as u64,
                    },
                    data: Some(data),
                    flags: m.flags,
                });
                if let Some(at) = m.ttl.expires_at(m.ts) {
                    if self.cfg.borrow().allow_msg_ttl {
                        self.expiries.borrow_mut().push(at, m.seq);
                    }
                }
            }
        }
        {
            let mut w = self.w.borrow_mut();
            assert!(
                w.msgs >= 1 && w.bytes >= m.size,
                "pending counts cover every staged message"
            );
            w.msgs -= 1;
            w.bytes -= m.size;
            let e = w
                .subj_pending
                .get_mut(&m.subject)
                .expect("a staged subject is counted");
            e.0 -= 1;
            if e.0 == 0 {
                w.subj_pending.remove(&m.subject);
            }
            if let Some(id) = &m.msg_id {
                w.ids.remove(id);
            }
        }
        if let Some(id) = m.msg_id.clone() {
            self.dedupe.borrow_mut().insert(id, m.seq, m.ts);
        }
        *self.last_msg_id.borrow_mut() = m.msg_id;
        if let Some(tag) = m.link {
            self.link_committed(tag);
        }
        match m.rollup {
            Rollup::None => {}
            Rollup::Subject => {
                let older = self.ix.borrow().seqs_matching(Some(&m.subject), m.seq);
                for s in older {
                    self.remove_and_record(s);
                }
            }
            Rollup::All => {
                let removed = self.ix.borrow_mut().raise_floor(m.seq);
                for r in &removed {
                    self.segment_lost(r.seg);
                }
                self.stage(record::KIND_FLOOR, m.seq);
            }
        }
        m.reply
    }

    /// A compaction move committed: the message now lives at `off` of `seg`.
    fn commit_move(&self, seq: u64, seg: u64, off: u64) {
        let moves = self.moves_pending.get();
        assert!(moves > 0, "a committed move was counted");
        self.moves_pending.set(moves - 1);
        let old = self.ix.borrow_mut().relocate(seq, Location { seg, off });
        // Deleted meanwhile: the copy is dead on arrival.
        if let Some(old) = old {
            self.segment_lost(old);
            self.segment_gained(seg, 1);
        }
    }

    /// The copy `republish` sends of a message being committed: its headers
    /// plus the stream, subject, sequence, time and the subject's previous
    /// sequence (`headers_only`: its size instead of its payload).
    fn republished(&self, ix: &Index, m: &Staged, data: &Bytes) -> Option<Outgoing> {
        let rp = self.republish.borrow();
        let (t, headers_only) = rp.as_ref()?;
        let subject = t.apply(&m.subject)?;
        if !crate::subject::valid_publish(&subject) {
            return None;
        }
        let last = ix.subject(&m.subject).map_or(0, |s| s.last);
        let seq = m.seq.to_string();
        let ts = crate::js::types::json::rfc3339(m.ts);
        let last = last.to_string();
        let size = (m.len - m.hdr_len).to_string();
        let mut extra: Vec<(&str, &[u8])> = vec![
            ("Nats-Stream", self.name.as_bytes()),
            ("Nats-Subject", &m.subject),
            ("Nats-Sequence", seq.as_bytes()),
            ("Nats-Time-Stamp", ts.as_bytes()),
            ("Nats-Last-Sequence", last.as_bytes()),
        ];
        if *headers_only {
            extra.push(("Nats-Msg-Size", size.as_bytes()));
        }
        let hdr = headers::rewrite(&data[..m.hdr_len], |_| false, &extra).expect("headers added");
        Some(Outgoing {
            subject: Bytes::from(subject),
            hdr: Some(hdr),
            body: if *headers_only {
                Vec::new()
            } else {
                data[m.hdr_len..].to_vec()
            },
        })
    }

    /// Fails every pending publish after a failed write; returns the replies.
    pub(super) fn fail(&self, pending: Vec<Pending>, err: &ApiError) -> Vec<Outgoing> {
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
        let mut links = std::collections::BTreeSet::new();
        for p in pending.into_iter().chain(later) {
            if let Pending::Msg(Staged {
                link: Some(tag), ..
            }) = &p
            {
                links.insert(tag.link);
            }
            match p {
                Pending::Msg(Staged { reply: Some(r), .. }) => {
                    replies.push(Outgoing::reply(r, pub_err(&self.name, err)))
                }
                Pending::Dup { reply, .. } => {
                    replies.push(Outgoing::reply(reply, pub_err(&self.name, err)))
                }
                Pending::Op(done) => done.set(Some(Err(err.clone()))),
                Pending::Move { .. } => self
                    .moves_pending
                    .set(self.moves_pending.get().saturating_sub(1)),
                Pending::Msg(_) => {}
            }
        }
        self.links_failed(links);
        replies
    }
}
