//! `/connz` (connections, open and closed) and `/subsz` (the interest
//! table's counters and its client subscriptions), as nats-server answers.

use serde::Serialize;

use crate::js::types::json::{go_duration, now_nanos, rfc3339};
use crate::monitor::http::{Request, Response};
use crate::monitor::{pretty, query, uptime, Monitor};
use crate::shard::stats::{ConnInfo, StatsAsk, StatsPart, SubInfo};

/// nats-server's default page size for `/connz` and `/subsz`.
const PAGE_DEFAULT: usize = 1024;

const SORTS: &[&str] = &[
    "",
    "cid",
    "start",
    "subs",
    "pending",
    "msgs_to",
    "msgs_from",
    "bytes_to",
    "bytes_from",
    "last",
    "idle",
    "uptime",
    "stop",
    "reason",
    "rtt",
];

#[derive(Serialize)]
struct SubDetail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_tag: Option<&'a str>,
    subject: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    qgroup: Option<&'a str>,
    sid: &'a str,
    msgs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    max: Option<u64>,
    cid: u64,
}

impl<'a> SubDetail<'a> {
    fn of(s: &'a SubInfo, account: bool) -> SubDetail<'a> {
        SubDetail {
            account: account.then_some("$G"),
            account_tag: account.then_some("$G"),
            subject: &s.subject,
            qgroup: s.queue.as_deref(),
            sid: &s.sid,
            msgs: s.msgs,
            max: s.max,
            cid: s.cid,
        }
    }
}

#[derive(Serialize)]
struct Conn<'a> {
    cid: u64,
    kind: &'a str,
    #[serde(rename = "type")]
    kind_type: &'a str,
    ip: &'a str,
    port: u16,
    start: String,
    last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    rtt: String,
    uptime: String,
    idle: String,
    pending_bytes: usize,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    lang: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    tls_version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    tls_cipher_suite: &'a str,
    /// Only with `auth=true`, as nats-server.
    #[serde(skip_serializing_if = "str::is_empty")]
    authorized_user: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list_detail: Vec<SubDetail<'a>>,
}

#[derive(Serialize)]
struct Connz<'a> {
    server_id: &'a str,
    now: String,
    num_connections: usize,
    total: usize,
    offset: usize,
    limit: usize,
    connections: Vec<Conn<'a>>,
}

/// nats-server's RTT text: microseconds between 1 µs and 1 ms, else nanoseconds.
pub(crate) fn rtt_text(rtt: std::time::Duration) -> String {
    let ns = rtt.as_nanos() as i64;
    if ns == 0 {
        return String::new();
    }
    let ns = if ns > 1_000 && ns < 1_000_000 {
        ns / 1_000 * 1_000
    } else {
        ns
    };
    go_duration(ns)
}

fn conn<'a>(c: &'a ConnInfo, now: i64, subs: bool, detail: bool, auth: bool) -> Conn<'a> {
    let end = c.stop.unwrap_or(now);
    Conn {
        cid: c.cid,
        kind: "Client",
        kind_type: "nats",
        ip: &c.ip,
        port: c.port,
        start: rfc3339(c.start),
        last_activity: rfc3339(c.last_activity),
        stop: c.stop.map(rfc3339),
        reason: c.reason,
        rtt: rtt_text(c.rtt),
        uptime: uptime(end - c.start),
        idle: uptime(end - c.last_activity),
        pending_bytes: c.pending_bytes,
        in_msgs: c.in_msgs,
        out_msgs: c.out_msgs,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
        subscriptions: c.subscriptions,
        name: &c.name,
        lang: &c.lang,
        version: &c.version,
        tls_version: &c.tls_version,
        tls_cipher_suite: &c.tls_cipher_suite,
        authorized_user: if auth { &c.user } else { "" },
        subscriptions_list: if subs && !detail {
            c.subs.iter().map(|s| s.subject.as_str()).collect()
        } else {
            Vec::new()
        },
        subscriptions_list_detail: if detail {
            c.subs.iter().map(|s| SubDetail::of(s, false)).collect()
        } else {
            Vec::new()
        },
    }
}

fn bad(text: impl Into<String>) -> Response {
    Response::text(400, text)
}

