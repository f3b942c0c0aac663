//! JetStream API handlers: request parsing, responses in nats-server 2.15's
//! exact shapes (field order, omitted fields, extra zeroed fields on errors).

use std::rc::Rc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::js::config::StreamConfig;
use crate::js::errors::ApiError;
use crate::js::index::StoredMsg;
use crate::js::json::{self, rfc3339};
use crate::js::stream::Stream;
use crate::js::{cmd, CatalogEntry};
use crate::protocol::headers;
use crate::shard::msg::ShardMsg;
use crate::shard::Shard;

/// JetStream API level we report: the 2.10 feature set (level 0).
pub const API_LEVEL: u32 = 0;

/// For subjects about one stream, its name (the token after the verb).
pub fn stream_of(rest: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(rest).ok()?;
    if s.starts_with("CONSUMER.") {
        let tokens: Vec<&str> = s.split('.').collect();
        return crate::js::capi::stream_of(&tokens);
    }
    for prefix in [
        "STREAM.INFO.",
        "STREAM.PURGE.",
        "STREAM.MSG.GET.",
        "STREAM.MSG.DELETE.",
    ] {
        if let Some(name) = s.strip_prefix(prefix) {
            return Some(name);
        }
    }
    None
}

fn prefix_type(kind: &str) -> String {
    format!("io.nats.jetstream.api.v1.{kind}")
}

/// Fields nats-server appends, zeroed, after `error` for some response types.
fn error_extras(kind: &str) -> &'static str {
    match kind {
        "stream_info_response" => r#","total":0,"offset":0,"limit":0"#,
        "stream_purge_response" => r#","purged":0"#,
        "stream_names_response" => r#","total":0,"offset":0,"limit":0,"streams":null"#,
        "stream_list_response" => r#","total":0,"offset":0,"limit":0,"streams":[]"#,
        "consumer_names_response" | "consumer_list_response" => {
            r#","total":0,"offset":0,"limit":0,"consumers":[]"#
        }
        _ => "",
    }
}

pub fn error_body(kind: &str, e: &ApiError) -> Vec<u8> {
    let err = json::encode(e);
    let mut out = format!("{{\"type\":\"{}\",\"error\":", prefix_type(kind)).into_bytes();
    out.extend_from_slice(&err);
    out.extend_from_slice(error_extras(kind).as_bytes());
    out.push(b'}');
    out
}

/// Decodes a request body, or answers 10025 and returns None.
fn decode_request<T: serde::de::DeserializeOwned>(
    shard: &Shard,
    reply: &Bytes,
    kind: &str,
    body: &[u8],
) -> Option<T> {
    match json::decode_as(body) {
        Ok(r) => Some(r),
        Err(e) => {
            reply_err(shard, reply, kind, &ApiError::invalid_json(&e));
            None
        }
    }
}

/// Refuses a removal on a sealed stream (10109) or one that denies it (`denied`);
/// true when it may go ahead.
fn may_remove(
    shard: &Shard,
    reply: &Bytes,
    kind: &str,
    sealed: bool,
    denied: Option<ApiError>,
) -> bool {
    let refusal = if sealed {
        Some(ApiError::sealed())
    } else {
        denied
    };
    match refusal {
        Some(e) => {
            reply_err(shard, reply, kind, &e);
            false
        }
        None => true,
    }
}

pub fn reply_err(shard: &Shard, reply: &Bytes, kind: &str, e: &ApiError) {
    if let Some(js) = &shard.js {
        js.api_errors.set(js.api_errors.get() + 1);
    }
    shard.reply(reply, None, &error_body(kind, e));
}

/// Metadata as nats-server shows it: the stored `_nats.req.level`, plus (in
/// create/update/info answers) the server's level and version.
fn metadata_out(
    cfg: &StreamConfig,
    with_server: bool,
) -> std::collections::BTreeMap<String, String> {
    let mut m = cfg.metadata.clone().unwrap_or_default();
    let req = if cfg.allow_batched {
        4
    } else if cfg.allow_atomic || cfg.allow_msg_counter || cfg.persist_mode == "async" {
        2
    } else if cfg.allow_msg_ttl || cfg.subject_delete_marker_ttl > 0 {
        1
    } else {
        0
    };
    with_levels(&mut m, req, with_server);
    m
}

/// Adds the levels nats-server shows in stream and consumer metadata: the
/// config's required API level, and (in create/update/info answers) the
/// server's level and version.
pub(crate) fn with_levels(
    m: &mut std::collections::BTreeMap<String, String>,
    req: u32,
    with_server: bool,
) {
    m.insert("_nats.req.level".into(), req.to_string());
    if with_server {
        m.insert("_nats.level".into(), API_LEVEL.to_string());
        m.insert(
            "_nats.ver".into(),
            crate::config::NATS_COMPAT_VERSION.into(),
        );
    }
}

fn config_out(cfg: &StreamConfig, with_server: bool) -> StreamConfig {
    let mut c = cfg.clone();
    c.metadata = Some(metadata_out(cfg, with_server));
    c
}

