//! Stream configuration: decoding with nats-server's defaults, validation with
//! its error codes, the update rules, and the JSON echoed back in `config`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::js::types::errors::ApiError;
use crate::js::types::source::{Role, StreamSource, SubjectTransform};
use crate::subject;
use crate::subject::transform::Transform;

/// Two minutes: nats-server's default duplicate window.
pub const DUPLICATE_WINDOW_DEFAULT: i64 = 120_000_000_000;
const MIN_WINDOW_NS: i64 = 100_000_000;
pub const NAME_MAX: usize = 255;
pub const DESCRIPTION_MAX: usize = 4096;
pub const METADATA_MAX: usize = 128 * 1024;

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// `republish`: stored messages matching `src` (default all) are sent again
/// on `dest`, with their stream position in headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RePublish {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub src: String,
    pub dest: String,
    #[serde(skip_serializing_if = "is_false")]
    pub headers_only: bool,
}

/// `consumer_limits`: always written, as `{}` when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerLimits {
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub inactive_threshold: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub max_ack_pending: i64,
}

/// Where a clustered server would place the stream; kept and echoed (a single
/// server has nowhere else to put it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Placement {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(skip_serializing_if = "no_tags")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub preferred: String,
}

fn no_tags(t: &Option<Vec<String>>) -> bool {
    t.as_ref().is_none_or(Vec::is_empty)
}

/// Stream configuration as nats-server stores and echoes it (field order is
/// nats-server's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    pub retention: String,
    pub max_consumers: i64,
    pub max_msgs: i64,
    pub max_bytes: i64,
    pub max_age: i64,
    pub max_msgs_per_subject: i64,
    pub max_msg_size: i32,
    pub discard: String,
    pub storage: String,
    pub num_replicas: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub no_ack: bool,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub duplicate_window: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<StreamSource>>,
    pub compression: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub first_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republish: Option<RePublish>,
    pub allow_direct: bool,
    pub mirror_direct: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub discard_new_per_subject: bool,
    pub sealed: bool,
    pub deny_delete: bool,
    pub deny_purge: bool,
    pub allow_rollup_hdrs: bool,
    pub consumer_limits: ConsumerLimits,
    pub allow_msg_ttl: bool,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub subject_delete_marker_ttl: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub allow_msg_counter: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub allow_atomic: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub allow_msg_schedules: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub persist_mode: String,
    #[serde(skip_serializing_if = "is_false")]
    pub allow_batched: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            name: String::new(),
            description: String::new(),
            subjects: Vec::new(),
            retention: "limits".into(),
            max_consumers: -1,
            max_msgs: -1,
            max_bytes: -1,
            max_age: 0,
            max_msgs_per_subject: -1,
            max_msg_size: -1,
            discard: "old".into(),
            storage: "file".into(),
            num_replicas: 1,
            no_ack: false,
            duplicate_window: 0,
            placement: None,
            mirror: None,
            sources: None,
            compression: "none".into(),
            first_seq: 0,
            subject_transform: None,
            republish: None,
            allow_direct: false,
            mirror_direct: false,
            discard_new_per_subject: false,
            sealed: false,
            deny_delete: false,
            deny_purge: false,
            allow_rollup_hdrs: false,
            consumer_limits: ConsumerLimits::default(),
            allow_msg_ttl: false,
            subject_delete_marker_ttl: 0,
            allow_msg_counter: false,
            allow_atomic: false,
            allow_msg_schedules: false,
            persist_mode: String::new(),
            allow_batched: false,
            metadata: None,
        }
    }
}

/// Retention policy, decoded from the config string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Limits,
    Interest,
    WorkQueue,
}

impl StreamConfig {
    pub fn retention(&self) -> Retention {
        match self.retention.as_str() {
            "interest" => Retention::Interest,
            "workqueue" => Retention::WorkQueue,
            _ => Retention::Limits,
        }
    }
    pub fn discard_new(&self) -> bool {
        self.discard == "new"
    }
    pub fn memory(&self) -> bool {
        self.storage == "memory"
    }

