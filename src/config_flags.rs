//! nats-server's command-line spellings, as Go's flag package reads them
//! (`-port 4222`, `--port=4222`, `-js`, `-DV`), rewritten to the `--long`
//! form clap parses; nats-server flags jetcore does not implement yet are
//! refused by name, never ignored.

/// nats-server flags (Go names) that jetcore does not implement yet.
const UNSUPPORTED: &[&str] = &[
    "client_advertise",
    "ports_file_dir",
    "logtime_utc",
    "max_traced_msg_len",
    "routes",
    "cluster",
    "cluster_name",
    "no_advertise",
    "cluster_advertise",
    "connect_retries",
    "cluster_listen",
    "profile",
    "help_tls",
];

/// Long names that Go also accepts with a single dash, mapped to ours.
const LONG_NAMES: &[(&str, &str)] = &[
    ("addr", "addr"),
    ("net", "net"),
    ("port", "port"),
    ("name", "name"),
    ("server_name", "server_name"),
    ("js", "jetstream"),
    ("jetstream", "jetstream"),
    ("sd", "store_dir"),
    ("store_dir", "store_dir"),
    ("debug", "debug"),
    ("trace", "trace"),
    ("DV", "DV"),
    ("VV", "VV"),
    ("DVV", "DVV"),
    ("version", "version"),
    ("help", "help"),
    ("shards", "shards"),
    ("ping_interval", "ping_interval"),
    ("ping_max", "ping_max"),
    ("max_payload", "max_payload"),
    ("max_pending", "max_pending"),
    ("sync", "sync"),
    ("segment_bytes", "segment_bytes"),
    ("index_cache_bytes", "index_cache_bytes"),
    ("domain", "domain"),
    ("config", "config"),
    ("sl", "signal"),
    ("signal", "signal"),
    ("pid", "pid"),
    ("max_control_line", "max_control_line"),
    ("lame_duck_duration", "lame_duck_duration"),
    ("lame_duck_grace_period", "lame_duck_grace_period"),
    ("max_connections", "max_connections"),
    ("write_deadline", "write_deadline"),
    ("log", "log"),
    ("logtime", "logtime"),
    ("m", "http_port"),
    ("ms", "https_port"),
    ("https_port", "https_port"),
    ("http_port", "http_port"),
    ("tls", "tls"),
    ("tlscert", "tlscert"),
    ("tlskey", "tlskey"),
    ("tlscacert", "tlscacert"),
    ("tlsverify", "tlsverify"),
    ("user", "user"),
    ("pass", "pass"),
    ("auth", "auth"),
    ("s", "syslog"),
    ("syslog", "syslog"),
    ("r", "remote_syslog"),
    ("remote_syslog", "remote_syslog"),
    ("log_size_limit", "log_size_limit"),
];

/// Flags that take a value in the next argument (unless given with `=`).
const TAKES_VALUE: &[&str] = &[
    "m",
    "ms",
    "https_port",
    "http_port",
    "r",
    "remote_syslog",
    "user",
    "pass",
    "auth",
    "tlscert",
    "tlskey",
    "tlscacert",
    "log_size_limit",
    "sl",
    "signal",
    "c",
    "config",
    "P",
    "pid",
    "max_control_line",
    "max_connections",
    "write_deadline",
    "lame_duck_duration",
    "lame_duck_grace_period",
    "l",
    "log",
    "a",
    "p",
    "n",
    "addr",
    "net",
    "port",
    "name",
    "server_name",
    "store_dir",
    "shards",
    "ping_interval",
    "ping_max",
    "max_payload",
    "max_pending",
    "sync",
    "segment_bytes",
    "index_cache_bytes",
    "domain",
];

/// Rewrites Go-style flags (`-port`, `-js`, `-DV`) to clap's `--long` form and
/// refuses nats-server flags we do not support.
pub fn normalize<I: IntoIterator<Item = String>>(args: I) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut expect_value = false;
    for arg in args {
        if expect_value || arg == "-" || !arg.starts_with('-') {
            expect_value = false;
            out.push(arg);
            continue;
        }
        let body = arg.trim_start_matches('-');
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if UNSUPPORTED.contains(&name) {
            return Err(format!(
                "jetcore: the nats-server option '{arg}' is not supported yet (see README: what works today)"
            ));
        }
        expect_value = value.is_none() && TAKES_VALUE.contains(&name);
        let long = LONG_NAMES
            .iter()
            .find(|(go, _)| *go == name)
            .map(|(_, ours)| *ours);
        match (long, value) {
            (Some(long), Some(v)) => out.push(format!("--{long}={v}")),
            (Some(long), None) => out.push(format!("--{long}")),
            (None, _) => out.push(arg),
        }
    }
    Ok(out)
}
