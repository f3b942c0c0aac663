//! Consumer API: create (all subject forms and actions), info, delete, names,
//! list, pause; answered by the stream's owner in nats-server 2.15's shapes.

use std::rc::Rc;

use bytes::Bytes;
use serde::Deserialize;

use crate::js::api::info::with_levels;
use crate::js::api::{empty_request, reply_err};
use crate::js::consumer::{self, priority, Consumer, Meta};
use crate::js::stream::Stream;
use crate::js::types::consumer_config::{ConsumerConfig, PriorityPolicy};
use crate::js::types::errors::ApiError;
use crate::js::types::json::{self, now_nanos, rfc3339};
use crate::js::types::seq::{ConsumerSeq, DeliveryCount, StreamSeq};
use crate::js::types::stream_config::Retention;
use crate::js::Js;
use crate::shard::Shard;

const CREATE: &str = "consumer_create_response";

/// Handles `CONSUMER.*` on the stream's owner; `tokens` follow `$JS.API.`.
pub async fn handle(js: &Rc<Js>, tokens: &[&str], reply: &Bytes, body: &[u8], hdr: Option<&[u8]>) {
    let find = |name: &str, kind: &str| -> Option<Rc<Stream>> {
        let s = js.streams.borrow().get(name).cloned();
        if s.is_none() {
            reply_err(js, reply, kind, &ApiError::stream_not_found());
        }
        s
    };
    match tokens {
        ["CONSUMER", "CREATE", stream, rest @ ..] => {
            let (name, filter) = match rest {
                [] => (None, None),
                [name] => (Some(*name), None),
                [name, filter @ ..] => (Some(*name), Some(filter.join("."))),
            };
            let at = CreateAt {
                stream,
                name,
                filter,
                durable_api: false,
            };
            create(js, at, reply, body, hdr).await;
        }
        ["CONSUMER", "DURABLE", "CREATE", stream, name] => {
            let at = CreateAt {
                stream,
                name: Some(name),
                filter: None,
                durable_api: true,
            };
            create(js, at, reply, body, hdr).await;
        }
        ["CONSUMER", "INFO" | "DELETE", _, _] if !empty_request(body) => {
            let kind = if tokens[1] == "INFO" {
                "consumer_info_response"
            } else {
                "consumer_delete_response"
            };
            reply_err(js, reply, kind, &ApiError::not_empty_request());
        }
        ["CONSUMER", "INFO", stream, name] => {
            let kind = "consumer_info_response";
            if let Some(s) = find(stream, kind) {
                match lookup(&s, name) {
                    Some(c) => js.shard.reply(reply, None, &info(&js.shard, &c, kind)),
                    None => reply_err(js, reply, kind, &ApiError::consumer_not_found()),
                }
            }
        }
        ["CONSUMER", "DELETE", stream, name] => {
            let kind = "consumer_delete_response";
            if let Some(s) = find(stream, kind) {
                if remove_consumer(js, &s, name).await {
                    js.shard.reply(
                        reply,
                        None,
                        br#"{"type":"io.nats.jetstream.api.v1.consumer_delete_response","success":true}"#,
                    );
                } else {
                    reply_err(js, reply, kind, &ApiError::consumer_not_found());
                }
            }
        }
        ["CONSUMER", "NAMES", stream] => names(js, stream, reply, body, false),
        ["CONSUMER", "LIST", stream] => names(js, stream, reply, body, true),
        ["CONSUMER", "UNPIN", stream, name] => {
            let kind = "consumer_unpin_response";
            if let Some(s) = find(stream, kind) {
                let done = match lookup(&s, name) {
                    Some(c) => c.unpin(&js.shard, body),
                    None => Err(ApiError::consumer_not_found()),
                };
                match done {
                    Ok(()) => js.shard.reply(
                        reply,
                        None,
                        br#"{"type":"io.nats.jetstream.api.v1.consumer_unpin_response"}"#,
                    ),
                    Err(e) => reply_err(js, reply, kind, &e),
                }
            }
        }
        ["CONSUMER", "PAUSE", stream, name] => {
            let kind = "consumer_pause_response";
            if let Some(s) = find(stream, kind) {
                pause(js, &s, name, reply, body).await;
            }
        }
        // `api::served` lets only these through.
        _ => {}
    }
}

