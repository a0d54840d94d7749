//! Every stable error code is produced by pagecast and checked by a test: this file reads the
//! code table of `src/error.rs` and fails when a code is asserted nowhere in `tests/`; and it
//! holds the tests of the codes no other file reaches through the service (a corrupt task
//! record, a missing browser or sound server, a page that hangs past its restart budget, a
//! transcode that cannot write its result).

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use redis_support::TestRedis;
use serde_json::{Value, json};
use service_support::*;

/// The code names of `src/error.rs`'s `error_codes!` table, in order.
fn table_codes() -> Vec<String> {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/error.rs"))
        .expect("read src/error.rs");
    let table = src
        .split_once("error_codes! {")
        .expect("the error_codes! table")
        .1;
    let table = &table[..table.find("\n}").expect("the end of the table")];
    table
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("///"))
        .filter_map(|l| l.split_once("=>").map(|(name, _)| name.trim().to_string()))
        .collect()
}

/// The Rust files below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// Helpers of tests/support that assert the code they are given (e.g. `wr.refused(action, data,
/// code, compat_code)` asserts the answer's code).
const ASSERTING_HELPERS: &[&str] = &[".refused("];

/// Whether `code` occurs as a whole word inside an assertion of `text`: in a statement (from the
/// previous `;` to the next) that calls an `assert` macro or an [`ASSERTING_HELPERS`] helper.
fn asserted_in(text: &str, code: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        if before.is_some_and(is_ident) || after.is_some_and(is_ident) {
            return false;
        }
        let start = text[..at].rfind(';').map_or(0, |i| i + 1);
        let end = text[at..].find(';').map_or(text.len(), |i| at + i);
        let statement = &text[start..end];
        statement.contains("assert") || ASSERTING_HELPERS.iter().any(|h| statement.contains(h))
    })
}

#[test]
fn every_error_code_is_asserted_in_a_test() {
    let codes = table_codes();
    assert!(
        codes.len() >= 30 && codes.iter().any(|c| c == "InvalidParam"),
        "the table was not read: {codes:?}"
    );
    let this = Path::new(file!()).file_name().unwrap().to_owned();
    let texts: Vec<(PathBuf, String)> =
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests"))
            .into_iter()
            .filter(|p| p.file_name() != Some(this.as_os_str()))
            .map(|p| {
                let t = std::fs::read_to_string(&p).unwrap();
                (p, t)
            })
            .collect();
    // This file's own tests count too, but not the code table check above.
    let own =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/error_codes.rs"))
            .unwrap();
    let own = own
        .split_once("// Tests of the codes")
        .map_or("", |(_, t)| t);
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !asserted_in(own, c) && !texts.iter().any(|(_, t)| asserted_in(t, c)))
        .collect();
    assert!(
        missing.is_empty(),
        "error codes no test asserts (add a test that makes pagecast answer each): {missing:?}"
    );
}

#[test]
fn the_assertion_finder_needs_an_assertion() {
    assert!(asserted_in(
        r#"assert_eq!(d["Code"], "PageCrashed", "{d}");"#,
        "PageCrashed"
    ));
    assert!(asserted_in(
        "assert!(err.contains(\"error [AudioFailed]\"));",
        "AudioFailed"
    ));
    assert!(!asserted_in(
        r#"let r = Result { error_code: Some("PageCrashed".into()) };"#,
        "PageCrashed"
    ));
    assert!(asserted_in(
        r#"wr.refused("Pause", json!({}), "InvalidState", "InvalidStatus");"#,
        "InvalidStatus"
    ));
    assert!(!asserted_in(
        r#"assert_eq!(code, "PageCrashedTwice");"#,
        "PageCrashed"
    ));
}

// Tests of the codes the service reaches only here.

