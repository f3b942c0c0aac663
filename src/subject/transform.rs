//! Subject transforms (nats-server's subject mappings), as sources and mirrors
//! use them: a source pattern, and a destination whose tokens are literals,
//! `$N`, or functions in double braces: `wildcard(n)`, `partition(count,
//! n...)`, `splitFromLeft(n, pos)`, `splitFromRight(n, pos)`,
//! `sliceFromLeft(n, size)`, `sliceFromRight(n, size)`, `split(n, delim)` and
//! `random(count)`. `n` counts the source's `*` wildcards from 1. A `>` in the
//! source must be matched by one in the destination, which carries the rest of
//! the subject. Errors read as nats-server's, since clients show them.

use std::cell::Cell;
use std::fmt;

/// One destination token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The subject's token at this index.
    Token(usize),
    /// fnv-1a of the tokens at these indexes (all: the whole subject) mod n.
    Partition(u32, Vec<usize>),
    SplitFromLeft(usize, i32),
    SplitFromRight(usize, i32),
    SliceFromLeft(usize, i32),
    SliceFromRight(usize, i32),
    Split(usize, String),
    /// The first (`Left`) or last (`Right`) n bytes of a token.
    Left(usize, i32),
    Right(usize, i32),
    Random(u32),
    /// `>`: the rest of the subject.
    Rest,
}

/// A parsed transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    src: Vec<String>,
    /// None: the identity (an empty destination, or `>` to `>`).
    dest: Option<Vec<Part>>,
}

/// Why a transform is refused, worded as nats-server words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError(String);

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const INVALID: &str = "invalid mapping destination";

fn err(what: &str, token: &str) -> TransformError {
    if token.is_empty() {
        TransformError(format!("{INVALID}: {what}"))
    } else {
        TransformError(format!("{INVALID}: {what} in {token}"))
    }
}

fn bad_subject() -> TransformError {
    TransformError("invalid subject".into())
}

/// The functions nats-server accepts in a stream's transforms, matched the
/// way its patterns do (first letters of each word in either case).
const FUNCTIONS: &[&str] = &[
    "partition",
    "wildcard",
    "splitfromleft",
    "splitfromright",
    "slicefromleft",
    "slicefromright",
    "split",
    "left",
    "right",
    "random",
];

impl Transform {
    /// Parses `src` → `dest`; an empty `src` is `>`, an empty `dest` keeps
    /// the subject.
    pub fn new(src: &str, dest: &str) -> Result<Transform, TransformError> {
        let src = if src.is_empty() { ">" } else { src };
        let src_tokens: Vec<String> = src.split('.').map(str::to_string).collect();
        if dest.is_empty() {
            return Ok(Transform {
                src: src_tokens,
                dest: None,
            });
        }
        check_destination(dest)?;
        let (src_ok, wildcards, src_fwc) = shape(src);
        let (dest_ok, dest_wildcards, dest_fwc) = shape(dest);
        if !src_ok || !dest_ok || dest_wildcards > 0 || src_fwc != dest_fwc {
            return Err(bad_subject());
        }
        // Source token index of the nth `*` (1-based).
        let stars: Vec<usize> = (0..src_tokens.len())
            .filter(|&i| src_tokens[i] == "*")
            .collect();
        let star = |n: usize| -> usize {
            n.checked_sub(1)
                .and_then(|i| stars.get(i).copied())
                .unwrap_or(0)
        };
        let mut parts = Vec::new();
        for token in dest.split('.') {
            parts.push(part(token, wildcards, src_fwc, &star)?);
        }
        let identity = src == ">" && dest == ">";
        Ok(Transform {
            src: src_tokens,
            dest: (!identity).then_some(parts),
        })
    }

    /// The transformed subject, or None when `subject` does not match the source.
    pub fn apply(&self, subject: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(subject).ok()?;
        let tokens: Vec<&str> = text.split('.').collect();
        if !matches_src(&self.src, &tokens) {
            return None;
        }
        let Some(parts) = &self.dest else {
            return Some(subject.to_vec());
        };
        let mut out = String::with_capacity(subject.len() + 16);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 && *p != Part::Rest {
                out.push('.');
            }
            render(p, &tokens, self.src.len(), i > 0, &mut out);
        }
        Some(out.into_bytes())
    }
}

/// (valid, number of `*`, has `>` last) of a pattern.
fn shape(subject: &str) -> (bool, usize, bool) {
    let mut stars = 0;
    let mut fwc = false;
    for t in subject.split('.') {
        if t.is_empty() || fwc {
            return (false, 0, false);
        }
        match t {
            "*" => stars += 1,
            ">" => fwc = true,
            _ => {}
        }
    }
    (true, stars, fwc)
}

