//! NATS/1.0 header blocks: status-line messages the server originates.

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
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
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
    fn no_responders_block() {
        assert_eq!(
            super::no_responders(b"a.b"),
            b"NATS/1.0 503\r\nNats-Subject: a.b\r\n\r\n"
        );
    }
}
