//! Reading what the binary says about its settings (`--help`) and what the docs say
//! (docs/configuration.md's tables), for tests/config.rs and tests/docs.rs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The commands whose settings the docs list, in that order.
pub const COMMANDS: [&str; 5] = ["record", "serve", "worker", "doctor", "healthcheck"];

/// One option as `pagecast <command> --help` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpOption {
    /// `--name`.
    pub flag: String,
    /// `-x`, if any.
    pub short: Option<String>,
    /// Its environment variable, if any.
    pub env: Option<String>,
    /// Its `[default: ...]`, if any.
    pub default: Option<String>,
    /// Whether it takes a value (`--name <VALUE>`); a switch does not.
    pub takes_value: bool,
    /// The words it accepts, when clap lists them.
    pub possible: Vec<String>,
}

impl HelpOption {
    /// The name the docs key it by: its variable, or its flag when it has none.
    pub fn key(&self) -> String {
        self.env.clone().unwrap_or_else(|| self.flag.clone())
    }
}

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pagecast"))
}

/// Every option of `pagecast <command> --help` (long form), but `--help` and `--version`.
pub fn help_options(command: &str) -> Vec<HelpOption> {
    let o = binary()
        .args([command, "--help"])
        .env_remove("PAGECAST_LOG")
        .output()
        .expect("run pagecast --help");
    assert!(o.status.success(), "{command} --help failed");
    parse_help(&String::from_utf8_lossy(&o.stdout))
}

/// Parses clap's long help: an option starts on a line indented by at most 6 spaces with `-`.
pub fn parse_help(text: &str) -> Vec<HelpOption> {
    let mut out: Vec<HelpOption> = Vec::new();
    let mut in_possible = false;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent <= 6 && trimmed.starts_with('-') {
            in_possible = false;
            let mut words = trimmed.split_whitespace();
            let mut short = None;
            let mut first = words.next().unwrap_or_default().trim_end_matches(',');
            if !first.starts_with("--") {
                short = Some(first.to_string());
                first = words.next().unwrap_or_default();
            }
            let flag = first.trim_end_matches("...").to_string();
            let takes_value = words.next().is_some_and(|w| w.starts_with('<'));
            out.push(HelpOption {
                flag,
                short,
                env: None,
                default: None,
                takes_value,
                possible: Vec::new(),
            });
            continue;
        }
        let Some(opt) = out.last_mut() else { continue };
        if let Some(rest) = trimmed.strip_prefix("[env: ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            opt.env = Some(name);
        } else if let Some(rest) = trimmed.strip_prefix("[default: ") {
            opt.default = rest.strip_suffix(']').map(String::from);
        } else if let Some(rest) = trimmed.strip_prefix("[possible values: ") {
            opt.possible = rest
                .trim_end_matches(']')
                .split(", ")
                .map(String::from)
                .collect();
        } else if trimmed == "Possible values:" {
            in_possible = true;
        } else if in_possible && let Some(item) = trimmed.strip_prefix("- ") {
            let word = item.split(':').next().unwrap_or_default().trim();
            opt.possible.push(word.to_string());
        } else if trimmed.is_empty() || trimmed.starts_with('[') {
            in_possible = false;
        }
    }
    out.retain(|o| o.flag != "--help" && o.flag != "--version");
    out
}

/// Every documented option of every command: (key, command) → option.
pub fn help_settings() -> BTreeMap<(String, String), HelpOption> {
    let mut out = BTreeMap::new();
    for cmd in COMMANDS {
        for opt in help_options(cmd) {
            out.insert((opt.key(), cmd.to_string()), opt);
        }
    }
    out
}

/// One row of a settings table in docs/configuration.md.
#[derive(Debug, Clone)]
pub struct DocRow {
    /// The line, for messages.
    pub line: String,
    /// `PAGECAST_*`, or `None` for `—`.
    pub variable: Option<String>,
    /// `--name`.
    pub flag: String,
    /// `-x`, when the cell gives one.
    pub short: Option<String>,
    pub default: String,
    pub limits: String,
    pub commands: Vec<String>,
}

impl DocRow {
    pub fn key(&self) -> String {
        self.variable.clone().unwrap_or_else(|| self.flag.clone())
    }
}

/// The header of every settings table in docs/configuration.md.
pub const SETTINGS_HEADER: &str = "| variable | flag | default | limits | commands | meaning |";

/// The text inside backticks of `cell`, each.
pub fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// The settings tables' rows of `path`.
pub fn doc_rows(path: &Path) -> Vec<DocRow> {
    let text = std::fs::read_to_string(path).expect("read the configuration page");
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line == SETTINGS_HEADER {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| a | b |" splits into "", a, b, "".
        assert_eq!(cells.len(), 8, "a settings row has 6 cells: {line}");
        let variable = match cells[1] {
            "—" => None,
            v => Some(
                code_spans(v)
                    .first()
                    .cloned()
                    .unwrap_or_else(|| panic!("the variable cell is `PAGECAST_*` or —: {line}")),
            ),
        };
        let flags = code_spans(cells[2]);
        let flag = flags
            .iter()
            .find(|f| f.starts_with("--"))
            .cloned()
            .unwrap_or_else(|| panic!("no `--flag` in the flag cell: {line}"));
        let short = flags.iter().find(|f| !f.starts_with("--")).cloned();
        rows.push(DocRow {
            line: line.to_string(),
            variable,
            flag,
            short,
            default: cells[3].to_string(),
            limits: cells[4].to_string(),
            commands: cells[5].split(", ").map(String::from).collect(),
        });
    }
    rows
}

/// A numeric limit as the docs write it: `A–B`, `≥ A`, with `, or 0` (0 accepted too) or
/// `, not 0` (0 refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: Option<u64>,
    pub zero: Option<bool>,
}

pub fn parse_range(cell: &str) -> Option<Range> {
    let (body, zero) = if let Some(b) = cell.strip_suffix(", or 0") {
        (b, Some(true))
    } else if let Some(b) = cell.strip_suffix(", not 0") {
        (b, Some(false))
    } else {
        (cell, None)
    };
    if let Some(min) = body.strip_prefix("≥ ") {
        return Some(Range {
            min: min.parse().ok()?,
            max: None,
            zero,
        });
    }
    let (a, b) = body.split_once('–')?;
    Some(Range {
        min: a.parse().ok()?,
        max: Some(b.parse().ok()?),
        zero,
    })
}

/// Whether `pagecast <command>` accepts `value` for `flag`, found without running anything:
/// clap checks values as it reads them, so `<flag> <value> --help` prints the help (exit 0) or
/// a usage error (exit 2). `record` checks its own limits after clap, before it starts
/// anything, and then its output name: an impossible output name shows how far it got.
pub fn accepts(command: &str, flag: &str, value: &str) -> bool {
    let mut c = binary();
    if command == "record" {
        c.args([
            "record",
            "demo",
            "-o",
            "/nonexistent/pagecast-docs-probe.avi",
            flag,
            value,
        ]);
    } else {
        c.args([command, flag, value, "--help"]);
    }
    let o = c
        .env_remove("PAGECAST_LOG")
        .env_remove("PAGECAST_HLS_KEY")
        .output()
        .expect("run pagecast");
    let err = String::from_utf8_lossy(&o.stderr);
    match o.status.code() {
        Some(0) if command != "record" => true,
        Some(2) if command == "record" && err.contains("--output: ") => true,
        // record's own checks name the value without the dashes (`fps must be ...`).
        Some(2) if err.contains(flag.trim_start_matches('-')) => false,
        other => panic!("pagecast {command} {flag} {value}: unexpected exit {other:?}: {err}"),
    }
}
