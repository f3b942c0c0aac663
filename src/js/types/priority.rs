//! Consumer priority groups' settings (nats-server 2.11): the policies, the
//! group name rule, and the config checks of `priority_*`.

use crate::js::types::consumer_config::ConsumerConfig;
use crate::js::types::errors::ApiError;

fn bad(code: u16, err_code: u16, m: &str) -> ApiError {
    ApiError::new(code, err_code, m)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityPolicy {
    None,
    /// Requests with `min_pending`/`min_ack_pending` wait until so much is pending.
    Overflow,
    /// One client (its pin id) takes everything until it goes quiet.
    PinnedClient,
    /// Requests are served by their `priority`, lowest first.
    Prioritized,
}

/// `priority_timeout` of a pinned-client consumer that sets none.
pub const PINNED_TTL_DEFAULT: i64 = 120_000_000_000;

/// A priority group name: 1 to 16 of `A-Za-z0-9/_=-`.
pub fn check_group_name(g: &str) -> Result<(), ApiError> {
    if g.is_empty() {
        return Err(bad(400, 10161, "Group name cannot be an empty string"));
    }
    let ok = g.len() <= 16
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'=' | b'-'));
    if !ok {
        let m = "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed \
                 16 characters";
        return Err(bad(400, 10162, m));
    }
    Ok(())
}

impl ConsumerConfig {
    /// Priority groups (nats-server 2.11): the policy's defaults and rules.
    pub(super) fn check_priority(&mut self) -> Result<(), ApiError> {
        if self.priority_timeout < 0 {
            self.priority_timeout = 0;
        }
        if self.priority() == PriorityPolicy::PinnedClient && self.priority_timeout == 0 {
            self.priority_timeout = PINNED_TTL_DEFAULT;
        }
        if self.priority() != PriorityPolicy::None {
            if self.is_push() {
                let m = "priority groups can not be used with push consumers";
                return Err(bad(400, 10178, m));
            }
            if self.priority_groups.is_empty() {
                let m = "Setting PriorityPolicy requires at least one PriorityGroup to be set";
                return Err(bad(400, 10159, m));
            }
            for g in &self.priority_groups {
                check_group_name(g)?;
            }
        } else {
            if !self.priority_groups.is_empty() {
                let m = "consumer can not have priority groups when policy is none";
                return Err(bad(400, 10196, m));
            }
            if self.priority_timeout > 0 {
                let m = "PinnedTTL cannot be set when PriorityPolicy is none";
                return Err(bad(400, 10197, m));
            }
        }
        Ok(())
    }

    pub fn priority(&self) -> PriorityPolicy {
        match self.priority_policy.as_str() {
            "overflow" => PriorityPolicy::Overflow,
            "pinned_client" => PriorityPolicy::PinnedClient,
            "prioritized" => PriorityPolicy::Prioritized,
            _ => PriorityPolicy::None,
        }
    }
}
