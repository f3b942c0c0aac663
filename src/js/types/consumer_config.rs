//! Consumer configuration: decoding with nats-server's defaults, validation
//! with its error codes and texts, the update rules, and the echoed JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::js::types::errors::ApiError;
pub use crate::js::types::priority::{check_group_name, PriorityPolicy, PINNED_TTL_DEFAULT};
use crate::js::types::stream_config::{StreamConfig, DESCRIPTION_MAX};
use crate::subject;

/// Default ack wait for acking consumers (30 s).
pub const ACK_WAIT_DEFAULT: i64 = 30_000_000_000;
/// Default `max_ack_pending` for acking consumers.
pub const MAX_ACK_PENDING_DEFAULT: i64 = 1000;
/// Default `max_waiting` (open pull requests) for pull consumers.
pub const MAX_WAITING_DEFAULT: i64 = 512;
/// Ephemeral consumers go after 5 s without interest unless told otherwise.
pub const INACTIVE_THRESHOLD_EPHEMERAL: i64 = 5_000_000_000;
const HEARTBEAT_MIN: i64 = 100_000_000;

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// Consumer configuration in nats-server's field order (omitted when empty
/// where nats-server omits them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ConsumerConfig {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub durable_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub deliver_policy: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub opt_start_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    pub ack_policy: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub ack_wait: i64,
    pub max_deliver: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backoff: Vec<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter_subjects: Vec<String>,
    pub replay_policy: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub rate_limit_bps: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sample_freq: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub max_waiting: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub max_ack_pending: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub flow_control: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub headers_only: bool,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub max_batch: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub max_expires: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub max_bytes: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deliver_subject: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deliver_group: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub idle_heartbeat: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub inactive_threshold: i64,
    pub num_replicas: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub mem_storage: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub direct: bool,
    /// nats-server 2.14's sourcing consumers (API level 4): refused on create,
    /// so that a nats-server target falls back to a plain direct consumer.
    #[serde(skip_serializing)]
    pub sourcing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub priority_groups: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub priority_policy: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub priority_timeout: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckPolicy {
    None,
    All,
    Explicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverPolicy {
    All,
    Last,
    New,
    ByStartSeq,
    ByStartTime,
    LastPerSubject,
}

/// The create request wrapper.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateRequest {
    pub stream_name: String,
    pub config: Option<ConsumerConfig>,
    pub action: String,
}

const CREATE_REQ: &str = "server.CreateConsumerRequest";

/// Go's name for a JSON value that is not an object (None: object or null).
fn go_kind(v: &Value) -> Option<&'static str> {
    let k = [
        (v.is_array(), "array"),
        (v.is_string(), "string"),
        (v.is_number(), "number"),
    ];
    k.iter()
        .find(|(is, _)| *is)
        .map(|(_, k)| *k)
        .or(v.is_boolean().then_some("bool"))
}

fn unmarshal(v: &str) -> ApiError {
    // Go's enum decoders quote the raw JSON value in their message.
    ApiError::invalid_json(&format!("can not unmarshal {:?}", format!("\"{v}\"")))
}

fn bad(code: u16, err_code: u16, m: &str) -> ApiError {
    ApiError::new(code, err_code, m)
}

