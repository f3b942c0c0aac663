//! One stream on its owner shard.
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
//! O_DSYNC by default), applies it to the index, enforces limits, and only then
//! sends the acks. A failed write fails every pending publish with an error
//! and cuts the file back to the committed end, so a publish that got an error
//! never reappears.
//!
//! Files: `ingest` (publish checks, staging), `writer` (group commit),
//! `commit` (applying a written batch), `limits` (max_* and max_age, segment
//! reclaiming and compaction), `remove` (deletes and purges), `read` (reads
//! from cache or disk, and the preview of messages still being written),
//! `dedupe` (message ids within the duplicate window).

mod commit;
mod dedupe;
pub mod ingest;
pub mod limits;
mod pack;
pub mod positions;
mod read;
pub mod recover;
mod remove;
mod seal;
mod sources;
pub mod ttl;
mod writer;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;

use ahash::AHashMap;
use bytes::Bytes;

use crate::js::source::tap::Tap;
use crate::js::store::index::{Index, StoredMsg};
use crate::js::store::segment::FileLog;
use crate::js::store::slots::Slots;
use crate::js::store::stagebuf::StageBuf;
use crate::js::types::errors::ApiError;
use crate::js::types::stream_config::StreamConfig;
use crate::limits::{STREAM_INGEST_BYTES, STREAM_INGEST_MSGS};
use crate::notify::{Event, Notify};
use crate::subject::transform::Transform;

use dedupe::Dedupe;
use positions::Positions;

/// The base name of a stream's saved link positions (`sources.0`, `sources.1`).
const POSITION_SLOTS: &str = "sources";
use remove::Erase;

/// What a stored message asks for after it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollup {
    None,
    Subject,
    All,
}

// Nearly every entry is a `Msg`; boxing it would allocate once per message.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Msg(Staged),
    /// A duplicate of a message not yet committed: acked with it.
    Dup {
        seq: u64,
        reply: Bytes,
    },
    /// Completion of an API operation whose records are staged.
    Op(Rc<Cell<Option<Result<(), ApiError>>>>),
    /// A live message copied forward by compaction (record at `rel`).
    Move {
        seq: u64,
        rel: usize,
    },
}

/// An accepted message waiting for the write that holds it.
struct Staged {
    seq: u64,
    ts: i64,
    subject: Bytes,
    hdr_len: usize,
    /// Memory streams: a copy of header + payload. File streams read it
    /// from the written batch, so nothing pins a connection's read buffer.
    data: Option<Bytes>,
    len: usize,
    /// Accounting size (`msg_size`), counted in `WriteState::bytes` until commit.
    size: u64,
    /// Offset of its record in the staged bytes.
    rel: usize,
    reply: Option<Bytes>,
    msg_id: Option<String>,
    rollup: Rollup,
    /// A copy from a mirror's or source's origin.
    link: Option<LinkTag>,
    ttl: ttl::Ttl,
    /// `ttl::FLAG_*`, for the index.
    flags: u8,
}

/// Which link a copied message came through, and its place in the origin.
#[derive(Debug, Clone)]
pub struct LinkTag {
    pub link: u32,
    pub iname: Rc<str>,
    pub ident: Rc<str>,
    /// Origin sequence.
    pub seq: u64,
    /// Bytes it took of the link's credit.
    pub bytes: u64,
}

/// What the links of a stream learn from its writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// A copy of origin sequence `seq` is stored (`bytes` of credit back).
    Committed { link: u32, seq: u64, bytes: u64 },
    /// A write failed: copies staged after the last committed one are gone.
    Failed { link: u32 },
}

#[derive(Default)]
struct WriteState {
    staged: StageBuf,
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
    /// Recent batches' staged bytes and publishes (at most `HINT_BYTES`,
    /// `HINT_PENDING`): the next batch reserves that much at its first
    /// message instead of growing by doubling, which copied every byte twice.
    hint: (usize, usize),
}

/// A quarter of what a stream may hold staged: large messages make batches of
/// megabytes, and each doubling past the hint copied the batch again.
const HINT_BYTES: usize = crate::limits::STREAM_INGEST_BYTES / 4;
const HINT_PENDING: usize = 4096;

impl WriteState {
    /// Room for `bytes` more staged bytes and one more pending entry: when
    /// either is full below its hint, straight to the hint and an eighth
    /// more (one entry past it would double it).
    fn make_room(&mut self, bytes: usize) {
        let (hint_bytes, n) = self.hint;
        let len = self.pending.len();
        if len == self.pending.capacity() && len < n {
            self.pending.reserve(n + n / 8 - len);
        }
        let len = self.staged.len();
        if self.staged.capacity() - len < bytes && len < hint_bytes {
            self.staged
                .reserve((hint_bytes + hint_bytes / 8).max(len + bytes) - len);
        }
    }
}

