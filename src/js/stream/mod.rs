//! One stream on its owner shard: publish checks, group commit, limits, reads.
//!
//! State split, so that an ack never claims more than the disk holds:
//! - `ix` (the index) holds only committed messages: written, and synced when
//!   the sync mode says so. Reads and stream info see only these.
//! - `w` holds what was accepted but not yet committed: staged record bytes and
//!   the pending acks, plus provisional counters (next sequence, last msg id)
//!   that the publish checks (expected-last-sequence, duplicates, discard new)
//!   consult together with the index.
//!
//! The writer task takes everything staged, writes it in one go (O_DIRECT,
//! then fdatasync), applies it to the index, enforces limits, and only then
//! sends the acks. A failed write fails every pending publish with an error
//! and cuts the file back to the committed end, so a publish that got an error
//! never reappears.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::Bytes;

use crate::js::store::index::{msg_size, Index, StoredMsg};
use crate::js::store::record;
use crate::js::store::segment::{self as filelog, FileLog};
use crate::js::types::errors::ApiError;
use crate::js::types::stream_config::StreamConfig;
use crate::limits::{
    DEDUPE_BYTES_MAX, DEDUPE_IDS_MAX, STREAM_CACHE_BYTES, STREAM_INGEST_BYTES, STREAM_INGEST_MSGS,
    STREAM_WRITES_IN_FLIGHT,
};
use crate::notify::{Event, Notify};
use crate::protocol::headers;

/// One write in flight and the publishes it will acknowledge.
struct Flight {
    /// None for a batch with nothing to write (it completes with the one before).
    task: Option<glommio::Task<std::io::Result<()>>>,
    pending: Vec<Pending>,
    seg: u64,
    base: u64,
    end: u64,
    restore: Option<filelog::Restore>,
    /// The records written (cached messages are slices of it).
    batch: Bytes,
}

/// What a stored message asks for after it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollup {
    None,
    Subject,
    All,
}

enum Pending {
    Msg {
        seq: u64,
        ts: i64,
        subject: Bytes,
        hdr_len: usize,
        /// Memory streams: a copy of header + payload. File streams read it
        /// from the written batch, so nothing pins a connection's read buffer.
        data: Option<Bytes>,
        len: usize,
        /// Offset of its record in the staged bytes.
        rel: usize,
        reply: Option<Bytes>,
        msg_id: Option<String>,
        rollup: Rollup,
    },
    /// A duplicate of a message not yet committed: acked with it.
    Dup { seq: u64, reply: Bytes },
    /// Completion of an API operation whose records are staged.
    Op(Rc<Cell<Option<Result<(), ApiError>>>>),
    /// A live message copied forward by compaction (record at `rel`).
    Move { seq: u64, rel: usize },
}

#[derive(Default)]
struct WriteState {
    staged: Vec<u8>,
    pending: Vec<Pending>,
    /// Next sequence to assign (provisional).
    next_seq: u64,
    /// Messages and accounting bytes accepted but not committed.
    msgs: u64,
    bytes: u64,
    last_msg_id: Option<String>,
    /// Per-subject count of pending messages (for discard new per subject).
    subj_pending: AHashMap<Bytes, (u64, u64)>,
    /// Pending message ids → sequence.
    ids: AHashMap<String, u64>,
    /// Delete or floor records are among the staged bytes.
    markers_staged: bool,
    /// Records to overwrite once nothing is in flight.
    erases: Vec<Erase>,
}

/// A deleted message's record to overwrite on disk.
struct Erase {
    seq: u64,
    seg: u64,
    off: u64,
    len: usize,
    done: Rc<Cell<Option<Result<(), ApiError>>>>,
}

/// Remembered message ids within the duplicate window, oldest first.
#[derive(Default)]
struct Dedupe {
    ids: AHashMap<String, u64>,
    order: VecDeque<(i64, String)>,
    bytes: usize,
}

