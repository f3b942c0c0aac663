//! Publishing into a stream: the checks of every publish header, limits with
//! discard new, duplicates (`check`, pure over the stream's state), then
//! staging the accepted record for the writer (`stage_msg`), where a
//! publish and a message copied from a source or mirror end alike.

use bytes::Bytes;

use crate::js::store::index::{msg_size, Index, StoredMsg};
use crate::js::store::record;
use crate::js::stream::dedupe::Dedupe;
use crate::js::stream::{pub_err, Ingest, LinkTag, Pending, Rollup, Staged, Stream, WriteState};
use crate::js::types::errors::ApiError;
use crate::js::types::stream_config::StreamConfig;
use crate::limits::{HEADERS_MAX, STREAM_INGEST_BYTES, STREAM_INGEST_MSGS};
use crate::protocol::headers;

/// What the checks of a publish decided.
enum Checked {
    /// Store it, with its message id and rollup.
    Store {
        msg_id: Option<String>,
        rollup: Rollup,
        size: u64,
    },
    /// A duplicate of `seq`, which is committed: answer at once.
    Duplicate(u64),
    /// A duplicate of `seq`, which is not committed yet: answer with it.
    DuplicatePending(u64),
    Refused(ApiError),
}

/// A message copied from a mirror's or source's origin, to store.
pub struct CopyIn<'a> {
    /// A mirror's copy keeps its origin's sequence (plus the mirror's
    /// offset); a source's copy takes the next one (None).
    pub seq: Option<u64>,
    pub ts: i64,
    pub subject: &'a Bytes,
    pub hdr_len: usize,
    /// Header block then payload.
    pub msg: &'a Bytes,
    /// Check `Nats-Msg-Id` against the duplicate window (sources).
    pub dedupe: bool,
    pub tag: LinkTag,
}

/// Why a copy was not stored.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyRefused {
    /// A duplicate message id, or a sequence the mirror already has: skip it.
    Skip,
    /// The stream's ingest queue is full: try again once it drains.
    Congested,
    /// The stream refuses it (its limits with discard new, sealed, ...).
    Store(ApiError),
}

/// A message accepted for storing.
pub(super) struct Accepted<'a> {
    pub seq: u64,
    pub ts: i64,
    pub subject: &'a Bytes,
    pub hdr_len: usize,
    /// Header block then payload.
    pub msg: &'a Bytes,
    /// Accounting size (`msg_size`).
    pub size: u64,
    pub reply: Option<Bytes>,
    pub msg_id: Option<String>,
    pub rollup: Rollup,
    pub link: Option<LinkTag>,
}

impl Stream {
    /// Checks and accepts one published message.
    pub fn ingest(
        &self,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) -> Ingest {
        let hdr_len = hdr_len.unwrap_or(0);
        let checked = {
            let cfg = self.cfg.borrow();
            let ix = self.ix.borrow();
            let w = self.w.borrow();
            let dedupe = self.dedupe.borrow();
            let at = Publish {
                stream: &self.name,
                closed: self.closed.get(),
                cfg: &cfg,
                ix: &ix,
                w: &w,
                dedupe: &dedupe,
            };
            at.check(subject, &msg[..hdr_len], msg.len())
        };
        let (msg_id, rollup, size) = match checked {
            Checked::Store {
                msg_id,
                rollup,
                size,
            } => (msg_id, rollup, size),
            Checked::Refused(e) => return answer(reply, || pub_err(&self.name, &e)),
            Checked::Duplicate(seq) => return answer(reply, || self.ack(seq, true)),
            Checked::DuplicatePending(seq) => {
                let Some(r) = reply else {
                    return Ingest::Silent;
                };
                self.w.borrow_mut().pending.push(Pending::Dup {
                    seq,
                    reply: r.clone(),
                });
                return Ingest::Accepted;
            }
        };
        let no_ack = self.cfg.borrow().no_ack;
        let seq = self.w.borrow().next_seq;
        self.stage_msg(Accepted {
            seq,
            ts: crate::js::types::json::now_nanos(),
            subject,
            hdr_len,
            msg,
            size,
            reply: if no_ack { None } else { reply.cloned() },
            msg_id,
            rollup,
            link: None,
        });
        Ingest::Accepted
    }

