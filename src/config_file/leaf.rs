//! The `leafnodes` block, as nats-server reads it: a listener for leaf
//! connections (`listen` or `host`/`port`, `advertise`, `no_advertise`,
//! `authorization`, `reconnect`, `isolate_leafnode_interest`, `min_version`,
//! `dial_timeout`) and `remotes` to dial (`url`/`urls` with
//! user information, `account`, `credentials`, `nkey`, `deny_imports`,
//! `deny_exports`, `hub`, `disabled`, `compression`, `tls`, isolation,
//! `dial_timeout`), and the
//! listener's `tls`. jetcore has one account: an `account` other than
//! nats-server's global `$G` is refused, as are keys it does not honour yet
//! (websocket, compression other than off).

use crate::conf::{Item, Value};
use crate::config_file::auth::{authorization, AuthConfig};
use crate::config_file::tls::TlsConfig;
use crate::config_file::{boolean, duration, kind, not_yet, string, unknown};

/// The account every leaf connection is bound to.
pub const ACCOUNT: &str = "$G";

/// `leafnodes { ... }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeafConfig {
    /// Where to accept leaf connections (None: no listener).
    pub listen: Option<(String, u16)>,
    /// The `host:port` put in `leafnode_urls` (default: the listen address).
    pub advertise: Option<String>,
    pub no_advertise: bool,
    /// Who may connect as a leaf (None: the server's client authorization).
    pub auth: Option<AuthConfig>,
    /// Wait before redialling a remote (a Go duration).
    pub reconnect: Option<String>,
    pub remotes: Vec<RemoteConfig>,
    /// TLS on the leaf port (the `tls` block's keys).
    pub tls: Option<TlsConfig>,
    /// Interest from other leaf connections is never sent on any leaf
    /// connection (`isolate_leafnode_interest`).
    pub isolate: bool,
    /// Dialling servers older than this are refused (`min_version`, at
    /// least 2.8.0 as nats-server requires).
    pub min_version: Option<String>,
    /// How long a dial may take, for every remote without its own (a Go
    /// duration; nats-server's default 1 s).
    pub dial_timeout: Option<String>,
}

/// One `remotes` entry: a hub to dial.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteConfig {
    pub urls: Vec<String>,
    /// A credentials file (user JWT and NKey seed) to sign the hub's nonce with.
    pub credentials: Option<String>,
    /// An NKey seed to sign with (without a JWT).
    pub nkey: Option<String>,
    /// Not sent to the hub (`deny_exports`), not taken from it and not
    /// advertised to it (`deny_imports`, also sent as CONNECT's `deny_pub`).
    pub deny_exports: Vec<String>,
    pub deny_imports: Vec<String>,
    /// We play the hub on this connection (`is_hub` in CONNECT).
    pub hub: bool,
    /// Configured but not dialled (nats-server's `disabled`).
    pub disabled: bool,
    /// TLS to the hub: its CA (`ca_file`), a client certificate
    /// (`cert_file`, `key_file`), `handshake_first`, `min_version`.
    pub tls: Option<TlsConfig>,
    /// Interest from other leaf connections is not sent to this hub.
    pub isolate: bool,
    /// Ask the hub not to send us interest from its other leaf connections.
    pub request_isolation: bool,
    pub dial_timeout: Option<String>,
}

