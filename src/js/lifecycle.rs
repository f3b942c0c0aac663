//! JetStream's life on a shard: start-up (the catalogue read from disk, owned
//! streams recovered from their segments, durable consumers restored), the
//! background loops (max_age expiry, `--sync interval` fdatasync), shutdown.

use std::path::PathBuf;
use std::rc::Rc;

use crate::config::SyncMode;
use crate::js::owner::{add_interest_local, start_stream, Meta};
use crate::js::store::index::Index;
use crate::js::store::recovery::Replayed;
use crate::js::store::{recovery, segment};
use crate::js::stream::recover::{Replay, ReplayOpts};
use crate::js::stream::Stream;
use crate::js::types::catalog::CatalogEntry;
use crate::js::types::json;
use crate::js::{api, consumer, Js};
use crate::limits::RECORD_BYTES_MAX;
use crate::shard::Shard;

/// Opens JetStream on shard `shard`: reads the catalogue, recovers the streams
/// this shard owns (blocking scan, before the shard accepts clients), starts
/// the background loops, and installs JetStream in the shard.
pub async fn open(shard: &Rc<Shard>, root: PathBuf, sync: SyncMode) -> Result<Rc<Js>, String> {
    crate::js::store::index::set_cache_budget(shard.cfg.index_cache_bytes);
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
    let mut recovered = Vec::new();
    for path in names {
        let raw = std::fs::read(path.join("meta.json"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let meta: Meta =
            match serde_json::from_slice(&raw).or_else(|e| placement_dropped(&raw).ok_or(e)) {
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
            stream.pack_sealed();
            for c in consumer::recover(&stream) {
                api::consumer::start(&js, &stream, c);
            }
            recovered.push(stream);
        }
    }
    js.next_uid.set(max_uid + 1);
    release_freed_memory();
    // Holds first: nothing a local target has not stored may go.
    js.sync_holds();
    for stream in recovered {
        // Acks whose removals did not reach the disk before a crash.
        consumer::retain_sweep(&stream);
    }
    let j = js.clone();
    glommio::spawn_local(async move { expiry_loop(j).await }).detach();
    if let SyncMode::Interval(every) = sync {
        let j = js.clone();
        glommio::spawn_local(async move { sync_loop(j, every).await }).detach();
    }
    Ok(js)
}

/// Recovery built each segment's entries and dropped them as they went
/// cold: gives that freed heap back to the kernel (glibc keeps freed memory
/// in its arenas otherwise, and it would stay resident).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands free heap pages back; no pointer is passed.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn recover_stream(js: &Js, dir: PathBuf, meta: Meta) -> Result<Rc<Stream>, String> {
    let cfg = meta.config;
    let ix = Index::new(cfg.memory(), cfg.first_seq.max(1));
    let window_start = json::now_nanos() - cfg.duplicate_window;
    let sources = !cfg.sources().is_empty();
    let mut replay = Replay::new(
        ix,
        ReplayOpts {
            window_start,
            rollups: cfg.allow_rollup_hdrs,
            sources,
            ttl: cfg.allow_msg_ttl,
            markers: cfg.subject_delete_marker_ttl > 0,
        },
    );
    let mut log = None;
    if !cfg.memory() {
        let fail = |e: std::io::Error| format!("stream {}: {e}", cfg.name);
        // Each segment's entries are left in its index file as soon as it is
        // replayed, so memory holds one segment's at a time (and then only
        // what the last one gets from now on).
        let (mut cold, mut whole) = (0, 0);
        let (mut segs, read, building) =
            recovery::recover(&dir, &cfg.name, RECORD_BYTES_MAX, |r| match r {
                Replayed::Record(r) => {
                    replay.apply(r);
                    false
                }
                Replayed::Indexed { first, index, path } => {
                    cold += usize::from(replay.ix.freeze(first, index, None, path));
                    false
                }
                Replayed::Whole { summary, path } => {
                    let took = replay.whole(summary, path);
                    whole += usize::from(took);
                    took
                }
            })
            .map_err(fail)?;
        let total = segs.len();
        let ix = &replay.ix;
        for (seg, n) in ix.live_by_segment() {
            if let Some(s) = segs.get_mut(&seg) {
                s.live += n;
            }
        }
        let sync = matches!(js.sync, SyncMode::Always);
        let next = ix.last_seq() + 1;
        let bytes = js.shard.cfg.segment_bytes;
        log = Some(
            segment::FileLog::open(dir.clone(), segs, next, sync, bytes, building)
                .await
                .map_err(fail)?,
        );
        crate::info!(
            "  Restored {} messages for stream '{}' ({} bytes, sequences {}..{}; read {read} of {total} segments, the rest from their index files, {whole} of them whole from their summaries; entries of {} left on disk)",
            ix.msgs,
            cfg.name,
            ix.bytes,
            ix.first_seq(),
            ix.last_seq(),
            cold + whole
        );
    }
    let Replay {
        ix,
        ids,
        last_id,
        found,
        expiries,
        ..
    } = replay;
    let stream = Rc::new(Stream::new(
        meta.uid,
        cfg,
        meta.created,
        dir,
        ix,
        log,
        last_id,
    ));
    // Before anything is removed below: the copies' positions.
    stream.restore_positions(found);
    for (id, seq, ts) in ids {
        stream.remember_id(id, seq, ts);
    }
    stream.restore_expiries(expiries);
    stream.enforce_limits();
    stream.expire(json::now_nanos());
    stream.gc_segments().await;
    Ok(stream)
}

/// Removes messages past max_age on every owned stream, and old message ids.
async fn expiry_loop(js: Rc<Js>) {
    let mut backlog = false;
    while !js.shard.stopping.get() {
        if backlog {
            // More due: carry on once the shard has polled for I/O (a bare
            // yield would run again before any socket or disk completion).
            glommio::timer::sleep(crate::limits::EXPIRY_BACKLOG_PAUSE).await;
        } else {
            glommio::timer::sleep(crate::limits::EXPIRY_TICK).await;
        }
        js.measure_room();
        let now = json::now_nanos();
        let streams: Vec<Rc<Stream>> = js.streams.borrow().values().cloned().collect();
        backlog = false;
        for s in streams {
            if s.expire(now) {
                s.gc_segments().await;
            }
            backlog |= s.expiry_backlog.get();
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
            s.close(true).await;
        }
    }
}

/// A meta.json written before placements were typed may hold one nats-server
/// would refuse (any JSON was kept then): the stream loads without it.
fn placement_dropped(raw: &[u8]) -> Option<Meta> {
    let mut v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    v.get_mut("config")?.as_object_mut()?.remove("placement")?;
    serde_json::from_value(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::js::types::stream_config::StreamConfig;

    // Test code: an unwrap that fails is the test failing.
    #[test]
    fn an_old_untyped_placement_is_dropped_not_the_stream() {
        let cfg = StreamConfig::decode(br#"{"name":"S","subjects":["s"]}"#, false).unwrap();
        let meta = Meta {
            uid: 7,
            shard: 1,
            created: 5,
            config: cfg,
        };
        let mut v = serde_json::to_value(&meta).unwrap();
        v["config"]["placement"] = serde_json::json!("anywhere");
        let raw = serde_json::to_vec(&v).unwrap();
        assert!(serde_json::from_slice::<Meta>(&raw).is_err());
        let m = placement_dropped(&raw).unwrap();
        assert_eq!(
            (m.uid, m.config.name.as_str(), m.config.placement),
            (7, "S", None)
        );
        // Nothing to drop: not taken for a fix.
        assert!(placement_dropped(br#"{"uid":1}"#).is_none());
    }
}