fn lookup(stream: &Stream, name: &str) -> Option<Rc<Consumer>> {
    stream.consumers.borrow().get(name).cloned()
}

/// The config as echoed: metadata with the levels (`with_server` adds the
/// server's level and version, as create/info answers do; list items do not).
fn config_out(cfg: &ConsumerConfig, with_server: bool) -> ConsumerConfig {
    let mut c = cfg.clone();
    let mut m = c.metadata.take().unwrap_or_default();
    let priority = cfg.priority() != PriorityPolicy::None
        || cfg.priority_timeout != 0
        || !cfg.priority_groups.is_empty();
    let req = if cfg.pause_until.is_some() || priority {
        1
    } else {
        0
    };
    with_levels(&mut m, req, with_server);
    c.metadata = Some(m);
    c
}

/// Consumer info JSON; `kind` is the response type, or "list" for a list item.
pub fn info(shard: &Shard, c: &Consumer, kind: &str) -> Vec<u8> {
    let snap = c.snapshot();
    let bound = {
        let cfg = c.cfg.borrow();
        cfg.is_push() && shard.has_interest(cfg.deliver_subject.as_bytes())
    };
    let cfg = c.cfg.borrow();
    let mut out = String::with_capacity(1024);
    out.push('{');
    if kind != "list" {
        out.push_str(&format!("\"type\":\"io.nats.jetstream.api.v1.{kind}\","));
    }
    out.push_str(&format!(
        "\"stream_name\":{},\"name\":{},\"created\":\"{}\",\"config\":",
        json::quote(&c.stream.name),
        json::quote(&c.name),
        rfc3339(c.created)
    ));
    out.push_str(
        &String::from_utf8(json::encode(&config_out(&cfg, kind != "list"))).expect("utf8"),
    );
    let active = |t: i64| {
        if t == 0 {
            String::new()
        } else {
            format!(",\"last_active\":\"{}\"", rfc3339(t))
        }
    };
    out.push_str(&format!(
        ",\"delivered\":{{\"consumer_seq\":{},\"stream_seq\":{}{}}}",
        snap.dseq,
        snap.sseq,
        active(snap.last_delivered)
    ));
    let ack_active = if cfg.ack() == crate::js::types::consumer_config::AckPolicy::None {
        0
    } else {
        snap.last_ack
    };
    out.push_str(&format!(
        ",\"ack_floor\":{{\"consumer_seq\":{},\"stream_seq\":{}{}}}",
        snap.ack_c,
        snap.ack_s,
        active(ack_active)
    ));
    out.push_str(&format!(
        ",\"num_ack_pending\":{},\"num_redelivered\":{},\"num_waiting\":{},\"num_pending\":{}",
        snap.num_ack_pending, snap.num_redelivered, snap.num_waiting, snap.num_pending
    ));
    if bound {
        out.push_str(",\"push_bound\":true");
    }
    let now = now_nanos();
    let pause = cfg.pause_until_nanos();
    if pause > now {
        // Far enough out, Go's time.Until saturates.
        let remaining = if pause == i64::MAX {
            i64::MAX
        } else {
            pause - now
        };
        out.push_str(&format!(",\"paused\":true,\"pause_remaining\":{remaining}"));
    }
    out.push_str(&format!(",\"ts\":\"{}\"", rfc3339(now)));
    out.push_str(&priority::info_json(&cfg, c.pin().as_ref()));
    out.push('}');
    out.into_bytes()
}

