//! TLS for client connections with rustls (ring): the server's configuration
//! loaded from PEM files, and moving bytes through a session (decrypting what
//! the socket gave, encrypting what is queued). The handshake's I/O is in
//! `net::session`; everything here runs on the connection's shard, no locks.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConnection;

use crate::config_file::tls::TlsConfig;

/// The first byte of a TLS handshake record (what a TLS client sends first).
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// TLS as configured, ready for connections.
#[derive(Debug)]
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    pub verify: bool,
    /// `verify_and_map`: the client certificate names the user.
    pub map: bool,
    pub handshake_first: bool,
    pub timeout: Duration,
}

impl Tls {
    pub fn load(t: &TlsConfig) -> Result<Tls, String> {
        let (certs, key) = cert_and_key(
            t.cert_file.as_deref().unwrap_or(""),
            t.key_file.as_deref().unwrap_or(""),
        )?;
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(names) = &t.cipher_suites {
            provider.cipher_suites = cipher_suites(&provider.cipher_suites, names)?;
        }
        let provider = Arc::new(provider);
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions(t))
            .map_err(|e| format!("jetcore: TLS: {e}"))?;
        let builder = if t.verify {
            let ca_file = t.ca_file.as_deref().unwrap_or("");
            let roots = roots(ca_file)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("jetcore: TLS CA {ca_file}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("jetcore: TLS certificate and key: {e}"))?;
        Ok(Tls {
            config: Arc::new(config),
            verify: t.verify,
            map: t.map,
            handshake_first: t.handshake_first,
            timeout: Duration::from_secs_f64(t.timeout.filter(|s| *s > 0.0).unwrap_or(2.0)),
        })
    }

    /// A session for one connection; its buffers are bounded by what the
    /// connection queues (`max_pending`), not by rustls's defaults.
    pub fn session(&self) -> Result<ServerConnection, rustls::Error> {
        let mut s = ServerConnection::new(self.config.clone())?;
        s.set_buffer_limit(None);
        Ok(s)
    }
}

/// A leaf remote's client side: the hub's certificate checked against
/// `ca_file` (there are no system roots here, so a CA is required), and a
/// client certificate when `cert_file`/`key_file` are given.
pub fn client_config(t: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    let ca_file = t
        .ca_file
        .as_deref()
        .ok_or("jetcore: leafnodes remote tls needs ca_file (the CA of the hub's certificate)")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(t))
        .map_err(|e| format!("jetcore: TLS: {e}"))?
        .with_root_certificates(roots(ca_file)?);
    let config = match (&t.cert_file, &t.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let (certs, key) = cert_and_key(cert_file, key_file)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("jetcore: TLS certificate and key: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("jetcore: TLS: cert_file and key_file go together".into()),
    };
    Ok(Arc::new(config))
}

/// The protocol versions `min_version` allows.
fn versions(t: &TlsConfig) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match t.min_version.as_deref() {
        Some("1.3") => &TLS13_ONLY,
        _ => rustls::ALL_VERSIONS,
    }
}

/// The certificates of a CA file.
fn roots(ca_file: &str) -> Result<rustls::RootCertStore, String> {
    let fail = |e: &dyn std::fmt::Display| format!("jetcore: TLS CA {ca_file}: {e}");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_file).map_err(|e| fail(&e))? {
        roots.add(c.map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
    }
    Ok(roots)
}

/// A certificate chain and its key from PEM files.
fn cert_and_key(
    cert_file: &str,
    key_file: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("jetcore: TLS certificate {cert_file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "jetcore: TLS certificate {cert_file}: no certificate"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("jetcore: TLS key {key_file}: {e}"))?;
    Ok((certs, key))
}

/// The session's TLS version as nats-server shows it in `/connz` ("1.3").
pub fn version_name(tls: &rustls::CommonState) -> String {
    match tls.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3".into(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2".into(),
        Some(v) => format!("{v:?}"),
        None => String::new(),
    }
}