/// The Describe of a task once finished, with an error message.
fn failed(svc: &Service, id: &str, limit: Duration) -> Value {
    let d = wait_finished(&svc.url, id, limit);
    assert!(
        !d["Result"]["ErrorMessage"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{d}"
    );
    d
}

/// A task record Redis holds in a shape pagecast cannot read is a bug, not the caller's fault:
/// 500 InternalError with a generic message (what was wrong stays in the log).
#[test]
fn a_corrupt_task_record_is_an_internal_error() {
    let redis = TestRedis::start();
    let svc = service(&redis, "codes-corrupt", false, 0, 1);
    let id = start(
        &svc.url,
        json!({ "RecordURL": "https://example.com/", "MaxDurationLimit": 2 }),
    );
    let mut c = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*{id}*", svc.prefix))
        .query(&mut c)
        .unwrap();
    let hash = keys
        .iter()
        .find(|k| {
            redis::cmd("TYPE")
                .arg(k.as_str())
                .query::<String>(&mut c)
                .is_ok_and(|t| t == "hash")
        })
        .unwrap_or_else(|| panic!("no task hash among {keys:?}"));
    let _: () = redis::cmd("HSET")
        .arg(hash)
        .arg("status")
        .arg("no-such-status")
        .query(&mut c)
        .unwrap();
    let (status, body) = describe_status(&svc.url, &id);
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["ErrorCode"], "InternalError", "{body}");
    assert!(
        !body.to_string().contains("no-such-status"),
        "the internals stay in the log: {body}"
    );
}

/// A worker whose browser cannot start (it is installed, but every launch exits at once)
/// fails its task with BrowserFailed.
#[test]
fn a_browser_that_cannot_start_fails_the_task_with_browser_failed() {
    use std::os::unix::fs::PermissionsExt;
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let dir = scratch("codes-browser-bin");
    let broken = dir.join("chromium");
    std::fs::write(
        &broken,
        "#!/bin/sh\n[ \"$1\" = --version ] && exec /usr/bin/chromium --version\necho broken >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let broken = broken.display().to_string();
    let svc = service_with(
        &redis,
        "codes-browser",
        true,
        0,
        1,
        &[("PAGECAST_CHROMIUM", broken.as_str())],
    );
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 3 }),
    );
    let d = failed(&svc, &id, Duration::from_secs(60));
    assert_eq!(d["Result"]["ErrorCode"], "BrowserFailed", "{d}");
}

/// A worker without a sound server fails its task with AudioFailed.
#[test]
fn a_missing_sound_server_fails_the_task_with_audio_failed() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service_with(
        &redis,
        "codes-audio",
        true,
        0,
        1,
        &[("PAGECAST_PULSEAUDIO", "/nonexistent/pulseaudio")],
    );
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 3 }),
    );
    let d = failed(&svc, &id, Duration::from_secs(60));
    assert_eq!(d["Result"]["ErrorCode"], "AudioFailed", "{d}");
    assert!(
        d["Result"]["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("pulseaudio"),
        "{d}"
    );
}

/// A page that hangs again after every reopen spends the restart budget (3 hangs): the task
/// ends with PageCrashed, and what was recorded is still delivered.
#[test]
fn a_page_that_keeps_hanging_runs_out_of_restarts_with_page_crashed() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service_with(
        &redis,
        "codes-hangs",
        true,
        0,
        1,
        &[("PAGECAST_HANG_TIMEOUT", "1")],
    );
    // The page's main thread spins 1 s after every load; the watchdog notices 1 s later.
    let id = start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/hang_always.html"), "MaxDurationLimit": 60 }),
    );
    let d = failed(&svc, &id, Duration::from_secs(60));
    assert_eq!(d["Result"]["ErrorCode"], "PageCrashed", "{d}");
    assert!(
        d["Result"]["ErrorMessage"]
            .as_str()
            .unwrap()
            .contains("stopped responding 4 times"),
        "{d}"
    );
    assert!(
        d["RecordedDuration"].as_f64().unwrap_or(0.0) < 40.0,
        "ended by the budget, not by MaxDurationLimit: {d}"
    );
}

/// A transcode that cannot write its result (the output directory was replaced by a file while
/// the task recorded) fails the task with TranscodeFailed.
#[test]
fn a_transcode_that_cannot_write_fails_with_transcode_failed() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "codes-transcode", true, 0, 1);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 30 }),
    );
    let _ = std::fs::remove_dir_all(&svc.out);
    std::fs::write(&svc.out, b"not a directory").unwrap();
    ok(&svc.url, "Stop", &id);
    let d = failed(&svc, &id, Duration::from_secs(60));
    assert_eq!(d["Result"]["ErrorCode"], "TranscodeFailed", "{d}");
}
