//! The coordinator (shard 0): decides every catalogue change. It validates a
//! create, update or delete against the whole catalogue (names, subject
//! overlaps), picks a new stream's owner, broadcasts the new entry and tells
//! the owner to act; the owner answers the client (`js::owner`).

use bytes::Bytes;

use crate::js::api::{empty_request, reply_err};
use crate::js::types::catalog::CatalogEntry;
use crate::js::types::errors::ApiError;
use crate::js::types::json;
use crate::js::types::source::Role;
use crate::js::types::stream_config::StreamConfig;
use crate::js::Js;
use crate::shard::msg::JsCmd;

/// `STREAM.CREATE.<name>` on the coordinator.
pub fn create(js: &Js, name: &str, reply: &Bytes, body: &[u8]) {
    let kind = "stream_create_response";
    let mut cfg = match StreamConfig::decode(body, js.strict) {
        Ok(c) => c,
        Err(e) if e.err_code == 10025 && body.iter().all(|b| b.is_ascii_whitespace()) => {
            return reply_err(js, reply, kind, &ApiError::name_mismatch())
        }
        Err(e) => return reply_err(js, reply, kind, &e),
    };
    if cfg.name.is_empty() || cfg.name != name {
        return reply_err(js, reply, kind, &ApiError::name_mismatch());
    }
    if let Err(e) = check_name(&cfg.name) {
        return reply_err(js, reply, kind, &e);
    }
    if cfg.sealed {
        return reply_err(
            js,
            reply,
            kind,
            &ApiError::invalid_config("stream configuration for create can not be sealed"),
        );
    }
    if cfg.mirror_direct && cfg.mirror.is_none() {
        let e = ApiError::invalid_config("stream has no mirror but does have mirror direct");
        return reply_err(js, reply, kind, &e);
    }
    let checked = cfg
        .normalize(js.shard.cfg.max_payload)
        .and_then(|()| check_links(js, &mut cfg));
    if let Err(e) = checked {
        return reply_err(js, reply, kind, &e);
    }
    let existing = js.catalog.borrow().get(name).cloned();
    if let Some(e) = existing {
        if e.config == cfg {
            js.send_cmd(
                e.owner,
                JsCmd::CreateSame {
                    name: name.to_string(),
                    reply: reply.clone(),
                },
            );
            return;
        }
        return reply_err(js, reply, kind, &ApiError::name_in_use());
    }
    if overlaps_other(js, &cfg) {
        return reply_err(js, reply, kind, &ApiError::subjects_overlap());
    }
    if let Err(e) = check_reservation(js, &cfg) {
        return reply_err(js, reply, kind, &e);
    }
    // The owner: the shard with the fewest streams (lowest id on ties).
    let mut load = vec![0usize; usize::from(js.shard.count)];
    for e in js.catalog.borrow().values() {
        load[usize::from(e.owner)] += 1;
    }
    let owner = (0..js.shard.count)
        .min_by_key(|&i| (load[usize::from(i)], i))
        .unwrap_or(0);
    let entry = CatalogEntry {
        owner,
        uid: js.next_stream_uid(),
        created: json::now_nanos(),
        config: cfg,
    };
    js.catalog
        .borrow_mut()
        .insert(name.to_string(), entry.clone());
    js.broadcast_catalog(name, Some(&entry));
    js.catalog_changed(name, true);
    js.send_cmd(
        owner,
        JsCmd::Create {
            entry: Box::new(entry),
            reply: reply.clone(),
        },
    );
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.contains('/') || name.contains('\\') {
        return Err(ApiError {
            code: 400,
            err_code: 10128,
            description: "Stream name can not contain path separators".into(),
        });
    }
    Ok(())
}

/// A stream's `max_bytes` reserves that much of the server's limit for its
/// storage kind: every stream's reservations together must fit, as in
/// nats-server (10028 for memory, 10047 for file).
fn check_reservation(js: &Js, cfg: &StreamConfig) -> Result<(), ApiError> {
    if cfg.max_bytes <= 0 {
        return Ok(());
    }
    let memory = cfg.memory();
    let reserved: i64 = js
        .catalog
        .borrow()
        .iter()
        .filter(|(n, e)| **n != cfg.name && e.config.memory() == memory)
        .map(|(_, e)| e.config.max_bytes.max(0))
        .sum();
    let limit = if memory { js.limits.0 } else { js.limits.1 };
    match (reserved.saturating_add(cfg.max_bytes) > limit, memory) {
        (false, _) => Ok(()),
        (true, true) => Err(ApiError::insufficient_memory()),
        (true, false) => Err(ApiError::insufficient_storage()),
    }
}

fn overlaps_other(js: &Js, cfg: &StreamConfig) -> bool {
    let cat = js.catalog.borrow();
    cat.iter().filter(|(n, _)| **n != cfg.name).any(|(_, e)| {
        e.config.subjects.iter().any(|a| {
            cfg.subjects
                .iter()
                .any(|b| crate::subject::overlaps(a.as_bytes(), b.as_bytes()))
        })
    })
}

