//! The `tls` block (and `--tls*` flags): certificate and key, the CA that
//! client certificates must chain to (`verify`), the handshake timeout,
//! `handshake_first`, `min_version`. Data only: `net::tls` loads it.

use crate::conf::{Item, Value};
use crate::config_file::{boolean, kind, not_yet, seconds, string, unknown};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsConfig {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    /// Clients must present a certificate signed by `ca_file`.
    pub verify: bool,
    /// `verify_and_map`: also, the certificate says which user the client is.
    pub map: bool,
    /// Seconds the handshake may take (nats-server's default: 2).
    pub timeout: Option<f64>,
    /// The handshake comes before INFO (clients must be told to expect it).
    pub handshake_first: bool,
    /// "1.2" or "1.3".
    pub min_version: Option<String>,
    /// TLS 1.2 cipher suites allowed, by Go's names (TLS 1.3's are fixed).
    pub cipher_suites: Option<Vec<String>>,
}

pub fn tls(item: &Item) -> Result<TlsConfig, String> {
    let t = tls_block(item)?;
    if t.cert_file.is_none() || t.key_file.is_none() {
        return Err(format!(
            "jetcore: {}: tls needs cert_file and key_file",
            item.at()
        ));
    }
    Ok(t)
}

/// A client side's `tls` block (a leaf remote's): the same keys, the
/// certificate optional (`ca_file` is what it needs; `client_config` says so).
pub fn tls_client(item: &Item) -> Result<TlsConfig, String> {
    tls_block(item)
}

fn tls_block(item: &Item) -> Result<TlsConfig, String> {
    let Value::Map(m) = &item.value else {
        return Err(kind("tls", item, "a block"));
    };
    let mut t = TlsConfig::default();
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "cert_file" => t.cert_file = Some(string(k, v)?),
            "key_file" => t.key_file = Some(string(k, v)?),
            "ca_file" => t.ca_file = Some(string(k, v)?),
            "verify" => t.verify = boolean(k, v)?,
            "timeout" => t.timeout = Some(seconds(k, v)?),
            "handshake_first" | "first" | "immediate" => {
                t.handshake_first = match &v.value {
                    Value::Bool(b) => *b,
                    // nats-server also takes a fallback delay here.
                    _ => return Err(not_yet(&format!("tls.{k} with a delay"), v)),
                }
            }
            "min_version" => {
                let s = string(k, v)?;
                if !matches!(s.as_str(), "1.2" | "1.3") {
                    return Err(kind(k, v, "\"1.2\" or \"1.3\""));
                }
                t.min_version = Some(s);
            }
            "verify_and_map" => {
                t.map = boolean(k, v)?;
                t.verify |= t.map;
            }
            "cipher_suites" => {
                let Value::Array(list) = &v.value else {
                    return Err(kind(k, v, "a list of cipher suite names"));
                };
                let names = list
                    .iter()
                    .map(|i| string(k, i))
                    .collect::<Result<_, _>>()?;
                t.cipher_suites = Some(names);
            }
            "verify_cert_and_check_known_urls"
            | "curve_preferences"
            | "pinned_certs"
            | "cert_store"
            | "cert_match"
            | "ocsp_peer"
            | "certs"
            | "insecure" => return Err(not_yet(&format!("tls.{k}"), v)),
            _ => return Err(unknown(&format!("tls.{k}"), v)),
        }
    }
    if t.verify && t.ca_file.is_none() {
        return Err(format!("jetcore: {}: tls verify needs ca_file", item.at()));
    }
    Ok(t)
}
