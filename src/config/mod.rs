//! Command line → `Config`, accepting nats-server's flags the way Go's flag
//! package reads them (`-port 4222`, `--port=4222`, `-js`, `-DV`), plus our own.
//!
//! A nats-server flag we do not implement yet is refused with a message naming it,
//! never ignored.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::limits;

/// Version string reported in INFO and stream metadata. Clients gate features
/// on it: 2.11 is the release whose feature set (API level 1: per-message TTL,
/// delete markers, consumer pause and priority groups, batched direct gets)
/// jetcore serves.
pub const NATS_COMPAT_VERSION: &str = "2.11.0";

/// JetStream API level we report (INFO `api_lvl`, `$JS.API.INFO`, metadata):
/// the 2.11 feature set. Level 2 (2.12) needs counters, atomic batches and
/// message schedules, which jetcore does not have.
pub const API_LEVEL: u32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "jetcore",
    about = "A NATS-compatible message server, thread-per-core on glommio",
    disable_version_flag = true
)]
struct Cli {
    /// Bind to host address (default: 0.0.0.0)
    #[arg(
        short = 'a',
        long = "addr",
        visible_alias = "net",
        default_value = "0.0.0.0"
    )]
    addr: String,
    /// Use port for clients (default: 4222; -1 picks a random free port)
    #[arg(
        short = 'p',
        long = "port",
        default_value_t = 4222,
        allow_negative_numbers = true
    )]
    port: i32,
    /// Server name (default: the server id)
    #[arg(short = 'n', long = "name", visible_alias = "server_name")]
    name: Option<String>,
    /// Enable JetStream
    #[arg(long = "jetstream")]
    jetstream: bool,
    /// JetStream storage directory (default: $TMPDIR/jetcore; streams under <dir>/jetstream)
    #[arg(long = "store_dir")]
    store_dir: Option<PathBuf>,
    /// When a JetStream publish is acknowledged: `always` (after fdatasync; the
    /// default) or `interval=<duration>` (after the write; fdatasync that often)
    #[arg(long = "sync", default_value = "always")]
    sync: String,
    /// JetStream domain: `$JS.<domain>.API.>` reaches this server's API (as
    /// nats-server's `jetstream { domain: <name> }`)
    #[arg(long = "domain")]
    domain: Option<String>,
    /// Size at which a stream's segment file is closed and a new one begun
    /// (4096 bytes to 1 GiB)
    #[arg(long = "segment_bytes", default_value_t = limits::SEGMENT_BYTES_DEFAULT)]
    segment_bytes: u64,
    /// Bytes per shard for the index entries of sealed segments read back
    /// from their index files (least recently used out when full)
    #[arg(long = "index_cache_bytes", default_value_t = limits::INDEX_CACHE_BYTES_DEFAULT)]
    index_cache_bytes: u64,
    /// Enable debugging output
    #[arg(short = 'D', long = "debug")]
    debug: bool,
    /// Trace the raw protocol
    #[arg(short = 'V', long = "trace")]
    trace: bool,
    /// Debug and trace
    #[arg(long = "DV", hide = true)]
    debug_trace: bool,
    /// Verbose trace (same as trace: there is no system account)
    #[arg(long = "VV", hide = true)]
    verbose_trace: bool,
    /// Debug and verbose trace
    #[arg(long = "DVV", hide = true)]
    debug_verbose_trace: bool,
    /// Show version and exit
    #[arg(short = 'v', long = "version")]
    version: bool,
    /// Shards (executors, one per core); default: online CPUs
    #[arg(long = "shards")]
    shards: Option<usize>,
    /// Keep every client on the shard that accepted it (by default a client
    /// whose publishes all go to one other shard moves there)
    #[arg(long = "no_conn_moves")]
    no_conn_moves: bool,
    /// Interval between server PINGs (Go duration, e.g. 2m, 500ms; bare number = seconds)
    #[arg(long = "ping_interval", default_value = "2m")]
    ping_interval: String,
    /// Unanswered PINGs before a connection is closed as stale
    #[arg(long = "ping_max", default_value_t = limits::PINGS_OUT_MAX_DEFAULT)]
    ping_max: u32,
    /// Largest message payload in bytes
    #[arg(long = "max_payload", default_value_t = limits::PAYLOAD_MAX_DEFAULT)]
    max_payload: usize,
    /// Outbound bytes queued per connection before it is cut as a slow consumer
    #[arg(long = "max_pending", default_value_t = limits::PENDING_BYTES_MAX_DEFAULT)]
    max_pending: usize,
    /// Configuration file (nats-server's format); flags given here override it
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Check the configuration file and exit
    #[arg(short = 't')]
    check: bool,
    /// Send a signal to a running jetcore: stop, quit, term, reopen or reload,
    /// `=<pid>` (or `=<pid file>`) naming it when more than one runs
    #[arg(long = "signal")]
    signal: Option<String>,
    /// Longest protocol line a client may send, in bytes
    #[arg(long = "max_control_line", default_value_t = limits::CONTROL_LINE_MAX)]
    max_control_line: usize,
    /// Client connections the server takes at once (0: no limit)
    #[arg(long = "max_connections", default_value_t = limits::CONNECTIONS_MAX_DEFAULT)]
    max_connections: usize,
    /// How long a write to a client may block before the client is cut
    #[arg(long = "write_deadline", default_value = limits::WRITE_DEADLINE_DEFAULT)]
    write_deadline: String,
    /// Lame duck mode (SIGUSR2): how long closing every client takes
    #[arg(long = "lame_duck_duration", default_value = "2m")]
    lame_duck_duration: String,
    /// Lame duck mode: how long clients are told before the first is closed
    #[arg(long = "lame_duck_grace_period", default_value = "10s")]
    lame_duck_grace_period: String,
    /// File to write the process id to (removed at exit)
    #[arg(short = 'P', long = "pid")]
    pid: Option<PathBuf>,
    /// File to write the log to (SIGUSR1 reopens it)
    #[arg(short = 'l', long = "log")]
    log: Option<PathBuf>,
    /// User required for connections
    #[arg(long = "user")]
    user: Option<String>,
    /// Password required for connections
    #[arg(long = "pass")]
    pass: Option<String>,
    /// Authorization token required for connections
    #[arg(long = "auth")]
    auth: Option<String>,
    /// Enable TLS (with --tlscert and --tlskey)
    #[arg(long = "tls")]
    tls: bool,
    /// Server certificate file (PEM)
    #[arg(long = "tlscert")]
    tlscert: Option<String>,
    /// Private key of the server certificate (PEM)
    #[arg(long = "tlskey")]
    tlskey: Option<String>,
    /// Client certificate CA, for verification (PEM)
    #[arg(long = "tlscacert")]
    tlscacert: Option<String>,
    /// Require and verify client certificates
    #[arg(long = "tlsverify")]
    tlsverify: bool,
    /// The file's `tls` block.
    #[arg(skip)]
    file_tls: Option<crate::config_file::tls::TlsConfig>,
    /// HTTP port for monitoring (/varz, /connz, /jsz, /healthz ...; -1: a free port)
    #[arg(short = 'm', long = "http_port", allow_negative_numbers = true)]
    http_port: Option<i32>,
    /// HTTPS port for monitoring, with the client TLS settings (-1: a free port)
    #[arg(long = "https_port", allow_negative_numbers = true)]
    https_port: Option<i32>,
    /// Monitoring host from a config file's `http: "host:port"` (else the client host).
    #[arg(skip)]
    http_host: Option<String>,
    /// The file's `authorization`, `no_auth_user` and `max_subscriptions`.
    #[arg(skip)]
    file_auth: Option<crate::config_file::auth::AuthConfig>,
    #[arg(skip)]
    no_auth_user: Option<String>,
    #[arg(skip)]
    max_subscriptions: i64,
    /// The file's `leafnodes` block.
    #[arg(skip)]
    leaf: Option<crate::config_file::leaf::LeafConfig>,
    /// Log to the local syslog
    #[arg(short = 's', long = "syslog")]
    syslog: bool,
    /// Log to a remote syslog (udp://host:port, tcp://host:port, unix:///path)
    #[arg(short = 'r', long = "remote_syslog")]
    remote_syslog: Option<String>,
    /// Rotate the log file (-l) when it grows past this size (e.g. 100MB; 0: never)
    #[arg(long = "log_size_limit", default_value = "0")]
    log_size_limit: String,
    /// Log files kept when rotating, the current one included (0: all)
    #[arg(skip)]
    logfile_max_num: usize,
    /// Timestamp log lines (default true; -T=false turns them off)
    #[arg(short = 'T', long = "logtime", num_args = 0..=1, default_missing_value = "true")]
    logtime: Option<bool>,
}

