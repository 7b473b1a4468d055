//! The promises the code makes about its own shape, checked by reading the source (README.md,
//! "Architecture", names each of these tests beside the invariant it keeps):
//! - no module imports a layer above it, and the applications do not import each other
//!   (`layers_point_one_way`); no import circle between files (`no_import_circles`);
//! - only `storage` names `object_store` (`only_storage_names_object_store`);
//! - SQL lives in `sql/`, except the rule SQL generated from the contracts
//!   (`sql_lives_in_sql_files`);
//! - the `models` crate names no query engine, object store or SQL
//!   (`the_models_crate_is_pure`);
//! - functions stay short enough to read (`functions_stay_short`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top first, as (module path prefix, rank). A module may use modules of its own
/// entry (the longest prefix that matches it) and of entries with a higher rank: never a lower
/// rank (upward), and never another entry of the same rank (peers, such as two applications).
const LAYERS: &[(&str, u32)] = &[
    // The binary: the command line.
    ("main", 0),
    ("cli", 0),
    // The applications, peers.
    ("app", 1),
    ("app::run", 1),
    ("app::runs", 1),
    ("app::train", 1),
    ("app::demo", 1),
    ("app::models", 1),
    ("app::check", 1),
    ("app::generate", 1),
    // The steps, in the order they may use each other.
    ("steps", 2),
    ("steps::presenting", 3),
    ("steps::publishing", 4),
    ("steps::scoring", 5),
    ("steps::ingest", 6),
    ("steps::demo_data", 6),
    // The engine and what it stands on.
    ("engine", 7),
    ("contracts", 8),
    ("storage", 9),
    ("config", 10),
    ("parallel", 11),
    ("error", 12),
];

fn src() -> PathBuf {
    common::repo().join("pipelines/src")
}

/// Every `.rs` file below `dir` with its module path (`steps::scoring::train`; `lib` for lib.rs).
fn modules(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(base).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().to_string())
                    .collect();
                if parts.last().is_some_and(|p| p == "mod") && parts.len() > 1 {
                    parts.pop();
                }
                out.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The module paths `source` (the module `module`) refers to: `crate::a::b`, `super::x`,
/// `flywheel_pipelines::a::b` (from the binary), each cut to the longest known module.
fn references(module: &str, source: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let path_re = regex::Regex::new(
        r"\b(crate|super|flywheel_pipelines)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{[^}]*\})",
    )
    .unwrap();
    for cap in path_re.captures_iter(&code) {
        let root = &cap[1];
        let base: Vec<String> = match root {
            // `super` is the parent module, for a file module and a folder module alike.
            "super" => {
                let mut parts: Vec<String> = module.split("::").map(str::to_string).collect();
                parts.pop();
                parts
            }
            _ => vec![],
        };
        let tail = &cap[2];
        let paths: Vec<String> = if let Some(group) = tail.strip_prefix("::{") {
            group
                .trim_end_matches('}')
                .split(',')
                .map(|p| p.trim().split(" as ").next().unwrap_or("").to_string())
                .filter(|p| !p.is_empty() && p != "self")
                .collect()
        } else {
            vec![tail.trim_start_matches("::").to_string()]
        };
        for p in paths {
            let mut parts = base.clone();
            parts.extend(p.split("::").map(str::to_string));
            // The longest prefix that is a module.
            while !parts.is_empty() && !all.contains_key(&parts.join("::")) {
                parts.pop();
            }
            if !parts.is_empty() {
                let target = parts.join("::");
                if target != module {
                    out.insert(target);
                }
            }
        }
    }
    out
}

/// The layer entry of a module: the longest prefix in LAYERS.
fn entry(module: &str) -> Option<(&'static str, u32)> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _)| prefix.len())
        .copied()
}

/// Every reference that breaks the layer order, as "from -> to".
fn layer_violations(all: &BTreeMap<String, String>) -> Vec<String> {
    let mut bad = Vec::new();
    for (module, source) in all {
        if module == "lib" {
            continue; // declares the modules, imports nothing
        }
        let (from, from_rank) =
            entry(module).unwrap_or_else(|| panic!("{module} is in no layer of LAYERS"));
        for target in references(module, source, all) {
            if target == "lib" {
                continue;
            }
            let (to, to_rank) =
                entry(&target).unwrap_or_else(|| panic!("{target} is in no layer of LAYERS"));
            let ok = from == to || to_rank > from_rank;
            if !ok {
                bad.push(format!("{module} -> {target}"));
            }
        }
    }
    bad
}

#[test]
fn layers_point_one_way() {
    let all = modules(&src());
    assert!(all.len() > 30, "found only {} modules", all.len());
    let bad = layer_violations(&all);
    assert!(
        bad.is_empty(),
        "imports against the layer order:\n{}",
        bad.join("\n")
    );
}

