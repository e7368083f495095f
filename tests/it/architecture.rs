//! Checks that keep the code's map true: the README's component table lists exactly what
//! `otterline components` prints, and no component crate depends on another component
//! crate (they share code through `otterline-core` and `otterline-model` only).

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::BIN;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// (kind, type) pairs from `otterline components`.
fn registered() -> BTreeSet<(String, String)> {
    let out = Command::new(BIN).arg("components").output().expect("run otterline components");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut kind = String::new();
    let mut set = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(k) = line.strip_suffix("s:") {
            kind = k.to_string();
        } else if let Some(name) = line.strip_prefix("  ").and_then(|l| l.split_whitespace().next()) {
            set.insert((kind.clone(), name.to_string()));
        }
    }
    set
}

/// (kind, type) pairs from the README's `## Components` table, aliases included.
fn documented() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).expect("read README.md");
    let table = readme.split("\n## Components\n").nth(1).expect("README has a ## Components section");
    let mut set = BTreeSet::new();
    for row in table.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (kind, types) = (cells[1], cells[2]);
        // `otlp` (alias `otlp_grpc`): every back-quoted name is a type name.
        for name in types.split('`').skip(1).step_by(2) {
            set.insert((kind.to_string(), name.to_string()));
        }
    }
    set
}

#[test]
fn the_readme_component_table_matches_the_registry() {
    let (reg, doc) = (registered(), documented());
    assert!(reg.len() > 10, "too few components parsed from `otterline components`: {reg:?}");
    let missing: Vec<_> = reg.difference(&doc).collect();
    let extra: Vec<_> = doc.difference(&reg).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README.md's component table and `otterline components` differ:\n  not in the README: {missing:?}\n  not registered: {extra:?}"
    );
}

/// The crates components share (everything else under `crates/` provides components or
/// tools and may only depend on these).
const SHARED: [&str; 3] = ["otterline-core", "otterline-model", "otterline-proto"];
/// Crates that are not components and may depend on anything.
const TOOLS: [&str; 1] = ["otterline-bench"];
/// Allowed exceptions: (crate, dependency, why).
const ALLOWED: [(&str, &str, &str); 2] = [
    ("otterline-dashboard", "otterline-parquet", "reads long ranges from the archive"),
    ("otterline-analytics", "otterline-parquet", "reads version 1 archive files as version 2"),
];

#[test]
fn component_crates_depend_only_on_the_shared_crates() {
    let mut wrong = Vec::new();
    let mut crates = 0;
    for entry in std::fs::read_dir(format!("{ROOT}/crates")).expect("read crates/") {
        let dir = entry.expect("crates/ entry").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        crates += 1;
        if SHARED.contains(&name.as_str()) || TOOLS.contains(&name.as_str()) {
            continue;
        }
        // [dependencies] and [build-dependencies]; dev-dependencies are the tests' business.
        let mut section = "";
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section != "[dependencies]" && section != "[build-dependencies]" {
                continue;
            }
            let dep = line.split(['=', '.', ' ']).next().unwrap_or_default();
            if dep.starts_with("otterline-")
                && !SHARED.contains(&dep)
                && !ALLOWED.iter().any(|(c, d, _)| *c == name && *d == dep)
            {
                wrong.push(format!("{name} -> {dep}"));
            }
        }
    }
    assert!(crates >= 12, "found only {crates} crates under crates/");
    assert!(
        wrong.is_empty(),
        "component crates must not depend on each other (share code through {SHARED:?}): {wrong:?}"
    );
}