/// How JetStream appends reach stable storage before they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Every group-commit write is O_DSYNC (its own fdatasync) before its acks
    /// (the default).
    Always,
    /// Acks after the write completes (O_DIRECT: in the device, maybe not on
    /// stable media); fdatasync at most this often.
    Interval(Duration),
}

/// Server settings, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: IpAddr,
    /// Port to bind; 0 picks a free port at startup.
    pub port: u16,
    pub name: Option<String>,
    pub shards: usize,
    /// Clients may move to the shard their publishes go to (`--no_conn_moves`: never).
    pub conn_moves: bool,
    pub log_level: crate::log::Level,
    pub ping_interval: Duration,
    pub ping_max: u32,
    pub max_payload: usize,
    pub max_pending: usize,
    /// JetStream store directory when JetStream is enabled.
    pub jetstream: Option<PathBuf>,
    pub sync: SyncMode,
    pub segment_bytes: u64,
    /// Per shard: the decoded index chunks of sealed segments (`--index_cache_bytes`).
    pub index_cache_bytes: u64,
    /// JetStream domain (`--domain`), if any.
    pub domain: Option<String>,
    pub max_control_line: usize,
    /// 0: no limit.
    pub max_connections: usize,
    pub write_deadline: Duration,
    pub lame_duck_duration: Duration,
    pub lame_duck_grace_period: Duration,
    pub pid_file: Option<PathBuf>,
    pub log_file: Option<PathBuf>,
    /// `-c`: read again on SIGHUP.
    pub config_file: Option<PathBuf>,
    /// The file's settings as last read (what a reload compares against).
    pub file_settings: crate::config_file::FileSettings,
    /// Log settings given as flags: a reload leaves them alone.
    pub log_flags: bool,
    /// Log lines carry the date and time.
    pub logtime: bool,
    /// Monitoring's address (port 0: a free one), when enabled.
    pub http: Option<SocketAddr>,
    /// Monitoring is served over TLS (`-ms`, `https_port`, `https`).
    pub https: bool,
    pub syslog: bool,
    pub remote_syslog: Option<String>,
    /// Bytes at which the log file is rotated (0: never), and files kept.
    pub log_size_limit: u64,
    pub logfile_max_num: usize,
    /// Who may connect (the file's `authorization`, or `--user`/`--pass`/`--auth`).
    pub auth: crate::config_file::auth::AuthConfig,
    pub no_auth_user: Option<String>,
    /// Subscriptions per connection (0: no limit).
    pub max_subscriptions: usize,
    /// TLS for clients, when configured.
    pub tls: Option<crate::config_file::tls::TlsConfig>,
    /// Leaf connections: a listener and remotes to dial (`leafnodes`).
    pub leaf: Option<crate::config_file::leaf::LeafConfig>,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Version,
    /// `--help`: the text to print.
    Help(String),
    /// `-t`: the configuration is valid (the line to print).
    Check(String),
    /// `--signal <name>[=<pid>]`: signal number and the process it goes to.
    Signal(i32, Option<String>),
}

