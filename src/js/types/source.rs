//! `mirror` and `sources[]` entries of a stream config (nats-server's
//! `StreamSource`), their checks in nats-server's order and with its codes,
//! and the names nats-server derives from them: the source's index name
//! (`iname`, which tells duplicates apart and is written into every sourced
//! message's `Nats-Stream-Source` header) and the 8-character hashes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::js::types::errors::ApiError;
use crate::subject;
use crate::subject::transform::Transform;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One origin of a mirror or a source, as the API sends it (field order and
/// omissions are nats-server's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSource {
    pub name: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub opt_start_seq: u64,
    /// Echoed exactly as sent (nats-server keeps the client's offset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<SubjectTransform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    /// Durable sourcing (nats-server 2.14): not supported; refused by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<serde_json::Value>,
}

/// A subject transform: subjects matching `src` are renamed by `dest` (an
/// empty `dest` keeps the subject).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubjectTransform {
    pub src: String,
    pub dest: String,
}

/// An origin in another JetStream domain or account: its API prefix and the
/// prefix of the subjects its messages are delivered on. Both are always
/// echoed (nats-server adds `"deliver":""`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct External {
    pub api: String,
    pub deliver: String,
}

/// Mirror or source: which checks and error codes apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Mirror,
    Source,
}

impl StreamSource {
    /// The filters this origin is read with (none: everything): the filter
    /// subject, or the transforms' sources (an empty one means everything).
    pub fn filters(&self) -> Vec<String> {
        if !self.filter_subject.is_empty() {
            return vec![self.filter_subject.clone()];
        }
        let srcs: Vec<String> = self
            .subject_transforms
            .iter()
            .map(|t| {
                if t.src.is_empty() {
                    ">".to_string()
                } else {
                    t.src.clone()
                }
            })
            .collect();
        if srcs.iter().any(|s| s == ">") {
            return Vec::new();
        }
        srcs
    }

    /// The transforms, parsed (checked at config time, so they parse).
    pub fn transforms(&self) -> Vec<Transform> {
        self.subject_transforms
            .iter()
            .map(|t| Transform::new(src_or_all(&t.src), &t.dest).expect("checked at config time"))
            .collect()
    }

    /// nats-server's index name: `<name>[:<hash(api)>] <filters> <dests>`
    /// (transform lists joined by form feeds; `>` for none). It names the
    /// source in `Nats-Stream-Source` headers and tells duplicates apart.
    pub fn iname(&self) -> String {
        let mut name = self.name.clone();
        if let Some(ext) = &self.external {
            name.push(':');
            name.push_str(&hash8(ext.api.as_bytes()));
        }
        let (filters, dests) = if self.subject_transforms.is_empty() {
            let f = if self.filter_subject.is_empty() {
                ">"
            } else {
                &self.filter_subject
            };
            (f.to_string(), ">".to_string())
        } else {
            let part = |f: &dyn Fn(&SubjectTransform) -> &str| {
                self.subject_transforms
                    .iter()
                    .map(|t| if f(t).is_empty() { ">" } else { f(t) })
                    .collect::<Vec<&str>>()
                    .join("\x0c")
            };
            (part(&|t| &t.src), part(&|t| &t.dest))
        };
        format!("{name} {filters} {dests}")
    }

    /// Whether the origin is reached through another API prefix.
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// The checks nats-server makes of one entry (`checkStreamCfg`), in its
    /// order; `origin_max_msg_size` is the local origin's, when it exists.
    pub fn check(
        &self,
        role: Role,
        own_max_msg_size: i32,
        origin_max_msg_size: Option<i32>,
    ) -> Result<(), ApiError> {
        let mirror = role == Role::Mirror;
        if self.consumer.is_some() {
            return Err(ApiError::new(
                400,
                if mirror { 10213 } else { 10215 },
                "durable stream sourcing (a source or mirror \"consumer\") is not supported by this server yet",
            ));
        }
        if !mirror && !crate::js::types::stream_config::valid_name(&self.name) {
            return Err(ApiError::new(400, 10141, "sourced stream name is invalid"));
        }
        if !self.filter_subject.is_empty() && !self.subject_transforms.is_empty() {
            let (code, what) = if mirror {
                (10150, "mirror")
            } else {
                (10144, "source")
            };
            return Err(ApiError::new(
                400,
                code,
                format!("{what} with multiple subject transforms cannot also have a single subject filter"),
            ));
        }
        self.check_transforms(role)?;
        if mirror && !self.is_external() && !crate::js::types::stream_config::valid_name(&self.name)
        {
            return Err(ApiError::new(400, 10142, "mirrored stream name is invalid"));
        }
        if let Some(origin) = origin_max_msg_size {
            if own_max_msg_size > 0 && origin > 0 && own_max_msg_size < origin {
                return Err(if mirror {
                    ApiError::new(
                        400,
                        10030,
                        "stream mirror must have max message size >= source",
                    )
                } else {
                    ApiError::new(
                        400,
                        10046,
                        "stream source must have max message size >= target",
                    )
                });
            }
        }
        Ok(())
    }

