//! JetStream on one shard: the streams this shard owns, a replica of the
//! catalogue (every stream's owner and config), API routing, and start-up
//! recovery.
//!
//! Who does what:
//! - The shard a request arrives on routes it (`route_api`): catalogue calls
//!   (create, update, delete, names, list, account info) go to shard 0, the
//!   coordinator; calls about one stream go straight to its owner.
//! - Shard 0 serialises catalogue changes: it validates, picks the owner,
//!   broadcasts the new catalogue entry, and tells the owner to act; the owner
//!   answers the client.
//! - A stream's subjects are internal subscriptions (cid 0, sub = uid) in every
//!   shard's interest trie, so publishes reach the owner through the normal
//!   routing, in order with the publisher's own subscriptions.

pub mod api;
pub mod capi;
pub mod cconfig;
pub mod config;
pub mod consumer;
pub mod errors;
pub mod filelog;
pub mod index;
pub mod json;
pub mod record;
pub mod stream;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ahash::AHashMap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::js::config::StreamConfig;
use crate::js::index::Index;
use crate::js::stream::Stream;
use crate::shard::msg::{ShardMsg, SubKey};
use crate::shard::Shard;

/// Connection id of JetStream's internal subscriptions (never a client's).
pub const JS_CID: u64 = 0;
/// Set in `SubKey::sub` for a stream's direct-get subscriptions.
pub const DIRECT_BIT: u32 = 0x8000_0000;
/// Set in `SubKey::sub` for a stream's pull requests (`CONSUMER.MSG.NEXT`).
pub const NEXT_BIT: u32 = 0x4000_0000;
/// Set in `SubKey::sub` for a stream's acks (`$JS.ACK.<stream>.>`).
pub const ACK_BIT: u32 = 0x2000_0000;
/// Set in `SubKey::sub` for a stream's flow-control answers (`$JS.FC.<stream>.>`).
pub const FC_BIT: u32 = 0x1000_0000;
/// The stream uid part of an internal `SubKey::sub`.
pub const UID_MASK: u32 = 0x0FFF_FFFF;

/// `ShardMsg::Js` kinds.
pub mod cmd {
    /// Coordinator → all: catalogue entry `body` (JSON `CatalogEntry`), or
    /// removal of stream `reply` when `body` is empty.
    pub const CATALOG: u8 = 1;
    /// Coordinator → owner: create the stream in `body`; answer `reply`.
    pub const CREATE: u8 = 2;
    /// Coordinator → owner: apply the config in `body`; answer `reply`.
    pub const UPDATE: u8 = 3;
    /// Coordinator → owner: delete stream named `body`; answer `reply`.
    pub const DELETE: u8 = 4;
    /// Coordinator → owner: existing stream, identical create: answer with info.
    pub const CREATE_SAME: u8 = 5;
    /// Owner → coordinator: stream `body` is gone (create failed, or deleted
    /// and its files removed); forget it, so the name can be used again.
    pub const FORGET: u8 = 6;
    /// Coordinator → all: report streams (`body` = request JSON) for gather `arg`.
    pub const GATHER: u8 = 7;
    /// Any → coordinator: part of gather `arg` (`body` = JSON array).
    pub const GATHER_PART: u8 = 8;
}

/// How appends reach stable storage before they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fdatasync after every group-commit write, before its acks (default).
    Always,
    /// Acks after the write completes (O_DIRECT: in the device, maybe not
    /// on stable media); fdatasync at most this often.
    Interval(std::time::Duration),
}

/// A stream as every shard knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub owner: u16,
    pub uid: u32,
    pub created: i64,
    pub config: StreamConfig,
}

/// Stream metadata persisted beside the data (`meta.json`).
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    uid: u32,
    shard: u16,
    created: i64,
    config: StreamConfig,
}

struct Gather {
    parts: Vec<serde_json::Value>,
    waiting: usize,
    done: Rc<crate::notify::Notify>,
}

