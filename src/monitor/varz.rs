//! `/varz`: the server's settings and counters, in nats-server's shape.

use serde::Serialize;

use crate::js::types::catalog::{GatherAsk, GatherPart, Usage};
use crate::js::types::json::{now_nanos, rfc3339};
use crate::monitor::http::Response;
use crate::monitor::{pretty, uptime, Monitor};
use crate::shard::stats::{Counters, StatsAsk};

#[derive(Serialize, Default)]
struct Empty {}

#[derive(Serialize)]
struct KindStats {
    clients: u64,
    routes: u64,
    gateways: u64,
    leafs: u64,
}

#[derive(Serialize)]
pub struct Api {
    pub level: u32,
    pub total: u64,
    pub errors: u64,
}

#[derive(Serialize)]
pub struct JsStats {
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub accounts: u64,
    pub ha_assets: u64,
    pub api: Api,
}

impl JsStats {
    pub fn of(u: &Usage) -> JsStats {
        JsStats {
            memory: u.memory,
            storage: u.storage,
            reserved_memory: 0,
            reserved_storage: u.reserved_storage.max(0) as u64,
            accounts: 1,
            ha_assets: 0,
            api: Api {
                level: crate::config::API_LEVEL,
                total: u.api_total,
                errors: u.api_errors,
            },
        }
    }
}

/// JetStream's settings as `/varz` and `/jsz` show them.
#[derive(Serialize)]
pub struct JsConfig {
    pub max_memory: i64,
    pub max_storage: i64,
    pub store_dir: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub sync_interval: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_always: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl JsConfig {
    pub fn of(m: &Monitor) -> Option<JsConfig> {
        let cfg = &m.shard.cfg;
        let dir = cfg.jetstream.as_ref()?;
        let (max_memory, max_storage) = match m.js.get() {
            Some(js) => js.limits,
            None => crate::js::monitor::account_limits(cfg),
        };
        let (sync_interval, sync_always) = match cfg.sync {
            crate::config::SyncMode::Always => (0, true),
            crate::config::SyncMode::Interval(d) => (d.as_nanos() as i64, false),
        };
        Some(JsConfig {
            max_memory,
            max_storage,
            store_dir: dir.join("jetstream").display().to_string(),
            sync_interval,
            sync_always,
            domain: cfg.domain.clone(),
        })
    }
}

#[derive(Serialize)]
struct JsVarz {
    config: JsConfig,
    stats: JsStats,
}

#[derive(Serialize)]
struct Varz<'a> {
    server_id: &'a str,
    server_name: &'a str,
    version: &'a str,
    proto: u32,
    go: &'a str,
    host: String,
    port: u16,
    max_connections: usize,
    ping_interval: i64,
    ping_max: u32,
    http_host: String,
    http_port: u16,
    http_base_path: &'a str,
    https_port: u16,
    #[serde(serialize_with = "crate::monitor::go_float")]
    auth_timeout: f64,
    max_control_line: usize,
    max_payload: usize,
    max_pending: usize,
    cluster: Empty,
    gateway: Empty,
    leaf: Empty,
    mqtt: Empty,
    websocket: Empty,
    #[serde(skip_serializing_if = "Option::is_none")]
    jetstream: Option<JsVarz>,
    #[serde(serialize_with = "crate::monitor::go_float")]
    tls_timeout: f64,
    write_deadline: i64,
    start: String,
    now: String,
    uptime: String,
    mem: u64,
    cores: usize,
    gomaxprocs: usize,
    #[serde(serialize_with = "crate::monitor::go_float")]
    cpu: f64,
    connections: u64,
    total_connections: u64,
    routes: u64,
    remotes: u64,
    leafnodes: u64,
    in_msgs: u64,
    in_bytes: u64,
    in_client_msgs: u64,
    in_client_bytes: u64,
    out_msgs: u64,
    out_bytes: u64,
    out_client_msgs: u64,
    out_client_bytes: u64,
    slow_consumers: u64,
    stale_connections: u64,
    stalled_clients: u64,
    subscriptions: u64,
    http_req_stats: std::collections::BTreeMap<&'static str, u64>,
    config_load_time: String,
    config_digest: &'a str,
    slow_consumer_stats: KindStats,
    stale_connection_stats: KindStats,
}

/// Every shard's counters, summed.
pub async fn counters(m: &Monitor) -> Counters {
    let mut total = Counters::default();
    for part in m.shard.gather_stats(StatsAsk::Counters).await {
        total.add(&part.counters);
    }
    total
}

