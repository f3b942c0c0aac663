//! Every bound the server enforces, in one place, with the reason for its value.
//!
//! Relations between bounds are checked at compile time at the bottom of this file.

use std::time::Duration;

/// Longest control line (verb plus arguments) a client may send. nats-server's
/// default `max_control_line`; a longer line is a protocol error and closes the
/// connection. The parser never buffers more than this before a line ends.
pub const CONTROL_LINE_MAX: usize = 4096;

/// Default `max_connections` (nats-server's 64 K); beyond it a client gets
/// `-ERR 'maximum connections exceeded'` after its INFO.
pub const CONNECTIONS_MAX_DEFAULT: usize = 64 * 1024;

/// Default largest message payload (headers included), nats-server's `max_payload`.
pub const PAYLOAD_MAX_DEFAULT: usize = 1024 * 1024;

/// Largest `--max_payload` we accept: nats-server warns above 8 MiB and refuses
/// above 64 MiB; the payload must also fit in one outbound buffer.
pub const PAYLOAD_MAX_LIMIT: usize = 64 * 1024 * 1024;

/// Outbound bytes a connection may have queued before it is cut as a slow consumer
/// (nats-server's `max_pending`). Memory per connection is bounded by this.
pub const PENDING_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Producers feeding a connection are stalled once its queue passes this share
/// (in percent) of its cap, giving the reader a chance before it is cut.
pub const STALL_THRESHOLD_PERCENT: usize = 75;

/// ... or once it holds this many bytes, whatever the cap: a queue kept short
/// stays in the cache between the producer's copy and the kernel's, and its
/// messages wait less. Against a 48 MiB queue (75% of the default cap),
/// saturated pub->sub p50 latency went from 70-90 ms to 10-15 ms (and through
/// a leaf connection to a nats-server hub, 140 to 28 ms with 1.3x the
/// throughput); see perf/README.md. Only the pause comes sooner: a reader is
/// still cut at its cap.
pub const STALL_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest a producer's read loop is paused in one stall. Short, so that one slow
/// reader costs a fast producer little; the cap, not the stall, protects memory.
pub const STALL_WAIT_MAX: Duration = Duration::from_millis(5);

/// A socket write that makes no progress for this long marks the reader slow and
/// closes it (nats-server's default `write_deadline`).
pub const WRITE_DEADLINE_DEFAULT: &str = "10s";

/// Bytes requested from the kernel per socket read; a read buffer grows only by this
/// much beyond the largest message in progress.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A connection's write buffer keeps its capacity up to this, or up to twice
/// what its last write took when that was more (a burst keeps its buffers
/// while it lasts; the capacity goes when writes are small again). Bounded
/// by `--max_pending` in turn, which caps what can be queued.
pub const WRITE_BUF_KEEP_MIN: usize = 4 * 1024 * 1024;

/// Default interval between server PINGs (nats-server `ping_interval`: 2 minutes).
pub const PING_INTERVAL_DEFAULT: Duration = Duration::from_secs(120);

/// Unanswered server PINGs after which a connection is stale (nats-server `ping_max`).
pub const PINGS_OUT_MAX_DEFAULT: u32 = 2;

/// Subscriptions one connection may hold. nats-server has no default cap; we keep
/// one so a single client cannot grow every shard's interest replica without bound.
pub const SUBS_PER_CONN_MAX: usize = 1_000_000;

/// Client connections per server (nats-server's default `max_connections`, 64K).
pub const CONNECTIONS_MAX: usize = 65_536;

/// Entries in each shard's subject match cache. When full, it is swept down to
/// `MATCH_CACHE_SWEEP_TO` (nats-server's sublist cache uses the same 1024/256).
pub const MATCH_CACHE_ENTRIES_MAX: usize = 1024;
/// Size the match cache is swept down to when it overflows.
pub const MATCH_CACHE_SWEEP_TO: usize = 256;

