//! `-c <file>`: nats-server's configuration keys that apply to one jetcore,
//! read into the same settings the command line gives (`FileSettings`); the
//! command line wins where both set one, as with nats-server. A key jetcore
//! does not know, or does not honour yet, is an error naming it with its
//! file and line: nothing in a file is silently ignored.

pub mod auth;
pub mod leaf;
pub mod tls;

use std::path::Path;

use crate::conf::{self, Item, Value};

/// What a configuration file sets (None: not set there).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileSettings {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub name: Option<String>,
    pub jetstream: Option<bool>,
    pub store_dir: Option<String>,
    pub domain: Option<String>,
    pub sync: Option<String>,
    pub segment_bytes: Option<u64>,
    pub index_cache_bytes: Option<u64>,
    pub shards: Option<usize>,
    pub debug: Option<bool>,
    pub trace: Option<bool>,
    pub ping_interval: Option<String>,
    pub ping_max: Option<u32>,
    pub max_payload: Option<usize>,
    pub max_pending: Option<usize>,
    pub max_control_line: Option<usize>,
    pub max_connections: Option<usize>,
    pub write_deadline: Option<String>,
    pub lame_duck_duration: Option<String>,
    pub lame_duck_grace_period: Option<String>,
    pub pid_file: Option<String>,
    pub log_file: Option<String>,
    pub logtime: Option<bool>,
    /// Monitoring: `http: "host:port"` (or a port), `http_port`, `monitor_port`.
    pub http_host: Option<String>,
    pub http_port: Option<i64>,
    pub https_port: Option<i64>,
    /// `jetstream { max_memory_store, max_file_store }` (bytes; negative: the default).
    pub max_memory_store: Option<i64>,
    pub max_file_store: Option<i64>,
    /// `jetstream { strict }`: refuse API requests with unknown fields.
    pub js_strict: Option<bool>,
    pub syslog: Option<bool>,
    pub remote_syslog: Option<String>,
    pub log_size_limit: Option<i64>,
    pub logfile_max_num: Option<i64>,
    pub auth: Option<auth::AuthConfig>,
    pub tls: Option<tls::TlsConfig>,
    pub no_auth_user: Option<String>,
    pub max_subscriptions: Option<i64>,
    pub leaf: Option<leaf::LeafConfig>,
}

/// Keys nats-server has that jetcore does not honour yet: refused by name.
const NOT_YET: &[&str] = &[
    "logtime_utc",
    "ports_file_dir",
    "http_base_path",
    "accounts",
    "system_account",
    "operator",
    "resolver",
    "cluster",
    "gateway",
    "websocket",
    "mqtt",
    "mappings",
];

impl FileSettings {
    /// The log level a reload applies: `debug` on or off (protocol tracing is
    /// set up per shard at start: `trace` changes at a restart).
    pub fn reload_level(&self, tracing: bool) -> crate::log::Level {
        match (tracing, self.debug) {
            (true, _) => crate::log::Level::Trace,
            (_, Some(true)) => crate::log::Level::Debug,
            _ => crate::log::Level::Info,
        }
    }