impl Dedupe {
    fn insert(&mut self, id: String, seq: u64, ts: i64) {
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
    fn expire(&mut self, cutoff: i64) {
        while self.order.front().is_some_and(|(ts, _)| *ts < cutoff) {
            let (_, id) = self.order.pop_front().expect("checked");
            self.bytes -= id.len();
            self.ids.remove(&id);
        }
    }
}

pub struct Stream {
    pub uid: u32,
    pub name: String,
    pub dir: PathBuf,
    pub cfg: RefCell<StreamConfig>,
    pub created: i64,
    pub ix: RefCell<Index>,
    log: RefCell<Option<FileLog>>,
    w: RefCell<WriteState>,
    dedupe: RefCell<Dedupe>,
    last_msg_id: RefCell<Option<String>>,
    /// Wakes the writer task.
    wake: Notify,
    /// Fired after every commit (and failure), for waiters on durability.
    pub committed: Event,
    /// Set when the stream is deleted or the server stops: the writer exits.
    pub closed: Cell<bool>,
    writer_done: Event,
    writer_running: Cell<bool>,
    /// Last I/O error, for logs and `store failed` answers.
    pub io_error: RefCell<Option<String>>,
    /// Compaction moves staged and not yet committed.
    moves_pending: Cell<usize>,
    /// Consumers of this stream, by name (owned here; cleared on delete).
    pub consumers: RefCell<std::collections::BTreeMap<String, Rc<crate::js::consumer::Consumer>>>,
    /// Interest retention: messages up to here were checked for interest.
    pub interest_checked: Cell<u64>,
    /// Accepted messages whose write has not completed, ascending, kept while
    /// the stream has consumers so they deliver without waiting for the disk
    /// (nats-server delivers from its cache the same way). Bounded by the
    /// ingest bounds: it holds only what is staged or in flight. Emptied as
    /// writes commit; cleared, and consumers rewound, when a write fails.
    preview: RefCell<VecDeque<StoredMsg>>,
}

/// The answer to a publish that the caller sends at once (errors, duplicates
/// of committed messages); stored publishes are answered by the writer.
pub enum Ingest {
    Accepted,
    Reply(Vec<u8>),
    /// Nothing to send (no reply subject).
    Silent,
}

pub fn pub_ack(stream: &str, seq: u64, duplicate: bool) -> Vec<u8> {
    let name = crate::js::types::json::go_escape(serde_json::to_vec(stream).expect("string"));
    let mut out = Vec::with_capacity(48 + name.len());
    out.extend_from_slice(b"{\"stream\":");
    out.extend_from_slice(&name);
    out.extend_from_slice(format!(",\"seq\":{seq}").as_bytes());
    if duplicate {
        // nats-server writes this one field with a space after the colon.
        out.extend_from_slice(b",\"duplicate\": true");
    }
    out.push(b'}');
    out
}

pub fn pub_err(stream: &str, e: &ApiError) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct R<'a> {
        error: &'a ApiError,
        stream: &'a str,
        seq: u64,
    }
    crate::js::types::json::encode(&R {
        error: e,
        stream,
        seq: 0,
    })
}

impl Stream {
    pub fn new(
        uid: u32,
        cfg: StreamConfig,
        created: i64,
        dir: PathBuf,
        ix: Index,
        log: Option<FileLog>,
        last_msg_id: Option<String>,
    ) -> Stream {
        let next = ix.last_seq() + 1;
        Stream {
            uid,
            name: cfg.name.clone(),
            dir,
            cfg: RefCell::new(cfg),
            created,
            ix: RefCell::new(ix),
            log: RefCell::new(log),
            w: RefCell::new(WriteState {
                next_seq: next,
                last_msg_id: last_msg_id.clone(),
                ..Default::default()
            }),
            dedupe: RefCell::new(Dedupe::default()),
            last_msg_id: RefCell::new(last_msg_id),
            wake: Notify::new(),
            committed: Event::default(),
            closed: Cell::new(false),
            writer_done: Event::default(),
            writer_running: Cell::new(false),
            io_error: RefCell::new(None),
            moves_pending: Cell::new(0),
            consumers: RefCell::new(std::collections::BTreeMap::new()),
            interest_checked: Cell::new(next - 1),
            preview: RefCell::new(VecDeque::new()),
        }
    }