/// JetStream's usage summed over the shards (None without JetStream, or
/// before it opened).
pub async fn js_usage(m: &Monitor) -> Option<Usage> {
    let js = m.js.get()?;
    let mut u = Usage::default();
    for part in js.gather(GatherAsk::Usage).await {
        if let GatherPart::Usage(p) = part {
            u.add(&p);
        }
    }
    Some(u)
}

pub async fn varz(m: &Monitor) -> Response {
    let c = counters(m).await;
    let usage = js_usage(m).await.unwrap_or_default();
    let shard = &m.shard;
    let cfg = &shard.cfg;
    let now = now_nanos();
    let jetstream = JsConfig::of(m).map(|config| JsVarz {
        config,
        stats: JsStats::of(&usage),
    });
    let v = Varz {
        server_id: &shard.server.server_id,
        server_name: &shard.server.server_name,
        version: crate::config::NATS_COMPAT_VERSION,
        proto: 1,
        go: concat!("jetcore-", env!("CARGO_PKG_VERSION")),
        host: shard.server.listen.ip().to_string(),
        port: shard.server.listen.port(),
        max_connections: cfg.max_connections,
        ping_interval: cfg.ping_interval.as_nanos() as i64,
        ping_max: cfg.ping_max,
        http_host: m.addr.ip().to_string(),
        http_port: if cfg.https { 0 } else { m.addr.port() },
        http_base_path: "",
        https_port: if cfg.https { m.addr.port() } else { 0 },
        // Seconds; nats-server shows its defaults (2) when nothing is configured.
        auth_timeout: shard.server.auth().map_or(2.0, |a| a.timeout.as_secs_f64()),
        max_control_line: cfg.max_control_line,
        max_payload: cfg.max_payload,
        max_pending: cfg.max_pending,
        cluster: Empty {},
        gateway: Empty {},
        leaf: Empty {},
        mqtt: Empty {},
        websocket: Empty {},
        jetstream,
        tls_timeout: shard
            .server
            .tls
            .as_ref()
            .map_or(2.0, |t| t.timeout.as_secs_f64()),
        write_deadline: cfg.write_deadline.as_nanos() as i64,
        start: rfc3339(m.started),
        now: rfc3339(now),
        uptime: uptime(now - m.started),
        mem: resident_bytes(),
        cores: cores(),
        gomaxprocs: cfg.shards,
        cpu: cpu_percent(m, now),
        connections: c.connections,
        total_connections: c.total_connections,
        routes: 0,
        remotes: 0,
        leafnodes: c.leafnodes,
        in_msgs: c.in_msgs,
        in_bytes: c.in_bytes,
        in_client_msgs: c.in_msgs,
        in_client_bytes: c.in_bytes,
        out_msgs: c.out_msgs,
        out_bytes: c.out_bytes,
        out_client_msgs: c.out_msgs,
        out_client_bytes: c.out_bytes,
        slow_consumers: c.slow_consumers,
        stale_connections: c.stale_connections,
        stalled_clients: c.stalls,
        subscriptions: c.subscriptions,
        http_req_stats: m.req_stats.borrow().clone(),
        config_load_time: rfc3339(shard.server.live.config_loaded()),
        config_digest: "",
        slow_consumer_stats: KindStats {
            clients: c.slow_consumers,
            routes: 0,
            gateways: 0,
            leafs: 0,
        },
        stale_connection_stats: KindStats {
            clients: c.stale_connections,
            routes: 0,
            gateways: 0,
            leafs: 0,
        },
    };
    Response::json(200, pretty(&v))
}

/// CPUs online in the machine (not the calling shard's one-core affinity).
fn cores() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// Resident memory of the process (`/proc/self/statm`), in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page
}

/// CPU seconds the process has used (user and system), from `/proc/self/stat`.
pub fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces) start at its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    (ticks(11) + ticks(12)) / hz
}

/// CPU use since the previous `/varz`, in percent of one core (as `ps`).
fn cpu_percent(m: &Monitor, now: i64) -> f64 {
    let (secs, at) = m.cpu_sample.get();
    let cur = process_cpu_secs();
    m.cpu_sample.set((cur, now));
    let wall = (now - at) as f64 / 1e9;
    if wall <= 0.0 {
        return 0.0;
    }
    ((cur - secs) / wall * 1000.0).round() / 10.0
}