/// Reads the block.
pub fn leafnodes(item: &Item) -> Result<LeafConfig, String> {
    let Value::Map(m) = &item.value else {
        return Err(kind("leafnodes", item, "a block"));
    };
    let mut c = LeafConfig::default();
    let (mut host, mut port) = (None, None);
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "listen" => {
                let (h, p) = crate::config_file::host_port("leafnodes.listen", v)?;
                (host, port) = (h.or(host), Some(p));
            }
            "host" | "net" => host = Some(string(k, v)?),
            "port" => port = Some(crate::config_file::int(k, v)?),
            "advertise" => c.advertise = Some(string(k, v)?),
            "no_advertise" => c.no_advertise = boolean(k, v)?,
            "authorization" => c.auth = Some(leaf_authorization(v)?),
            "reconnect" | "reconnect_interval" => c.reconnect = Some(duration(k, v)?),
            "remotes" => {
                let Value::Array(list) = &v.value else {
                    return Err(kind("leafnodes.remotes", v, "a list of blocks"));
                };
                for r in list {
                    c.remotes.push(remote(r)?);
                }
            }
            "compression" => compression_off(k, v)?,
            "tls" => c.tls = Some(crate::config_file::tls::tls(v)?),
            "isolate_leafnode_interest" | "isolate" => c.isolate = boolean(k, v)?,
            "min_version" | "minimum_version" => c.min_version = Some(min_version(k, v)?),
            "dial_timeout" => c.dial_timeout = Some(duration(k, v)?),
            "write_deadline" => return Err(not_yet(&format!("leafnodes.{k}"), v)),
            _ => return Err(unknown(&format!("leafnodes.{k}"), v)),
        }
    }
    if let Some(p) = port {
        // nats-server: a port of -1 picks a random one; 0 means the default.
        let p = match p {
            -1 => 0,
            0 => i64::from(crate::limits::LEAF_PORT_DEFAULT),
            p => p,
        };
        let p = u16::try_from(p).map_err(|_| {
            format!(
                "jetcore: {}: leafnodes.port: {p} is not a valid port",
                item.at()
            )
        })?;
        c.listen = Some((host.unwrap_or_else(|| "0.0.0.0".into()), p));
    } else if host.is_some() {
        c.listen = Some((host.unwrap_or_default(), crate::limits::LEAF_PORT_DEFAULT));
    }
    Ok(c)
}

/// `authorization` inside `leafnodes`: the client block's keys, and an
/// `account` (ours is `$G`) for the block and for each user.
fn leaf_authorization(item: &Item) -> Result<AuthConfig, String> {
    let strip = |item: &Item| -> Result<Item, String> {
        let Value::Map(m) = &item.value else {
            return Ok(item.clone());
        };
        let mut kept = Vec::new();
        for (k, v) in m {
            if k.eq_ignore_ascii_case("account") {
                account(k, v)?;
            } else {
                kept.push((k.clone(), v.clone()));
            }
        }
        Ok(Item {
            value: Value::Map(kept),
            ..item.clone()
        })
    };
    let mut top = strip(item)?;
    if let Value::Map(m) = &mut top.value {
        for (k, v) in m.iter_mut() {
            if k.eq_ignore_ascii_case("users") {
                if let Value::Array(list) = &mut v.value {
                    for u in list.iter_mut() {
                        *u = strip(u)?;
                    }
                }
            }
        }
    }
    authorization(&top)
}

fn account(key: &str, item: &Item) -> Result<(), String> {
    let name = string(key, item)?;
    if name != ACCOUNT {
        return Err(format!(
            "jetcore: {}: account \"{name}\": jetcore has one account, \"{ACCOUNT}\" \
             (accounts are not supported)",
            item.at()
        ));
    }
    Ok(())
}

/// `min_version`: a version of at least 2.8.0, as nats-server checks it.
fn min_version(key: &str, item: &Item) -> Result<String, String> {
    let v = string(key, item)?;
    match version_parts(&v) {
        Some(p) if p >= (2, 8, 0) => Ok(v),
        Some(_) => Err(format!(
            "jetcore: {}: leafnodes.{key}: the minimum version should be at least 2.8.0",
            item.at()
        )),
        None => Err(format!(
            "jetcore: {}: leafnodes.{key}: invalid leafnode's minimum version: {v}",
            item.at()
        )),
    }
}

/// (major, minor, patch) of "v2.10.3" or "2.10.3-beta".
fn version_parts(v: &str) -> Option<(u32, u32, u32)> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

/// Whether a peer's `version` is at least `min` (an unreadable one is not).
pub fn version_at_least(version: &str, min: &str) -> bool {
    match (version_parts(version), version_parts(min)) {
        (Some(v), Some(m)) => v >= m,
        _ => false,
    }
}

fn compression_off(key: &str, item: &Item) -> Result<(), String> {
    let off = match &item.value {
        Value::Bool(b) => !*b,
        Value::Str(s) => ["off", "disabled", "false"].contains(&s.to_ascii_lowercase().as_str()),
        Value::Map(m) => m.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("mode")
                && matches!(&v.value, Value::Str(s) if s.eq_ignore_ascii_case("off"))
        }),
        _ => false,
    };
    if off {
        return Ok(());
    }
    Err(format!(
        "jetcore: {}: {key}: jetcore does not compress leaf connections yet; \
         set it to off (a nats-server peer then sends plain text)",
        item.at()
    ))
}