/// nats-server's first pass over a destination (`ValidateMapping`).
fn check_destination(dest: &str) -> Result<(), TransformError> {
    let mut fwc = false;
    for t in dest.split('.') {
        if t.is_empty() || fwc {
            return Err(err("invalid transform", t));
        }
        if let Some(inner) = braced(t) {
            if function_of(inner).is_none() {
                return Err(err("unknown function", t));
            }
            continue;
        }
        if t == ">" {
            fwc = true;
        } else if t.contains([' ', '\t', '\n', '\r', '\x0c']) {
            return Err(err("invalid transform", ""));
        }
    }
    Ok(())
}

/// The inside of a `{{...}}` token.
fn braced(t: &str) -> Option<&str> {
    (t.len() > 4 && t.starts_with("{{") && t.ends_with("}}")).then(|| &t[2..t.len() - 2])
}

/// (function name in lower case, argument list text) of `name(args)`.
fn function_of(inner: &str) -> Option<(String, &str)> {
    let inner = inner.trim();
    let open = inner.find('(')?;
    let close = inner.rfind(')')?;
    if close < open || !inner[close + 1..].trim().is_empty() {
        return None;
    }
    let name = inner[..open].trim().to_ascii_lowercase();
    FUNCTIONS
        .contains(&name.as_str())
        .then(|| (name, &inner[open + 1..close]))
}

fn part(
    token: &str,
    wildcards: usize,
    src_fwc: bool,
    star: &dyn Fn(usize) -> usize,
) -> Result<Part, TransformError> {
    if token == ">" {
        return Ok(Part::Rest);
    }
    if let Some(n) = token.strip_prefix('$').filter(|n| !n.is_empty()) {
        // `$N` is a wildcard; anything else after `$` is a literal.
        return match n.parse::<usize>() {
            Ok(n) => index(token, n, wildcards, src_fwc, star).map(Part::Token),
            Err(_) => Ok(Part::Literal(token.into())),
        };
    }
    let Some((name, args)) = braced(token).and_then(function_of) else {
        return Ok(Part::Literal(token.into()));
    };
    let args: Vec<&str> = args.split(',').map(str::trim).collect();
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| err("function argument is invalid or in the wrong format", token))
    };
    let count = |n: usize| -> Result<(), TransformError> {
        match args.len() {
            l if l < n || (l == 1 && args[0].is_empty()) => {
                Err(err("not enough arguments passed to the function", token))
            }
            l if l > n => Err(err("too many arguments passed to the function", token)),
            _ => Ok(()),
        }
    };
    let wildcard_arg = |s: &str| -> Result<usize, TransformError> {
        let n = int(s)?;
        index(token, n.max(0) as usize, wildcards, src_fwc, star)
    };
    match name.as_str() {
        "wildcard" => {
            count(1)?;
            wildcard_arg(args[0]).map(Part::Token)
        }
        "partition" => {
            if args.len() == 1 && args[0].is_empty() {
                return Err(err("not enough arguments passed to the function", token));
            }
            let n = int(args[0])
                .ok()
                .filter(|n| (0..=i32::MAX as i64).contains(n));
            let n =
                n.ok_or_else(|| err("function argument is invalid or in the wrong format", token))?;
            let at = args[1..]
                .iter()
                .map(|a| wildcard_arg(a))
                .collect::<Result<Vec<usize>, _>>()?;
            Ok(Part::Partition(n as u32, at))
        }
        "random" => {
            if args.len() != 1 {
                return Err(err("not enough arguments passed to the function", token));
            }
            let n = int(args[0])
                .ok()
                .filter(|n| (0..=i32::MAX as i64).contains(n));
            let n =
                n.ok_or_else(|| err("function argument is invalid or in the wrong format", token))?;
            Ok(Part::Random(n as u32))
        }
        "split" => {
            count(2)?;
            let at = int(args[0])?;
            if args[1].contains(' ') || args[1].contains('.') {
                return Err(err(
                    "function argument is invalid or in the wrong format",
                    token,
                ));
            }
            let at = index(token, at.max(0) as usize, wildcards, src_fwc, star)?;
            Ok(Part::Split(at, args[1].to_string()))
        }
        _ => {
            count(2)?;
            let at = int(args[0])?;
            let v = int(args[1])
                .ok()
                .filter(|v| (i32::MIN as i64..=i32::MAX as i64).contains(v));
            let v = v
                .ok_or_else(|| err("function argument is invalid or in the wrong format", token))?
                as i32;
            let at = index(token, at.max(0) as usize, wildcards, src_fwc, star)?;
            Ok(match name.as_str() {
                "splitfromleft" => Part::SplitFromLeft(at, v),
                "splitfromright" => Part::SplitFromRight(at, v),
                "slicefromleft" => Part::SliceFromLeft(at, v),
                "left" => Part::Left(at, v),
                "right" => Part::Right(at, v),
                _ => Part::SliceFromRight(at, v),
            })
        }
    }
}

