//! `jetcore-bench compare`: jetcore against nats-server on this machine, in one
//! run. Each scenario runs alternately on each server (A B A B ...) for several
//! rounds, each on a fresh server process with a fresh store dir on a free loopback
//! port; medians, ratios and server CPU time per message (from /proc) are printed
//! and written to `<out>/<scenario>.json`, with SVG latency charts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::bench::consume::{ConsumeKind, ConsumeSpec};
pub use crate::bench::process::find_nats_server;
use crate::bench::process::{version_of, ServerProcess};
use crate::bench::report::{summarize, svg, Summary};
use crate::bench::run::{run_marked, CopySpec, Mode, Spec, TtlSpec};
use crate::bench::wire::Placement;

#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub msgs: u64,
    pub out: PathBuf,
    /// `None`: measure nats-server alone.
    pub jetcore: Option<PathBuf>,
    pub nats_server: Option<PathBuf>,
    pub scenarios: Vec<String>,
    pub shards: Option<usize>,
    /// Where jetcore's connections go (`--placement`); `None`: where the
    /// kernel puts them.
    pub placement: Option<Placement>,
    /// `--sync` for jetcore (default: its own, `always`).
    pub sync: Option<String>,
    pub workers: usize,
    /// `--pin-workers` for every run (see `Spec::pin_workers`).
    pub pin_workers: bool,
    pub command: String,
}

/// The scenarios `compare` knows, in the order they run.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "ceiling",
        "harness ceiling: 16 B publish into an in-process sink (no server)",
    ),
    ("pub16", "core publish only, 16 B, 1 publisher"),
    ("pubsub16", "core publish→subscribe 1:1, 16 B"),
    ("pubsub128", "core publish→subscribe 1:1, 128 B"),
    ("fanout4", "core fan-out 1 publisher : 4 subscribers, 16 B"),
    ("pubsub64k", "core publish→subscribe 1:1, 64 KiB messages"),
    (
        "reqrep",
        "request-reply round trips, 1 requester, 1 responder, 16 B",
    ),
    (
        "rate50",
        "publish→subscribe 16 B at 50% of nats-server's pubsub16 rate (open loop, CO-corrected)",
    ),
    (
        "lat10k",
        "core publish→subscribe 16 B at 10,000 msgs/s for 5 s (open loop, CO-corrected): moderate load",
    ),
    (
        "jspub128",
        "JetStream async publish 128 B, file storage, window 256",
    ),
    (
        "jspub16k",
        "JetStream async publish 16 KiB, file storage, window 256",
    ),
    (
        "jspubsync",
        "JetStream sync publish 128 B, file storage, one in flight (nats.go's js.Publish)",
    ),
    (
        "jsget128",
        "JetStream direct get by sequence, 128 B messages, file storage, window 64",
    ),
    (
        "kvput",
        "key-value put 128 B over 1000 keys (history 1), file storage, window 256",
    ),
    (
        "kvget",
        "key-value get of 1000 keys (direct get of the last value), window 64",
    ),
    (
        "kvputttl",
        "kvput with `Nats-TTL: 3600` on every put, in a bucket with limit markers (1 s)",
    ),
    (
        "jspubttl",
        "jspub128 with `Nats-TTL: 3600` on every message (stream with allow_msg_ttl)",
    ),
    (
        "jsconsume",
        "JetStream durable pull consumer, explicit acks, batch 500, over a preloaded 128 B file stream",
    ),
    (
        "jsordered",
        "JetStream ordered consumer replaying a preloaded 128 B file stream",
    ),
    (
        "jsmirror128",
        "mirror apply: async publishes (128 B, window 256) to an origin until its mirror holds them all",
    ),
    (
        "jssources4",
        "sources apply: 4 publishers, one per origin, until the stream sourcing the 4 holds every message",
    ),
    (
        "jssources16",
        "sources apply: 16 publishers, one per origin, until the stream sourcing the 16 holds every message",
    ),
    (
        "jsmirrorrate",
        "mirror apply at moderate load: 128 B at 20,000 msgs/s for 5 s; latency is the mirror's completion after the last pub ack",
    ),
    (
        "jsconsumelat",
        "JetStream publish→pull-consumer delivery latency, 128 B at 20,000 msgs/s, publish window 4000 (open loop, CO-corrected)",
    ),
];