pub async fn connz(m: &Monitor, r: &Request) -> Result<Response, Response> {
    let sort = r.get("sort").unwrap_or("");
    let auth = query::boolean(r, "auth")?;
    let detail = r
        .get("subs")
        .is_some_and(|v| v.eq_ignore_ascii_case("detail"));
    let subs = detail || query::boolean(r, "subs")?;
    let offset = query::int(r, "offset")?;
    let limit = query::int(r, "limit")?;
    let cid = query::uint(r, "cid")?;
    let (open, closed) = match r.get("state").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("open") => (true, false),
        Some("closed") => (false, true),
        Some("any" | "all") => (true, true),
        Some(_) => {
            let v = r.get("state").unwrap_or_default();
            return Err(bad(format!("Error decoding state for {v}")));
        }
    };
    if !SORTS.contains(&sort) {
        return Err(bad(format!("invalid sorting option: {sort}")));
    }
    let only_closed = closed && !open;
    if sort == "stop" && !only_closed {
        return Err(bad("sort by stop only valid on closed connections"));
    }
    if sort == "reason" && !only_closed {
        return Err(bad("sort by reason only valid on closed connections"));
    }
    let offset = offset.max(0) as usize;
    let mut limit = if limit <= 0 {
        PAGE_DEFAULT
    } else {
        limit as usize
    };
    if cid > 0 {
        limit = 1;
    }
    // An account other than the global one, or a user, has no connections here.
    let other_account = r.get("acc").is_some_and(|a| !a.is_empty() && a != "$G");
    let user = r.get("user").filter(|u| !u.is_empty());
    let ask = StatsAsk::Conns { open, closed, subs };
    let mut all: Vec<ConnInfo> = Vec::new();
    for part in m.shard.gather_stats(ask).await {
        all.extend(part.conns);
    }
    if other_account {
        all.clear();
    }
    if let Some(u) = user {
        all.retain(|c| c.user == u);
    }
    // As nats-server: `total` counts every connection, also when one is asked for.
    let total = all.len();
    if cid > 0 {
        // An open connection is looked for first, then a closed one.
        all.sort_by_key(|c| c.stop.is_some());
        all.retain(|c| c.cid == cid);
        all.truncate(1);
    }
    let now = now_nanos();
    sort_conns(&mut all, sort, now);
    let listed = all.len();
    let from = offset.min(listed);
    let to = from + limit.min(listed - from);
    let page: Vec<Conn> = all[from..to]
        .iter()
        .map(|c| conn(c, now, subs, detail, auth))
        .collect();
    let out = Connz {
        server_id: &m.shard.server.server_id,
        now: rfc3339(now),
        num_connections: page.len(),
        total,
        offset,
        limit,
        connections: page,
    };
    Ok(Response::json(200, pretty(&out)))
}

/// nats-server's orders: ascending by cid (start), uptime and reason;
/// descending by every count, last activity, idle time, stop and rtt.
fn sort_conns(all: &mut [ConnInfo], sort: &str, now: i64) {
    let up = |c: &ConnInfo| c.stop.unwrap_or(now) - c.start;
    match sort {
        "subs" => all.sort_by_key(|c| std::cmp::Reverse(c.subscriptions)),
        "pending" => all.sort_by_key(|c| std::cmp::Reverse(c.pending_bytes)),
        "msgs_to" => all.sort_by_key(|c| std::cmp::Reverse(c.out_msgs)),
        "msgs_from" => all.sort_by_key(|c| std::cmp::Reverse(c.in_msgs)),
        "bytes_to" => all.sort_by_key(|c| std::cmp::Reverse(c.out_bytes)),
        "bytes_from" => all.sort_by_key(|c| std::cmp::Reverse(c.in_bytes)),
        "last" => all.sort_by_key(|c| std::cmp::Reverse(c.last_activity)),
        "idle" => all.sort_by_key(|c| std::cmp::Reverse(now - c.last_activity)),
        "uptime" => all.sort_by_key(up),
        "stop" => all.sort_by_key(|c| std::cmp::Reverse(c.stop)),
        "reason" => all.sort_by_key(|c| c.reason),
        "rtt" => all.sort_by_key(|c| std::cmp::Reverse(c.rtt)),
        _ => all.sort_by_key(|c| c.cid),
    }
}

/// The interest table's counters (nats-server's sublist stats).
#[derive(Serialize)]
pub struct SublistStats {
    num_subscriptions: u64,
    num_cache: u64,
    num_inserts: u64,
    num_removes: u64,
    num_matches: u64,
    #[serde(serialize_with = "crate::monitor::go_float")]
    cache_hit_rate: f64,
    max_fanout: u64,
    #[serde(serialize_with = "crate::monitor::go_float")]
    avg_fanout: f64,
}