#[derive(Serialize)]
struct State {
    messages: u64,
    bytes: u64,
    first_seq: u64,
    first_ts: String,
    last_seq: u64,
    last_ts: String,
    #[serde(skip_serializing_if = "is_zero")]
    num_subjects: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    subjects: Option<serde_json::Map<String, Value>>,
    #[serde(skip_serializing_if = "is_zero")]
    num_deleted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<Vec<u64>>,
    consumer_count: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct InfoRequest {
    deleted_details: bool,
    subjects_filter: String,
    offset: i64,
}

/// Stream info JSON; `kind` picks the envelope (create, update, info).
pub fn stream_info(
    shard: &Shard,
    s: &Stream,
    kind: &str,
    req: Option<&InfoRequest>,
    did_create: bool,
) -> Vec<u8> {
    let ix = s.ix.borrow();
    let cfg = s.cfg.borrow();
    let (mut total, mut offset, mut limit) = (0usize, 0usize, 0usize);
    let mut subjects = None;
    if let Some(r) = req.filter(|r| !r.subjects_filter.is_empty()) {
        let all = ix.subjects_matching(r.subjects_filter.as_bytes());
        if !all.is_empty() {
            total = all.len();
            limit = 100_000;
            offset = (r.offset.max(0) as usize).min(total);
            let mut m = serde_json::Map::new();
            for (subj, n) in all.into_iter().skip(offset).take(limit) {
                m.insert(String::from_utf8_lossy(&subj).into_owned(), Value::from(n));
            }
            subjects = Some(m);
        }
    }
    let never = ix.msgs == 0 && ix.last_seq() + 1 == cfg.first_seq.max(1) && ix.last_ts == 0;
    let (first_seq, last_seq) = if never && cfg.first_seq <= 1 {
        (0, 0)
    } else {
        (ix.first_seq(), ix.last_seq())
    };
    let deleted = req
        .filter(|r| r.deleted_details)
        .map(|_| ix.deleted_seqs())
        .filter(|d| !d.is_empty());
    let state = State {
        messages: ix.msgs,
        bytes: ix.bytes,
        first_seq,
        first_ts: rfc3339(ix.first_ts()),
        last_seq,
        last_ts: rfc3339(ix.last_ts),
        num_subjects: ix.num_subjects() as u64,
        subjects,
        num_deleted: ix.deleted,
        deleted,
        consumer_count: s.consumers.borrow().len() as u64,
    };
    let mut out = format!("{{\"type\":\"{}\"", prefix_type(kind));
    if kind == "stream_info_response" {
        out.push_str(&format!(
            ",\"total\":{total},\"offset\":{offset},\"limit\":{limit}"
        ));
    }
    let with_server = kind != "list";
    out.push_str(",\"config\":");
    out.push_str(&String::from_utf8(json::encode(&config_out(&cfg, with_server))).expect("utf8"));
    out.push_str(&format!(
        ",\"created\":\"{}\",\"state\":",
        rfc3339(s.created)
    ));
    out.push_str(&String::from_utf8(json::encode(&state)).expect("utf8"));
    if kind == "stream_info_response" {
        out.push_str(&format!(
            ",\"cluster\":{{\"leader\":{}}}",
            serde_json::to_string(&shard.server.server_name).expect("str")
        ));
    }
    out.push_str(&format!(",\"ts\":\"{}\"", rfc3339(json::now_nanos())));
    if did_create {
        out.push_str(",\"did_create\":true");
    }
    out.push('}');
    if kind == "list" {
        // List items have no envelope: strip `{"type":"...",` back to `{`.
        let start = out.find(",\"config\"").expect("config present");
        out = format!("{{{}", &out[start + 1..]);
    }
    out.into_bytes()
}

/// Handles one API request on this shard (the coordinator or the owner).
pub async fn handle(
    shard: &Rc<Shard>,
    subject: Bytes,
    reply: Bytes,
    hdr_len: Option<usize>,
    msg: Bytes,
) {
    let js = shard.js.as_ref().expect("JetStream enabled");
    let body = msg.slice(hdr_len.unwrap_or(0)..);
    let rest = String::from_utf8_lossy(&subject[b"$JS.API.".len()..]).into_owned();
    let tokens: Vec<&str> = rest.split('.').collect();
    js.api_total.set(js.api_total.get() + 1);
    if let Some(level) = hdr_len.and_then(|h| headers::get(&msg[..h], b"Nats-Required-Api-Level")) {
        if let Some(level) = std::str::from_utf8(level)
            .ok()
            .and_then(|l| l.trim().parse::<u32>().ok())
        {
            if level > API_LEVEL {
                let kind = response_kind(&tokens);
                reply_err(shard, &reply, kind, &ApiError::required_api_level(level));
                shard.flush_mesh().await;
                return;
            }
        }
    }
    match tokens.as_slice() {
        ["INFO"] => account_info(shard, &reply).await,
        ["STREAM", "CREATE", name] => create(shard, name, &reply, &body),
        ["STREAM", "UPDATE", name] => update(shard, name, &reply, &body),
        ["STREAM", "DELETE", name] => delete(shard, name, &reply, &body),
        ["STREAM", "NAMES"] => names(shard, &reply, &body, false).await,
        ["STREAM", "LIST"] => names(shard, &reply, &body, true).await,
        ["STREAM", "INFO", name] => {
            if let Some(s) = find_stream(
                shard,
                name,
                &reply,
                "stream_info_response",
                &subject,
                hdr_len,
                &msg,
            ) {
                info(shard, &s, &reply, &body);
            }
        }
        ["STREAM", "PURGE", name] => {
            if let Some(s) = find_stream(
                shard,
                name,
                &reply,
                "stream_purge_response",
                &subject,
                hdr_len,
                &msg,
            ) {
                purge(shard, &s, &reply, &body).await;
            }
        }
        ["STREAM", "MSG", "GET", name] => {
            if let Some(s) = find_stream(
                shard,
                name,
                &reply,
                "stream_msg_get_response",
                &subject,
                hdr_len,
                &msg,
            ) {
                msg_get(shard, &s, &reply, &body).await;
            }
        }
        ["STREAM", "MSG", "DELETE", name] => {
            if let Some(s) = find_stream(
                shard,
                name,
                &reply,
                "stream_msg_delete_response",
                &subject,
                hdr_len,
                &msg,
            ) {
                msg_delete(shard, &s, &reply, &body).await;
            }
        }
        ["CONSUMER", ..] => crate::js::capi::handle(shard, &tokens, &reply, &body).await,
        // nats-server does not answer unknown API subjects.
        _ => {}
    }
    shard.flush_mesh().await;
}

fn response_kind(tokens: &[&str]) -> &'static str {
    match tokens {
        ["INFO"] => "account_info_response",
        ["STREAM", "CREATE", ..] => "stream_create_response",
        ["STREAM", "UPDATE", ..] => "stream_update_response",
        ["STREAM", "DELETE", ..] => "stream_delete_response",
        ["STREAM", "NAMES", ..] => "stream_names_response",
        ["STREAM", "LIST", ..] => "stream_list_response",
        ["STREAM", "INFO", ..] => "stream_info_response",
        ["STREAM", "PURGE", ..] => "stream_purge_response",
        ["STREAM", "MSG", "GET", ..] => "stream_msg_get_response",
        ["STREAM", "MSG", "DELETE", ..] => "stream_msg_delete_response",
        _ => "system_response",
    }
}

