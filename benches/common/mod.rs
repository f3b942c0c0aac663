//! What the index benches share.

use bytes::Bytes;
use jetcore::js::store::index::{Location, NewEntry};

/// Message `seq` on `subject`: 128 bytes, no headers, timestamp `seq`, in
/// segment 1 at `seq * spacing`, its body cached when given.
pub fn message(seq: u64, subject: &Bytes, spacing: u64, data: Option<Bytes>) -> NewEntry<'_> {
    NewEntry {
        seq,
        ts: seq as i64,
        subject,
        hdr_len: 0,
        len: 128,
        at: Location {
            seg: 1,
            off: seq * spacing,
        },
        data,
        flags: 0,
    }
}