/// Capacity, in batches, of each directed data channel between two shards. A full
/// channel suspends the sending connection's read loop (back-pressure).
pub const MESH_CHANNEL_BATCHES: usize = 64;

/// A batch to a peer shard is sent once it holds this many messages...
pub const MESH_BATCH_MSGS_MAX: usize = 1024;
/// ...or this many payload bytes, whichever comes first. Memory in flight per
/// directed channel is at most `MESH_CHANNEL_BATCHES` times this plus one payload.
pub const MESH_BATCH_BYTES_MAX: usize = 256 * 1024;

/// A message for another shard whose subject, reply and body together are at
/// most this long is copied into its batch's one buffer (`ShardMsg::Packed`):
/// a copy of a few hundred bytes costs less than sharing reference counts
/// between cores and freeing each piece on the receiving core. Longer
/// messages travel as shared `Bytes`.
pub const MESH_PACK_MAX: usize = 16 * 1024;

/// Capacity of each directed control-reply channel (barrier acknowledgements).
/// Its receivers never send, so a full channel only delays the replying shard.
pub const MESH_ACK_CHANNEL_MSGS: usize = 1024;

/// How often each shard checks for a shutdown request from the signal thread.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

/// Time allowed on shutdown for queued output to reach clients.
pub const SHUTDOWN_FLUSH_MAX: Duration = Duration::from_secs(2);

/// io_uring registered buffer memory per shard. glommio locks it (`ulimit -l`);
/// sockets do not use it, so a small pool keeps the locked total modest.
pub const IO_MEMORY_PER_SHARD: usize = 512 * 1024;

/// How long an idle shard keeps polling before it parks in the kernel. Zero:
/// spinning burns the time a shard waits for the disk or a peer, and with
/// glommio's poll ring correctly off (see `js::filelog::probe_device`) parking is
/// cheap. Measured on 2 cores against nats-server (perf/README.md): with 200 µs
/// of spinning, JetStream publish cost 2.4 µs of server CPU per message and
/// request-reply 1.4x nats-server's CPU; with none, 1.4 µs (0.32x nats-server)
/// and 0.65x, at equal or better throughput.
pub const SPIN_BEFORE_PARK: Duration = Duration::from_micros(0);

/// Submission queue depth per shard's io_uring.
pub const RING_DEPTH: usize = 256;

/// glommio task preemption: a task queue yields to others after this long.
pub const PREEMPT_TIMER: Duration = Duration::from_millis(10);

const _: () = assert!(MATCH_CACHE_SWEEP_TO < MATCH_CACHE_ENTRIES_MAX);
const _: () = assert!(PAYLOAD_MAX_DEFAULT <= PAYLOAD_MAX_LIMIT);
const _: () = assert!(PAYLOAD_MAX_LIMIT <= PENDING_BYTES_MAX_DEFAULT);
const _: () = assert!(CONTROL_LINE_MAX < READ_CHUNK_BYTES);
const _: () = assert!(STALL_THRESHOLD_PERCENT < 100);

/// Largest header block of a message a stream stores (nats-server's limit);
/// a larger one is refused with 10097.
pub const HEADERS_MAX: usize = 64 * 1024;

/// Largest record a segment may hold: the record header, a subject, the
/// header block and the largest payload, with room to spare for the subject
/// (recovery and reads refuse anything longer as damage).
pub const RECORD_BYTES_MAX: usize = 32 + 64 * 1024 + HEADERS_MAX + PAYLOAD_MAX_LIMIT;

/// Default size at which a stream segment file is closed and a new one started
/// (`--segment_bytes`); a segment is deleted whole, so this is also the unit
/// in which disk space comes back.
pub const SEGMENT_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;
/// Default budget per shard for the decoded index chunks and subject tables
/// of streams' sealed segments (`--index_cache_bytes`): about 400 chunks of
/// 1024 entries. When full, the least recently used go.
pub const INDEX_CACHE_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;
/// Smallest `--segment_bytes`: one DMA block.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Largest `--segment_bytes`: a segment ends at most one write (and one
/// record of at most `RECORD_BYTES_MAX`) past it, so every record offset fits
/// the 32 bits an index entry keeps.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
const _: () =
    assert!(SEGMENT_BYTES_MAX + (STREAM_INGEST_BYTES + RECORD_BYTES_MAX) as u64 <= u32::MAX as u64);

