//! `STREAM.MSG.GET` and `STREAM.MSG.DELETE`, and the message selection that
//! direct gets share.

use bytes::Bytes;
use serde::Deserialize;

use crate::js::api::{decode_request, may_remove, reply_err};
use crate::js::stream::Stream;
use crate::js::types::errors::ApiError;
use crate::js::types::json::{self, rfc3339};
use crate::js::Js;

#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct GetRequest {
    pub seq: u64,
    pub last_by_subj: String,
    pub next_by_subj: String,
    pub batch: i64,
    pub max_bytes: i64,
    pub start_time: Option<String>,
    pub no_hdr: bool,
    pub multi_last: Vec<String>,
    pub up_to_seq: u64,
    pub up_to_time: Option<String>,
}

/// Picks the message a get request names; Err(()) for a bad request.
pub(crate) fn select(s: &Stream, req: &GetRequest, from: Option<u64>) -> Result<Option<u64>, ()> {
    let ix = s.ix.borrow();
    if let Some(t) = &req.start_time {
        let Some(t) = json::parse_rfc3339(t) else {
            return Err(());
        };
        let mut seq = from.unwrap_or(ix.first_seq());
        while seq <= ix.last_seq() {
            if let Some(e) = ix.entry(seq) {
                let subj_ok = req.next_by_subj.is_empty()
                    || crate::subject::matches(req.next_by_subj.as_bytes(), ix.subject_of(&e));
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
    // Liveness alone: the entry itself is read by the load that follows.
    Ok(ix.is_live(req.seq).then_some(req.seq))
}

/// `STREAM.MSG.GET.<stream>`.
pub async fn get(js: &Js, s: &Stream, reply: &Bytes, body: &[u8]) {
    let kind = "stream_msg_get_response";
    let Some(req) = decode_request::<GetRequest>(js, reply, kind, body) else {
        return;
    };
    let has_last = !req.last_by_subj.is_empty();
    let has_next = !req.next_by_subj.is_empty();
    if let Some(t) = req.start_time.as_deref() {
        // Go decodes the time with the request: its parse error is a JSON one.
        if json::parse_rfc3339(t).is_none() {
            let m = format!(
                "parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {t:?} as \"2006\""
            );
            return reply_err(js, reply, kind, &ApiError::invalid_json(&m));
        }
    }
    let bad = (req.seq == 0 && !has_last && !has_next && req.start_time.is_none())
        || (req.seq > 0 && (has_last || req.start_time.is_some()))
        || (has_last && has_next)
        || req.batch != 0
        || req.max_bytes != 0
        || !req.multi_last.is_empty();
    if bad {
        return reply_err(js, reply, kind, &ApiError::bad_request());
    }
    let Ok(Some(seq)) = select(s, &req, None) else {
        return reply_err(js, reply, kind, &ApiError::no_message_found());
    };
    let Some(m) = s.load(seq).await else {
        return reply_err(js, reply, kind, &ApiError::no_message_found());
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
    // Counted only when it fails, as on nats-server.
    super::uncount(js);
    js.shard.reply(reply, None, out.as_bytes());
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct DeleteRequest {
    seq: u64,
    no_erase: bool,
}

/// `STREAM.MSG.DELETE.<stream>`.
pub async fn delete(js: &Js, s: &Stream, reply: &Bytes, body: &[u8]) {
    let kind = "stream_msg_delete_response";
    let Some(req) = decode_request::<DeleteRequest>(js, reply, kind, body) else {
        return;
    };
    let (sealed, deny) = {
        let c = s.cfg.borrow();
        (c.sealed, c.deny_delete)
    };
    let denied = deny.then(|| ApiError::msg_delete_failed("message delete not permitted"));
    if !may_remove(js, reply, kind, sealed, denied) {
        return;
    }
    if body.iter().all(|b| b.is_ascii_whitespace())
        || (req.seq == 0 && !String::from_utf8_lossy(body).contains("seq"))
    {
        return reply_err(js, reply, kind, &ApiError::bad_request());
    }
    let (first, last) = {
        let ix = s.ix.borrow();
        (ix.first_seq(), ix.last_seq())
    };
    // Below the first sequence is nats-server's "no message found" too.
    if req.seq == 0 || req.seq < first {
        return reply_err(
            js,
            reply,
            kind,
            &ApiError::msg_delete_failed("no message found"),
        );
    }
    if req.seq > last {
        return reply_err(
            js,
            reply,
            kind,
            &ApiError::msg_delete_failed("stream store EOF"),
        );
    }
    if !s.ix.borrow().is_live(req.seq) {
        return reply_err(
            js,
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
        Ok(()) => js.shard.reply(
            reply,
            None,
            br#"{"type":"io.nats.jetstream.api.v1.stream_msg_delete_response","success":true}"#,
        ),
        Err(e) => reply_err(js, reply, kind, &e),
    }
}
