//! JetStream API errors: HTTP-like `code`, the `err_code` clients switch on, and
//! the `description` text, as nats-server 2.15 writes them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: u16,
    pub err_code: u16,
    pub description: String,
}

fn e(code: u16, err_code: u16, description: impl Into<String>) -> ApiError {
    ApiError {
        code,
        err_code,
        description: description.into(),
    }
}

impl ApiError {
    pub fn new(code: u16, err_code: u16, description: impl Into<String>) -> Self {
        e(code, err_code, description)
    }
    pub fn consumer_not_found() -> Self {
        e(404, 10014, "consumer not found")
    }
    pub fn consumer_exists() -> Self {
        e(400, 10148, "consumer already exists")
    }
    pub fn consumer_missing() -> Self {
        e(400, 10149, "consumer does not exist")
    }
    pub fn consumer_create(msg: impl std::fmt::Display) -> Self {
        e(500, 10012, msg.to_string())
    }
    pub fn bad_request() -> Self {
        e(400, 10003, "bad request")
    }
    pub fn invalid_json(msg: &str) -> Self {
        e(400, 10025, format!("invalid JSON: {msg}"))
    }
    pub fn not_enabled() -> Self {
        e(503, 10076, "JetStream not enabled")
    }
    pub fn stream_not_found() -> Self {
        e(404, 10059, "stream not found")
    }
    pub fn name_mismatch() -> Self {
        e(400, 10056, "stream name in subject does not match request")
    }
    pub fn name_in_use() -> Self {
        e(
            400,
            10058,
            "stream name already in use with a different configuration",
        )
    }
    pub fn invalid_config(msg: impl std::fmt::Display) -> Self {
        e(500, 10052, msg.to_string())
    }
    pub fn create_failed(msg: impl std::fmt::Display) -> Self {
        e(500, 10049, msg.to_string())
    }
    pub fn update_failed(msg: impl std::fmt::Display) -> Self {
        e(500, 10069, msg.to_string())
    }
    pub fn delete_failed(msg: impl std::fmt::Display) -> Self {
        e(500, 10050, msg.to_string())
    }
    pub fn subjects_overlap() -> Self {
        e(400, 10065, "subjects overlap with an existing stream")
    }
    pub fn replicas_not_supported() -> Self {
        e(
            500,
            10074,
            "replicas > 1 not supported in non-clustered mode",
        )
    }
    pub fn max_streams() -> Self {
        e(400, 10027, "maximum number of streams reached")
    }
    pub fn no_message_found() -> Self {
        e(404, 10037, "no message found")
    }
    pub fn msg_delete_failed(msg: impl std::fmt::Display) -> Self {
        e(500, 10057, msg.to_string())
    }
    pub fn sealed() -> Self {
        e(400, 10109, "invalid operation on sealed stream")
    }
    pub fn purge_failed(msg: impl std::fmt::Display) -> Self {
        e(500, 10110, msg.to_string())
    }
    pub fn mirror_not_updatable() -> Self {
        e(400, 10055, "stream mirror configuration can not be updated")
    }
    pub fn msg_too_big() -> Self {
        e(400, 10054, "message size exceeds maximum allowed")
    }
    pub fn header_too_big() -> Self {
        e(400, 10097, "header size exceeds maximum allowed of 64k")
    }
    pub fn expected_stream() -> Self {
        e(400, 10060, "expected stream does not match")
    }
    pub fn wrong_last_seq(seq: u64) -> Self {
        e(400, 10071, format!("wrong last sequence: {seq}"))
    }
    pub fn wrong_last_msg_id(id: &str) -> Self {
        e(400, 10070, format!("wrong last msg ID: {id}"))
    }
    pub fn rollup_invalid(value: &str) -> Self {
        e(500, 10111, format!("rollup value invalid: {value:?}"))
    }
    pub fn rollup_not_permitted() -> Self {
        e(500, 10111, "rollup not permitted")
    }
    pub fn store_failed(msg: impl std::fmt::Display) -> Self {
        e(503, 10077, msg.to_string())
    }
    pub fn insufficient_storage() -> Self {
        e(500, 10047, "insufficient storage resources available")
    }
    pub fn insufficient_memory() -> Self {
        e(500, 10028, "insufficient memory resources available")
    }
    /// A publish while the server's JetStream storage of its kind is over
    /// `max_memory_store`/`max_file_store`.
    pub fn insufficient_resources() -> Self {
        e(503, 10023, "insufficient resources")
    }
    pub fn too_many_requests() -> Self {
        e(429, 10167, "too many requests")
    }
    pub fn ttl_disabled() -> Self {
        e(400, 10166, "per-message TTL is disabled")
    }
    /// Leader stepdowns and peer removals on a server without clustering.
    pub fn clustering_required() -> Self {
        e(503, 10010, "JetStream clustering support required")
    }
    pub fn not_empty_request() -> Self {
        e(400, 10038, "expected an empty request payload")
    }
    pub fn ttl_invalid() -> Self {
        e(400, 10165, "invalid per-message TTL")
    }
    pub fn batch_disabled() -> Self {
        e(400, 10174, "atomic publish is disabled")
    }
    pub fn expected_subject_seq_subject_alone() -> Self {
        e(
            400,
            10193,
            "missing sequence for expected last sequence per subject",
        )
    }
    pub fn counter_invalid() -> Self {
        e(400, 10171, "message counter increment is invalid")
    }
    pub fn counters_disabled() -> Self {
        e(400, 10168, "message counters is disabled")
    }
    pub fn schedules_disabled() -> Self {
        e(400, 10188, "message schedules is disabled")
    }
    pub fn source_header_not_allowed() -> Self {
        e(400, 10227, "message stream source header is not allowed")
    }
    pub fn max_consumers() -> Self {
        e(400, 10026, "maximum consumers limit reached")
    }
    pub fn required_api_level() -> Self {
        e(412, 10185, "JetStream minimum api level required")
    }
}
