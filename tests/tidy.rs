//! Tidiness of the source tree, checked on every `cargo test` (as
//! rust-analyzer and TigerBeetle do):
//! - the module order listed in `src/lib.rs` is true: no file imports a module
//!   listed below its own;
//! - no `src/` file is over `FILE_LINES_MAX` lines unless `LONG_FILES` says why;
//! - no line is over `LINE_WIDTH_MAX` columns unless it holds a string literal
//!   (which rustfmt cannot break);
//! - every `src/` file is named in ARCHITECTURE.md's code map.
//!
//! Each check is a function over text, tested below on small inputs so that
//! it is known to fail when it should.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FILE_LINES_MAX: usize = 800;
const LINE_WIDTH_MAX: usize = 100;

/// Files allowed past `FILE_LINES_MAX`, and why.
const LONG_FILES: &[(&str, &str)] = &[
    (
        "bench/run.rs",
        "the load generator's pub/sub/request/JetStream modes share one worker loop",
    ),
    (
        "bench/consume.rs",
        "the load generator's pull, push and ordered consumer clients side by side",
    ),
];

/// `log`'s macros are exported at the crate root.
const LOG_MACROS: &[&str] = &["error", "warn", "info", "debug", "trace"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as paths relative to `src/`.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(src()).expect("under src");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The layers listed in lib.rs's doc: module paths, bottom-up; modules named
/// on one line share a layer.
fn layers(lib_rs: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in lib_rs.lines() {
        let Some(item) = line.strip_prefix("//! - ") else {
            continue;
        };
        let head = item.split(": ").next().unwrap_or("");
        let names: Vec<String> = head
            .split(',')
            .map(|n| n.trim().trim_matches('`').to_string())
            .filter(|n| !n.is_empty())
            .collect();
        out.push(names);
    }
    out
}

/// The module path of a file: `js/consumer/mod.rs` → `js::consumer`.
fn module_of(file: &str) -> String {
    let path = file.trim_end_matches(".rs");
    let path = path.strip_suffix("/mod").unwrap_or(path);
    path.replace('/', "::")
}

/// The layer of a module path: that of the longest listed prefix.
fn layer_of(layers: &[Vec<String>], module: &str) -> Option<usize> {
    let parts: Vec<&str> = module.split("::").collect();
    (1..=parts.len()).rev().find_map(|n| {
        let prefix = parts[..n].join("::");
        layers.iter().position(|l| l.contains(&prefix))
    })
}

/// The `crate::` paths a file refers to (outside comments), as module paths.
fn imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path = path.trim_end_matches(':');
            let first = path.split("::").next().unwrap_or("");
            let is_macro = rest[path.len()..].starts_with('!');
            if is_macro && LOG_MACROS.contains(&first) {
                out.push("log".to_string());
            } else if !path.is_empty() {
                out.push(path.to_string());
            }
        }
    }
    out
}

/// The imports of one file that go upward (or to no listed module).
fn upward(layers: &[Vec<String>], file: &str, text: &str) -> Result<Vec<String>, String> {
    let module = module_of(file);
    let found = imports(text);
    let Some(own) = layer_of(layers, &module) else {
        // A folder's `mod.rs` that only declares listed submodules.
        if found.is_empty() {
            return Ok(Vec::new());
        }
        return Err(format!("{file}: module {module} is not listed in lib.rs"));
    };
    let mut bad = Vec::new();
    for path in found {
        // Items of the crate root (none but macros today) and unlisted paths
        // resolve to the longest listed prefix; an unknown one is reported.
        match layer_of(layers, &path) {
            Some(l) if l > own => bad.push(format!(
                "{file} ({module}) uses crate::{path}, listed below it"
            )),
            Some(_) => {}
            None => bad.push(format!("{file}: crate::{path} is in no listed module")),
        }
    }
    Ok(bad)
}