impl ConsumerConfig {
    pub fn ack(&self) -> AckPolicy {
        match self.ack_policy.as_str() {
            "all" => AckPolicy::All,
            "explicit" => AckPolicy::Explicit,
            _ => AckPolicy::None,
        }
    }
    pub fn deliver(&self) -> DeliverPolicy {
        match self.deliver_policy.as_str() {
            "last" => DeliverPolicy::Last,
            "new" => DeliverPolicy::New,
            "by_start_sequence" => DeliverPolicy::ByStartSeq,
            "by_start_time" => DeliverPolicy::ByStartTime,
            "last_per_subject" => DeliverPolicy::LastPerSubject,
            _ => DeliverPolicy::All,
        }
    }
    pub fn is_push(&self) -> bool {
        !self.deliver_subject.is_empty()
    }
    pub fn is_durable(&self) -> bool {
        !self.durable_name.is_empty()
    }
    /// The filters, one list whichever field carried them (empty = all).
    pub fn filters(&self) -> Vec<String> {
        if !self.filter_subject.is_empty() {
            vec![self.filter_subject.clone()]
        } else {
            self.filter_subjects.clone()
        }
    }
    pub fn replay_original(&self) -> bool {
        self.replay_policy == "original"
    }
    pub fn start_time_nanos(&self) -> i64 {
        self.opt_start_time
            .as_deref()
            .and_then(crate::js::types::json::parse_rfc3339)
            .unwrap_or(0)
    }
    pub fn pause_until_nanos(&self) -> i64 {
        self.pause_until
            .as_deref()
            .and_then(crate::js::types::json::parse_rfc3339)
            .unwrap_or(0)
    }
    /// `sample_freq` as a percentage (0 = off).
    pub fn sample_percent(&self) -> u64 {
        let s = self.sample_freq.trim().trim_end_matches('%');
        s.parse::<u64>().map_or(0, |p| p.min(100))
    }
    /// Delay before redelivery number `deliveries` + 1 (backoff or ack_wait).
    pub fn redelivery_delay(&self, deliveries: u64) -> i64 {
        if self.backoff.is_empty() {
            return self.ack_wait;
        }
        let i = (deliveries.saturating_sub(1) as usize).min(self.backoff.len() - 1);
        self.backoff[i]
    }

