//! The docs' example commands work as written. Each `pagecast` command in a shell block of
//! README.md or docs/ is parsed by the binary itself (`<command> --help` after its arguments:
//! clap checks every flag and value it reads first, then prints the help and starts nothing);
//! those that need nothing from outside are run. `docker run` lines are checked against the
//! commands and variables the binary knows, API request bodies parse as JSON with a known
//! Action. A pagecast example that is not run says why, in [`NOT_RUN`]; every other command
//! in a shell block (docker, kubectl, curl, benchmark drivers, ...) is named, with why it is
//! not run here, in [`OTHER_COMMANDS`].

mod common;
#[path = "support/docs.rs"]
mod docs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// Examples that are parsed but not run, by a part of their text, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "https://",
        "records a page on the internet; the test machine may be offline",
    ),
    (
        "http://127.0.0.1:",
        "records a fixture page that a benchmark driver serves on that port (bench/)",
    ),
    (
        "pagecast record demo --width 1920",
        "records until Ctrl-C (no --duration): the demo page runs in the test below",
    ),
    (
        "pagecast serve",
        "a long-running service: tests/service.rs runs it",
    ),
    (
        "pagecast worker",
        "a long-running service: tests/service.rs runs it",
    ),
    (
        "pagecast doctor",
        "needs a Redis at the address shown: tests/ops.rs runs doctor",
    ),
    (
        "pagecast analyze",
        "needs a recording of a benchmark page: tests/audio.rs runs it",
    ),
    (
        "pagecast healthcheck",
        "needs a running service: tests/ops.rs runs it",
    ),
];

/// A shell command from a ```sh block, with its continuation lines joined.
#[derive(Debug)]
struct Example {
    page: PathBuf,
    text: String,
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![docs::root().join("README.md")];
    let mut dirs = vec![docs::root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read docs/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages
}

/// The commands of every ```sh block of `page`: comments dropped, `\` continuations and
/// quotes spanning lines joined.
fn examples(page: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(page).expect("read a page");
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            match block.take() {
                Some(b) => blocks.push(b),
                None if t == "```sh" => block = Some(String::new()),
                None => {}
            }
            continue;
        }
        if let Some(b) = block.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    let mut out = Vec::new();
    for b in blocks {
        for text in commands_of(&b) {
            out.push(Example {
                page: page.to_path_buf(),
                text,
            });
        }
    }
    out
}

