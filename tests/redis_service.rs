//! `pagecast serve` on Redis as it is deployed, end to end with real Chromium and ffmpeg: over
//! TLS (mutual, an ACL user, the CA trusted as a system root), on a three-master Redis Cluster
//! (and on a six-node one whose slot moves and whose master dies mid-recording), through
//! Sentinel with the master killed mid-recording, and with a wrong password at start-up.

mod common;
#[path = "support/redis_deploy.rs"]
mod deploy;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::time::{Duration, Instant};

use common::*;
use deploy::{Pki, SENTINEL_MASTER, TestCluster, TestSentinel, TlsRedis};
use serde_json::{Value, json};
use service_support::*;

/// Waits until `serve` has connected to Redis (it answers at once, with 503 until then):
/// Describe of an unknown task is 404 then.
fn connected(svc: &Service) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = call(
            &svc.url,
            "Describe",
            json!({ "TaskID": uuid::Uuid::new_v4().to_string() }),
        );
        if status == 404 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not reach Redis: {status} {body}; see {}",
            svc.dir.join("serve.log").display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start → recording → Stop → finished, and the video is there.
fn lifecycle(svc: &Service, fixtures: &str) -> Value {
    connected(svc);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/animated.html") }),
    );
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Stop", &id);
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let file = fetch_video(&d, &svc.dir);
    assert!(probe(&file, &[]).duration > 1.0);
    d
}

#[test]
fn a_whole_task_over_mutual_tls_as_an_acl_user() {
    let pki = Pki::generate();
    let mut redis = TlsRedis::start(&pki, true);
    redis.only_user("recorder", "tls-s3cret");
    let fixtures = fixture_server();
    let cert = pki.path("client.pem").display().to_string();
    let key = pki.path("client.key").display().to_string();
    // The test CA as the system's roots: a public certificate is verified the same way.
    let roots = pki.path("ca.pem").display().to_string();
    let svc = service_at(
        &redis.url("recorder:tls-s3cret@"),
        "redis-tls",
        true,
        0,
        1,
        &[
            ("PAGECAST_REDIS_CLIENT_CERT", &cert),
            ("PAGECAST_REDIS_CLIENT_KEY", &key),
            ("SSL_CERT_FILE", &roots),
        ],
    );
    lifecycle(&svc, &fixtures);
    // The password is in no log line.
    let log = std::fs::read_to_string(svc.dir.join("serve.log")).unwrap();
    assert!(!log.contains("tls-s3cret"));
    let _ = std::fs::remove_dir_all(&svc.dir);
}

#[test]
fn a_whole_task_on_a_three_master_cluster() {
    let cluster = TestCluster::start();
    let fixtures = fixture_server();
    let svc = service_at(
        &cluster.url(),
        "redis-cluster",
        true,
        0,
        1,
        &[("PAGECAST_REDIS_MODE", "cluster")],
    );
    let d = lifecycle(&svc, &fixtures);
    // Every key of the deployment is on the node serving its prefix's hash tag.
    let tag = format!("{{{}}}", svc.prefix.trim_end_matches(':'));
    let owner = cluster.node_of(&format!("{tag}:x"));
    let keys = owner.cli(&["KEYS", "*"]);
    assert!(
        keys.contains(&format!("{tag}:task:{}", d["TaskID"].as_str().unwrap())),
        "{keys}"
    );
    for n in &cluster.nodes {
        if n.port != owner.port {
            assert_eq!(n.cli(&["DBSIZE"]).trim(), "0");
        }
    }
    let _ = std::fs::remove_dir_all(&svc.dir);
}

#[test]
fn the_master_killed_mid_recording_and_the_recording_finishes() {
    let mut sentinel = TestSentinel::start();
    let fixtures = fixture_server();
    let svc = service_at(
        &sentinel.url(),
        "redis-sentinel",
        true,
        0,
        1,
        &[
            ("PAGECAST_REDIS_MODE", "sentinel"),
            ("PAGECAST_REDIS_SENTINEL_MASTER", SENTINEL_MASTER),
        ],
    );
    connected(&svc);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/animated.html") }),
    );
    let recording_seen = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let old = sentinel.master.port;
    sentinel.master.kill();
    // The sentinel promotes the replica within a few seconds.
    let t = Instant::now();
    while sentinel.master_port() == old {
        assert!(t.elapsed() < Duration::from_secs(30), "no failover");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The worker finds the new master and the task is still recording there.
    let d = wait_for(
        &svc.url,
        &id,
        "recording after the failover",
        Duration::from_secs(30),
        status_is("recording"),
    );
    assert_eq!(d["Restarts"], 0, "{d}");
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Stop", &id);
    let wall = recording_seen.elapsed().as_secs_f64();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    // One recording from start to Stop, the failover included.
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    assert!(
        recorded > wall - 2.0,
        "recorded {recorded} s of {wall} s: {d}"
    );
    let file = fetch_video(&d, &svc.dir);
    assert!(probe(&file, &[]).duration > wall - 2.0);
    let _ = std::fs::remove_dir_all(&svc.dir);
}