    /// Settings that differ from `old` and take effect only at a restart.
    pub fn restart_only_changes(&self, old: &FileSettings) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name: &'static str, changed: bool| {
            if changed {
                out.push(name);
            }
        };
        check(
            "listen/host/port",
            self.host != old.host || self.port != old.port,
        );
        check("server_name", self.name != old.name);
        check("trace", self.trace != old.trace);
        check(
            "jetstream",
            self.jetstream != old.jetstream || self.store_dir != old.store_dir,
        );
        check("jetstream.domain", self.domain != old.domain);
        check("jetstream.strict", self.js_strict != old.js_strict);
        check(
            "jetstream.max_memory_store/max_file_store",
            self.max_memory_store != old.max_memory_store
                || self.max_file_store != old.max_file_store,
        );
        check("sync", self.sync != old.sync);
        check(
            "jetcore.segment_bytes",
            self.segment_bytes != old.segment_bytes,
        );
        check(
            "jetcore.index_cache_bytes",
            self.index_cache_bytes != old.index_cache_bytes,
        );
        check("jetcore.shards", self.shards != old.shards);
        check("max_payload", self.max_payload != old.max_payload);
        check("max_pending", self.max_pending != old.max_pending);
        check(
            "max_control_line",
            self.max_control_line != old.max_control_line,
        );
        check(
            "syslog/remote_syslog/log_size_limit/logfile_max_num",
            self.syslog != old.syslog
                || self.remote_syslog != old.remote_syslog
                || self.log_size_limit != old.log_size_limit
                || self.logfile_max_num != old.logfile_max_num,
        );
        check(
            "max_subscriptions",
            self.max_subscriptions != old.max_subscriptions,
        );
        check("tls", self.tls != old.tls);
        check("leafnodes", self.leaf != old.leaf);
        check("pid_file", self.pid_file != old.pid_file);
        check("log_file", self.log_file != old.log_file);
        out
    }
}

/// Reads `path`.
pub fn read(path: &Path) -> Result<FileSettings, String> {
    let top = conf::parse_file(path).map_err(|e| format!("jetcore: {e}"))?;
    settings(&top)
}

/// The settings of a parsed file.
pub fn settings(top: &[(String, Item)]) -> Result<FileSettings, String> {
    let mut s = FileSettings::default();
    for (key, item) in top {
        match key.to_ascii_lowercase().as_str() {
            "listen" => listen(&mut s, item)?,
            "host" | "net" => s.host = Some(string(key, item)?),
            "port" => s.port = Some(int(key, item)?),
            "server_name" => s.name = Some(string(key, item)?),
            "debug" => s.debug = Some(boolean(key, item)?),
            "trace" => s.trace = Some(boolean(key, item)?),
            "ping_interval" => s.ping_interval = Some(duration(key, item)?),
            "ping_max" => s.ping_max = Some(positive(key, item)?.min(u32::MAX as i64) as u32),
            "max_payload" => s.max_payload = Some(positive(key, item)? as usize),
            "max_pending" => s.max_pending = Some(positive(key, item)? as usize),
            "pid_file" => s.pid_file = Some(string(key, item)?),
            "max_control_line" => s.max_control_line = Some(positive(key, item)? as usize),
            "max_connections" | "max_conn" => {
                s.max_connections = Some(int(key, item)?.max(0) as usize)
            }
            "write_deadline" => s.write_deadline = Some(duration(key, item)?),
            "lame_duck_duration" => s.lame_duck_duration = Some(duration(key, item)?),
            "lame_duck_grace_period" => s.lame_duck_grace_period = Some(duration(key, item)?),
            "log_file" => s.log_file = Some(string(key, item)?),
            "logtime" => s.logtime = Some(boolean(key, item)?),
            "syslog" => s.syslog = Some(boolean(key, item)?),
            "remote_syslog" => s.remote_syslog = Some(string(key, item)?),
            "log_size_limit" | "logfile_size_limit" => s.log_size_limit = Some(int(key, item)?),
            "logfile_max_num" | "log_max_num" => s.logfile_max_num = Some(int(key, item)?),
            "http" => {
                let (h, p) = host_port("http", item)?;
                (s.http_host, s.http_port) = (h.or(s.http_host), Some(p));
            }
            "http_port" | "monitor_port" => s.http_port = Some(int(key, item)?),
            "https" => {
                let (h, p) = host_port("https", item)?;
                (s.http_host, s.https_port) = (h.or(s.http_host), Some(p));
            }
            "https_port" => s.https_port = Some(int(key, item)?),
            "jetstream" => jetstream(&mut s, key, item)?,
            "authorization" => s.auth = Some(auth::authorization(item)?),
            "tls" => s.tls = Some(tls::tls(item)?),
            "no_auth_user" => s.no_auth_user = Some(string(key, item)?),
            "max_subscriptions" | "max_subs" => s.max_subscriptions = Some(int(key, item)?),
            "jetcore" => jetcore(&mut s, item)?,
            "leafnodes" => s.leaf = Some(leaf::leafnodes(item)?),
            k if NOT_YET.contains(&k) => return Err(not_yet(key, item)),
            _ => return Err(unknown(key, item)),
        }
    }
    Ok(s)
}

