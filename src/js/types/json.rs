//! JSON the way nats-server's Go code reads and writes it.
//!
//! Reading: object keys of struct fields match case-insensitively and a repeated
//! key keeps its last value in document order (serde would refuse the repeat);
//! user maps (`metadata`) keep their keys as sent. Writing: Go escapes `<`, `>`
//! and `&` inside strings, and clients compare bytes with nats-server's.
//! Times: RFC 3339 with up to nine fraction digits, trailing zeros trimmed.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Object keys whose values are user maps: their keys are data, not field names.
const USER_MAPS: &[&str] = &["metadata"];

/// Parses `bytes` as one JSON value with Go's field-matching rules applied.
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = GoValue::deserialize_with(&mut de, true).map_err(|e| go_error(&e))?;
    de.end().map_err(|e| go_error(&e))?;
    Ok(v)
}

/// A decoder message in the spirit of Go's (clients only show it).
fn go_error(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of JSON input".to_string(),
        _ => e.to_string(),
    }
}

struct GoValue;

impl GoValue {
    fn deserialize_with<'de, D: Deserializer<'de>>(d: D, fold: bool) -> Result<Value, D::Error> {
        d.deserialize_any(GoVisitor { fold })
    }
}

struct GoVisitor {
    fold: bool,
}

struct Seed {
    fold: bool,
}

impl<'de> de::DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        GoValue::deserialize_with(d, self.fold)
    }
}

impl<'de> Visitor<'de> for GoVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Seed { fold: true })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let user_map = USER_MAPS.iter().any(|k| k.eq_ignore_ascii_case(&key));
            let v = map.next_value_seed(Seed { fold: !user_map })?;
            let key = if self.fold {
                key.to_ascii_lowercase()
            } else {
                key
            };
            // Go leaves a field alone when the value is null.
            if v.is_null() && self.fold {
                continue;
            }
            // Insert after removing, so the last occurrence wins.
            out.remove(&key);
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// `T` from a value decoded from `body`. `strict` refuses a field `T` does not
/// have, as nats-server does in strict mode (its default since 2.12): the
/// first one in `body` is named as sent, as Go's `DisallowUnknownFields` does.
pub fn from_value<T: serde::de::DeserializeOwned>(
    v: Value,
    body: &[u8],
    strict: bool,
) -> Result<T, String> {
    if !strict {
        return serde_json::from_value(v).map_err(|e| e.to_string());
    }
    let mut unknown: Vec<Vec<Step>> = Vec::new();
    let t = serde_ignored::deserialize(v, |path| unknown.push(steps(&path)))
        .map_err(|e| e.to_string())?;
    if unknown.is_empty() {
        return Ok(t);
    }
    // Keys were folded to lower case: find each as sent, and the first in the body.
    let sent: Option<Value> = serde_json::from_slice(body).ok();
    let named = unknown
        .iter()
        .filter_map(|path| {
            let key = match path.last() {
                Some(Step::Key(k)) => k.clone(),
                _ => return None,
            };
            let key = sent
                .as_ref()
                .and_then(|v| key_as_sent(v, path))
                .unwrap_or(key);
            Some((key_position(body, &key).unwrap_or(usize::MAX), key))
        })
        .min();
    match named {
        Some((_, key)) => Err(format!("json: unknown field {}", quote(&key))),
        None => Ok(t),
    }
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &serde_ignored::Path) -> Vec<Step> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut out = steps(parent);
            out.push(Step::Index(*index));
            out
        }
        Path::Map { parent, key } => {
            let mut out = steps(parent);
            out.push(Step::Key(key.clone()));
            out
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => steps(parent),
    }
}

/// The key at the end of `path` as `sent` spells it (paths carry the folded keys).
fn key_as_sent(sent: &Value, path: &[Step]) -> Option<String> {
    let mut at = sent;
    let mut name = None;
    for step in path {
        at = match (step, at) {
            (Step::Index(i), Value::Array(a)) => a.get(*i)?,
            (Step::Key(k), Value::Object(o)) => {
                let (key, v) = o.iter().find(|(key, _)| key.eq_ignore_ascii_case(k))?;
                name = Some(key.clone());
                v
            }
            _ => return None,
        };
    }
    name
}