/// The checker itself must catch an upward import and an import between two applications.
#[test]
fn the_layer_check_catches_upward_and_peer_imports() {
    let mut all = modules(&src());
    let engine = all["engine::catalog"].clone();
    all.insert(
        "engine::catalog".into(),
        format!("{engine}\nuse crate::steps::scoring::Target;\n"),
    );
    assert_eq!(
        layer_violations(&all),
        ["engine::catalog -> steps::scoring"]
    );
    let mut all = modules(&src());
    let run = all["app::run"].clone();
    all.insert(
        "app::run".into(),
        format!("{run}\nuse super::train::TrainSettings;\n"),
    );
    assert_eq!(layer_violations(&all), ["app::run -> app::train"]);
}

#[test]
fn no_import_circles() {
    let all = modules(&src());
    let graph: BTreeMap<String, BTreeSet<String>> = all
        .iter()
        .map(|(m, s)| (m.clone(), references(m, s, &all)))
        .collect();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == next).unwrap();
                    let mut circle = stack[start..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if state.get(m).copied().unwrap_or(0) == 0 {
            if let Some(circle) = visit(m, &graph, &mut state, &mut vec![]) {
                panic!("import circle: {}", circle.join(" -> "));
            }
        }
    }
}

/// A source file without its comment lines (docs may name what the code must not use).
fn code(source: &str) -> String {
    source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn only_storage_names_object_store() {
    let all = modules(&src());
    let naming: Vec<&String> = all
        .iter()
        .filter(|(m, s)| *m != "storage" && code(s).contains("object_store"))
        .map(|(m, _)| m)
        .collect();
    assert!(
        naming.is_empty(),
        "object_store named outside storage: {naming:?}"
    );
    assert!(all["storage"].contains("object_store"));
    // No public field hands the store out.
    assert!(!all["storage"].contains("pub store"));
}

/// SQL statements appear in Rust only where they are generated from the contracts' rules.
#[test]
fn sql_lives_in_sql_files() {
    let allowed = [
        // The row rules of the input contracts, generated per contract.
        "steps::ingest::rules",
        // The row rules of the output contracts, checked before publishing.
        "steps::publishing",
        // `EXPLAIN ANALYZE <job>` for the profiling hook.
        "engine::runner",
        // The form of a contract's row rule (`type: sql` quality), parsed to its predicate.
        "contracts",
    ];
    let sql =
        regex::Regex::new(r#""[^"]*\b(SELECT|INSERT|CREATE TABLE|WITH [a-z_]+ AS)\b"#).unwrap();
    let mut found = Vec::new();
    for (module, source) in modules(&src()) {
        if allowed.contains(&module.as_str()) {
            continue;
        }
        // Unit tests may hold SQL as test data (e.g. the catalog's dependency parser).
        let production = source.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in production.lines().enumerate() {
            if !line.trim_start().starts_with("//") && sql.is_match(line) {
                found.push(format!("{module}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL in Rust strings:\n{}",
        found.join("\n")
    );
    // And the jobs are the files: nothing in Rust embeds a sql/ file by hand.
    for (module, source) in modules(&src()) {
        assert!(
            !source.contains("include_str!(\"../../sql"),
            "{module} embeds a SQL file by hand; the catalog finds them (pipelines/build.rs)"
        );
    }
}

#[test]
fn the_models_crate_is_pure() {
    let dir = common::repo().join("models");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    for dep in [
        "datafusion",
        "object_store",
        "parquet",
        "flywheel-pipelines",
        "sqlparser",
    ] {
        assert!(
            !manifest.contains(dep),
            "models/Cargo.toml depends on {dep}"
        );
    }
    let forbidden = regex::Regex::new(
        r#"datafusion|object_store|flywheel_pipelines|SessionContext|"SELECT |\.sql\("#,
    )
    .unwrap();
    for (module, source) in modules(&dir.join("src")) {
        for (n, line) in source.lines().enumerate() {
            assert!(
                !forbidden.is_match(line),
                "models/src/{module}:{}: {}",
                n + 1,
                line.trim()
            );
        }
    }
}

/// No function is longer than 80 lines (signature to closing brace), in either crate.
#[test]
fn functions_stay_short() {
    let start = regex::Regex::new(r"^(\s*)(pub(\([a-z]+\))? )?(async )?fn (\w+)").unwrap();
    let mut long = Vec::new();
    for dir in [src(), common::repo().join("models/src")] {
        for (module, source) in modules(&dir) {
            let lines: Vec<&str> = source.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let Some(cap) = start.captures(line) else {
                    continue;
                };
                let close = format!("{}}}", &cap[1]);
                if let Some(len) = lines[i + 1..].iter().position(|l| *l == close) {
                    if len + 2 > 80 {
                        long.push(format!("{module}::{} ({} lines)", &cap[5], len + 2));
                    }
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over 80 lines:\n{}",
        long.join("\n")
    );
}
