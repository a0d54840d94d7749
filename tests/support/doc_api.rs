//! Sending the docs' API examples (`pc '…'` and `curl …` lines of a shell block) to a test
//! service, through bash and curl as a reader would, and judging the answers.
//!
//! What is substituted, and nothing else: `localhost:8080` by the test service's address; the
//! value of `RecordURL` (example.org-style pages, which the test machine may not reach) by a
//! page of the local fixture server; `CallbackURL`s by a local receiver that answers 204; a
//! live `Url`'s host and port by a loopback port (nothing listens there: a live target that
//! cannot be reached never holds up the recording, so the task must still finish cleanly); a
//! `TaskID` placeholder (`5f0c…`, `…`) by the TaskID the block's last Start returned; and a
//! `TOKEN=$(kubectl …)` line by the test service's token. Between a Start and the next line the
//! runner waits until the task records (a reader would watch it start), and every task a block
//! leaves running is stopped afterwards and must finish without an error code.

#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::{run, stderr};
use super::service_support::http;

/// A test service the examples are sent to, and the stand-ins for the docs' hosts.
pub struct Target {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its API token (the docs' own example token).
    pub token: String,
    /// The page recorded instead of the docs' example.org pages.
    pub page: String,
    /// The callback receiver's accepting URL.
    pub callback: String,
    /// A loopback TCP port nothing listens on (for rtmp:// targets).
    pub closed_tcp: u16,
    /// A loopback UDP port nothing listens on (for srt:// targets).
    pub closed_udp: u16,
}

/// `text` with the value of every `"key":"…"` replaced by `f(old value)`.
pub fn set_values(text: &str, key: &str, f: impl Fn(&str) -> String) -> String {
    let pat = format!("\"{key}\":\"");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&pat) {
        let start = at + pat.len();
        let Some(len) = rest[start..].find('"') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&f(&rest[start..start + len]));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

/// `url` with its scheme kept and its host and port replaced by `127.0.0.1:port`.
fn to_loopback(url: &str, port: u16) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    format!("{scheme}://127.0.0.1:{port}{}", &rest[end..])
}

impl Target {
    /// An example command as it is run here (see the module's comment).
    pub fn substitute(&self, cmd: &str, task: Option<&str>) -> String {
        let port = self.url.rsplit(':').next().unwrap_or_default();
        let mut c = cmd.replace("localhost:8080", &format!("127.0.0.1:{port}"));
        c = set_values(&c, "RecordURL", |_| self.page.clone());
        c = set_values(&c, "CallbackURL", |_| self.callback.clone());
        c = set_values(&c, "Url", |u| {
            let port = if u.starts_with("srt:") {
                self.closed_udp
            } else {
                self.closed_tcp
            };
            to_loopback(u, port)
        });
        if let Some(id) = task {
            c = set_values(&c, "TaskID", |_| id.to_string());
        }
        c
    }

