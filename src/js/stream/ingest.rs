//! Publishing into a stream: the checks of every publish header, limits with
//! discard new, duplicates (`check`, pure over the stream's state), then
//! staging the accepted record for the writer (`stage_msg`), where a
//! publish and a message copied from a source or mirror end alike.

use bytes::Bytes;

use crate::js::store::index::{msg_size, Index, StoredMsg};
use crate::js::store::record;
use crate::js::stream::dedupe::Dedupe;
use crate::js::stream::ttl::{self, Ttl};
use crate::js::stream::{pub_err, Ingest, LinkTag, Pending, Rollup, Staged, Stream, WriteState};
use crate::js::types::errors::ApiError;
use crate::js::types::stream_config::StreamConfig;
use crate::limits::{HEADERS_MAX, STREAM_INGEST_BYTES, STREAM_INGEST_MSGS};
use crate::protocol::headers;

/// What the publish headers say: message id, rollup, TTL (checked later).
type HeaderFacts = (Option<String>, Rollup, Result<Ttl, ttl::InvalidTtl>);

/// What the checks of a publish decided.
enum Checked {
    /// Store it, with its message id and rollup.
    Store {
        msg_id: Option<String>,
        rollup: Rollup,
        size: u64,
        ttl: Ttl,
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
    pub ttl: Ttl,
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
        let mapped = self.map_subject(subject);
        let subject = mapped.as_ref().unwrap_or(subject);
        let checked = {
            let cfg = self.cfg.borrow();
            let ix = self.ix.borrow();
            let w = self.w.borrow();
            let dedupe = self.dedupe.borrow();
            let at = Publish {
                stream: &self.name,
                closed: self.closed.get(),
                room: self.room_left(cfg.memory()),
                cfg: &cfg,
                ix: &ix,
                w: &w,
                dedupe: &dedupe,
            };
            at.check(subject, &msg[..hdr_len], msg.len())
        };
        let (msg_id, rollup, size, ttl) = match checked {
            Checked::Store {
                msg_id,
                rollup,
                size,
                ttl,
            } => (msg_id, rollup, size, ttl),
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
        let (ttl, raised) = self.marker_floor(ttl, msg, hdr_len);
        let (msg, hdr_len) = raised.as_ref().map_or((msg, hdr_len), |(m, h)| (m, *h));
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
            ttl,
        });
        Ingest::Accepted
    }

    /// Checks and stages a copy from an origin.
    pub fn stage_copy(&self, c: CopyIn) -> Result<(), CopyRefused> {
        let mapped = self.map_subject(c.subject);
        let subject = mapped.as_ref().unwrap_or(c.subject);
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
                room: self.room_left(cfg.memory()),
                cfg: &cfg,
                ix: &ix,
                w: &w,
                dedupe: &dedupe,
            };
            at.check_copy(subject, &c.msg[..c.hdr_len], c.msg.len(), c.dedupe)
        };
        let (msg_id, rollup, size, ttl) = match checked {
            Checked::Store {
                msg_id,
                rollup,
                size,
                ttl,
            } => (msg_id, rollup, size, ttl),
            Checked::Duplicate(_) | Checked::DuplicatePending(_) => return Err(CopyRefused::Skip),
            Checked::Refused(e) if e.err_code == 10167 => return Err(CopyRefused::Congested),
            Checked::Refused(e) => return Err(CopyRefused::Store(e)),
        };
        let seq = c.seq.unwrap_or_else(|| self.w.borrow().next_seq);
        let (ttl, raised) = self.marker_floor(ttl, c.msg, c.hdr_len);
        let (msg, hdr_len) = raised.as_ref().map_or((c.msg, c.hdr_len), |(m, h)| (m, *h));
        self.stage_msg(Accepted {
            seq,
            ts: c.ts,
            subject,
            hdr_len,
            msg,
            size,
            reply: None,
            msg_id,
            rollup,
            link: Some(c.tag),
            ttl,
        });
        Ok(())
    }

    /// The stream's own subject transform, where it maps `subject`.
    fn map_subject(&self, subject: &Bytes) -> Option<Bytes> {
        let t = self.input_transform.borrow();
        t.as_ref()?.apply(subject).map(Bytes::from)
    }

    /// With subject delete markers, a TTL shorter than the markers' is raised
    /// to theirs (a marker already there would outlive it), its header
    /// rewritten in whole seconds; not where a subject keeps one message.
    fn marker_floor(&self, ttl: Ttl, msg: &Bytes, hdr_len: usize) -> (Ttl, Option<(Bytes, usize)>) {
        let cfg = self.cfg.borrow();
        let floor = cfg.subject_delete_marker_ttl / 1_000_000_000;
        match ttl {
            Ttl::Secs(n) if floor > 0 && n < floor && cfg.max_msgs_per_subject != 1 => {
                let secs = floor.to_string();
                let hdr = headers::rewrite(
                    &msg[..hdr_len],
                    |name| name == b"Nats-TTL",
                    &[("Nats-TTL", secs.as_bytes())],
                )
                .expect("a header is added");
                let mut out = Vec::with_capacity(hdr.len() + msg.len() - hdr_len);
                out.extend_from_slice(&hdr);
                out.extend_from_slice(&msg[hdr_len..]);
                (Ttl::Secs(floor), Some((Bytes::from(out), hdr.len())))
            }
            _ => (ttl, None),
        }
    }

    /// Stages an accepted message for the next write, and shows it to the
    /// stream's consumers at once (the preview).
    /// Room left under the server's limit for this stream's storage kind.
    fn room_left(&self, memory: bool) -> i64 {
        self.room.get().map_or(i64::MAX, |r| r.left(memory))
    }

    pub(super) fn stage_msg(&self, a: Accepted) {
        let file = self.is_file();
        if let Some(room) = self.room.get() {
            room.take(!file, a.size);
        }
        let markers = self.cfg.borrow().subject_delete_marker_ttl > 0;
        {
            let mut w = self.w.borrow_mut();
            assert!(a.seq >= w.next_seq, "sequences are given in order");
            w.next_seq = a.seq + 1;
            w.make_room(if file {
                record::encoded_len(a.subject.len(), a.msg.len())
            } else {
                0
            });
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
            match w.subj_pending.get_mut(a.subject) {
                Some(e) => *e = (e.0 + 1, a.seq),
                None => {
                    // A copy: the key stays while the subject has messages in
                    // flight, which on a busy subject is as long as it is
                    // busy; a slice would pin the whole read buffer or batch.
                    let key = Bytes::copy_from_slice(a.subject);
                    w.subj_pending.insert(key, (1, a.seq));
                }
            }
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
                ttl: a.ttl,
                flags: ttl::flags_of(&a.msg[..a.hdr_len], a.ttl, markers),
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
    /// Room left under the server's storage limit for this stream's kind.
    room: i64,
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
        if self.room < 0 {
            return refuse(ApiError::insufficient_resources());
        }
        let (msg_id, rollup, ttl) = if hdr.is_empty() {
            (None, Rollup::None, Ok(Ttl::None))
        } else {
            match self.check_headers(subject, hdr) {
                Ok(found) => found,
                Err(c) => return c,
            }
        };
        let size = msg_size(cfg.memory(), subject.len(), hdr.len(), len - hdr.len());
        if let Err(e) = self.check_limits(subject, size, rollup) {
            return refuse(e);
        }
        // Read once with the other headers; refused this late, as there.
        let Ok(ttl) = ttl else {
            return refuse(ApiError::ttl_invalid());
        };
        Checked::Store {
            msg_id,
            rollup,
            size,
            ttl,
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
        if self.room < 0 {
            return refuse(ApiError::insufficient_resources());
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
        let rollup = match value(hdr, b"Nats-Rollup").map(<[u8]>::to_ascii_lowercase) {
            Some(v) if v == b"sub" && cfg.allow_rollup_hdrs && !cfg.deny_purge => Rollup::Subject,
            Some(v) if v == b"all" && cfg.allow_rollup_hdrs && !cfg.deny_purge => Rollup::All,
            _ => Rollup::None,
        };
        let size = msg_size(cfg.memory(), subject.len(), hdr.len(), len - hdr.len());
        if let Err(e) = self.check_limits(subject, size, rollup) {
            return refuse(e);
        }
        // Stored as it came; an unreadable TTL is no TTL.
        let ttl = Ttl::of(hdr).unwrap_or(Ttl::None);
        Checked::Store {
            msg_id,
            rollup,
            size,
            ttl,
        }
    }

    /// The publish headers, in nats-server's order: expectations, TTL
    /// allowed, the source header, message id (duplicates), rollup.
    fn check_headers(&self, subject: &[u8], hdr: &[u8]) -> Result<HeaderFacts, Checked> {
        let refuse = |e| Err(Checked::Refused(e));
        let cfg = self.cfg;
        if value(hdr, b"Nats-Batch-Id").is_some() {
            return refuse(ApiError::batch_disabled());
        }
        if let Some(v) = value(hdr, b"Nats-Incr") {
            let digits = v.strip_prefix(b"-").or(v.strip_prefix(b"+")).unwrap_or(v);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return refuse(ApiError::counter_invalid());
            }
            return refuse(ApiError::counters_disabled());
        }
        if let Some(v) = value(hdr, b"Nats-Expected-Stream") {
            if v != self.stream.as_bytes() {
                return refuse(ApiError::expected_stream());
            }
        }
        // An unreadable TTL is refused as invalid later, allowed or not.
        let ttl = Ttl::of(hdr);
        if !cfg.allow_msg_ttl && matches!(ttl, Ok(Ttl::Secs(_) | Ttl::Never)) {
            return refuse(ApiError::ttl_disabled());
        }
        self.check_expected_seqs(subject, hdr)
            .map_err(Checked::Refused)?;
        if value(hdr, b"Nats-Schedule").is_some() {
            return refuse(ApiError::schedules_disabled());
        }
        if headers::get(hdr, b"Nats-Stream-Source").is_some() {
            return refuse(ApiError::source_header_not_allowed());
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
        if let Some(v) = value(hdr, b"Nats-Expected-Last-Msg-Id") {
            let have = self.w.last_msg_id.as_deref().unwrap_or_default();
            if v != have.as_bytes() {
                return refuse(ApiError::wrong_last_msg_id(have));
            }
        }
        let rollup = match value(hdr, b"Nats-Rollup").map(<[u8]>::to_ascii_lowercase) {
            None => Rollup::None,
            Some(_) if !cfg.allow_rollup_hdrs || cfg.deny_purge => {
                return refuse(ApiError::rollup_not_permitted())
            }
            Some(v) if v == b"sub" => Rollup::Subject,
            Some(v) if v == b"all" => Rollup::All,
            Some(v) => return refuse(ApiError::rollup_invalid(&String::from_utf8_lossy(&v))),
        };
        Ok((msg_id, rollup, ttl))
    }

    /// `Nats-Expected-Last-Subject-Sequence` and `-Last-Sequence`, against
    /// what is committed or pending.
    fn check_expected_seqs(&self, subject: &[u8], hdr: &[u8]) -> Result<(), ApiError> {
        let last = self.w.next_seq - 1;
        let subj_filter = value(hdr, b"Nats-Expected-Last-Subject-Sequence-Subject");
        match value(hdr, b"Nats-Expected-Last-Subject-Sequence") {
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
        if let Some(v) = value(hdr, b"Nats-Expected-Last-Sequence") {
            if parse_u64(v) != Some(last) {
                return Err(ApiError::wrong_last_seq(last));
            }
        }
        Ok(())
    }

    /// Discard new: the limits refuse what would exceed them, as nats-server
    /// checks them. A subject at its per-subject limit is refused with
    /// `discard_new_per_subject` unless the message is a rollup (it replaces
    /// the subject's messages); otherwise the message will replace the
    /// subject's first, so `max_msgs` does not refuse it, and `max_bytes` only
    /// when it is larger than that first. A message larger than max_bytes is
    /// refused whatever the discard policy.
    fn check_limits(&self, subject: &[u8], size: u64, rollup: Rollup) -> Result<(), ApiError> {
        let (cfg, ix, w) = (self.cfg, self.ix, self.w);
        let full = |what| Err(ApiError::store_failed(what));
        if cfg.discard_new() {
            let per = cfg.max_msgs_per_subject;
            let at_subject_limit = per > 0 && {
                let have = ix.subject(subject).map_or(0, |s| s.count)
                    + w.subj_pending.get(subject).map_or(0, |p| p.0);
                have >= per as u64
            };
            if at_subject_limit && cfg.discard_new_per_subject && rollup == Rollup::None {
                return full("maximum messages per subject exceeded");
            }
            if !at_subject_limit && cfg.max_msgs > 0 && ix.msgs + w.msgs >= cfg.max_msgs as u64 {
                return full("maximum messages exceeded");
            }
            if cfg.max_bytes > 0
                && ix.bytes + w.bytes + size > cfg.max_bytes as u64
                && !(at_subject_limit && first_size(ix, subject).is_some_and(|f| f >= size))
            {
                return full("maximum bytes exceeded");
            }
        }
        if cfg.max_bytes > 0 && size > cfg.max_bytes as u64 {
            return full("maximum bytes exceeded");
        }
        Ok(())
    }
}

/// The stored size of `subject`'s first live message (a read of a cold page
/// at worst: only asked when a subject at its limit meets `max_bytes`).
fn first_size(ix: &Index, subject: &[u8]) -> Option<u64> {
    let e = ix.entry(ix.first_live(subject)?)?;
    Some(ix.size_of(&e))
}

/// A header's value; an empty one counts as absent, as on nats-server.
fn value<'a>(hdr: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    headers::get(hdr, key).filter(|v| !v.is_empty())
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
