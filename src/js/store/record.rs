//! The segment file format: a sequence of records, each
//!
//! ```text
//! 0  u32 len      whole record, header included (0 = end of data: zero padding)
//! 4  u32 crc32c   of bytes 8..len
//! 8  u8  kind     1 message, 2 delete (seq), 3 floor (everything below seq is gone),
//!                 4 moved (a live message copied forward by compaction)
//! 9  u8  0
//! 10 u16 subject length
//! 12 u32 header length
//! 16 u64 sequence
//! 24 i64 timestamp, Unix nanoseconds
//! 32 subject, header block, payload
//! ```
//!
//! little endian, packed back to back; files are written in 4 KiB blocks, so the
//! tail of the last block is zeros. A record that fails its checksum is never
//! used: recovery drops it (and truncates a torn tail).

pub const HEADER: usize = 32;

// The longest record this codec can write (a u16 subject length, a header
// block, the largest payload) is one recovery and reads accept.
const _: () = assert!(
    HEADER + u16::MAX as usize + crate::limits::HEADERS_MAX + crate::limits::PAYLOAD_MAX_LIMIT
        <= crate::limits::RECORD_BYTES_MAX
);
pub const KIND_MSG: u8 = 1;
pub const KIND_DELETE: u8 = 2;
pub const KIND_FLOOR: u8 = 3;
/// A live message copied forward from an old segment (compaction); it keeps its
/// sequence and timestamp, and supersedes the original record.
pub const KIND_MOVED: u8 = 4;

/// A decoded record borrowing from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: u8,
    pub seq: u64,
    pub ts: i64,
    pub subject: &'a [u8],
    /// Header block then payload.
    pub data: &'a [u8],
    pub hdr_len: usize,
}

pub fn encoded_len(subject: usize, data: usize) -> usize {
    HEADER + subject + data
}

/// Appends one record to `out`.
pub fn encode(
    out: &mut impl Out,
    kind: u8,
    seq: u64,
    ts: i64,
    subject: &[u8],
    hdr_len: usize,
    data: &[u8],
) {
    let len = encoded_len(subject.len(), data.len());
    let start = out.len();
    out.reserve(len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&[kind, 0]);
    out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
    out.extend_from_slice(&(hdr_len as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(subject);
    out.extend_from_slice(data);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Where records are encoded: a `Vec`, or a stream's aligned staging.
pub trait Out: std::ops::DerefMut<Target = [u8]> {
    fn reserve(&mut self, more: usize);
    fn extend_from_slice(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn reserve(&mut self, more: usize) {
        Vec::reserve(self, more)
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes)
    }
}

impl Out for crate::js::store::stagebuf::StageBuf {
    fn reserve(&mut self, more: usize) {
        crate::js::store::stagebuf::StageBuf::reserve(self, more)
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        crate::js::store::stagebuf::StageBuf::extend_from_slice(self, bytes)
    }
}

/// What lies at a position of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Record(Record<'a>, usize),
    /// Zero length: the rest is padding.
    End,
    /// Not a valid record (torn or corrupt): `why`.
    Bad(&'static str),
}

/// Decodes the record at the start of `buf`; `max_len` bounds a sane length.
pub fn decode(buf: &[u8], max_len: usize) -> Decoded<'_> {
    decode_checked(buf, max_len, true)
}

/// `decode` of bytes this process encoded and still holds (a write batch):
/// everything but the checksum is checked.
pub fn decode_own(buf: &[u8]) -> Decoded<'_> {
    decode_checked(buf, usize::MAX, false)
}

fn decode_checked(buf: &[u8], max_len: usize, verify: bool) -> Decoded<'_> {
    if buf.len() < 4 {
        return if buf.iter().all(|b| *b == 0) {
            Decoded::End
        } else {
            Decoded::Bad("short header")
        };
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
    if len == 0 {
        return Decoded::End;
    }
    if len < HEADER || len > max_len {
        return Decoded::Bad("bad length");
    }
    if len > buf.len() {
        return Decoded::Bad("record runs past end of file");
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    if verify && crc32c::crc32c(&buf[8..len]) != crc {
        return Decoded::Bad("checksum mismatch");
    }
    let kind = buf[8];
    let subj_len = u16::from_le_bytes(buf[10..12].try_into().unwrap()) as usize;
    let hdr_len = u32::from_le_bytes(buf[12..16].try_into().unwrap()) as usize;
    let seq = u64::from_le_bytes(buf[16..24].try_into().unwrap());
    let ts = i64::from_le_bytes(buf[24..32].try_into().unwrap());
    if !matches!(kind, KIND_MSG | KIND_DELETE | KIND_FLOOR | KIND_MOVED) || HEADER + subj_len > len
    {
        return Decoded::Bad("bad record kind or subject length");
    }
    let subject = &buf[HEADER..HEADER + subj_len];
    let data = &buf[HEADER + subj_len..len];
    if hdr_len > data.len() {
        return Decoded::Bad("bad header length");
    }
    Decoded::Record(
        Record {
            kind,
            seq,
            ts,
            subject,
            data,
            hdr_len,
        },
        len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_byte_is_caught() {
        let mut buf = Vec::new();
        encode(&mut buf, KIND_MSG, 7, 123, b"a.b", 2, b"h:hello");
        let len = buf.len();
        match decode(&buf, 1 << 20) {
            Decoded::Record(r, n) => {
                assert_eq!(n, len);
                assert_eq!(
                    (r.kind, r.seq, r.ts, r.subject, r.data, r.hdr_len),
                    (KIND_MSG, 7, 123, &b"a.b"[..], &b"h:hello"[..], 2)
                );
            }
            other => panic!("{other:?}"),
        }
        for i in 0..len {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(decode(&bad, 1 << 20), Decoded::Bad(_) | Decoded::End),
                "byte {i}"
            );
        }
        assert!(matches!(decode(&buf[..len - 1], 1 << 20), Decoded::Bad(_)));
        assert_eq!(decode(&[0u8; 64], 1 << 20), Decoded::End);
    }
}