    /// Decodes a request body (Go rules) into a config with nats-server's
    /// defaults for missing fields. Errors are the API errors to answer with.
    /// `strict`: a field nats-server does not know is refused (10025).
    pub fn decode(body: &[u8], strict: bool) -> Result<StreamConfig, ApiError> {
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(ApiError::invalid_json("unexpected end of JSON input"));
        }
        let mut v = crate::js::types::json::decode(body).map_err(|e| ApiError::invalid_json(&e))?;
        if v.is_null() {
            v = Value::Object(serde_json::Map::new()); // Go decodes null as nothing set
        }
        let Value::Object(map) = &mut v else {
            return Err(ApiError::invalid_json(
                "json: cannot unmarshal into Go value of type server.StreamConfigRequest",
            ));
        };
        // Go's unmarshalers read only `discard` without regard to case.
        if let Some(Value::String(s)) = map.get_mut("discard") {
            *s = s.to_ascii_lowercase();
        }
        // `pedantic` belongs to the request wrapper, not the config.
        map.remove("pedantic");
        crate::js::types::json::from_value::<StreamConfig>(v, body, strict)
            .map_err(|e| ApiError::invalid_json(&e))
    }

    /// Fills defaults and checks the config the way nats-server does on create
    /// and update (`checkStreamCfg`, in its order: the first failure is the
    /// answer). Overlaps with other streams are checked by the catalogue.
    pub fn normalize(&mut self, max_payload: usize) -> Result<(), ApiError> {
        self.check_names()?;
        self.normalize_enums()?;
        self.normalize_limits(max_payload)?;
        self.check_features()?;
        self.check_subjects()
    }

    /// Name and description.
    fn check_names(&mut self) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::invalid_config(m));
        if self.name.is_empty() {
            return bad("stream name is required");
        }
        if !valid_name(&self.name) {
            return bad("stream name is required and can not contain '.', '*', '>', '\\', '/'");
        }
        if self.name.len() > NAME_MAX {
            return bad("stream name is too long, maximum allowed is 255");
        }
        if self.description.len() > DESCRIPTION_MAX {
            return bad("stream description is too long, maximum allowed is 4096");
        }
        Ok(())
    }
    /// Retention, discard, storage, compression, persist mode, replicas.
    fn normalize_enums(&mut self) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::invalid_config(m));
        // Go's enum decoders quote the raw JSON value in their message.
        let unmarshal = |v: &str| {
            Err(ApiError::invalid_json(&format!(
                "can not unmarshal {:?}",
                format!("\"{v}\"")
            )))
        };
        match self.retention.as_str() {
            "limits" | "interest" | "workqueue" => {}
            other => return unmarshal(other),
        }
        match self.discard.as_str() {
            "old" | "new" => {}
            other => return unmarshal(other),
        }
        match self.storage.as_str() {
            "file" | "memory" => {}
            other => return unmarshal(other),
        }
        match self.compression.as_str() {
            // s2: sealed segments are compressed at rest (`store::packed`);
            // memory streams accept it and keep their messages as they are,
            // as nats-server does.
            "none" | "s2" => {}
            _ => return Err(ApiError::invalid_json("unknown compression algorithm")),
        }
        match self.persist_mode.as_str() {
            "" => {}
            "default" => self.persist_mode = String::new(),
            "async" => {
                if self.memory() {
                    return bad("async persist mode is not supported on memory storage");
                }
                if self.allow_atomic {
                    return bad("async persist mode is not supported with atomic batch publish");
                }
            }
            other => return unmarshal(other),
        }
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.num_replicas > 5 {
            return bad("maximum replicas is 5");
        }
        if self.num_replicas < 0 {
            return Err(ApiError::new(
                400,
                10133,
                "replicas count cannot be negative",
            ));
        }
        if self.num_replicas > 1 {
            return Err(ApiError::replicas_not_supported());
        }
        Ok(())
    }
    /// The max_* limits, max_age and the duplicate window.
    fn normalize_limits(&mut self, max_payload: usize) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::invalid_config(m));
        for v in [
            &mut self.max_msgs,
            &mut self.max_bytes,
            &mut self.max_msgs_per_subject,
            &mut self.max_consumers,
        ] {
            if *v == 0 || *v < -1 {
                *v = -1;
            }
        }
        if self.max_msg_size == 0 || self.max_msg_size < -1 {
            self.max_msg_size = -1;
        }
        if self.max_msg_size > 0 && self.max_msg_size as usize > max_payload {
            // nats-server allows it and relies on max_payload; nothing to do.
        }
        if self.max_age < 0 {
            return bad("max age can not be negative");
        }
        if self.max_age != 0 && self.max_age < MIN_WINDOW_NS {
            return bad("max age needs to be >= 100ms");
        }
        if self.duplicate_window < 0 {
            return bad("duplicates window can not be negative");
        }
        if self.duplicate_window == 0 && self.mirror.is_none() && self.sources().is_empty() {
            self.duplicate_window = if self.max_age != 0 && self.max_age < DUPLICATE_WINDOW_DEFAULT
            {
                self.max_age
            } else {
                DUPLICATE_WINDOW_DEFAULT
            };
        } else if self.duplicate_window != 0 {
            if self.duplicate_window < MIN_WINDOW_NS {
                return bad("duplicates window needs to be >= 100ms");
            }
            if self.max_age != 0 && self.duplicate_window > self.max_age {
                return bad("duplicates window can not be larger then max age");
            }
        }
        Ok(())
    }
    /// Feature combinations, and the features this server does not have.
    fn check_features(&mut self) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::invalid_config(m));
        if self.discard_new_per_subject {
            if !self.discard_new() {
                return bad("discard new per subject requires discard new policy to be set");
            }
            if self.max_msgs_per_subject <= 0 {
                return bad("discard new per subject requires max msgs per subject > 0");
            }
        }
        if self.deny_purge && self.allow_rollup_hdrs {
            return bad("roll-ups require the purge permission");
        }
        if self.subject_delete_marker_ttl > 0 {
            if self.subject_delete_marker_ttl < 1_000_000_000 {
                return bad("subject delete marker TTL must be at least 1 second");
            }
            // Markers expire and roll up what they replace.
            self.allow_msg_ttl = true;
            if !self.allow_rollup_hdrs {
                self.allow_rollup_hdrs = true;
                self.deny_purge = false;
            }
        } else if self.subject_delete_marker_ttl < 0 {
            return bad("subject delete marker TTL must not be negative");
        }
        if self.allow_msg_counter {
            return bad("counter streams are not supported by this server yet");
        }
        if self.allow_msg_schedules {
            return bad("message schedules are not supported by this server yet");
        }
        if self.sources.as_ref().is_some_and(|s| s.is_empty()) {
            self.sources = None;
        }
        self.check_mirror()?;
        self.check_sources()?;
        self.check_external()?;
        self.check_transform()?;
        self.check_republish()?;
        if let Some(p) = &self.placement {
            if !p.preferred.is_empty() {
                return bad("preferred server not permitted in placement");
            }
            // As nats-server keeps it: `{}` is no placement, an empty list of
            // tags keeps an (empty) placement.
            if p.cluster.is_empty() && p.tags.is_none() {
                self.placement = None;
            }
        }
        if let Some(m) = &self.metadata {
            let size: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
            if size > METADATA_MAX {
                return bad("stream metadata exceeds maximum size of 131072 bytes");
            }
            if m.is_empty() {
                self.metadata = None;
            }
        }
        Ok(())
    }
    /// `subject_transform`: a valid source and destination.
    fn check_transform(&self) -> Result<(), ApiError> {
        let Some(t) = &self.subject_transform else {
            return Ok(());
        };
        if !t.src.is_empty() && !subject::valid_subscribe(t.src.as_bytes()) {
            let e = format!("stream transform source: invalid subject {}", t.src);
            return Err(ApiError::new(400, 10155, e));
        }
        if let Err(e) = Transform::new(&t.src, &t.dest) {
            return Err(ApiError::new(400, 10156, format!("stream transform: {e}")));
        }
        Ok(())
    }

    /// `republish`: all subjects when `src` is empty; `>` to `>` follows the
    /// subject transform when that maps the stream's one subject; no cycle.
    fn check_republish(&mut self) -> Result<(), ApiError> {
        let Some(rp) = &mut self.republish else {
            return Ok(());
        };
        if rp.src.is_empty() {
            rp.src = ">".into();
        }
        if let Some(t) = &self.subject_transform {
            let implicit = rp.src == ">" && rp.dest == ">";
            if implicit && self.subjects.len() == 1 && t.src == self.subjects[0] {
                rp.src = t.dest.clone();
                rp.dest = t.dest.clone();
            }
        }
        let bad = |m: String| Err(ApiError::invalid_config(&m));
        let dest = rp.dest.as_bytes();
        if self
            .subjects
            .iter()
            .any(|s| subject::overlaps(dest, s.as_bytes()))
        {
            return bad("stream configuration for republish destination forms a cycle".into());
        }
        if Transform::new(&rp.src, &rp.dest).is_err() {
            return bad(format!(
                "stream configuration for republish with transform from '{}' to '{}' not valid",
                rp.src, rp.dest
            ));
        }
        Ok(())
    }

    /// A mirror's own rules (nats-server's order; its origin's, in `meta`).
    fn check_mirror(&self) -> Result<(), ApiError> {
        let Some(m) = &self.mirror else {
            return Ok(());
        };
        if self.first_seq > 0 {
            return Err(ApiError::new(
                400,
                10143,
                "stream mirrors can not have first sequence configured",
            ));
        }
        if !self.subjects.is_empty() {
            return Err(ApiError::new(
                400,
                10034,
                "stream mirrors can not contain subjects",
            ));
        }
        if self.sources.is_some() {
            return Err(ApiError::new(
                400,
                10031,
                "stream mirrors can not also contain other sources",
            ));
        }
        m.check(Role::Mirror, self.max_msg_size, None)?;
        if self.subject_delete_marker_ttl > 0 {
            // Markers would take sequences the origin does not have.
            return Err(ApiError::invalid_config(
                "subject delete markers forbidden on mirrors",
            ));
        }
        Ok(())
    }

    /// Each source's rules, and no two alike (the same index name).
    fn check_sources(&self) -> Result<(), ApiError> {
        let mut seen = std::collections::HashSet::new();
        for s in self.sources() {
            s.check(Role::Source, self.max_msg_size, None)?;
            if !seen.insert(s.iname()) {
                return Err(ApiError::new(
                    400,
                    10140,
                    "duplicate source configuration detected",
                ));
            }
        }
        Ok(())
    }

    /// The prefixes of external origins.
    fn check_external(&self) -> Result<(), ApiError> {
        let ext = self.links().filter_map(|(_, s)| s.external.as_ref());
        for e in ext.clone() {
            if !e.deliver.is_empty() && !subject::valid_publish(e.deliver.as_bytes()) {
                return Err(ApiError::new(
                    400,
                    10024,
                    format!(
                        "stream external delivery prefix {} must not contain wildcards",
                        e.deliver
                    ),
                ));
            }
        }
        for e in ext {
            if e.api.is_empty() {
                continue;
            }
            if !subject::valid_publish(e.api.as_bytes()) {
                return Err(ApiError::invalid_config(format!(
                    "stream external api prefix {:?} must be a valid subject without wildcards",
                    e.api
                )));
            }
            if subject::overlaps(e.api.as_bytes(), b"$JS.API") {
                return Err(ApiError::new(
                    400,
                    10021,
                    format!(
                        "stream external api prefix {} must not overlap with $JS.API",
                        e.api
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The sources (none when there are none).
    pub fn sources(&self) -> &[StreamSource] {
        self.sources.as_deref().unwrap_or(&[])
    }

    /// The mirror and every source, with their roles.
    pub fn links(&self) -> impl Iterator<Item = (Role, &StreamSource)> + Clone {
        let mirror = self.mirror.iter().map(|m| (Role::Mirror, m));
        mirror.chain(self.sources().iter().map(|s| (Role::Source, s)))
    }

    /// The checks of plain filter subjects nats-server makes when it creates
    /// the stream (after the config checks; its create error, 10049).
    pub fn check_filters(&self) -> Result<(), ApiError> {
        self.links().try_for_each(|(role, s)| s.check_filter(role))
    }

    /// The stream's own subjects (defaulting to its name).
    fn check_subjects(&mut self) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::invalid_config(m));
        // Mirrors have none; a stream with sources may have none.
        if self.subjects.is_empty() && self.mirror.is_none() && self.sources.is_none() {
            self.subjects = vec![self.name.clone()];
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.subjects.iter().enumerate() {
            if !subject::valid_subscribe(s.as_bytes()) {
                return bad("invalid subject");
            }
            if !seen.insert(s.as_str()) {
                return bad("duplicate subjects detected");
            }
            if s == ">" && !self.no_ack {
                return bad("capturing all subjects requires no-ack to be true");
            }
            if !self.no_ack {
                reserved_namespace(s)?;
            }
            for t in &self.subjects[i + 1..] {
                if subject::overlaps(t.as_bytes(), s.as_bytes()) {
                    return bad(&format!("subject {s:?} overlaps with {t:?}"));
                }
            }
        }
        Ok(())
    }

    /// nats-server's update rules: what may not change.
    pub fn check_update(&self, old: &StreamConfig) -> Result<(), ApiError> {
        let bad = |m: &str| Err(ApiError::invalid_config(m));
        if self.name != old.name {
            return bad("stream configuration name must match original");
        }
        if self.storage != old.storage {
            return bad("stream configuration update can not change storage type");
        }
        if (self.retention == "workqueue") != (old.retention == "workqueue")
            && self.retention != old.retention
        {
            return bad(
                "stream configuration update can not change retention policy to/from workqueue",
            );
        }
        if old.sealed && !self.sealed {
            return bad("stream configuration update can not unseal a sealed stream");
        }
        if old.deny_delete && !self.deny_delete {
            return bad("stream configuration update can not cancel deny message deletes");
        }
        if old.deny_purge && !self.deny_purge {
            return bad("stream configuration update can not cancel deny purge");
        }
        // A mirror cannot change or be added; removing it promotes the
        // stream (nats-server 2.12).
        if self.mirror.is_some() && old.mirror != self.mirror {
            return Err(ApiError::mirror_not_updatable());
        }
        if old.allow_msg_ttl && !self.allow_msg_ttl {
            return bad("message TTL status can not be disabled");
        }
        if self.first_seq != old.first_seq && self.first_seq != 0 {
            return bad("stream configuration update can not change first sequence");
        }
        Ok(())
    }
}

/// Subjects that would capture the JetStream or system API need no-ack
/// (events and account subjects excepted, as nats-server allows them).
fn reserved_namespace(s: &str) -> Result<(), ApiError> {
    let s = s.as_bytes();
    for api in ["$JS.>", "$JSC.>", "$NRG.>"] {
        if subject::overlaps(s, api.as_bytes()) && !subject::matches(b"$JS.EVENT.>", s) {
            return Err(ApiError::invalid_config(
                "subjects that overlap with jetstream api require no-ack to be true",
            ));
        }
    }
    if subject::overlaps(s, b"$SYS.>") && !subject::matches(b"$SYS.ACCOUNT.>", s) {
        return Err(ApiError::invalid_config(
            "subjects that overlap with system api require no-ack to be true",
        ));
    }
    Ok(())
}

/// Stream and consumer names: no whitespace, `.`, `*`, `>`, path separators or
/// control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<StreamConfig, ApiError> {
        let mut c = StreamConfig::decode(json.as_bytes(), false)?;
        c.normalize(1 << 20)?;
        Ok(c)
    }

    #[test]
    fn defaults_match_nats_server() {
        let c = cfg(r#"{"name":"A"}"#).unwrap();
        assert_eq!(c.subjects, vec!["A"]);
        assert_eq!(c.duplicate_window, DUPLICATE_WINDOW_DEFAULT);
        assert_eq!((c.max_msgs, c.max_bytes, c.max_msg_size), (-1, -1, -1));
        let c = cfg(r#"{"name":"A","max_age":1000000000,"max_msgs":0,"discard":"NEW"}"#).unwrap();
        assert_eq!(c.duplicate_window, 1_000_000_000);
        assert_eq!(c.max_msgs, -1);
        assert_eq!(c.discard, "new");
    }

    #[test]
    fn repeated_and_cased_keys_follow_go() {
        let c = cfg(r#"{"name":"X","Subjects":["a"],"NAME":"Y","unknown":{"deep":1}}"#).unwrap();
        assert_eq!(c.name, "Y");
        assert_eq!(c.subjects, vec!["a"]);
    }

    #[test]
    fn refusals_carry_codes() {
        assert_eq!(
            cfg(r#"{"name":"A","num_replicas":3}"#)
                .unwrap_err()
                .err_code,
            10074
        );
        assert_eq!(cfg(r#"{"name":"a.b"}"#).unwrap_err().err_code, 10052);
        assert_eq!(
            cfg(r#"{"name":"A","compression":"s2"}"#)
                .unwrap()
                .compression,
            "s2"
        );
        assert_eq!(
            cfg(r#"{"name":"A","compression":"zz"}"#)
                .unwrap_err()
                .err_code,
            10025
        );
        assert_eq!(cfg(r#"{"name":"A" "x":1}"#).unwrap_err().err_code, 10025);
        assert_eq!(
            cfg(r#"{"name":"A","max_age":5}"#).unwrap_err().err_code,
            10052
        );
        assert_eq!(
            cfg(r#"{"name":"A","deny_purge":true,"allow_rollup_hdrs":true}"#)
                .unwrap_err()
                .err_code,
            10052
        );
        assert_eq!(
            cfg(r#"{"name":"A","subjects":["a.>","a.b"]}"#)
                .unwrap_err()
                .err_code,
            10052
        );
        assert_eq!(
            cfg(r#"{"name":"A","subjects":["a..b"]}"#)
                .unwrap_err()
                .err_code,
            10052
        );
    }

    #[test]
    fn update_rules() {
        let old = cfg(r#"{"name":"A","deny_delete":true}"#).unwrap();
        let new = cfg(r#"{"name":"A"}"#).unwrap();
        assert!(new.check_update(&old).is_err());
        let new = cfg(r#"{"name":"A","deny_delete":true,"storage":"memory"}"#).unwrap();
        assert!(new.check_update(&old).is_err());
        let new = cfg(r#"{"name":"A","deny_delete":true,"max_msgs":5}"#).unwrap();
        assert!(new.check_update(&old).is_ok());
    }
}