fn long_lines(file: &str, text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.chars().count() > LINE_WIDTH_MAX && !l.contains('"'))
        .map(|(i, _)| format!("{file}:{}: over {LINE_WIDTH_MAX} columns", i + 1))
        .collect()
}

/// Whether ARCHITECTURE.md names `file` (its path under src/, or for a
/// `mod.rs` its folder).
fn named(architecture: &str, file: &str) -> bool {
    if architecture.contains(file) {
        return true;
    }
    file.strip_suffix("mod.rs")
        .is_some_and(|dir| architecture.contains(&format!("`{dir}`")))
}

#[test]
fn module_order_in_lib_rs_is_true() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let layers = layers(&lib);
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut bad = Vec::new();
    for f in files
        .iter()
        .filter(|f| !matches!(f.as_str(), "lib.rs" | "main.rs") && !f.starts_with("bin/"))
    {
        let text = std::fs::read_to_string(src().join(f)).expect("source");
        match upward(&layers, f, &text) {
            Ok(b) => bad.extend(b),
            Err(e) => bad.push(e),
        }
    }
    assert!(
        bad.is_empty(),
        "imports against lib.rs's order:\n{}",
        bad.join("\n")
    );
}

#[test]
fn files_and_lines_are_short() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let allowed: BTreeMap<&str, &str> = LONG_FILES.iter().copied().collect();
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(src().join(f)).expect("source");
        let n = text.lines().count();
        if n > FILE_LINES_MAX && !allowed.contains_key(f.as_str()) {
            bad.push(format!(
                "{f}: {n} lines (over {FILE_LINES_MAX}; split it, or say why in LONG_FILES)"
            ));
        }
        bad.extend(long_lines(f, &text));
    }
    for f in allowed.keys() {
        if !files.iter().any(|x| x == f) {
            bad.push(format!("LONG_FILES names {f}, which is gone"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_source_file_is_in_the_code_map() {
    let arch = std::fs::read_to_string(src().join("../ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let missing: Vec<&String> = files.iter().filter(|f| !named(&arch, f)).collect();
    assert!(
        missing.is_empty(),
        "not named in ARCHITECTURE.md's code map: {missing:?}"
    );
}

#[test]
fn the_checks_fail_when_they_should() {
    let lib = "//! - `limits`: a\n//! - `shard::msg`, `shard::mesh`: b\n//! - `shard`: c\n//! - `js`: d\n";
    let layers = layers(lib);
    assert_eq!(layers.len(), 4);
    assert_eq!(module_of("js/consumer/mod.rs"), "js::consumer");
    assert_eq!(layer_of(&layers, "shard::msg"), Some(1));
    assert_eq!(layer_of(&layers, "shard::run"), Some(2));
    assert_eq!(layer_of(&layers, "js::stream::x"), Some(3));
    // An upward import, a macro of `log` (unlisted here), a comment.
    let text = "use crate::js::Js;\n// crate::js in a comment\ncrate::debug!(\"x\");\n";
    let bad = upward(&layers, "shard/msg.rs", text).unwrap();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("crate::js::Js, listed below it"));
    assert!(bad[1].contains("crate::log is in no listed module"));
    assert!(upward(&layers, "js/x.rs", "use crate::shard::msg::A;\n")
        .unwrap()
        .is_empty());
    assert!(upward(&layers, "other.rs", "use crate::limits::X;\n").is_err());
    assert!(upward(&layers, "other/mod.rs", "pub mod a;\n")
        .unwrap()
        .is_empty());
    let wide = format!(
        "{}\n    let s = \"{}\";\n",
        "x".repeat(101),
        "y".repeat(100)
    );
    assert_eq!(long_lines("f.rs", &wide).len(), 1);
    assert!(named("- `js/consumer/`: consumers", "js/consumer/mod.rs"));
    assert!(named("`js/mod.rs`", "js/mod.rs"));
    assert!(!named("`js/consumer/state.rs`", "js/consumer/acks.rs"));
}