/// Where a create request came in: the parts of its subject.
struct CreateAt<'a> {
    stream: &'a str,
    /// The consumer name in the subject (`CREATE.<s>.<name>[.<filter>]`).
    name: Option<&'a str>,
    /// The filter in the subject.
    filter: Option<String>,
    /// `CONSUMER.DURABLE.CREATE.<s>.<name>`.
    durable_api: bool,
}

/// A decoded create request: the action, the consumer's name, its config.
struct Wanted {
    action: String,
    name: String,
    cfg: ConsumerConfig,
}

async fn create(js: &Rc<Js>, at: CreateAt<'_>, reply: &Bytes, body: &[u8], hdr: Option<&[u8]>) {
    let err = |e: ApiError| reply_err(js, reply, CREATE, &e);
    let generated = consumer::random_token(&js.shard, 8);
    let Wanted {
        action,
        name,
        mut cfg,
    } = match decode_create(&at, body, generated, js.strict) {
        Ok(w) => w,
        Err(e) => return err(e),
    };
    let Some(stream) = js.stream(at.stream) else {
        return err(ApiError::stream_not_found());
    };
    // A direct consumer (another server's mirror or source) names the
    // origin's identity it expects, and hears it in the answer: an origin
    // deleted and created again is noticed by its targets.
    let ident = cfg
        .direct
        .then(|| crate::js::types::source::identity(stream.created));
    if let Some(id) = &ident {
        let asked = hdr
            .and_then(|h| crate::protocol::headers::get(h, b"Nats-Stream-Identity"))
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
            .filter(|v| !v.is_empty());
        if asked.is_some_and(|a| &a != id) {
            return err(ApiError::new(
                400,
                10225,
                format!("consumer's stream identity does not match: {id}"),
            ));
        }
    }
    if let Err(e) = check_on_stream(&stream, &name, &mut cfg) {
        return err(e);
    }
    let existing = lookup(&stream, &name);
    let answer = match (existing, action.as_str()) {
        (Some(c), _) => update_existing(&stream, &c, cfg, &action).map(|()| c),
        (None, "update") => Err(ApiError::consumer_missing()),
        (None, _) => create_new(js, &stream, name, cfg).await,
    };
    match answer {
        Ok(c) => {
            let hdr = ident.map(|id| format!("NATS/1.0\r\nNats-Stream-Identity: {id}\r\n\r\n"));
            let hdr = hdr.as_ref().map(String::as_bytes);
            js.shard.reply(reply, hdr, &info(&js.shard, &c, CREATE))
        }
        Err(e) => err(e),
    }
}