fn remote(item: &Item) -> Result<RemoteConfig, String> {
    let Value::Map(m) = &item.value else {
        return Err(kind("leafnodes.remotes", item, "a list of blocks"));
    };
    let mut r = RemoteConfig::default();
    let list = |k: &str, v: &Item| -> Result<Vec<String>, String> {
        match &v.value {
            Value::Array(items) => items.iter().map(|i| string(k, i)).collect(),
            _ => Ok(vec![string(k, v)?]),
        }
    };
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "url" | "urls" => r.urls.extend(list(k, v)?),
            "account" | "local" => account(k, v)?,
            "credentials" | "creds" => r.credentials = Some(string(k, v)?),
            "nkey" | "seed" => r.nkey = Some(string(k, v)?),
            "deny_exports" => r.deny_exports = list(k, v)?,
            "deny_imports" => r.deny_imports = list(k, v)?,
            "hub" => r.hub = boolean(k, v)?,
            "disabled" => r.disabled = boolean(k, v)?,
            "compression" => compression_off(k, v)?,
            "tls" => r.tls = Some(crate::config_file::tls::tls_client(v)?),
            "isolate_leafnode_interest" | "isolate" => r.isolate = boolean(k, v)?,
            "request_isolation" => r.request_isolation = boolean(k, v)?,
            "dial_timeout" => r.dial_timeout = Some(duration(k, v)?),
            "ws_compression"
            | "ws_no_masking"
            | "jetstream_cluster_migrate"
            | "no_randomize"
            | "first_info_timeout"
            | "proxy" => return Err(not_yet(&format!("leafnodes.remotes.{k}"), v)),
            _ => return Err(unknown(&format!("leafnodes.remotes.{k}"), v)),
        }
    }
    if r.urls.is_empty() {
        return Err(format!(
            "jetcore: {}: a leafnodes remote needs a url",
            item.at()
        ));
    }
    for u in &r.urls {
        parse_url(u).map_err(|e| format!("jetcore: {}: leafnodes remote url: {e}", item.at()))?;
        if u.starts_with("ws://") || u.starts_with("wss://") {
            return Err(not_yet(&format!("leafnodes.remotes.url {u}"), item));
        }
    }
    if r.credentials.is_some() && r.nkey.is_some() {
        return Err(format!(
            "jetcore: {}: a leafnodes remote takes credentials or an nkey, not both",
            item.at()
        ));
    }
    Ok(r)
}

/// A remote's URL: (host:port, user, password). `nats://`, `nats-leaf://` or
/// no scheme; the port defaults to 7422.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteUrl {
    pub addr: String,
    /// `tls://`: TLS whatever the hub's INFO says.
    pub tls: bool,
    pub user: String,
    pub pass: String,
}

