//! Stream info and account info in nats-server 2.15's shapes, and each
//! shard's part of a listing (`gather_part`).

use std::rc::Rc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::js::api::API_LEVEL;
use crate::js::stream::Stream;
use crate::js::types::catalog::{GatherAsk, GatherPart, Usage};
use crate::js::types::json::{self, rfc3339};
use crate::js::types::stream_config::StreamConfig;
use crate::js::Js;

/// Metadata as nats-server shows it: the stored `_nats.req.level`, plus (in
/// create/update/info answers) the server's level and version.
pub(crate) fn metadata_out(
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

pub(crate) fn config_out(cfg: &StreamConfig, with_server: bool) -> StreamConfig {
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
    js: &Js,
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
            // Echoed as asked; past the end there are no subjects to show.
            offset = r.offset.max(0) as usize;
            let mut m = serde_json::Map::new();
            for (subj, n) in all.into_iter().skip(offset).take(limit) {
                m.insert(String::from_utf8_lossy(&subj).into_owned(), Value::from(n));
            }
            subjects = (!m.is_empty()).then_some(m);
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
        consumer_count: s.public_consumers().len() as u64,
    };
    let mut out = format!("{{\"type\":\"{}\"", crate::js::api::prefix_type(kind));
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
    // nats-server shows its domain in info, list and update answers, not in
    // a create's.
    if let Some(d) = js.shard.cfg.domain.as_deref().filter(|_| !did_create) {
        out.push_str(",\"domain\":");
        out.push_str(&serde_json::to_string(d).expect("str"));
    }
    if kind == "stream_info_response" {
        out.push_str(&format!(
            ",\"cluster\":{{\"leader\":{}}}",
            serde_json::to_string(&js.shard.server.server_name).expect("str")
        ));
    }
    out.push_str(&js.links_info(s, did_create));
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

/// `$JS.API.INFO`: the account's usage summed over every shard.
pub async fn account_info(js: &Js, reply: &Bytes) {
    let mut u = Usage::default();
    for part in js.gather(GatherAsk::Usage).await {
        if let GatherPart::Usage(p) = part {
            u.add(&p);
        }
    }
    let body = format!(
        concat!(
            "{{\"type\":\"io.nats.jetstream.api.v1.account_info_response\",\"memory\":{},\"storage\":{},",
            "\"reserved_memory\":0,\"reserved_storage\":{},\"streams\":{},\"consumers\":{},",
            "\"limits\":{{\"max_memory\":-1,\"max_storage\":-1,\"max_streams\":-1,\"max_consumers\":-1,",
            "\"max_ack_pending\":-1,\"memory_max_stream_bytes\":-1,\"storage_max_stream_bytes\":-1,",
            "\"max_bytes_required\":false}}{}\"api\":{{\"level\":{},\"total\":{},\"errors\":{}}}}}"
        ),
        u.memory,
        u.storage,
        u.reserved_storage,
        u.streams,
        u.consumers,
        js.shard
            .cfg
            .domain
            .as_deref()
            .map_or(",".into(), |d| format!(",\"domain\":{},", serde_json::to_string(d).expect("str"))),
        API_LEVEL,
        u.api_total,
        u.api_errors
    );
    js.shard.reply(reply, None, body.as_bytes());
}

/// This shard's answer to a gather: usage counters, or stream infos.
pub fn gather_part(js: &Js, ask: &GatherAsk) -> GatherPart {
    let streams: Vec<Rc<Stream>> = js.streams.borrow().values().cloned().collect();
    match ask {
        GatherAsk::Jsz {
            streams: detail,
            consumers,
            config,
        } => {
            let GatherPart::Usage(usage) = gather_part(js, &GatherAsk::Usage) else {
                unreachable!("usage asked")
            };
            let mut part = (usage, 0, 0, Vec::new());
            for s in &streams {
                let ix = s.ix.borrow();
                part.1 += ix.msgs;
                part.2 += ix.bytes;
                drop(ix);
                if *detail {
                    let d = crate::js::monitor::stream_detail(js, s, *consumers, *config);
                    part.3.push((s.name.clone(), d));
                }
            }
            let (usage, messages, bytes, streams) = part;
            GatherPart::Jsz {
                usage,
                messages,
                bytes,
                streams,
            }
        }
        GatherAsk::Usage => {
            let mut u = Usage {
                streams: streams.len() as u64,
                api_total: js.api_total.get(),
                api_errors: js.api_errors.get(),
                ..Usage::default()
            };
            for s in &streams {
                let bytes = s.ix.borrow().bytes;
                let cfg = s.cfg.borrow();
                if cfg.memory() {
                    u.memory += bytes;
                } else {
                    u.storage += bytes;
                    if cfg.max_bytes > 0 {
                        u.reserved_storage += cfg.max_bytes;
                    }
                }
                u.consumers += s.consumers.borrow().len() as u64;
            }
            GatherPart::Usage(u)
        }
        GatherAsk::Streams { subject } => {
            let mut items = Vec::new();
            for s in &streams {
                let overlaps = subject.is_empty()
                    || s.cfg
                        .borrow()
                        .subjects
                        .iter()
                        .any(|x| crate::subject::overlaps(x.as_bytes(), subject.as_bytes()));
                if overlaps {
                    items.push((s.name.clone(), stream_info(js, s, "list", None, false)));
                }
            }
            GatherPart::Streams(items)
        }
    }
}