    /// Checks and stages a copy from an origin.
    pub fn stage_copy(&self, c: CopyIn) -> Result<(), CopyRefused> {
        let checked = {
            let cfg = self.cfg.borrow();
            let ix = self.ix.borrow();
            let w = self.w.borrow();
            if let Some(seq) = c.seq {
                if seq < w.next_seq {
                    return Err(CopyRefused::Skip);
                }
            }
            let dedupe = self.dedupe.borrow();
            let at = Publish {
                stream: &self.name,
                closed: self.closed.get(),
                cfg: &cfg,
                ix: &ix,
                w: &w,
                dedupe: &dedupe,
            };
            at.check_copy(c.subject, &c.msg[..c.hdr_len], c.msg.len(), c.dedupe)
        };
        let (msg_id, rollup, size) = match checked {
            Checked::Store {
                msg_id,
                rollup,
                size,
            } => (msg_id, rollup, size),
            Checked::Duplicate(_) | Checked::DuplicatePending(_) => return Err(CopyRefused::Skip),
            Checked::Refused(e) if e.err_code == 10167 => return Err(CopyRefused::Congested),
            Checked::Refused(e) => return Err(CopyRefused::Store(e)),
        };
        let seq = c.seq.unwrap_or_else(|| self.w.borrow().next_seq);
        self.stage_msg(Accepted {
            seq,
            ts: c.ts,
            subject: c.subject,
            hdr_len: c.hdr_len,
            msg: c.msg,
            size,
            reply: None,
            msg_id,
            rollup,
            link: Some(c.tag),
        });
        Ok(())
    }

    /// Stages an accepted message for the next write, and shows it to the
    /// stream's consumers at once (the preview).
    pub(super) fn stage_msg(&self, a: Accepted) {
        let file = self.is_file();
        {
            let mut w = self.w.borrow_mut();
            assert!(a.seq >= w.next_seq, "sequences are given in order");
            w.next_seq = a.seq + 1;
            let rel = w.staged.len();
            if file {
                record::encode(
                    &mut w.staged,
                    record::KIND_MSG,
                    a.seq,
                    a.ts,
                    a.subject,
                    a.hdr_len,
                    a.msg,
                );
            }
            w.msgs += 1;
            w.bytes += a.size;
            let e = w.subj_pending.entry(a.subject.clone()).or_insert((0, 0));
            e.0 += 1;
            e.1 = a.seq;
            if let Some(id) = &a.msg_id {
                w.ids.insert(id.clone(), a.seq);
            }
            w.last_msg_id = a.msg_id.clone();
            w.pending.push(Pending::Msg(Staged {
                seq: a.seq,
                ts: a.ts,
                subject: a.subject.clone(),
                hdr_len: a.hdr_len,
                data: (!file).then(|| Bytes::copy_from_slice(a.msg)),
                len: a.msg.len(),
                size: a.size,
                rel,
                reply: a.reply,
                msg_id: a.msg_id,
                rollup: a.rollup,
                link: a.link,
            }));
        }
        self.wake.notify();
        if file && !self.consumers.borrow().is_empty() {
            self.preview_push(StoredMsg {
                seq: a.seq,
                ts: a.ts,
                subject: a.subject.clone(),
                hdr_len: a.hdr_len,
                data: a.msg.clone(),
            });
            self.wake_consumers();
        }
    }
}

/// The answer made at once: `body` when there is a reply subject.
fn answer(reply: Option<&Bytes>, body: impl FnOnce() -> Vec<u8>) -> Ingest {
    match reply {
        Some(_) => Ingest::Reply(body()),
        None => Ingest::Silent,
    }
}

/// What a publish is checked against.
struct Publish<'a> {
    stream: &'a str,
    closed: bool,
    cfg: &'a StreamConfig,
    ix: &'a Index,
    w: &'a WriteState,
    dedupe: &'a Dedupe,
}