/// A dead segment is cut down this much at a time, `SEGMENT_DELETE_PACE`
/// apart, before it is unlinked (40 MiB/s: what this disk, mounted with
/// `discard`, frees without holding up synchronous writes for tens of ms;
/// measured in perf/results/ttl). Segments wait for it in their stream's
/// queue (at most the stream's segments).
pub const SEGMENT_DELETE_CHUNK: u64 = 4 * 1024 * 1024;
pub const SEGMENT_DELETE_PACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Largest single DMA read or write: glommio warns that requests above a
/// device's `max_sectors_kb` have hung on some kernels (issue 633); 128 KiB is
/// the smallest common value and glommio's own default.
pub const DMA_IO_MAX: usize = 128 * 1024;

/// Largest piece of a segment write, when the device takes requests that large
/// (`max_sectors_kb`). With O_DSYNC each piece is flushed on its own; one
/// request per group-commit write measured fastest (16 KiB async publish,
/// `--sync always`: 47-49 k msgs/s with 128 KiB pieces, 52-54 k with 1 MiB,
/// 59-68 k with 4 MiB).
pub const DMA_WRITE_MAX: usize = 4 * 1024 * 1024;

/// Bytes of recent messages each file stream keeps in memory for reads; older
/// ones are read back from disk. When full, the oldest cached are dropped.
pub const STREAM_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Bytes of messages a stream accepts that are not yet written and synced.
/// Past `STALL_THRESHOLD_PERCENT` of it the publishing connection is paused
/// until the writer catches up; past all of it a publish fails with 429/10167.
pub const STREAM_INGEST_BYTES: usize = 64 * 1024 * 1024;
/// The same bound in messages.
pub const STREAM_INGEST_MSGS: usize = 256 * 1024;

/// How often each shard checks its streams for messages past `max_age`.
pub const EXPIRY_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Messages one expiry pass removes (max_age and TTLs together) before the
/// shard serves other work; a backlog (a million TTLs due in the same
/// second) is worked off in such slices, one after another.
pub const EXPIRY_BATCH: usize = 4096;

/// The pause between two such slices (a 1 M backlog takes about 250 of them).
pub const EXPIRY_BACKLOG_PAUSE: std::time::Duration = std::time::Duration::from_micros(500);

/// Message ids remembered per stream for duplicate detection are bounded by
/// the duplicate window; these cap them too, in ids and in id bytes (oldest
/// forgotten first, so a flood of long ids cannot exhaust memory).
pub const DEDUPE_IDS_MAX: usize = 1_000_000;
pub const DEDUPE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Longest one pause of a publisher on a congested stream; the publisher is
/// re-checked after its next read (the stream's hard cap still rejects).
pub const STREAM_STALL_MAX: std::time::Duration = std::time::Duration::from_millis(50);

/// Items per STREAM.NAMES and STREAM.LIST page (nats-server's).
pub const API_NAMES_PAGE: usize = 1024;
pub const API_LIST_PAGE: usize = 256;