/// Parses the command line (without the program name) into a command.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    use clap::{CommandFactory, FromArgMatches};
    let argv = crate::config_flags::normalize(args)?;
    let argv = std::iter::once("jetcore".to_string()).chain(argv);
    let matches = match Cli::command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            return Ok(Command::Help(e.render().to_string()))
        }
        Err(e) => return Err(e.render().to_string()),
    };
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.render().to_string())?;
    if cli.version {
        return Ok(Command::Version);
    }
    if let Some(s) = &cli.signal {
        return signal_command(s, cli.pid.as_deref());
    }
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let log_flags = [
        "debug",
        "trace",
        "logtime",
        "debug_trace",
        "verbose_trace",
        "debug_verbose_trace",
    ]
    .iter()
    .any(|id| given(id));
    let mut file_settings = crate::config_file::FileSettings::default();
    if let Some(path) = cli.config.clone() {
        file_settings = crate::config_file::read(&path)?;
        apply_file(&mut cli, file_settings.clone(), given);
    } else if cli.check {
        return Err("jetcore: -t needs a configuration file (-c <file>)".to_string());
    }
    let check = cli.check.then(|| cli.config.clone()).flatten();
    let mut cfg = validate(cli)?;
    cfg.file_settings = file_settings;
    cfg.log_flags = log_flags;
    match check {
        Some(path) => Ok(Command::Check(format!(
            "jetcore: configuration file {} is valid",
            path.display()
        ))),
        None => Ok(Command::Run(Box::new(cfg))),
    }
}