fn listen(s: &mut FileSettings, item: &Item) -> Result<(), String> {
    let (h, p) = host_port("listen", item)?;
    (s.host, s.port) = (h.or(s.host.take()), Some(p));
    Ok(())
}

/// A `host:port` string (host optional) or a bare port.
pub(crate) fn host_port(key: &str, item: &Item) -> Result<(Option<String>, i64), String> {
    match &item.value {
        Value::Int(p) => Ok((None, *p)),
        Value::Str(hp) => {
            let (h, p) = hp.rsplit_once(':').ok_or_else(|| {
                format!(
                    "jetcore: {}: {key}: expected host:port, got '{hp}'",
                    item.at()
                )
            })?;
            let p = p
                .parse()
                .map_err(|_| format!("jetcore: {}: {key}: invalid port in '{hp}'", item.at()))?;
            Ok(((!h.is_empty()).then(|| h.to_string()), p))
        }
        _ => Err(kind(key, item, "host:port")),
    }
}

fn jetstream(s: &mut FileSettings, key: &str, item: &Item) -> Result<(), String> {
    match &item.value {
        Value::Bool(b) => s.jetstream = Some(*b),
        Value::Str(v) if v.eq_ignore_ascii_case("enabled") => s.jetstream = Some(true),
        Value::Str(v) if v.eq_ignore_ascii_case("disabled") => s.jetstream = Some(false),
        Value::Map(m) => {
            s.jetstream = Some(true);
            for (k, v) in m {
                match k.to_ascii_lowercase().as_str() {
                    "store_dir" | "store" | "storedir" => s.store_dir = Some(string(k, v)?),
                    "domain" => s.domain = Some(string(k, v)?),
                    "max_memory_store" | "max_mem_store" | "max_mem" => {
                        s.max_memory_store = Some(int(k, v)?)
                    }
                    "max_file_store" | "max_file" => s.max_file_store = Some(int(k, v)?),
                    "enabled" | "enable" => s.jetstream = Some(boolean(k, v)?),
                    "strict" => s.js_strict = Some(boolean(k, v)?),
                    "sync_interval" | "sync" => {
                        s.sync = Some(match &v.value {
                            Value::Str(t) if t.eq_ignore_ascii_case("always") => "always".into(),
                            _ => format!("interval={}", duration(k, v)?),
                        })
                    }
                    kk if NOT_YET.contains(&kk) => return Err(not_yet(k, v)),
                    _ => return Err(unknown(&format!("jetstream.{k}"), v)),
                }
            }
        }
        _ => return Err(kind(key, item, "a boolean or a block")),
    }
    Ok(())
}

/// `jetcore { shards, sync, segment_bytes, index_cache_bytes }`: our own settings.
fn jetcore(s: &mut FileSettings, item: &Item) -> Result<(), String> {
    let Value::Map(m) = &item.value else {
        return Err(kind("jetcore", item, "a block"));
    };
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "shards" => s.shards = Some(positive(k, v)? as usize),
            "sync" => s.sync = Some(string(k, v)?),
            "segment_bytes" => s.segment_bytes = Some(positive(k, v)? as u64),
            "index_cache_bytes" => s.index_cache_bytes = Some(positive(k, v)? as u64),
            _ => return Err(unknown(&format!("jetcore.{k}"), v)),
        }
    }
    Ok(())
}

pub(crate) fn unknown(key: &str, item: &Item) -> String {
    format!("jetcore: {}: unknown configuration key '{key}'", item.at())
}