/// Longest the coordinator waits for every shard's part of a listing.
pub const GATHER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Monitoring gathers again while a client's move is seen on one side only
/// (`shard::stats::moves_in_transit`), for at most this long. A hand-over is
/// one mesh hop, but on a loaded machine with more shards than cores a hop
/// can wait out the other shard's time slice: four tries 1 ms apart were
/// not always enough in CI.
pub const GATHER_MOVE_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(100);
/// The pause before gathering again.
pub const GATHER_MOVE_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Connection moves (issue 13): a client whose publishes, read after read,
/// all reach one other shard (a stream, a client or a leaf connection there)
/// moves to it, so that its traffic stops crossing cores and waking them. A
/// read with more publishes than `MOVE_READ_PUBS_MAX` to a client or leaf
/// connection breaks the run: that work splits well over two cores (one
/// parses and matches, the other writes). Busy reads all to JetStream do not
/// break it: a stream's shard does most of the work and answers every
/// publish, so each crosses twice and wakes both shards.
pub const MOVE_READ_PUBS_MAX: u32 = 8;
/// Reads in a busy run before a move (about 10 ms of an async publisher).
/// Measured on 2 cores (jspub128 across shards): moved 64 reads in, 7 of 23
/// runs kept about twice the context switches per message after the move
/// (0.022-0.026 against 0.011); moved 16 reads in, none of 8 did.
pub const MOVE_BUSY_READS: u32 = 16;
/// A busy run moves only onto a shard whose load (per mille of a core: what
/// it used over its last `SHUTDOWN_POLL`, plus the claims below) is under
/// this: many busy publishers to one stream must not all pile onto its shard.
pub const MOVE_BUSY_LOAD_MAX: u32 = 500;
/// What a busy client's move claims of its new shard's load, counted until
/// that shard has measured twice (`shard::stats::ShardLoad`), so that clients
/// deciding meanwhile count it.
pub const MOVE_BUSY_LOAD_CLAIM: u32 = 250;
/// Reads in a run before a move. Toward a client newer than itself a
/// connection waits `MOVE_READS_YIELD`: of two clients talking to each
/// other the newer one moves first, so they never swap shards.
pub const MOVE_READS: u32 = 64;
pub const MOVE_READS_YIELD: u32 = 4 * MOVE_READS;
/// A client with more subscriptions than this stays: every shard moves each
/// of them in its interest replica (a fan-in service, most likely, whose
/// traffic comes from everywhere anyway).
pub const MOVE_SUBS_MAX: usize = 1024;
/// Least time between two moves of one connection.
pub const MOVE_COOLDOWN: std::time::Duration = std::time::Duration::from_secs(1);

/// `--sync interval=`: a group-commit write up to this size goes through the
/// page cache (acked once there, as nats-server acks: a sync publish waits
/// ~30 µs instead of the device's ~80 µs); a larger one is written direct.
pub const CACHED_WRITE_MAX: usize = 128 * 1024;

/// A group-commit write at least this large (and not through the page cache)
/// goes to the device from the stream's staging memory itself, starting a
/// fresh block; a smaller one is copied behind the partial last block.
pub const STAGED_DIRECT_MIN: usize = 512 * 1024;
const _: () = assert!(STAGED_DIRECT_MIN > CACHED_WRITE_MAX);

/// Group-commit writes a stream keeps in flight at once. The writer handles
/// more (each starts on a fresh 4 KiB block, acks still go in order), but one
/// measured best: with 4, writes got smaller and shards parked more often
/// (JetStream publish across shards: 2.7-3.4 µs/msg of server CPU with 4,
/// 2.3-2.4 with 1; on one shard 1.36 and 1.28).
pub const STREAM_WRITES_IN_FLIGHT: usize = 1;

/// Compaction copies the live messages of the oldest segment forward when there
/// are at most this many (and a dead segment waits behind it); more, and the
/// segment is left for later (its space is mostly live anyway).
pub const COMPACT_LIVE_MAX: u64 = 4096;

/// Push flow control: the first window of bytes a push consumer may have
/// unanswered, and its cap after doubling on each answer (nats-server's).
pub const FC_WINDOW_START: u64 = 2 * 1024 * 1024;
pub const FC_WINDOW_MAX: u64 = 32 * 1024 * 1024;

/// Ack confirmations a durable consumer holds until its state is saved;
/// beyond it, acks are confirmed at once (before the save).
pub const ACK_REPLIES_MAX: usize = 65_536;