    /// Runs `cmd` (after `pc_def`, when the block or an earlier page defined `pc`) in bash
    /// with `TOKEN` set; its standard output.
    pub fn sh(&self, pc_def: &str, cmd: &str) -> String {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(format!("set -u\n{pc_def}\n{cmd}"))
            .env("TOKEN", &self.token);
        let o = run(c, Duration::from_secs(30));
        assert!(o.status.success(), "`{cmd}` failed: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Describe of `id`, sent with the token.
    pub fn describe(&self, id: &str) -> Value {
        let (rt, client) = http();
        rt.block_on(async {
            client
                .post(format!("{}/", self.url))
                .bearer_auth(&self.token)
                .json(&json!({"Action": "Describe", "Data": {"TaskID": id}}))
                .timeout(Duration::from_secs(15))
                .send()
                .await
                .expect("Describe")
                .json()
                .await
                .expect("a JSON answer")
        })
    }

    /// Waits until `/readyz` says ready (the service reached Redis and its worker is up).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (rt, client) = http();
            let status = rt.block_on(async {
                let r = client
                    .get(format!("{}/readyz", self.url))
                    .send()
                    .await
                    .ok()?;
                Some(r.status().as_u16())
            });
            if status == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "{} never got ready", self.url);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until task `id` records, as a reader would before pausing or stopping it.
    pub fn wait_recording(&self, id: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let d = self.describe(id);
            match d["Status"].as_str().unwrap_or_default() {
                "recording" | "paused" => break,
                "normal" => {}
                _ => panic!("{what}: the task did not record: {d}"),
            }
            assert!(Instant::now() < deadline, "{what}: not recording: {d}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // A segment or two on record, as after a reader's pause between commands.
        std::thread::sleep(Duration::from_millis(2500));
    }

    /// Waits until task `id` is finished; its Describe.
    pub fn wait_finished(&self, id: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let d = self.describe(id);
            if d["Status"] == "finished" {
                return d;
            }
            assert!(Instant::now() < deadline, "{what}: not finished: {d}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Stops `id` (not an example: the runner's own cleanup of a task a block left running).
    pub fn stop(&self, id: &str) {
        let (rt, client) = http();
        rt.block_on(async {
            client
                .post(format!("{}/", self.url))
                .bearer_auth(&self.token)
                .json(&json!({"Action": "Stop", "Data": {"TaskID": id}}))
                .send()
                .await
                .expect("Stop");
        });
    }
}

/// A finished task's problems: an error code, a result file its FileURL does not serve.
pub fn finished_problems(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(code) = d["Result"]["ErrorCode"].as_str() {
        out.push(format!("ended with {code}: {d}"));
    }
    for v in d["Result"]["Videos"].as_array().into_iter().flatten() {
        let url = v["FileURL"].as_str().unwrap_or_default();
        let o = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", url])
            .output()
            .expect("curl");
        if !o.status.success() {
            out.push(format!("its FileURL {url} does not download"));
        }
    }
    out
}

/// The example's request body (the `pc` argument or curl's `-d`), if any.
pub fn body_of(words: &[String]) -> Option<Value> {
    let body = match words.first().map(String::as_str) {
        Some("pc") => words.get(1)?,
        Some("curl") => &words.windows(2).find(|p| p[0] == "-d")?[1],
        _ => return None,
    };
    serde_json::from_str(body).ok()
}

/// The values of every `"key":"…"` in `text`.
pub fn values_of(text: &str, key: &str) -> Vec<String> {
    let pat = format!("\"{key}\":\"");
    text.match_indices(&pat)
        .filter_map(|(at, _)| {
            let rest = &text[at + pat.len()..];
            rest.find('"').map(|len| rest[..len].to_string())
        })
        .collect()
}

/// Every `"Filename":"…"` that a block's comment lines show in an answer.
pub fn shown_filenames(block: &str) -> Vec<String> {
    block
        .lines()
        .filter_map(|l| l.find('#').map(|at| &l[at..]))
        .flat_map(|comment| values_of(comment, "Filename"))
        .collect()
}

/// Runs the API examples among `commands` (one shell block of `page`, whose raw text is
/// `block`) against `t`, in order; what went wrong. `pc_def` is the `pc` function defined
/// earlier in the docs (as written), for a block that uses it without defining it.
pub fn run_block(
    t: &Target,
    page: &str,
    block: &str,
    commands: &[String],
    words: impl Fn(&str) -> Vec<String>,
    pc_def: &mut String,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut task: Option<String> = None;
    let mut started = Vec::new();
    let mut stopped = Vec::new();
    for cmd in commands {
        let w = words(cmd);
        let first = w.first().map(String::as_str).unwrap_or_default();
        if first == "pc()" {
            *pc_def = cmd.clone();
            continue;
        }
        if let Some(token) = first.strip_prefix("TOKEN=")
            && !token.starts_with("$(")
            && token != t.token
        {
            problems.push(format!(
                "{page}: TOKEN={token} is not the token serve was given"
            ));
        }
        // `PAGECAST_API_TOKENS=… pagecast serve`: the token the examples then send.
        if let Some(tokens) = w
            .iter()
            .find_map(|x| x.strip_prefix("PAGECAST_API_TOKENS="))
            && tokens != t.token
        {
            problems.push(format!(
                "{page}: serve is given {tokens}, the examples send {}",
                t.token
            ));
        }
        if !(first == "pc" || first == "curl") {
            continue; // redis-server, serve, TOKEN=$(kubectl …): the test's own stand-ins
        }
        let body = body_of(&w);
        let action = body
            .as_ref()
            .and_then(|b| b["Action"].as_str().map(String::from));
        let sent = t.substitute(cmd, task.as_deref());
        let pc = t.substitute(pc_def, None);
        let answer = t.sh(&pc, &sent);
        let parsed: Value = match serde_json::from_str(answer.trim()) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{page}: `{cmd}` answered no JSON ({e}): {answer}"));
                continue;
            }
        };
        if parsed.get("ErrorCode").is_some() {
            problems.push(format!("{page}: `{cmd}` answered an error: {answer}"));
            continue;
        }
        match action.as_deref() {
            Some("Start") => {
                let Some(id) = parsed["TaskID"].as_str() else {
                    problems.push(format!("{page}: `{cmd}` returned no TaskID: {answer}"));
                    continue;
                };
                t.wait_recording(id, &format!("{page}: `{cmd}`"));
                task = Some(id.to_string());
                started.push(id.to_string());
            }
            Some("Stop" | "Cancel") => stopped.extend(task.clone()),
            Some("Describe") if task.as_ref().is_some_and(|id| stopped.contains(id)) => {
                // "About a second after Stop": the same request until the task is finished.
                let id = task.clone().unwrap_or_default();
                let d = t.wait_finished(&id, &format!("{page}: `{cmd}`"));
                let again: Value = serde_json::from_str(t.sh(&pc, &sent).trim())
                    .unwrap_or_else(|e| panic!("{page}: `{cmd}` answered no JSON ({e})"));
                assert_eq!(again["Status"], "finished", "{page}: `{cmd}`: {again}");
                problems.extend(
                    finished_problems(&d)
                        .into_iter()
                        .map(|p| format!("{page}: `{cmd}`: {p}")),
                );
                let names: Vec<&str> = d["Result"]["Videos"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["Filename"].as_str())
                    .collect();
                for shown in shown_filenames(block) {
                    if !names.contains(&shown.as_str()) {
                        problems.push(format!(
                            "{page}: the example shows Filename {shown}, the result has {names:?}"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    // The tasks the block left running: stopped here, they must finish without an error.
    for id in started.iter().filter(|id| !stopped.contains(id)) {
        t.stop(id);
    }
    for id in &started {
        let d = t.wait_finished(id, page);
        problems.extend(
            finished_problems(&d)
                .into_iter()
                .map(|p| format!("{page}: task {id} of a block: {p}")),
        );
    }
    problems
}