pub(crate) fn not_yet(key: &str, item: &Item) -> String {
    format!(
        "jetcore: {}: configuration key '{key}' is not supported yet (see README: what works today)",
        item.at()
    )
}

pub(crate) fn kind(key: &str, item: &Item, want: &str) -> String {
    format!("jetcore: {}: '{key}' must be {want}", item.at())
}

pub(crate) fn string(key: &str, item: &Item) -> Result<String, String> {
    match &item.value {
        Value::Str(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        _ => Err(kind(key, item, "a string")),
    }
}

pub(crate) fn int(key: &str, item: &Item) -> Result<i64, String> {
    match &item.value {
        Value::Int(i) => Ok(*i),
        _ => Err(kind(key, item, "an integer")),
    }
}

pub(crate) fn positive(key: &str, item: &Item) -> Result<i64, String> {
    match int(key, item)? {
        i if i > 0 => Ok(i),
        _ => Err(kind(key, item, "a positive integer")),
    }
}

pub(crate) fn boolean(key: &str, item: &Item) -> Result<bool, String> {
    match &item.value {
        Value::Bool(b) => Ok(*b),
        _ => Err(kind(key, item, "true or false")),
    }
}

/// Seconds as nats-server takes them for timeouts: a number (fractions
/// allowed) or a Go duration string.
pub(crate) fn seconds(key: &str, item: &Item) -> Result<f64, String> {
    match &item.value {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f),
        Value::Str(s) => conf::parse_duration(s)
            .map(|d| d.as_secs_f64())
            .ok_or_else(|| kind(key, item, "seconds or a duration")),
        _ => Err(kind(key, item, "seconds or a duration")),
    }
}

