//! Where a stream's links (its mirror, its sources) stand in their origins:
//! the last origin sequence committed for each, and the origin's identity
//! that position belongs to. Persisted with the copies themselves (every
//! sourced record carries `Nats-Stream-Source: <name> <origin seq> ...`, and a
//! mirror's records carry the origin's sequences), so the two cannot
//! disagree. Because a copy can be removed (limits, purge) before its origin
//! moves on, the positions are also saved in two slots (`sources.0/1`)
//! before any record is destroyed (segment reclaimed, message erased), at
//! close, and every `SOURCES_SAVE_INTERVAL`; recovery takes, per link, the
//! newer of the slots and the records written after them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One link's position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPos {
    /// Last origin sequence committed (0: none).
    pub seq: u64,
    /// The origin's identity the position belongs to (empty: not known).
    pub ident: String,
}

/// All links' positions, by index name (`StreamSource::iname`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    pub links: BTreeMap<String, LinkPos>,
    /// Mirror: stored sequence = origin sequence + offset. It grows when the
    /// origin was deleted and created again (sequences restarted), so the
    /// new origin's messages follow the old ones without clashing.
    pub offset: u64,
    /// The stream's last sequence when these were saved: records after it
    /// are newer than the saved positions.
    pub stamp: u64,
}

/// Positions found in records during recovery: (position, the record's
/// stream sequence).
pub type Found = BTreeMap<String, (LinkPos, u64)>;

impl Positions {
    /// Recovery: the saved positions, updated by records written after they
    /// were saved.
    pub fn merged(saved: Option<Positions>, found: Found) -> Positions {
        let mut p = saved.unwrap_or_default();
        for (iname, (pos, at)) in found {
            if at > p.stamp || !p.links.contains_key(&iname) {
                p.links.insert(iname, pos);
            }
        }
        p
    }
}

/// Parses a `Nats-Stream-Source` value: (index name, origin sequence, the
/// origin's identity). Formats: `<name> <seq> <filter> <dest> <subject>
/// [<ident>]` (2.10+), and `<name> <seq>` (older servers).
pub fn parse_source_header(v: &[u8]) -> Option<(String, u64, String)> {
    let v = std::str::from_utf8(v).ok()?;
    let f: Vec<&str> = v.split(' ').collect();
    let seq = f.get(1)?.parse().ok()?;
    match f.len() {
        2 => Some((format!("{} > >", f[0]), seq, String::new())),
        n if n >= 4 => {
            let ident = f.get(5).map_or(String::new(), |s| (*s).to_string());
            Some((format!("{} {} {}", f[0], f[2], f[3]), seq, ident))
        }
        _ => None,
    }
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_the_link_and_position() {
        assert_eq!(
            parse_source_header(b"ORIG 6 > > orig.a enzAHJFe"),
            Some(("ORIG > >".into(), 6, "enzAHJFe".into()))
        );
        assert_eq!(
            parse_source_header(b"O 2 orig.*\x0cp.b c.{{wildcard(1)}}\x0c> orig.b"),
            Some((
                "O orig.*\x0cp.b c.{{wildcard(1)}}\x0c>".into(),
                2,
                String::new()
            ))
        );
        assert_eq!(
            parse_source_header(b"OLD 9"),
            Some(("OLD > >".into(), 9, String::new()))
        );
        assert_eq!(parse_source_header(b"bad"), None);
    }

    #[test]
    fn records_after_the_save_win() {
        let mut saved = Positions {
            stamp: 10,
            ..Default::default()
        };
        let pos = |seq| LinkPos {
            seq,
            ident: "i".into(),
        };
        saved.links.insert("A > >".into(), pos(50));
        saved.links.insert("B > >".into(), pos(7));
        let mut found = Found::new();
        found.insert("A > >".into(), (pos(40), 9)); // older than the save
        found.insert("B > >".into(), (pos(8), 11)); // newer
        found.insert("C > >".into(), (pos(3), 2)); // not saved at all
        let p = Positions::merged(Some(saved), found);
        assert_eq!(p.links["A > >"].seq, 50);
        assert_eq!(p.links["B > >"].seq, 8);
        assert_eq!(p.links["C > >"].seq, 3);
    }
}
