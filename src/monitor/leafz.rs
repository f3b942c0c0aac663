//! `/leafz`: the leaf connections, as nats-server 2.15 answers (`subs=1`
//! lists the interest each advertised to us; `acc` other than `$G` finds
//! none: jetcore has one account).

use serde::Serialize;

use crate::js::types::json::{now_nanos, rfc3339};
use crate::monitor::http::{Request, Response};
use crate::monitor::{pretty, query, Monitor};
use crate::shard::stats::{LeafInfo, StatsAsk};

#[derive(Serialize)]
struct Leafz<'a> {
    server_id: &'a str,
    now: String,
    leafnodes: usize,
    leafs: Vec<Leaf<'a>>,
}

#[derive(Serialize)]
struct Leaf<'a> {
    id: u64,
    name: &'a str,
    is_spoke: bool,
    account: &'static str,
    ip: &'a str,
    port: u16,
    rtt: String,
    in_msgs: u64,
    out_msgs: u64,
    in_bytes: u64,
    out_bytes: u64,
    subscriptions: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriptions_list: Option<&'a [String]>,
    compression: &'static str,
}

impl<'a> Leaf<'a> {
    fn of(l: &'a LeafInfo, subs: bool) -> Leaf<'a> {
        let rtt = crate::monitor::connz::rtt_text(l.rtt);
        Leaf {
            id: l.cid,
            name: &l.name,
            is_spoke: l.is_spoke,
            account: crate::config_file::leaf::ACCOUNT,
            ip: &l.ip,
            port: l.port,
            // Go prints a zero duration as "0s" (nats-server writes it so).
            rtt: if rtt.is_empty() { "0s".into() } else { rtt },
            in_msgs: l.in_msgs,
            out_msgs: l.out_msgs,
            in_bytes: l.in_bytes,
            out_bytes: l.out_bytes,
            subscriptions: l.subscriptions,
            subscriptions_list: subs.then_some(&l.subs[..]),
            // We never compress a leaf connection.
            compression: "off",
        }
    }
}

pub async fn leafz(m: &Monitor, r: &Request) -> Result<Response, Response> {
    let subs = query::boolean(r, "subs")?;
    let other_account = r.get("acc").is_some_and(|a| !a.is_empty() && a != "$G");
    let parts = m.shard.gather_stats(StatsAsk::Leafs { subs }).await;
    let mut leafs: Vec<LeafInfo> = Vec::new();
    if !other_account {
        for p in parts {
            leafs.extend(p.leafs);
        }
    }
    leafs.sort_by_key(|l| l.cid);
    for l in &mut leafs {
        l.subs.sort();
    }
    let out = Leafz {
        server_id: &m.shard.server.server_id,
        now: rfc3339(now_nanos()),
        leafnodes: leafs.len(),
        leafs: leafs.iter().map(|l| Leaf::of(l, subs)).collect(),
    };
    Ok(Response::json(200, pretty(&out)))
}