/// The source token index of wildcard `n`, or nats-server's range error.
fn index(
    token: &str,
    n: usize,
    wildcards: usize,
    src_fwc: bool,
    star: &dyn Fn(usize) -> usize,
) -> Result<usize, TransformError> {
    if wildcards == 0 && !src_fwc {
        // Functions other than partition and random need a wildcard to read.
        return Err(err("wildcard index out of range", token));
    }
    if n > wildcards {
        return Err(err(
            "wildcard index out of range",
            &format!("{token}: [{n}]"),
        ));
    }
    Ok(star(n))
}

/// Whether literal `tokens` match the source pattern.
fn matches_src(src: &[String], tokens: &[&str]) -> bool {
    for (i, s) in src.iter().enumerate() {
        match s.as_str() {
            ">" => return tokens.len() > i,
            _ if i >= tokens.len() => return false,
            "*" => {}
            lit if lit != tokens[i] => return false,
            _ => {}
        }
    }
    src.len() == tokens.len()
}

thread_local! {
    static RANDOM: Cell<u64> = const { Cell::new(0x2545_F491_4F6C_DD1D) };
}

fn random_below(n: u32) -> u32 {
    if n == 0 {
        return 0;
    }
    RANDOM.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x % u64::from(n)) as u32
    })
}

