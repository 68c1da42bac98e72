//! A test of the module structure (issue #41): no module of this crate imports one that imports it
//! back, directly or through others. A module is a file; an edge is a `crate::…` or `super::…`
//! path (resolved to the longest module it names) or a parent's use of its child module. Two
//! modules are one unit split into child files whose children use the parent's items, as Rust's
//! privacy nests: `pipeline::batch`, `connector::simulator` and `sandbox`; edges inside each are left out.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules split into child files of one unit (see the module comment).
const UNITS: [&str; 3] = ["pipeline::batch", "connector::simulator", "sandbox"];

fn modules(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).expect("under root").with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let source = std::fs::read_to_string(&path).expect("source file");
            out.insert(parts.join("::"), code_of(&source));
        }
    }
    out
}

/// The source without comment lines and without its test module.
fn code_of(source: &str) -> String {
    let source = source.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    source.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| format!("{l}\n")).collect()
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that follows `prefix` in `code` (identifiers joined by `::`).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix) {
        let start = from + at;
        from = start + prefix.len();
        if code[..start].chars().next_back().is_some_and(|c| ident_char(c) || c == ':') {
            continue;
        }
        let rest = &code[from..];
        let len = rest.find(|c: char| !(ident_char(c) || c == ':')).unwrap_or(rest.len());
        out.push(rest[..len].trim_end_matches(':'));
    }
    out
}

fn resolve(mods: &BTreeMap<String, String>, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    (1..=segs.len()).rev().map(|i| segs[..i].join("::")).find(|m| mods.contains_key(m))
}

fn in_unit(a: &str, b: &str) -> bool {
    UNITS.iter().any(|u| (a == *u || a.starts_with(&format!("{u}::"))) && (b == *u || b.starts_with(&format!("{u}::"))))
}

fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in mods {
        let mut to = BTreeSet::new();
        for p in paths_after(code, "crate::") {
            to.extend(resolve(mods, p));
        }
        let parent: Vec<&str> = m.split("::").filter(|s| !s.is_empty()).collect();
        let parent = parent[..parent.len().saturating_sub(1)].join("::");
        for p in paths_after(code, "super::") {
            let full = if parent.is_empty() { p.to_string() } else { format!("{parent}::{p}") };
            to.extend(resolve(mods, &full).or_else(|| mods.contains_key(&parent).then(|| parent.clone())));
        }
        // A parent's use of its child (`child::item`, `use child::…`), not its `mod child;`.
        for child in mods.keys().filter(|k| k.strip_prefix(&format!("{m}::")).is_some_and(|r| !r.contains("::")) || (m.is_empty() && !k.contains("::"))) {
            let name = child.rsplit("::").next().unwrap_or(child);
            let without_decl: String = code.lines().filter(|l| !l.trim_start().trim_start_matches("pub ").trim_start_matches("pub(crate) ").starts_with(&format!("mod {name}"))).collect::<Vec<_>>().join("\n");
            if !paths_after(&without_decl, &format!("{name}::")).is_empty() {
                to.insert(child.clone());
            }
        }
        to.remove(m);
        to.retain(|t| !in_unit(m, t));
        out.insert(m.clone(), to);
    }
    out
}

/// A cycle through `start`, if any (depth-first search).
fn cycle_from(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(edges: &BTreeMap<String, BTreeSet<String>>, start: &str, at: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(edges, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(edges, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mods = modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(mods.contains_key("pipeline") && mods.contains_key("pipeline::batch"), "the source tree was read");
    let edges = edges(&mods);
    let cycles: Vec<String> = mods.keys().filter_map(|m| cycle_from(&edges, m)).map(|c| c.join(" -> ")).collect();
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
}

#[test]
fn the_check_sees_a_circle() {
    let mut mods = BTreeMap::new();
    mods.insert("a".to_string(), "use crate::b::thing;\n".to_string());
    mods.insert("b".to_string(), "fn f() { crate::a::other(); }\n".to_string());
    mods.insert("c".to_string(), "use crate::a;\n".to_string());
    let edges = edges(&mods);
    assert_eq!(cycle_from(&edges, "a"), Some(vec!["a".to_string(), "b".to_string()]));
    assert_eq!(cycle_from(&edges, "c"), None);
}
