//! The load generator's modes, run thread-per-core: one glommio executor per
//! worker (default: online CPUs), clients spread over them round-robin.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

use crate::bench::consume::{self, ConsumeKind, ConsumeSpec};
use crate::bench::latency::{intended_offset, new_histogram};
use crate::bench::wire::{connect_on, encode_hpub, encode_pub, status, Reader, ServerOp, Writer};

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Publishers only.
    Pub,
    /// Subscribers only (publish from elsewhere).
    Sub,
    /// Subscribers and publishers together; every subscriber gets every message.
    PubSub,
    /// Requesters, with in-process responders unless `responders` is 0.
    Request,
    /// Responders only, for `--duration`.
    Reply,
    /// JetStream publish with acks (window 1 = synchronous).
    JsPub,
    /// Direct gets by sequence from a stream preloaded with `msgs` messages.
    JsGet,
    /// Key-value puts (JetStream publishes to `$KV.<bucket>.<key>`) over `keys` keys.
    KvPut,
    /// Key-value gets (direct get of a key's last value) over `keys` preloaded keys.
    KvGet,
    /// JetStream consumers (`consume` in the spec) reading `msgs` messages: a
    /// preloaded stream, or with `rate`, messages published meanwhile.
    JsConsume,
    /// A mirror or sources copying what publishers send to origins (`copy`
    /// in the spec): the time until the target holds every message.
    JsCopy,
}

