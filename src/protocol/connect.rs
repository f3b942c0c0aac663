//! INFO and CONNECT JSON (a serde boundary). CONNECT is decoded as Go's decoder
//! would: unknown fields ignored, a repeated key keeps its last value, keys match
//! case-insensitively.

use serde::{Deserialize, Serialize};

/// The INFO a client receives on connect, less the per-connection fields
/// (`client_id`, `client_ip`) that follow it. Field order is nats-server's.
#[derive(Debug, Clone, Serialize)]
pub struct Info<'a> {
    pub server_id: &'a str,
    pub server_name: &'a str,
    pub version: &'a str,
    pub proto: u32,
    pub go: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub headers: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    pub max_payload: usize,
    pub jetstream: bool,
}

/// Options a client sends in CONNECT. Missing fields take nats-server's defaults.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ConnectOpts {
    pub verbose: bool,
    pub pedantic: bool,
    pub tls_required: bool,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub protocol: i64,
    pub name: String,
    pub lang: String,
    pub version: String,
    /// Credentials: a token, a user and password, or an NKey and its
    /// signature of the INFO nonce.
    pub auth_token: String,
    pub user: String,
    pub pass: String,
    pub nkey: String,
    pub sig: String,
}

impl Default for ConnectOpts {
    fn default() -> Self {
        ConnectOpts {
            // nats-server's defaults before and in a CONNECT that omits the field.
            verbose: true,
            pedantic: false,
            tls_required: false,
            echo: true,
            headers: false,
            no_responders: false,
            protocol: 0,
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            auth_token: String::new(),
            user: String::new(),
            pass: String::new(),
            nkey: String::new(),
            sig: String::new(),
        }
    }
}

impl ConnectOpts {
    /// Decodes CONNECT JSON with Go's rules.
    pub fn decode(json: &[u8]) -> Result<ConnectOpts, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_slice(json)?;
        let value = match value {
            serde_json::Value::Object(map) => serde_json::Value::Object(
                // Go leaves a field untouched when its value is null.
                map.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
            ),
            other => other,
        };
        serde_json::from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_defaults_unknown_fields_and_repeats() {
        let opts = ConnectOpts::decode(br#"{"verbose":true,"x":1,"lang":null,"pedantic":null,"Echo":false,"echo":false,"NAME":"a","name":"b"}"#)
            .unwrap();
        assert!(opts.verbose);
        assert!(!opts.echo);
        assert_eq!(opts.name, "b");
        let opts = ConnectOpts::decode(b"{}").unwrap();
        assert!(opts.echo);
        assert!(opts.verbose);
        assert!(!opts.headers);
        assert!(ConnectOpts::decode(b"{bad").is_err());
    }
}