    /// Remembers a recovered message id (start-up).
    pub fn remember_id(&self, id: String, seq: u64, ts: i64) {
        self.dedupe.borrow_mut().insert(id, seq, ts);
    }

    pub fn is_file(&self) -> bool {
        self.log.borrow().is_some()
    }

    /// Bytes staged or pending: above the stall threshold the publisher waits.
    pub fn congested(&self) -> bool {
        let w = self.w.borrow();
        w.staged.len() * 100 > STREAM_INGEST_BYTES * crate::limits::STALL_THRESHOLD_PERCENT
            || w.pending.len() * 100 > STREAM_INGEST_MSGS * crate::limits::STALL_THRESHOLD_PERCENT
    }

    /// Waits while the stream is congested (back-pressure on a publisher), at
    /// most `STREAM_STALL_MAX` per call so shards feeding each other's streams
    /// can never wait on each other for good; the hard cap (429) still holds.
    pub async fn wait_uncongested(&self) {
        let wait = async {
            while self.congested() && !self.closed.get() {
                self.committed.wait().await;
            }
        };
        futures_lite::future::or(wait, glommio::timer::sleep(crate::limits::STREAM_STALL_MAX))
            .await;
    }

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

    /// The sequence the next accepted message will get.
    pub fn next_seq(&self) -> u64 {
        self.w.borrow().next_seq
    }

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
    fn preview_committed(&self) {
        let last = self.ix.borrow().last_seq();
        let mut pv = self.preview.borrow_mut();
        while pv.front().is_some_and(|m| m.seq <= last) {
            pv.pop_front();
        }
    }

    /// Stages a delete or floor record for the next write (file streams).
    fn stage(&self, kind: u8, seq: u64) {
        if self.is_file() {
            let mut w = self.w.borrow_mut();
            record::encode(
                &mut w.staged,
                kind,
                seq,
                crate::js::types::json::now_nanos(),
                b"",
                0,
                b"",
            );
            w.markers_staged = true;
            drop(w);
            self.wake.notify();
        }
    }

    /// Waits until everything staged so far is committed; the result of that write.
    pub async fn sync_point(&self) -> Result<(), ApiError> {
        let done = Rc::new(Cell::new(None));
        self.w.borrow_mut().pending.push(Pending::Op(done.clone()));
        self.wake.notify();
        self.wait_done(&done).await
    }

    /// Waits for the writer to fill `done` (or to stop).
    async fn wait_done(&self, done: &Cell<Option<Result<(), ApiError>>>) -> Result<(), ApiError> {
        loop {
            if let Some(r) = done.take() {
                return r;
            }
            if self.closed.get() && !self.writer_running.get() {
                return Err(ApiError::stream_not_found());
            }
            self.committed.wait().await;
        }
    }

