//! The rule index in `docs/ARCHITECTURE.md` ("Where each rule lives") names real functions: every
//! `module::item` it lists exists in `payments/src`, and every rule id the code cites has a row.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The rows of the index: (rule id, the `a::b::item` paths of its last column).
fn rows() -> Vec<(String, Vec<String>)> {
    let doc = std::fs::read_to_string(root().join("../docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let section = doc.split("## Where each rule lives").nth(1).expect("the rule index section");
    section
        .lines()
        .take_while(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with("| R-"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let paths = cells[3].split('`').skip(1).step_by(2).map(String::from).collect();
            (cells[1].to_string(), paths)
        })
        .collect()
}

fn source_of(module: &[&str]) -> Option<String> {
    let base = root().join("src").join(module.join("/"));
    [base.with_extension("rs"), base.join("mod.rs")].iter().find_map(|p| std::fs::read_to_string(p).ok())
}

fn declares(source: &str, item: &str) -> bool {
    ["fn", "struct", "enum", "trait", "const", "type"].iter().any(|kind| {
        source.match_indices(&format!("{kind} {item}")).any(|(i, m)| {
            let next = source[i + m.len()..].chars().next();
            !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    })
}

fn rule_ids_in(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for (i, _) in text.match_indices("R-") {
        let rest = &text[i + 2..];
        let area: String = rest.chars().take_while(|c| c.is_ascii_uppercase()).collect();
        let digits: String = rest[area.len()..].strip_prefix('-').unwrap_or("").chars().take_while(|c| c.is_ascii_digit()).collect();
        if area.len() == 3 && !digits.is_empty() {
            ids.insert(format!("R-{area}-{digits}"));
        }
    }
    ids
}

#[test]
fn every_function_the_rule_index_names_exists() {
    let rows = rows();
    // DOMAIN.md has 47 rules (it is not in this repository, so the count is written here).
    assert!(rows.len() >= 47, "the index lists {} rules", rows.len());
    let mut missing = Vec::new();
    for (rule, paths) in &rows {
        assert!(!paths.is_empty(), "{rule} names no function");
        for path in paths {
            let parts: Vec<&str> = path.split("::").collect();
            let (item, module) = parts.split_last().unwrap();
            // `Type::method` names the type's file; a module path names the module's file.
            let found = source_of(module).is_some_and(|s| declares(&s, item))
                || (module.len() > 1 && source_of(&module[..module.len() - 1]).is_some_and(|s| declares(&s, module[module.len() - 1]) && s.contains(&format!("fn {item}"))));
            if !found {
                missing.push(format!("{rule}: {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "the rule index names what does not exist:\n{}", missing.join("\n"));
}

#[test]
fn every_rule_the_code_cites_is_in_the_index() {
    let indexed: BTreeSet<String> = rows().into_iter().map(|(r, _)| r).collect();
    let mut cited = BTreeSet::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") && !p.ends_with("rule_index.rs") {
                cited.extend(rule_ids_in(&std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    let unindexed: Vec<&String> = cited.difference(&indexed).collect();
    assert!(unindexed.is_empty(), "cited in the code, missing from the rule index: {unindexed:?}");
}

#[test]
fn the_checks_catch_a_wrong_name() {
    let source = "pub fn balance(x: i32) {}\npub struct Money;";
    assert!(declares(source, "balance") && declares(source, "Money"));
    assert!(!declares(source, "bal") && !declares(source, "Mone"));
    assert_eq!(rule_ids_in("see R-CAP-4 and R-PIP-12; not R-X-1"), BTreeSet::from(["R-CAP-4".to_string(), "R-PIP-12".to_string()]));
}