impl Mode {
    fn jetstream(self) -> bool {
        matches!(
            self,
            Mode::JsPub | Mode::JsGet | Mode::KvPut | Mode::KvGet | Mode::JsConsume | Mode::JsCopy
        )
    }
    /// Modes whose publishers publish with acks.
    fn acked(self) -> bool {
        matches!(
            self,
            Mode::JsPub | Mode::KvPut | Mode::JsConsume | Mode::JsCopy
        )
    }
    /// Modes whose clients send get requests.
    fn gets(self) -> bool {
        matches!(self, Mode::JsGet | Mode::KvGet)
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub mode: Mode,
    /// `host:port`
    pub server: String,
    /// Where subscribers and responders connect instead (`host:port`): a
    /// path through two servers, such as a leaf connection.
    pub sub_server: Option<String>,
    pub msgs: u64,
    pub size: usize,
    pub pubs: usize,
    pub subs: usize,
    pub responders: usize,
    pub subject: String,
    pub multisubject: bool,
    /// Total msgs/s over all publishers (open loop); `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Upper bound on the whole run.
    pub duration: Duration,
    pub window: usize,
    pub stream: String,
    pub storage: String,
    pub workers: usize,
    /// Pin each load-generator executor to a CPU (`--pin-workers`). Off by
    /// default: `nats bench` (natscli, on nats.go) runs on Go's unpinned threads, and a
    /// pinned worker shares its CPU with whichever server thread is pinned
    /// there while another CPU may idle.
    pub pin_workers: bool,
    /// Key-value modes: distinct keys.
    pub keys: usize,
    /// `js consume`: consumers are `subs` clients.
    pub consume: ConsumeSpec,
    /// `js copy`: the origins and the target's kind.
    pub copy: CopySpec,
    /// JetStream publishes carry `Nats-TTL` (the stream allows it).
    pub ttl: Option<TtlSpec>,
    /// The run's stream stays when it ends (`--keep`: restart measurements).
    pub keep: bool,
    /// Connections placed on chosen shards (jetcore only; `None`: wherever
    /// the kernel puts them).
    pub placement: Option<crate::bench::wire::Placement>,
}

/// `--ttl <secs>` (and `--ttl-align`): each publish carries `Nats-TTL`;
/// aligned, message n sent at time t gets `secs - t` (rounded up), so that
/// everything published expires within about one second.
#[derive(Debug, Clone, Copy)]
pub struct TtlSpec {
    pub secs: u64,
    pub align: bool,
}

impl TtlSpec {
    /// The header block of a publish sent `elapsed` into the run.
    fn header(&self, elapsed: Duration) -> Vec<u8> {
        let secs = if self.align {
            self.secs.saturating_sub(elapsed.as_secs()).max(1)
        } else {
            self.secs
        };
        format!("NATS/1.0\r\nNats-TTL: {secs}\r\n\r\n").into_bytes()
    }
}

/// `js copy`: one origin per publisher; a mirror (of one origin) or sources.
#[derive(Debug, Clone, Copy)]
pub struct CopySpec {
    pub origins: usize,
    pub mirror: bool,
}

impl Default for CopySpec {
    fn default() -> Self {
        CopySpec {
            origins: 1,
            mirror: true,
        }
    }
}

/// One client's count and active time.
#[derive(Debug, Clone)]
pub struct ClientStat {
    pub msgs: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct Outcome {
    pub pubs: Vec<ClientStat>,
    pub subs: Vec<ClientStat>,
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
    /// Ordered consumers: how many times one was recreated after a sequence gap.
    pub resets: Option<u64>,
}

enum Role {
    Publisher(usize),
    Subscriber(usize),
    Requester(usize),
    Responder(usize),
}

enum Report {
    Pub(ClientStat),
    /// A JetStream publisher: its count and its publish→ack latencies.
    PubAcked(ClientStat, Histogram<u64>),
    Sub(ClientStat, Histogram<u64>),
    Resets(u64),
    Failed(String),
}

/// What the clients of one run share across executors.
pub(crate) struct Shared {
    /// Requesters still running (responders outlive them).
    working: AtomicUsize,
    /// Messages consumed so far by all consumers (`js consume`).
    pub(crate) consumed: AtomicU64,
    /// Publishers done, and when the last ack of any arrived (`js copy`).
    pub(crate) publishers_done: AtomicUsize,
    pub(crate) last_ack_ns: AtomicU64,
}

impl Shared {
    pub(crate) fn new(working: usize) -> Shared {
        Shared {
            working: AtomicUsize::new(working),
            consumed: AtomicU64::new(0),
            publishers_done: AtomicUsize::new(0),
            last_ack_ns: AtomicU64::new(0),
        }
    }
}

/// Process-wide clock origin: payloads carry nanoseconds since it, so senders and
/// receivers in this process compare times directly.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(crate) fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Runs `spec` to completion or until its duration bound; errors name the cause.
pub fn run(spec: &Spec) -> Result<Outcome, String> {
    run_marked(spec, &mut || {})
}

/// `run`, calling `mark` just before and just after the measured phase (after
/// setup and any preload, before teardown), so a caller can sample the server
/// around exactly what was measured.
pub fn run_marked(spec: &Spec, mark: &mut dyn FnMut()) -> Result<Outcome, String> {
    validate(spec)?;
    epoch();
    // `js consume --no-preload` reads a stream that exists and leaves it be.
    let own_stream =
        spec.mode.jetstream() && (spec.mode != Mode::JsConsume || spec.consume.preload);
    if spec.mode == Mode::JsCopy {
        crate::bench::copy::delete(spec);
        crate::bench::copy::create(spec)?;
    } else if own_stream {
        js_create_stream(spec)?;
    }
    let outcome = setup(spec).and_then(|()| {
        mark();
        let outcome = run_roles(spec);
        mark();
        outcome
    });
    if spec.mode == Mode::JsConsume && spec.consume.kind != ConsumeKind::Ordered && !own_stream {
        consume::delete_durable(spec);
    }
    if spec.mode == Mode::JsCopy {
        crate::bench::copy::delete(spec);
    } else if own_stream && !spec.keep && !spec.ttl.is_some_and(|t| t.align) {
        // An aligned-TTL run sets up a mass expiry: its stream stays.
        js_delete_stream(spec);
    }
    outcome
}

/// What a mode needs before it is measured: data to read (loaded untimed) and
/// the durable consumer.
fn setup(spec: &Spec) -> Result<(), String> {
    let preload = match spec.mode {
        Mode::JsGet => Some((Mode::JsPub, spec.msgs)),
        Mode::KvGet => Some((Mode::KvPut, spec.keys as u64)),
        Mode::JsConsume if spec.consume.preload && spec.rate.is_none() => {
            Some((Mode::JsPub, spec.msgs))
        }
        _ => None,
    };
    if let Some((mode, msgs)) = preload {
        let load = Spec {
            mode,
            msgs,
            pubs: 1,
            rate: None,
            ..spec.clone()
        };
        run_roles(&load).map_err(|e| format!("preloading the stream: {e}"))?;
    }
    if spec.mode == Mode::JsConsume && spec.consume.kind != ConsumeKind::Ordered {
        consume::create_durable(spec)?;
    }
    Ok(())
}

/// Runs the clients of `spec` (setup and teardown are `run`'s).
fn run_roles(spec: &Spec) -> Result<Outcome, String> {
    let mut roles = Vec::new();
    match spec.mode {
        Mode::Pub | Mode::JsPub | Mode::KvPut => roles.extend((0..spec.pubs).map(Role::Publisher)),
        Mode::JsGet | Mode::KvGet => roles.extend((0..spec.pubs).map(Role::Requester)),
        Mode::Sub => roles.extend((0..spec.subs).map(Role::Subscriber)),
        Mode::PubSub => {
            roles.extend((0..spec.subs).map(Role::Subscriber));
            roles.extend((0..spec.pubs).map(Role::Publisher));
        }
        Mode::Request => {
            roles.extend((0..spec.responders).map(Role::Responder));
            roles.extend((0..spec.pubs).map(Role::Requester));
        }
        Mode::Reply => roles.extend((0..spec.responders.max(1)).map(Role::Responder)),
        Mode::JsConsume => {
            roles.extend((0..spec.subs).map(Role::Subscriber));
            if spec.rate.is_some() {
                roles.extend((0..spec.pubs).map(Role::Publisher));
            }
        }
        // The watcher first: it starts polling with the publishers.
        Mode::JsCopy => {
            roles.push(Role::Subscriber(0));
            roles.extend((0..spec.pubs).map(Role::Publisher));
        }
    }
    let workers = spec.workers.max(1).min(roles.len().max(1));
    let mut per_worker: Vec<Vec<Role>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, role) in roles.into_iter().enumerate() {
        per_worker[i % workers].push(role);
    }
    // Everyone connects and subscribes, then all start together.
    let ready = Arc::new(Barrier::new(workers));
    // Responders on one worker must outlive requesters on every other worker.
    let shared = Arc::new(Shared::new(
        if matches!(spec.mode, Mode::Request | Mode::JsGet | Mode::KvGet) {
            spec.pubs
        } else {
            0
        },
    ));
    // Bounded: about one report per client; the main thread drains it while the
    // workers run, so a full channel only makes a worker wait briefly.
    let (tx, rx) = sync_channel::<Report>(spec.pubs + spec.subs + spec.responders + 8);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    let mut handles = Vec::new();
    for (w, roles) in per_worker.into_iter().enumerate() {
        let spec = spec.clone();
        let ready = ready.clone();
        let tx = tx.clone();
        let shared = shared.clone();
        let placement = if spec.pin_workers {
            Placement::Fixed(w % cpus)
        } else {
            Placement::Unbound
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("bench-{w}"))
            .io_memory(256 * 1024)
            .spawn(move || worker(spec, roles, ready, shared, tx))
            .map_err(|e| format!("cannot start a load-generator executor: {e}"))?;
        handles.push(handle);
    }
    drop(tx);
    let mut outcome = Outcome {
        pubs: Vec::new(),
        subs: Vec::new(),
        latency: new_histogram(),
        elapsed: Duration::ZERO,
        resets: (spec.mode == Mode::JsConsume && spec.consume.kind == ConsumeKind::Ordered)
            .then_some(0),
    };
    let mut failure = None;
    for report in rx.iter() {
        match report {
            Report::Pub(stat) => outcome.pubs.push(stat),
            Report::PubAcked(stat, h) => {
                outcome
                    .latency
                    .add(&h)
                    .map_err(|e| format!("histogram: {e:?}"))?;
                outcome.pubs.push(stat);
            }
            Report::Sub(stat, h) => {
                outcome
                    .latency
                    .add(&h)
                    .map_err(|e| format!("histogram: {e:?}"))?;
                outcome.subs.push(stat);
            }
            Report::Resets(n) => *outcome.resets.get_or_insert(0) += n,
            Report::Failed(e) => failure = failure.or(Some(e)),
        }
    }
    for h in handles {
        let _ = h.join();
    }
    outcome.elapsed = start.elapsed();
    match failure {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

fn validate(spec: &Spec) -> Result<(), String> {
    let stamped = matches!(spec.mode, Mode::PubSub | Mode::Request);
    if stamped && spec.size < 8 {
        return Err(
            "--size must be at least 8 bytes in this mode (payloads carry a timestamp)".into(),
        );
    }
    if matches!(
        spec.mode,
        Mode::Pub
            | Mode::PubSub
            | Mode::Request
            | Mode::JsPub
            | Mode::JsGet
            | Mode::KvPut
            | Mode::KvGet
    ) && spec.pubs == 0
    {
        return Err("need at least one publisher (--pub / --clients)".into());
    }
    if matches!(spec.mode, Mode::Sub | Mode::PubSub) && spec.subs == 0 {
        return Err("need at least one subscriber (--sub)".into());
    }
    if spec.msgs == 0 {
        return Err("--msgs must be at least 1".into());
    }
    if spec.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err("--rate must be positive".into());
    }
    if spec.window == 0 {
        return Err("--window must be at least 1".into());
    }
    if matches!(spec.mode, Mode::KvPut | Mode::KvGet) && spec.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    if spec.mode == Mode::JsConsume {
        let c = &spec.consume;
        if spec.subs == 0 {
            return Err("need at least one consumer (--clients)".into());
        }
        if c.batch == 0 {
            return Err("--batch must be at least 1".into());
        }
        if c.kind == ConsumeKind::Ordered && c.ack {
            return Err("ordered consumers do not ack (--ack none)".into());
        }
        if spec.rate.is_some() && c.kind != ConsumeKind::Pull {
            return Err(
                "--rate measures publish→delivery latency with a pull consumer (--mode pull)"
                    .into(),
            );
        }
        if spec.rate.is_some() && spec.size < 8 {
            return Err(
                "--size must be at least 8 bytes with --rate (payloads carry a timestamp)".into(),
            );
        }
        if spec.rate.is_some() && spec.pubs == 0 {
            return Err("need at least one publisher with --rate".into());
        }
    }
    Ok(())
}

async fn worker(
    spec: Spec,
    roles: Vec<Role>,
    ready: Arc<Barrier>,
    shared: Arc<Shared>,
    tx: std::sync::mpsc::SyncSender<Report>,
) {
    let deadline = Instant::now() + spec.duration;
    let mut prepared = Vec::new();
    for role in roles {
        // Bounded too: a server that accepts and never answers must not hang.
        let timeout = async {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            Err(format!(
                "connecting did not finish within {:?} (--duration)",
                spec.duration
            ))
        };
        match futures_lite::future::or(prepare(&spec, &role), timeout).await {
            Ok(conn) => prepared.push((role, conn)),
            Err(e) => {
                let _ = tx.send(Report::Failed(e));
                ready.wait();
                return;
            }
        }
    }
    // Setup is over on this thread; blocking here is deliberate and brief.
    ready.wait();
    let mut tasks = Vec::new();
    for (role, (reader, writer)) in prepared {
        let is_responder = matches!(role, Role::Responder(_));
        let spec = spec.clone();
        let tx = tx.clone();
        let shared = shared.clone();
        let task = glommio::spawn_local(async move {
            let report = match role {
                Role::Publisher(i) => {
                    // Ack latency is the measure of `js pub` and `kv put` only.
                    let acks = matches!(spec.mode, Mode::JsPub | Mode::KvPut);
                    let done = publisher(&spec, i, reader, writer)
                        .await
                        .map(|(s, h)| match h {
                            Some(h) if acks => Report::PubAcked(s, h),
                            _ => Report::Pub(s),
                        });
                    shared.last_ack_ns.fetch_max(now_ns(), Ordering::SeqCst);
                    shared.publishers_done.fetch_add(1, Ordering::SeqCst);
                    done
                }
                Role::Subscriber(_) if spec.mode == Mode::JsCopy => {
                    crate::bench::copy::watch(&spec, reader, writer, &shared)
                        .await
                        .map(|(s, h)| Report::Sub(s, h))
                }
                Role::Subscriber(i) if spec.mode == Mode::JsConsume => {
                    consume::consume(&spec, i, reader, writer, &shared)
                        .await
                        .map(|c| {
                            if c.resets > 0 {
                                let _ = tx.send(Report::Resets(c.resets));
                            }
                            Report::Sub(c.stat, c.latency)
                        })
                }
                Role::Subscriber(_) => subscriber(&spec, reader, writer)
                    .await
                    .map(|(s, h)| Report::Sub(s, h)),
                Role::Requester(i) => {
                    let done = if spec.mode.gets() {
                        getter(&spec, i, reader, writer).await
                    } else {
                        requester(&spec, i, reader, writer).await
                    }
                    .map(|(s, h)| Report::Sub(s, h));
                    shared.working.fetch_sub(1, Ordering::SeqCst);
                    done
                }
                Role::Responder(_) => responder(reader, writer).await.map(Report::Pub),
            };
            let _ = tx.send(report.unwrap_or_else(Report::Failed));
        });
        tasks.push((is_responder, task));
    }
    let (responders, others): (Vec<_>, Vec<_>) = tasks.into_iter().partition(|(r, _)| *r);
    let bounded = async {
        for (_, t) in others {
            t.await;
        }
        if spec.mode == Mode::Reply {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        }
        while shared.working.load(Ordering::SeqCst) > 0 {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    };
    let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    if futures_lite::future::or(
        async {
            bounded.await;
            true
        },
        async {
            timeout.await;
            false
        },
    )
    .await
    {
        for (_, t) in responders {
            t.cancel().await;
        }
    } else if spec.mode != Mode::Reply {
        let progress = if spec.mode == Mode::JsConsume {
            format!(
                ": {} of {} messages consumed",
                shared.consumed.load(Ordering::Relaxed),
                consume::target(&spec)
            )
        } else {
            String::new()
        };
        let _ = tx.send(Report::Failed(format!(
            "run did not finish within {:?} (--duration){progress}",
            spec.duration
        )));
    }
}

async fn prepare(spec: &Spec, role: &Role) -> Result<(Reader, Writer), String> {
    let name = match role {
        Role::Publisher(i) => format!("pub-{i}"),
        Role::Subscriber(i) => format!("sub-{i}"),
        Role::Requester(i) => format!("req-{i}"),
        Role::Responder(i) => format!("rep-{i}"),
    };
    let publisher = matches!(role, Role::Publisher(_) | Role::Requester(_));
    let on = spec.placement.map(|p| (p.shards, p.shard(publisher)));
    let elsewhere = match (&spec.sub_server, publisher) {
        (Some(s), false) => Some(s),
        _ => None,
    };
    let (mut reader, writer) = match elsewhere {
        Some(server) => connect_on(server, &name, None).await?,
        None => connect_on(&spec.server, &name, on).await?,
    };
    let sub = match role {
        Role::Subscriber(i) if spec.mode == Mode::JsConsume => Some(consume::prepare_ops(spec, *i)),
        // The copy watcher subscribes to its own reply subject only.
        Role::Subscriber(_) if spec.mode == Mode::JsCopy => None,
        Role::Subscriber(i) => Some(if spec.multisubject {
            format!("SUB {}.> {}\r\n", spec.subject, i + 1)
        } else {
            format!("SUB {} 1\r\n", spec.subject)
        }),
        Role::Requester(i) => Some(format!("SUB {}.* 1\r\n", inbox("bench", *i))),
        // A queue group of this process's own: a previous run's responders,
        // whose connections the server may not have seen close yet, would
        // otherwise take some of this run's requests (lost with them: the
        // requester waits for ever, as a nats.go requester would without a
        // timeout).
        Role::Responder(_) => Some(format!(
            "SUB {} bench-responders-{} 1\r\n",
            spec.subject,
            std::process::id()
        )),
        Role::Publisher(i) if spec.mode.acked() => Some(format!("SUB {}.* 1\r\n", inbox("js", *i))),
        Role::Publisher(_) => None,
    };
    if let Some(sub) = sub {
        writer.write_all(sub.as_bytes()).await?;
        writer.write_all(b"PING\r\n").await?;
        reader.until_pong(&writer).await?;
        if spec.sub_server.is_some() {
            // The PONG says our server has the interest; the other server
            // learns it over their connection (LS+), well within this.
            glommio::timer::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok((reader, writer))
}

/// A client's reply subject prefix; the process id keeps two bench processes
/// on one server from taking each other's replies.
pub(crate) fn inbox(kind: &str, index: usize) -> String {
    format!("_INBOX.{kind}.{}.{index}", std::process::id())
}

fn subject_for(spec: &Spec, publisher: usize) -> String {
    if spec.multisubject {
        format!("{}.{publisher}", spec.subject)
    } else {
        spec.subject.clone()
    }
}

fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

fn payload(size: usize, stamp: u64) -> Vec<u8> {
    let mut p = vec![b'x'; size];
    if size >= 8 {
        p[..8].copy_from_slice(&stamp.to_le_bytes());
    }
    p
}

async fn publisher(
    spec: &Spec,
    index: usize,
    mut reader: Reader,
    writer: Writer,
) -> Result<(ClientStat, Option<Histogram<u64>>), String> {
    if spec.mode.acked() {
        let (s, h) = js_publisher(spec, index, reader, writer).await?;
        return Ok((s, Some(h)));
    }
    let count = share(spec.msgs, spec.pubs, index);
    let subject = subject_for(spec, index);
    let rate = spec.rate.map(|r| r / spec.pubs as f64);
    let start = Instant::now();
    let mut out = Vec::with_capacity(128 * 1024);
    let mut sent = 0u64;
    while sent < count {
        if let Some(rate) = rate {
            // Open loop: send what is due, stamped with when it was due.
            let due = intended_offset(sent, rate);
            let now = start.elapsed();
            if due > now {
                glommio::timer::sleep(due - now).await;
            }
            let now = start.elapsed();
            while sent < count && intended_offset(sent, rate) <= now && out.len() < 64 * 1024 {
                let intended = start + intended_offset(sent, rate);
                let stamp = intended.duration_since(epoch()).as_nanos() as u64;
                encode_pub(
                    &mut out,
                    subject.as_bytes(),
                    None,
                    &payload(spec.size, stamp),
                );
                sent += 1;
            }
        } else {
            let stamp = now_ns();
            let body = payload(spec.size, stamp);
            while sent < count && out.len() < 64 * 1024 {
                encode_pub(&mut out, subject.as_bytes(), None, &body);
                sent += 1;
            }
        }
        writer.write_all(&out).await?;
        out.clear();
    }
    // The server has processed everything once it answers a PING.
    writer.write_all(b"PING\r\n").await?;
    reader.until_pong(&writer).await?;
    Ok((
        ClientStat {
            msgs: count,
            bytes: count * spec.size as u64,
            elapsed: start.elapsed(),
        },
        None,
    ))
}

async fn subscriber(
    spec: &Spec,
    mut reader: Reader,
    writer: Writer,
) -> Result<(ClientStat, Histogram<u64>), String> {
    let mut hist = new_histogram();
    let mut got = 0u64;
    let mut start = None;
    while got < spec.msgs {
        match reader.next().await? {
            ServerOp::Msg { msg, .. } => {
                start.get_or_insert_with(Instant::now);
                got += 1;
                if msg.len() >= 8 && spec.mode == Mode::PubSub {
                    let sent = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
                    hist.record(now_ns().saturating_sub(sent).max(1))
                        .map_err(|e| format!("{e:?}"))?;
                }
            }
            ServerOp::Ping => writer.write_all(b"PONG\r\n").await?,
            _ => {}
        }
    }
    let elapsed = start.map_or(Duration::ZERO, |s| s.elapsed());
    Ok((
        ClientStat {
            msgs: got,
            bytes: got * spec.size as u64,
            elapsed,
        },
        hist,
    ))
}

async fn requester(
    spec: &Spec,
    index: usize,
    mut reader: Reader,
    writer: Writer,
) -> Result<(ClientStat, Histogram<u64>), String> {
    let count = share(spec.msgs, spec.pubs, index);
    let mut hist = new_histogram();
    let start = Instant::now();
    let mut out = Vec::new();
    for k in 0..count {
        if let Some(rate) = spec.rate.map(|r| r / spec.pubs as f64) {
            let due = intended_offset(k, rate);
            let now = start.elapsed();
            if due > now {
                glommio::timer::sleep(due - now).await;
            }
        }
        let sent = match spec.rate {
            Some(r) => (start + intended_offset(k, r / spec.pubs as f64))
                .duration_since(epoch())
                .as_nanos() as u64,
            None => now_ns(),
        };
        out.clear();
        let inbox = format!("{}.{k}", inbox("bench", index));
        encode_pub(
            &mut out,
            spec.subject.as_bytes(),
            Some(inbox.as_bytes()),
            &payload(spec.size, sent),
        );
        writer.write_all(&out).await?;
        loop {
            match reader.next().await? {
                ServerOp::Msg { hdr_len, .. } if hdr_len > 0 => {
                    return Err(format!(
                        "request to {} got a status reply (no responders?)",
                        spec.subject
                    ))
                }
                ServerOp::Msg { .. } => break,
                ServerOp::Ping => writer.write_all(b"PONG\r\n").await?,
                _ => {}
            }
        }
        hist.record(now_ns().saturating_sub(sent).max(1))
            .map_err(|e| format!("{e:?}"))?;
    }
    Ok((
        ClientStat {
            msgs: count,
            bytes: count * spec.size as u64,
            elapsed: start.elapsed(),
        },
        hist,
    ))
}

/// Echoes every request until cancelled (or the connection fails).
async fn responder(mut reader: Reader, writer: Writer) -> Result<ClientStat, String> {
    let mut out = Vec::new();
    loop {
        match reader.next().await? {
            ServerOp::Msg {
                reply: Some(reply),
                msg,
                hdr_len,
                ..
            } => {
                out.clear();
                encode_pub(&mut out, &reply, None, &msg[hdr_len..]);
                writer.write_all(&out).await?;
            }
            ServerOp::Ping => writer.write_all(b"PONG\r\n").await?,
            _ => {}
        }
    }
}

async fn js_publisher(
    spec: &Spec,
    index: usize,
    mut reader: Reader,
    writer: Writer,
) -> Result<(ClientStat, Histogram<u64>), String> {
    let count = share(spec.msgs, spec.pubs, index);
    let mut hist = new_histogram();
    // When each publish in flight was due (at a rate) or sent: acks of one
    // stream come back in order. At most `--window` entries.
    let mut sent_at: std::collections::VecDeque<u64> =
        std::collections::VecDeque::with_capacity(spec.window);
    let mut body = payload(spec.size, 0);
    // With --rate, message n is due at start + n / rate and carries that time.
    let rate = spec.rate.map(|r| r / spec.pubs as f64);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    let prefix = format!("{}.", inbox("js", index));
    while acked < count {
        let now = start.elapsed();
        while sent < count
            && sent - acked < spec.window as u64
            && out.len() < 64 * 1024
            && rate.is_none_or(|r| intended_offset(sent, r) <= now)
        {
            let inbox = format!("{prefix}{sent}");
            let subject = match spec.mode {
                Mode::KvPut => kv_key(spec, index + sent as usize * spec.pubs),
                _ => subject_for(spec, index),
            };
            if let Some(r) = rate {
                let intended = start + intended_offset(sent, r);
                let stamp = intended.duration_since(epoch()).as_nanos() as u64;
                body[..8].copy_from_slice(&stamp.to_le_bytes());
                sent_at.push_back(stamp);
            } else {
                sent_at.push_back(now_ns());
            }
            match &spec.ttl {
                Some(t) => {
                    let hdr = t.header(now);
                    encode_hpub(&mut out, subject.as_bytes(), inbox.as_bytes(), &hdr, &body);
                }
                None => encode_pub(&mut out, subject.as_bytes(), Some(inbox.as_bytes()), &body),
            }
            sent += 1;
        }
        // A full buffer with room left in the window: write it and go on
        // filling, as a client's async publish does (nats.go blocks only on
        // its pending limit). Draining first would hold large messages to a
        // few in flight whatever the window.
        let more = out.len() >= 64 * 1024 && sent < count && sent - acked < spec.window as u64;
        if !out.is_empty() {
            writer.write_all(&out).await?;
            out.clear();
        }
        if more {
            continue;
        }
        // At a rate, wait for acks only until the next message is due.
        let wait = match rate {
            Some(r) if sent < count && sent - acked < spec.window as u64 => {
                Some(intended_offset(sent, r).saturating_sub(start.elapsed()))
            }
            _ => None,
        };
        if wait == Some(Duration::ZERO) {
            continue;
        }
        // Take every ack already received before refilling the window, so the
        // next write carries as many publishes as it can (as clients do).
        drain_within(&mut reader, &writer, wait, |d| {
            if d.hdr_len > 0 {
                return Err(
                    "JetStream publish got a status reply: no stream listens on the subject".into(),
                );
            }
            if memchr::memmem::find(&d.msg, b"\"error\"").is_some() {
                return Err(format!(
                    "JetStream refused a publish: {}",
                    String::from_utf8_lossy(&d.msg)
                ));
            }
            if acked == sent {
                return Err("an ack arrived for a publish never sent".into());
            }
            acked += 1;
            if let Some(at) = sent_at.pop_front() {
                let _ = hist.record(now_ns().saturating_sub(at).max(1));
            }
            Ok(())
        })
        .await?;
    }
    let stat = ClientStat {
        msgs: count,
        bytes: count * spec.size as u64,
        elapsed: start.elapsed(),
    };
    Ok((stat, hist))
}

/// A message from the server, as `drain_within` hands it on.
pub(crate) struct Delivered {
    pub subject: Bytes,
    pub reply: Option<Bytes>,
    pub hdr_len: usize,
    pub msg: Bytes,
}

/// Waits for the next message (at most `wait`, if given), then takes every one
/// already buffered, handing each to `each`; server PINGs are answered. `false`
/// = the wait ran out with nothing read.
pub(crate) async fn drain_within(
    reader: &mut Reader,
    writer: &Writer,
    wait: Option<Duration>,
    mut each: impl FnMut(Delivered) -> Result<(), String>,
) -> Result<bool, String> {
    let first = match wait {
        None => reader.next().await?,
        Some(wait) => {
            // Reader::next is cancel-safe: glommio reads only when polled ready,
            // and nothing is taken off the buffer until an op is whole.
            let next = async { Some(reader.next().await) };
            let timeout = async {
                glommio::timer::sleep(wait).await;
                None
            };
            match futures_lite::future::or(next, timeout).await {
                Some(op) => op?,
                None => return Ok(false),
            }
        }
    };
    let mut op = Some(first);
    while let Some(o) = op {
        match o {
            ServerOp::Msg {
                subject,
                reply,
                hdr_len,
                msg,
            } => each(Delivered {
                subject,
                reply,
                hdr_len,
                msg,
            })?,
            ServerOp::Ping => writer.write_all(b"PONG\r\n").await?,
            _ => {}
        }
        op = reader.try_next()?;
    }
    Ok(true)
}

/// One request/response on a fresh connection (JetStream API calls).
pub(crate) fn api_request(spec: &Spec, subject: &str, body: &str) -> Result<Bytes, String> {
    let server = spec.server.clone();
    let (subject, body) = (subject.to_string(), body.to_string());
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(128 * 1024)
        .spawn(move || async move {
            // Bounded as a whole: a server that accepts but never speaks
            // (stopped, or not NATS) must not hang the run's setup or teardown.
            let answer = async {
                let (mut reader, writer) = connect_on(&server, "bench-api", None).await?;
                let reply = format!("{}.1", inbox("api", 0));
                let mut out = format!("SUB {} 1\r\n", reply).into_bytes();
                encode_pub(
                    &mut out,
                    subject.as_bytes(),
                    Some(reply.as_bytes()),
                    body.as_bytes(),
                );
                writer.write_all(&out).await?;
                loop {
                    match reader.next().await? {
                        ServerOp::Msg { hdr_len, msg, .. }
                            if hdr_len > 0 && msg.starts_with(b"NATS/1.0 503") =>
                        {
                            return Err::<Bytes, String>(
                                "JetStream is not enabled on this server (no responders)".into(),
                            )
                        }
                        ServerOp::Msg { msg, .. } => return Ok(msg),
                        _ => {}
                    }
                }
            };
            let timeout = async {
                glommio::timer::sleep(Duration::from_secs(5)).await;
                Err(format!(
                    "JetStream API ({subject}) did not answer within 5 s"
                ))
            };
            futures_lite::future::or(answer, timeout).await
        })
        .map_err(|e| format!("executor: {e}"))?
        .join()
        .map_err(|e| format!("executor: {e}"))?
}

/// The stream a run uses: `--stream`, or `KV_<--stream>` for a bucket.
fn stream_name(spec: &Spec) -> String {
    match spec.mode {
        Mode::KvPut | Mode::KvGet => format!("KV_{}", spec.stream),
        _ => spec.stream.clone(),
    }
}

/// The subject of key `n` (modulo `--keys`) in the bucket.
fn kv_key(spec: &Spec, n: usize) -> String {
    format!("$KV.{}.k{}", spec.stream, n % spec.keys)
}

fn js_create_stream(spec: &Spec) -> Result<(), String> {
    let name = stream_name(spec);
    let config = match spec.mode {
        // What clients send for a bucket with history 1.
        Mode::KvPut | Mode::KvGet => serde_json::json!({
            "name": name, "subjects": [format!("$KV.{}.>", spec.stream)], "storage": spec.storage,
            "max_msgs_per_subject": 1, "discard": "new", "allow_rollup_hdrs": true,
            "deny_delete": true, "allow_direct": true, "max_msgs": -1, "max_consumers": -1,
        }),
        _ => serde_json::json!({
            "name": name, "storage": spec.storage,
            "subjects": [if spec.multisubject { format!("{}.>", spec.subject) } else { spec.subject.clone() }],
            "allow_direct": spec.mode == Mode::JsGet,
        }),
    };
    let mut config = config;
    if spec.ttl.is_some() {
        // A bucket with TTLs is one with limit markers (1 s) as clients make it.
        config["allow_msg_ttl"] = true.into();
        if matches!(spec.mode, Mode::KvPut | Mode::KvGet) {
            config["subject_delete_marker_ttl"] = 1_000_000_000u64.into();
        }
    }
    let reply = api_request(
        spec,
        &format!("$JS.API.STREAM.CREATE.{name}"),
        &config.to_string(),
    )?;
    let value: serde_json::Value =
        serde_json::from_slice(&reply).map_err(|e| format!("bad API reply: {e}"))?;
    match value.get("error") {
        Some(err) => Err(format!("cannot create stream {name}: {err}")),
        None => Ok(()),
    }
}

fn js_delete_stream(spec: &Spec) {
    let _ = api_request(
        spec,
        &format!("$JS.API.STREAM.DELETE.{}", stream_name(spec)),
        "",
    );
}

/// Direct gets with up to `--window` in flight: by sequence (`js get`, cycling
/// over the preloaded messages) or a key's last value (`kv get`). Latency is
/// each get's round trip.
async fn getter(
    spec: &Spec,
    index: usize,
    mut reader: Reader,
    writer: Writer,
) -> Result<(ClientStat, Histogram<u64>), String> {
    let count = share(spec.msgs, spec.pubs, index);
    let mut hist = new_histogram();
    let start = Instant::now();
    let name = stream_name(spec);
    let mut sent_at: Vec<u64> = Vec::with_capacity(count as usize);
    let mut done = 0u64;
    let mut bytes = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    let prefix = format!("{}.", inbox("bench", index));
    while done < count {
        while (sent_at.len() as u64) < count
            && sent_at.len() as u64 - done < spec.window as u64
            && out.len() < 64 * 1024
        {
            let n = sent_at.len();
            let inbox = format!("{prefix}{n}");
            let k = index + n * spec.pubs;
            match spec.mode {
                Mode::KvGet => {
                    let subject = format!("$JS.API.DIRECT.GET.{name}.{}", kv_key(spec, k));
                    encode_pub(&mut out, subject.as_bytes(), Some(inbox.as_bytes()), b"");
                }
                _ => {
                    let seq = k as u64 % spec.msgs.max(1) + 1;
                    let body = format!("{{\"seq\":{seq}}}");
                    let subject = format!("$JS.API.DIRECT.GET.{name}");
                    encode_pub(
                        &mut out,
                        subject.as_bytes(),
                        Some(inbox.as_bytes()),
                        body.as_bytes(),
                    );
                }
            }
            sent_at.push(now_ns());
        }
        if !out.is_empty() {
            writer.write_all(&out).await?;
            out.clear();
        }
        drain_within(&mut reader, &writer, None, |d| {
            let (msg, hdr_len, subject) = (d.msg, d.hdr_len, d.subject);
            if let Some((code, text)) = status(&msg[..hdr_len]).filter(|(c, _)| *c >= 400) {
                return Err(format!("direct get failed: NATS/1.0 {code} {text}"));
            }
            let n: usize = std::str::from_utf8(&subject[prefix.len().min(subject.len())..])
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or("a get reply arrived on an unknown inbox")?;
            let sent = *sent_at
                .get(n)
                .ok_or("a get reply for a request never sent")?;
            hist.record(now_ns().saturating_sub(sent).max(1))
                .map_err(|e| format!("{e:?}"))?;
            bytes += (msg.len() - hdr_len) as u64;
            done += 1;
            Ok(())
        })
        .await?;
    }
    Ok((
        ClientStat {
            msgs: count,
            bytes,
            elapsed: start.elapsed(),
        },
        hist,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_add_up() {
        for (total, parts) in [(10u64, 3usize), (1, 4), (1000, 7)] {
            let sum: u64 = (0..parts).map(|i| super::share(total, parts, i)).sum();
            assert_eq!(sum, total);
        }
    }
}
