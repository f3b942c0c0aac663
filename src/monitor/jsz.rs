//! `/jsz` (JetStream usage, streams, consumers), `/healthz` and `/accountz`,
//! as nats-server answers for one server and its one account (`$G`).

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::js::types::catalog::{GatherAsk, GatherPart, Usage};
use crate::js::types::json::{now_nanos, rfc3339};
use crate::monitor::connz::SublistStats;
use crate::monitor::http::{Request, Response};
use crate::monitor::varz::{Api, JsConfig, JsStats};
use crate::monitor::{pretty, query, Monitor};
use crate::shard::stats::StatsAsk;

const ACCOUNT: &str = "$G";

#[derive(Serialize)]
struct AccountDetail {
    name: &'static str,
    id: &'static str,
    memory: u64,
    storage: u64,
    // nats-server shows "no reservation" as -1 cast to an unsigned number.
    reserved_memory: u64,
    reserved_storage: u64,
    accounts: u64,
    ha_assets: u64,
    api: Api,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_detail: Option<Vec<Box<RawValue>>>,
}

#[derive(Serialize)]
struct Jsz<'a> {
    #[serde(flatten)]
    stats: JsStats,
    server_id: &'a str,
    now: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<JsConfig>,
    streams: u64,
    consumers: u64,
    messages: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    account_details: Vec<AccountDetail>,
    total: usize,
}

pub async fn jsz(m: &Monitor, r: &Request) -> Result<Response, Response> {
    let accounts = query::boolean(r, "accounts")?;
    let streams = query::boolean(r, "streams")?;
    let consumers = query::boolean(r, "consumers")?;
    let config = query::boolean(r, "config")?;
    query::boolean(r, "leader-only")?;
    query::boolean(r, "raft")?;
    let offset = query::int(r, "offset")?.max(0) as usize;
    let limit = query::int(r, "limit")?;
    let limit = if limit <= 0 { 1024 } else { limit as usize };
    let acc = r.get("acc").filter(|a| !a.is_empty());
    let server_id = &m.shard.server.server_id;
    let Some(js) = m.js.get() else {
        let out = Jsz {
            stats: JsStats::of(&Usage::default()),
            server_id,
            now: rfc3339(now_nanos()),
            disabled: m.shard.cfg.jetstream.is_none(),
            config: JsConfig::of(m),
            streams: 0,
            consumers: 0,
            messages: 0,
            bytes: 0,
            account_details: Vec::new(),
            total: 0,
        };
        return Ok(Response::json(200, pretty(&out)));
    };
    let ask = GatherAsk::Jsz {
        streams: streams || consumers,
        consumers,
        config,
    };
    let (mut usage, mut messages, mut bytes) = (Usage::default(), 0, 0);
    let mut details: Vec<(String, String)> = Vec::new();
    for part in js.gather(ask).await {
        if let GatherPart::Jsz {
            usage: u,
            messages: msgs,
            bytes: b,
            streams,
        } = part
        {
            usage.add(&u);
            messages += msgs;
            bytes += b;
            details.extend(streams);
        }
    }
    details.sort_by(|a, b| a.0.cmp(&b.0));
    let wanted = (accounts || streams || consumers) && acc.is_none_or(|a| a == ACCOUNT);
    let account_details = if wanted {
        let stream_detail = (streams || consumers).then(|| {
            details
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|(_, d)| RawValue::from_string(d).expect("stream detail is JSON"))
                .collect()
        });
        vec![AccountDetail {
            name: ACCOUNT,
            id: ACCOUNT,
            memory: usage.memory,
            storage: usage.storage,
            reserved_memory: u64::MAX,
            reserved_storage: u64::MAX,
            accounts: 0,
            ha_assets: 0,
            api: Api {
                level: 0,
                total: usage.api_total,
                errors: usage.api_errors,
            },
            stream_detail,
        }]
    } else {
        Vec::new()
    };
    let out = Jsz {
        stats: JsStats::of(&usage),
        server_id,
        now: rfc3339(now_nanos()),
        disabled: false,
        config: JsConfig::of(m),
        streams: usage.streams,
        consumers: usage.consumers,
        messages,
        bytes,
        account_details,
        total: 1,
    };
    Ok(Response::json(200, pretty(&out)))
}

#[derive(Serialize, Default)]
struct HealthError {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    account: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    stream: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    consumer: String,
    error: String,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<HealthError>,
}

/// A failed health check: HTTP status, status text, and the error (one
/// line, or a list with `details`).
fn unhealthy(code: u16, status: &'static str, e: HealthError, details: bool) -> Response {
    let body = if details {
        Health {
            status: "error",
            error: String::new(),
            errors: vec![e],
        }
    } else {
        Health {
            status,
            error: e.error,
            errors: Vec::new(),
        }
    };
    Response::json(code, serde_json::to_vec(&body).expect("serializes"))
}

