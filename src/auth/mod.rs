//! Who may connect (`Auth`: token, users with passwords or bcrypt hashes,
//! NKeys answering a nonce, `no_auth_user`) and what they may do (`Perms`:
//! publish and subscribe allow/deny lists, `allow_responses`).
//!
//! Built once at start-up from the configuration; shared read-only by every
//! shard (`Arc`). A connection holds its user's `Perms` and a bounded cache
//! of publish decisions (`perms::PubCache`), so a publish costs a hash lookup,
//! not a list walk.

pub mod certmap;
pub mod creds;
pub mod perms;

use std::sync::Arc;
use std::time::Duration;

use crate::config_file::auth::{AuthConfig, Permissions};
use crate::protocol::connect::ConnectOpts;
pub use perms::Perms;

/// A configured secret: as written, or a bcrypt hash (`$2a$`, `$2b$`, ...).
#[derive(Debug, Clone)]
enum Secret {
    Plain(String),
    Bcrypt(String),
}

impl Secret {
    fn new(s: &str) -> Secret {
        if s.starts_with("$2") && s.len() > 4 {
            Secret::Bcrypt(s.to_string())
        } else {
            Secret::Plain(s.to_string())
        }
    }

    fn matches(&self, given: &str) -> bool {
        match self {
            Secret::Plain(s) => constant_time_eq(s.as_bytes(), given.as_bytes()),
            Secret::Bcrypt(h) => bcrypt::verify(given, h).unwrap_or(false),
        }
    }
}

/// Compares without an early exit, so timing says nothing about the secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug)]
struct User {
    name: String,
    password: Secret,
    perms: Option<Arc<Perms>>,
}

#[derive(Debug)]
struct NkeyUser {
    public: String,
    perms: Option<Arc<Perms>>,
}

/// Authentication as configured.
#[derive(Debug)]
pub struct Auth {
    token: Option<Secret>,
    users: Vec<User>,
    nkeys: Vec<NkeyUser>,
    no_auth_user: Option<String>,
    /// How long a client has to send CONNECT (nats-server's default: 2 s).
    pub timeout: Duration,
}

/// Who a client turned out to be.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user name or NKey (for logs and monitoring; never a secret).
    pub name: String,
    pub perms: Option<Arc<Perms>>,
}

impl Auth {
    /// From the configuration (and `--user`/`--pass`/`--auth`, already merged
    /// into `cfg`); None when nothing asks for authentication.
    pub fn new(cfg: &AuthConfig, no_auth_user: Option<&str>) -> Result<Option<Auth>, String> {
        if cfg.is_empty() {
            if no_auth_user.is_some() {
                return Err("jetcore: no_auth_user needs users to be configured".into());
            }
            return Ok(None);
        }
        let perms = |p: &Option<Permissions>| {
            p.as_ref()
                .or(cfg.default_permissions.as_ref())
                .map(|p| Arc::new(Perms::new(p)))
        };
        let mut users = Vec::new();
        let mut nkeys = Vec::new();
        for u in &cfg.users {
            match (&u.user, &u.nkey) {
                (Some(name), _) => users.push(User {
                    name: name.clone(),
                    password: Secret::new(u.password.as_deref().unwrap_or("")),
                    perms: perms(&u.permissions),
                }),
                (None, Some(key)) => {
                    if nkeys::KeyPair::from_public_key(key).is_err() || !key.starts_with('U') {
                        return Err(format!("jetcore: not a valid user nkey: {key}"));
                    }
                    nkeys.push(NkeyUser {
                        public: key.clone(),
                        perms: perms(&u.permissions),
                    });
                }
                (None, None) => unreachable!("checked when read"),
            }
        }
        if let Some(n) = no_auth_user {
            if !users.iter().any(|u| u.name == n) && !nkeys.iter().any(|k| k.public == n) {
                return Err(format!(
                    "jetcore: no_auth_user: \"{n}\" not present as user or nkey in authorization block or account configuration"
                ));
            }
        }
        let timeout = cfg.timeout.filter(|t| *t > 0.0).unwrap_or(2.0);
        Ok(Some(Auth {
            token: cfg.token.as_deref().map(Secret::new),
            users,
            nkeys,
            no_auth_user: no_auth_user.map(str::to_string),
            timeout: Duration::from_secs_f64(timeout),
        }))
    }

    /// Clients must answer a nonce (NKey users exist): INFO carries one.
    pub fn needs_nonce(&self) -> bool {
        !self.nkeys.is_empty()
    }

    /// Checks a CONNECT's credentials; `nonce` is the one sent in INFO.
    pub fn check(&self, opts: &ConnectOpts, nonce: &str) -> Option<Identity> {
        let none = opts.auth_token.is_empty() && opts.user.is_empty() && opts.nkey.is_empty();
        if none {
            let name = self.no_auth_user.as_deref()?;
            return self.named(name);
        }
        if let Some(token) = &self.token {
            return token.matches(&opts.auth_token).then(|| Identity {
                name: String::new(),
                perms: None,
            });
        }
        if !opts.nkey.is_empty() {
            let u = self.nkeys.iter().find(|k| k.public == opts.nkey)?;
            let kp = nkeys::KeyPair::from_public_key(&u.public).ok()?;
            let sig = decode_sig(&opts.sig)?;
            kp.verify(nonce.as_bytes(), &sig).ok()?;
            return Some(Identity {
                name: u.public.clone(),
                perms: u.perms.clone(),
            });
        }
        let u = self.users.iter().find(|u| u.name == opts.user)?;
        u.password.matches(&opts.pass).then(|| Identity {
            name: u.name.clone(),
            perms: u.perms.clone(),
        })
    }

    /// `verify_and_map`: the user a client certificate stands for (its
    /// e-mail addresses, DNS names and URIs as user names, then its subject
    /// as a distinguished name), as nats-server maps them.
    pub fn check_cert(&self, names: &certmap::CertNames) -> Option<Identity> {
        let found = |u: &User| Identity {
            name: u.name.clone(),
            perms: u.perms.clone(),
        };
        for alt in &names.alt {
            if let Some(u) = self.users.iter().find(|u| &u.name == alt) {
                return Some(found(u));
            }
        }
        self.users
            .iter()
            .find(|u| {
                certmap::parse_dn(&u.name).is_some_and(|dn| certmap::dn_matches(&dn, &names.dn))
            })
            .map(found)
    }

    /// A user or NKey of that name is configured.
    pub fn has_user(&self, name: &str) -> bool {
        self.users.iter().any(|u| u.name == name) || self.nkeys.iter().any(|k| k.public == name)
    }

    fn named(&self, name: &str) -> Option<Identity> {
        if let Some(u) = self.users.iter().find(|u| u.name == name) {
            return Some(Identity {
                name: u.name.clone(),
                perms: u.perms.clone(),
            });
        }
        let k = self.nkeys.iter().find(|k| k.public == name)?;
        Some(Identity {
            name: k.public.clone(),
            perms: k.perms.clone(),
        })
    }
}

/// A signature as clients send it: base64 URL-safe, raw or padded (nats-server
/// accepts both), or standard base64.
fn decode_sig(sig: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    e.decode(sig.trim_end_matches('='))
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(sig).ok())
}

/// A random nonce for INFO, from the kernel's generator (it must not be
/// guessable): nats-server's form, 11 bytes in base64 URL-safe without padding.
pub fn nonce() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 11];
    random_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Fills `bytes` from the kernel's generator.
pub fn random_bytes(bytes: &mut [u8]) {
    // SAFETY: getrandom writes at most `bytes.len()` bytes into `bytes`.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n, bytes.len() as isize, "getrandom failed");
}
