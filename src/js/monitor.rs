//! What JetStream tells the monitoring port: a stream's `/jsz` detail (its
//! config, state and consumers, in the same JSON the API answers with).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::js::api;
use crate::js::stream::Stream;
use crate::js::Js;

/// A JSON object's fields in their order, values kept as they were written.
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Fields, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Fields {
    fn of(json: &[u8]) -> Fields {
        serde_json::from_slice(json).expect("our own info JSON is an object")
    }

    fn take(&mut self, key: &str) -> Option<Box<RawValue>> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }
}

#[derive(Serialize)]
struct Leader<'a> {
    leader: &'a str,
}

#[derive(Serialize)]
struct Detail<'a> {
    name: &'a str,
    created: Option<Box<RawValue>>,
    cluster: Leader<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<Box<RawValue>>,
    state: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    consumer_detail: Vec<Fields>,
}

/// Stream `s`'s `/jsz` detail as compact JSON: name, created, cluster
/// (this server leads), config when `config`, state, and its consumers'
/// infos when `consumers`.
pub fn stream_detail(js: &Js, s: &Stream, consumers: bool, config: bool) -> String {
    let mut info = Fields::of(&api::info::stream_info(js, s, "list", None, false));
    let mut consumer_detail = Vec::new();
    if consumers {
        let list: Vec<_> = s.consumers.borrow().values().cloned().collect();
        for c in list {
            let mut item = Fields::of(&api::consumer::info(&js.shard, &c, "list"));
            if !config {
                item.take("config");
            }
            consumer_detail.push(item);
        }
    }
    let detail = Detail {
        name: &s.name,
        created: info.take("created"),
        cluster: Leader {
            leader: &js.shard.server.server_id,
        },
        config: info.take("config").filter(|_| config),
        state: info.take("state"),
        consumer_detail,
    };
    serde_json::to_string(&detail).expect("serializes")
}

/// The server's JetStream limits, memory and file storage: the config file's
/// `max_memory_store` and `max_file_store`, else (unset, zero or negative, as
/// nats-server reads them) its defaults: three quarters of the machine's
/// memory and of the store's free disk space (1 TiB when that cannot be read).
pub fn account_limits(cfg: &crate::config::Config) -> (i64, i64) {
    let f = &cfg.file_settings;
    let (mem, file) = (
        f.max_memory_store.filter(|v| *v > 0),
        f.max_file_store.filter(|v| *v > 0),
    );
    if let (Some(m), Some(s)) = (mem, file) {
        return (m, s);
    }
    let (dm, ds) = default_limits(cfg);
    (mem.unwrap_or(dm), file.unwrap_or(ds))
}

fn default_limits(cfg: &crate::config::Config) -> (i64, i64) {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let memory = (pages.max(0) as i128 * page.max(0) as i128 * 3 / 4) as i64;
    let storage = cfg
        .jetstream
        .as_deref()
        .and_then(free_disk_bytes)
        .map_or(1 << 40, |free| (free as i128 * 3 / 4) as i64);
    (memory, storage)
}

/// Bytes available to us on the file system holding `dir` (or its nearest
/// existing parent).
fn free_disk_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let existing = dir.ancestors().find(|p| p.exists())?;
    let path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}