impl SublistStats {
    /// The server's table from the shards' parts: every shard holds the
    /// whole interest, so the first (this shard's) table stands for all;
    /// lookups happen on every shard and are summed.
    pub fn of(parts: &[StatsPart]) -> SublistStats {
        let t = parts.first().map(|p| p.trie).unwrap_or_default();
        let matches: u64 = parts.iter().map(|p| p.trie.matches).sum();
        let hits: u64 = parts.iter().map(|p| p.trie.hits).sum();
        SublistStats {
            num_subscriptions: t.subscriptions,
            num_cache: t.cache,
            num_inserts: t.inserts,
            num_removes: t.removes,
            num_matches: matches,
            cache_hit_rate: if matches == 0 {
                0.0
            } else {
                hits as f64 / matches as f64
            },
            max_fanout: t.max_fanout,
            avg_fanout: t.avg_fanout,
        }
    }

    pub fn subscriptions(&self) -> u64 {
        self.num_subscriptions
    }
}

#[derive(Serialize)]
struct Subsz<'a> {
    server_id: &'a str,
    now: String,
    #[serde(flatten)]
    stats: SublistStats,
    total: usize,
    offset: usize,
    limit: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions_list: Vec<SubDetail<'a>>,
}

pub async fn subsz(m: &Monitor, r: &Request) -> Result<Response, Response> {
    let list = query::boolean(r, "subs")?;
    let offset = query::int(r, "offset")?.max(0) as usize;
    let limit = match query::int(r, "limit")? {
        l if l <= 0 => PAGE_DEFAULT,
        l => l as usize,
    };
    let test = r.get("test").filter(|t| !t.is_empty());
    if let Some(t) = test {
        if !crate::subject::valid_publish(t.as_bytes()) {
            return Err(bad(format!(
                "invalid test subject, must be valid publish subject: {t}"
            )));
        }
    }
    let other_account = r.get("acc").is_some_and(|a| !a.is_empty() && a != "$G");
    let parts = m.shard.gather_stats(StatsAsk::Subs).await;
    let stats = SublistStats::of(&parts);
    let mut subs: Vec<SubInfo> = Vec::new();
    if list && !other_account {
        for p in parts {
            subs.extend(p.subs);
        }
        if let Some(t) = test {
            subs.retain(|s| crate::subject::matches(s.subject.as_bytes(), t.as_bytes()));
        }
        subs.sort_by(|a, b| (a.cid, &a.sid).cmp(&(b.cid, &b.sid)));
    }
    let total = subs.len();
    let from = offset.min(total);
    let to = from + limit.min(total - from);
    let out = Subsz {
        server_id: &m.shard.server.server_id,
        now: rfc3339(now_nanos()),
        stats,
        total,
        offset,
        limit,
        subscriptions_list: subs[from..to]
            .iter()
            .map(|s| SubDetail::of(s, true))
            .collect(),
    };
    Ok(Response::json(200, pretty(&out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_reads_as_nats_server_writes_it() {
        use std::time::Duration;
        assert_eq!(rtt_text(Duration::ZERO), "");
        assert_eq!(rtt_text(Duration::from_nanos(235_456)), "235µs");
        assert_eq!(rtt_text(Duration::from_nanos(501_249_981)), "501.249981ms");
        assert_eq!(rtt_text(Duration::from_nanos(800)), "800ns");
    }

    #[test]
    fn sorts_follow_nats_server() {
        let c = |cid, out_msgs, start| ConnInfo {
            cid,
            out_msgs,
            start,
            ..ConnInfo::default()
        };
        let mut all = vec![c(3, 5, 10), c(1, 9, 30), c(2, 7, 20)];
        sort_conns(&mut all, "", 100);
        assert_eq!(all.iter().map(|c| c.cid).collect::<Vec<_>>(), [1, 2, 3]);
        sort_conns(&mut all, "msgs_to", 100);
        assert_eq!(all.iter().map(|c| c.cid).collect::<Vec<_>>(), [1, 2, 3]);
        sort_conns(&mut all, "uptime", 100);
        assert_eq!(all.iter().map(|c| c.cid).collect::<Vec<_>>(), [1, 2, 3]);
        sort_conns(&mut all, "msgs_to", 100);
        all.reverse();
        sort_conns(&mut all, "uptime", 100);
        assert_eq!(all.iter().map(|c| c.cid).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