impl Publish<'_> {
    fn check(&self, subject: &[u8], hdr: &[u8], len: usize) -> Checked {
        let cfg = self.cfg;
        let refuse = Checked::Refused;
        if cfg.sealed {
            return refuse(ApiError::sealed());
        }
        if self.closed {
            return refuse(ApiError::stream_not_found());
        }
        if cfg.max_msg_size > 0 && len > cfg.max_msg_size as usize {
            return refuse(ApiError::msg_too_big());
        }
        if hdr.len() > HEADERS_MAX {
            return refuse(ApiError::header_too_big());
        }
        if self.w.staged.len() >= STREAM_INGEST_BYTES || self.w.pending.len() >= STREAM_INGEST_MSGS
        {
            return refuse(ApiError::too_many_requests());
        }
        let (msg_id, rollup) = if hdr.is_empty() {
            (None, Rollup::None)
        } else {
            match self.check_headers(subject, hdr) {
                Ok(found) => found,
                Err(c) => return c,
            }
        };
        let size = msg_size(cfg.memory(), subject.len(), hdr.len(), len - hdr.len());
        if let Err(e) = self.check_limits(subject, size) {
            return refuse(e);
        }
        Checked::Store {
            msg_id,
            rollup,
            size,
        }
    }

    /// A copy from an origin: no publish expectations (they were dropped),
    /// its own `Nats-Stream-Source` allowed; message ids only when `dedupe`;
    /// a rollup only where the stream allows them (never refused: that
    /// would stop the link for good).
    fn check_copy(&self, subject: &[u8], hdr: &[u8], len: usize, dedupe: bool) -> Checked {
        let cfg = self.cfg;
        let refuse = Checked::Refused;
        if cfg.sealed {
            return refuse(ApiError::sealed());
        }
        if self.closed {
            return refuse(ApiError::stream_not_found());
        }
        if cfg.max_msg_size > 0 && len > cfg.max_msg_size as usize {
            return refuse(ApiError::msg_too_big());
        }
        if hdr.len() > HEADERS_MAX {
            return refuse(ApiError::header_too_big());
        }
        if self.w.staged.len() >= STREAM_INGEST_BYTES || self.w.pending.len() >= STREAM_INGEST_MSGS
        {
            return refuse(ApiError::too_many_requests());
        }
        let mut msg_id = None;
        if dedupe {
            if let Some(id) = headers::get(hdr, b"Nats-Msg-Id").filter(|v| !v.is_empty()) {
                let id = String::from_utf8_lossy(id).into_owned();
                if let Some(&seq) = self.w.ids.get(&id) {
                    return Checked::DuplicatePending(seq);
                }
                if let Some(&seq) = self.dedupe.ids.get(&id) {
                    return Checked::Duplicate(seq);
                }
                msg_id = Some(id);
            }
        }
        let rollup = match headers::get(hdr, b"Nats-Rollup") {
            Some(b"sub") if cfg.allow_rollup_hdrs && !cfg.deny_purge => Rollup::Subject,
            Some(b"all") if cfg.allow_rollup_hdrs && !cfg.deny_purge => Rollup::All,
            _ => Rollup::None,
        };
        let size = msg_size(cfg.memory(), subject.len(), hdr.len(), len - hdr.len());
        if let Err(e) = self.check_limits(subject, size) {
            return refuse(e);
        }
        Checked::Store {
            msg_id,
            rollup,
            size,
        }
    }

    /// The publish headers: message id (duplicates), expectations, rollup.
    fn check_headers(
        &self,
        subject: &[u8],
        hdr: &[u8],
    ) -> Result<(Option<String>, Rollup), Checked> {
        let refuse = |e| Err(Checked::Refused(e));
        let cfg = self.cfg;
        if headers::get(hdr, b"Nats-Stream-Source").is_some() {
            return refuse(ApiError::source_header_not_allowed());
        }
        if headers::get(hdr, b"Nats-TTL").is_some() && !cfg.allow_msg_ttl {
            return refuse(ApiError::ttl_disabled());
        }
        if headers::get(hdr, b"Nats-Batch-Id").is_some() {
            return refuse(ApiError::batch_disabled());
        }
        let mut msg_id = None;
        if let Some(id) = headers::get(hdr, b"Nats-Msg-Id").filter(|v| !v.is_empty()) {
            let id = String::from_utf8_lossy(id).into_owned();
            if let Some(&seq) = self.w.ids.get(&id) {
                return Err(Checked::DuplicatePending(seq));
            }
            if let Some(&seq) = self.dedupe.ids.get(&id) {
                return Err(Checked::Duplicate(seq));
            }
            msg_id = Some(id);
        }
        self.check_expected(subject, hdr)
            .map_err(Checked::Refused)?;
        let rollup = match headers::get(hdr, b"Nats-Rollup") {
            None => Rollup::None,
            Some(_) if !cfg.allow_rollup_hdrs || cfg.deny_purge => {
                return refuse(ApiError::rollup_not_permitted())
            }
            Some(b"sub") => Rollup::Subject,
            Some(b"all") => Rollup::All,
            Some(v) => return refuse(ApiError::rollup_invalid(&String::from_utf8_lossy(v))),
        };
        Ok((msg_id, rollup))
    }

    /// The `Nats-Expected-*` headers, against what is committed or pending.
    fn check_expected(&self, subject: &[u8], hdr: &[u8]) -> Result<(), ApiError> {
        if let Some(v) = headers::get(hdr, b"Nats-Expected-Stream") {
            if v != self.stream.as_bytes() {
                return Err(ApiError::expected_stream());
            }
        }
        let last = self.w.next_seq - 1;
        if let Some(v) = headers::get(hdr, b"Nats-Expected-Last-Sequence") {
            if parse_u64(v) != Some(last) {
                return Err(ApiError::wrong_last_seq(last));
            }
        }
        let subj_filter = headers::get(hdr, b"Nats-Expected-Last-Subject-Sequence-Subject");
        match headers::get(hdr, b"Nats-Expected-Last-Subject-Sequence") {
            Some(v) => {
                let have = last_for(self.ix, self.w, subj_filter.unwrap_or(subject));
                if parse_u64(v) != Some(have) {
                    return Err(ApiError::wrong_last_seq(have));
                }
            }
            None if subj_filter.is_some() => {
                return Err(ApiError::expected_subject_seq_subject_alone())
            }
            None => {}
        }
        if let Some(v) = headers::get(hdr, b"Nats-Expected-Last-Msg-Id") {
            let have = self.w.last_msg_id.as_deref().unwrap_or_default();
            if v != have.as_bytes() {
                return Err(ApiError::wrong_last_msg_id(have));
            }
        }
        Ok(())
    }

    /// Discard new: the limits refuse what would exceed them. A message
    /// larger than max_bytes is refused whatever the discard policy.
    fn check_limits(&self, subject: &[u8], size: u64) -> Result<(), ApiError> {
        let (cfg, ix, w) = (self.cfg, self.ix, self.w);
        let full = |what| Err(ApiError::store_failed(what));
        if cfg.discard_new() {
            if cfg.max_msgs > 0 && ix.msgs + w.msgs >= cfg.max_msgs as u64 {
                return full("maximum messages exceeded");
            }
            if cfg.max_bytes > 0 && ix.bytes + w.bytes + size > cfg.max_bytes as u64 {
                return full("maximum bytes exceeded");
            }
            if cfg.discard_new_per_subject && cfg.max_msgs_per_subject > 0 {
                let have = ix.subject(subject).map_or(0, |s| s.count)
                    + w.subj_pending.get(subject).map_or(0, |p| p.0);
                if have >= cfg.max_msgs_per_subject as u64 {
                    return full("maximum messages per subject exceeded");
                }
            }
        }
        if cfg.max_bytes > 0 && size > cfg.max_bytes as u64 {
            return full("maximum bytes exceeded");
        }
        Ok(())
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