pub async fn healthz(m: &Monitor, r: &Request) -> Result<Response, Response> {
    query::boolean(r, "js-enabled")?;
    let js_enabled_only = query::boolean(r, "js-enabled-only")? || query::boolean(r, "js-enabled")?;
    let js_server_only = query::boolean(r, "js-server-only")?;
    query::boolean(r, "js-meta-only")?;
    let details = query::boolean(r, "details")?;
    let get = |k: &str| r.get(k).unwrap_or_default().to_string();
    let (account, stream, consumer) = (get("account"), get("stream"), get("consumer"));
    let bad = |what: &str, check: &str| HealthError {
        kind: "BAD_REQUEST",
        error: format!("\"{what}\" must not be empty when checking {check} health"),
        ..HealthError::default()
    };
    if account.is_empty() && !stream.is_empty() {
        return Ok(unhealthy(400, "error", bad("account", "stream"), details));
    }
    if stream.is_empty() && !consumer.is_empty() {
        return Ok(unhealthy(400, "error", bad("stream", "consumer"), details));
    }
    let server = &m.shard.server;
    if server.bound.load(Ordering::SeqCst) < m.shard.cfg.shards {
        let e = HealthError {
            kind: "CONNECTION",
            error: "failed to be ready for connections after 1ms: startup did not complete".into(),
            ..HealthError::default()
        };
        return Ok(unhealthy(500, "error", e, details));
    }
    let ok = Response::json(200, br#"{"status":"ok"}"#.to_vec());
    if js_server_only || m.shard.cfg.jetstream.is_none() || js_enabled_only {
        return Ok(ok);
    }
    if account.is_empty() {
        return Ok(ok);
    }
    let mut e = HealthError {
        account: account.clone(),
        ..HealthError::default()
    };
    if account != ACCOUNT {
        e.kind = "ACCOUNT";
        e.error = format!("JetStream account \"{account}\" not found");
        return Ok(unhealthy(404, "unavailable", e, details));
    }
    if stream.is_empty() {
        return Ok(ok);
    }
    let found = stream_consumers(m, &stream).await;
    e.stream = stream.clone();
    let Some(consumers) = found else {
        e.kind = "STREAM";
        e.error = format!("JetStream stream \"{stream}\" not found on account \"{account}\"");
        return Ok(unhealthy(404, "unavailable", e, details));
    };
    if !consumer.is_empty() && !consumers.contains(&consumer) {
        e.kind = "CONSUMER";
        e.error = format!(
            "JetStream consumer \"{consumer}\" not found for stream \"{stream}\" on account \"{account}\""
        );
        e.consumer = consumer;
        return Ok(unhealthy(404, "unavailable", e, details));
    }
    Ok(ok)
}

/// The consumer names of stream `name`, or None when there is no such stream.
async fn stream_consumers(m: &Monitor, name: &str) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        consumer_detail: Vec<Named>,
    }
    let js = m.js.get()?;
    let ask = GatherAsk::Jsz {
        streams: true,
        consumers: true,
        config: false,
    };
    for part in js.gather(ask).await {
        if let GatherPart::Jsz { streams, .. } = part {
            if let Some((_, d)) = streams.into_iter().find(|(n, _)| n == name) {
                let d: Detail = serde_json::from_str(&d).ok()?;
                return Some(d.consumer_detail.into_iter().map(|c| c.name).collect());
            }
        }
    }
    None
}

#[derive(Serialize)]
struct AccountInfo {
    account_name: &'static str,
    update_time: String,
    expired: bool,
    complete: bool,
    jetstream_enabled: bool,
    leafnode_connections: u64,
    client_connections: u64,
    subscriptions: u64,
    name_tag: &'static str,
    sublist_stats: SublistStats,
}

#[derive(Serialize)]
struct Accountz<'a> {
    server_id: &'a str,
    now: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    accounts: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_detail: Option<AccountInfo>,
}

pub async fn accountz(m: &Monitor, r: &Request) -> Result<Response, Response> {
    let acc = r.get("acc").filter(|a| !a.is_empty());
    let mut out = Accountz {
        server_id: &m.shard.server.server_id,
        now: rfc3339(now_nanos()),
        accounts: Vec::new(),
        account_detail: None,
    };
    match acc {
        None => out.accounts.push(ACCOUNT),
        Some(ACCOUNT) => {
            let parts = m.shard.gather_stats(StatsAsk::Counters).await;
            let sublist_stats = SublistStats::of(&parts);
            let conns = parts.iter().map(|p| p.counters.connections).sum();
            out.account_detail = Some(AccountInfo {
                account_name: ACCOUNT,
                update_time: rfc3339(m.started),
                expired: false,
                complete: true,
                jetstream_enabled: m.shard.cfg.jetstream.is_some(),
                leafnode_connections: 0,
                client_connections: conns,
                subscriptions: sublist_stats.subscriptions(),
                name_tag: ACCOUNT,
                sublist_stats,
            });
        }
        Some(other) => {
            return Err(Response::text(
                400,
                format!("Account {other} does not exist"),
            ));
        }
    }
    Ok(Response::json(200, pretty(&out)))
}