/// The commands of a shell block, as a shell reads them (no expansions).
fn commands_of(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut single, mut double, mut comment) = (false, false, false);
    let mut chars = block.chars().peekable();
    while let Some(c) = chars.next() {
        if comment {
            if c == '\n' {
                comment = false;
                push_command(&mut out, &mut cur);
            }
            continue;
        }
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && cur.chars().last().is_none_or(char::is_whitespace) => {
                comment = true;
                continue;
            }
            '\\' if !single && chars.peek() == Some(&'\n') => {
                chars.next();
                cur.push(' ');
                continue;
            }
            '\n' if !single && !double => {
                push_command(&mut out, &mut cur);
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    push_command(&mut out, &mut cur);
    out
}

fn push_command(out: &mut Vec<String>, cur: &mut String) {
    let text = cur.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() {
        out.push(text);
    }
    cur.clear();
}

/// Splits a command line into words the way a shell would for these examples (quotes
/// removed; no expansions).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut single, mut double, mut any) = (false, false, false);
    for c in text.chars() {
        match c {
            '\'' if !double => {
                single = !single;
                any = true;
            }
            '"' if !single => {
                double = !double;
                any = true;
            }
            c if c.is_whitespace() && !single && !double => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The `pagecast ...` arguments of an example: the words after `pagecast` (or
/// `…/pagecast`) in command position (first, after `VAR=value` words, after `--` as in
/// `kubectl exec … -- pagecast`, or after `&&`, `;`, `|`), up to the next shell operator.
fn pagecast_args(text: &str) -> Option<Vec<String>> {
    let w = words(text);
    let mut command_position = true;
    let mut at = None;
    for (i, x) in w.iter().enumerate() {
        if command_position && (x == "pagecast" || x.ends_with("/pagecast")) {
            at = Some(i);
            break;
        }
        command_position = if ["--", "&&", ";", "|"].contains(&x.as_str()) {
            true
        } else {
            command_position && x.contains('=') && !x.starts_with('-')
        };
    }
    let at = at?;
    Some(
        w[at + 1..]
            .iter()
            .take_while(|x| !["&", "&&", "|", ";", ">"].contains(&x.as_str()))
            .cloned()
            .collect(),
    )
}

/// The image and what follows it in `docker run …` (options and their values skipped).
fn docker_image_args(w: &[String]) -> Option<&[String]> {
    let with_value = ["-e", "-v", "-p", "--name", "--network", "--shm-size"];
    let mut i = w.iter().position(|x| x == "run")? + 1;
    while i < w.len() {
        let x = w[i].as_str();
        if with_value.contains(&x) {
            i += 2;
        } else if x.starts_with('-') {
            i += 1;
        } else {
            return Some(&w[i..]);
        }
    }
    None
}

#[test]
fn every_pagecast_example_parses() {
    let mut problems = Vec::new();
    let mut seen = 0;
    for page in pages() {
        for ex in examples(&page) {
            if ex.text.starts_with("docker") || ex.text.starts_with("cargo") {
                continue;
            }
            let Some(args) = pagecast_args(&ex.text) else {
                continue;
            };
            if args.is_empty() || args[0].starts_with('-') {
                continue; // `pagecast --version` and the like
            }
            seen += 1;
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_pagecast"))
                .args(&args)
                .arg("--help")
                .output()
                .expect("run pagecast");
            if !o.status.success() {
                problems.push(format!(
                    "{}: `{}` does not parse: {}",
                    ex.page.display(),
                    ex.text,
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
    }
    assert!(seen >= 10, "only {seen} examples found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every example that is not run names its reason; the others run here.
#[test]
fn the_examples_that_need_nothing_outside_run() {
    let mut runnable = Vec::new();
    for page in pages() {
        for ex in examples(&page) {
            let Some(args) = pagecast_args(&ex.text) else {
                continue;
            };
            if ex.text.starts_with("docker") || ex.text.starts_with("cargo") {
                continue;
            }
            if args.first().is_none_or(|a| a.starts_with('-')) {
                continue;
            }
            if NOT_RUN.iter().any(|(part, _)| ex.text.contains(part)) {
                continue;
            }
            runnable.push((ex, args));
        }
    }
    // The README's first command, without the script: the demo page for 10 s.
    assert!(
        runnable
            .iter()
            .any(|(_, a)| a.starts_with(&["record".into(), "demo".into()])),
        "the README's record command is not among the runnable examples: {runnable:?}"
    );
    for (ex, args) in runnable {
        let dir = scratch("docs-example");
        let mut c = pagecast();
        c.args(&args).current_dir(&dir);
        let o = run(c, Duration::from_secs(120));
        assert!(
            o.status.success(),
            "{}: `{}` failed: {}",
            ex.page.display(),
            ex.text,
            stderr(&o)
        );
        if let Some(i) = args.iter().position(|a| a == "-o") {
            let out = dir.join(&args[i + 1]);
            let p = probe(&out, &[]);
            assert!(
                p.duration > 9.0,
                "{}: {} is too short: {p:?}",
                ex.text,
                out.display()
            );
        }
    }
}

/// `docker run ... pagecast <command>` uses real commands and real variables.
#[test]
fn docker_examples_use_real_commands_and_settings() {
    let settings = docs::help_settings();
    let mut seen = 0;
    let mut problems = Vec::new();
    for page in pages() {
        for ex in examples(&page) {
            if !ex.text.starts_with("docker run") {
                continue;
            }
            let w = words(&ex.text);
            for pair in w.windows(2) {
                if pair[0] == "-e"
                    && let Some((name, _)) = pair[1].split_once('=')
                    && name.starts_with("PAGECAST_")
                    && !settings.keys().any(|(k, _)| k == name)
                {
                    problems.push(format!("{}: {name} is no setting", ex.text));
                }
            }
            let image = docker_image_args(&w).unwrap_or_default();
            if image.first().is_some_and(|x| x == "pagecast") {
                seen += 1;
                let Some(cmd) = image.get(1) else { continue };
                if !docs::COMMANDS.contains(&cmd.as_str()) {
                    problems.push(format!("{}: no command {cmd}", ex.text));
                }
                // A container on a network of its own reaches Redis by name only on it.
                if ex.text.contains("redis://redis") && !ex.text.contains("--network") {
                    problems.push(format!(
                        "{}: reaches redis by name without a network",
                        ex.text
                    ));
                }
            }
        }
    }
    assert!(seen >= 3, "only {seen} docker examples");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The API examples' bodies are JSON with an Action the API knows.
#[test]
fn api_example_bodies_are_json_with_a_known_action() {
    let actions = [
        "Start", "Pause", "Resume", "Refresh", "Stop", "Cancel", "Describe",
    ];
    let mut seen = 0;
    for page in pages() {
        for ex in examples(&page) {
            let w = words(&ex.text);
            let body = match w.first().map(String::as_str) {
                Some("pc") => w.get(1).cloned(),
                Some("curl") => w.windows(2).find(|p| p[0] == "-d").map(|p| p[1].clone()),
                _ => None,
            };
            let Some(body) = body.filter(|b| b.starts_with('{')) else {
                continue;
            };
            seen += 1;
            let v: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {body}", ex.page.display()));
            let action = v["Action"].as_str().unwrap_or_default();
            assert!(
                actions.contains(&action),
                "{}: unknown Action in {body}",
                ex.page.display()
            );
        }
    }
    assert!(seen >= 6, "only {seen} API examples");
}

/// docs/testing.md says what each test file proves: every file under tests/ has its row.
#[test]
fn the_testing_page_names_every_test_file() {
    let page = std::fs::read_to_string(docs::root().join("docs/testing.md")).expect("testing.md");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(docs::root().join("tests")).expect("read tests/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if !page.contains(&format!("| `{name}` |")) {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/testing.md's table: {missing:?}"
    );
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every relative link in README.md and docs/ reaches a file, and its `#anchor` a heading.
#[test]
fn relative_links_resolve() {
    let mut problems = Vec::new();
    let mut all = pages();
    all.push(docs::root().join("BENCHMARKS.md"));
    for page in all {
        let text = std::fs::read_to_string(&page).expect("read a page");
        for part in text.split("](").skip(1) {
            let Some(target) = part.split(')').next() else {
                continue;
            };
            if target.contains("://") || target.starts_with('#') && target.len() == 1 {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("a page's directory").join(file)
            };
            if !path.exists() {
                problems.push(format!("{}: {target} does not exist", page.display()));
                continue;
            }
            if !anchor.is_empty() && path.extension().is_some_and(|e| e == "md") {
                let linked = std::fs::read_to_string(&path).expect("read the linked page");
                let found = linked
                    .lines()
                    .filter_map(|l| l.strip_prefix('#'))
                    .map(|h| slug(h.trim_start_matches('#')))
                    .any(|s| s == anchor);
                if !found {
                    problems.push(format!("{}: no heading for {target}", page.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The other commands in the docs' shell blocks, by their first word, and why they are not run.
const OTHER_COMMANDS: &[(&str, &str)] = &[
    (
        "redis-cli",
        "reads the events stream of a running service: tests/snapshots.rs reads the same entries",
    ),
    (
        "docker",
        "needs a Docker engine (none on the test machines): `docker run` lines are checked above",
    ),
    (
        "kubectl",
        "needs a Kubernetes cluster: tests/deploy.rs validates the manifests offline",
    ),
    (
        "curl",
        "needs a running service: tests/api_contract.rs and tests/service.rs send these requests",
    ),
    (
        "pc",
        "the curl wrapper of the API examples: the bodies are checked above",
    ),
    ("pc()", "defines the curl wrapper"),
    (
        "TOKEN=",
        "sets the example token (from a literal, or from the cluster's secret)",
    ),
    (
        "export",
        "sets example settings, checked against --help by tests/config.rs",
    ),
    ("redis-server", "the tests start their own Redis servers"),
    ("cargo", "builds and test runs: what scripts/test does"),
    (
        "python3",
        "benchmark drivers, minutes each: BENCHMARKS.md's runs",
    ),
    (
        "bash",
        "installers and benchmark scripts: scripts/test runs install-test-deps.sh",
    ),
    ("scripts/test", "the whole suite: this test is part of it"),
    ("scripts/pagecast", "runs as the pagecast command (above)"),
    (
        "target/release/pagecast",
        "runs as the pagecast command (above)",
    ),
    ("pagecast", "parsed or run above"),
    (
        "PAGECAST_API_TOKENS=",
        "`pagecast serve` with a token: parsed above",
    ),
];

/// Every command in a shell block is a pagecast command (parsed, or run) or one of
/// [`OTHER_COMMANDS`], which names why it is not run; a new kind of example must be added there.
#[test]
fn every_example_command_is_run_checked_or_named() {
    let mut unknown = Vec::new();
    for page in pages() {
        if page.components().any(|c| c.as_os_str() == "benchmarks") {
            continue; // the dated lab notebook and decision records: commands as they were run
        }
        for ex in examples(&page) {
            let first = words(&ex.text).into_iter().next().unwrap_or_default();
            let named = OTHER_COMMANDS
                .iter()
                .any(|(w, _)| *w == first || w.ends_with('=') && first.starts_with(w));
            if !named {
                unknown.push(format!("{}: {}", page.display(), ex.text));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "examples this test neither runs nor names (add them to OTHER_COMMANDS with why):\n{}",
        unknown.join("\n")
    );
}
