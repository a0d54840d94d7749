//! The library's dependency order (issue 21): every `crate::X` path in a top-level module points
//! down the layers below, so no import cycle between top-level modules can come back unnoticed;
//! and the worker's stages (src/pipeline/*) do not import each other in a cycle.
//!
//! Reads the sources, no build needed: a path counts when it is written `crate::X::...`,
//! `crate::X` or inside a `use crate::{...}` group; comment lines are skipped (a doc link is not
//! an import).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's layers, top first. A module may use those of layers below its own only (so
/// two modules of one layer never use each other). docs/architecture.md draws this order.
const LAYERS: &[&[&str]] = &[
    // What runs: the HTTP API and the worker's stages, side by side (the binary wires them).
    &["api", "pipeline"],
    // Health, readiness, `doctor`.
    &["ops"],
    // Settings: flattens the settings of the layers below.
    &["config"],
    // Tasks: model, names, moves, wire view, the Redis store.
    &["task"],
    // Result files, result store, signed URLs.
    &["delivery"],
    // Adapters.
    &["storage"],
    &["recording"],
    &["media", "browser"],
    &["audio"],
    &["process"],
    // The egress proxy: what a recorded page and an RTMPS push connect through.
    &["egress"],
    // Leaves: shared vocabulary that uses no other module of the crate.
    &[
        "clock",
        "command",
        "error",
        "fonts",
        "log_limit",
        "metrics",
        "redact",
        "runtime_dir",
        "secret",
        "tls",
        "url_guard",
        "workdir",
    ],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module names of `crate::` paths in `text` (comment lines skipped).
fn crate_paths(text: &str) -> BTreeSet<String> {
    paths_after(text, "crate::")
}

/// The first names of the paths after `prefix` (`crate::`, `super::`) in `text`.
fn paths_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find(prefix) {
        // `$crate::` is a macro's own path; `x_crate::` another name.
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the first name of each item at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        out.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// The top-level module of a file below src/ (`None`: the binary's files and lib.rs).
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    match name {
        "main" | "lib" | "cli" => None,
        _ => Some(name.to_string()),
    }
}

/// Edges between top-level modules: module → (module it uses → files that do).
fn module_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let Some(from) = top_module(&file) else {
            continue;
        };
        let entry = graph.entry(from.clone()).or_default();
        for to in crate_paths(&std::fs::read_to_string(&file).unwrap()) {
            if to != from && to != "self" && to != "super" {
                let rel = file.strip_prefix(src()).unwrap().display().to_string();
                entry.entry(to).or_default().insert(rel);
            }
        }
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

#[test]
fn the_parser_sees_paths_groups_and_skips_comments() {
    let text = "use crate::task::store::{A, B};\nuse crate::{clock, error::{C, D}, metrics};\n\
                // crate::api is only mentioned\nlet x = crate::delivery::f(); $crate::y; \
                pagecast_crate::z";
    let got: Vec<String> = crate_paths(text).into_iter().collect();
    assert_eq!(got, ["clock", "delivery", "error", "metrics", "task"]);
}

#[test]
fn every_top_level_module_has_a_layer() {
    let graph = module_graph();
    let unplaced: Vec<&String> = graph.keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        unplaced.is_empty(),
        "place these modules in LAYERS (tests/module_order.rs) and docs/architecture.md: \
         {unplaced:?}"
    );
    // Not vacuous: the known arrows are seen.
    assert!(graph["pipeline"].contains_key("task"), "{graph:?}");
    assert!(graph["api"].contains_key("task"), "{graph:?}");
    assert!(graph["recording"].contains_key("browser"), "{graph:?}");
}

#[test]
fn every_arrow_points_down_the_layers() {
    let mut wrong = Vec::new();
    for (from, uses) in module_graph() {
        let Some(from_layer) = layer_of(&from) else {
            continue;
        };
        for (to, files) in uses {
            match layer_of(&to) {
                Some(to_layer) if to_layer > from_layer => {}
                // Not a module of ours (e.g. a macro's `crate::` path): nothing to order.
                None if !src().join(&to).exists() && !src().join(format!("{to}.rs")).exists() => {}
                _ => wrong.push(format!("{from} -> {to} (in {files:?})")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "these imports point up (or sideways) the layers of tests/module_order.rs; move the \
         shared item down into a lower module instead:\n{}",
        wrong.join("\n")
    );
}

/// The stages of src/pipeline/ and whom each imports (`super::X`, `crate::pipeline::X`).
fn stage_graph() -> BTreeMap<String, BTreeSet<String>> {
    let dir = src().join("pipeline");
    let mut stages = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let text = if path.is_dir() {
            continue;
        } else {
            std::fs::read_to_string(&path).unwrap()
        };
        if name == "mod" {
            continue;
        }
        // Unit tests may reach anywhere.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        stages.insert(name, code.to_string());
    }
    let names: BTreeSet<String> = stages.keys().cloned().collect();
    stages
        .iter()
        .map(|(name, code)| {
            let uses = ["super::", "crate::pipeline::"]
                .iter()
                .flat_map(|prefix| paths_after(code, prefix))
                .filter(|used| names.contains(used) && used != name)
                .collect();
            (name.clone(), uses)
        })
        .collect()
}

#[test]
fn the_pipeline_stages_import_each_other_without_cycles() {
    let graph = stage_graph();
    assert!(graph["transcode"].contains("publish"), "{graph:?}");
    // Kahn's algorithm: whatever cannot be ordered is on a cycle.
    let mut left = graph.clone();
    loop {
        let free: Vec<String> = left
            .iter()
            .filter(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
            .map(|(n, _)| n.clone())
            .collect();
        if free.is_empty() {
            break;
        }
        for n in free {
            left.remove(&n);
        }
    }
    assert!(
        left.is_empty(),
        "these pipeline modules import each other in a cycle; move what they share into a \
         lower module (e.g. crate::delivery): {left:?}"
    );
}