/// `STREAM.UPDATE.<name>` on the coordinator.
pub fn update(js: &Js, name: &str, reply: &Bytes, body: &[u8]) {
    let kind = "stream_update_response";
    // An empty update names no stream (nats-server's answer, not a JSON error).
    let empty = body.iter().all(|b| b.is_ascii_whitespace());
    let mut cfg = match StreamConfig::decode(if empty { b"{}" } else { body }, js.strict) {
        Ok(c) => c,
        Err(e) => return reply_err(js, reply, kind, &e),
    };
    if cfg.name.is_empty() {
        return reply_err(
            js,
            reply,
            kind,
            &ApiError::invalid_config(
                "stream name is required and can not contain '.', '*', '>', '\\', '/'",
            ),
        );
    }
    if cfg.name != name {
        return reply_err(js, reply, kind, &ApiError::name_mismatch());
    }
    let Some(old) = js.catalog.borrow().get(name).cloned() else {
        return reply_err(js, reply, kind, &ApiError::stream_not_found());
    };
    if cfg.sealed {
        // Sealing forces these, as nats-server does.
        cfg.discard = "new".into();
        cfg.deny_delete = true;
        cfg.deny_purge = true;
        cfg.allow_rollup_hdrs = false;
    }
    if let Err(e) = cfg
        .normalize(js.shard.cfg.max_payload)
        .and_then(|()| cfg.check_update(&old.config))
        .and_then(|()| check_links(js, &mut cfg))
    {
        return reply_err(js, reply, kind, &e);
    }
    if overlaps_other(js, &cfg) {
        return reply_err(js, reply, kind, &ApiError::subjects_overlap());
    }
    if let Err(e) = check_reservation(js, &cfg) {
        return reply_err(js, reply, kind, &e);
    }
    let entry = CatalogEntry { config: cfg, ..old };
    js.catalog
        .borrow_mut()
        .insert(name.to_string(), entry.clone());
    js.broadcast_catalog(name, Some(&entry));
    js.catalog_changed(name, false);
    js.send_cmd(
        entry.owner,
        JsCmd::Update {
            entry: Box::new(entry),
            reply: reply.clone(),
        },
    );
}

/// `STREAM.DELETE.<name>` on the coordinator.
pub fn delete(js: &Js, name: &str, reply: &Bytes, body: &[u8]) {
    let kind = "stream_delete_response";
    if !empty_request(body) {
        return reply_err(js, reply, kind, &ApiError::not_empty_request());
    }
    // The entry stays until the owner has removed the files (`JsCmd::Forget`), so
    // a create of the same name cannot race with the deletion.
    let Some(entry) = js.catalog.borrow().get(name).cloned() else {
        return reply_err(js, reply, kind, &ApiError::stream_not_found());
    };
    js.send_cmd(
        entry.owner,
        JsCmd::Delete {
            name: name.to_string(),
            reply: reply.clone(),
        },
    );
}

/// The checks of a config's mirror and sources that need the catalogue
/// (nats-server's `checkStreamCfg`, in its order): local origins' message
/// sizes, `mirror_direct` taken from the origin's `allow_direct`, external
/// delivery prefixes against local origins' subjects, cycles; then the plain
/// filters' check nats-server makes when it creates the stream.
fn check_links(js: &Js, cfg: &mut StreamConfig) -> Result<(), ApiError> {
    let cat = js.catalog.borrow();
    let mut origin_subjects: Vec<String> = Vec::new();
    if let Some(m) = cfg.mirror.clone() {
        if !m.is_external() {
            if let Some(o) = cat.get(&m.name) {
                m.check(Role::Mirror, cfg.max_msg_size, Some(o.config.max_msg_size))?;
                cfg.mirror_direct = o.config.allow_direct;
                origin_subjects.extend(o.config.subjects.iter().cloned());
            }
        }
    }
    for s in cfg.sources() {
        if s.is_external() {
            continue;
        }
        if let Some(o) = cat.get(&s.name) {
            s.check(Role::Source, cfg.max_msg_size, Some(o.config.max_msg_size))?;
            origin_subjects.extend(o.config.subjects.iter().cloned());
        }
    }
    for e in cfg.links().filter_map(|(_, s)| s.external.as_ref()) {
        if e.deliver.is_empty() {
            continue;
        }
        for sub in &origin_subjects {
            let prefixed = format!("{}.{sub}", e.deliver);
            if crate::subject::overlaps(sub.as_bytes(), prefixed.as_bytes()) {
                return Err(ApiError::new(
                    400,
                    10022,
                    format!(
                        "stream external delivery prefix {} overlaps with stream subject {sub}",
                        e.deliver
                    ),
                ));
            }
        }
    }
    if has_cycle(&cat, cfg) {
        return Err(ApiError::invalid_config("detected cycle"));
    }
    drop(cat);
    cfg.check_filters()
}

/// nats-server's cycle check: a walk from `cfg` through local origins; a
/// source back to a stream already visited whose subjects its filter takes
/// (no filter takes all), or a mirror back to one, is a cycle.
fn has_cycle(cat: &std::collections::BTreeMap<String, CatalogEntry>, cfg: &StreamConfig) -> bool {
    let mut visited: Vec<String> = Vec::new();
    let mut queue: std::collections::VecDeque<StreamConfig> = [cfg.clone()].into();
    while let Some(c) = queue.pop_front() {
        visited.push(c.name.clone());
        for s in c.sources().iter().filter(|s| !s.is_external()) {
            if visited.contains(&s.name) {
                let takes = s.filter_subject.is_empty()
                    || c.subjects.iter().any(|x| {
                        crate::subject::overlaps(x.as_bytes(), s.filter_subject.as_bytes())
                    });
                if takes {
                    return true;
                }
            } else if let Some(o) = cat.get(&s.name) {
                queue.push_back(o.config.clone());
            }
        }
        if let Some(m) = c.mirror.as_ref().filter(|m| !m.is_external()) {
            if visited.contains(&m.name) {
                return true;
            }
            if let Some(o) = cat.get(&m.name) {
                queue.push_back(o.config.clone());
            }
        }
    }
    false
}

impl Js {
    /// Coordinator: allocates a stream uid.
    pub fn next_stream_uid(&self) -> u32 {
        let uid = self.next_uid.get();
        self.next_uid.set(uid + 1);
        uid
    }
}
