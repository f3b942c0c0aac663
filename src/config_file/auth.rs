//! The `authorization` block and its permissions, read as nats-server reads
//! them: `token`, `user`/`password`, `users: [...]` (passwords may be bcrypt
//! hashes; `nkey` users), `timeout`, `default_permissions`, and per user
//! `permissions { publish, subscribe, allow_responses }` where a permission is
//! a subject, a list, or `{ allow, deny }`. Data only: `auth` checks it.

use crate::conf::{Item, Value};
use crate::config_file::{kind, seconds, string, unknown};

/// Who may connect, and with which permissions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthConfig {
    pub token: Option<String>,
    pub users: Vec<UserConfig>,
    /// Seconds a client has to send CONNECT (nats-server's `timeout`).
    pub timeout: Option<f64>,
    /// The users came as a `users` list (command-line users do not replace it).
    pub users_list: bool,
    pub default_permissions: Option<Permissions>,
}

impl AuthConfig {
    pub fn is_empty(&self) -> bool {
        self.token.is_none() && self.users.is_empty()
    }
}

/// One user: a name and password (either may be a bcrypt hash), or an NKey.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserConfig {
    pub user: Option<String>,
    pub password: Option<String>,
    pub nkey: Option<String>,
    pub permissions: Option<Permissions>,
}

/// A user's permissions; None: no restriction of that kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Permissions {
    pub publish: Option<SubjectPermission>,
    pub subscribe: Option<SubjectPermission>,
    pub allow_responses: Option<ResponsePermission>,
}

/// Allowed and denied subjects (wildcards allowed). `allow` None: all not
/// denied; Some: only those.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectPermission {
    pub allow: Option<Vec<String>>,
    pub deny: Vec<String>,
}

/// `allow_responses`: replies to received requests, at most `max` per
/// request, within `expires`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsePermission {
    pub max: u32,
    pub expires: std::time::Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        // nats-server's defaults: one reply, within two minutes.
        ResponsePermission {
            max: 1,
            expires: std::time::Duration::from_secs(120),
        }
    }
}

/// The `authorization` block.
pub fn authorization(item: &Item) -> Result<AuthConfig, String> {
    let Value::Map(m) = &item.value else {
        return Err(kind("authorization", item, "a block"));
    };
    let mut a = AuthConfig::default();
    let mut single = UserConfig::default();
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "token" => a.token = Some(string(k, v)?),
            "user" | "username" => single.user = Some(string(k, v)?),
            "password" | "pass" => single.password = Some(string(k, v)?),
            "timeout" => a.timeout = Some(seconds(k, v)?),
            "users" => {
                let Value::Array(list) = &v.value else {
                    return Err(kind(k, v, "a list of users"));
                };
                for u in list {
                    a.users.push(user(u)?);
                }
                a.users_list = true;
            }
            "default_permissions" => a.default_permissions = Some(permissions(k, v)?),
            "permissions" => single.permissions = Some(permissions(k, v)?),
            _ => return Err(unknown(&format!("authorization.{k}"), v)),
        }
    }
    if single.user.is_some() || single.password.is_some() {
        if single.user.is_none() || single.password.is_none() {
            return Err(format!(
                "jetcore: {}: authorization needs both user and password",
                item.at()
            ));
        }
        if !a.users.is_empty() {
            return Err(format!(
                "jetcore: {}: can not have a single user/pass and a users array",
                item.at()
            ));
        }
        a.users.push(single);
    }
    if a.token.is_some() && !a.users.is_empty() {
        return Err(format!(
            "jetcore: {}: can not have a token and a users array",
            item.at()
        ));
    }
    Ok(a)
}

fn user(item: &Item) -> Result<UserConfig, String> {
    let Value::Map(m) = &item.value else {
        return Err(kind("users", item, "a list of blocks"));
    };
    let mut u = UserConfig::default();
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "user" | "username" => u.user = Some(string(k, v)?),
            "password" | "pass" => u.password = Some(string(k, v)?),
            "nkey" => u.nkey = Some(string(k, v)?),
            "permissions" | "permission" => u.permissions = Some(permissions(k, v)?),
            _ => return Err(unknown(&format!("users.{k}"), v)),
        }
    }
    match (&u.user, &u.nkey) {
        (Some(_), None) | (None, Some(_)) => Ok(u),
        _ => Err(format!(
            "jetcore: {}: a user needs a user name or an nkey",
            item.at()
        )),
    }
}

/// `permissions { publish, subscribe, allow_responses }`.
pub fn permissions(key: &str, item: &Item) -> Result<Permissions, String> {
    let Value::Map(m) = &item.value else {
        return Err(kind(key, item, "a block"));
    };
    let mut p = Permissions::default();
    for (k, v) in m {
        match k.to_ascii_lowercase().as_str() {
            "publish" | "pub" => p.publish = Some(subject_permission(k, v)?),
            "subscribe" | "sub" => p.subscribe = Some(subject_permission(k, v)?),
            "allow_responses" => p.allow_responses = responses(k, v)?,
            _ => return Err(unknown(&format!("permissions.{k}"), v)),
        }
    }
    Ok(p)
}

/// A subject, a list of subjects (both: allowed), or `{ allow, deny }`.
fn subject_permission(key: &str, item: &Item) -> Result<SubjectPermission, String> {
    match &item.value {
        Value::Str(_) | Value::Array(_) => Ok(SubjectPermission {
            allow: Some(subjects(key, item)?),
            deny: Vec::new(),
        }),
        Value::Map(m) => {
            let mut p = SubjectPermission::default();
            for (k, v) in m {
                match k.to_ascii_lowercase().as_str() {
                    "allow" => p.allow = Some(subjects(k, v)?),
                    "deny" => p.deny = subjects(k, v)?,
                    _ => return Err(unknown(&format!("{key}.{k}"), v)),
                }
            }
            Ok(p)
        }
        _ => Err(kind(key, item, "a subject, a list or { allow, deny }")),
    }
}

fn subjects(key: &str, item: &Item) -> Result<Vec<String>, String> {
    let list: Vec<String> = match &item.value {
        Value::Str(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|i| string(key, i)).collect::<Result<_, _>>()?,
        _ => return Err(kind(key, item, "a subject or a list of subjects")),
    };
    for s in &list {
        // A queue permission is "<subject> <queue>".
        let subject = s.split_whitespace().next().unwrap_or("");
        if !crate::subject::valid_subscribe(subject.as_bytes()) {
            return Err(format!(
                "jetcore: {}: invalid subject '{s}' in '{key}'",
                item.at()
            ));
        }
    }
    Ok(list)
}

fn responses(key: &str, item: &Item) -> Result<Option<ResponsePermission>, String> {
    match &item.value {
        Value::Bool(false) => Ok(None),
        Value::Bool(true) => Ok(Some(ResponsePermission::default())),
        Value::Map(m) => {
            let mut r = ResponsePermission::default();
            for (k, v) in m {
                match k.to_ascii_lowercase().as_str() {
                    "max" => {
                        r.max = match &v.value {
                            Value::Int(i) if *i >= 0 => (*i).min(u32::MAX as i64) as u32,
                            _ => return Err(kind(k, v, "a count")),
                        }
                    }
                    "expires" | "ttl" => {
                        let text = crate::config_file::duration(k, v)?;
                        r.expires = crate::conf::parse_duration(&text).unwrap_or_default();
                    }
                    _ => return Err(unknown(&format!("allow_responses.{k}"), v)),
                }
            }
            if r.max == 0 {
                r.max = 1;
            }
            Ok(Some(r))
        }
        _ => Err(kind(key, item, "true, false or { max, expires }")),
    }
}