/// lat10k's rate: a moderate load, where a server parks and wakes for every
/// message instead of batching.
const MODERATE_RATE: f64 = 10_000.0;

/// jsconsumelat's rate: fixed rather than a share of a measured peak, so it
/// does not depend on which scenarios ran before it, and low enough that
/// neither server (nor the load generator, publishing and consuming on 2
/// cores) is near saturation: it measures latency, not capacity.
const JS_CONSUME_LATENCY_RATE: f64 = 20_000.0;

/// jsconsumelat's publish window: nats.go's default limit of pending async
/// publishes (4,000), as a client publishing at a fixed rate would have it.
/// With 256, a 13 ms stall in pub acks would stop the publisher, and the
/// latency would measure the pub-ack path instead of publish→delivery.
const JS_CONSUME_LATENCY_WINDOW: usize = 4000;

#[derive(Debug, Clone, Serialize)]
struct Round {
    server: &'static str,
    summary: Summary,
    server_cpu_secs: f64,
    cpu_us_per_msg: f64,
    /// Context switches of all the server's threads per message (a park and
    /// a wake-up each: what costs CPU at moderate load).
    ctx_switches_per_msg: f64,
    /// The server's peak resident memory (VmHWM) when the run ended.
    peak_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Side {
    msgs_per_sec: f64,
    mb_per_sec: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    cpu_us_per_msg: f64,
    ctx_switches_per_msg: f64,
    peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct Record {
    scenario: String,
    description: String,
    machine: String,
    kernel: String,
    commit: String,
    command: String,
    /// jetcore's connection placement: "same" (every connection on shard 0),
    /// "cross" (publishers and requesters on shard 1), or "kernel".
    placement: &'static str,
    date: String,
    nats_server_version: String,
    rounds: Vec<Round>,
    jetcore: Option<Side>,
    nats_server: Option<Side>,
    /// jetcore / nats-server: > 1 means jetcore is faster (throughput) or slower (cpu, latency).
    ratio_throughput: Option<f64>,
    ratio_cpu_per_msg: Option<f64>,
    ratio_p50: Option<f64>,
    ratio_p99: Option<f64>,
    note: Option<String>,
}

pub fn compare(opts: &Options) -> Result<(), String> {
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| format!("cannot create {}: {e}", opts.out.display()))?;
    let nats = match &opts.nats_server {
        Some(p) if p.is_file() => Some(p.clone()),
        Some(p) => {
            println!(
                "nats-server not found at {}: measuring jetcore alone",
                p.display()
            );
            None
        }
        None => find_nats_server(),
    };
    let nats_version = nats
        .as_ref()
        .map_or("not available".to_string(), |p| version_of(p));
    println!(
        "jetcore: {}",
        opts.jetcore
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string())
    );
    println!(
        "nats-server: {} ({nats_version})",
        nats.as_ref()
            .map_or("none".into(), |p| p.display().to_string())
    );
    let mut table = vec![format!(
        "| scenario | jetcore msgs/s | nats-server msgs/s | throughput ratio | jetcore CPU µs/msg | nats-server CPU µs/msg | CPU ratio | ctx sw/msg (j / n) | p50 µs (j / n) | p99 µs (j / n) | peak RSS MiB (j / n) |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )];
    let mut nats_pubsub16_rate = None;
    for (name, description) in SCENARIOS {
        if !opts.scenarios.is_empty() && !opts.scenarios.iter().any(|s| s == name) {
            continue;
        }
        println!("== {name}: {description}");
        let record = scenario(
            opts,
            name,
            description,
            nats.as_deref(),
            &nats_version,
            nats_pubsub16_rate,
        )?;
        if *name == "pubsub16" {
            nats_pubsub16_rate = record.nats_server.as_ref().map(|s| s.msgs_per_sec);
        }
        table.push(table_row(&record));
        let path = opts.out.join(format!("{name}.json"));
        let json = serde_json::to_string_pretty(&record).expect("record serializes");
        std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let summary = format!("{}\n", table.join("\n"));
    println!("\n{summary}");
    std::fs::write(opts.out.join("SUMMARY.md"), &summary)
        .map_err(|e| format!("cannot write summary: {e}"))?;
    Ok(())
}

fn table_row(r: &Record) -> String {
    let f =
        |v: Option<f64>, digits: usize| v.map_or("–".to_string(), |v| format!("{v:.digits$}"));
    let j = r.jetcore.as_ref();
    let n = r.nats_server.as_ref();
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} | {} / {} |",
        r.scenario,
        f(j.map(|s| s.msgs_per_sec), 0),
        f(n.map(|s| s.msgs_per_sec), 0),
        f(r.ratio_throughput, 2),
        f(j.map(|s| s.cpu_us_per_msg), 3),
        f(n.map(|s| s.cpu_us_per_msg), 3),
        f(r.ratio_cpu_per_msg, 2),
        f(j.map(|s| s.ctx_switches_per_msg), 2),
        f(n.map(|s| s.ctx_switches_per_msg), 2),
        f(j.and_then(|s| s.p50_us), 1),
        f(n.and_then(|s| s.p50_us), 1),
        f(j.and_then(|s| s.p99_us), 1),
        f(n.and_then(|s| s.p99_us), 1),
        f(j.map(|s| s.peak_rss_mib), 0),
        f(n.map(|s| s.peak_rss_mib), 0),
    )
}

/// Scenarios that need JetStream enabled on both servers.
fn js(name: &str) -> bool {
    name.starts_with("js") || name.starts_with("kv")
}

fn spec_for(name: &str, opts: &Options, server: String, nats_rate: Option<f64>) -> Spec {
    let mut spec = Spec {
        mode: Mode::PubSub,
        server,
        sub_server: None,
        msgs: opts.msgs,
        size: 16,
        pubs: 1,
        subs: 1,
        responders: 1,
        subject: "bench.core".into(),
        multisubject: false,
        rate: None,
        duration: Duration::from_secs(120),
        window: 256,
        stream: "BENCH".into(),
        storage: "file".into(),
        workers: opts.workers,
        pin_workers: opts.pin_workers,
        keys: 1000,
        consume: ConsumeSpec::default(),
        copy: CopySpec::default(),
        ttl: None,
        keep: false,
        placement: None,
    };
    match name {
        "ceiling" | "pub16" => spec.mode = Mode::Pub,
        "pubsub128" => spec.size = 128,
        "pubsub64k" => {
            spec.size = 64 * 1024;
            spec.msgs = (opts.msgs / 40).max(1000);
        }
        "fanout4" => spec.subs = 4,
        "reqrep" => {
            spec.mode = Mode::Request;
            spec.msgs = (opts.msgs / 50).max(1000);
        }
        "rate50" => {
            let rate = nats_rate.unwrap_or(200_000.0) * 0.5;
            spec.rate = Some(rate);
            spec.msgs = ((rate * 5.0) as u64).min(opts.msgs * 5).max(1000);
        }
        "lat10k" => {
            spec.rate = Some(MODERATE_RATE);
            spec.msgs = MODERATE_RATE as u64 * 5;
        }
        "jspub128" | "jspubsync" | "jspub16k" => {
            spec.mode = Mode::JsPub;
            spec.size = 128;
            spec.subject = "bench.js".into();
            spec.msgs = (opts.msgs / 4).max(1000);
            if name == "jspub16k" {
                spec.size = 16 * 1024;
                spec.msgs = (opts.msgs / 40).max(1000);
            }
            if name == "jspubsync" {
                spec.window = 1;
                spec.msgs = (opts.msgs / 100).max(1000);
            }
        }
        "jsget128" => {
            spec.mode = Mode::JsGet;
            spec.size = 128;
            spec.subject = "bench.js".into();
            spec.window = 64;
            spec.msgs = (opts.msgs / 10).max(1000);
        }
        "kvput" | "kvget" | "kvputttl" => {
            spec.mode = if name == "kvget" {
                Mode::KvGet
            } else {
                Mode::KvPut
            };
            spec.size = 128;
            spec.stream = "bench".into();
            spec.keys = 1000;
            spec.window = if name == "kvget" { 64 } else { 256 };
            spec.msgs = (opts.msgs / 10).max(1000);
            if name == "kvputttl" {
                spec.ttl = Some(TtlSpec {
                    secs: 3600,
                    align: false,
                });
            }
        }
        "jspubttl" => {
            spec.mode = Mode::JsPub;
            spec.size = 128;
            spec.subject = "bench.js".into();
            spec.msgs = (opts.msgs / 4).max(1000);
            spec.ttl = Some(TtlSpec {
                secs: 3600,
                align: false,
            });
        }
        // Publish start until the target holds every message.
        "jsmirror128" | "jssources4" | "jssources16" | "jsmirrorrate" => {
            spec.mode = Mode::JsCopy;
            spec.size = 128;
            spec.subject = "bench.copy".into();
            spec.stream = "BENCHCOPY".into();
            spec.multisubject = true;
            spec.copy.origins = match name {
                "jssources4" => 4,
                "jssources16" => 16,
                _ => 1,
            };
            spec.copy.mirror = spec.copy.origins == 1;
            spec.pubs = spec.copy.origins;
            spec.msgs = (opts.msgs / 4).max(1000);
            if name == "jsmirrorrate" {
                spec.rate = Some(JS_CONSUME_LATENCY_RATE);
                spec.msgs = opts.msgs.min(JS_CONSUME_LATENCY_RATE as u64 * 5).max(1000);
            }
        }
        // Throughput of the consume phase alone: the preload is setup.
        "jsconsume" | "jsordered" | "jsconsumelat" => {
            spec.mode = Mode::JsConsume;
            spec.size = 128;
            spec.subject = "bench.js".into();
            spec.consume.kind = if name == "jsordered" {
                ConsumeKind::Ordered
            } else {
                ConsumeKind::Pull
            };
            spec.consume.ack = name != "jsordered";
            spec.msgs = match name {
                "jsconsume" => opts.msgs,
                // 1 M messages with the default --msgs.
                "jsordered" => (opts.msgs / 2).max(1000),
                _ => {
                    spec.rate = Some(JS_CONSUME_LATENCY_RATE);
                    // nats.go's PublishAsync default: an open-loop publisher
                    // is not held back by a short stall in pub acks.
                    spec.window = JS_CONSUME_LATENCY_WINDOW;
                    opts.msgs.min(JS_CONSUME_LATENCY_RATE as u64 * 10).max(1000)
                }
            };
        }
        _ => {}
    }
    spec
}

fn scenario(
    opts: &Options,
    name: &str,
    description: &str,
    nats: Option<&Path>,
    nats_version: &str,
    nats_rate: Option<f64>,
) -> Result<Record, String> {
    let mut rounds = Vec::new();
    let mut last_hist: Vec<(&'static str, Histogram<u64>)> = Vec::new();
    let mut note = None;
    for round in 0..opts.rounds {
        // Alternate which server goes first, so drift in the machine's load
        // does not favour one of them.
        let order: Vec<&'static str> = if round % 2 == 0 {
            vec!["jetcore", "nats-server"]
        } else {
            vec!["nats-server", "jetcore"]
        };
        for which in order {
            if name == "ceiling" && which == "nats-server" {
                continue;
            }
            let started = match (which, name) {
                (_, "ceiling") => ServerProcess::sink(),
                ("jetcore", _) => match &opts.jetcore {
                    Some(path) => {
                        ServerProcess::jetcore(path, opts.shards, opts.sync.as_deref(), js(name))
                    }
                    None => continue,
                },
                (_, _) => match nats {
                    Some(path) => ServerProcess::nats(path, js(name)),
                    None => continue,
                },
            };
            let started = match started {
                Ok(s) => s,
                Err(e) => {
                    println!("  {which}: {e}");
                    note = Some(format!("{which}: {e}"));
                    continue;
                }
            };
            let mut spec = spec_for(name, opts, started.addr.clone(), nats_rate);
            if which == "jetcore" {
                spec.placement = opts.placement;
            }
            // Server CPU over the measured phase only (not a preload).
            let mut marks = Vec::with_capacity(2);
            let outcome = run_marked(&spec, &mut || {
                marks.push((started.cpu_secs(), started.ctx_switches()))
            });
            let (cpu, switches) = match marks[..] {
                [before, after] => (after.0 - before.0, after.1.saturating_sub(before.1)),
                _ => (0.0, 0),
            };
            let peak_rss_mib = started.peak_rss_mib();
            drop(started);
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    println!("  {which}: cannot run: {e}");
                    note = Some(format!("{which}: {e}"));
                    continue;
                }
            };
            let summary = summarize(&outcome);
            let delivered = summary.sub_msgs.max(summary.pub_msgs).max(1);
            let cpu_us_per_msg = cpu * 1e6 / delivered as f64;
            let ctx_switches_per_msg = switches as f64 / delivered as f64;
            println!(
                "  round {} {which:11}: {:>12.0} msgs/s {:>8.2} MB/s  server CPU {:.3} µs/msg  \
                 {ctx_switches_per_msg:.2} ctx sw/msg  peak RSS {peak_rss_mib:.0} MiB{}",
                round + 1,
                summary.msgs_per_sec,
                summary.mb_per_sec,
                cpu_us_per_msg,
                summary.latency.as_ref().map_or(String::new(), |l| format!(
                    "  p50 {:.1} µs p99 {:.1} µs",
                    l.p50_us, l.p99_us
                ))
            );
            last_hist.retain(|(w, _)| *w != which);
            last_hist.push((which, outcome.latency));
            rounds.push(Round {
                server: which,
                summary,
                server_cpu_secs: cpu,
                cpu_us_per_msg,
                ctx_switches_per_msg,
                peak_rss_mib,
            });
        }
    }
    let side = |which: &str| median_side(rounds.iter().filter(|r| r.server == which).collect());
    let (j, n) = (side("jetcore"), side("nats-server"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    if last_hist.iter().any(|(_, h)| !h.is_empty()) {
        let series: Vec<(&str, &Histogram<u64>)> = last_hist
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(w, h)| (*w, h))
            .collect();
        let chart = svg(&format!("{name}: {description}"), &series);
        let path = opts.out.join(format!("{name}.svg"));
        std::fs::write(&path, chart)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(Record {
        scenario: name.to_string(),
        description: description.to_string(),
        machine: machine(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        commit: git_commit(),
        command: opts.command.clone(),
        placement: match opts.placement {
            None => "kernel",
            Some(p) if p.cross => "cross",
            Some(_) => "same",
        },
        date: utc_now(),
        nats_server_version: nats_version.to_string(),
        ratio_throughput: ratio(
            j.as_ref().map(|s| s.msgs_per_sec),
            n.as_ref().map(|s| s.msgs_per_sec),
        ),
        ratio_cpu_per_msg: ratio(
            j.as_ref().map(|s| s.cpu_us_per_msg),
            n.as_ref().map(|s| s.cpu_us_per_msg),
        ),
        ratio_p50: ratio(
            j.as_ref().and_then(|s| s.p50_us),
            n.as_ref().and_then(|s| s.p50_us),
        ),
        ratio_p99: ratio(
            j.as_ref().and_then(|s| s.p99_us),
            n.as_ref().and_then(|s| s.p99_us),
        ),
        jetcore: j,
        nats_server: n,
        rounds,
        note,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn median_side(rounds: Vec<&Round>) -> Option<Side> {
    if rounds.is_empty() {
        return None;
    }
    let pick = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(|r| f(r)).collect());
    let has_latency = rounds.iter().all(|r| r.summary.latency.is_some());
    Some(Side {
        msgs_per_sec: pick(&|r| r.summary.msgs_per_sec),
        mb_per_sec: pick(&|r| r.summary.mb_per_sec),
        p50_us: has_latency
            .then(|| pick(&|r| r.summary.latency.as_ref().map_or(0.0, |l| l.p50_us))),
        p99_us: has_latency
            .then(|| pick(&|r| r.summary.latency.as_ref().map_or(0.0, |l| l.p99_us))),
        cpu_us_per_msg: pick(&|r| r.cpu_us_per_msg),
        ctx_switches_per_msg: pick(&|r| r.ctx_switches_per_msg),
        peak_rss_mib: pick(&|r| r.peak_rss_mib),
    })
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} x {model}")
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_string(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
}

fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (y, m, d) = crate::log::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