pub struct Stream {
    pub uid: u32,
    pub name: String,
    /// `name` as a JSON string, for pub acks.
    name_json: String,
    pub dir: PathBuf,
    pub cfg: RefCell<StreamConfig>,
    pub created: i64,
    /// Shared with the task writing index files of sealed segments, which
    /// then leaves their entries on disk (`Index::freeze`).
    pub ix: Rc<RefCell<Index>>,
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
    /// Where recent runs read by `load_run` ended (at most `RUN_ENDS_MAX`):
    /// a sequential reader's next run starts there without its entry, which
    /// for a sealed segment would cost an index file read.
    run_ends: RefCell<VecDeque<read::RunEnd>>,
    /// Where the stream's mirror or sources stand in their origins.
    pub positions: RefCell<Positions>,
    /// Their saved copy (file streams), and whether it is behind.
    positions_slots: Option<Slots>,
    pub positions_dirty: Cell<bool>,
    /// Commits and failures for the stream's links; taken by their task,
    /// which `links_wake` wakes. Bounded by the links' credit.
    pub link_events: RefCell<Vec<LinkEvent>>,
    pub links_wake: Notify,
    /// Taps reading this stream for other streams' links (origin side),
    /// by (target stream uid, link index name).
    pub taps: RefCell<BTreeMap<(u32, String), Rc<Tap>>>,
    /// The server's JetStream domain (`--domain`), shown in pub acks and
    /// info; set once when the stream starts.
    pub domain: std::cell::OnceCell<Option<Rc<str>>>,
    /// The server's storage room, shared by this shard's streams (set when
    /// the stream starts; a stream not started has no limit to check).
    pub room: std::cell::OnceCell<Rc<limits::Room>>,
    /// The config's `subject_transform`, applied to every message stored.
    input_transform: RefCell<Option<Transform>>,
    /// The config's `republish`: its transform and `headers_only`.
    republish: RefCell<Option<(Transform, bool)>>,
    /// Messages with a TTL, by expiry (bounded as `Expiries` says).
    expiries: RefCell<ttl::Expiries>,
    /// Messages whose subject delete marker is staged: the marker's rollup
    /// removes them. At most one per subject, and cleared each expiry pass.
    marking: RefCell<ahash::AHashSet<u64>>,
    /// The last expiry pass stopped at `EXPIRY_BATCH`: more are due now.
    pub expiry_backlog: Cell<bool>,
    /// Segments with nothing live, waiting for the deleter (at most the
    /// stream's segments), and whether that task runs.
    dead: Rc<RefCell<VecDeque<crate::js::store::segment::Segment>>>,
    deleter: Rc<Cell<bool>>,
    /// Sealed segments waiting for their index file (at most the stream's
    /// segments), and whether that task runs.
    to_index: Rc<RefCell<VecDeque<crate::js::store::segment::Sealed>>>,
    indexer: Rc<Cell<bool>>,
}

/// What a commit sends: a pub ack or error to a reply subject, or a
/// republished message (its header block before its body).
pub(super) struct Outgoing {
    subject: Bytes,
    hdr: Option<Vec<u8>>,
    body: Vec<u8>,
}

impl Outgoing {
    fn reply(subject: Bytes, body: Vec<u8>) -> Outgoing {
        Outgoing {
            subject,
            hdr: None,
            body,
        }
    }
}

/// The answer to a publish that the caller sends at once (errors, duplicates
/// of committed messages); stored publishes are answered by the writer.
pub enum Ingest {
    Accepted,
    Reply(Vec<u8>),
    /// Nothing to send (no reply subject).
    Silent,
}

impl Stream {
    /// Bytes stored and staged (what counts against the server's limit).
    pub fn usage_bytes(&self) -> u64 {
        self.ix.borrow().bytes + self.w.borrow().bytes
    }
}

/// nats-server's pub ack: `{"stream":S[,"domain":D],"seq":N[,"duplicate": true]}`.
/// `name` is S already quoted (once, when the stream is made): an ack is one
/// allocation.
pub fn pub_ack(name: &[u8], domain: Option<&str>, seq: u64, duplicate: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + name.len());
    out.extend_from_slice(b"{\"stream\":");
    out.extend_from_slice(name);
    if let Some(d) = domain {
        out.extend_from_slice(b",\"domain\":");
        out.extend_from_slice(ack_quote(d).as_bytes());
    }
    out.extend_from_slice(b",\"seq\":");
    crate::protocol::ops::push_decimal(&mut out, seq);
    if duplicate {
        // nats-server writes this one field with a space after the colon.
        out.extend_from_slice(b",\"duplicate\": true");
    }
    out.push(b'}');
    out
}