/// `--signal <name>[=<pid or pid file>]`, nats-server's names.
fn signal_command(arg: &str, pid_file: Option<&std::path::Path>) -> Result<Command, String> {
    let (name, pid) = match arg.split_once('=') {
        Some((n, p)) => (n, Some(p.to_string())),
        None => (arg, pid_file.map(|p| p.display().to_string())),
    };
    let sig = match name {
        "stop" => libc::SIGKILL,
        "quit" => libc::SIGINT,
        "term" => libc::SIGTERM,
        "reopen" => libc::SIGUSR1,
        "reload" => libc::SIGHUP,
        "ldm" => libc::SIGUSR2,
        other => return Err(format!("jetcore: unknown signal \"{other}\"")),
    };
    Ok(Command::Signal(sig, pid))
}

/// Takes the file's settings where the command line did not set them.
fn apply_file(cli: &mut Cli, f: crate::config_file::FileSettings, given: impl Fn(&str) -> bool) {
    fn set<T>(field: &mut T, v: Option<T>, given: bool) {
        if let (Some(v), false) = (v, given) {
            *field = v;
        }
    }
    set(&mut cli.addr, f.host, given("addr"));
    set(
        &mut cli.port,
        f.port.map(|p| p.clamp(-1, i32::MAX as i64) as i32),
        given("port"),
    );
    set(&mut cli.name, f.name.map(Some), given("name"));
    set(&mut cli.jetstream, f.jetstream, given("jetstream"));
    set(
        &mut cli.store_dir,
        f.store_dir.map(|d| Some(PathBuf::from(d))),
        given("store_dir"),
    );
    set(&mut cli.domain, f.domain.map(Some), given("domain"));
    set(&mut cli.sync, f.sync, given("sync"));
    set(
        &mut cli.segment_bytes,
        f.segment_bytes,
        given("segment_bytes"),
    );
    set(
        &mut cli.index_cache_bytes,
        f.index_cache_bytes,
        given("index_cache_bytes"),
    );
    set(&mut cli.shards, f.shards.map(Some), given("shards"));
    set(&mut cli.debug, f.debug, given("debug"));
    set(&mut cli.trace, f.trace, given("trace"));
    set(
        &mut cli.ping_interval,
        f.ping_interval,
        given("ping_interval"),
    );
    set(&mut cli.ping_max, f.ping_max, given("ping_max"));
    set(&mut cli.max_payload, f.max_payload, given("max_payload"));
    set(&mut cli.max_pending, f.max_pending, given("max_pending"));
    set(
        &mut cli.pid,
        f.pid_file.map(|p| Some(PathBuf::from(p))),
        given("pid"),
    );
    set(
        &mut cli.log,
        f.log_file.map(|p| Some(PathBuf::from(p))),
        given("log"),
    );
    set(&mut cli.logtime, f.logtime.map(Some), given("logtime"));
    set(
        &mut cli.http_port,
        f.http_port
            .map(|p| Some(p.clamp(-1, i32::MAX as i64) as i32)),
        given("http_port"),
    );
    cli.http_host = f.http_host;
    set(
        &mut cli.https_port,
        f.https_port
            .map(|p| Some(p.clamp(-1, i32::MAX as i64) as i32)),
        given("https_port"),
    );
    set(&mut cli.syslog, f.syslog, given("syslog"));
    set(
        &mut cli.remote_syslog,
        f.remote_syslog.map(Some),
        given("remote_syslog"),
    );
    set(
        &mut cli.log_size_limit,
        f.log_size_limit.map(|v| v.max(0).to_string()),
        given("log_size_limit"),
    );
    cli.logfile_max_num = f.logfile_max_num.unwrap_or(0).max(0) as usize;
    cli.file_auth = f.auth;
    cli.file_tls = f.tls;
    cli.no_auth_user = f.no_auth_user;
    cli.max_subscriptions = f.max_subscriptions.unwrap_or(0);
    cli.leaf = f.leaf;
    set(
        &mut cli.max_control_line,
        f.max_control_line,
        given("max_control_line"),
    );
    set(
        &mut cli.max_connections,
        f.max_connections,
        given("max_connections"),
    );
    set(
        &mut cli.write_deadline,
        f.write_deadline,
        given("write_deadline"),
    );
    let given_ldd = given("lame_duck_duration");
    set(&mut cli.lame_duck_duration, f.lame_duck_duration, given_ldd);
    let given_ldg = given("lame_duck_grace_period");
    set(
        &mut cli.lame_duck_grace_period,
        f.lame_duck_grace_period,
        given_ldg,
    );
}