/// Decodes a create request and settles the consumer's name from the
/// subject, the config's `name` and `durable_name`, or `generated`.
fn decode_create(
    at: &CreateAt,
    body: &[u8],
    generated: String,
    strict: bool,
) -> Result<Wanted, ApiError> {
    let req = ConsumerConfig::decode_request(body, strict)?;
    if req.stream_name != at.stream {
        return Err(ApiError::name_mismatch());
    }
    // The action is part of the request's decoding on nats-server.
    if !matches!(req.action.as_str(), "" | "create" | "update") {
        return Err(ApiError::invalid_json(&format!(
            "unknown consumer action: {:?}",
            req.action
        )));
    }
    let mut cfg = req.config.unwrap_or_default();
    let name = match at.name {
        None if !cfg.durable_name.is_empty() => {
            return Err(ApiError::new(
                400,
                10020,
                "consumer expected to be ephemeral but a durable name was set in request",
            ))
        }
        // A generated name is not echoed in the config, as in nats-server.
        None if cfg.name.is_empty() => generated,
        None => cfg.name.clone(),
        Some(_) if at.durable_api && cfg.durable_name.is_empty() => {
            return Err(ApiError::new(
                400,
                10018,
                "consumer expected to be durable but a durable name was not set",
            ))
        }
        Some(n) if !cfg.durable_name.is_empty() && cfg.durable_name != n => {
            return Err(ApiError::new(
                400,
                10017,
                "consumer name in subject does not match durable name in request",
            ))
        }
        Some(n) => {
            cfg.name = n.to_string();
            n.to_string()
        }
    };
    if !cfg.durable_name.is_empty() && !cfg.name.is_empty() && cfg.durable_name != cfg.name {
        return Err(ApiError::new(
            400,
            10132,
            "consumer Durable and Name have to be equal if both are provided",
        ));
    }
    if !crate::js::types::stream_config::valid_name(&name) {
        return Err(ApiError::new(
            400,
            10127,
            "Consumer name can not contain path separators",
        ));
    }
    if let Some(f) = &at.filter {
        if !cfg.filter_subjects.is_empty() {
            return Err(ApiError::new(
                400,
                10137,
                "consumer with multiple subject filters cannot use subject based API",
            ));
        }
        if &cfg.filter_subject != f {
            return Err(ApiError::new(
                400,
                10131,
                "Consumer create request did not match filtered subject from create subject",
            ));
        }
    }
    if cfg.sourcing {
        // What a server before API level 4 answers; nats-server then asks
        // for a plain direct consumer.
        return Err(ApiError::invalid_json("json: unknown field \"sourcing\""));
    }
    Ok(Wanted {
        action: req.action,
        name,
        cfg,
    })
}

/// Normalizes `cfg` for `stream` and checks what the stream's config and
/// its other consumers allow.
fn check_on_stream(stream: &Stream, name: &str, cfg: &mut ConsumerConfig) -> Result<(), ApiError> {
    let scfg = stream.cfg.borrow().clone();
    cfg.normalize(&scfg)?;
    // Deliveries into the stream's own subjects would be stored and delivered
    // again without end.
    let cycle = cfg.is_push()
        && scfg
            .subjects
            .iter()
            .any(|s| crate::subject::matches(s.as_bytes(), cfg.deliver_subject.as_bytes()));
    if cycle {
        return Err(ApiError::new(
            400,
            10081,
            "consumer deliver subject forms a cycle",
        ));
    }
    if scfg.retention() == Retention::WorkQueue && !cfg.direct {
        if let Some(e) = workqueue_conflict(stream, name, cfg) {
            return Err(e);
        }
    }
    Ok(())
}

/// A create for a consumer that exists: the same config answers with it;
/// otherwise an update (not with action `create`) within the update rules.
fn update_existing(
    stream: &Stream,
    c: &Consumer,
    cfg: ConsumerConfig,
    action: &str,
) -> Result<(), ApiError> {
    let old = (**c.cfg.borrow()).clone();
    if old == cfg {
        return Ok(());
    }
    if action == "create" {
        return Err(ApiError::consumer_exists());
    }
    cfg.check_update(&old)?;
    if old.is_durable() {
        let dir = consumer::consumers_dir(stream).join(&c.name);
        let meta = Meta {
            created: c.created,
            config: cfg.clone(),
        };
        consumer::write_meta(&dir, &meta).map_err(ApiError::consumer_create)?;
    }
    c.update(cfg);
    Ok(())
}

