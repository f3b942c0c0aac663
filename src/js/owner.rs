//! A stream's life on its owner shard: create (directory, `meta.json`, the
//! first segment), config updates, delete, and the internal subscriptions that
//! bring its traffic here.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::js::store::index::Index;
use crate::js::store::segment;
use crate::js::stream::Stream;
use crate::js::types::catalog::CatalogEntry;
use crate::js::types::errors::ApiError;
use crate::js::types::json;
use crate::js::types::stream_config::StreamConfig;
use crate::js::{api, consumer, Js};
use crate::shard::msg::{JsCmd, ShardMsg, SubKey, ACK_BIT, DIRECT_BIT, FC_BIT, JS_CID, NEXT_BIT};
use crate::shard::Shard;

/// Stream metadata persisted beside the data (`meta.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Meta {
    pub uid: u32,
    pub shard: u16,
    pub created: i64,
    pub config: StreamConfig,
}

/// Writes `meta.json` atomically (temp file, fsync, rename, fsync directory).
pub fn write_meta(dir: &Path, meta: &Meta) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("meta.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(meta).expect("meta serializes"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("meta.json"))?;
    segment::sync_dir(dir)
}

/// Registers an owned stream on this shard and starts its writer.
pub fn start_stream(js: &Js, stream: Rc<Stream>) {
    let _ = stream
        .domain
        .set(js.shard.cfg.domain.as_deref().map(Rc::from));
    let _ = stream.room.set(js.room.clone());
    js.streams
        .borrow_mut()
        .insert(stream.name.clone(), stream.clone());
    js.by_uid.borrow_mut().insert(stream.uid, stream.clone());
    let s = js.shard.clone();
    glommio::spawn_local(stream.run_writer(s)).detach();
}

/// The queue group of direct gets: an origin and the mirrors that answer
/// for it (`mirror_direct`) share its requests, as in nats-server.
pub const DIRECT_GROUP: &[u8] = b"_sys_";

/// A stream's direct-get subscriptions for stream `name` (its own, or its
/// origin's when it is a mirror with `mirror_direct`).
pub fn direct_interest(name: &str, key: SubKey) -> [(Bytes, Option<Bytes>, SubKey); 2] {
    let group = Some(Bytes::from_static(DIRECT_GROUP));
    [
        (
            Bytes::from(format!("$JS.API.DIRECT.GET.{name}")),
            group.clone(),
            key,
        ),
        (
            Bytes::from(format!("$JS.API.DIRECT.GET.{name}.>")),
            group,
            key,
        ),
    ]
}

