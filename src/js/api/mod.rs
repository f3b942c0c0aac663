//! The `$JS.API` handlers: the subject table (`handle`), the response envelope
//! (errors in nats-server 2.15's exact shapes: field order, omitted fields,
//! extra zeroed fields) and request decoding. One file per API family:
//! `stream`, `info`, `msg`, `direct`, `consumer`; catalogue changes are
//! decided by the coordinator (`js::meta`).

pub mod consumer;
pub mod direct;
pub mod info;
pub mod msg;
pub mod stream;

use std::rc::Rc;

use bytes::Bytes;

use crate::js::stream::Stream;
use crate::js::types::errors::ApiError;
use crate::js::types::json;
use crate::js::{meta, Js};
use crate::protocol::headers;
use crate::shard::msg::ApiRequest;

pub use crate::config::API_LEVEL;

/// For subjects about one stream, its name (the token after the verb).
pub fn stream_of(rest: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(rest).ok()?;
    if s.starts_with("CONSUMER.") {
        let tokens: Vec<&str> = s.split('.').collect();
        return crate::js::api::consumer::stream_of(&tokens);
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

pub(crate) fn prefix_type(kind: &str) -> String {
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
        "consumer_pause_response" => r#","paused":false,"pause_until":"0001-01-01T00:00:00Z""#,
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
pub(crate) fn decode_request<T: serde::de::DeserializeOwned>(
    js: &Js,
    reply: &Bytes,
    kind: &str,
    body: &[u8],
) -> Option<T> {
    match json::decode_checked(body, js.strict) {
        Ok(r) => Some(r),
        Err(e) => {
            reply_err(js, reply, kind, &ApiError::invalid_json(&e));
            None
        }
    }
}

/// Refuses a removal on a sealed stream (10109) or one that denies it (`denied`);
/// true when it may go ahead.
pub(crate) fn may_remove(
    js: &Js,
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
            reply_err(js, reply, kind, &e);
            false
        }
        None => true,
    }
}

/// Takes back the count of a request this shard does not answer through the
/// API: one forwarded to its stream's owner (which counts it), or a found
/// `STREAM.MSG.GET` (nats-server answers it outside its API layer).
pub(crate) fn uncount(js: &Js) {
    js.api_total.set(js.api_total.get() - 1);
}

/// A payload nats-server takes as empty for info and delete: none at all, or
/// JSON that decodes to an empty object (`{}`, `{ }`); whitespace alone is not.
pub(crate) fn empty_request(body: &[u8]) -> bool {
    body.is_empty()
        || serde_json::from_slice::<serde_json::Map<_, _>>(body).is_ok_and(|m| m.is_empty())
}

/// Answers `reply` with error `e` in the envelope of `kind`, and counts it.
pub fn reply_err(js: &Js, reply: &Bytes, kind: &str, e: &ApiError) {
    js.api_errors.set(js.api_errors.get() + 1);
    js.shard.reply(reply, None, &error_body(kind, e));
}

/// Handles one API request on this shard (the coordinator or the owner).
pub async fn handle(js: &Rc<Js>, req: ApiRequest) {
    let body = req.body();
    let reply = &req.reply;
    let rest = String::from_utf8_lossy(&req.subject[b"$JS.API.".len()..]).into_owned();
    let tokens: Vec<&str> = rest.split('.').collect();
    // nats-server has no subscription there: no answer, not counted.
    let Some((kind, clustered)) = served(&tokens) else {
        return;
    };
    js.api_total.set(js.api_total.get() + 1);
    if clustered {
        // Answered before any other check, as on a server without clustering.
        reply_err(js, reply, kind, &ApiError::clustering_required());
        js.shard.flush_mesh().await;
        return;
    }
    // A level this server does not reach, or one that is not a number.
    let level = req
        .headers()
        .and_then(|h| headers::get(h, b"Nats-Required-Api-Level"))
        .filter(|l| !l.is_empty())
        .map(|l| {
            std::str::from_utf8(l)
                .ok()
                .and_then(|l| l.parse::<i64>().ok())
        });
    if level.is_some_and(|l| l.is_none_or(|l| l > API_LEVEL as i64)) {
        reply_err(js, reply, kind, &ApiError::required_api_level());
        js.shard.flush_mesh().await;
        return;
    }
    // A request about a stream being made here waits for it (the create's
    // answer goes first, as the requests came).
    if let Some(name) = stream_of(&req.subject[b"$JS.API.".len()..]) {
        js.made_ready(name).await;
    }
    match tokens.as_slice() {
        ["INFO"] => info::account_info(js, reply).await,
        ["STREAM", "CREATE", name] => meta::create(js, name, reply, &body),
        ["STREAM", "UPDATE", name] => meta::update(js, name, reply, &body),
        ["STREAM", "DELETE", name] => meta::delete(js, name, reply, &body),
        ["STREAM", "NAMES"] => stream::names(js, reply, &body, false).await,
        ["STREAM", "LIST"] => stream::names(js, reply, &body, true).await,
        ["STREAM", "INFO", name] => {
            if let Some(s) = find_stream(js, name, "stream_info_response", &req) {
                stream::info(js, &s, reply, &body);
            }
        }
        ["STREAM", "PURGE", name] => {
            if let Some(s) = find_stream(js, name, "stream_purge_response", &req) {
                stream::purge(js, &s, reply, &body).await;
            }
        }
        ["STREAM", "MSG", "GET", name] => {
            if let Some(s) = find_stream(js, name, "stream_msg_get_response", &req) {
                msg::get(js, &s, reply, &body).await;
            }
        }
        ["STREAM", "MSG", "DELETE", name] => {
            if let Some(s) = find_stream(js, name, "stream_msg_delete_response", &req) {
                msg::delete(js, &s, reply, &body).await;
            }
        }
        ["CONSUMER", ..] => consumer::handle(js, &tokens, reply, &body, req.headers()).await,
        // Served subjects are all matched above.
        _ => {}
    }
    js.shard.flush_mesh().await;
}

/// The API subjects nats-server serves (its subscriptions, token for token):
/// the kind of their answers, and whether they need clustering (answered 10010).
/// Snapshots, restores and consumer resets are not served here yet.
fn served(tokens: &[&str]) -> Option<(&'static str, bool)> {
    let kind = match tokens {
        ["INFO"] => "account_info_response",
        ["STREAM", "CREATE", _] => "stream_create_response",
        ["STREAM", "UPDATE", _] => "stream_update_response",
        ["STREAM", "DELETE", _] => "stream_delete_response",
        ["STREAM", "NAMES"] => "stream_names_response",
        ["STREAM", "LIST"] => "stream_list_response",
        ["STREAM", "INFO", _] => "stream_info_response",
        ["STREAM", "PURGE", _] => "stream_purge_response",
        ["STREAM", "MSG", "GET", _] => "stream_msg_get_response",
        ["STREAM", "MSG", "DELETE", _] => "stream_msg_delete_response",
        ["CONSUMER", "CREATE", _, ..] => "consumer_create_response",
        ["CONSUMER", "DURABLE", "CREATE", _, _] => "consumer_create_response",
        ["CONSUMER", "INFO", _, _] => "consumer_info_response",
        ["CONSUMER", "DELETE", _, _] => "consumer_delete_response",
        ["CONSUMER", "NAMES", _] => "consumer_names_response",
        ["CONSUMER", "LIST", _] => "consumer_list_response",
        ["CONSUMER", "PAUSE", _, _] => "consumer_pause_response",
        ["CONSUMER", "UNPIN", _, _] => "consumer_unpin_response",
        _ => {
            let kind = match tokens {
                ["STREAM", "LEADER", "STEPDOWN", _] => "stream_leader_stepdown_response",
                ["STREAM", "PEER", "REMOVE", _] => "stream_remove_peer_response",
                ["STREAM", "PEER", "EVACUATE", _] => "stream_evacuate_peer_response",
                ["STREAM", "CANCEL_MOVE", _] => "stream_cancel_move_response",
                ["CONSUMER", "LEADER", "STEPDOWN", _, _] => "consumer_leader_stepdown_response",
                ["CONSUMER", "PEER", "REMOVE", _, _] => "consumer_remove_peer_response",
                ["CONSUMER", "PEER", "EVACUATE", _, _] => "consumer_evacuate_peer_response",
                _ => return None,
            };
            return Some((kind, true));
        }
    };
    Some((kind, false))
}

/// The stream if this shard owns it. Otherwise the coordinator forwards the
/// request to the owner it knows, or the answer is `stream not found`.
fn find_stream(js: &Js, name: &str, kind: &str, req: &ApiRequest) -> Option<Rc<Stream>> {
    let local = js.stream(name);
    if local.is_some() {
        return local;
    }
    let owner = js.catalog.borrow().get(name).map(|e| e.owner);
    match owner {
        Some(o) if o != js.shard.id && js.shard.id == 0 => {
            uncount(js);
            js.send_api(o, req.clone());
        }
        _ => reply_err(js, &req.reply, kind, &ApiError::stream_not_found()),
    }
    None
}