fn validate(cli: Cli) -> Result<Config, String> {
    // As in nats-server, giving a store directory enables JetStream (a file's
    // `jetstream: false` turns it off again).
    let jetstream = (cli.jetstream || cli.store_dir.is_some()).then(|| {
        cli.store_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("jetcore"))
    });
    let sync = match cli.sync.as_str() {
        "always" => SyncMode::Always,
        other => match other.strip_prefix("interval=").and_then(parse_duration) {
            Some(d) if !d.is_zero() => SyncMode::Interval(d),
            _ => {
                return Err(format!(
                    "jetcore: invalid --sync '{other}': use 'always' or 'interval=<duration>' (e.g. interval=1s)"
                ))
            }
        },
    };
    if !(limits::SEGMENT_BYTES_MIN..=limits::SEGMENT_BYTES_MAX).contains(&cli.segment_bytes) {
        return Err(format!(
            "jetcore: --segment_bytes must be between {} and {}",
            limits::SEGMENT_BYTES_MIN,
            limits::SEGMENT_BYTES_MAX
        ));
    }
    if let Some(d) = &cli.domain {
        check_domain(d)?;
        if jetstream.is_none() {
            return Err("jetcore: --domain needs JetStream (-js)".to_string());
        }
    }
    let addr = resolve_host(&cli.addr)?;
    let port = match cli.port {
        -1 | 0 => 0,
        p if (1..=65535).contains(&p) => p as u16,
        p => {
            return Err(format!(
                "jetcore: invalid port {p}: use 1-65535, or -1 for a random port"
            ))
        }
    };
    // nats-server: 0 (the default) is off, -1 a free port; HTTP or HTTPS.
    let monitor_port = match (
        cli.http_port.filter(|p| *p != 0),
        cli.https_port.filter(|p| *p != 0),
    ) {
        (Some(_), Some(_)) => {
            return Err("jetcore: can't have both HTTP and HTTPS monitor ports".into())
        }
        (Some(p), None) => Some((p, false)),
        (None, Some(p)) => Some((p, true)),
        (None, None) => None,
    };
    let (http, https) = match monitor_port {
        None => (None, false),
        Some((p @ (-1 | 1..=65535), secure)) => {
            let host = match &cli.http_host {
                Some(h) => resolve_host(h)?,
                None => addr,
            };
            if secure && cli.tls_settings_absent() {
                return Err(
                    "jetcore: HTTPS monitoring needs TLS (--tlscert, --tlskey or a tls block)"
                        .into(),
                );
            }
            (Some(SocketAddr::new(host, p.max(0) as u16)), secure)
        }
        Some((p, _)) => {
            return Err(format!(
                "jetcore: invalid monitoring port {p}: use 1-65535, or -1 for a random port"
            ))
        }
    };
    let shards = match cli.shards {
        Some(0) => return Err("jetcore: --shards must be at least 1".to_string()),
        Some(n) if n > 256 => return Err("jetcore: --shards must be at most 256".to_string()),
        Some(n) => n,
        None => online_cpus(),
    };
    let ping_interval = parse_duration(&cli.ping_interval)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("jetcore: invalid --ping_interval '{}'", cli.ping_interval))?;
    if cli.ping_max == 0 {
        return Err("jetcore: --ping_max must be at least 1".to_string());
    }
    if cli.max_payload == 0 || cli.max_payload > limits::PAYLOAD_MAX_LIMIT {
        return Err(format!(
            "jetcore: --max_payload must be between 1 and {}",
            limits::PAYLOAD_MAX_LIMIT
        ));
    }
    if cli.max_pending < cli.max_payload {
        return Err("jetcore: --max_pending must be at least --max_payload".to_string());
    }
    // The parser keeps a partial line within one read chunk.
    if cli.max_control_line < 32 || cli.max_control_line >= limits::READ_CHUNK_BYTES {
        return Err(format!(
            "jetcore: max_control_line must be between 32 and {}",
            limits::READ_CHUNK_BYTES - 1
        ));
    }
    let write_deadline = parse_duration(&cli.write_deadline)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("jetcore: invalid write_deadline '{}'", cli.write_deadline))?;
    let lame = |name: &str, text: &str| {
        parse_duration(text)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("jetcore: invalid {name} '{text}'"))
    };
    let lame_duck_duration = lame("lame_duck_duration", &cli.lame_duck_duration)?;
    let lame_duck_grace_period = lame("lame_duck_grace_period", &cli.lame_duck_grace_period)?;
    if lame_duck_grace_period >= lame_duck_duration {
        return Err(
            "jetcore: lame_duck_grace_period must be shorter than lame_duck_duration".into(),
        );
    }
    let (auth, no_auth_user, max_subscriptions) = auth_settings(&cli)?;
    let tls = tls_settings(&cli)?;
    let log_level = if cli.trace || cli.debug_trace || cli.verbose_trace || cli.debug_verbose_trace
    {
        crate::log::Level::Trace
    } else if cli.debug {
        crate::log::Level::Debug
    } else {
        crate::log::Level::Info
    };
    Ok(Config {
        addr,
        port,
        name: cli.name,
        shards,
        conn_moves: !cli.no_conn_moves,
        log_level,
        ping_interval,
        ping_max: cli.ping_max,
        max_payload: cli.max_payload,
        max_pending: cli.max_pending,
        jetstream,
        sync,
        segment_bytes: cli.segment_bytes,
        index_cache_bytes: cli.index_cache_bytes,
        domain: cli.domain,
        max_control_line: cli.max_control_line,
        max_connections: cli.max_connections,
        write_deadline,
        lame_duck_duration,
        lame_duck_grace_period,
        config_file: cli.config,
        file_settings: Default::default(),
        log_flags: false,
        pid_file: cli.pid,
        log_file: cli.log,
        logtime: cli.logtime.unwrap_or(true),
        http,
        https,
        log_size_limit: crate::conf::parse_size(&cli.log_size_limit)
            .ok_or_else(|| format!("jetcore: invalid log_size_limit '{}'", cli.log_size_limit))?,
        logfile_max_num: cli.logfile_max_num,
        syslog: cli.syslog,
        remote_syslog: cli.remote_syslog,
        auth,
        no_auth_user,
        max_subscriptions,
        tls,
        leaf: cli.leaf,
    })
}