/// The internal subscriptions of a stream: its subjects, and direct get.
fn interest_of(entry: &CatalogEntry) -> Vec<(Bytes, Option<Bytes>, SubKey)> {
    let mut out: Vec<(Bytes, Option<Bytes>, SubKey)> = entry
        .config
        .subjects
        .iter()
        .map(|s| {
            (
                Bytes::from(s.clone()),
                None,
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
        out.extend(direct_interest(&entry.config.name, key));
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
        None,
        key(NEXT_BIT),
    ));
    out.push((Bytes::from(format!("$JS.ACK.{name}.>")), None, key(ACK_BIT)));
    out.push((
        Bytes::from(format!("$JS.ACK.*.*.{name}.>")),
        None,
        key(ACK_BIT),
    ));
    out.push((Bytes::from(format!("$JS.FC.{name}.>")), None, key(FC_BIT)));
    out
}

/// Adds a stream's internal subscriptions to this shard's trie only (start-up:
/// every shard derives the same set from the catalogue).
pub fn add_interest_local(shard: &Shard, entry: &CatalogEntry) {
    let mut trie = shard.interest.borrow_mut();
    for (subject, queue, key) in interest_of(entry) {
        trie.insert(&subject, queue.as_deref(), key);
    }
}

/// Adds (`add`) or removes a stream's internal subscriptions here and, through
/// the mesh, everywhere (the owner does this, so they travel in order with its
/// answers).
pub fn change_interest(shard: &Shard, entry: &CatalogEntry, add: bool) {
    for (subject, queue, key) in interest_of(entry) {
        set_interest(shard, &subject, queue.as_ref(), key, add);
    }
}

/// Adds (`add`) or removes one internal subscription here and everywhere.
pub fn set_interest(shard: &Shard, subject: &Bytes, queue: Option<&Bytes>, key: SubKey, add: bool) {
    if add {
        shard.interest_add(subject, queue, key);
    } else {
        shard.interest_remove(subject, queue, key);
    }
    if let Some(mesh) = &shard.mesh {
        mesh.broadcast(|| ShardMsg::interest(add, key, subject, queue));
    }
}

impl Js {
    pub(crate) async fn create_owned(&self, entry: CatalogEntry, reply: Bytes) {
        let name = entry.config.name.clone();
        self.making.borrow_mut().insert(name.clone()); // (and since it came: `command`)
        self.make(entry, reply).await;
        self.making.borrow_mut().remove(&name);
        self.made.notify_all();
    }

    async fn make(&self, entry: CatalogEntry, reply: Bytes) {
        let name = entry.config.name.clone();
        let dir = self.streams_dir().join(&name);
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
            segment::sync_dir(&self.streams_dir())
        })();
        let log = match made {
            Err(e) => Err(e),
            Ok(()) if entry.config.memory() => Ok(None),
            Ok(()) => {
                let first = entry.config.first_seq.max(1);
                segment::FileLog::open(
                    dir.clone(),
                    BTreeMap::new(),
                    first,
                    matches!(self.sync, crate::config::SyncMode::Always),
                    self.shard.cfg.segment_bytes,
                    None,
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
                    &ApiError::create_failed(e),
                );
                self.send_cmd(0, JsCmd::Forget { name });
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
                change_interest(&self.shard, &entry, true);
                self.start_links(&stream);
                self.sync_holds();
                crate::debug!(
                    "JetStream: created stream '{name}' on shard {}",
                    self.shard.id
                );
                let info =
                    api::info::stream_info(self, &stream, "stream_create_response", None, true);
                self.shard.reply(&reply, None, &info);
            }
        }
        self.shard.flush_mesh().await;
    }

    pub(crate) async fn update_owned(&self, entry: CatalogEntry, reply: Bytes) {
        self.made_ready(&entry.config.name).await;
        let s = self.streams.borrow().get(&entry.config.name).cloned();
        let Some(stream) = s else {
            api::reply_err(
                self,
                &reply,
                "stream_update_response",
                &ApiError::stream_not_found(),
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
                &ApiError::update_failed(e),
            );
            return;
        }
        change_interest(&self.shard, &old, false);
        stream.set_config(entry.config.clone());
        change_interest(&self.shard, &entry, true);
        self.update_links(&stream);
        self.sync_holds();
        stream.enforce_limits();
        let (new, was) = (&entry.config, &old.config);
        consumer::retain_after_update(&stream, was.retention()).await;
        if stream.closed.get() {
            // Deleted while its messages were swept: that answer went first.
            let e = ApiError::stream_not_found();
            return api::reply_err(self, &reply, "stream_update_response", &e);
        }
        if (new.allow_msg_ttl && !was.allow_msg_ttl)
            || (new.subject_delete_marker_ttl > 0 && was.subject_delete_marker_ttl == 0)
        {
            stream.rescan_expiry().await;
        }
        stream.expire(json::now_nanos());
        let _ = stream.sync_point().await;
        let info = api::info::stream_info(self, &stream, "stream_update_response", None, false);
        self.shard.reply(&reply, None, &info);
        self.shard.flush_mesh().await;
    }

    pub(crate) async fn delete_owned(&self, name: &str, reply: Bytes) {
        self.made_ready(name).await;
        let s = self.streams.borrow_mut().remove(name);
        let Some(stream) = s else {
            api::reply_err(
                self,
                &reply,
                "stream_delete_response",
                &ApiError::stream_not_found(),
            );
            return;
        };
        self.by_uid.borrow_mut().remove(&stream.uid);
        // As a target, its links close their taps; as an origin, its
        // targets hear it is gone.
        let links = self.links.borrow().get(&stream.uid).cloned();
        self.stop_links(stream.uid);
        if let Some(l) = links {
            Js::links_stopped(&l).await;
        }
        self.taps_end(&stream);
        let consumers: Vec<Rc<consumer::Consumer>> =
            std::mem::take(&mut *stream.consumers.borrow_mut())
                .into_values()
                .collect();
        for c in consumers {
            c.stop(&self.shard, true).await;
        }
        let entry = CatalogEntry {
            owner: self.shard.id,
            uid: stream.uid,
            created: stream.created,
            config: stream.cfg.borrow().clone(),
        };
        change_interest(&self.shard, &entry, false);
        stream.close(false).await;
        let result = std::fs::remove_dir_all(&stream.dir)
            .and_then(|()| segment::sync_dir(&self.streams_dir()));
        // Only now may the name be reused: the coordinator held it until here.
        self.send_cmd(
            0,
            JsCmd::Forget {
                name: name.to_string(),
            },
        );
        match result {
            Ok(()) => self.shard.reply(
                &reply,
                None,
                br#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","success":true}"#,
            ),
            Err(e) => api::reply_err(
                self,
                &reply,
                "stream_delete_response",
                &ApiError::delete_failed(e),
            ),
        }
        self.shard.flush_mesh().await;
    }
}