/// How often a durable consumer's changed state is saved (fdatasync each).
pub const CONSUMER_SAVE_INTERVAL_NS: i64 = 100_000_000;

/// Ack subjects are built in buffers of this size. A buffer is reused once
/// every subject cut from it was dropped (they are copied out at delivery);
/// otherwise a new one is allocated and the old freed with its last subject.
pub const ACK_ARENA_BYTES: usize = 64 * 1024;

/// Failed writes a consumer remembers, to tell late acks of lost deliveries
/// apart from acks of the new messages that took their sequences.
pub const LOST_RANGES_MAX: usize = 16;

/// How often a consumer checks that its push subscriber or pull requesters
/// are still there (a requester whose inbox has no subscriber waits no longer).
pub const INTEREST_CHECK_NS: i64 = 1_000_000_000;

/// How often an unbound push consumer looks for a subscriber.
pub const CONSUMER_BIND_POLL_NS: i64 = 50_000_000;

/// Read-ahead per disk read of a consumer; it holds at most two such buffers
/// (one being delivered, one being read). A multiple of `DMA_IO_MAX`, so the
/// pieces of one read go to the disk together.
pub const CONSUMER_READ_AHEAD_BYTES: usize = 1024 * 1024;

/// Deliveries per pass before a consumer's task flushes and yields.
pub const CONSUMER_PASS_MAX: usize = 1024;

/// Messages checked per step when a removed consumer's interest-stream
/// messages are swept (yielding between steps).
pub const RETAIN_SWEEP_CHUNK: u64 = 4096;

/// Recent removals a stream's index remembers (sequence and subject) while it
/// has consumers, so consumers correct their pending counts incrementally;
/// a consumer that fell further behind recounts.
pub const REMOVED_LOG_MAX: usize = 4096;

const _: () = assert!(FC_WINDOW_START <= FC_WINDOW_MAX);
const _: () = assert!(CONSUMER_READ_AHEAD_BYTES.is_multiple_of(DMA_IO_MAX));

/// A tap (the origin side of a local mirror or source) sends at most this
/// many messages and bytes in one `TapData`, within its credit.
pub const TAP_BATCH_MSGS: usize = 1024;
pub const TAP_BATCH_BYTES: usize = 256 * 1024;

/// A tap with nothing to send heartbeats this often (it keeps the target's
/// `active` and `lag` true); a link that hears nothing for
/// `LINK_SILENCE_NS` reopens its tap.
pub const TAP_HEARTBEAT_NS: i64 = 1_000_000_000;
pub const LINK_SILENCE_NS: i64 = 5_000_000_000;

/// A tap reading its origin from disk reads this much ahead per read.
pub const TAP_READ_AHEAD_BYTES: usize = 1024 * 1024;

/// The credit of one link: messages and bytes its tap may have sent and the
/// target not yet committed. Memory a target holds for copies in flight is
/// at most this per link (plus one message), whatever the origin's rate;
/// 16 links take a quarter of `STREAM_INGEST_BYTES`.
pub const LINK_CREDIT_MSGS: u32 = 16 * 1024;
pub const LINK_CREDIT_BYTES: u64 = 1024 * 1024;

/// A link whose origin is missing or refused it tries again after this
/// (sooner when the catalogue changes: an origin created is noticed at once),
/// doubling up to `LINK_RETRY_MAX_NS`.
pub const LINK_RETRY_NS: i64 = 250_000_000;
pub const LINK_RETRY_MAX_NS: i64 = 2_000_000_000;

/// A target returns credit once a quarter of `LINK_CREDIT_*` has committed,
/// or when the oldest unreturned credit is this old: one credit message per
/// many copies under load, and a work-queue origin still hears within
/// milliseconds what it may remove. A tap never stalls on credit held back:
/// it keeps at least three quarters of its window.
pub const LINK_CREDIT_RETURN_NS: i64 = 5_000_000;