/// `GET {url}/readyz`: the status and the body.
fn readyz(url: &str) -> (u16, Value) {
    let (rt, client) = http();
    rt.block_on(async {
        let r = client
            .get(format!("{url}/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("GET /readyz");
        (r.status().as_u16(), r.json().await.expect("JSON body"))
    })
}

/// Starts `serve --no-worker` against `redis_url` (which Redis refuses) and waits until its
/// /readyz names `kind`; checks the readiness answer and the start-up log line name `kind` and
/// `fix` (the setting or version to change), and never show `secret`.
fn starting_serve_names(
    dir: &std::path::Path,
    redis_url: &str,
    kind: &str,
    fix: &str,
    secret: &str,
) {
    let log = dir.join(format!("serve-{kind}.log"));
    let (_serve, url) = (1..=5)
        .find_map(|attempt| {
            let port = free_port();
            let env = [
                ("PAGECAST_REDIS_URL", redis_url.to_string()),
                ("PAGECAST_LISTEN", format!("127.0.0.1:{port}")),
                ("PAGECAST_WORK_DIR", dir.join("work").display().to_string()),
                ("PAGECAST_OUTPUT_DIR", dir.join("out").display().to_string()),
            ];
            let mut serve = spawn(&["serve", "--no-worker"], &env, &log);
            match wait_serving(&mut serve, port, &log, None) {
                Ok(()) => Some((serve, format!("http://127.0.0.1:{port}"))),
                Err(why) if attempt < 5 && why.contains("Address already in use") => None,
                Err(why) => panic!("serve did not start: {why}"),
            }
        })
        .expect("serve started within 5 ports");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = readyz(&url);
        assert_eq!(status, 503, "{body}");
        if body["Checks"][0]["Detail"]
            .as_str()
            .is_some_and(|d| d.contains(kind))
        {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never named {kind}: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(body["Checks"][0]["Name"], "redis", "{body}");
    let detail = body["Checks"][0]["Detail"].as_str().unwrap();
    assert!(detail.contains(fix), "{detail}");
    assert!(detail.ends_with("pagecast keeps trying"), "{detail}");
    assert!(
        body["ErrorMessage"].as_str().unwrap().contains(kind),
        "{body}"
    );
    assert!(!body.to_string().contains(secret), "{body}");
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = logged
        .lines()
        .find(|l| l.contains("Redis refuses pagecast's configuration"))
        .unwrap_or_else(|| panic!("no start-up line names the problem:\n{logged}"));
    assert!(line.contains(kind), "{line}");
    assert!(line.contains(fix), "{line}");
    assert!(!logged.contains(secret), "{logged}");
}

/// Redis refusing pagecast at start-up: serve keeps answering, and until the setup is fixed
/// its /readyz and its log name the problem by kind and what to change, not "not connected
/// yet". A wrong password in PAGECAST_REDIS_URL (never shown), and a real Redis shown as 5.x by
/// a forwarder (too old).
#[test]
fn readyz_and_the_log_name_a_wrong_redis_password_or_version_at_start_up() {
    let dir = scratch("redis-refused");
    let server = deploy::Server::start(
        &dir,
        "redis-auth",
        |port| {
            vec![
                "--port".into(),
                port.to_string(),
                "--requirepass".into(),
                "the-right-secret".into(),
            ]
        },
        vec![
            "--pass".into(),
            "the-right-secret".into(),
            "--no-auth-warning".into(),
        ],
    );
    starting_serve_names(
        &dir,
        &format!("redis://:a-wrong-secret@127.0.0.1:{}/", server.port),
        "RedisAuth",
        "PAGECAST_REDIS_URL",
        "a-wrong-secret",
    );
    let old = deploy::Forwarder::start(server.port, Some(5));
    starting_serve_names(
        &dir,
        &format!("redis://:the-right-secret@127.0.0.1:{}/", old.port),
        "RedisVersion",
        "6.2",
        "the-right-secret",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A recording on a six-node cluster (three masters, a replica each) while the slot of the
/// deployment's hash tag moves to another master (half its keys, a Describe while the slot is
/// split, the rest: ASK and TRYAGAIN, then MOVED), tasks started after the move; then the master
/// now serving it is killed and its replica takes over. The recording goes on through both, and
/// finishes with its whole video.
#[test]
fn a_cluster_slot_migrated_and_its_master_killed_mid_recording() {
    let mut cluster = TestCluster::start_replicated();
    let fixtures = fixture_server();
    let svc = service_at(
        &cluster.url(),
        "redis-cluster-failover",
        true,
        0,
        1,
        &[("PAGECAST_REDIS_MODE", "cluster")],
    );
    connected(&svc);
    let tag = format!("{{{}}}", svc.prefix.trim_end_matches(':'));
    let slot = cluster.slot_of(&tag);
    let id = start_recording(
        &svc.url,
        json!({ "RecordURL": format!("{fixtures}/animated.html") }),
    );
    let recording_seen = Instant::now();

    // The slot moves to another master while the recording runs and the API is used: each
    // key moved is followed by a Start (queued behind the recording: one slot) and Describes.
    let from = cluster
        .master_of_slot(slot)
        .expect("a master serves the slot");
    let to = (0..cluster.nodes.len())
        .find(|&i| {
            i != from
                && cluster.nodes[i]
                    .cli(&["ROLE"])
                    .lines()
                    .next()
                    .is_some_and(|r| r.trim() == "master")
        })
        .unwrap();
    let moved = cluster.migrate_slot(slot, from, to, || {
        // Half the keys moved: reads of one key follow ASK; a script over keys on both nodes
        // gets TRYAGAIN until the move ends, which the API answers as a passing 503.
        let (status, d) = describe_status(&svc.url, &id);
        assert!(status == 200 || status == 503, "{d}");
    });
    assert!(moved >= 5, "the deployment's keys moved: {moved}");
    assert_eq!(cluster.master_of_slot(slot), Some(to));
    assert_eq!(
        cluster.nodes[from].cli(&["DBSIZE"]).trim(),
        "0",
        "nothing left behind"
    );
    // After the move (MOVED to the new owner) the API works at once.
    let d = describe(&svc.url, &id);
    assert_eq!(d["Status"], "recording", "{d}");
    let queued: Vec<String> = (0..2)
        .map(|_| {
            start(
                &svc.url,
                json!({ "RecordURL": format!("{fixtures}/static.html"), "MaxDurationLimit": 1 }),
            )
        })
        .collect();

    // Its new master dies; the replica is promoted.
    std::thread::sleep(Duration::from_secs(2));
    cluster.nodes[to].kill();
    let t = Instant::now();
    let promoted = loop {
        if let Some(m) = cluster.master_of_slot(slot).filter(|&m| m != to) {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no replica took over"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    cluster.wait_ok(Duration::from_secs(30));
    let d = wait_for(
        &svc.url,
        &id,
        "recording after the failover",
        Duration::from_secs(30),
        status_is("recording"),
    );
    assert_eq!(d["Restarts"], 0, "{d}");
    std::thread::sleep(Duration::from_secs(2));
    ok(&svc.url, "Stop", &id);
    let wall = recording_seen.elapsed().as_secs_f64();
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let recorded = d["RecordedDuration"].as_f64().unwrap();
    assert!(
        recorded > wall - 2.0,
        "recorded {recorded} s of {wall} s: {d}"
    );
    let file = fetch_video(&d, &svc.dir);
    assert!(probe(&file, &[]).duration > wall - 2.0);
    // The tasks queued after the move ran too, from the promoted replica's data.
    for q in &queued {
        let d = wait_finished(&svc.url, q, Duration::from_secs(90));
        assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    }
    let keys = cluster.nodes[promoted].cli(&["KEYS", "*"]);
    assert!(keys.contains(&format!("{tag}:task:{id}")), "{keys}");
    let _ = std::fs::remove_dir_all(&svc.dir);
}