/// Where `key` first appears as an object key in `body` (a quoted string
/// followed by a colon).
fn key_position(body: &[u8], key: &str) -> Option<usize> {
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < body.len() && body[end] != b'"' {
            end += if body[end] == b'\\' { 2 } else { 1 };
        }
        let text = &body[start..end.min(body.len())];
        let colon = body[(end + 1).min(body.len())..]
            .iter()
            .find(|b| !b.is_ascii_whitespace());
        if colon == Some(&b':') && text == key.as_bytes() {
            return Some(i);
        }
        i = end + 1;
    }
    None
}

/// `decode_as`, refusing unknown fields when `strict`.
pub fn decode_checked<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    strict: bool,
) -> Result<T, String> {
    let trimmed = bytes.iter().all(|b| b.is_ascii_whitespace());
    let v = if trimmed {
        Value::Object(Map::new())
    } else {
        match decode(bytes)? {
            // Go decodes `null` into a struct as "nothing set".
            Value::Null => Value::Object(Map::new()),
            v => v,
        }
    };
    from_value(v, bytes, strict)
}

/// Decodes a request body into `T` with Go's rules; an empty body is `{}`.
/// Unknown fields are ignored (requests nats-server never checks strictly:
/// pull requests, direct gets, unpin).
pub fn decode_as<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode_checked(bytes, false)
}

/// Serializes like Go's encoding/json: HTML-sensitive characters escaped.
pub fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let raw = serde_json::to_vec(v).expect("response types serialize");
    go_escape(raw)
}

/// `s` as a JSON string, escaped as Go escapes it.
pub fn quote(s: &str) -> String {
    String::from_utf8(go_escape(serde_json::to_vec(s).expect("string"))).expect("utf8")
}