    fn check_transforms(&self, role: Role) -> Result<(), ApiError> {
        let mirror = role == Role::Mirror;
        for t in &self.subject_transforms {
            if !t.src.is_empty() && !subject::valid_subscribe(t.src.as_bytes()) {
                let (code, what) = if mirror {
                    (10151, "mirror")
                } else {
                    (10145, "source")
                };
                return Err(ApiError::new(
                    400,
                    code,
                    format!("{what} transform source: invalid subject {}", t.src),
                ));
            }
            if let Err(e) = Transform::new(src_or_all(&t.src), &t.dest) {
                let (code, what) = if mirror {
                    (10154, "mirror")
                } else {
                    (10146, "source")
                };
                return Err(ApiError::new(400, code, format!("{what} transform: {e}")));
            }
        }
        for (i, a) in self.subject_transforms.iter().enumerate() {
            for b in &self.subject_transforms[i + 1..] {
                let (a, b) = (src_or_all(&a.src).as_bytes(), src_or_all(&b.src).as_bytes());
                // Mirrors refuse colliding sources; sources only one inside another.
                let clash = if mirror {
                    subject::overlaps(a, b)
                } else {
                    subject::matches(a, b) || subject::matches(b, a)
                };
                if clash {
                    return Err(if mirror {
                        ApiError::new(400, 10152, "mirror subject filters can not overlap")
                    } else {
                        ApiError::new(400, 10147, "source filters can not overlap")
                    });
                }
            }
        }
        Ok(())
    }

    /// The checks of a plain filter subject that nats-server makes when it
    /// creates the stream (its create error, 10049).
    pub fn check_filter(&self, role: Role) -> Result<(), ApiError> {
        if self.filter_subject.is_empty()
            || subject::valid_subscribe(self.filter_subject.as_bytes())
        {
            return Ok(());
        }
        let f = &self.filter_subject;
        Err(ApiError::create_failed(match role {
            Role::Mirror => format!("subject filter '{f}' for the mirror invalid subject"),
            Role::Source => format!("subject filter '{f}' for the source: invalid subject"),
        }))
    }
}

fn src_or_all(src: &str) -> &str {
    if src.is_empty() {
        ">"
    } else {
        src
    }
}

/// nats-server's 8-character digest (`getHash`): SHA-256, each of the first 8
/// bytes taken mod 62 into `0-9A-Za-z`.
pub fn hash8(data: &[u8]) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let sum = Sha256::digest(data);
    sum[..8]
        .iter()
        .map(|b| DIGITS[(*b % 62) as usize] as char)
        .collect()
}

/// A stream's identity as nats-server shows it (`Nats-Stream-Identity`): the
/// digest of its creation time in RFC 3339 with nanoseconds, UTC.
pub fn identity(created_nanos: i64) -> String {
    hash8(crate::js::types::json::rfc3339(created_nanos).as_bytes())
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn src(json: &str) -> StreamSource {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn index_names_as_nats_server_writes_them() {
        assert_eq!(src(r#"{"name":"ORIGIN"}"#).iname(), "ORIGIN > >");
        assert_eq!(
            src(r#"{"name":"O","filter_subject":"o.a"}"#).iname(),
            "O o.a >"
        );
        let t = src(
            r#"{"name":"O","subject_transforms":[{"src":"o.*","dest":"c.{{wildcard(1)}}"},{"src":"p.b","dest":""}]}"#,
        );
        assert_eq!(t.iname(), "O o.*\x0cp.b c.{{wildcard(1)}}\x0c>");
        let e = src(r#"{"name":"O","external":{"api":"$JS.hub.API"}}"#);
        assert!(e.iname().starts_with("O:") && e.iname().ends_with(" > >"));
        assert_eq!(e.iname().len(), "O:".len() + 8 + " > >".len());
    }

    #[test]
    fn config_errors_carry_nats_server_codes() {
        let code = |j: &str, role| src(j).check(role, -1, None).unwrap_err().err_code;
        assert_eq!(code(r#"{"name":""}"#, Role::Source), 10141);
        assert_eq!(code(r#"{"name":"a.b"}"#, Role::Mirror), 10142);
        assert!(src(r#"{"name":"a.b","external":{"api":"$JS.x.API"}}"#)
            .check(Role::Mirror, -1, None)
            .is_ok());
        let both =
            r#"{"name":"O","filter_subject":"a","subject_transforms":[{"src":"b","dest":"c"}]}"#;
        assert_eq!(code(both, Role::Mirror), 10150);
        assert_eq!(code(both, Role::Source), 10144);
        let overlap = r#"{"name":"O","subject_transforms":[{"src":"o.>","dest":"x.>"},{"src":"o.a","dest":"y"}]}"#;
        assert_eq!(code(overlap, Role::Mirror), 10152);
        assert_eq!(code(overlap, Role::Source), 10147);
        let bad = r#"{"name":"O","subject_transforms":[{"src":"o.*","dest":"f.{{wildcard(3)}}"}]}"#;
        let e = src(bad).check(Role::Source, -1, None).unwrap_err();
        assert_eq!(e.err_code, 10146);
        assert_eq!(
            e.description,
            "source transform: invalid mapping destination: wildcard index out of range in {{wildcard(3)}}: [3]"
        );
        assert_eq!(
            src(r#"{"name":"O"}"#)
                .check(Role::Mirror, 500, Some(1000))
                .unwrap_err()
                .err_code,
            10030
        );
        assert_eq!(
            src(r#"{"name":"O"}"#)
                .check(Role::Source, 500, Some(1000))
                .unwrap_err()
                .err_code,
            10046
        );
        assert!(src(r#"{"name":"O"}"#)
            .check(Role::Source, 500, Some(-1))
            .is_ok());
    }

    #[test]
    fn hashes_are_eight_base62_characters() {
        let h = hash8(b"$JS.hub.API");
        assert_eq!(h.len(), 8);
        assert!(h.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(h, hash8(b"$JS.other.API"));
        // Values nats-server 2.15.1 produced: its mirror consumer's name for
        // stream MIRZ of account $G, and an origin's identity.
        assert_eq!(hash8(b"MIRZ $G"), "0ig6CXfT");
        assert_eq!(hash8(hash8(b"SRCZ $G").as_bytes()), "8sgW570P");
        let created =
            crate::js::types::json::parse_rfc3339("2026-12-06T01:29:25.283561563Z").unwrap();
        assert_eq!(identity(created), "enzAHJFe");
    }
}