/// Authentication: the file's `authorization` block, unless `--user`/`--pass`
/// or `--auth` replace it (as nats-server's flags do).
fn auth_settings(
    cli: &Cli,
) -> Result<(crate::config_file::auth::AuthConfig, Option<String>, usize), String> {
    use crate::config_file::auth::{AuthConfig, UserConfig};
    let mut auth = cli.file_auth.clone().unwrap_or_default();
    match (&cli.user, &cli.pass) {
        // As nats-server: a users list in the file is kept.
        (Some(_), Some(_)) if auth.users_list => {}
        (Some(u), Some(p)) => {
            let perms = auth.users.first().and_then(|u| u.permissions.clone());
            auth.users = vec![UserConfig {
                user: Some(u.clone()),
                password: Some(p.clone()),
                nkey: None,
                permissions: perms,
            }];
            auth.token = None;
        }
        (None, None) => {}
        _ => return Err("jetcore: --user and --pass go together".into()),
    }
    if let Some(t) = cli.auth.as_ref().filter(|_| !auth.users_list) {
        auth = AuthConfig {
            token: Some(t.clone()),
            users: Vec::new(),
            ..auth
        };
    }
    let max_subs = cli.max_subscriptions.max(0) as usize;
    // Checked here so that `-t` finds what the server would refuse.
    crate::auth::Auth::new(&auth, cli.no_auth_user.as_deref())?;
    Ok((auth, cli.no_auth_user.clone(), max_subs))
}