/// Creates a consumer: its directory and `meta.json` (durables), its
/// starting state saved before the answer, its task started.
async fn create_new(
    js: &Rc<Js>,
    stream: &Rc<Stream>,
    name: String,
    cfg: ConsumerConfig,
) -> Result<Rc<Consumer>, ApiError> {
    let max = stream.cfg.borrow().max_consumers;
    if max > 0 && !cfg.direct && stream.public_consumers().len() as i64 >= max {
        return Err(ApiError::max_consumers());
    }
    let created = now_nanos();
    let durable = cfg.is_durable();
    let dir = consumer::consumers_dir(stream).join(&name);
    if durable {
        let meta = Meta {
            created,
            config: cfg.clone(),
        };
        let made = consumer::write_meta(&dir, &meta)
            .and_then(|()| crate::js::store::segment::sync_dir(&consumer::consumers_dir(stream)))
            .and_then(|()| crate::js::store::segment::sync_dir(&stream.dir));
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ApiError::consumer_create(e));
        }
    }
    let state_dir = (durable && !cfg.mem_storage && stream.is_file()).then(|| dir.clone());
    let c = Rc::new(Consumer::new(stream, name.clone(), cfg, created, state_dir));
    // The starting position is saved before the answer: after a crash the
    // consumer resumes there, not at whatever "new" or "last" means by then.
    if !c.save().await {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(ApiError::consumer_create("cannot save the consumer state"));
    }
    // Created by a concurrent request while this one saved: answer with that one.
    if let Some(other) = lookup(stream, &name) {
        return Ok(other);
    }
    start(js, stream, c.clone());
    action_advisory(&js.shard, &stream.name, &name, "create");
    Ok(c)
}

/// A workqueue stream lets one consumer take each subject.
fn workqueue_conflict(stream: &Stream, name: &str, cfg: &ConsumerConfig) -> Option<ApiError> {
    let mine = cfg.filters();
    for other in stream.consumers.borrow().values() {
        if other.name == name || other.cfg.borrow().direct {
            continue;
        }
        if mine.is_empty() {
            return Some(ApiError::new(
                400,
                10099,
                "multiple non-filtered consumers not allowed on workqueue stream",
            ));
        }
        let theirs = other.cfg.borrow().filters();
        let overlap = theirs.is_empty()
            || mine.iter().any(|a| {
                theirs
                    .iter()
                    .any(|b| crate::subject::overlaps(a.as_bytes(), b.as_bytes()))
            });
        if overlap {
            return Some(ApiError::new(
                400,
                10100,
                "filtered consumer not unique on workqueue stream",
            ));
        }
    }
    None
}

/// Registers a consumer with its stream and starts its task.
pub fn start(js: &Rc<Js>, stream: &Rc<Stream>, c: Rc<Consumer>) {
    stream.ix.borrow_mut().track_removals = true;
    stream
        .consumers
        .borrow_mut()
        .insert(c.name.clone(), c.clone());
    glommio::spawn_local(c.clone().run(js.clone())).detach();
    c.wake.notify();
}

fn action_advisory(shard: &Shard, stream: &str, name: &str, action: &str) {
    let body = format!(
        concat!(
            "{{\"type\":\"io.nats.jetstream.advisory.v1.consumer_action\",\"id\":\"{}\",",
            "\"timestamp\":\"{}\",\"stream\":{},\"consumer\":{},\"action\":\"{}\"}}"
        ),
        consumer::random_token(shard, 22),
        rfc3339(now_nanos()),
        json::quote(stream),
        json::quote(name),
        action
    );
    let verb = if action == "create" {
        "CREATED"
    } else {
        "DELETED"
    };
    let subject = Bytes::from(format!(
        "$JS.EVENT.ADVISORY.CONSUMER.{verb}.{stream}.{name}"
    ));
    shard.reply(&subject, None, body.as_bytes());
}