/// A duration as nats-server takes one: a Go duration string, or seconds.
pub(crate) fn duration(key: &str, item: &Item) -> Result<String, String> {
    match &item.value {
        Value::Int(i) if *i > 0 => Ok(format!("{i}s")),
        Value::Str(s) if conf::parse_duration(s).is_some() => Ok(s.clone()),
        _ => Err(kind(key, item, "a duration (e.g. \"2m\") or seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str) -> Result<FileSettings, String> {
        settings(&conf::parse_str(text, "t.conf").unwrap())
    }

    /// Single-server configurations as nats-server's documentation writes them.
    #[test]
    fn nats_server_documentation_configs_load_unchanged() {
        let basic = "# Server name for identification\nserver_name: \"my-nats-server\"\n\
            port: 4222\nnet: \"0.0.0.0\"\nmonitor_port: 8222\ndebug: false\ntrace: false\n\
            log_file: \"/var/log/nats/nats-server.log\"\nlogtime: true\n\
            max_connections: 64K\nmax_payload: 1MB\nmax_pending: 64MB\n\
            ping_interval: \"2m\"\nping_max: 2\nwrite_deadline: \"10s\"\n\
            lame_duck_duration: \"2m\"\nlame_duck_grace_period: \"10s\"\n";
        let s = of(basic).unwrap();
        assert_eq!((s.port, s.http_port), (Some(4222), Some(8222)));
        assert_eq!(s.max_connections, Some(64_000)); // K is 1000, KB 1024
        let js =
            "jetstream {\n    store_dir: /nats/storage\n    max_mem: 1G\n    max_file: 100G\n}\n\
            http: 8222\n";
        let s = of(js).unwrap();
        assert_eq!(s.max_memory_store, Some(1_000_000_000));
        assert_eq!(s.max_file_store, Some(100_000_000_000));
        let js2 = "listen: 0.0.0.0:4222\nhttp: 0.0.0.0:8222\nserver_name: n1\n\
            jetstream: {\n  store_dir: \"/data/jetstream\"\n  max_memory_store: 1073741824\n\
              max_file_store: 10737418240\n  domain: \"production\"\n}\n\
            logfile_size_limit: 2GB\nlogfile_max_num: 5\n";
        let s = of(js2).unwrap();
        assert_eq!(s.http_host.as_deref(), Some("0.0.0.0"));
        assert_eq!(
            (s.log_size_limit, s.logfile_max_num),
            (Some(2 << 30), Some(5))
        );
    }

    #[test]
    fn keys_of_a_single_jetstream_server() {
        let s = of(
            "listen: 127.0.0.1:4333\nserver_name: n1\nmax_payload: 2MB\n\
                    ping_interval: \"30s\"\nping_max: 3\ndebug: true\n\
                    jetstream {\n store_dir: /data/js\n domain: edge\n sync_interval: always\n}\n\
                    jetcore { shards: 2, segment_bytes: 1mb, index_cache_bytes: 8mb }",
        )
        .unwrap();
        assert_eq!(s.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.port, Some(4333));
        assert_eq!(s.name.as_deref(), Some("n1"));
        assert_eq!(s.max_payload, Some(2 << 20));
        assert_eq!(s.ping_interval.as_deref(), Some("30s"));
        assert_eq!((s.ping_max, s.debug), (Some(3), Some(true)));
        assert_eq!(s.jetstream, Some(true));
        assert_eq!(s.store_dir.as_deref(), Some("/data/js"));
        assert_eq!(s.domain.as_deref(), Some("edge"));
        assert_eq!(s.sync.as_deref(), Some("always"));
        assert_eq!((s.shards, s.segment_bytes), (Some(2), Some(1 << 20)));
        assert_eq!(s.index_cache_bytes, Some(8 << 20));
        let s = of("port: 4222\njetstream: enabled\nping_interval: 120").unwrap();
        assert_eq!((s.port, s.jetstream), (Some(4222), Some(true)));
        assert_eq!(s.ping_interval.as_deref(), Some("120s"));
        let s = of("http: \"127.0.0.1:8222\"").unwrap();
        assert_eq!(s.http_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.http_port, Some(8222));
        let a = of("tls { cert_file: a, key_file: b }").unwrap();
        let b = of("tls { cert_file: c, key_file: b }").unwrap();
        assert_eq!(b.restart_only_changes(&a), ["tls"]);
        let s = of("jetstream { max_memory_store: 1GB, max_file: 10GB }").unwrap();
        assert_eq!(s.max_memory_store, Some(1 << 30));
        assert_eq!(s.max_file_store, Some(10 << 30));
        let s = of("monitor_port: 8223").unwrap();
        assert_eq!((s.http_host, s.http_port), (None, Some(8223)));
        assert!(of("http: [1]").is_err());
        let s = of("jetstream { sync_interval: \"2m\" }").unwrap();
        assert_eq!(s.sync.as_deref(), Some("interval=2m"));
        // Test code: an unwrap that fails is the test failing.
        let strict = of("jetstream { strict: true }").unwrap();
        assert_eq!(strict.js_strict, Some(true));
        let lenient = of("jetstream { store_dir: /d, strict: false }").unwrap();
        assert_eq!(lenient.js_strict, Some(false));
        assert_eq!(
            lenient.restart_only_changes(&strict),
            ["jetstream", "jetstream.strict"]
        );
        assert!(of("jetstream { strict: maybe }").is_err());
    }

    #[test]
    fn unknown_and_unsupported_keys_are_named_with_their_line() {
        assert_eq!(
            of("port: 1\nbogus: 2").unwrap_err(),
            "jetcore: t.conf:2: unknown configuration key 'bogus'"
        );
        assert!(of("\n\nwebsocket: {}")
            .unwrap_err()
            .starts_with("jetcore: t.conf:3: configuration key 'websocket' is not supported yet"));
        assert_eq!(
            of("jetstream {\n  max_stuff: 1\n}").unwrap_err(),
            "jetcore: t.conf:2: unknown configuration key 'jetstream.max_stuff'"
        );
        assert_eq!(
            of("port: \"x\"").unwrap_err(),
            "jetcore: t.conf:1: 'port' must be an integer"
        );
    }
}