pub fn parse_url(url: &str) -> Result<RemoteUrl, String> {
    let rest = ["nats://", "nats-leaf://", "tls://", "ws://", "wss://"]
        .iter()
        .find_map(|s| url.strip_prefix(s))
        .unwrap_or(url);
    if rest.contains("://") {
        return Err(format!("unsupported scheme in '{url}'"));
    }
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, pass) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => (u.to_string(), String::new()),
        },
        None => (String::new(), String::new()),
    };
    if hostport.is_empty() {
        return Err(format!("no host in '{url}'"));
    }
    let has_port = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => {
            p.parse::<u16>()
                .map_err(|_| format!("invalid port in '{url}'"))?;
            true
        }
        _ => false,
    };
    let addr = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{}", crate::limits::LEAF_PORT_DEFAULT)
    };
    Ok(RemoteUrl {
        addr,
        user,
        pass,
        tls: url.starts_with("tls://"),
    })
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str) -> Result<LeafConfig, String> {
        let top = crate::conf::parse_str(text, "t.conf").unwrap();
        leafnodes(&top[0].1)
    }

    /// The reference's captured configurations, and nats-server's docs'.
    #[test]
    fn configs_written_for_nats_server_load() {
        let c = of("leafnodes { listen: 127.0.0.1:17422 }").unwrap();
        assert_eq!(c.listen, Some(("127.0.0.1".into(), 17422)));
        let c = of("leafnodes { remotes: [ { url: \"nats://127.0.0.1:17423\", \
                    compression: off } ] }")
        .unwrap();
        assert_eq!(c.remotes[0].urls, ["nats://127.0.0.1:17423"]);
        let c = of("leafnodes {\n port: 7422\n authorization {\n user: leaf\n \
                    password: s3cr3t\n account: \"$G\"\n }\n reconnect: \"5s\"\n}")
        .unwrap();
        assert_eq!(c.listen, Some(("0.0.0.0".into(), 7422)));
        assert_eq!(c.auth.unwrap().users[0].user.as_deref(), Some("leaf"));
        assert_eq!(c.reconnect.as_deref(), Some("5s"));
        let c = of(
            "leafnodes { remotes = [ { urls: [\"nats-leaf://u:p@hub:7422\", \
                    \"hub2\"], deny_imports: [\"a.>\"], deny_exports: \"b\", hub: true } ] }",
        )
        .unwrap();
        let r = &c.remotes[0];
        assert_eq!(r.deny_imports, ["a.>"]);
        assert_eq!(r.deny_exports, ["b"]);
        assert!(r.hub && !r.disabled);
        let c = of(
            "leafnodes { isolate_leafnode_interest: true, min_version: 2.10.0, \
                    dial_timeout: \"3s\", remotes: [ { url: h, isolate: true, \
                    request_isolation: true, dial_timeout: 2 } ] }",
        )
        .unwrap();
        assert!(c.isolate && c.remotes[0].isolate && c.remotes[0].request_isolation);
        assert_eq!(c.min_version.as_deref(), Some("2.10.0"));
        assert_eq!(c.remotes[0].dial_timeout.as_deref(), Some("2s"));
        assert!(of("leafnodes { min_version: 2.7.9 }")
            .unwrap_err()
            .contains("at least 2.8.0"));
        assert!(of("leafnodes { min_version: banana }").is_err());
        assert!(version_at_least("2.15.1", "2.10.0"));
        assert!(version_at_least("v2.10.0-beta.1", "2.10.0"));
        assert!(!version_at_least("2.9.23", "2.10.0"));
        assert!(!version_at_least("", "2.10.0"));
        let c = of("leafnodes { remotes: [ { url: \"h\", disabled: true } ] }").unwrap();
        assert!(c.remotes[0].disabled);
        assert_eq!(
            parse_url(&r.urls[0]).unwrap(),
            RemoteUrl {
                addr: "hub:7422".into(),
                user: "u".into(),
                pass: "p".into(),
                tls: false,
            }
        );
        assert_eq!(parse_url("hub2").unwrap().addr, "hub2:7422");
        let c = of(
            "leafnodes { authorization { users: [ { user: a, password: b, \
                    account: \"$G\" } ] } }",
        )
        .unwrap();
        assert_eq!(c.auth.unwrap().users.len(), 1);
    }

    #[test]
    fn what_jetcore_cannot_honour_is_refused_by_name() {
        let e =
            of("leafnodes {\n remotes: [ { url: \"nats://h:1\", account: SALES } ] }").unwrap_err();
        assert!(e.contains("t.conf:2") && e.contains("SALES"), "{e}");
        let e = of("leafnodes { compression: s2_auto }").unwrap_err();
        assert!(e.contains("does not compress"), "{e}");
        let c = of(
            "leafnodes { tls { cert_file: a, key_file: b }, remotes: [ { url: \
                    \"tls://h\", tls { ca_file: c } } ] }",
        )
        .unwrap();
        assert_eq!(c.tls.unwrap().cert_file.as_deref(), Some("a"));
        assert_eq!(
            c.remotes[0].tls.as_ref().unwrap().ca_file.as_deref(),
            Some("c")
        );
        assert!(parse_url(&c.remotes[0].urls[0]).unwrap().tls);
        let e = of("leafnodes { remotes: [ { url: \"wss://h\" } ] }").unwrap_err();
        assert!(e.contains("is not supported yet"), "{e}");
        let e = of("leafnodes { remotes: [ { urls: [] } ] }").unwrap_err();
        assert!(e.contains("needs a url"), "{e}");
        let e = of("leafnodes { remotes: [ { url: \"http://x\" } ] }").unwrap_err();
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = of("leafnodes { bogus: 1 }").unwrap_err();
        assert!(
            e.contains("unknown configuration key 'leafnodes.bogus'"),
            "{e}"
        );
        assert!(of("leafnodes { port: 70000 }").is_err());
    }
}
