//! Orphans are reaped: a helper that outlives the child pagecast started (as Chromium's helpers
//! do when Chromium is killed) becomes pagecast's child (pagecast is a child subreaper) and is
//! reaped when it exits, so no zombie piles up under pagecast, whether it runs as PID 1 or
//! under an init that does not reap (both tested: as a subreaper, and as PID 1 of a PID
//! namespace made by `unshare`). The child here is a Chromium stand-in (a shell script started
//! through the process core as PAGECAST_CHROMIUM) that leaves a helper behind.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use service_support::*;

/// The state letter and parent pid of `pid`, while it exists.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    Some((f.next()?.chars().next()?, f.next()?.parse().ok()?))
}

/// The zombie children of `parent`.
fn zombies_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| state_and_parent(pid) == Some(('Z', parent)))
        .collect()
}

/// The tests of this file one at a time: the second reaps in this test process, which must not
/// meet the first's `serve` exiting.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn an_orphaned_helper_becomes_pagecasts_child_and_is_reaped() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let redis = redis_support::TestRedis::start();
    let dir = scratch("reaping");
    let orphans = dir.join("orphans");
    let chromium = dir.join("chromium");
    // The helper runs in a session of its own, so the kill of its parent's process group does
    // not reach it, and is orphaned at once when the subshell that started it exits.
    std::fs::write(
        &chromium,
        format!(
            "#!/bin/sh\n( setsid sleep 3 & echo $! >> '{}' )\nexit 1\n",
            orphans.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&chromium, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chromium_env = chromium.display().to_string();
    let svc = service_with(
        &redis,
        "reaping-svc",
        true,
        0,
        1,
        &[("PAGECAST_CHROMIUM", &chromium_env)],
    );
    let serve = svc.procs[0].child.id();
    let fixtures = fixture_server();
    start(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2 }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let helper: u32 = loop {
        if let Some(first) = std::fs::read_to_string(&orphans)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            break first;
        }
        assert!(Instant::now() < deadline, "the stand-in Chromium never ran");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Orphaned, the helper is pagecast's child now (not init's).
    let (state, parent) = state_and_parent(helper).expect("the helper lives 3 s");
    assert_eq!(
        parent, serve,
        "the orphaned helper ({state}) was adopted by {parent}, not by pagecast ({serve})"
    );
    // It exits after 3 s and is reaped at once: gone from the process table, not a zombie.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some((state, _)) = state_and_parent(helper) {
        assert!(
            Instant::now() < deadline,
            "the helper is still there ({state}) 10 s after it was started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every helper the retries left behind is reaped too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let zombies = zombies_of(serve);
        if zombies.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "zombie children of pagecast: {zombies:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&svc.dir);
}

/// The processes whose command line is exactly `args`.
fn pids_running(args: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// pagecast as PID 1 of its own PID namespace (`unshare -pf --mount-proc`), with no init in
/// front: every orphan of the namespace is its child, and none stays a zombie.
#[test]
fn as_pid_1_without_an_init_no_orphan_stays_a_zombie() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let redis = redis_support::TestRedis::start();
    let dir = scratch("reaping-pid1");
    let chromium = dir.join("chromium");
    // A helper with a command line of its own, to find it from outside the namespace.
    std::fs::write(&chromium, "#!/bin/sh\n( setsid sleep 3.217 & )\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&chromium, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.join("serve.log");
    let (mut unshare, url) = (1..=5)
        .find_map(|attempt| {
            let port = free_port();
            let bin = pagecast().get_program().to_owned();
            let mut cmd = std::process::Command::new("unshare");
            cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM"])
                .arg(bin)
                .args(["serve"])
                .env("PAGECAST_REDIS_URL", &redis.url)
                .env("PAGECAST_LISTEN", format!("127.0.0.1:{port}"))
                .env("PAGECAST_WORK_DIR", dir.join("work"))
                .env("PAGECAST_OUTPUT_DIR", dir.join("out"))
                .env("PAGECAST_CHROMIUM", &chromium)
                .env("PAGECAST_WORKER_CAPACITY", "1")
                .env("PAGECAST_ALLOW_PRIVATE_URLS", "true")
                .env("PAGECAST_ALLOWED_PRIVATE_NETWORKS", "127.0.0.0/8,::1")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            let mut p = Proc {
                child: cmd.spawn().expect("unshare (util-linux) runs"),
            };
            match wait_serving(&mut p, port, &log, Some(&redis.url)) {
                Ok(()) => Some((p, format!("http://127.0.0.1:{port}"))),
                Err(why) if attempt < 5 && why.contains("Address already in use") => None,
                Err(why) => panic!("serve as PID 1 did not start: {why}"),
            }
        })
        .expect("serve started within 5 ports");
    // pagecast, seen from here: the child of unshare.
    let unshare_pid = unshare.child.id();
    let serve = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| state_and_parent(pid).is_some_and(|(_, p)| p == unshare_pid))
        .expect("pagecast under unshare");
    let status = std::fs::read_to_string(format!("/proc/{serve}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "not PID 1 in its namespace: {nspid}"
    );

    let fixtures = fixture_server();
    start(
        &url,
        json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 2 }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let helper = loop {
        if let Some(&pid) = pids_running(&["sleep", "3.217"]).first() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the stand-in Chromium never ran");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (_, parent) = state_and_parent(helper).expect("the helper lives 3 s");
    assert_eq!(parent, serve, "the orphan's parent is PID 1, pagecast");
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some((state, _)) = state_and_parent(helper) {
        assert!(
            Instant::now() < deadline,
            "the helper is still there ({state}) 10 s after it was started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !zombies_of(serve).is_empty() {
        assert!(
            Instant::now() < deadline,
            "zombie children of pagecast: {:?}",
            zombies_of(serve)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM to PID 1, as a container runtime sends it (unshare blocks it in itself): pagecast
    // has a handler, so the signal is delivered, and it stops.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &serve.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while unshare.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "pagecast as PID 1 did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The reaper, run without pause beside the process core, never takes the exit status of a
/// child the core started (each run still reports its own exit code), and still reaps the
/// orphans those children leave.
#[test]
fn the_reaper_leaves_the_cores_children_their_exit_statuses() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(reap_beside_the_core());
}

async fn reap_beside_the_core() {
    assert!(pagecast::process::reaper::start(), "not a child subreaper");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reaped = 0;
            while !stop.load(Ordering::Relaxed) {
                reaped += pagecast::process::reaper::reap_orphans();
            }
            reaped
        })
    };
    for i in 0..40 {
        // Exits at once with its own code, leaving an orphan that exits at once too.
        let script = format!("(sleep 0.01 &) ; exit {}", 3 + i % 5);
        let err = pagecast::process::run_capture(
            "sh",
            std::path::Path::new("sh"),
            ["-c", script.as_str()],
            Duration::from_secs(10),
        )
        .await
        .expect_err("the script fails");
        match err {
            pagecast::process::ProcessError::Failed { status, .. } => {
                assert_eq!(status.code(), Some(3 + i % 5), "run {i}")
            }
            other => panic!("run {i}: {other}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !zombies_of(me).is_empty() {
        assert!(
            Instant::now() < deadline,
            "zombies left: {:?}",
            zombies_of(me)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
