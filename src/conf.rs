//! nats-server's configuration format (its `conf` package): `key: value`,
//! `key = value` or `key value`; `{}` maps and `[]` arrays; `#` and `//`
//! comments; `,`/`;`/newline separators; quoted and bare strings; integers
//! with size suffixes (`1k` = 1000, `1kb` = 1024, up to `e`/`eb`, as
//! nats-server reads them: `2m` is 2,000,000, `2min` a string); booleans
//! (`true`/`yes`/`on`, `false`/`no`/`off`); `$name` variables (a key defined
//! earlier in this or an enclosing map, else the environment); `include
//! <file>` relative to the including file. Every value keeps its file and
//! line for error messages. Pure apart from reading files and variables.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub value: Value,
    pub file: std::rc::Rc<str>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Item>),
    /// Keys in file order; a repeated key keeps both (the last one wins
    /// where a single value is read).
    Map(Vec<(String, Item)>),
}

impl Item {
    /// "file:line" for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Include nesting deeper than this is taken for a cycle.
const INCLUDE_DEPTH_MAX: usize = 10;

/// Parses the file at `path`.
pub fn parse_file(path: &Path) -> Result<Vec<(String, Item)>, String> {
    parse_file_at(path, 0, &[])
}

fn parse_file_at(
    path: &Path,
    depth: usize,
    scopes: &[&[(String, Item)]],
) -> Result<Vec<(String, Item)>, String> {
    if depth > INCLUDE_DEPTH_MAX {
        return Err(format!(
            "{}: includes nested more than {INCLUDE_DEPTH_MAX} deep (an include cycle?)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut p = Parser {
        s: text.chars().collect(),
        i: 0,
        line: 1,
        file: path.display().to_string().into(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        depth,
    };
    p.map_body(None, scopes)
}

/// Parses `text` as if it were the file `name` (tests, `-t` of stdin).
pub fn parse_str(text: &str, name: &str) -> Result<Vec<(String, Item)>, String> {
    let mut p = Parser {
        s: text.chars().collect(),
        i: 0,
        line: 1,
        file: name.into(),
        dir: PathBuf::from("."),
        depth: 0,
    };
    p.map_body(None, &[])
}

struct Parser {
    s: Vec<char>,
    i: usize,
    line: usize,
    file: std::rc::Rc<str>,
    dir: PathBuf,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.s.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }
    fn err(&self, what: &str) -> String {
        format!("{}:{}: {what}", self.file, self.line)
    }
    fn item(&self, value: Value, line: usize) -> Item {
        Item {
            value,
            file: self.file.clone(),
            line,
        }
    }

    /// Skips blanks, comments and (when `newlines`) line ends and separators.
    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' => {
                    self.bump();
                }
                '\n' | ',' | ';' if newlines => {
                    self.bump();
                }
                '#' => self.skip_line(),
                '/' if self.s.get(self.i + 1) == Some(&'/') => self.skip_line(),
                _ => break,
            }
        }
    }
    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// Key/value pairs up to `end` (`}`) or the end of the text.
    fn map_body(
        &mut self,
        end: Option<char>,
        outer: &[&[(String, Item)]],
    ) -> Result<Vec<(String, Item)>, String> {
        let mut out: Vec<(String, Item)> = Vec::new();
        loop {
            self.skip(true);
            match self.peek() {
                None if end.is_none() => return Ok(out),
                None => return Err(self.err("unexpected end of file: missing '}'")),
                Some(c) if Some(c) == end => {
                    self.bump();
                    return Ok(out);
                }
                Some(c @ ('}' | ']')) => return Err(self.err(&format!("unexpected '{c}'"))),
                _ => {}
            }
            let line = self.line;
            let key = self.key()?;
            if key == "include" {
                self.skip(false);
                let name = match self.peek() {
                    Some('"') | Some('\'') => self.quoted()?,
                    _ => self.bare(),
                };
                let path = self.dir.join(name);
                let mut scopes: Vec<&[(String, Item)]> = outer.to_vec();
                scopes.push(&out);
                let included = parse_file_at(&path, self.depth + 1, &scopes)
                    .map_err(|e| format!("{}:{line}: include: {e}", self.file))?;
                out.extend(included);
                continue;
            }
            self.skip(false);
            match self.peek() {
                Some('=') | Some(':') => {
                    self.bump();
                    self.skip(false);
                }
                _ => {}
            }
            let mut scopes: Vec<&[(String, Item)]> = outer.to_vec();
            scopes.push(&out);
            let value = self.value(&scopes)?;
            out.push((key, value));
        }
    }

    fn key(&mut self) -> Result<String, String> {
        match self.peek() {
            Some('"') | Some('\'') => self.quoted(),
            _ => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c.is_whitespace() || matches!(c, '=' | ':' | '{' | '[' | ',' | ';') {
                        break;
                    }
                    self.bump();
                }
                if self.i == start {
                    return Err(self.err("expected a key"));
                }
                Ok(self.s[start..self.i].iter().collect())
            }
        }
    }

    fn value(&mut self, scopes: &[&[(String, Item)]]) -> Result<Item, String> {
        let line = self.line;
        match self.peek() {
            None | Some('\n') => Err(self.err("expected a value but found a new line")),
            Some('{') => {
                self.bump();
                let m = self.map_body(Some('}'), scopes)?;
                Ok(self.item(Value::Map(m), line))
            }
            Some('[') => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip(true);
                    match self.peek() {
                        Some(']') => {
                            self.bump();
                            return Ok(self.item(Value::Array(items), line));
                        }
                        None => return Err(self.err("unexpected end of file: missing ']'")),
                        _ => items.push(self.value(scopes)?),
                    }
                }
            }
            Some('"') | Some('\'') => {
                let s = self.quoted()?;
                Ok(self.item(Value::Str(s), line))
            }
            Some(_) => {
                let word = self.bare();
                self.scalar(&word, line, scopes)
            }
        }
    }

    /// A bare word, up to a separator or the end of the line.
    fn bare(&mut self) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            let comment = c == '#' || (c == '/' && self.s.get(self.i + 1) == Some(&'/'));
            if matches!(c, '\n' | ',' | ';' | '}' | ']') || comment {
                break;
            }
            self.bump();
        }
        let text: String = self.s[start..self.i].iter().collect();
        text.trim_end().to_string()
    }

    fn quoted(&mut self) -> Result<String, String> {
        let q = self.bump().expect("a quote");
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.err("unterminated quoted string")),
                Some(c) if c == q => return Ok(out),
                Some('\\') if q == '"' => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(c) => out.push(c),
                    None => return Err(self.err("unterminated quoted string")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn scalar(
        &self,
        word: &str,
        line: usize,
        scopes: &[&[(String, Item)]],
    ) -> Result<Item, String> {
        if let Some(name) = word.strip_prefix('$') {
            return self.variable(name, line, scopes);
        }
        match word.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => return Ok(self.item(Value::Bool(true), line)),
            "false" | "no" | "off" => return Ok(self.item(Value::Bool(false), line)),
            _ => {}
        }
        if let Some(v) = number(word) {
            return v.map(|v| self.item(v, line)).map_err(|e| self.err(&e));
        }
        Ok(self.item(Value::Str(word.to_string()), line))
    }

    fn variable(
        &self,
        name: &str,
        line: usize,
        scopes: &[&[(String, Item)]],
    ) -> Result<Item, String> {
        for scope in scopes.iter().rev() {
            if let Some((_, v)) = scope.iter().rev().find(|(k, _)| k == name) {
                return Ok(v.clone());
            }
        }
        match std::env::var(name) {
            Ok(v) => {
                let parsed = parse_str(&format!("v: {v}"), &self.file)?;
                let mut item = parsed.into_iter().next().map(|(_, i)| i).ok_or_else(|| {
                    self.err(&format!("variable reference for '{name}' is empty"))
                })?;
                item.line = line;
                Ok(item)
            }
            Err(_) => Err(format!(
                "{}:{line}: variable reference for '{name}' on line {line} can not be found",
                self.file
            )),
        }
    }
}

