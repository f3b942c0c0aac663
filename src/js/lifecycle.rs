//! JetStream's life on a shard: start-up (the catalogue read from disk, owned
//! streams recovered from their segments, durable consumers restored), the
//! background loops (max_age expiry, `--sync interval` fdatasync), shutdown.

use std::path::PathBuf;
use std::rc::Rc;

use crate::config::SyncMode;
use crate::js::owner::{add_interest_local, start_stream, Meta};
use crate::js::store::index::Index;
use crate::js::store::{record, segment};
use crate::js::stream::Stream;
use crate::js::types::catalog::CatalogEntry;
use crate::js::types::json;
use crate::js::{api, consumer, Js};
use crate::shard::Shard;

/// Opens JetStream on shard `shard`: reads the catalogue, recovers the streams
/// this shard owns (blocking scan, before the shard accepts clients), starts
/// the background loops, and installs JetStream in the shard.
pub async fn open(shard: &Rc<Shard>, root: PathBuf, sync: SyncMode) -> Result<Rc<Js>, String> {
    let js = Js::new(shard.clone(), root, sync);
    if shard.js.set(js.clone()).is_err() {
        unreachable!("JetStream opened twice on shard {}", shard.id);
    }
    let dir = js.streams_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("JetStream store {}: {e}", dir.display()))?;
    segment::probe_device(&js.root, shard.id)
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
            let stream = recover_stream(&js, path, meta).await?;
            start_stream(&js, stream.clone());
            for c in consumer::recover(&stream) {
                api::consumer::start(&js, &stream, c);
            }
            // Acks whose removals did not reach the disk before a crash.
            consumer::retain_sweep(&stream);
        }
    }
    js.next_uid.set(max_uid + 1);
    let j = js.clone();
    glommio::spawn_local(async move { expiry_loop(j).await }).detach();
    if let SyncMode::Interval(every) = sync {
        let j = js.clone();
        glommio::spawn_local(async move { sync_loop(j, every).await }).detach();
    }
    Ok(js)
}

async fn recover_stream(js: &Js, dir: PathBuf, meta: Meta) -> Result<Rc<Stream>, String> {
    let cfg = meta.config;
    let memory = cfg.memory();
    let mut ix = Index::new(memory, cfg.first_seq.max(1));
    let mut log = None;
    let mut last_id = None;
    let mut ids = Vec::new();
    if !memory {
        let max_record = crate::js::store::record::HEADER
            + 64 * 1024
            + crate::limits::PAYLOAD_MAX_LIMIT
            + 65_536;
        let window_start = json::now_nanos() - cfg.duplicate_window;
        let rollups = cfg.allow_rollup_hdrs;
        let segs = segment::recover(&dir, &cfg.name, max_record, |r| match r.kind {
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
            segment::FileLog::open(dir.clone(), segs, next, sync, js.shard.cfg.segment_bytes)
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

/// Removes messages past max_age on every owned stream, and old message ids.
async fn expiry_loop(js: Rc<Js>) {
    while !js.shard.stopping.get() {
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
async fn sync_loop(js: Rc<Js>, every: std::time::Duration) {
    while !js.shard.stopping.get() {
        glommio::timer::sleep(every).await;
        let streams: Vec<Rc<Stream>> = js.streams.borrow().values().cloned().collect();
        for s in streams {
            if let Err(e) = s.sync_now().await {
                crate::error!("JetStream stream '{}': periodic sync failed: {e}", s.name);
            }
        }
    }
}

impl Js {
    /// Closes every owned stream (shutdown): staged writes finish first.
    pub async fn close_all(&self) {
        let streams: Vec<Rc<Stream>> = self.streams.borrow().values().cloned().collect();
        for s in streams {
            let consumers: Vec<Rc<consumer::Consumer>> =
                s.consumers.borrow().values().cloned().collect();
            for c in consumers {
                c.stop(&self.shard, false).await;
            }
            s.close().await;
        }
    }
}