/// A tap that sent all it had waits this long before sending again, so a
/// steady trickle of messages travels in batches (one cross-shard wake and
/// one target commit per batch, not per message) while a lone message after
/// a quiet spell goes at once. Full batches go without waiting.
pub const TAP_LINGER_NS: i64 = 1_000_000;

/// External origins (nats-server's timings): an unanswered consumer create
/// fails after `REMOTE_ANSWER_NS`; a consumer silent for `REMOTE_SILENCE_NS`
/// (it heartbeats every second) is created again; failures in a row wait
/// `REMOTE_BACKOFF_NS` more each, up to `REMOTE_BACKOFF_MAX_NS`; and two
/// requests of one link are at least `REMOTE_ASK_EVERY_NS` apart.
pub const REMOTE_ANSWER_NS: i64 = 30_000_000_000;
pub const REMOTE_SILENCE_NS: i64 = 10_000_000_000;
pub const REMOTE_BACKOFF_NS: i64 = 10_000_000_000;
pub const REMOTE_BACKOFF_MAX_NS: i64 = 120_000_000_000;
pub const REMOTE_ASK_EVERY_NS: i64 = 2_000_000_000;

/// Deliveries from external origins waiting for a target's links task: at
/// most this many bytes per target stream (twice the largest flow-control
/// window, nats-server's and ours, so a well-behaved origin never reaches
/// it). Beyond it deliveries are dropped, and the link notices the gap and
/// creates its consumer again from its position.
pub const REMOTE_INBOX_BYTES: usize = 2 * FC_WINDOW_MAX as usize;

/// How often a stream's links save their positions when they moved.
pub const SOURCES_SAVE_INTERVAL_NS: i64 = 1_000_000_000;

const _: () = assert!(TAP_BATCH_BYTES <= MESH_BATCH_BYTES_MAX);
const _: () = assert!(LINK_CREDIT_BYTES * 16 <= STREAM_INGEST_BYTES as u64 / 4);
const _: () = assert!(TAP_READ_AHEAD_BYTES.is_multiple_of(DMA_IO_MAX));
const _: () = assert!(TAP_HEARTBEAT_NS < LINK_SILENCE_NS);
const _: () = assert!(LINK_CREDIT_RETURN_NS < TAP_HEARTBEAT_NS);

/// Longest INFO or CONNECT line a leaf connection takes (JSON with URL lists
/// and permissions): past it the connection is closed.
pub const LEAF_JSON_MAX: usize = 64 * 1024;
/// Interest keys (subject, queue) one leaf connection may hold from its peer;
/// past it the connection is closed (a peer advertising more is broken).
pub const LEAF_SUBS_MAX: usize = SUBS_PER_CONN_MAX;
/// Leaf port default (nats-server's).
pub const LEAF_PORT_DEFAULT: u16 = 7422;
/// nats-server's leaf timings: the wait before redialling (`reconnect`), the
/// wait for the hub's INFOs, and the delay after a loop was detected.
pub const LEAF_RECONNECT_DEFAULT: Duration = Duration::from_secs(1);
pub const LEAF_INFO_WAIT: Duration = Duration::from_secs(2);
pub const LEAF_LOOP_DELAY: Duration = Duration::from_secs(30);
/// ... and after the hub refused our version (its `min_version`).
pub const LEAF_MIN_VERSION_DELAY: Duration = Duration::from_secs(5);
/// An external mirror or source silent this long when a leaf connection
/// comes up asks its origin again at once (a live one hears a heartbeat
/// each second).
pub const LEAF_UP_QUIET_NS: i64 = 1_500_000_000;
/// After a leaf connection comes up, how long its peer's interest has to
/// arrive before external mirrors and sources are asked to try again.
pub const LEAF_UP_SETTLE: Duration = Duration::from_millis(500);
/// nats-server's default `dial_timeout` for a remote.
pub const LEAF_DIAL_TIMEOUT: Duration = Duration::from_secs(1);