/// A name in a pub ack: nats-server quotes it as Go's `%q` does, which
/// (unlike its JSON encoder) leaves `<`, `>` and `&` as they are.
fn ack_quote(s: &str) -> String {
    serde_json::to_string(s).expect("string")
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
        let positions_slots = log
            .is_some()
            .then(|| Slots::new(dir.clone(), POSITION_SLOTS));
        let s = Stream {
            uid,
            name: cfg.name.clone(),
            name_json: ack_quote(&cfg.name),
            dir,
            cfg: RefCell::new(cfg.clone()),
            created,
            ix: Rc::new(RefCell::new(ix)),
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
            run_ends: RefCell::new(VecDeque::new()),
            positions: RefCell::new(Positions::default()),
            positions_slots,
            positions_dirty: Cell::new(false),
            link_events: RefCell::new(Vec::new()),
            links_wake: Notify::new(),
            taps: RefCell::new(BTreeMap::new()),
            domain: std::cell::OnceCell::new(),
            room: std::cell::OnceCell::new(),
            input_transform: RefCell::new(None),
            republish: RefCell::new(None),
            expiries: RefCell::new(ttl::Expiries::default()),
            marking: RefCell::new(ahash::AHashSet::new()),
            expiry_backlog: Cell::new(false),
            dead: Rc::new(RefCell::new(VecDeque::new())),
            deleter: Rc::new(Cell::new(false)),
            to_index: Rc::new(RefCell::new(VecDeque::new())),
            indexer: Rc::new(Cell::new(false)),
        };
        s.set_config(cfg);
        s
    }

    /// Takes a new (checked) config, and what is derived from it.
    pub fn set_config(&self, cfg: StreamConfig) {
        *self.input_transform.borrow_mut() = cfg
            .subject_transform
            .as_ref()
            .map(|t| Transform::new(&t.src, &t.dest).expect("checked at config time"));
        // An empty destination republishes nothing (as nats-server has it).
        let republish = cfg.republish.as_ref().filter(|r| !r.dest.is_empty());
        *self.republish.borrow_mut() = republish.map(|r| {
            let t = Transform::new(&r.src, &r.dest).expect("checked at config time");
            (t, r.headers_only)
        });
        if !cfg.allow_msg_ttl {
            self.expiries.borrow_mut().clear();
        }
        *self.cfg.borrow_mut() = cfg;
    }

    /// Consumers a user sees (listed, counted, limited): not the direct ones
    /// that mirrors and sources of other servers create.
    pub fn public_consumers(&self) -> Vec<Rc<crate::js::consumer::Consumer>> {
        self.consumers
            .borrow()
            .values()
            .filter(|c| !c.cfg.borrow().direct)
            .cloned()
            .collect()
    }

    /// A pub ack for `seq` (`duplicate`: of a message stored before).
    pub fn ack(&self, seq: u64, duplicate: bool) -> Vec<u8> {
        let domain = self.domain.get().and_then(|d| d.as_deref());
        pub_ack(self.name_json.as_bytes(), domain, seq, duplicate)
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

    /// The sequence the next accepted message will get.
    pub fn next_seq(&self) -> u64 {
        self.w.borrow().next_seq
    }

    /// Wakes every consumer (new messages, removals).
    pub fn wake_consumers(&self) {
        for c in self.consumers.borrow().values() {
            c.wake.notify();
        }
    }

    pub(super) fn segment_lost(&self, seg: u64) {
        if let Some(s) = self
            .log
            .borrow_mut()
            .as_mut()
            .and_then(|l| l.segs.get_mut(&seg))
        {
            assert!(
                s.live > 0,
                "segment {seg} counts every message the index has in it"
            );
            s.live -= 1;
        }
    }

    /// Counts `n` more live messages in segment `seg` (if it is a file's).
    pub(super) fn segment_gained(&self, seg: u64, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(s) = self
            .log
            .borrow_mut()
            .as_mut()
            .and_then(|l| l.segs.get_mut(&seg))
        {
            s.live += n;
        }
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::{ack_quote, pub_ack, WriteState};

    #[test]
    fn a_batch_grows_straight_to_the_hint() {
        let mut w = WriteState::default();
        w.make_room(100); // no hint yet: the writer's own growth
        assert_eq!((w.staged.capacity(), w.pending.capacity()), (0, 0));
        w.hint = (1000, 10);
        w.staged.extend_from_slice(&[0; 100]);
        w.staged.shrink_to_fit();
        w.make_room(100);
        assert!(w.staged.capacity() >= 1125, "{}", w.staged.capacity());
        assert!(w.pending.capacity() >= 11, "{}", w.pending.capacity());
        // Past the hint, growth is the buffer's own.
        let cap = w.staged.capacity();
        w.staged.extend_from_slice(&vec![0; cap - w.staged.len()]);
        w.make_room(10);
        assert_eq!(w.staged.capacity(), cap);
    }

    #[test]
    fn pub_ack_bytes_are_nats_servers() {
        let ack = |name: &str, domain, seq, dup| {
            String::from_utf8(pub_ack(ack_quote(name).as_bytes(), domain, seq, dup)).unwrap()
        };
        assert_eq!(
            ack("ORDERS", None, 7, false),
            r#"{"stream":"ORDERS","seq":7}"#
        );
        assert_eq!(
            ack("ORDERS", Some("hub"), u64::MAX, true),
            r#"{"stream":"ORDERS","domain":"hub","seq":18446744073709551615,"duplicate": true}"#
        );
        // Quoted as Go's %q does, as nats-server 2.15 answers: no HTML escapes.
        assert_eq!(
            ack("a&b<c>", None, 0, false),
            r#"{"stream":"a&b<c>","seq":0}"#
        );
    }
}