impl Cli {
    fn tls_settings_absent(&self) -> bool {
        self.file_tls.is_none() && self.tlscert.is_none()
    }
}

/// TLS: the file's `tls` block with `--tls*` flags over it.
fn tls_settings(cli: &Cli) -> Result<Option<crate::config_file::tls::TlsConfig>, String> {
    let flags = cli.tls || cli.tlscert.is_some() || cli.tlskey.is_some() || cli.tlsverify;
    if !flags && cli.file_tls.is_none() {
        return Ok(None);
    }
    let mut t = cli.file_tls.clone().unwrap_or_default();
    let over = |v: &Option<String>, field: &mut Option<String>| {
        if let Some(v) = v {
            *field = Some(v.clone());
        }
    };
    over(&cli.tlscert, &mut t.cert_file);
    over(&cli.tlskey, &mut t.key_file);
    over(&cli.tlscacert, &mut t.ca_file);
    t.verify |= cli.tlsverify;
    if t.cert_file.is_none() || t.key_file.is_none() {
        return Err("jetcore: TLS needs a certificate and a key (--tlscert, --tlskey)".into());
    }
    if t.verify && t.ca_file.is_none() {
        return Err("jetcore: --tlsverify needs --tlscacert".into());
    }
    // Checked here so that `-t` finds what the server would refuse.
    crate::tls::Tls::load(&t)?;
    Ok(Some(t))
}

/// nats-server's rules for a domain name: `$JS.<name>.API.>` must be a valid
/// subject, and the name a single token.
fn check_domain(d: &str) -> Result<(), String> {
    if d.contains(['.', '*', '>']) {
        return Err("jetcore: invalid domain name: may not contain ., * or >".to_string());
    }
    // A token of a valid subject: not empty, no whitespace.
    let subject = format!("$JS.{d}.API.>");
    if d.is_empty() || d.contains(char::is_whitespace) {
        return Err(format!(
            "jetcore: invalid domain name: derived \"{subject}\" is not a valid subject"
        ));
    }
    Ok(())
}

fn resolve_host(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    (bare, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(|a: SocketAddr| a.ip())
        .ok_or_else(|| format!("jetcore: cannot resolve listen address '{host}'"))
}

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub use crate::conf::parse_duration;

// Unit tests only (config/tests.rs): each unwrap() there asserts on a fixed input.
#[cfg(test)]
mod tests;