    /// Decodes the `config` object of a create request (Go rules).
    /// `strict`: a field nats-server does not know is refused (10025).
    pub fn decode_request(body: &[u8], strict: bool) -> Result<CreateRequest, ApiError> {
        let mut v = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(serde_json::Map::new())
        } else {
            crate::js::types::json::decode(body).map_err(|e| ApiError::invalid_json(&e))?
        };
        // Go decodes null as nothing set, and refuses other non-objects.
        if let Some(k) = go_kind(&v) {
            let m = format!("json: cannot unmarshal {k} into Go value of type {CREATE_REQ}");
            return Err(ApiError::invalid_json(&m));
        }
        if v.is_null() {
            v = Value::Object(serde_json::Map::new());
        }
        if let Value::Object(map) = &mut v {
            if let Some(Value::Object(cfg)) = map.get_mut("config") {
                // Enumerations are read case-insensitively, as Go's unmarshalers do.
                for key in ["deliver_policy", "ack_policy", "replay_policy"] {
                    if let Some(Value::String(s)) = cfg.get_mut(key) {
                        *s = s.to_ascii_lowercase();
                    }
                }
                // Durations may be given as numbers only; a null leaves the default.
                cfg.retain(|_, v| !v.is_null());
            }
            map.remove("pedantic");
        }
        crate::js::types::json::from_value::<CreateRequest>(v, body, strict)
            .map_err(|e| ApiError::invalid_json(&e))
    }

    /// Fills defaults and checks the config as nats-server does on create
    /// (its checks, in its order: the first failure is the answer).
    pub fn normalize(&mut self, stream: &StreamConfig) -> Result<(), ApiError> {
        self.normalize_policies()?;
        self.check_general()?;
        self.normalize_acks(stream)?;
        if self.is_push() {
            self.check_push()?;
        } else {
            self.check_pull()?;
        }
        self.check_direct()?;
        self.check_filters()?;
        self.check_start()?;
        self.check_times(stream)?;
        self.check_priority()?;
        self.check_retention(stream)
    }

    /// The policies: defaults, and Go's decoding errors for unknown values.
    fn normalize_policies(&mut self) -> Result<(), ApiError> {
        match self.deliver_policy.as_str() {
            "" | "undefined" => self.deliver_policy = "all".into(),
            "all" | "last" | "new" | "by_start_sequence" | "by_start_time" | "last_per_subject" => {
            }
            other => return Err(unmarshal(other)),
        }
        match self.ack_policy.as_str() {
            "" => self.ack_policy = "none".into(),
            "none" | "all" | "explicit" => {}
            "flow_control" => {
                return Err(bad(
                    400,
                    10003,
                    "ack policy flow_control is not supported by this server yet",
                ))
            }
            other => return Err(unmarshal(other)),
        }
        match self.replay_policy.as_str() {
            "" => self.replay_policy = "instant".into(),
            "instant" | "original" => {}
            other => return Err(unmarshal(other)),
        }
        match self.priority_policy.as_str() {
            "" | "none" => self.priority_policy.clear(),
            "overflow" | "pinned_client" | "prioritized" => {}
            other => {
                let m = format!("unknown priority policy: {:?}", other);
                return Err(ApiError::invalid_json(&m));
            }
        }
        Ok(())
    }
    /// Replicas, description and the features this server does not have.
    fn check_general(&mut self) -> Result<(), ApiError> {
        if self.num_replicas > 1 {
            return Err(ApiError::replicas_not_supported());
        }
        if self.num_replicas < 0 {
            return Err(bad(400, 10133, "replicas count cannot be negative"));
        }
        if self.description.len() > DESCRIPTION_MAX {
            return Err(bad(
                400,
                10107,
                "consumer description is too long, maximum allowed is 4096",
            ));
        }
        let meta: usize = self
            .metadata
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if meta > 128 * 1024 {
            let m = "consumer metadata exceeds maximum size of 128KB";
            return Err(bad(400, 10135, m));
        }
        Ok(())
    }

    /// max_deliver, backoff, ack_wait and max_ack_pending defaults.
    fn normalize_acks(&mut self, stream: &StreamConfig) -> Result<(), ApiError> {
        // nats-server's defaults first: negative limits mean none.
        if self.max_deliver == 0 || self.max_deliver < -1 {
            self.max_deliver = -1;
        }
        self.max_ack_pending = self.max_ack_pending.max(-1);
        for v in [
            &mut self.max_waiting,
            &mut self.max_batch,
            &mut self.max_expires,
            &mut self.max_bytes,
            &mut self.idle_heartbeat,
            &mut self.inactive_threshold,
        ] {
            *v = (*v).max(0);
        }
        let acking = self.ack() != AckPolicy::None;
        if acking && self.ack_wait == 0 {
            self.ack_wait = ACK_WAIT_DEFAULT;
        }
        if let Some(first) = self.backoff.first() {
            self.ack_wait = *first;
        }
        let limits = &stream.consumer_limits;
        if self.max_ack_pending == 0 {
            self.max_ack_pending = limits.max_ack_pending;
        }
        if self.inactive_threshold == 0 {
            self.inactive_threshold = limits.inactive_threshold;
        }
        if acking && self.max_ack_pending == 0 {
            self.max_ack_pending = MAX_ACK_PENDING_DEFAULT;
        }
        if self.backoff.iter().any(|b| *b < 0) {
            return Err(bad(400, 10184, "consumer backoff needs to be positive"));
        }
        if self.ack_wait < 0 {
            return Err(bad(400, 10183, "consumer ack wait needs to be positive"));
        }
        if self.max_deliver != -1 && (self.max_deliver as usize) < self.backoff.len() {
            return Err(bad(
                400,
                10116,
                "max deliver is required to be > length of backoff values",
            ));
        }
        if limits.max_ack_pending > 0 && self.max_ack_pending > limits.max_ack_pending {
            let m = format!(
                "consumer max ack pending exceeds system limit of {}",
                limits.max_ack_pending
            );
            return Err(bad(400, 10121, &m));
        }
        if limits.inactive_threshold > 0 && self.inactive_threshold > limits.inactive_threshold {
            let m = format!(
                "consumer inactive threshold exceeds system limit of {}",
                crate::js::types::json::go_duration(limits.inactive_threshold)
            );
            return Err(bad(400, 10153, &m));
        }
        Ok(())
    }
    /// What a push consumer may not set.
    fn check_push(&mut self) -> Result<(), ApiError> {
        let d = self.deliver_subject.as_bytes();
        if d.split(|b| *b == b'.').any(|t| t == b"*" || t == b">") {
            return Err(bad(400, 10079, "consumer deliver subject has wildcards"));
        }
        if !subject::valid_publish(d) {
            return Err(bad(400, 10112, "invalid push consumer deliver subject"));
        }
        if self.max_waiting != 0 {
            return Err(bad(
                400,
                10080,
                "consumer in push mode can not set max waiting",
            ));
        }
        if self.max_ack_pending > 0 && self.ack() == AckPolicy::None {
            let m = "consumer requires ack policy for max ack pending";
            return Err(bad(400, 10082, m));
        }
        if self.flow_control && self.idle_heartbeat <= 0 {
            return Err(bad(
                400,
                10108,
                "consumer with flow control also needs heartbeats",
            ));
        }
        Ok(())
    }
    /// What a pull consumer may not set, and its defaults.
    fn check_pull(&mut self) -> Result<(), ApiError> {
        if self.rate_limit_bps > 0 {
            return Err(bad(
                400,
                10086,
                "consumer in pull mode can not have rate limit set",
            ));
        }
        if self.idle_heartbeat != 0 {
            return Err(bad(
                400,
                10088,
                "consumer idle heartbeat requires a push based consumer",
            ));
        }
        if self.flow_control {
            return Err(bad(
                400,
                10089,
                "consumer flow control requires a push based consumer",
            ));
        }
        if self.max_waiting <= 0 {
            self.max_waiting = MAX_WAITING_DEFAULT;
        }
        if self.max_expires != 0 && self.max_expires < 1_000_000 {
            return Err(bad(
                400,
                10115,
                "consumer max request expires needs to be >= 1ms",
            ));
        }
        Ok(())
    }
    /// The idle heartbeat floor and the filter subjects.
    fn check_filters(&mut self) -> Result<(), ApiError> {
        if self.idle_heartbeat != 0 && self.idle_heartbeat < HEARTBEAT_MIN {
            return Err(bad(
                400,
                10083,
                "consumer idle heartbeat needs to be >= 100ms",
            ));
        }
        if !self.filter_subject.is_empty() && !self.filter_subjects.is_empty() {
            return Err(bad(
                400,
                10136,
                "consumer cannot have both FilterSubject and FilterSubjects specified",
            ));
        }
        let invalid = || Err(ApiError::invalid_config("invalid subject"));
        if !self.filter_subject.is_empty()
            && !subject::valid_subscribe(self.filter_subject.as_bytes())
        {
            return invalid();
        }
        if self.filter_subjects.iter().any(String::is_empty) {
            let m = "consumer filter in FilterSubjects cannot be empty";
            return Err(bad(400, 10139, m));
        }
        let filters = self.filters();
        for (i, a) in filters.iter().enumerate() {
            if !subject::valid_subscribe(a.as_bytes()) {
                return invalid();
            }
            // One inside another (intersecting ones are allowed, as there).
            for (j, b) in filters.iter().enumerate() {
                if i != j && subject::is_subset(a.as_bytes(), b.as_bytes()) {
                    return Err(bad(400, 10138, "consumer subject filters cannot overlap"));
                }
            }
        }
        Ok(())
    }
    /// The deliver policy against opt_start_seq and opt_start_time.
    fn check_start(&mut self) -> Result<(), ApiError> {
        match self.deliver() {
            DeliverPolicy::ByStartSeq => {
                if self.opt_start_seq == 0 {
                    return Err(bad(400, 10094, "consumer delivery policy is deliver by start sequence, but optional start sequence is not set"));
                }
                if self.opt_start_time.is_some() {
                    return Err(bad(400, 10094, "consumer delivery policy is deliver by start sequence, but optional start time is also set"));
                }
            }
            DeliverPolicy::ByStartTime => {
                let Some(t) = &self.opt_start_time else {
                    return Err(bad(400, 10094, "consumer delivery policy is deliver by start time, but optional start time is not set"));
                };
                if crate::js::types::json::parse_rfc3339(t).is_none() {
                    return Err(ApiError::invalid_json(&format!(
                        "parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse"
                    )));
                }
                if self.opt_start_seq != 0 {
                    return Err(bad(400, 10094, "consumer delivery policy is deliver by start time, but optional start start sequence is also set"));
                }
            }
            other => {
                let name = match other {
                    DeliverPolicy::All => "deliver all",
                    DeliverPolicy::Last => "deliver last",
                    DeliverPolicy::New => "deliver new",
                    _ => "deliver last per subject",
                };
                if self.opt_start_seq != 0 {
                    return Err(bad(400, 10094, &format!("consumer delivery policy is {name}, but optional start sequence is also set")));
                }
                if self.opt_start_time.is_some() {
                    return Err(bad(400, 10094, &format!("consumer delivery policy is {name}, but optional start time is also set")));
                }
                if other == DeliverPolicy::LastPerSubject && self.filters().is_empty() {
                    return Err(bad(400, 10094, "consumer delivery policy is deliver last per subject, but optional filter subject is not set"));
                }
            }
        }
        Ok(())
    }
    /// pause_until, sample_freq and the inactive threshold (ephemerals get one).
    fn check_times(&mut self, stream: &StreamConfig) -> Result<(), ApiError> {
        if let Some(t) = &self.pause_until {
            if crate::js::types::json::parse_rfc3339(t).is_none() {
                return Err(ApiError::invalid_json(&format!(
                    "parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse"
                )));
            }
        }
        if !self.sample_freq.is_empty() {
            let s = self
                .sample_freq
                .strip_suffix('%')
                .unwrap_or(&self.sample_freq);
            // Go's strconv.Atoi and its error text.
            let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
            if s.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                let m = format!(
                    "failed to parse consumer sampling configuration: strconv.Atoi: parsing {s:?}: invalid syntax"
                );
                return Err(bad(400, 10095, &m));
            }
            if s.starts_with('-') && digits.bytes().any(|b| b != b'0') {
                let m = "failed to parse consumer sampling configuration: %!w(<nil>)";
                return Err(bad(400, 10095, m));
            }
        }
        if self.inactive_threshold == 0 && !self.is_durable() {
            self.inactive_threshold = if stream.consumer_limits.inactive_threshold > 0 {
                stream.consumer_limits.inactive_threshold
            } else {
                INACTIVE_THRESHOLD_EPHEMERAL
            };
        }
        Ok(())
    }
    /// What the stream's retention asks of its consumers.
    /// Direct consumers (other servers' mirrors and sources) are push
    /// ephemerals.
    fn check_direct(&self) -> Result<(), ApiError> {
        if self.direct && !self.is_push() {
            return Err(bad(
                400,
                10090,
                "consumer direct requires a push based consumer",
            ));
        }
        if self.direct && self.is_durable() {
            return Err(bad(
                400,
                10091,
                "consumer direct requires an ephemeral consumer",
            ));
        }
        Ok(())
    }

    fn check_retention(&self, stream: &StreamConfig) -> Result<(), ApiError> {
        // Retention rules of the stream; nats-server lets the direct consumers
        // of other servers' mirrors and sources read a work queue.
        let wq = stream.retention() == crate::js::types::stream_config::Retention::WorkQueue;
        if wq && !self.direct {
            if self.ack() == AckPolicy::None && !self.is_push() {
                return Err(bad(
                    400,
                    10084,
                    "consumer in pull mode requires explicit ack policy on workqueue stream",
                ));
            }
            if self.ack() != AckPolicy::Explicit {
                return Err(bad(400, 10098, "workqueue stream requires explicit ack"));
            }
            if self.deliver() != DeliverPolicy::All {
                return Err(bad(
                    400,
                    10101,
                    "consumer must be deliver all on workqueue stream",
                ));
            }
        }
        Ok(())
    }

    /// Checks an update against the existing config (nats-server's rules).
    pub fn check_update(&self, old: &ConsumerConfig) -> Result<(), ApiError> {
        let err = |m: &str| Err(ApiError::consumer_create(m));
        if self.deliver_policy != old.deliver_policy {
            return err("deliver policy can not be updated");
        }
        if self.mem_storage != old.mem_storage {
            return err("storage type can not be updated");
        }
        if self.direct != old.direct {
            return err("direct can not be updated");
        }
        if self.opt_start_seq != old.opt_start_seq {
            return err("start sequence can not be updated");
        }
        if self.opt_start_time != old.opt_start_time {
            return err("start time can not be updated");
        }
        if self.ack_policy != old.ack_policy {
            return err("ack policy can not be updated");
        }
        if self.replay_policy != old.replay_policy {
            return err("replay policy can not be updated");
        }
        if self.idle_heartbeat != old.idle_heartbeat {
            return err("heart beats can not be updated");
        }
        if self.flow_control != old.flow_control {
            return err("flow control can not be updated");
        }
        if old.is_push() && !self.is_push() {
            return err("can not update push consumer to pull based");
        }
        if !old.is_push() && self.is_push() {
            return err("can not update pull consumer to push based");
        }
        if self.max_waiting != old.max_waiting {
            return err("max waiting can not be updated");
        }
        Ok(())
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input,
// never reached by a client's data.
#[cfg(test)]
mod tests {
    use super::*;

    fn norm(json: &str) -> Result<ConsumerConfig, ApiError> {
        let body = format!("{{\"stream_name\":\"S\",\"config\":{json}}}");
        let req = ConsumerConfig::decode_request(body.as_bytes(), false)?;
        let mut c = req.config.unwrap_or_default();
        c.normalize(&StreamConfig::default())?;
        Ok(c)
    }

    #[test]
    fn defaults_as_nats_server_fills_them() {
        let c = norm(r#"{"durable_name":"C1","ack_policy":"explicit"}"#).unwrap();
        let out = String::from_utf8(crate::js::types::json::encode(&c)).unwrap();
        assert_eq!(
            out,
            r#"{"durable_name":"C1","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0}"#
        );
        let e = norm(r#"{}"#).unwrap();
        assert_eq!(e.ack_policy, "none");
        assert_eq!(e.max_ack_pending, 0);
        assert_eq!(e.ack_wait, 0);
        assert_eq!(e.inactive_threshold, INACTIVE_THRESHOLD_EPHEMERAL);
        let b = norm(r#"{"durable_name":"B","ack_policy":"explicit","backoff":[1000000000,2000000000],"max_deliver":2}"#).unwrap();
        assert_eq!(b.ack_wait, 1_000_000_000);
        let p = norm(r#"{"durable_name":"P","deliver_subject":"d"}"#).unwrap();
        assert_eq!(p.max_waiting, 0);
    }

    #[test]
    fn refusals_carry_nats_server_codes() {
        let code = |j: &str| norm(j).unwrap_err().err_code;
        assert_eq!(code(r#"{"backoff":[1,2],"max_deliver":1}"#), 10116);
        assert_eq!(code(r#"{"idle_heartbeat":1000000000}"#), 10088);
        assert_eq!(code(r#"{"flow_control":true}"#), 10089);
        assert_eq!(
            code(r#"{"flow_control":true,"deliver_subject":"d"}"#),
            10108
        );
        assert_eq!(code(r#"{"deliver_subject":"d.*"}"#), 10079);
        assert_eq!(code(r#"{"deliver_subject":"d","max_waiting":3}"#), 10080);
        assert_eq!(code(r#"{"rate_limit_bps":1000}"#), 10086);
        assert_eq!(code(r#"{"num_replicas":3}"#), 10074);
        assert_eq!(code(r#"{"deliver_policy":"by_start_sequence"}"#), 10094);
        assert_eq!(code(r#"{"opt_start_seq":2}"#), 10094);
        assert_eq!(code(r#"{"deliver_policy":"last_per_subject"}"#), 10094);
        assert_eq!(code(r#"{"filter_subjects":["a.b","a.>"]}"#), 10138);
        assert_eq!(
            code(r#"{"filter_subject":"b","filter_subjects":["a"]}"#),
            10136
        );
        assert_eq!(code(r#"{"ack_policy":"bogus"}"#), 10025);
        assert_eq!(
            norm(r#"{"ack_policy":"bogus"}"#).unwrap_err().description,
            "invalid JSON: can not unmarshal \"\\\"bogus\\\"\""
        );
        // Accepted: 2 backoffs with max_deliver 2, as nats-server 2.15 does.
        assert!(norm(r#"{"backoff":[1,2],"max_deliver":2}"#).is_ok());
    }

    #[test]
    fn updates_keep_the_immutable_fields() {
        let old = norm(r#"{"durable_name":"C","ack_policy":"explicit"}"#).unwrap();
        let mut new = old.clone();
        new.max_deliver = 5;
        assert!(new.check_update(&old).is_ok());
        new.ack_policy = "all".into();
        assert_eq!(new.check_update(&old).unwrap_err().err_code, 10012);
        let mut push = old.clone();
        push.deliver_subject = "x".into();
        assert_eq!(
            push.check_update(&old).unwrap_err().description,
            "can not update pull consumer to push based"
        );
    }
}