/// The stream if this shard owns it. Otherwise the coordinator forwards the
/// request to the owner it knows, or the answer is `stream not found`.
fn find_stream(
    shard: &Rc<Shard>,
    name: &str,
    reply: &Bytes,
    kind: &str,
    subject: &Bytes,
    hdr_len: Option<usize>,
    msg: &Bytes,
) -> Option<Rc<Stream>> {
    let js = shard.js.as_ref().expect("JetStream enabled");
    let local = js.streams.borrow().get(name).cloned();
    if local.is_some() {
        return local;
    }
    let owner = js.catalog.borrow().get(name).map(|e| e.owner);
    match owner {
        Some(o) if o != shard.id && shard.id == 0 => {
            // The owner counts it.
            js.api_total.set(js.api_total.get() - 1);
            shard.send_to(
                o,
                ShardMsg::Api {
                    subject: subject.clone(),
                    reply: reply.clone(),
                    hdr_len: hdr_len.map(|h| h as u32),
                    msg: msg.clone(),
                },
            );
        }
        _ => reply_err(shard, reply, kind, &ApiError::stream_not_found()),
    }
    None
}

async fn account_info(shard: &Rc<Shard>, reply: &Bytes) {
    let js = shard.js.as_ref().expect("JetStream enabled");
    let parts = shard.gather(serde_json::json!({"usage": true})).await;
    let (mut memory, mut storage, mut streams, mut reserved) = (0u64, 0u64, 0u64, 0i64);
    let (mut total, mut errors, mut consumers) = (0u64, 0u64, 0u64);
    for p in &parts {
        consumers += p["consumers"].as_u64().unwrap_or(0);
        memory += p["memory"].as_u64().unwrap_or(0);
        storage += p["storage"].as_u64().unwrap_or(0);
        streams += p["streams"].as_u64().unwrap_or(0);
        reserved += p["reserved_storage"].as_i64().unwrap_or(0);
        total += p["api_total"].as_u64().unwrap_or(0);
        errors += p["api_errors"].as_u64().unwrap_or(0);
    }
    let _ = js;
    let body = format!(
        concat!(
            "{{\"type\":\"io.nats.jetstream.api.v1.account_info_response\",\"memory\":{},\"storage\":{},",
            "\"reserved_memory\":0,\"reserved_storage\":{},\"streams\":{},\"consumers\":{},",
            "\"limits\":{{\"max_memory\":-1,\"max_storage\":-1,\"max_streams\":-1,\"max_consumers\":-1,",
            "\"max_ack_pending\":-1,\"memory_max_stream_bytes\":-1,\"storage_max_stream_bytes\":-1,",
            "\"max_bytes_required\":false}},\"api\":{{\"level\":{},\"total\":{},\"errors\":{}}}}}"
        ),
        memory, storage, reserved, streams, consumers, API_LEVEL, total, errors
    );
    shard.reply(reply, None, body.as_bytes());
}