    /// Removes message `seq` (MSG.DELETE); durable before it returns Ok. With
    /// `erase` the record's bytes on disk are then overwritten too.
    pub async fn delete_msg(&self, seq: u64, erase: bool) -> Result<(), ApiError> {
        let at = {
            let ix = self.ix.borrow();
            ix.entry(seq).map(|e| {
                (
                    e.seg,
                    e.off,
                    record::encoded_len(ix.subject_of(e).len(), e.len as usize),
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
    async fn erase(&self, e: &Erase) -> Result<(), ApiError> {
        let fail =
            |why: String| ApiError::msg_delete_failed(format!("message erase failed: {why}"));
        let file = {
            let log = self.log.borrow();
            match log
                .as_ref()
                .and_then(|l| l.segs.get(&e.seg))
                .and_then(|s| s.file.clone())
            {
                Some(f) => f,
                // The segment is gone already: nothing left to erase.
                None => return Ok(()),
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
        let at = (e.off - start) as usize;
        blocks[at..at + e.len].copy_from_slice(&rec);
        // The writer keeps its own copy of the active segment's last block.
        if let Some(log) = self.log.borrow_mut().as_mut() {
            log.patch_carry(e.seg, start, &blocks);
        }
        let job = filelog::WriteJob::single(file, start, &blocks);
        job.run().await.map_err(|x| fail(x.to_string()))
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

    /// Wakes every consumer (new messages, removals).
    pub fn wake_consumers(&self) {
        for c in self.consumers.borrow().values() {
            c.wake.notify();
        }
    }

    fn segment_lost(&self, seg: u64) {
        if let Some(log) = self.log.borrow_mut().as_mut() {
            if let Some(s) = log.segs.get_mut(&seg) {
                s.live = s.live.saturating_sub(1);
            }
        }
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
                            // Keep the newest k per matching subject... nats-server keeps k of the filter.
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

    /// Reads message `seq` (cache, else disk, verifying the record).
    pub async fn load(&self, seq: u64) -> Option<StoredMsg> {
        let (seg, off, len, subj_len) = {
            let ix = self.ix.borrow();
            if let Some(m) = ix.cached(seq) {
                return Some(m);
            }
            let e = ix.entry(seq)?;
            let subj_len = ix.subject_of(e).len();
            (
                e.seg,
                e.off,
                record::encoded_len(subj_len, e.len as usize),
                subj_len,
            )
        };
        let file = self.log.borrow().as_ref()?.segs.get(&seg)?.file.clone()?;
        let bytes = match filelog::read_at(&file, off, len).await {
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
                let data = Bytes::copy_from_slice(r.data);
                let msg = StoredMsg {
                    seq,
                    ts: r.ts,
                    subject: Bytes::copy_from_slice(r.subject),
                    hdr_len: r.hdr_len,
                    data: data.clone(),
                };
                let mut ix = self.ix.borrow_mut();
                ix.fill_cache(seq, data);
                ix.evict(STREAM_CACHE_BYTES);
                Some(msg)
            }
            _ => {
                crate::error!(
                    "JetStream stream '{}': sequence {seq} failed its checksum on read; not served",
                    self.name
                );
                None
            }
        }
    }

    /// Reads message `seq` and the live messages stored after it in the same
    /// segment, about `window` bytes in one read (sequential consumers read
    /// ahead this way instead of one read per message). Only records the
    /// index still points at are returned; the cache is left alone.
    pub async fn load_run(&self, seq: u64, window: usize) -> Vec<StoredMsg> {
        let (seg, off) = {
            let ix = self.ix.borrow();
            if let Some(m) = ix.cached(seq) {
                return vec![m];
            }
            match ix.entry(seq) {
                Some(e) => (e.seg, e.off),
                None => return Vec::new(),
            }
        };
        let Some(file) = self
            .log
            .borrow()
            .as_ref()
            .and_then(|l| l.segs.get(&seg))
            .and_then(|s| s.file.clone())
        else {
            return Vec::new();
        };
        let start = off & !(filelog::BLOCK - 1);
        let bytes =
            match filelog::read_blocks(file, start, window.max(filelog::BLOCK as usize)).await {
                Ok(b) => b,
                Err(e) => {
                    crate::error!(
                        "JetStream stream '{}': reading sequence {seq}: {e}",
                        self.name
                    );
                    return Vec::new();
                }
            };
        let max_record = record::HEADER + 64 * 1024 + crate::limits::PAYLOAD_MAX_LIMIT + 65_536;
        // Messages are slices of the one read buffer: no copy per message.
        let buf = Bytes::from(bytes);
        let bytes = &buf[..];
        let mut out = Vec::new();
        let mut pos = (off - start) as usize;
        {
            let ix = self.ix.borrow();
            while pos < bytes.len() {
                match record::decode(&bytes[pos..], max_record) {
                    record::Decoded::Record(r, n) => {
                        let here = start + pos as u64;
                        let live = ix
                            .entry(r.seq)
                            .is_some_and(|e| e.seg == seg && e.off == here);
                        if live && matches!(r.kind, record::KIND_MSG | record::KIND_MOVED) {
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
                        }
                        pos += n;
                    }
                    // The window ends inside a record, at the tail, or at damage
                    // (the first record was checked by recovery; read it singly).
                    _ => break,
                }
            }
        }
        if out.first().map(|m| m.seq) != Some(seq) {
            return self.load(seq).await.into_iter().collect();
        }
        out
    }

    /// Removes messages past `max_age`; true if any went.
    pub fn expire(&self, now: i64) -> bool {
        let max_age = self.cfg.borrow().max_age;
        if max_age <= 0 {
            return false;
        }
        let cutoff = now - max_age;
        let mut any = false;
        loop {
            let oldest = self.ix.borrow().oldest();
            match oldest {
                Some((seq, ts)) if ts <= cutoff => {
                    let r = self.ix.borrow_mut().remove(seq);
                    if let Some(r) = r {
                        self.segment_lost(r.seg);
                    }
                    any = true;
                }
                _ => break,
            }
        }
        if any {
            let first = self.ix.borrow().first_seq();
            self.stage(record::KIND_FLOOR, first);
        }
        let window = self.cfg.borrow().duplicate_window;
        self.dedupe.borrow_mut().expire(now - window);
        any
    }

    /// Applies the limits (discard old) after a config change.
    pub fn enforce_limits(&self) {
        let per = self.cfg.borrow().max_msgs_per_subject;
        if per > 0 {
            let over: Vec<Bytes> = self
                .ix
                .borrow()
                .subjects_matching(b">")
                .into_iter()
                .filter(|(_, n)| *n > per as u64)
                .map(|(s, _)| s)
                .collect();
            for s in over {
                self.trim_subject(&s, per as u64);
            }
        }
        self.enforce_global();
    }

    fn trim_subject(&self, subject: &[u8], max: u64) {
        loop {
            let first = {
                let mut ix = self.ix.borrow_mut();
                match ix.subject(subject) {
                    Some(s) if s.count > max => ix.first_of(subject),
                    _ => None,
                }
            };
            match first {
                Some(seq) => {
                    self.remove_and_record(seq);
                }
                None => break,
            }
        }
    }

    /// Applies one committed batch to the index; returns the replies to send.
    fn commit(
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

    fn enforce_global(&self) {
        let cfg = self.cfg.borrow().clone();
        let mut moved = false;
        loop {
            let (msgs, bytes, first) = {
                let ix = self.ix.borrow();
                (ix.msgs, ix.bytes, ix.first_seq())
            };
            let over = (cfg.max_msgs > 0 && msgs > cfg.max_msgs as u64)
                || (cfg.max_bytes > 0 && bytes > cfg.max_bytes as u64);
            if !over || msgs == 0 {
                break;
            }
            let r = self.ix.borrow_mut().remove(first);
            if let Some(r) = r {
                self.segment_lost(r.seg);
            }
            moved = true;
        }
        if moved {
            let first = self.ix.borrow().first_seq();
            self.stage(record::KIND_FLOOR, first);
        }
    }

    /// Fails every pending publish after a failed write; returns the replies.
    fn fail(&self, pending: Vec<Pending>, err: &ApiError) -> Vec<(Bytes, Vec<u8>)> {
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

    /// Deletes segments whose messages are all gone (never the active one).
    pub async fn gc_segments(&self) {
        let doomed: Vec<u64> = match self.log.borrow().as_ref() {
            None => return,
            Some(log) => {
                // A segment holding delete/floor records speaks for older
                // segments: it goes only once nothing older is left.
                let mut oldest = true;
                let mut out = Vec::new();
                for (k, s) in &log.segs {
                    let gone = *k != log.active && s.live == 0 && (oldest || !s.markers);
                    if gone {
                        out.push(*k);
                    } else {
                        oldest = false;
                    }
                }
                out
            }
        };
        for first in doomed {
            let seg = self
                .log
                .borrow_mut()
                .as_mut()
                .and_then(|l| l.take_segment(first));
            if let Some(seg) = seg {
                filelog::discard_segment(seg, &self.name).await;
            }
        }
        self.compact().await;
    }

    /// Compaction: when the oldest segment holds a few live messages and keeps a
    /// newer, dead segment (one with delete records) from being reclaimed, copy
    /// those messages forward (same sequence and time, `KIND_MOVED`). Once that
    /// write commits, the oldest segment has no live message and goes, and the
    /// dead ones after it follow.
    async fn compact(&self) {
        if self.moves_pending.get() > 0 || self.closed.get() {
            return;
        }
        let target = {
            let log = self.log.borrow();
            let Some(log) = log.as_ref() else { return };
            let mut it = log.segs.iter();
            match (it.next(), it.next()) {
                (Some((&oldest, s0)), Some((&second, s1)))
                    if oldest != log.active
                        && second != log.active
                        && s0.live > 0
                        && s0.live <= crate::limits::COMPACT_LIVE_MAX
                        && s1.live == 0 =>
                {
                    Some((oldest, second))
                }
                _ => None,
            }
        };
        let Some((oldest, second)) = target else {
            return;
        };
        let seqs: Vec<u64> = {
            let ix = self.ix.borrow();
            // Moved messages sit below their segment's name: scan from the first.
            (ix.first_seq()..second.min(ix.last_seq() + 1))
                .filter(|&q| ix.entry(q).is_some_and(|e| e.seg == oldest))
                .collect()
        };
        let mut msgs = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(m) = self.load(seq).await {
                msgs.push(m);
            }
        }
        let mut w = self.w.borrow_mut();
        let ix = self.ix.borrow();
        for m in msgs {
            // Deleted meanwhile: nothing to move (its delete is staged already).
            if ix.entry(m.seq).is_none_or(|e| e.seg != oldest) {
                continue;
            }
            let rel = w.staged.len();
            record::encode(
                &mut w.staged,
                record::KIND_MOVED,
                m.seq,
                m.ts,
                &m.subject,
                m.hdr_len,
                &m.data,
            );
            w.pending.push(Pending::Move { seq: m.seq, rel });
            self.moves_pending.set(self.moves_pending.get() + 1);
        }
        drop(ix);
        drop(w);
        self.wake.notify();
    }

    /// The writer: group commit until the stream closes. Up to
    /// `STREAM_WRITES_IN_FLIGHT` writes overlap; they complete, and are
    /// acknowledged, strictly in order.
    pub async fn run_writer(self: Rc<Self>, shard: Rc<crate::shard::Shard>) {
        self.writer_running.set(true);
        let mut flights: VecDeque<Flight> = VecDeque::new();
        loop {
            if flights.is_empty() && !self.w.borrow().erases.is_empty() {
                let erases = std::mem::take(&mut self.w.borrow_mut().erases);
                for e in erases {
                    let r = self.erase(&e).await;
                    e.done.set(Some(r));
                }
                self.committed.notify_all();
                continue;
            }
            let has_work = {
                let w = self.w.borrow();
                !w.staged.is_empty() || !w.pending.is_empty() || !w.erases.is_empty()
            };
            let roll_blocked =
                !flights.is_empty() && self.log.borrow().as_ref().is_some_and(|l| l.should_roll());
            if has_work && flights.len() < STREAM_WRITES_IN_FLIGHT && !roll_blocked {
                let (staged, pending, next_seq) = {
                    let mut w = self.w.borrow_mut();
                    (
                        std::mem::take(&mut w.staged),
                        std::mem::take(&mut w.pending),
                        w.next_seq,
                    )
                };
                let markers = std::mem::take(&mut self.w.borrow_mut().markers_staged);
                if !self.is_file() || staged.is_empty() {
                    // Nothing to write (memory stream, or only waiters): commit in order.
                    if flights.is_empty() {
                        let replies = self.commit(pending, 0, 0, &Bytes::new());
                        self.after_commit(&shard, replies).await;
                    } else {
                        flights.push_back(Flight {
                            task: None,
                            pending,
                            seg: 0,
                            base: 0,
                            end: 0,
                            restore: None,
                            batch: Bytes::new(),
                        });
                    }
                    continue;
                }
                // A new segment is named by the first message it will hold.
                let first = pending
                    .iter()
                    .find_map(|p| match p {
                        Pending::Msg { seq, .. } => Some(*seq),
                        _ => None,
                    })
                    .unwrap_or(next_seq);
                match self.launch(&staged, first).await {
                    Ok((task, seg, base, restore)) => {
                        let end = base + staged.len() as u64;
                        if markers {
                            if let Some(s) = self
                                .log
                                .borrow_mut()
                                .as_mut()
                                .and_then(|l| l.segs.get_mut(&seg))
                            {
                                s.markers = true;
                            }
                        }
                        flights.push_back(Flight {
                            task: Some(task),
                            pending,
                            seg,
                            base,
                            end,
                            restore: Some(restore),
                            batch: Bytes::from(staged),
                        });
                    }
                    Err(e) => {
                        let replies = self.write_failed(&e, pending, Vec::new());
                        self.after_commit(&shard, replies).await;
                    }
                }
                continue;
            }
            if flights.is_empty() {
                if !has_work {
                    if self.closed.get() {
                        break;
                    }
                    self.wake.wait().await;
                }
                continue;
            }
            // Wait for the oldest write; or for new work while there is room.
            let can_launch = flights.len() < STREAM_WRITES_IN_FLIGHT && !roll_blocked;
            let result = {
                let head = &mut flights[0];
                match &mut head.task {
                    None => Some(Ok(())),
                    Some(task) if can_launch => {
                        futures_lite::future::or(async { Some(task.await) }, async {
                            self.wake.wait().await;
                            None
                        })
                        .await
                    }
                    Some(task) => Some(task.await),
                }
            };
            let Some(result) = result else { continue };
            let f = flights.pop_front().expect("head present");
            let replies = match result {
                Ok(()) => {
                    if let Some(log) = self.log.borrow_mut().as_mut() {
                        if f.task.is_some() {
                            log.finish(f.end);
                        }
                    }
                    *self.io_error.borrow_mut() = None;
                    self.commit(f.pending, f.seg, f.base, &f.batch)
                }
                Err(e) => {
                    // Everything after the failed write depends on it: wait for
                    // the rest, then cut the file back and fail them all.
                    let mut later = Vec::new();
                    for mut g in flights.drain(..) {
                        if let Some(t) = g.task.take() {
                            let _ = t.await;
                        }
                        later.extend(g.pending);
                    }
                    let restore = f.restore.expect("file writes carry their restore point");
                    let cut = restore.end();
                    if let Some(log) = self.log.borrow_mut().as_mut() {
                        log.rollback(restore);
                    }
                    let file = self
                        .log
                        .borrow()
                        .as_ref()
                        .and_then(|l| l.segs.get(&f.seg).and_then(|s| s.file.clone()));
                    if let Some(file) = file {
                        if let Err(e) = file.truncate(cut).await {
                            crate::error!(
                                "JetStream stream '{}': cutting back a failed write: {e}",
                                self.name
                            );
                        }
                    }
                    self.write_failed(&e, f.pending, later)
                }
            };
            self.after_commit(&shard, replies).await;
        }
        self.writer_running.set(false);
        self.committed.notify_all();
        self.writer_done.notify_all();
    }

    async fn after_commit(&self, shard: &crate::shard::Shard, replies: Vec<(Bytes, Vec<u8>)>) {
        for (reply, body) in replies {
            shard.reply(&reply, None, &body);
        }
        shard.flush_mesh().await;
        self.committed.notify_all();
        crate::js::consumer::after_commit(self);
        self.gc_segments().await;
    }

    fn write_failed(
        &self,
        e: &std::io::Error,
        pending: Vec<Pending>,
        later: Vec<Pending>,
    ) -> Vec<(Bytes, Vec<u8>)> {
        // glommio keeps the kind, not the errno, of its I/O errors.
        let full = matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            || matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            );
        let err = if full {
            ApiError::insufficient_storage()
        } else {
            ApiError::store_failed(format!("write failed: {e}"))
        };
        crate::error!(
            "JetStream stream '{}': write failed: {e}; {} pending publishes failed",
            self.name,
            pending.len() + later.len()
        );
        *self.io_error.borrow_mut() = Some(e.to_string());
        let mut all = pending;
        all.extend(later);
        self.fail(all, &err)
    }

    /// Starts writing staged bytes (rolling the segment first when it is full
    /// and nothing is in flight); returns the I/O task, the segment, the file
    /// offset of the first staged byte and the restore point.
    async fn launch(
        &self,
        staged: &[u8],
        next_seq: u64,
    ) -> std::io::Result<(
        glommio::Task<std::io::Result<()>>,
        u64,
        u64,
        filelog::Restore,
    )> {
        let roll = self
            .log
            .borrow()
            .as_ref()
            .is_some_and(|l| l.should_roll() && l.inflight() == 0);
        if roll {
            // In interval mode the closing segment may hold unsynced writes.
            self.sync_now().await?;
            let dir = self.dir.clone();
            // Unique even when the full segment held no messages (only markers).
            let active = self.log.borrow().as_ref().map_or(0, |l| l.active);
            let next_seq = next_seq.max(active + 1);
            let path = dir.join(filelog::segment_name(next_seq));
            let dsync = self.log.borrow().as_ref().is_some_and(|l| l.sync);
            let file = filelog::open_dma(&path, dsync).await?;
            let bytes = self.log.borrow().as_ref().map_or(0, |l| l.segment_bytes);
            filelog::preallocate(&file, bytes).await;
            filelog::sync_dir_async(&dir).await?;
            if let Some(l) = self.log.borrow_mut().as_mut() {
                l.install(next_seq, path, file);
            }
        }
        let (job, seg, base, restore) = {
            let mut log = self.log.borrow_mut();
            let log = log.as_mut().expect("file stream");
            let (job, base, restore) = log.prepare(staged);
            (job, log.active, base, restore)
        };
        Ok((glommio::spawn_local(job.run()), seg, base, restore))
    }

    /// fdatasync of the active segment (interval mode's periodic sync).
    pub async fn sync_now(&self) -> std::io::Result<()> {
        let file = {
            let log = self.log.borrow();
            match log.as_ref() {
                Some(l) if !l.sync => l.segs.get(&l.active).and_then(|s| s.file.clone()),
                _ => None,
            }
        };
        match file {
            Some(f) => f.fdatasync().await.map_err(std::io::Error::from),
            None => Ok(()),
        }
    }

    /// Stops the writer after it has written what is staged, and closes files.
    pub async fn close(&self) {
        self.closed.set(true);
        self.wake.notify();
        while self.writer_running.get() {
            self.writer_done.wait().await;
        }
        if let Err(e) = self.sync_now().await {
            crate::error!("JetStream stream '{}': final sync failed: {e}", self.name);
        }
        let log = self.log.borrow_mut().take();
        if let Some(mut log) = log {
            log.close().await;
        }
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
