//! `STREAM.NAMES`, `STREAM.LIST`, `STREAM.INFO` and `STREAM.PURGE`.

use bytes::Bytes;
use serde::Deserialize;

use crate::js::api::info::{stream_info, InfoRequest};
use crate::js::api::{decode_request, may_remove, reply_err};
use crate::js::stream::Stream;
use crate::js::types::catalog::{GatherAsk, GatherPart};
use crate::js::types::errors::ApiError;
use crate::js::types::json;
use crate::js::Js;

#[derive(Default, Deserialize)]
#[serde(default)]
struct NamesRequest {
    offset: i64,
    subject: String,
}

pub async fn names(js: &Js, reply: &Bytes, body: &[u8], list: bool) {
    let kind = if list {
        "stream_list_response"
    } else {
        "stream_names_response"
    };
    let Some(req) = decode_request::<NamesRequest>(js, reply, kind, body) else {
        return;
    };
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
        return js.shard.reply(reply, None, out.as_bytes());
    }
    let ask = GatherAsk::Streams {
        subject: req.subject,
    };
    let mut items: Vec<(String, Vec<u8>)> = Vec::new();
    for part in js.gather(ask).await {
        if let GatherPart::Streams(list) = part {
            items.extend(list);
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let total = items.len();
    let offset = (req.offset.max(0) as usize).min(total);
    let mut out = format!(
        "{{\"type\":\"io.nats.jetstream.api.v1.stream_list_response\",\"total\":{total},\"offset\":{offset},\"limit\":{},\"streams\":[",
        crate::limits::API_LIST_PAGE,
    )
    .into_bytes();
    for (i, (_, info)) in items
        .iter()
        .skip(offset)
        .take(crate::limits::API_LIST_PAGE)
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(info);
    }
    out.extend_from_slice(b"]}");
    js.shard.reply(reply, None, &out);
}

pub fn info(js: &Js, s: &Stream, reply: &Bytes, body: &[u8]) {
    let kind = "stream_info_response";
    // nats-server reads a body only when it looks like JSON, and no array.
    let req = match body.trim_ascii().first() {
        Some(b'[') => {
            let m =
                "json: cannot unmarshal array into Go value of type server.JSApiStreamInfoRequest";
            return reply_err(js, reply, kind, &ApiError::invalid_json(m));
        }
        Some(b'{') => match decode_request::<InfoRequest>(js, reply, kind, body) {
            Some(r) => r,
            None => return,
        },
        _ => InfoRequest::default(),
    };
    let out = stream_info(js, s, "stream_info_response", Some(&req), false);
    js.shard.reply(reply, None, &out);
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct PurgeRequest {
    filter: String,
    seq: u64,
    keep: u64,
}

pub async fn purge(js: &Js, s: &Stream, reply: &Bytes, body: &[u8]) {
    let kind = "stream_purge_response";
    let Some(req) = decode_request::<PurgeRequest>(js, reply, kind, body) else {
        return;
    };
    let (sealed, deny) = {
        let c = s.cfg.borrow();
        (c.sealed, c.deny_purge)
    };
    let denied = deny.then(|| ApiError::purge_failed("stream purge not permitted"));
    if !may_remove(js, reply, kind, sealed, denied) {
        return;
    }
    if req.seq > 0 && req.keep > 0 {
        return reply_err(js, reply, kind, &ApiError::bad_request());
    }
    let filter = (!req.filter.is_empty()).then_some(req.filter.as_str());
    let seq = (req.seq > 0).then_some(req.seq);
    let keep = (req.keep > 0).then_some(req.keep);
    match s.purge(filter, seq, keep).await {
        Ok(n) => js.shard.reply(reply, None, format!("{{\"type\":\"io.nats.jetstream.api.v1.stream_purge_response\",\"success\":true,\"purged\":{n}}}").as_bytes()),
        Err(e) => reply_err(js, reply, kind, &e),
    }
}