pub struct Js {
    pub root: PathBuf,
    pub sync: SyncMode,
    pub streams: RefCell<AHashMap<String, Rc<Stream>>>,
    pub by_uid: RefCell<AHashMap<u32, Rc<Stream>>>,
    pub catalog: RefCell<BTreeMap<String, CatalogEntry>>,
    next_uid: Cell<u32>,
    gathers: RefCell<AHashMap<u64, Rc<RefCell<Gather>>>>,
    next_gather: Cell<u64>,
    pub api_total: Cell<u64>,
    pub api_errors: Cell<u64>,
}

impl Js {
    pub fn streams_dir(&self) -> PathBuf {
        self.root.join("streams")
    }
}

/// Opens JetStream on shard `shard`: reads the catalogue, recovers owned
/// streams (blocking scan, before the shard accepts clients).
pub async fn open(shard: &Rc<Shard>, sync: SyncMode) -> Result<(), String> {
    let js = shard.js.as_ref().expect("JetStream enabled");
    let dir = js.streams_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("JetStream store {}: {e}", dir.display()))?;
    filelog::probe_device(&js.root, shard.id)
        .await
        .map_err(|e| format!("JetStream store {}: {e}", js.root.display()))?;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("JetStream store {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("meta.json").exists())
        .collect();
    names.sort();
    let mut max_uid = 0;
    for path in names {
        let raw = std::fs::read(path.join("meta.json"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let meta: Meta = match serde_json::from_slice(&raw) {
            Ok(m) => m,
            Err(e) => {
                crate::error!("JetStream: skipping {}: bad meta.json: {e}", path.display());
                continue;
            }
        };
        max_uid = max_uid.max(meta.uid);
        let owner = meta.shard % shard.count;
        let entry = CatalogEntry {
            owner,
            uid: meta.uid,
            created: meta.created,
            config: meta.config.clone(),
        };
        add_interest_local(shard, &entry);
        js.catalog
            .borrow_mut()
            .insert(meta.config.name.clone(), entry);
        if owner == shard.id {
            let stream = recover_stream(shard, path, meta).await?;
            start_stream(shard, stream.clone());
            for c in consumer::recover(&stream) {
                capi::start(shard, &stream, c);
            }
            // Acks whose removals did not reach the disk before a crash.
            consumer::retain_sweep(&stream);
        }
    }
    js.next_uid.set(max_uid + 1);
    let s = shard.clone();
    glommio::spawn_local(async move { expiry_loop(s).await }).detach();
    if let SyncMode::Interval(every) = sync {
        let s = shard.clone();
        glommio::spawn_local(async move { sync_loop(s, every).await }).detach();
    }
    Ok(())
}

impl Js {
    pub fn new(root: PathBuf, sync: SyncMode) -> Js {
        Js {
            root,
            sync,
            streams: RefCell::new(AHashMap::new()),
            by_uid: RefCell::new(AHashMap::new()),
            catalog: RefCell::new(BTreeMap::new()),
            next_uid: Cell::new(1),
            gathers: RefCell::new(AHashMap::new()),
            next_gather: Cell::new(1),
            api_total: Cell::new(0),
            api_errors: Cell::new(0),
        }
    }
}

async fn recover_stream(shard: &Rc<Shard>, dir: PathBuf, meta: Meta) -> Result<Rc<Stream>, String> {
    let js = shard.js.as_ref().expect("JetStream enabled");
    let cfg = meta.config;
    let memory = cfg.memory();
    let mut ix = Index::new(memory, cfg.first_seq.max(1));
    let mut log = None;
    let mut last_id = None;
    let mut ids = Vec::new();
    if !memory {
        let max_record =
            crate::js::record::HEADER + 64 * 1024 + crate::limits::PAYLOAD_MAX_LIMIT + 65_536;
        let window_start = json::now_nanos() - cfg.duplicate_window;
        let rollups = cfg.allow_rollup_hdrs;
        let segs = filelog::recover(&dir, &cfg.name, max_record, |r| match r.kind {
            record::KIND_MSG => {
                if r.seq <= ix.last_seq() && !(ix.msgs == 0 && r.seq >= ix.first_seq()) {
                    return;
                }
                let hdr = &r.data[..r.hdr_len];
                let id = crate::protocol::headers::get(hdr, b"Nats-Msg-Id")
                    .filter(|v| !v.is_empty())
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                if let Some(id) = &id {
                    if r.ts >= window_start {
                        ids.push((id.clone(), r.seq, r.ts));
                    }
                }
                let rollup = if rollups {
                    crate::protocol::headers::get(hdr, b"Nats-Rollup").map(<[u8]>::to_vec)
                } else {
                    None
                };
                last_id = id;
                let len = r.data.len();
                ix.append(
                    r.seq,
                    r.ts,
                    &r.subject,
                    r.hdr_len,
                    len,
                    r.seg,
                    r.off,
                    Some(r.data),
                );
                // A rollup's removals may not have reached the disk: redo them.
                match rollup.as_deref() {
                    Some(b"sub") => {
                        while let Some(older) = ix.first_of(&r.subject).filter(|s| *s < r.seq) {
                            ix.remove(older);
                        }
                    }
                    Some(b"all") => {
                        ix.raise_floor(r.seq);
                    }
                    _ => {}
                }
                // Keep memory bounded while loading a large stream.
                ix.evict(crate::limits::STREAM_CACHE_BYTES);
            }
            record::KIND_MOVED => {
                // A live message that compaction copied forward.
                let len = r.data.len();
                ix.insert_moved(
                    r.seq,
                    r.ts,
                    &r.subject,
                    r.hdr_len,
                    len,
                    r.seg,
                    r.off,
                    Some(r.data),
                );
                ix.evict(crate::limits::STREAM_CACHE_BYTES);
            }
            record::KIND_DELETE => {
                // An erased last message leaves only its delete record: the
                // sequence it had is still used.
                ix.skip_through(r.seq);
                ix.remove(r.seq);
            }
            _ => {
                ix.raise_floor(r.seq);
            }
        })
        .map_err(|e| format!("stream {}: {e}", cfg.name))?;
        let mut segs = segs;
        for seq in ix.first_seq()..=ix.last_seq() {
            if let Some(e) = ix.entry(seq) {
                if let Some(s) = segs.get_mut(&e.seg) {
                    s.live += 1;
                }
            }
        }
        let next = ix.last_seq() + 1;
        let sync = matches!(js.sync, SyncMode::Always);
        log = Some(
            filelog::FileLog::open(dir.clone(), segs, next, sync, shard.cfg.segment_bytes)
                .await
                .map_err(|e| format!("stream {}: {e}", cfg.name))?,
        );
        crate::info!(
            "  Restored {} messages for stream '{}' ({} bytes, sequences {}..{})",
            ix.msgs,
            cfg.name,
            ix.bytes,
            ix.first_seq(),
            ix.last_seq()
        );
    }
    let stream = Rc::new(Stream::new(
        meta.uid,
        cfg,
        meta.created,
        dir,
        ix,
        log,
        last_id,
    ));
    for (id, seq, ts) in ids {
        stream.remember_id(id, seq, ts);
    }
    stream.enforce_limits();
    stream.expire(json::now_nanos());
    stream.gc_segments().await;
    Ok(stream)
}

/// Registers an owned stream on this shard and starts its writer.
fn start_stream(shard: &Rc<Shard>, stream: Rc<Stream>) {
    let js = shard.js.as_ref().expect("JetStream enabled");
    js.streams
        .borrow_mut()
        .insert(stream.name.clone(), stream.clone());
    js.by_uid.borrow_mut().insert(stream.uid, stream.clone());
    let s = shard.clone();
    glommio::spawn_local(stream.run_writer(s)).detach();
}

/// The internal subscriptions of a stream: its subjects, and direct get.
fn interest_of(entry: &CatalogEntry) -> Vec<(Bytes, SubKey)> {
    let mut out: Vec<(Bytes, SubKey)> = entry
        .config
        .subjects
        .iter()
        .map(|s| {
            (
                Bytes::from(s.clone()),
                SubKey {
                    cid: JS_CID,
                    sub: entry.uid,
                    shard: entry.owner,
                },
            )
        })
        .collect();
    if entry.config.allow_direct {
        let key = SubKey {
            cid: JS_CID,
            sub: entry.uid | DIRECT_BIT,
            shard: entry.owner,
        };
        let name = &entry.config.name;
        out.push((Bytes::from(format!("$JS.API.DIRECT.GET.{name}")), key));
        out.push((Bytes::from(format!("$JS.API.DIRECT.GET.{name}.>")), key));
    }
    // Consumer traffic of the stream goes to its owner in order; a missing
    // consumer is answered there with a no-responders status.
    let name = &entry.config.name;
    let key = |bit: u32| SubKey {
        cid: JS_CID,
        sub: entry.uid | bit,
        shard: entry.owner,
    };
    out.push((
        Bytes::from(format!("$JS.API.CONSUMER.MSG.NEXT.{name}.*")),
        key(NEXT_BIT),
    ));
    out.push((Bytes::from(format!("$JS.ACK.{name}.>")), key(ACK_BIT)));
    out.push((Bytes::from(format!("$JS.ACK.*.*.{name}.>")), key(ACK_BIT)));
    out.push((Bytes::from(format!("$JS.FC.{name}.>")), key(FC_BIT)));
    out
}

/// Adds a stream's internal subscriptions to this shard's trie only (start-up:
/// every shard derives the same set from the catalogue).
fn add_interest_local(shard: &Shard, entry: &CatalogEntry) {
    let mut trie = shard.interest.borrow_mut();
    for (subject, key) in interest_of(entry) {
        trie.insert(&subject, None, key);
    }
}

/// Adds (`add`) or removes a stream's internal subscriptions here and, through
/// the mesh, everywhere (the owner does this, so they travel in order with its
/// answers).
fn change_interest(shard: &Shard, entry: &CatalogEntry, add: bool) {
    for (subject, key) in interest_of(entry) {
        if add {
            shard.interest.borrow_mut().insert(&subject, None, key);
        } else {
            shard.interest.borrow_mut().remove(&subject, None, key);
        }
        if let Some(mesh) = &shard.mesh {
            mesh.broadcast(|| {
                if add {
                    ShardMsg::Sub {
                        key,
                        subject: subject.clone(),
                        queue: None,
                    }
                } else {
                    ShardMsg::Unsub {
                        key,
                        subject: subject.clone(),
                        queue: None,
                    }
                }
            });
        }
    }
}

/// Writes `meta.json` atomically (temp file, fsync, rename, fsync directory).
fn write_meta(dir: &Path, meta: &Meta) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("meta.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(meta).expect("meta serializes"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("meta.json"))?;
    filelog::sync_dir(dir)
}

/// Removes messages past max_age on every owned stream, and old message ids.
async fn expiry_loop(shard: Rc<Shard>) {
    let js = shard.js.as_ref().expect("JetStream enabled");
    while !shard.stopping.get() {
        glommio::timer::sleep(crate::limits::EXPIRY_TICK).await;
        let now = json::now_nanos();
        let streams: Vec<Rc<Stream>> = js.streams.borrow().values().cloned().collect();
        for s in streams {
            if s.expire(now) {
                s.gc_segments().await;
            }
        }
    }
}

/// `--sync interval=<d>`: fdatasync every owned file stream that often.
async fn sync_loop(shard: Rc<Shard>, every: std::time::Duration) {
    let js = shard.js.as_ref().expect("JetStream enabled");
    while !shard.stopping.get() {
        glommio::timer::sleep(every).await;
        let streams: Vec<Rc<Stream>> = js.streams.borrow().values().cloned().collect();
        for s in streams {
            if let Err(e) = s.sync_now().await {
                crate::error!("JetStream stream '{}': periodic sync failed: {e}", s.name);
            }
        }
    }
}

/// Closes every owned stream (shutdown): staged writes finish first.
pub async fn close_all(shard: &Shard) {
    let Some(js) = &shard.js else { return };
    let streams: Vec<Rc<Stream>> = js.streams.borrow().values().cloned().collect();
    for s in streams {
        let consumers: Vec<Rc<consumer::Consumer>> =
            s.consumers.borrow().values().cloned().collect();
        for c in consumers {
            c.stop(shard, false).await;
        }
        s.close().await;
    }
}

impl Shard {
    /// Routes a `$JS.API.` publish; true when JetStream takes it (it then counts
    /// as having a responder). Direct gets go through interest instead.
    pub fn route_api(&self, p: &crate::protocol::parser::PubOp) -> bool {
        let Some(js) = &self.js else { return false };
        let rest = &p.subject[b"$JS.API.".len()..];
        if rest.starts_with(b"DIRECT.GET.") || rest.starts_with(b"CONSUMER.MSG.NEXT.") {
            return false;
        }
        // Without a reply subject the request is still carried out (as
        // nats-server does); its answer goes nowhere.
        let reply = p.reply.clone().unwrap_or_default();
        let target = match api::stream_of(rest) {
            Some(name) => js.catalog.borrow().get(name).map_or(0, |e| e.owner),
            None => 0,
        };
        let msg = ShardMsg::Api {
            subject: p.subject.clone(),
            reply,
            hdr_len: p.hdr_len.map(|h| h as u32),
            msg: p.msg.clone(),
        };
        self.send_to(target, msg);
        true
    }

    /// Handles `msg` here if `target` is this shard, else queues it to `target`.
    pub fn send_to(&self, target: u16, msg: ShardMsg) {
        if target == self.id {
            self.handle_js_local(msg);
        } else if let Some(mesh) = &self.mesh {
            mesh.push(target, msg);
            if !self.flush_pending.replace(true) {
                let shard = self.me();
                glommio::spawn_local(async move {
                    shard.flush_pending.set(false);
                    shard.flush_mesh().await;
                })
                .detach();
            }
        }
    }

    /// Applies a JetStream message addressed to this shard.
    pub fn handle_js_local(&self, msg: ShardMsg) {
        let shard = self.me();
        match msg {
            ShardMsg::Api {
                subject,
                reply,
                hdr_len,
                msg,
            } => {
                glommio::spawn_local(async move {
                    // glommio runs a new task at once; a request published by
                    // server code (a status or advisory sent to an API subject)
                    // must not run inside its sender, which may hold state.
                    futures_lite::future::yield_now().await;
                    api::handle(&shard, subject, reply, hdr_len.map(|h| h as usize), msg).await;
                })
                .detach();
            }
            ShardMsg::Js {
                kind,
                arg,
                reply,
                body,
            } => {
                glommio::spawn_local(async move { shard.js_cmd(kind, arg, reply, body).await })
                    .detach();
            }
            _ => unreachable!("only JetStream messages"),
        }
    }

    async fn js_cmd(self: Rc<Self>, kind: u8, arg: u64, reply: Bytes, body: Bytes) {
        let js = self.js.as_ref().expect("JetStream enabled");
        match kind {
            cmd::CATALOG => {
                let name = String::from_utf8_lossy(&reply).into_owned();
                if body.is_empty() {
                    js.catalog.borrow_mut().remove(&name);
                } else if let Ok(entry) = serde_json::from_slice::<CatalogEntry>(&body) {
                    js.catalog.borrow_mut().insert(name, entry);
                }
            }
            cmd::CREATE => {
                let Ok(entry) = serde_json::from_slice::<CatalogEntry>(&body) else {
                    return;
                };
                self.create_owned(entry, reply).await;
            }
            cmd::CREATE_SAME => {
                let name = String::from_utf8_lossy(&body).into_owned();
                let s = js.streams.borrow().get(&name).cloned();
                match s {
                    Some(s) => {
                        let info =
                            api::stream_info(&self, &s, "stream_create_response", None, true);
                        self.reply(&reply, None, &info);
                    }
                    None => api::reply_err(
                        &self,
                        &reply,
                        "stream_create_response",
                        &errors::ApiError::stream_not_found(),
                    ),
                }
                self.flush_mesh().await;
            }
            cmd::UPDATE => {
                let Ok(entry) = serde_json::from_slice::<CatalogEntry>(&body) else {
                    return;
                };
                self.update_owned(entry, reply).await;
            }
            cmd::DELETE => {
                let name = String::from_utf8_lossy(&body).into_owned();
                self.delete_owned(&name, reply).await;
            }
            cmd::FORGET => {
                let name = String::from_utf8_lossy(&body).into_owned();
                js.catalog.borrow_mut().remove(&name);
                self.broadcast_catalog(&name, None);
            }
            cmd::GATHER => {
                let part = api::gather_part(&self, &body);
                let msg = ShardMsg::Js {
                    kind: cmd::GATHER_PART,
                    arg,
                    reply: Bytes::new(),
                    body: Bytes::from(part),
                };
                self.send_to(0, msg);
            }
            cmd::GATHER_PART => {
                let g = js.gathers.borrow().get(&arg).cloned();
                if let Some(g) = g {
                    let mut g = g.borrow_mut();
                    if let Ok(serde_json::Value::Array(items)) = serde_json::from_slice(&body) {
                        g.parts.extend(items);
                    }
                    g.waiting -= 1;
                    if g.waiting == 0 {
                        g.done.notify();
                    }
                }
            }
            _ => crate::warn!("JetStream: unknown internal command {kind}"),
        }
    }

    /// Broadcasts a catalogue change from the coordinator (None = removed).
    pub fn broadcast_catalog(&self, name: &str, entry: Option<&CatalogEntry>) {
        let body = entry.map_or_else(Bytes::new, |e| {
            Bytes::from(serde_json::to_vec(e).expect("entry serializes"))
        });
        if let Some(mesh) = &self.mesh {
            let name = Bytes::from(name.to_string());
            mesh.broadcast(|| ShardMsg::Js {
                kind: cmd::CATALOG,
                arg: 0,
                reply: name.clone(),
                body: body.clone(),
            });
        }
    }

    /// Asks every shard for its part (stream infos or usage) and collects them.
    pub async fn gather(&self, request: serde_json::Value) -> Vec<serde_json::Value> {
        let js = self.js.as_ref().expect("JetStream enabled");
        let id = js.next_gather.get();
        js.next_gather.set(id + 1);
        let body = Bytes::from(serde_json::to_vec(&request).expect("json"));
        let mut parts: Vec<serde_json::Value> =
            match serde_json::from_slice(&api::gather_part(self, &body)) {
                Ok(serde_json::Value::Array(items)) => items,
                _ => Vec::new(),
            };
        let peers = usize::from(self.count) - 1;
        if peers == 0 {
            return parts;
        }
        let g = Rc::new(RefCell::new(Gather {
            parts: Vec::new(),
            waiting: peers,
            done: Rc::new(crate::notify::Notify::new()),
        }));
        js.gathers.borrow_mut().insert(id, g.clone());
        if let Some(mesh) = &self.mesh {
            mesh.broadcast(|| ShardMsg::Js {
                kind: cmd::GATHER,
                arg: id,
                reply: Bytes::new(),
                body: body.clone(),
            });
        }
        self.flush_mesh().await;
        let done = g.borrow().done.clone();
        // A peer that does not answer within the bound is left out of the answer.
        let timeout = glommio::timer::sleep(crate::limits::GATHER_TIMEOUT);
        futures_lite::future::or(done.wait(), timeout).await;
        js.gathers.borrow_mut().remove(&id);
        parts.extend(std::mem::take(&mut g.borrow_mut().parts));
        parts
    }

    async fn create_owned(self: &Rc<Self>, entry: CatalogEntry, reply: Bytes) {
        let js = self.js.as_ref().expect("JetStream enabled");
        let name = entry.config.name.clone();
        let dir = js.streams_dir().join(&name);
        let made = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            write_meta(
                &dir,
                &Meta {
                    uid: entry.uid,
                    shard: entry.owner,
                    created: entry.created,
                    config: entry.config.clone(),
                },
            )?;
            filelog::sync_dir(&js.streams_dir())
        })();
        let log = match made {
            Err(e) => Err(e),
            Ok(()) if entry.config.memory() => Ok(None),
            Ok(()) => {
                let first = entry.config.first_seq.max(1);
                filelog::FileLog::open(
                    dir.clone(),
                    BTreeMap::new(),
                    first,
                    matches!(js.sync, SyncMode::Always),
                    self.cfg.segment_bytes,
                )
                .await
                .map(Some)
            }
        };
        match log {
            Err(e) => {
                crate::error!("JetStream: creating stream '{name}': {e}");
                let _ = std::fs::remove_dir_all(&dir);
                api::reply_err(
                    self,
                    &reply,
                    "stream_create_response",
                    &errors::ApiError::create_failed(e),
                );
                self.send_to(
                    0,
                    ShardMsg::Js {
                        kind: cmd::FORGET,
                        arg: 0,
                        reply: Bytes::new(),
                        body: Bytes::from(name),
                    },
                );
            }
            Ok(log) => {
                let ix = Index::new(entry.config.memory(), entry.config.first_seq.max(1));
                let stream = Rc::new(Stream::new(
                    entry.uid,
                    entry.config.clone(),
                    entry.created,
                    dir,
                    ix,
                    log,
                    None,
                ));
                start_stream(self, stream.clone());
                change_interest(self, &entry, true);
                crate::debug!("JetStream: created stream '{name}' on shard {}", self.id);
                let info = api::stream_info(self, &stream, "stream_create_response", None, true);
                self.reply(&reply, None, &info);
            }
        }
        self.flush_mesh().await;
    }

    async fn update_owned(self: &Rc<Self>, entry: CatalogEntry, reply: Bytes) {
        let js = self.js.as_ref().expect("JetStream enabled");
        let s = js.streams.borrow().get(&entry.config.name).cloned();
        let Some(stream) = s else {
            api::reply_err(
                self,
                &reply,
                "stream_update_response",
                &errors::ApiError::stream_not_found(),
            );
            return;
        };
        let old = CatalogEntry {
            owner: entry.owner,
            uid: entry.uid,
            created: entry.created,
            config: stream.cfg.borrow().clone(),
        };
        if let Err(e) = write_meta(
            &stream.dir,
            &Meta {
                uid: entry.uid,
                shard: entry.owner,
                created: entry.created,
                config: entry.config.clone(),
            },
        ) {
            api::reply_err(
                self,
                &reply,
                "stream_update_response",
                &errors::ApiError::update_failed(e),
            );
            return;
        }
        change_interest(self, &old, false);
        *stream.cfg.borrow_mut() = entry.config.clone();
        change_interest(self, &entry, true);
        stream.enforce_limits();
        stream.expire(json::now_nanos());
        let _ = stream.sync_point().await;
        let info = api::stream_info(self, &stream, "stream_update_response", None, false);
        self.reply(&reply, None, &info);
        self.flush_mesh().await;
    }

    async fn delete_owned(self: &Rc<Self>, name: &str, reply: Bytes) {
        let js = self.js.as_ref().expect("JetStream enabled");
        let s = js.streams.borrow_mut().remove(name);
        let Some(stream) = s else {
            api::reply_err(
                self,
                &reply,
                "stream_delete_response",
                &errors::ApiError::stream_not_found(),
            );
            return;
        };
        js.by_uid.borrow_mut().remove(&stream.uid);
        let consumers: Vec<Rc<consumer::Consumer>> =
            std::mem::take(&mut *stream.consumers.borrow_mut())
                .into_values()
                .collect();
        for c in consumers {
            c.stop(self, true).await;
        }
        let entry = CatalogEntry {
            owner: self.id,
            uid: stream.uid,
            created: stream.created,
            config: stream.cfg.borrow().clone(),
        };
        change_interest(self, &entry, false);
        stream.close().await;
        let result = std::fs::remove_dir_all(&stream.dir)
            .and_then(|()| filelog::sync_dir(&js.streams_dir()));
        // Only now may the name be reused: the coordinator held it until here.
        self.send_to(
            0,
            ShardMsg::Js {
                kind: cmd::FORGET,
                arg: 0,
                reply: Bytes::new(),
                body: Bytes::from(name.to_string()),
            },
        );
        match result {
            Ok(()) => self.reply(
                &reply,
                None,
                br#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","success":true}"#,
            ),
            Err(e) => api::reply_err(
                self,
                &reply,
                "stream_delete_response",
                &errors::ApiError::delete_failed(e),
            ),
        }
        self.flush_mesh().await;
    }

    /// Coordinator: allocates a uid.
    pub fn next_stream_uid(&self) -> u32 {
        let js = self.js.as_ref().expect("JetStream enabled");
        let uid = js.next_uid.get();
        js.next_uid.set(uid + 1);
        uid
    }

    /// Pauses the caller while an owned stream's ingest queue is congested.
    pub async fn stall_on_stream(&self, uid: u32) {
        let stream = self
            .js
            .as_ref()
            .and_then(|js| js.by_uid.borrow().get(&uid).cloned());
        if let Some(s) = stream {
            s.wait_uncongested().await;
        }
    }

    /// Delivers a publish to stream `uid` owned here (or a direct get).
    /// Returns true if the stream is now congested.
    pub fn deliver_js(
        &self,
        sub: u32,
        subject: &Bytes,
        reply: Option<&Bytes>,
        hdr_len: Option<usize>,
        msg: &Bytes,
    ) -> bool {
        let Some(js) = &self.js else { return false };
        let stream = js.by_uid.borrow().get(&(sub & UID_MASK)).cloned();
        let Some(stream) = stream else { return false };
        let kind = sub & (NEXT_BIT | ACK_BIT | FC_BIT);
        if kind != 0 {
            capi::on_internal(self, &stream, kind, subject, reply, hdr_len, msg);
            return false;
        }
        if sub & DIRECT_BIT != 0 {
            if let Some(reply) = reply {
                if api::direct_get_now(self, &stream, subject, reply, hdr_len, msg) {
                    return false;
                }
                let shard = self.me();
                let (subject, reply, msg) = (subject.clone(), reply.clone(), msg.clone());
                glommio::spawn_local(async move {
                    api::direct_get(&shard, &stream, &subject, &reply, hdr_len, &msg).await;
                    shard.flush_mesh().await;
                })
                .detach();
            }
            return false;
        }
        match stream.ingest(subject, reply, hdr_len, msg) {
            stream::Ingest::Reply(body) => {
                if let Some(r) = reply {
                    self.reply(r, None, &body);
                }
            }
            stream::Ingest::Accepted | stream::Ingest::Silent => {}
        }
        stream.congested()
    }
}