/// Deletes a consumer (API, inactivity); false if there is none.
pub async fn remove_consumer(js: &Rc<Js>, stream: &Rc<Stream>, name: &str) -> bool {
    let Some(c) = lookup(stream, name) else {
        return false;
    };
    // No save may still be writing into the directory renamed below (a
    // consumer created again under this name would get its slot).
    c.closed.set(true);
    c.wake.notify();
    c.wait_saved().await;
    // Removed by a concurrent delete meanwhile (perhaps created again): not ours.
    match stream.consumers.borrow().get(name) {
        Some(now) if Rc::ptr_eq(now, &c) => {}
        _ => return false,
    }
    stream.consumers.borrow_mut().remove(name);
    if stream.consumers.borrow().is_empty() {
        let mut ix = stream.ix.borrow_mut();
        ix.track_removals = false;
        ix.recent_removed.clear();
    }
    // Out of the way at once, so a consumer created again under this name
    // while this one stops gets a directory of its own.
    let doomed = if c.cfg.borrow().is_durable() {
        let dir = consumer::consumers_dir(stream).join(name);
        let away = consumer::consumers_dir(stream).join(format!(
            ".deleted-{name}-{}",
            consumer::random_token(&js.shard, 8)
        ));
        match std::fs::rename(&dir, &away) {
            Ok(()) => Some(away),
            Err(e) => {
                crate::error!("JetStream: removing consumer {}: {e}", dir.display());
                None
            }
        }
    } else {
        None
    };
    c.stop(&js.shard, true).await;
    if let Some(away) = doomed {
        if let Err(e) = std::fs::remove_dir_all(&away) {
            crate::error!("JetStream: removing consumer {}: {e}", away.display());
        }
    }
    consumer::retain_after_removal(stream, &c).await;
    action_advisory(&js.shard, &stream.name, name, "delete");
    js.shard.flush_mesh().await;
    true
}

fn names(js: &Js, stream: &str, reply: &Bytes, body: &[u8], list: bool) {
    let kind = if list {
        "consumer_list_response"
    } else {
        "consumer_names_response"
    };
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Req {
        offset: i64,
    }
    let req: Req = match json::decode_checked(body, js.strict) {
        Ok(r) => r,
        Err(e) => return reply_err(js, reply, kind, &ApiError::invalid_json(&e)),
    };
    let s = js.streams.borrow().get(stream).cloned();
    let Some(s) = s else {
        return reply_err(js, reply, kind, &ApiError::stream_not_found());
    };
    let all = s.public_consumers();
    let total = all.len();
    let offset = (req.offset.max(0) as usize).min(total);
    let limit = if list {
        crate::limits::API_LIST_PAGE
    } else {
        crate::limits::API_NAMES_PAGE
    };
    let items: Vec<String> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|c| {
            if list {
                String::from_utf8(info(&js.shard, c, "list")).expect("utf8")
            } else {
                json::quote(&c.name)
            }
        })
        .collect();
    let out = format!(
        "{{\"type\":\"io.nats.jetstream.api.v1.{kind}\",\"total\":{total},\"offset\":{offset},\"limit\":{limit},\"consumers\":[{}]}}",
        items.join(",")
    );
    js.shard.reply(reply, None, out.as_bytes());
}

async fn pause(js: &Rc<Js>, stream: &Rc<Stream>, name: &str, reply: &Bytes, body: &[u8]) {
    let kind = "consumer_pause_response";
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Req {
        pause_until: Option<String>,
    }
    let req: Req = match json::decode_checked(body, js.strict) {
        Ok(r) => r,
        Err(e) => return reply_err(js, reply, kind, &ApiError::invalid_json(&e)),
    };
    let Some(c) = lookup(stream, name) else {
        return reply_err(js, reply, kind, &ApiError::consumer_not_found());
    };
    let until = req
        .pause_until
        .as_deref()
        .and_then(json::parse_rfc3339)
        .unwrap_or(0);
    let mut cfg = (**c.cfg.borrow()).clone();
    cfg.pause_until = (until > 0).then(|| rfc3339(until));
    if cfg.is_durable() {
        let meta = Meta {
            created: c.created,
            config: cfg.clone(),
        };
        let dir = consumer::consumers_dir(stream).join(name);
        if let Err(e) = consumer::write_meta(&dir, &meta) {
            return reply_err(js, reply, kind, &ApiError::consumer_create(e));
        }
    }
    c.update(cfg);
    let now = now_nanos();
    let out = if until > now {
        format!(
            "{{\"type\":\"io.nats.jetstream.api.v1.{kind}\",\"paused\":true,\"pause_until\":\"{}\",\"pause_remaining\":{}}}",
            rfc3339(until),
            until - now
        )
    } else {
        format!(
            "{{\"type\":\"io.nats.jetstream.api.v1.{kind}\",\"paused\":false,\"pause_until\":\"{}\"}}",
            rfc3339(until)
        )
    };
    js.shard.reply(reply, None, out.as_bytes());
}