/// Parses a Go duration (`1h2m3.5s`, `300ms`, `10us`) or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let ns = u64::try_from(go_duration_ns(text)?).ok()?;
    Some(Duration::from_nanos(ns))
}

/// Go's `time.ParseDuration`, in nanoseconds (None where Go fails).
pub fn go_duration_ns(text: &str) -> Option<i64> {
    let (neg, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return None;
    }
    Some(if neg { -(total as i64) } else { total as i64 })
}

/// A size given as a flag, read as the config file reads one (`100MB`,
/// `1048576`); None when it is not a size or negative.
pub fn parse_size(text: &str) -> Option<u64> {
    match number(text.trim())? {
        Ok(Value::Int(n)) if n >= 0 => Some(n as u64),
        _ => None,
    }
}

/// A number as nats-server lexes one (None: not a number, a string).
fn number(word: &str) -> Option<Result<Value, String>> {
    let b = word.as_bytes();
    let digits_from = usize::from(b.first() == Some(&b'-'));
    let first = *b.get(digits_from)?;
    if !first.is_ascii_digit() {
        return None;
    }
    let end = b[digits_from..]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(b.len(), |p| p + digits_from);
    let (num, rest) = word.split_at(end);
    if rest.starts_with('.') {
        return word.parse::<f64>().ok().map(|f| Ok(Value::Float(f)));
    }
    let scale: i64 = match rest.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1000,
        "kb" | "ki" | "kib" => 1 << 10,
        "m" => 1_000_000,
        "mb" | "mi" | "mib" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" | "gi" | "gib" => 1 << 30,
        "t" => 1_000_000_000_000,
        "tb" | "ti" | "tib" => 1 << 40,
        "p" => 1_000_000_000_000_000,
        "pb" | "pi" | "pib" => 1 << 50,
        "e" => 1_000_000_000_000_000_000,
        "eb" | "ei" | "eib" => 1 << 60,
        _ => return None, // e.g. `30s`, `2min`: a string
    };
    let n: i64 = match num.parse() {
        Ok(n) => n,
        Err(_) => return Some(Err(format!("integer '{word}' is out of the range"))),
    };
    Some(
        n.checked_mul(scale)
            .map(Value::Int)
            .ok_or_else(|| format!("integer '{word}' is out of the range")),
    )
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(m: &'a [(String, Item)], k: &str) -> &'a Value {
        &m.iter().rev().find(|(key, _)| key == k).unwrap().1.value
    }

    #[test]
    fn every_syntax_form() {
        let text = "# comment\nport: 4222\nhost = \"0.0.0.0\" // trailing\nserver_name  n1\n\
                    max_payload: 1MB; max_pending 64mb, debug: yes\nping_interval: \"2m\"\n\
                    a: 2m\nb: 2min\nc: 30s\nd: 1.5\ne: -3\n\
                    jetstream {\n  store_dir: '/tmp/js'\n  max_file_store: 10G\n}\n\
                    list: [1, two\n \"three\"]\nempty {}\n";
        let m = parse_str(text, "t.conf").unwrap();
        assert_eq!(get(&m, "port"), &Value::Int(4222));
        assert_eq!(get(&m, "host"), &Value::Str("0.0.0.0".into()));
        assert_eq!(get(&m, "server_name"), &Value::Str("n1".into()));
        assert_eq!(get(&m, "max_payload"), &Value::Int(1 << 20));
        assert_eq!(get(&m, "max_pending"), &Value::Int(64 << 20));
        assert_eq!(get(&m, "debug"), &Value::Bool(true));
        assert_eq!(get(&m, "ping_interval"), &Value::Str("2m".into()));
        assert_eq!(get(&m, "a"), &Value::Int(2_000_000));
        assert_eq!(get(&m, "b"), &Value::Str("2min".into()));
        assert_eq!(get(&m, "c"), &Value::Str("30s".into()));
        assert_eq!(get(&m, "d"), &Value::Float(1.5));
        assert_eq!(get(&m, "e"), &Value::Int(-3));
        let Value::Map(js) = get(&m, "jetstream") else {
            panic!()
        };
        assert_eq!(get(js, "store_dir"), &Value::Str("/tmp/js".into()));
        assert_eq!(get(js, "max_file_store"), &Value::Int(10_000_000_000));
        let Value::Array(l) = get(&m, "list") else {
            panic!()
        };
        assert_eq!(l.len(), 3);
        assert_eq!(l[2].line, 17);
        assert_eq!(get(&m, "empty"), &Value::Map(Vec::new()));
    }

    #[test]
    fn variables_includes_and_errors() {
        std::env::set_var("JETCORE_CONF_TEST_PORT", "5222");
        let m = parse_str("p: 1\nx { q: $p }\nport: $JETCORE_CONF_TEST_PORT", "t").unwrap();
        let Value::Map(x) = get(&m, "x") else {
            panic!()
        };
        assert_eq!(get(x, "q"), &Value::Int(1));
        assert_eq!(get(&m, "port"), &Value::Int(5222));
        let e = parse_str("a: $nope_not_set_anywhere", "t").unwrap_err();
        assert!(
            e.contains("'nope_not_set_anywhere'") && e.starts_with("t:1"),
            "{e}"
        );
        assert!(parse_str("a {\n b: 1\n", "t")
            .unwrap_err()
            .contains("missing '}'"));
        assert!(parse_str("a: \"x", "t")
            .unwrap_err()
            .contains("unterminated"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.conf"),
            "port: 1\ninclude 'more.conf'\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("more.conf"), "debug: true\nx: $port\n").unwrap();
        let m = parse_file(&dir.path().join("main.conf")).unwrap();
        assert_eq!(get(&m, "x"), &Value::Int(1));
        std::fs::write(dir.path().join("loop.conf"), "include loop.conf\n").unwrap();
        let e = parse_file(&dir.path().join("loop.conf")).unwrap_err();
        assert!(e.contains("cycle"), "{e}");
    }
}
