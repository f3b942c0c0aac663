//! Subject rules: validation of subscription and publish subjects, and the token
//! trie that maps subjects to interest (`trie`).
//!
//! Tokens are separated by `.`; a token that is exactly `*` matches one token and a
//! token that is exactly `>` matches one or more trailing tokens. A `*` or `>`
//! inside a longer token is a literal character, as in nats-server.

pub mod transform;
pub mod trie;

/// True when `subject` is a valid subscription subject: non-empty tokens, no
/// whitespace, `>` only as the last token.
/// Two subjects are the same: compared inline, as a per-message libc
/// `memcmp` call on short subjects costs more than the comparison itself.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

pub fn valid_subscribe(subject: &[u8]) -> bool {
    valid(subject, true)
}

/// True when `subject` is a valid literal publish subject (no wildcard tokens).
pub fn valid_publish(subject: &[u8]) -> bool {
    valid(subject, false)
}

fn valid(subject: &[u8], wildcards: bool) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut tokens = subject.split(|b| *b == b'.').peekable();
    while let Some(token) = tokens.next() {
        if token.is_empty() || token.iter().any(|b| b.is_ascii_whitespace()) {
            return false;
        }
        if token == b"*" || token == b">" {
            if !wildcards {
                return false;
            }
            if token == b">" && tokens.peek().is_some() {
                return false;
            }
        }
    }
    true
}

/// True when `subject` (literal) is matched by `pattern` (may hold wildcards).
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut p = pattern.split(|b| *b == b'.');
    let mut s = subject.split(|b| *b == b'.');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            _ => return false,
        }
    }
}

/// True when some literal subject is matched by both patterns.
pub fn overlaps(a: &[u8], b: &[u8]) -> bool {
    let mut x = a.split(|c| *c == b'.');
    let mut y = b.split(|c| *c == b'.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(b">"), Some(_)) | (Some(_), Some(b">")) => return true,
            (Some(b"*"), Some(_)) | (Some(_), Some(b"*")) => {}
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

/// True when every literal subject `sub` matches is matched by `sup` too.
pub fn is_subset(sub: &[u8], sup: &[u8]) -> bool {
    // A literal first token of `sup` must be `sub`'s too: most subjects
    // checked against deny lists (`$JS.API.>`, ...) end here, per message.
    if let (Some(a), Some(b)) = (sub.first(), sup.first()) {
        if a != b && *b != b'*' && *b != b'>' {
            return false;
        }
    }
    let mut x = sub.split(|c| *c == b'.');
    let mut y = sup.split(|c| *c == b'.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(_), Some(b">")) => return true,
            (Some(b">"), Some(_)) => return false,
            (Some(_), Some(b"*")) => {}
            (Some(p), Some(q)) if p == q && p != b"*" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets() {
        let sub = |a: &str, b: &str| is_subset(a.as_bytes(), b.as_bytes());
        assert!(sub("a.b", "a.*") && sub("a.*", "a.>") && sub("a.b.c", ">") && sub("a.*", "a.*"));
        assert!(!sub("a.>", "a.*") && !sub("a.*", "a.b") && !sub("a.>", "a.b.>"));
        assert!(!sub("cs.a.>", "cs.*.b") && !sub("cs.*.b", "cs.a.>"));
        // First tokens that differ, or a wildcard against a literal.
        assert!(!sub("leaf.x", "$JS.API.>") && !sub("*.x", "a.x") && !sub(">", "a.>"));
        assert!(sub("*.x", "*.x") && sub("*.x", ">") && sub("a", "*") && sub("*x.y", "*x.*"));
        assert!(sub("*x.y", "*.*") && !sub("*.y", "*x.*"));
    }

    fn check_sub(subject: &str, expected: bool) {
        assert_eq!(valid_subscribe(subject.as_bytes()), expected, "{subject:?}");
    }

    #[test]
    fn subscribe_subjects_follow_nats_rules() {
        check_sub("foo", true);
        check_sub("foo.bar", true);
        check_sub("foo.*", true);
        check_sub("*", true);
        check_sub(">", true);
        check_sub("foo.>", true);
        check_sub("foo.*.>", true);
        check_sub("fo*o", true);
        check_sub("foo>", true);
        check_sub("", false);
        check_sub("foo..bar", false);
        check_sub(".foo", false);
        check_sub("foo.", false);
        check_sub("foo.>.bar", false);
        check_sub("foo bar", false);
        check_sub("foo\tbar", false);
    }

    #[test]
    fn publish_subjects_are_literal() {
        assert!(valid_publish(b"foo.bar"));
        assert!(valid_publish(b"_INBOX.abc"));
        assert!(!valid_publish(b"foo.*"));
        assert!(!valid_publish(b"foo.>"));
        assert!(!valid_publish(b"foo..bar"));
    }

    #[test]
    fn pattern_matching() {
        assert!(matches(b"foo.*", b"foo.bar"));
        assert!(!matches(b"foo.*", b"foo.bar.baz"));
        assert!(matches(b"foo.>", b"foo.bar.baz"));
        assert!(!matches(b"foo.>", b"foo"));
        assert!(matches(b">", b"a"));
        assert!(matches(b"a.b", b"a.b"));
        assert!(!matches(b"a.b", b"a.c"));
        assert!(!matches(b"a.b.c", b"a.b"));
    }

    #[test]
    fn pattern_overlap() {
        assert!(overlaps(b"a.>", b"a.b"));
        assert!(overlaps(b"a.*", b"*.b"));
        assert!(overlaps(b">", b"x"));
        assert!(!overlaps(b"a.*", b"a.b.c"));
        assert!(!overlaps(b"a.b", b"a.c"));
    }
}