/// The session's cipher suite by Go's name (`TLS_AES_128_GCM_SHA256`;
/// `..._CHACHA20_POLY1305` without the `_SHA256` IANA adds for TLS 1.2).
pub fn suite_name(tls: &rustls::CommonState) -> String {
    let Some(suite) = tls.negotiated_cipher_suite() else {
        return String::new();
    };
    let name = suite.suite().as_str().unwrap_or("");
    // rustls writes TLS 1.3 suites as `TLS13_...`; Go (and IANA) as `TLS_...`.
    if let Some(rest) = name.strip_prefix("TLS13_") {
        return format!("TLS_{rest}");
    }
    match name.strip_suffix("_SHA256") {
        Some(short)
            if suite.version() == &rustls::version::TLS12
                && short.ends_with("CHACHA20_POLY1305") =>
        {
            short.to_string()
        }
        _ => name.to_string(),
    }
}

/// The TLS 1.2 suites named in `names` (Go's names, as nats-server takes
/// them: `..._CHACHA20_POLY1305` without the `_SHA256` IANA adds), and every
/// TLS 1.3 suite (Go does not let those be chosen either). A name rustls does
/// not offer is an error: it would otherwise be silently dropped.
fn cipher_suites(
    all: &[rustls::SupportedCipherSuite],
    names: &[String],
) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    let name_of = |s: &rustls::SupportedCipherSuite| s.suite().as_str().unwrap_or("");
    let is_13 = |s: &rustls::SupportedCipherSuite| s.version() == &rustls::version::TLS13;
    let known = |n: &str, s: &rustls::SupportedCipherSuite| {
        let name = name_of(s);
        name == n || name.strip_suffix("_SHA256") == Some(n)
    };
    for n in names {
        if !all.iter().any(|s| known(n, s)) {
            return Err(format!("jetcore: TLS cipher suite '{n}' is not supported"));
        }
    }
    Ok(all
        .iter()
        .filter(|s| is_13(s) || names.iter().any(|n| known(n, s)))
        .cloned()
        .collect())
}

/// Feeds `raw` (bytes read from the socket) to a session (server or client) and appends the
/// plaintext to `plain`. Errors are fatal for the connection.
pub fn decrypt<D>(
    tls: &mut rustls::ConnectionCommon<D>,
    mut raw: &[u8],
    plain: &mut BytesMut,
) -> std::io::Result<()> {
    while !raw.is_empty() {
        tls.read_tls(&mut raw)?;
        let state = tls
            .process_new_packets()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let n = state.plaintext_bytes_to_read();
        if n > 0 {
            let start = plain.len();
            plain.resize(start + n, 0);
            tls.reader().read_exact(&mut plain[start..])?;
        }
    }
    Ok(())
}

/// `decrypt` for a session of either side.
pub fn decrypt_any(
    tls: &mut rustls::Connection,
    raw: &[u8],
    plain: &mut BytesMut,
) -> std::io::Result<()> {
    match tls {
        rustls::Connection::Client(c) => decrypt(c, raw, plain),
        rustls::Connection::Server(s) => decrypt(s, raw, plain),
    }
}

/// `encrypt` for a session of either side.
pub fn encrypt_any(
    tls: &mut rustls::Connection,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    match tls {
        rustls::Connection::Client(c) => encrypt(c, plain, out),
        rustls::Connection::Server(s) => encrypt(s, plain, out),
    }
}

/// Encrypts `plain` and appends the records (and any the session has
/// pending, such as handshake or key-update messages) to `out`.
pub fn encrypt<D>(
    tls: &mut rustls::ConnectionCommon<D>,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    if !plain.is_empty() {
        tls.writer().write_all(plain)?;
    }
    while tls.wants_write() {
        tls.write_tls(out)?;
    }
    Ok(())
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suites_by_go_names_keep_tls13() {
        let all = rustls::crypto::ring::default_provider().cipher_suites;
        let names = vec![
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305".to_string(),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string(),
        ];
        let kept = cipher_suites(&all, &names).unwrap();
        let tls12: Vec<&str> = kept
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .map(|s| s.suite().as_str().unwrap())
            .collect();
        assert_eq!(
            tls12,
            [
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        assert!(kept.iter().any(|s| s.version() == &rustls::version::TLS13));
        let err = cipher_suites(&all, &["TLS_RSA_WITH_RC4_128_SHA".to_string()]).unwrap_err();
        assert!(
            err.contains("'TLS_RSA_WITH_RC4_128_SHA' is not supported"),
            "{err}"
        );
    }
}
