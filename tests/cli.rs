//! The `pagecast` command's settings as a user sets them: environment variables that must not
//! break unrelated commands, relative paths, and usage errors that name what the user set.

mod common;

use std::time::Duration;

use common::*;

const KEY: &str = "000102030405060708090a0b0c0d0e0f";

/// An exported HLS key is for HLS outputs: an MP4 recording still works, unencrypted, and an
/// HLS recording with the key URI from the environment too is encrypted.
#[test]
fn an_exported_hls_key_applies_to_hls_outputs_only() {
    let base = fixture_server();
    let dir = scratch("cli-hls-key-env");

    let mp4 = dir.join("plain.mp4");
    let mut cmd = pagecast();
    cmd.args([
        "record",
        &format!("{base}/animated.html"),
        "--duration",
        "2",
        "-q",
        "-o",
    ])
    .arg(&mp4)
    .env("PAGECAST_HLS_KEY", KEY);
    let out = run(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "MP4 with PAGECAST_HLS_KEY exported: {}",
        stderr(&out)
    );
    let p = probe(&mp4, &[]);
    assert_close(p.duration, 2.0, 0.2, "MP4 duration");

    let m3u8 = dir.join("enc/index.m3u8");
    let mut cmd = pagecast();
    cmd.args([
        "record",
        &format!("{base}/animated.html"),
        "--duration",
        "2",
        "-q",
        "-o",
    ])
    .arg(&m3u8)
    .env("PAGECAST_HLS_KEY", KEY)
    .env("PAGECAST_HLS_KEY_URI", "enc.key");
    let out = run(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "HLS with the key in the environment: {}",
        stderr(&out)
    );
    let playlist = std::fs::read_to_string(&m3u8).unwrap();
    assert!(
        playlist.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"enc.key\""),
        "{playlist}"
    );

    // Typed on the command line for an MP4 output, the key is a mistake worth stopping for.
    let mut cmd = pagecast();
    cmd.args([
        "record",
        "demo",
        "--hls-key",
        KEY,
        "--hls-key-uri",
        "k",
        "-o",
    ])
    .arg(dir.join("typed.mp4"));
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("only available for HLS"),
        "{}",
        stderr(&out)
    );
}

/// A bad value from an environment variable is reported under the variable's name, with the
/// usage exit status.
#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let mut cmd = pagecast();
    cmd.args(["record", "demo", "-o", "/nonexistent/x.mp4"])
        .env("PAGECAST_X264_CRF", "99");
    let out = run(cmd, Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("PAGECAST_X264_CRF"), "{err}");
    assert!(err.contains("'99'"), "{err}");

    // Typed as a flag, the flag is named.
    let mut cmd = pagecast();
    cmd.args(["record", "demo", "--crf", "99", "-o", "/nonexistent/x.mp4"]);
    let out = run(cmd, Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--crf"), "{err}");
}

/// `PAGECAST_FONTCONFIG` given relative to the current directory still adds the bundled font
/// (fontconfig itself would read a relative FONTCONFIG_FILE against /etc/fonts).
#[test]
fn a_relative_fontconfig_setting_keeps_the_bundled_font() {
    let dir = scratch("cli-fontconfig");
    let mut cmd = pagecast();
    cmd.arg("doctor")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PAGECAST_FONTCONFIG", "fontconfig/fonts.conf")
        .env("PAGECAST_WORK_DIR", dir.join("work"))
        // No Redis is needed for the fonts line; an unreachable one fails fast.
        .env("PAGECAST_REDIS_URL", "redis://127.0.0.1:1");
    let out = run(cmd, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.lines().any(|l| l.starts_with("[ok  ]")
            && l.contains("fonts")
            && l.contains("Pagecast Sans CJK")),
        "the bundled font is not found through a relative PAGECAST_FONTCONFIG:\n{text}{}",
        stderr(&out)
    );
}

/// doctor judges the work disk by the worker's own minimum (`PAGECAST_MIN_FREE_MB`), not by
/// fixed figures: a disk a worker would refuse to record on fails the check.
#[test]
fn doctor_judges_the_disk_by_the_workers_minimum() {
    let dir = scratch("cli-doctor-disk");
    let doctor = |min_free_mb: &str| {
        let mut cmd = pagecast();
        cmd.arg("doctor")
            .env("PAGECAST_WORK_DIR", dir.join("work"))
            .env("PAGECAST_MIN_FREE_MB", min_free_mb)
            .env("PAGECAST_REDIS_URL", "redis://127.0.0.1:1");
        let out = run(cmd, Duration::from_secs(60));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // More than any test machine has free: fail, naming the setting.
    let text = doctor("100000000");
    let line = text
        .lines()
        .find(|l| l.contains(" disk "))
        .unwrap_or_else(|| panic!("no disk line:\n{text}"));
    assert!(line.starts_with("[FAIL]"), "{text}");
    assert!(line.contains("PAGECAST_MIN_FREE_MB"), "{text}");
    // A minimum of 1 MiB: a disk with a few GiB free passes (fixed thresholds warned below 5 GiB).
    let text = doctor("1");
    let line = text.lines().find(|l| l.contains(" disk ")).unwrap();
    assert!(!line.starts_with("[FAIL]"), "{text}");
}

/// `pagecast healthcheck` takes the addresses to probe from its flags as well as from the
/// environment.
#[test]
fn healthcheck_probes_the_address_given_as_a_flag() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    // serve answers /healthz at once, even before Redis (here never) is reachable.
    let mut serve = pagecast();
    serve
        .arg("serve")
        .env("PAGECAST_LISTEN", &listen)
        .env("PAGECAST_REDIS_URL", "redis://127.0.0.1:1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut serve = serve.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&listen).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut ok = pagecast();
    ok.args(["healthcheck", "--listen", &listen])
        .env_remove("PAGECAST_LISTEN")
        .env_remove("PAGECAST_METRICS_LISTEN");
    let ok = run(ok, Duration::from_secs(30));
    // Nothing listens on port 1: the flag, not the default address, is what was probed.
    let mut bad = pagecast();
    bad.args(["healthcheck", "--listen", "127.0.0.1:1", "--timeout", "2"])
        .env("PAGECAST_LISTEN", &listen);
    let bad = run(bad, Duration::from_secs(30));
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        !bad.status.success(),
        "the flag must win over the environment"
    );
}

/// A healthcheck whose address is malformed can never pass: it is a configuration error (exit
/// 2, naming the setting), not "unhealthy" (exit 1), like every other command's.
#[test]
fn healthcheck_names_a_malformed_address_and_exits_2() {
    /// Flags, environment, the setting the message must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (&["--listen", "notanaddr"], &[], "PAGECAST_LISTEN"),
        (&[], &[("PAGECAST_LISTEN", "8080")], "PAGECAST_LISTEN"),
        (
            &[],
            &[("PAGECAST_METRICS_LISTEN", "0.0.0.0")],
            "PAGECAST_METRICS_LISTEN",
        ),
        (&["--url", "localhost:8080/healthz"], &[], "--url"),
    ];
    for (args, env, named) in cases {
        let mut c = pagecast();
        c.arg("healthcheck")
            .args(args)
            .env_remove("PAGECAST_LISTEN")
            .env_remove("PAGECAST_METRICS_LISTEN")
            .envs(env.iter().copied());
        let o = run(c, Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(named),
            "{args:?} {env:?}: {}",
            stderr(&o)
        );
    }
}
