//! Reading the docs' examples as a shell would: the pages, their ```sh and ```text blocks, the
//! commands of a block, their words, the `pagecast` arguments and `docker run` image of a
//! command, the Dockerfile's commented examples, heading anchors, and the Kubernetes manifests
//! the kubectl examples name. For tests/docs.rs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A shell command from a ```sh block, with its continuation lines joined.
#[derive(Debug)]
pub struct Example {
    pub page: PathBuf,
    pub text: String,
}

pub fn pages() -> Vec<PathBuf> {
    let mut pages = vec![super::docs::root().join("README.md")];
    let mut dirs = vec![super::docs::root().join("docs")];
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

/// The text of every ```lang block of `page`.
pub fn blocks(page: &Path, lang: &str) -> Vec<String> {
    let text = std::fs::read_to_string(page).expect("read a page");
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            match block.take() {
                Some(b) => blocks.push(b),
                None if t == format!("```{lang}") => block = Some(String::new()),
                None => {}
            }
            continue;
        }
        if let Some(b) = block.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    blocks
}

/// The commands of every ```sh block of `page`: comments dropped, `\` continuations and
/// quotes spanning lines joined.
pub fn examples(page: &Path) -> Vec<Example> {
    let mut out = Vec::new();
    for b in blocks(page, "sh") {
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
pub fn commands_of(block: &str) -> Vec<String> {
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

pub fn push_command(out: &mut Vec<String>, cur: &mut String) {
    let text = cur.split_whitespace().collect::<Vec<_>>().join(" ");
    if !text.is_empty() {
        out.push(text);
    }
    cur.clear();
}

/// Splits a command line into words the way a shell would for these examples (quotes
/// removed; no expansions).
pub fn words(text: &str) -> Vec<String> {
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
pub fn pagecast_args(text: &str) -> Option<Vec<String>> {
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
pub fn docker_image_args(w: &[String]) -> Option<&[String]> {
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

/// The example commands in the Dockerfile's header comment (its lines indented under `#`).
pub fn dockerfile_examples() -> Vec<Example> {
    let path = super::docs::root().join("Dockerfile");
    let text = std::fs::read_to_string(&path).expect("read the Dockerfile");
    let block: String = text
        .lines()
        .take_while(|l| !l.starts_with("FROM"))
        .filter_map(|l| l.strip_prefix("#   "))
        .map(|l| format!("{l}\n"))
        .collect();
    commands_of(&block)
        .into_iter()
        .map(|text| Example {
            page: path.clone(),
            text,
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `$ command` lines of a ```text block with the output the docs show under them.
pub fn console_samples(page: &Path) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for block in blocks(page, "text") {
        for line in block.lines() {
            if let Some(cmd) = line.strip_prefix("$ ") {
                out.push((cmd.to_string(), Vec::new()));
            } else if let Some((_, shown)) = out.last_mut() {
                shown.push(line.to_string());
            }
        }
    }
    out
}

/// A doctor row's level and name (`[ok  ] chromium   …` → ("ok", "chromium")).
pub fn doctor_row(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('[')?;
    let (level, rest) = rest.split_once(']')?;
    let name = rest.split_whitespace().next()?;
    Some((level.trim().to_string(), name.to_string()))
}

/// The objects of deploy/kubernetes/*.yaml (not examples/): (kind, name, object).
pub fn manifests() -> Vec<(String, String, serde_json::Value)> {
    use serde::Deserialize;
    let mut out = Vec::new();
    let dir = super::docs::root().join("deploy/kubernetes");
    for entry in std::fs::read_dir(&dir).expect("read deploy/kubernetes") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a manifest");
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = serde_json::Value::deserialize(doc).expect("a manifest is YAML");
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            out.push((kind, name, v));
        }
    }
    out
}

/// Every `(secret, key, optional)` a manifest reads (`secretKeyRef`, KEDA's `secretTargetRef`).
pub fn secret_refs(v: &serde_json::Value, out: &mut Vec<(String, String, bool)>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(r) = map.get("secretKeyRef") {
                out.push((
                    r["name"].as_str().unwrap_or_default().to_string(),
                    r["key"].as_str().unwrap_or_default().to_string(),
                    r["optional"] == true,
                ));
            }
            for r in map
                .get("secretTargetRef")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
            {
                out.push((
                    r["name"].as_str().unwrap_or_default().to_string(),
                    r["key"].as_str().unwrap_or_default().to_string(),
                    false,
                ));
            }
            map.values().for_each(|x| secret_refs(x, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| secret_refs(x, out)),
        _ => {}
    }
}
