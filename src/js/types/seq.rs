//! Numbers that meet in the consumer code and must not be mixed up: a
//! message's place in its stream, a delivery's number at one consumer, how
//! many times a message was delivered, and time. Each is its own type; the raw
//! value is `.0` where it meets the wire or the index.

use serde::{Deserialize, Serialize};

/// A message's sequence in its stream (1-based; 0 = none yet).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct StreamSeq(pub u64);

/// A delivery's number at one consumer (every delivery, redeliveries too,
/// takes the next one; 0 = none yet).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ConsumerSeq(pub u64);

/// How many times a consumer has delivered one message (1 = the first delivery).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct DeliveryCount(pub u64);

/// A point in time (Unix nanoseconds) or a span of it (nanoseconds).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Nanos(pub i64);

impl StreamSeq {
    pub fn next(self) -> StreamSeq {
        StreamSeq(self.0 + 1)
    }
    /// The sequence before this one (0 stays 0: "before the first").
    pub fn prev(self) -> StreamSeq {
        StreamSeq(self.0.saturating_sub(1))
    }
}

impl ConsumerSeq {
    pub fn next(self) -> ConsumerSeq {
        ConsumerSeq(self.0 + 1)
    }
    pub fn prev(self) -> ConsumerSeq {
        ConsumerSeq(self.0.saturating_sub(1))
    }
}

impl DeliveryCount {
    pub const FIRST: DeliveryCount = DeliveryCount(1);
    pub fn next(self) -> DeliveryCount {
        DeliveryCount(self.0 + 1)
    }
}

impl Nanos {
    /// Now, Unix nanoseconds.
    pub fn now() -> Nanos {
        Nanos(crate::js::types::json::now_nanos())
    }
    /// `self + span`, saturating: deadlines far in the future stay far.
    pub fn after(self, span: i64) -> Nanos {
        Nanos(self.0.saturating_add(span))
    }
    /// Nanoseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn since(self, earlier: Nanos) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_as_plain_numbers() {
        let v = (StreamSeq(5), ConsumerSeq(6), DeliveryCount(2), Nanos(-1));
        assert_eq!(serde_json::to_string(&v).unwrap(), "[5,6,2,-1]");
        assert_eq!(StreamSeq(0).prev(), StreamSeq(0));
        assert_eq!(Nanos(i64::MAX - 1).after(10), Nanos(i64::MAX));
    }
}