/// Requests and acks arriving on a stream's internal subscriptions.
pub fn on_internal(
    shard: &Shard,
    stream: &Rc<Stream>,
    kind: u32,
    subject: &Bytes,
    reply: Option<&Bytes>,
    hdr_len: Option<usize>,
    msg: &Bytes,
) {
    let body = &msg[hdr_len.unwrap_or(0)..];
    // One ack per delivered message comes through here: split without
    // allocating (a v2 ack may carry extra tokens; 16 are plenty to read).
    let mut slots: [&[u8]; 16] = [b""; 16];
    let mut count = 0;
    for t in subject.split(|b| *b == b'.') {
        if count < slots.len() {
            slots[count] = t;
        }
        count += 1;
    }
    let tokens = &slots[..count.min(slots.len())];
    let long = count;
    let name = stream.name.as_bytes();
    let consumer = |t: &[u8]| std::str::from_utf8(t).ok().and_then(|n| lookup(stream, n));
    let no_responders = |shard: &Shard| {
        if let Some(r) = reply.filter(|r| !r.is_empty()) {
            let block = crate::protocol::headers::no_responders(subject);
            shard.reply(r, Some(&block), b"");
        }
    };
    match kind {
        crate::js::NEXT_BIT => {
            // $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>
            let c = tokens.get(6).and_then(|n| consumer(n));
            match c {
                Some(c) => c.pull_request(shard, reply, body),
                None => no_responders(shard),
            }
        }
        crate::js::ACK_BIT => {
            // v1: $JS.ACK.<stream>.<consumer>.<dc>.<sseq>.<cseq>.<ts>.<pending>
            // v2: $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<dc>.<sseq>.<cseq>.<ts>
            //     .<pending>[...]
            let at = match long {
                9 if tokens[2] == name => 2,
                n if n >= 11 && tokens[4] == name => 4,
                // Malformed: nobody can take it, as in nats-server.
                _ if tokens.get(2) == Some(&name) => return no_responders(shard),
                // Another stream's ack matched the v2 pattern: not ours.
                _ => return,
            };
            let c = consumer(tokens[at + 1]);
            let dc = parse_u64(tokens[at + 2]);
            let sseq = parse_u64(tokens[at + 3]);
            let cseq = parse_u64(tokens[at + 4]);
            match (c, dc, sseq, cseq) {
                (Some(c), Some(dc), Some(sseq), Some(cseq))
                    if c.cfg.borrow().ack()
                        != crate::js::types::consumer_config::AckPolicy::None =>
                {
                    c.ack(
                        shard,
                        StreamSeq(sseq),
                        ConsumerSeq(cseq),
                        DeliveryCount(dc),
                        reply,
                        body,
                    )
                }
                _ => no_responders(shard),
            }
        }
        _ => {
            // $JS.FC.<stream>.<consumer>.<token>
            if let Some(c) = tokens.get(3).and_then(|n| consumer(n)) {
                c.fc_reply(subject);
            }
        }
    }
}

/// A decimal token; None if empty, not digits, or too large.
fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for b in t {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Whether `tokens` (after `$JS.API.`) name a consumer call, for routing.
pub fn stream_of<'a>(tokens: &[&'a str]) -> Option<&'a str> {
    match tokens {
        ["CONSUMER", "DURABLE", "CREATE", s, ..] => Some(s),
        ["CONSUMER", "CREATE" | "INFO" | "DELETE" | "NAMES" | "LIST" | "PAUSE" | "UNPIN", s, ..] => {
            Some(s)
        }
        _ => None,
    }
}
