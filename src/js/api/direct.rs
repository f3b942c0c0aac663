//! Direct get (`$JS.API.DIRECT.GET.<stream>[.<subject>]`): answers are the
//! messages themselves, with `Nats-*` headers, or a status.

use std::rc::Rc;

use bytes::Bytes;

use crate::js::api::msg::{select, GetRequest};
use crate::js::store::index::StoredMsg;
use crate::js::stream::Stream;
use crate::js::types::json::{self, rfc3339};
use crate::protocol::headers;
use crate::shard::Shard;

/// Header block of a direct-get reply for `m`, plus batch headers.
/// None with `no_hdr`: nats-server then sends the payload alone.
fn direct_headers(
    stream: &str,
    m: &StoredMsg,
    batch: Option<(u64, u64)>,
    no_hdr: bool,
) -> Option<Vec<u8>> {
    if no_hdr {
        return None;
    }
    let mut out = Vec::with_capacity(160 + m.hdr_len);
    if m.hdr_len > 0 {
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
    Some(out)
}

fn status(shard: &Shard, reply: &Bytes, text: &str) {
    let block = headers::block(Some(text), &[]);
    shard.reply(reply, Some(&block), &[]);
}

/// A parsed direct-get request, or the status to answer it with.
fn direct_request(
    subject: &Bytes,
    hdr_len: Option<usize>,
    msg: &Bytes,
) -> Result<GetRequest, &'static str> {
    let body = &msg[hdr_len.unwrap_or(0)..];
    // The stream named here is this one, or the origin of this mirror
    // (`mirror_direct`): what follows the name is the same either way.
    let named = &subject[b"$JS.API.DIRECT.GET.".len()..];
    let tail = &named[memchr::memchr(b'.', named).unwrap_or(named.len())..];
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
/// Serves a direct get arriving on a stream's internal subscription: at once
/// when no disk read is needed, else in a task of its own.
pub fn get(
    shard: &Shard,
    stream: &Rc<Stream>,
    subject: &Bytes,
    reply: &Bytes,
    hdr_len: Option<usize>,
    msg: &Bytes,
) {
    if direct_get_now(shard, stream, subject, reply, hdr_len, msg) {
        return;
    }
    let shard = shard.me();
    let stream = stream.clone();
    let (subject, reply, msg) = (subject.clone(), reply.clone(), msg.clone());
    glommio::spawn_local(async move {
        direct_get(&shard, &stream, &subject, &reply, hdr_len, &msg).await;
        shard.flush_mesh().await;
    })
    .detach();
}

fn direct_get_now(
    shard: &Shard,
    s: &Stream,
    subject: &Bytes,
    reply: &Bytes,
    hdr_len: Option<usize>,
    msg: &Bytes,
) -> bool {
    let req = match direct_request(subject, hdr_len, msg) {
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
    shard.reply(reply, h.as_deref(), m.payload());
    true
}

/// Serves `$JS.API.DIRECT.GET.<stream>[.<subject>]` (replies are messages).
async fn direct_get(
    shard: &Shard,
    s: &Stream,
    subject: &Bytes,
    reply: &Bytes,
    hdr_len: Option<usize>,
    msg: &Bytes,
) {
    let req = match direct_request(subject, hdr_len, msg) {
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
        return shard.reply(reply, h.as_deref(), m.payload());
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
        bytes += (m.data.len() + m.subject.len()) as i64;
        remaining = remaining.saturating_sub(1);
        let pending = remaining;
        let h = direct_headers(&s.name, &m, Some((pending, last)), req.no_hdr);
        shard.reply(reply, h.as_deref(), m.payload());
        sent += 1;
        last = seq;
        from = seq + 1;
        if bytes_done(&req, bytes) {
            break;
        }
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

/// As nats-server counts a batch: no more once `max_bytes` (subjects, headers
/// and payloads) went; a negative one stops after the first message.
fn bytes_done(req: &GetRequest, bytes: i64) -> bool {
    req.max_bytes != 0 && bytes >= req.max_bytes
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
                    while q > 0 && ix.entry(q).is_none_or(|e| ix.subject_of(&e) != &subj) {
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
    let (mut taken, mut bytes) = (0, 0i64);
    for (i, seq) in seqs.iter().take(limit).enumerate() {
        taken = i + 1;
        if let Some(m) = s.load(*seq).await {
            let pending = (total - i - 1) as u64;
            let h = direct_headers(&s.name, &m, Some((pending, last)), req.no_hdr);
            shard.reply(reply, h.as_deref(), m.payload());
            last = *seq;
            bytes += (m.data.len() + m.subject.len()) as i64;
            if bytes_done(req, bytes) {
                break;
            }
        }
    }
    let pending = (total - taken) as u64;
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
