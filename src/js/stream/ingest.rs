//! Publishing into a stream: the checks of every publish header, limits with
//! discard new, duplicates, and staging the accepted record for the writer.

use bytes::Bytes;

use crate::js::store::index::{msg_size, Index, StoredMsg};
use crate::js::store::record;
use crate::js::stream::{pub_ack, pub_err, Ingest, Pending, Rollup, Stream, WriteState};
use crate::js::types::errors::ApiError;
use crate::limits::{STREAM_INGEST_BYTES, STREAM_INGEST_MSGS};
use crate::protocol::headers;

impl Stream {
    /// Checks and accepts one published message.
    pub fn ingest(
        &self,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) -> Ingest {
        let reply_with = |e: ApiError| match reply {
            Some(_) => Ingest::Reply(pub_err(&self.name, &e)),
            None => Ingest::Silent,
        };
        let cfg = self.cfg.borrow();
        let hdr_len = hdr_len.unwrap_or(0);
        let hdr = &msg[..hdr_len];
        if cfg.sealed {
            return reply_with(ApiError::sealed());
        }
        if self.closed.get() {
            return reply_with(ApiError::stream_not_found());
        }
        if cfg.max_msg_size > 0 && msg.len() > cfg.max_msg_size as usize {
            return reply_with(ApiError::msg_too_big());
        }
        if hdr_len > 64 * 1024 {
            return reply_with(ApiError::header_too_big());
        }
        let mut msg_id = None;
        let mut rollup = Rollup::None;
        let ix = self.ix.borrow();
        let mut w = self.w.borrow_mut();
        if w.staged.len() >= STREAM_INGEST_BYTES || w.pending.len() >= STREAM_INGEST_MSGS {
            return reply_with(ApiError::too_many_requests());
        }
        if hdr_len > 0 {
            if headers::get(hdr, b"Nats-Stream-Source").is_some() {
                return reply_with(ApiError::source_header_not_allowed());
            }
            if headers::get(hdr, b"Nats-TTL").is_some() && !cfg.allow_msg_ttl {
                return reply_with(ApiError::ttl_disabled());
            }
            if headers::get(hdr, b"Nats-Batch-Id").is_some() {
                return reply_with(ApiError::batch_disabled());
            }
            if let Some(id) = headers::get(hdr, b"Nats-Msg-Id").filter(|v| !v.is_empty()) {
                let id = String::from_utf8_lossy(id).into_owned();
                if let Some(&seq) = w.ids.get(&id) {
                    // The original is not committed yet: answer with it.
                    if let Some(r) = reply {
                        w.pending.push(Pending::Dup {
                            seq,
                            reply: r.clone(),
                        });
                        return Ingest::Accepted;
                    }
                    return Ingest::Silent;
                }
                if let Some(&seq) = self.dedupe.borrow().ids.get(&id) {
                    return match reply {
                        Some(_) => Ingest::Reply(pub_ack(&self.name, seq, true)),
                        None => Ingest::Silent,
                    };
                }
                msg_id = Some(id);
            }
            if let Some(v) = headers::get(hdr, b"Nats-Expected-Stream") {
                if v != self.name.as_bytes() {
                    return reply_with(ApiError::expected_stream());
                }
            }
            let last = w.next_seq - 1;
            if let Some(v) = headers::get(hdr, b"Nats-Expected-Last-Sequence") {
                match parse_u64(v) {
                    Some(want) if want == last => {}
                    _ => return reply_with(ApiError::wrong_last_seq(last)),
                }
            }
            let subj_filter = headers::get(hdr, b"Nats-Expected-Last-Subject-Sequence-Subject");
            if let Some(v) = headers::get(hdr, b"Nats-Expected-Last-Subject-Sequence") {
                let filter = subj_filter.unwrap_or(subject);
                let have = last_for(&ix, &w, filter);
                match parse_u64(v) {
                    Some(want) if want == have => {}
                    _ => return reply_with(ApiError::wrong_last_seq(have)),
                }
            } else if subj_filter.is_some() {
                return reply_with(ApiError::expected_subject_seq_subject_alone());
            }
            if let Some(v) = headers::get(hdr, b"Nats-Expected-Last-Msg-Id") {
                let have = w.last_msg_id.clone().unwrap_or_default();
                if v != have.as_bytes() {
                    return reply_with(ApiError::wrong_last_msg_id(&have));
                }
            }
            if let Some(v) = headers::get(hdr, b"Nats-Rollup") {
                if !cfg.allow_rollup_hdrs || cfg.deny_purge {
                    return reply_with(ApiError::rollup_not_permitted());
                }
                rollup = match v {
                    b"sub" => Rollup::Subject,
                    b"all" => Rollup::All,
                    _ => return reply_with(ApiError::rollup_invalid(&String::from_utf8_lossy(v))),
                };
            }
        }
        let size = msg_size(cfg.memory(), subject.len(), hdr_len, msg.len() - hdr_len);
        if cfg.discard_new() {
            if cfg.max_msgs > 0 && ix.msgs + w.msgs >= cfg.max_msgs as u64 {
                return reply_with(ApiError::store_failed("maximum messages exceeded"));
            }
            if cfg.max_bytes > 0 && ix.bytes + w.bytes + size > cfg.max_bytes as u64 {
                return reply_with(ApiError::store_failed("maximum bytes exceeded"));
            }
            if cfg.discard_new_per_subject && cfg.max_msgs_per_subject > 0 {
                let have = ix.subject(subject).map_or(0, |s| s.count)
                    + w.subj_pending.get(subject).map_or(0, |p| p.0);
                if have >= cfg.max_msgs_per_subject as u64 {
                    return reply_with(ApiError::store_failed(
                        "maximum messages per subject exceeded",
                    ));
                }
            }
        }
        if cfg.max_bytes > 0 && size > cfg.max_bytes as u64 {
            return reply_with(ApiError::store_failed("maximum bytes exceeded"));
        }
        drop(ix);
        let seq = w.next_seq;
        w.next_seq += 1;
        let ts = crate::js::types::json::now_nanos();
        let rel = w.staged.len();
        if self.is_file() {
            record::encode(
                &mut w.staged,
                record::KIND_MSG,
                seq,
                ts,
                subject,
                hdr_len,
                msg,
            );
        }
        w.msgs += 1;
        w.bytes += size;
        let e = w.subj_pending.entry(subject.clone()).or_insert((0, 0));
        e.0 += 1;
        e.1 = seq;
        if let Some(id) = &msg_id {
            w.ids.insert(id.clone(), seq);
            w.last_msg_id = Some(id.clone());
        } else {
            w.last_msg_id = None;
        }
        let reply = if cfg.no_ack { None } else { reply.cloned() };
        let data = (!self.is_file()).then(|| Bytes::copy_from_slice(msg));
        w.pending.push(Pending::Msg {
            seq,
            ts,
            subject: subject.clone(),
            hdr_len,
            data,
            len: msg.len(),
            rel,
            reply,
            msg_id,
            rollup,
        });
        drop(w);
        self.wake.notify();
        if self.is_file() && !self.consumers.borrow().is_empty() {
            // The record is encoded into the staged batch; the preview keeps
            // the received bytes (the subject already pins the same buffer).
            let mut pv = self.preview.borrow_mut();
            // Accepted while there were no consumers: what the preview lacks
            // is read after its commit, and nothing past the hole before.
            if pv.back().is_some_and(|m| m.seq + 1 != seq) {
                pv.clear();
            }
            pv.push_back(StoredMsg {
                seq,
                ts,
                subject: subject.clone(),
                hdr_len,
                data: msg.clone(),
            });
            drop(pv);
            self.wake_consumers();
        }
        Ingest::Accepted
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// Last sequence stored (or pending) on subjects matching `filter`; 0 if none.
fn last_for(ix: &Index, w: &WriteState, filter: &[u8]) -> u64 {
    let literal = !filter.contains(&b'*') && !filter.contains(&b'>');
    let pending = if literal {
        w.subj_pending.get(filter).map(|p| p.1)
    } else {
        w.subj_pending
            .iter()
            .filter(|(s, _)| crate::subject::matches(filter, s))
            .map(|(_, p)| p.1)
            .max()
    };
    if let Some(p) = pending {
        return p;
    }
    if literal {
        ix.subject(filter).map_or(0, |s| s.last)
    } else {
        ix.subjects_matching(filter)
            .iter()
            .filter_map(|(s, _)| ix.subject(s).map(|st| st.last))
            .max()
            .unwrap_or(0)
    }
}