/// Escapes `<`, `>`, `&`, U+2028 and U+2029 as Go does. They can only occur
/// inside strings in serde_json's output, so a byte-level pass is exact.
pub fn go_escape(raw: Vec<u8>) -> Vec<u8> {
    let needs = raw.iter().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2));
    if !needs {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 if raw.get(i + 1) == Some(&0x80)
                && matches!(raw.get(i + 2), Some(0xA8 | 0xA9)) =>
            {
                let last = raw[i + 2];
                out.extend_from_slice(if last == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// Nanoseconds since the Unix epoch, from the system clock.
pub fn now_nanos() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_nanos() as i64
}

/// Formats Unix nanoseconds as Go's RFC3339Nano in UTC; 0 is Go's zero time.
pub fn rfc3339(nanos: i64) -> String {
    if nanos == 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::log::civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses an RFC 3339 time (any fraction length, `Z` or an offset) to Unix nanos.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let mut padded = digits.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        frac = padded.parse().ok()?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        b'+' | b'-' if i + 6 == b.len() => {
            let sign = if b[i] == b'-' { -1 } else { 1 };
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    // Past 2262 the nanoseconds saturate, as Go's durations do.
    Some(secs.saturating_mul(1_000_000_000).saturating_add(frac))
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's method).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Standard base64 (RFC 4648, padded), as Go encodes `[]byte`.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Go's `time.Duration.String()` (status texts, marker TTLs, limits).
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let frac = |v: u64, unit: u64, suffix: &str| {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            format!("{whole}{suffix}")
        } else {
            let digits = format!("{:0width$}", rest, width = unit.ilog10() as usize);
            format!("{whole}.{}{suffix}", digits.trim_end_matches('0'))
        }
    };
    let s = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        frac(u, 1_000, "µs")
    } else if u < 1_000_000_000 {
        frac(u, 1_000_000, "ms")
    } else {
        let secs = u / 1_000_000_000;
        let sub = u % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let sec = if sub == 0 {
            format!("{s}s")
        } else {
            let digits = format!("{sub:09}");
            format!("{s}.{}s", digits.trim_end_matches('0'))
        };
        if h > 0 {
            format!("{h}h{m}m{sec}")
        } else if m > 0 {
            format!("{m}m{sec}")
        } else {
            sec
        }
    };
    if neg {
        format!("-{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_rules_last_key_wins_case_insensitively() {
        let v = decode(
            br#"{"Name":"a","x":1,"NAME":"b","name":"c","metadata":{"K":"1","K":"2","k":"3"}}"#,
        )
        .unwrap();
        assert_eq!(v["name"], "c");
        assert_eq!(v["metadata"]["K"], "2");
        assert_eq!(v["metadata"]["k"], "3");
        let v = decode(br#"{"a":{"B":1,"b":2}}"#).unwrap();
        assert_eq!(v["a"]["b"], 2);
        assert!(decode(b"{\"a\":1").is_err());
        assert!(decode(b"{\"a\":1} x").is_err());
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(
            go_escape(br#"{"s":"a.>&<"}"#.to_vec()),
            br#"{"s":"a.\u003e\u0026\u003c"}"#
        );
        assert_eq!(
            go_escape("\"\u{2028}\"".as_bytes().to_vec()),
            br#""\u2028""#
        );
    }

    #[test]
    fn times_round_trip_and_trim() {
        assert_eq!(rfc3339(0), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(
            rfc3339(1_777_629_600_000_000_001),
            "2026-05-01T10:00:00.000000001Z"
        );
        assert_eq!(
            parse_rfc3339("2026-05-01T10:00:00.000000001Z"),
            Some(1_777_629_600_000_000_001)
        );
        assert_eq!(
            parse_rfc3339("2026-05-01T12:00:00.5+02:00"),
            Some(1_777_629_600_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2021-03-01T12:00:00.1234567Z")
                .map(rfc3339)
                .as_deref(),
            Some("2021-03-01T12:00:00.1234567Z")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"hi"), "aGk=");
        assert_eq!(base64(b"NATS/1.0\r\n\r\n"), "TkFUUy8xLjANCg0K");
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(default)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
        list: Vec<Inner>,
        metadata: Option<std::collections::BTreeMap<String, String>>,
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(default)]
    struct Inner {
        seq: u64,
    }

    // Test code: an unwrap that fails is the test failing.
    #[test]
    fn strict_names_the_first_unknown_field_as_sent() {
        let strict = |b: &str| decode_checked::<Outer>(b.as_bytes(), true).map(|o| o.name);
        assert_eq!(
            strict(r#"{"Name":"a","metadata":{"Any":"x"}}"#).unwrap(),
            "a"
        );
        assert_eq!(
            strict(r#"{"name":"a","Extra":1}"#).unwrap_err(),
            r#"json: unknown field "Extra""#
        );
        assert_eq!(
            strict(r#"{"inner":{"seq":1,"ZZ":2}}"#).unwrap_err(),
            r#"json: unknown field "ZZ""#
        );
        // A value spelled like the key is not taken for it.
        assert_eq!(
            strict(r#"{"name":"zz","list":[{"seq":1},{"zZ" : 3}]}"#).unwrap_err(),
            r#"json: unknown field "zZ""#
        );
        // Lenient: ignored.
        let o = decode_checked::<Outer>(br#"{"name":"a","extra":{"x":1}}"#, false).unwrap();
        assert_eq!(o.name, "a");
        assert!(o.inner.is_none() && o.list.is_empty() && o.metadata.is_none());
    }

    #[test]
    fn key_position_skips_values_and_escapes() {
        let body = br#"{"a\"b":"kEy","x":"kEy" , "kEy" :1}"#;
        assert_eq!(key_position(body, "kEy"), Some(26));
        assert_eq!(key_position(body, "nope"), None);
    }

    #[test]
    fn strict_names_the_unknown_field_where_it_is_and_first_in_the_body() {
        let strict = |b: &str| decode_checked::<Outer>(b.as_bytes(), true).unwrap_err();
        // Two unknown fields: the first sent, not the first in sorted order.
        assert_eq!(strict(r#"{"zz":1,"aa":2}"#), r#"json: unknown field "zz""#);
        // A known key elsewhere spelled alike is not the one named.
        assert_eq!(
            strict(r#"{"Name":"n","list":[{"seq":1,"NAME":2}]}"#),
            r#"json: unknown field "NAME""#
        );
    }
}