fn fnv1a(parts: &[&str]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for b in p.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

fn render(p: &Part, tokens: &[&str], src_len: usize, not_first: bool, out: &mut String) {
    let tok = |i: usize| tokens.get(i).copied().unwrap_or("");
    match p {
        Part::Literal(l) => out.push_str(l),
        Part::Token(i) => out.push_str(tok(*i)),
        Part::Partition(n, at) => {
            let h = if *n == 0 {
                0
            } else if at.is_empty() {
                fnv1a(&[&tokens.join(".")]) % n
            } else {
                fnv1a(&at.iter().map(|i| tok(*i)).collect::<Vec<_>>()) % n
            };
            out.push_str(&h.to_string());
        }
        Part::SplitFromLeft(i, pos) => {
            let t = tok(*i);
            let pos = *pos as usize;
            if pos_ok(pos, t) {
                out.push_str(&t[..pos]);
                out.push('.');
                out.push_str(&t[pos..]);
            } else {
                out.push_str(t);
            }
        }
        Part::SplitFromRight(i, pos) => {
            let t = tok(*i);
            let pos = *pos as usize;
            if pos_ok(pos, t) {
                out.push_str(&t[..t.len() - pos]);
                out.push('.');
                out.push_str(&t[t.len() - pos..]);
            } else {
                out.push_str(t);
            }
        }
        Part::SliceFromLeft(i, size) => {
            let t = tok(*i);
            let size = *size as usize;
            if pos_ok(size, t) {
                let pieces: Vec<&str> = t
                    .as_bytes()
                    .chunks(size)
                    .map(|c| std::str::from_utf8(c).unwrap_or(""))
                    .collect();
                out.push_str(&pieces.join("."));
            } else {
                out.push_str(t);
            }
        }
        Part::SliceFromRight(i, size) => {
            let t = tok(*i);
            let size = *size as usize;
            if pos_ok(size, t) {
                let head = t.len() % size;
                let mut pieces: Vec<&str> = Vec::new();
                if head > 0 {
                    pieces.push(&t[..head]);
                }
                pieces.extend(
                    t.as_bytes()[head..]
                        .chunks(size)
                        .map(|c| std::str::from_utf8(c).unwrap_or("")),
                );
                out.push_str(&pieces.join("."));
            } else {
                out.push_str(t);
            }
        }
        Part::Split(i, delim) => {
            let pieces: Vec<&str> = tok(*i)
                .split(delim.as_str())
                .filter(|s| !s.is_empty())
                .collect();
            out.push_str(&pieces.join("."));
        }
        Part::Left(i, size) | Part::Right(i, size) => {
            // Too short (or a bad size): the token whole, as nats-server does.
            let t = tok(*i);
            let n = *size as usize;
            let left = matches!(p, Part::Left(..));
            let cut = if left { n } else { t.len().wrapping_sub(n) };
            if *size > 0 && n < t.len() && t.is_char_boundary(cut) {
                out.push_str(if left { &t[..cut] } else { &t[cut..] });
            } else {
                out.push_str(t);
            }
        }
        Part::Random(n) => out.push_str(&random_below(*n).to_string()),
        Part::Rest => {
            // The tokens the source's `>` matched.
            if not_first {
                out.push('.');
            }
            out.push_str(&tokens[src_len.saturating_sub(1).min(tokens.len())..].join("."));
        }
    }
}

/// A split or slice position inside the token (otherwise it is kept whole).
fn pos_ok(pos: usize, t: &str) -> bool {
    pos > 0 && pos < t.len() && t.is_char_boundary(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(src: &str, dest: &str, subject: &str) -> Option<String> {
        let t = Transform::new(src, dest).unwrap();
        t.apply(subject.as_bytes())
            .map(|v| String::from_utf8(v).unwrap())
    }

    fn refusal(src: &str, dest: &str) -> String {
        Transform::new(src, dest).unwrap_err().to_string()
    }

    #[test]
    fn wildcards_literals_and_the_rest() {
        assert_eq!(
            map("orig.*", "copy.{{wildcard(1)}}", "orig.a").as_deref(),
            Some("copy.a")
        );
        assert_eq!(map("a.*.*", "b.$2.$1", "a.x.y").as_deref(), Some("b.y.x"));
        assert_eq!(map("a.>", "b.>", "a.x.y").as_deref(), Some("b.x.y"));
        assert_eq!(
            map("a.*.>", "b.{{wildcard(1)}}.>", "a.x.y.z").as_deref(),
            Some("b.x.y.z")
        );
        assert_eq!(map("a.*", "b.$x", "a.q").as_deref(), Some("b.$x"));
        assert_eq!(map("o.a", "", "o.a").as_deref(), Some("o.a"));
        assert_eq!(map("o.*", "x.$1", "p.a"), None);
        assert_eq!(map("o.*", "x.$1", "o.a.b"), None);
        assert_eq!(map("", "", "any.thing").as_deref(), Some("any.thing"));
    }

    #[test]
    fn functions_as_nats_server_computes_them() {
        assert_eq!(
            map("a.*", "b.{{splitFromLeft(1,2)}}", "a.abcd").as_deref(),
            Some("b.ab.cd")
        );
        assert_eq!(
            map("a.*", "b.{{SplitFromRight(1,1)}}", "a.abcd").as_deref(),
            Some("b.abc.d")
        );
        assert_eq!(
            map("a.*", "b.{{sliceFromLeft(1,3)}}", "a.abcdefgh").as_deref(),
            Some("b.abc.def.gh")
        );
        assert_eq!(
            map("a.*", "b.{{sliceFromRight(1,3)}}", "a.abcdefgh").as_deref(),
            Some("b.ab.cde.fgh")
        );
        assert_eq!(
            map("a.*", "b.{{split(1,-)}}", "a.-x--y-").as_deref(),
            Some("b.x.y")
        );
        // Go's hash/fnv New32a over "x".
        assert_eq!(fnv1a(&["x"]), 0xfd0c_5087);
        let p = map("a.*", "p.{{partition(10,1)}}", "a.x").unwrap();
        assert_eq!(p, format!("p.{}", fnv1a(&["x"]) % 10));
    }

    #[test]
    fn refusals_read_as_nats_server_s() {
        assert_eq!(
            refusal("o1.*", "foo.{{wildcard(3)}}"),
            "invalid mapping destination: wildcard index out of range in {{wildcard(3)}}: [3]"
        );
        assert_eq!(refusal("", "x"), "invalid subject");
        assert_eq!(refusal("a.*", "b.*"), "invalid subject");
        assert_eq!(
            refusal("a.*", "b.{{nope(1)}}"),
            "invalid mapping destination: unknown function in {{nope(1)}}"
        );
        assert_eq!(
            refusal("a.*", "b..c"),
            "invalid mapping destination: invalid transform"
        );
        assert_eq!(
            refusal("a.*", "b.{{wildcard()}}"),
            "invalid mapping destination: not enough arguments passed to the function in {{wildcard()}}"
        );
        assert_eq!(
            refusal("a.*", "b.{{wildcard(1,2)}}"),
            "invalid mapping destination: too many arguments passed to the function in {{wildcard(1,2)}}"
        );
        assert_eq!(
            refusal("a.b", "c.{{wildcard(1)}}"),
            "invalid mapping destination: wildcard index out of range in {{wildcard(1)}}"
        );
        assert!(Transform::new("a.b", "c.{{partition(3)}}").is_ok());
    }

    #[test]
    fn left_and_right_keep_short_tokens_whole() {
        assert_eq!(
            map("a.*", "b.{{left(1,2)}}", "a.abcd").as_deref(),
            Some("b.ab")
        );
        assert_eq!(
            map("a.*", "b.{{Right(1,3)}}", "a.abcd").as_deref(),
            Some("b.bcd")
        );
        assert_eq!(
            map("a.*", "b.{{right(1,9)}}", "a.abcd").as_deref(),
            Some("b.abcd")
        );
        assert_eq!(
            map("a.*", "b.{{left(1,0)}}", "a.ab").as_deref(),
            Some("b.ab")
        );
    }
}