/// This shard's answer to a gather: usage counters, or stream infos.
pub fn gather_part(shard: &Shard, body: &[u8]) -> Vec<u8> {
    let js = shard.js.as_ref().expect("JetStream enabled");
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let streams: Vec<Rc<Stream>> = js.streams.borrow().values().cloned().collect();
    if req["usage"].as_bool() == Some(true) {
        let (mut memory, mut storage, mut reserved) = (0u64, 0u64, 0i64);
        for s in &streams {
            let bytes = s.ix.borrow().bytes;
            let cfg = s.cfg.borrow();
            if cfg.memory() {
                memory += bytes;
            } else {
                storage += bytes;
                if cfg.max_bytes > 0 {
                    reserved += cfg.max_bytes;
                }
            }
        }
        let part = serde_json::json!([{
            "memory": memory, "storage": storage, "reserved_storage": reserved,
            "streams": streams.len(), "api_total": js.api_total.get(), "api_errors": js.api_errors.get(),
            "consumers": crate::js::capi::count(shard),
        }]);
        return serde_json::to_vec(&part).expect("json");
    }
    let filter = req["subject"].as_str().unwrap_or("");
    let mut items = Vec::new();
    for s in &streams {
        if !filter.is_empty()
            && !s
                .cfg
                .borrow()
                .subjects
                .iter()
                .any(|x| crate::subject::overlaps(x.as_bytes(), filter.as_bytes()))
        {
            continue;
        }
        let info = stream_info(shard, s, "list", None, false);
        items.push(
            serde_json::json!({"name": s.name, "info": String::from_utf8(info).expect("utf8")}),
        );
    }
    serde_json::to_vec(&Value::Array(items)).expect("json")
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct NamesRequest {
    offset: i64,
    subject: String,
}

async fn names(shard: &Rc<Shard>, reply: &Bytes, body: &[u8], list: bool) {
    let kind = if list {
        "stream_list_response"
    } else {
        "stream_names_response"
    };
    let Some(req) = decode_request::<NamesRequest>(shard, reply, kind, body) else {
        return;
    };
    let js = shard.js.as_ref().expect("JetStream enabled");
    if !list {
        let all: Vec<String> = js
            .catalog
            .borrow()
            .iter()
            .filter(|(_, e)| {
                req.subject.is_empty()
                    || e.config
                        .subjects
                        .iter()
                        .any(|x| crate::subject::overlaps(x.as_bytes(), req.subject.as_bytes()))
            })
            .map(|(n, _)| n.clone())
            .collect();
        let total = all.len();
        let offset = (req.offset.max(0) as usize).min(total);
        let page: Vec<&String> = all
            .iter()
            .skip(offset)
            .take(crate::limits::API_NAMES_PAGE)
            .collect();
        let streams = if page.is_empty() {
            "null".to_string()
        } else {
            String::from_utf8(json::encode(&page)).expect("utf8")
        };
        let out = format!(
            "{{\"type\":\"io.nats.jetstream.api.v1.stream_names_response\",\"total\":{total},\"offset\":{offset},\"limit\":{},\"streams\":{streams}}}",
            crate::limits::API_NAMES_PAGE
        );
        return shard.reply(reply, None, out.as_bytes());
    }
    let mut parts = shard
        .gather(serde_json::json!({"subject": req.subject}))
        .await;
    parts.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let total = parts.len();
    let offset = (req.offset.max(0) as usize).min(total);
    let items: Vec<&str> = parts
        .iter()
        .skip(offset)
        .take(crate::limits::API_LIST_PAGE)
        .filter_map(|p| p["info"].as_str())
        .collect();
    let out = format!(
        "{{\"type\":\"io.nats.jetstream.api.v1.stream_list_response\",\"total\":{total},\"offset\":{offset},\"limit\":{},\"streams\":[{}]}}",
        crate::limits::API_LIST_PAGE,
        items.join(",")
    );
    shard.reply(reply, None, out.as_bytes());
}

fn create(shard: &Rc<Shard>, name: &str, reply: &Bytes, body: &[u8]) {
    let kind = "stream_create_response";
    let mut cfg = match StreamConfig::decode(body) {
        Ok(c) => c,
        Err(e) if e.err_code == 10025 && body.iter().all(|b| b.is_ascii_whitespace()) => {
            return reply_err(shard, reply, kind, &ApiError::name_mismatch())
        }
        Err(e) => return reply_err(shard, reply, kind, &e),
    };
    if cfg.name.is_empty() || cfg.name != name {
        return reply_err(shard, reply, kind, &ApiError::name_mismatch());
    }
    if let Err(e) = check_name(&cfg.name) {
        return reply_err(shard, reply, kind, &e);
    }
    if cfg.sealed {
        return reply_err(
            shard,
            reply,
            kind,
            &ApiError::invalid_config("stream configuration for create can not be sealed"),
        );
    }
    if let Err(e) = cfg.normalize(shard.cfg.max_payload) {
        return reply_err(shard, reply, kind, &e);
    }
    let js = shard.js.as_ref().expect("JetStream enabled");
    let existing = js.catalog.borrow().get(name).cloned();
    if let Some(e) = existing {
        if e.config == cfg {
            shard.send_to(
                e.owner,
                ShardMsg::Js {
                    kind: cmd::CREATE_SAME,
                    arg: 0,
                    reply: reply.clone(),
                    body: Bytes::from(name.to_string()),
                },
            );
            return;
        }
        return reply_err(shard, reply, kind, &ApiError::name_in_use());
    }
    if overlaps_other(shard, &cfg) {
        return reply_err(shard, reply, kind, &ApiError::subjects_overlap());
    }
    // The owner: the shard with the fewest streams (lowest id on ties).
    let mut load = vec![0usize; usize::from(shard.count)];
    for e in js.catalog.borrow().values() {
        load[usize::from(e.owner)] += 1;
    }
    let owner = (0..shard.count)
        .min_by_key(|&i| (load[usize::from(i)], i))
        .unwrap_or(0);
    let entry = CatalogEntry {
        owner,
        uid: shard.next_stream_uid(),
        created: json::now_nanos(),
        config: cfg,
    };
    js.catalog
        .borrow_mut()
        .insert(name.to_string(), entry.clone());
    shard.broadcast_catalog(name, Some(&entry));
    let body = Bytes::from(serde_json::to_vec(&entry).expect("entry serializes"));
    shard.send_to(
        owner,
        ShardMsg::Js {
            kind: cmd::CREATE,
            arg: 0,
            reply: reply.clone(),
            body,
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

fn overlaps_other(shard: &Shard, cfg: &StreamConfig) -> bool {
    let js = shard.js.as_ref().expect("JetStream enabled");
    let cat = js.catalog.borrow();
    cat.iter().filter(|(n, _)| **n != cfg.name).any(|(_, e)| {
        e.config.subjects.iter().any(|a| {
            cfg.subjects
                .iter()
                .any(|b| crate::subject::overlaps(a.as_bytes(), b.as_bytes()))
        })
    })
}

fn update(shard: &Rc<Shard>, name: &str, reply: &Bytes, body: &[u8]) {
    let kind = "stream_update_response";
    let mut cfg = match StreamConfig::decode(body) {
        Ok(c) => c,
        Err(e) => return reply_err(shard, reply, kind, &e),
    };
    if cfg.name.is_empty() {
        return reply_err(
            shard,
            reply,
            kind,
            &ApiError::invalid_config("stream name is required and can not contain '.', '*', '>'"),
        );
    }
    if cfg.name != name {
        return reply_err(shard, reply, kind, &ApiError::name_mismatch());
    }
    let js = shard.js.as_ref().expect("JetStream enabled");
    let Some(old) = js.catalog.borrow().get(name).cloned() else {
        return reply_err(shard, reply, kind, &ApiError::stream_not_found());
    };
    if cfg.sealed {
        // Sealing forces these, as nats-server does.
        cfg.discard = "new".into();
        cfg.deny_delete = true;
        cfg.deny_purge = true;
        cfg.allow_rollup_hdrs = false;
    }
    if let Err(e) = cfg
        .normalize(shard.cfg.max_payload)
        .and_then(|()| cfg.check_update(&old.config))
    {
        return reply_err(shard, reply, kind, &e);
    }
    if overlaps_other(shard, &cfg) {
        return reply_err(shard, reply, kind, &ApiError::subjects_overlap());
    }
    let entry = CatalogEntry { config: cfg, ..old };
    js.catalog
        .borrow_mut()
        .insert(name.to_string(), entry.clone());
    shard.broadcast_catalog(name, Some(&entry));
    let body = Bytes::from(serde_json::to_vec(&entry).expect("entry serializes"));
    shard.send_to(
        entry.owner,
        ShardMsg::Js {
            kind: cmd::UPDATE,
            arg: 0,
            reply: reply.clone(),
            body,
        },
    );
}

fn delete(shard: &Rc<Shard>, name: &str, reply: &Bytes, body: &[u8]) {
    let kind = "stream_delete_response";
    let trimmed: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !trimmed.is_empty() && trimmed != b"{}" {
        return reply_err(
            shard,
            reply,
            kind,
            &ApiError {
                code: 400,
                err_code: 10038,
                description: "expected an empty request payload".into(),
            },
        );
    }
    let js = shard.js.as_ref().expect("JetStream enabled");
    // The entry stays until the owner has removed the files (cmd::FORGET), so
    // a create of the same name cannot race with the deletion.
    let Some(entry) = js.catalog.borrow().get(name).cloned() else {
        return reply_err(shard, reply, kind, &ApiError::stream_not_found());
    };
    shard.send_to(
        entry.owner,
        ShardMsg::Js {
            kind: cmd::DELETE,
            arg: 0,
            reply: reply.clone(),
            body: Bytes::from(name.to_string()),
        },
    );
}

fn info(shard: &Shard, s: &Stream, reply: &Bytes, body: &[u8]) {
    let Some(req) = decode_request::<InfoRequest>(shard, reply, "stream_info_response", body)
    else {
        return;
    };
    let out = stream_info(shard, s, "stream_info_response", Some(&req), false);
    shard.reply(reply, None, &out);
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct PurgeRequest {
    filter: String,
    seq: u64,
    keep: u64,
}

async fn purge(shard: &Shard, s: &Stream, reply: &Bytes, body: &[u8]) {
    let kind = "stream_purge_response";
    let Some(req) = decode_request::<PurgeRequest>(shard, reply, kind, body) else {
        return;
    };
    let (sealed, deny) = {
        let c = s.cfg.borrow();
        (c.sealed, c.deny_purge)
    };
    let denied = deny.then(|| ApiError::purge_failed("stream purge not permitted"));
    if !may_remove(shard, reply, kind, sealed, denied) {
        return;
    }
    if req.seq > 0 && req.keep > 0 {
        return reply_err(shard, reply, kind, &ApiError::bad_request());
    }
    let filter = (!req.filter.is_empty()).then_some(req.filter.as_str());
    let seq = (req.seq > 0).then_some(req.seq);
    let keep = (req.keep > 0).then_some(req.keep);
    match s.purge(filter, seq, keep).await {
        Ok(n) => shard.reply(reply, None, format!("{{\"type\":\"io.nats.jetstream.api.v1.stream_purge_response\",\"success\":true,\"purged\":{n}}}").as_bytes()),
        Err(e) => reply_err(shard, reply, kind, &e),
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct GetRequest {
    seq: u64,
    last_by_subj: String,
    next_by_subj: String,
    batch: i64,
    max_bytes: i64,
    start_time: Option<String>,
    no_hdr: bool,
    multi_last: Vec<String>,
    up_to_seq: u64,
    up_to_time: Option<String>,
}

/// Picks the message a get request names; Err(()) for a bad request.
fn select(s: &Stream, req: &GetRequest, from: Option<u64>) -> Result<Option<u64>, ()> {
    let ix = s.ix.borrow();
    if let Some(t) = &req.start_time {
        let Some(t) = json::parse_rfc3339(t) else {
            return Err(());
        };
        let mut seq = from.unwrap_or(ix.first_seq());
        while seq <= ix.last_seq() {
            if let Some(e) = ix.entry(seq) {
                let subj_ok = req.next_by_subj.is_empty()
                    || crate::subject::matches(req.next_by_subj.as_bytes(), ix.subject_of(e));
                if e.ts >= t && subj_ok {
                    return Ok(Some(seq));
                }
            }
            seq += 1;
        }
        return Ok(None);
    }
    if !req.last_by_subj.is_empty() {
        let f = req.last_by_subj.as_bytes();
        if !f.contains(&b'*') && !f.contains(&b'>') {
            return Ok(ix.subject(f).map(|st| st.last));
        }
        let mut best = None;
        for (subj, _) in ix.subjects_matching(f) {
            let l = ix.subject(&subj).map(|st| st.last);
            best = best.max(l);
        }
        return Ok(best);
    }
    if !req.next_by_subj.is_empty() {
        return Ok(ix.next_matching(
            from.unwrap_or(req.seq.max(1)),
            Some(req.next_by_subj.as_bytes()),
        ));
    }
    if let Some(f) = from {
        return Ok(ix.next_matching(f, None));
    }
    Ok(ix.entry(req.seq).map(|_| req.seq))
}

async fn msg_get(shard: &Shard, s: &Stream, reply: &Bytes, body: &[u8]) {
    let kind = "stream_msg_get_response";
    let Some(req) = decode_request::<GetRequest>(shard, reply, kind, body) else {
        return;
    };
    let has_last = !req.last_by_subj.is_empty();
    let has_next = !req.next_by_subj.is_empty();
    let bad = (req.seq == 0 && !has_last && !has_next && req.start_time.is_none())
        || (req.seq > 0 && has_last)
        || (has_last && has_next)
        || req.batch != 0
        || req.max_bytes != 0
        || !req.multi_last.is_empty();
    if bad {
        return reply_err(shard, reply, kind, &ApiError::bad_request());
    }
    let Ok(Some(seq)) = select(s, &req, None) else {
        return reply_err(shard, reply, kind, &ApiError::no_message_found());
    };
    let Some(m) = s.load(seq).await else {
        return reply_err(shard, reply, kind, &ApiError::no_message_found());
    };
    let mut out = String::from(
        "{\"type\":\"io.nats.jetstream.api.v1.stream_msg_get_response\",\"message\":{\"subject\":",
    );
    out.push_str(
        &String::from_utf8(json::encode(&String::from_utf8_lossy(&m.subject))).expect("utf8"),
    );
    out.push_str(&format!(",\"seq\":{}", m.seq));
    if m.hdr_len > 0 && !req.no_hdr {
        out.push_str(&format!(",\"hdrs\":\"{}\"", json::base64(m.hdr())));
    }
    if !m.payload().is_empty() {
        out.push_str(&format!(",\"data\":\"{}\"", json::base64(m.payload())));
    }
    out.push_str(&format!(",\"time\":\"{}\"}}}}", rfc3339(m.ts)));
    shard.reply(reply, None, out.as_bytes());
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct DeleteRequest {
    seq: u64,
    no_erase: bool,
}

async fn msg_delete(shard: &Shard, s: &Stream, reply: &Bytes, body: &[u8]) {
    let kind = "stream_msg_delete_response";
    let Some(req) = decode_request::<DeleteRequest>(shard, reply, kind, body) else {
        return;
    };
    let (sealed, deny) = {
        let c = s.cfg.borrow();
        (c.sealed, c.deny_delete)
    };
    let denied = deny.then(|| ApiError::msg_delete_failed("message delete not permitted"));
    if !may_remove(shard, reply, kind, sealed, denied) {
        return;
    }
    if body.iter().all(|b| b.is_ascii_whitespace())
        || (req.seq == 0 && !String::from_utf8_lossy(body).contains("seq"))
    {
        return reply_err(shard, reply, kind, &ApiError::bad_request());
    }
    let (first, last) = {
        let ix = s.ix.borrow();
        (ix.first_seq(), ix.last_seq())
    };
    if req.seq == 0 {
        return reply_err(
            shard,
            reply,
            kind,
            &ApiError::msg_delete_failed("no message found"),
        );
    }
    if req.seq > last {
        return reply_err(
            shard,
            reply,
            kind,
            &ApiError::msg_delete_failed("stream store EOF"),
        );
    }
    if req.seq < first || s.ix.borrow().entry(req.seq).is_none() {
        return reply_err(
            shard,
            reply,
            kind,
            &ApiError {
                code: 400,
                err_code: 10043,
                description: format!("sequence {} not found", req.seq),
            },
        );
    }
    match s.delete_msg(req.seq, !req.no_erase).await {
        Ok(()) => shard.reply(
            reply,
            None,
            br#"{"type":"io.nats.jetstream.api.v1.stream_msg_delete_response","success":true}"#,
        ),
        Err(e) => reply_err(shard, reply, kind, &e),
    }
}

/// Header block of a direct-get reply for `m`, plus batch headers.
fn direct_headers(stream: &str, m: &StoredMsg, batch: Option<(u64, u64)>, no_hdr: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + m.hdr_len);
    if m.hdr_len > 0 && !no_hdr {
        // The stored block without its final blank line, then our fields.
        let h = m.hdr();
        let body = h.strip_suffix(b"\r\n").unwrap_or(h);
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"NATS/1.0\r\n");
    }
    let mut add = |k: &str, v: &[u8]| {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    };
    add("Nats-Stream", stream.as_bytes());
    add("Nats-Subject", &m.subject);
    add("Nats-Sequence", m.seq.to_string().as_bytes());
    add("Nats-Time-Stamp", rfc3339(m.ts).as_bytes());
    if let Some((pending, last)) = batch {
        add("Nats-Num-Pending", pending.to_string().as_bytes());
        add("Nats-Last-Sequence", last.to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn status(shard: &Shard, reply: &Bytes, text: &str) {
    let block = headers::block(Some(text), &[]);
    shard.reply(reply, Some(&block), &[]);
}

/// A parsed direct-get request, or the status to answer it with.
fn direct_request(
    s: &Stream,
    subject: &Bytes,
    hdr_len: Option<usize>,
    msg: &Bytes,
) -> Result<GetRequest, &'static str> {
    let body = &msg[hdr_len.unwrap_or(0)..];
    let prefix = format!("$JS.API.DIRECT.GET.{}", s.name);
    let tail = &subject[prefix.len()..];
    let empty = body.iter().all(|b| b.is_ascii_whitespace());
    let req: GetRequest = if let Some(subj) = tail.strip_prefix(b".") {
        let trimmed: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if !empty && trimmed != b"{}" {
            return Err("408 Bad Request");
        }
        GetRequest {
            last_by_subj: String::from_utf8_lossy(subj).into_owned(),
            ..Default::default()
        }
    } else {
        if empty {
            return Err("408 Empty Request");
        }
        match json::decode_as::<GetRequest>(body) {
            Ok(r) => r,
            Err(_) => return Err("408 Malformed Request"),
        }
    };
    let has_last = !req.last_by_subj.is_empty();
    let has_next = !req.next_by_subj.is_empty();
    if req.seq == 0
        && !has_last
        && !has_next
        && req.start_time.is_none()
        && req.multi_last.is_empty()
    {
        return Err("408 Empty Request");
    }
    if has_last && (req.seq > 0 || has_next || req.batch > 0) {
        return Err("408 Bad Request");
    }
    Ok(req)
}

/// Answers a direct get at once when it needs no disk read (a bad request, or
/// one message that is cached); false means the caller must run `direct_get`.
/// Most gets take this path, with no task spawned and no mesh flush of their own.
pub fn direct_get_now(
    shard: &Shard,
    s: &Stream,
    subject: &Bytes,
    reply: &Bytes,
    hdr_len: Option<usize>,
    msg: &Bytes,
) -> bool {
    let req = match direct_request(s, subject, hdr_len, msg) {
        Ok(r) => r,
        Err(st) => {
            status(shard, reply, st);
            return true;
        }
    };
    if !req.multi_last.is_empty() || req.batch > 0 {
        return false;
    }
    let seq = match select(s, &req, None) {
        Ok(Some(seq)) => seq,
        _ => {
            status(shard, reply, "404 Message Not Found");
            return true;
        }
    };
    let Some(m) = s.ix.borrow().cached(seq) else {
        return false;
    };
    let h = direct_headers(&s.name, &m, None, req.no_hdr);
    shard.reply(reply, Some(&h), m.payload());
    true
}

/// Serves `$JS.API.DIRECT.GET.<stream>[.<subject>]` (replies are messages).
pub async fn direct_get(
    shard: &Shard,
    s: &Stream,
    subject: &Bytes,
    reply: &Bytes,
    hdr_len: Option<usize>,
    msg: &Bytes,
) {
    let req = match direct_request(s, subject, hdr_len, msg) {
        Ok(r) => r,
        Err(st) => return status(shard, reply, st),
    };
    if !req.multi_last.is_empty() {
        return multi_last(shard, s, reply, &req).await;
    }
    if req.batch <= 0 {
        let Ok(Some(seq)) = select(s, &req, None) else {
            return status(shard, reply, "404 Message Not Found");
        };
        let Some(m) = s.load(seq).await else {
            return status(shard, reply, "404 Message Not Found");
        };
        let h = direct_headers(&s.name, &m, None, req.no_hdr);
        return shard.reply(reply, Some(&h), m.payload());
    }
    // Batch: up to `batch` messages from seq (or start_time), filtered.
    let filter = (!req.next_by_subj.is_empty()).then(|| req.next_by_subj.clone());
    let mut from = req.seq.max(1);
    if req.start_time.is_some() {
        match select(s, &req, None) {
            Ok(Some(seq)) => from = seq,
            Ok(None) => return status(shard, reply, "404 Message Not Found"),
            Err(()) => return status(shard, reply, "408 Bad Request"),
        }
    }
    let mut sent = 0i64;
    let mut last = 0u64;
    let mut bytes = 0i64;
    // Counted once; each message delivered (or found gone) takes one off.
    let mut remaining =
        s.ix.borrow()
            .count_matching(from, filter.as_deref().map(str::as_bytes));
    loop {
        if sent >= req.batch {
            break;
        }
        let next =
            s.ix.borrow()
                .next_matching(from, filter.as_deref().map(str::as_bytes));
        let Some(seq) = next else { break };
        let Some(m) = s.load(seq).await else {
            from = seq + 1;
            remaining = remaining.saturating_sub(1);
            continue;
        };
        let size = (m.data.len() + m.subject.len()) as i64;
        if req.max_bytes > 0 && sent > 0 && bytes + size > req.max_bytes {
            break;
        }
        bytes += size;
        remaining = remaining.saturating_sub(1);
        let pending = remaining;
        let h = direct_headers(&s.name, &m, Some((pending, last)), req.no_hdr);
        shard.reply(reply, Some(&h), m.payload());
        sent += 1;
        last = seq;
        from = seq + 1;
    }
    if sent == 0 {
        return status(shard, reply, "404 Message Not Found");
    }
    let pending = remaining;
    let block = headers::block(
        Some("204 EOB"),
        &[
            ("Nats-Num-Pending", pending.to_string().as_bytes()),
            ("Nats-Last-Sequence", last.to_string().as_bytes()),
        ],
    );
    shard.reply(reply, Some(&block), &[]);
}

async fn multi_last(shard: &Shard, s: &Stream, reply: &Bytes, req: &GetRequest) {
    let up_to = if req.up_to_seq > 0 {
        req.up_to_seq
    } else {
        s.ix.borrow().last_seq()
    };
    let mut seqs: Vec<u64> = Vec::new();
    {
        let ix = s.ix.borrow();
        let mut seen = std::collections::BTreeSet::new();
        for f in &req.multi_last {
            for (subj, _) in ix.subjects_matching(f.as_bytes()) {
                if seen.insert(subj.clone()) {
                    // The last message at or below up_to on this subject.
                    let mut q = ix.subject(&subj).map_or(0, |st| st.last).min(up_to);
                    while q > 0 && ix.entry(q).is_none_or(|e| ix.subject_of(e) != &subj) {
                        q -= 1;
                        if q < ix.first_seq() {
                            q = 0;
                        }
                    }
                    if q > 0 {
                        seqs.push(q);
                    }
                }
            }
        }
    }
    seqs.sort_unstable();
    if seqs.len() > 1024 {
        return status(shard, reply, "413 Too Many Results");
    }
    if seqs.is_empty() {
        return status(shard, reply, "404 No Results");
    }
    let limit = if req.batch > 0 {
        req.batch as usize
    } else {
        seqs.len()
    };
    let mut last = 0;
    let total = seqs.len();
    for (i, seq) in seqs.iter().take(limit).enumerate() {
        if let Some(m) = s.load(*seq).await {
            let pending = (total - i - 1) as u64;
            let h = direct_headers(&s.name, &m, Some((pending, last)), req.no_hdr);
            shard.reply(reply, Some(&h), m.payload());
            last = *seq;
        }
    }
    let pending = total.saturating_sub(limit) as u64;
    let block = headers::block(
        Some("204 EOB"),
        &[
            ("Nats-Num-Pending", pending.to_string().as_bytes()),
            ("Nats-Last-Sequence", last.to_string().as_bytes()),
            ("Nats-UpTo-Sequence", up_to.to_string().as_bytes()),
        ],
    );
    shard.reply(reply, Some(&block), &[]);
}
