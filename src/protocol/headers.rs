//! NATS/1.0 header blocks: lookups, rewrites, and the status-line messages
//! the server originates.

/// Header block of a no-responders reply: status 503 plus the subject that had no
/// responders (nats-server 2.12+ adds `Nats-Subject`).
pub fn no_responders(subject: &[u8]) -> Vec<u8> {
    let mut block = Vec::with_capacity(subject.len() + 40);
    block.extend_from_slice(b"NATS/1.0 503\r\nNats-Subject: ");
    block.extend_from_slice(subject);
    block.extend_from_slice(b"\r\n\r\n");
    block
}

/// The value of header `key` (exact case, as nats-server matches it) in a
/// `NATS/1.0` block, trimmed; the first occurrence wins.
pub fn get<'a>(block: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut lines = block.split(|b| *b == b'\n');
    lines.next()?; // status line
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > key.len() && line.starts_with(key) && line[key.len()] == b':' {
            return Some(line[key.len() + 1..].trim_ascii());
        }
    }
    None
}

/// Builds a header block: status line (`NATS/1.0[ code[ description]]`), then
/// `name: value` lines.
pub fn block(status: Option<&str>, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"NATS/1.0");
    if let Some(s) = status {
        out.push(b' ');
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    push_lines(&mut out, headers);
    out
}

/// `hdr` without the headers `drop` names, plus `extra` lines at the end.
/// None when nothing changes (the caller keeps the block as it is).
pub fn rewrite(
    hdr: &[u8],
    drop: impl Fn(&[u8]) -> bool,
    extra: &[(&str, &[u8])],
) -> Option<Vec<u8>> {
    let lines = lines(hdr);
    let drops = lines.iter().skip(1).any(|l| drop(line_name(l)));
    if !drops && extra.is_empty() {
        return None;
    }
    let extra_len: usize = extra.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(hdr.len().max(12) + extra_len);
    match lines.first() {
        Some(status) if status.starts_with(b"NATS/1.0") => out.extend_from_slice(status),
        _ => out.extend_from_slice(b"NATS/1.0"),
    }
    out.extend_from_slice(b"\r\n");
    for l in lines.iter().skip(1) {
        if !drop(line_name(l)) {
            out.extend_from_slice(l);
            out.extend_from_slice(b"\r\n");
        }
    }
    push_lines(&mut out, extra);
    Some(out)
}

/// `name: value` lines, then the blank line that ends a block.
fn push_lines(out: &mut Vec<u8>, headers: &[(&str, &[u8])]) {
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The lines of a header block (status line first), without their CRLFs
/// and the closing blank line.
fn lines(hdr: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = hdr;
    while let Some(i) = memchr::memmem::find(rest, b"\r\n") {
        let line = &rest[..i];
        rest = &rest[i + 2..];
        if line.is_empty() {
            break;
        }
        out.push(line);
    }
    out
}

/// A header line's name, leading blanks skipped.
fn line_name(line: &[u8]) -> &[u8] {
    let end = memchr::memchr(b':', line).unwrap_or(line.len());
    let name = &line[..end];
    let start = name
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(name.len());
    &name[start..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_lookup_is_exact() {
        let b = b"NATS/1.0\r\nNats-Msg-Id:  x1 \r\nNats-Msg-Id: x2\r\nnats-rollup: all\r\n\r\n";
        assert_eq!(super::get(b, b"Nats-Msg-Id"), Some(&b"x1"[..]));
        assert_eq!(super::get(b, b"Nats-Rollup"), None);
        assert_eq!(super::get(b, b"Nats-Msg"), None);
        assert_eq!(
            super::block(Some("204 EOB"), &[("A", b"1")]),
            b"NATS/1.0 204 EOB\r\nA: 1\r\n\r\n"
        );
    }

    #[test]
    fn rewrite_drops_and_appends() {
        let b = b"NATS/1.0\r\nA: 1\r\nNats-TTL: 1s\r\n\r\n";
        let out = super::rewrite(b, |n| n == b"Nats-TTL", &[("Nats-TTL", b"5")]).unwrap();
        assert_eq!(out, b"NATS/1.0\r\nA: 1\r\nNats-TTL: 5\r\n\r\n");
        assert_eq!(super::rewrite(b, |_| false, &[]), None);
        let out = super::rewrite(b"", |_| false, &[("X", b"y")]).unwrap();
        assert_eq!(out, b"NATS/1.0\r\nX: y\r\n\r\n");
    }

    #[test]
    fn no_responders_block() {
        assert_eq!(
            super::no_responders(b"a.b"),
            b"NATS/1.0 503\r\nNats-Subject: a.b\r\n\r\n"
        );
    }
}
