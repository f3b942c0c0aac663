//! What a copied message becomes in its target, as nats-server writes it:
//! - a source's copy keeps its headers except `Nats-Stream-Source`,
//!   `Nats-Expected-*` and `Nats-Batch-*`, and gains `Nats-Stream-Source:
//!   <name> <origin seq> <filter> <dest> <origin subject>[ <origin identity>]`
//!   as its last header; it gets a new sequence and time;
//! - a mirror's copy loses only `Nats-Expected-*` and `Nats-Batch-*`, and
//!   keeps the origin's sequence and time;
//! - both take the first matching subject transform.
//!
//! Pure: bytes in, bytes out.

use crate::protocol::headers;
use crate::subject::transform::Transform;

/// Whether a header line (its name) is dropped from a copy.
fn dropped(name: &[u8], source: bool) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with(b"nats-expected-")
        || lower.starts_with(b"nats-batch-")
        || (source && lower == b"nats-stream-source")
}

/// A copy's header block: `hdr` without the dropped headers, plus `extra`
/// (`name: value`) as the last header. None when nothing changes (the block
/// is kept as it is, without a copy).
pub fn headers(hdr: &[u8], source: bool, extra: Option<(&str, &str)>) -> Option<Vec<u8>> {
    let extra: Vec<(&str, &[u8])> = extra.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    headers::rewrite(hdr, |name| dropped(name, source), &extra)
}

/// The value of a source copy's `Nats-Stream-Source` header.
pub fn source_value(iname: &str, origin_seq: u64, subject: &[u8], ident: &str) -> String {
    // The index name is `<name> <filters> <dests>`: the sequence goes after
    // the name.
    let (name, rest) = iname.split_once(' ').unwrap_or((iname, "> >"));
    let subject = String::from_utf8_lossy(subject);
    if ident.is_empty() {
        format!("{name} {origin_seq} {rest} {subject}")
    } else {
        format!("{name} {origin_seq} {rest} {subject} {ident}")
    }
}

/// The subject under the first transform that matches (unchanged when there
/// are none); None when transforms exist and none matches.
pub fn subject(transforms: &[Transform], subject: &[u8]) -> Option<Vec<u8>> {
    if transforms.is_empty() {
        return Some(subject.to_vec());
    }
    transforms.iter().find_map(|t| t.apply(subject))
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Option<Vec<u8>>) -> String {
        String::from_utf8(v.unwrap()).unwrap()
    }

    #[test]
    fn sources_rewrite_headers_as_nats_server() {
        let hdr = b"NATS/1.0\r\nNats-Msg-Id: id-1\r\nNats-Expected-Last-Sequence: 5\r\nX-Custom: hello\r\n\r\n";
        let v = source_value("ORIG > >", 6, b"orig.a", "enzAHJFe");
        assert_eq!(v, "ORIG 6 > > orig.a enzAHJFe");
        assert_eq!(
            text(headers(hdr, true, Some(("Nats-Stream-Source", &v)))),
            "NATS/1.0\r\nNats-Msg-Id: id-1\r\nX-Custom: hello\r\nNats-Stream-Source: ORIG 6 > > orig.a enzAHJFe\r\n\r\n"
        );
        // A source of a sourced stream replaces the header, it does not chain.
        let sourced = b"NATS/1.0\r\nNats-Stream-Source: X 1 > > x.a abc\r\n\r\n";
        assert_eq!(
            text(headers(
                sourced,
                true,
                Some(("Nats-Stream-Source", "S1 1 > > x.a def"))
            )),
            "NATS/1.0\r\nNats-Stream-Source: S1 1 > > x.a def\r\n\r\n"
        );
        assert_eq!(
            text(headers(
                b"",
                true,
                Some(("Nats-Stream-Source", "O 1 > > a"))
            )),
            "NATS/1.0\r\nNats-Stream-Source: O 1 > > a\r\n\r\n"
        );
        assert_eq!(
            source_value("O orig.a >", 1, b"orig.a", ""),
            "O 1 orig.a > orig.a"
        );
    }

    #[test]
    fn mirrors_drop_only_expectations_and_batches() {
        let hdr = b"NATS/1.0\r\nNats-Msg-Id: id-1\r\nNats-Expected-Last-Sequence: 5\r\nX-Custom: hello\r\n\r\n";
        assert_eq!(
            text(headers(hdr, false, None)),
            "NATS/1.0\r\nNats-Msg-Id: id-1\r\nX-Custom: hello\r\n\r\n"
        );
        let kept = b"NATS/1.0\r\nNats-Stream-Source: X 1 > > x.a abc\r\n\r\n";
        assert_eq!(headers(kept, false, None), None);
        assert_eq!(headers(b"", false, None), None);
    }

    #[test]
    fn the_first_matching_transform_renames() {
        let t = vec![
            Transform::new("orig.a", "x.a").unwrap(),
            Transform::new("orig.*", "copy.{{wildcard(1)}}").unwrap(),
        ];
        assert_eq!(subject(&t, b"orig.a").unwrap(), b"x.a");
        assert_eq!(subject(&t, b"orig.b").unwrap(), b"copy.b");
        assert_eq!(subject(&t, b"other"), None);
        assert_eq!(subject(&[], b"other").unwrap(), b"other");
    }
}
