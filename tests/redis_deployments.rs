//! The task store on Redis as it is deployed: TLS with a private CA and client certificates, ACL
//! users, Redis Cluster, Sentinel with a failover and with a password of its own, a managed
//! primary endpoint that fails over; and the errors a wrong setup gives, each named (never
//! InternalError), a Redis too old included. Every server is started by the test.

#[path = "support/redis_deploy.rs"]
mod deploy;
#[path = "support/redis.rs"]
mod redis_support;

use std::time::{Duration, Instant};

use deploy::{Pki, SENTINEL_MASTER, TestCluster, TestSentinel, TlsRedis};
use pagecast::command::Command as ControlMsg;
use pagecast::error::{ErrorCode, HasErrorCode};
use pagecast::task::store::{
    Claim, Misconfig, RedisMode, RedisOptions, Stage, StageQueue, StoreError, TaskStore, TimeField,
    Transition,
};
use pagecast::task::{Muxer, OutputTarget, StartSpec, Status, StorageType, TaskSecrets};
use redis_support::TestRedis;

fn spec() -> StartSpec {
    StartSpec {
        record_url: "https://example.test/page".into(),
        manual_start: false,
        width: 1280,
        height: 720,
        fps: 30,
        max_duration_secs: 600,
        callback_url: None,
        storage_type: StorageType::Local,
        muxer: Muxer::Mp4,
        auth_url: None,
        output: OutputTarget::default(),
        start_timeout_secs: 300,
        user_context: None,
        audio: true,
        capture: None,
        user_agent: None,
    }
}

async fn created(store: &TaskStore) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    store
        .create(&id, &spec(), &TaskSecrets::default(), 1_700_000_000, 1000)
        .await
        .expect("create");
    id
}

fn tls_opts(url: &str, pki: &Pki) -> RedisOptions {
    RedisOptions {
        ca_file: Some(pki.path("ca.pem")),
        ..RedisOptions::standalone(url)
    }
}

fn misconfig(e: &StoreError) -> Option<Misconfig> {
    match e {
        StoreError::Misconfigured { problem, .. } => Some(*problem),
        _ => None,
    }
}

/// A task through its store-side life: create, claim, record, a control message read by a
/// blocking read, queued for delivery, read from the stage queue, acknowledged, finished.
async fn exercise(store: &TaskStore) {
    let id = created(store).await;
    let q = StageQueue::shared(Stage::Record);
    let jobs = store.read_stage(&q, "c1", 10, 200, 60_000).await.unwrap();
    assert!(jobs.iter().any(|j| j.task_id == id), "{jobs:?}");
    let Claim::Acquired { fence, .. } = store
        .claim(&id, "w1", &[Status::Normal], 1_000, 10_000)
        .await
        .unwrap()
    else {
        panic!("claim")
    };
    store
        .transition(
            &id,
            Transition::new(Status::Normal, Status::Recording)
                .with_lease("w1", fence)
                .with_time(TimeField::Start, 1_700_000_001),
        )
        .await
        .unwrap();
    for j in &jobs {
        store.ack(&q, &j.entry_id).await.unwrap();
    }
    store.signal(&id, ControlMsg::Refresh).await.unwrap();
    let started = Instant::now();
    let controls = store.read_controls(&id, "0", 1_000).await.unwrap();
    assert_eq!(controls.len(), 1);
    assert!(started.elapsed() < Duration::from_millis(900));
    store
        .transition(
            &id,
            Transition::new(Status::Recording, Status::Canceled).with_lease("w1", fence),
        )
        .await
        .unwrap();
    store
        .transition(
            &id,
            Transition::new(Status::Canceled, Status::Callback)
                .with_lease("w1", fence)
                .with_enqueue(StageQueue::shared(Stage::Callback)),
        )
        .await
        .unwrap();
    let cq = StageQueue::shared(Stage::Callback);
    let jobs = store
        .read_stage(&cq, "c1", 10, 1_000, 60_000)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    store.ack(&cq, &jobs[0].entry_id).await.unwrap();
    assert_eq!(store.queue_len(&cq).await.unwrap(), 0);
    store
        .transition(
            &id,
            Transition::new(Status::Callback, Status::Finished).with_lease("w1", fence),
        )
        .await
        .unwrap();
    assert_eq!(store.get(&id).await.unwrap().status, Status::Finished);
}

#[tokio::test]
async fn tls_with_a_private_ca_and_the_wrong_ca_refused_by_name() {
    let pki = Pki::generate();
    let redis = TlsRedis::start(&pki, false);
    let store = TaskStore::open(&tls_opts(&redis.url(""), &pki), "t:")
        .await
        .expect("connect over TLS");
    exercise(&store).await;

    // Another CA: the server's certificate is not trusted.
    let mut wrong = tls_opts(&redis.url(""), &pki);
    wrong.ca_file = Some(pki.path("other-ca.pem"));
    let err = TaskStore::open(&wrong, "t:").await.unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Tls), "{err}");
    assert!(err.to_string().contains("PAGECAST_REDIS_CA_FILE"), "{err}");
    assert_eq!(err.code(), ErrorCode::ServiceUnavailable);

    // The system's roots do not know the test CA either.
    let err = TaskStore::connect(&redis.url(""), "t:").await.unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Tls), "{err}");

    // Plain redis:// to the TLS port is no answer (the server waits for a TLS hello): an
    // unavailable Redis, within the connect deadline.
    let started = Instant::now();
    let err = TaskStore::connect(&format!("redis://127.0.0.1:{}/", redis.server.port), "t:")
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(err.code(), ErrorCode::ServiceUnavailable, "{err}");
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_the_server_trusts() {
    let pki = Pki::generate();
    let redis = TlsRedis::start(&pki, true);
    let err = TaskStore::open(&tls_opts(&redis.url(""), &pki), "t:")
        .await
        .unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Tls), "{err}");

    let mut stranger = tls_opts(&redis.url(""), &pki);
    stranger.client_cert = Some(pki.path("stranger.pem"));
    stranger.client_key = Some(pki.path("stranger.key"));
    let err = TaskStore::open(&stranger, "t:").await.unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Tls), "{err}");

    let mut good = tls_opts(&redis.url(""), &pki);
    good.client_cert = Some(pki.path("client.pem"));
    good.client_key = Some(pki.path("client.key"));
    let store = TaskStore::open(&good, "t:").await.expect("mutual TLS");
    exercise(&store).await;

    // A key file that is no key.
    let mut bad = good.clone();
    bad.client_key = Some(pki.path("client.ext"));
    let err = TaskStore::open(&bad, "t:").await.unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Tls), "{err}");
}

#[tokio::test]
async fn an_acl_user_with_a_password_and_wrong_credentials_named_without_the_password() {
    let pki = Pki::generate();
    let mut redis = TlsRedis::start(&pki, false);
    redis.only_user("recorder", "s3cret-pw");
    let store = TaskStore::open(&tls_opts(&redis.url("recorder:s3cret-pw@"), &pki), "t:")
        .await
        .expect("ACL user");
    exercise(&store).await;
    assert!(
        !store.shown_url().contains("s3cret"),
        "{}",
        store.shown_url()
    );

    for userinfo in ["recorder:wrong-pw@", "", ":s3cret-pw@"] {
        let err = TaskStore::open(&tls_opts(&redis.url(userinfo), &pki), "t:")
            .await
            .unwrap_err();
        assert_eq!(misconfig(&err), Some(Misconfig::Auth), "{userinfo}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("PAGECAST_REDIS_URL"), "{msg}");
        assert!(
            !msg.contains("wrong-pw") && !msg.contains("s3cret"),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn every_store_operation_works_on_a_three_master_cluster() {
    let cluster = TestCluster::start();
    let opts = RedisOptions {
        mode: RedisMode::Cluster,
        ..RedisOptions::standalone(&cluster.url())
    };
    let store = TaskStore::open(&opts, "rec:").await.expect("cluster");
    assert_eq!(store.prefix(), "{rec}:");
    exercise(&store).await;
    // Every key lives on the one node that serves the prefix's slot.
    let owner = cluster.node_of("{rec}:x").port;
    for n in &cluster.nodes {
        let keys: u64 = n.cli(&["DBSIZE"]).trim().parse().unwrap();
        if n.port == owner {
            assert!(keys > 3, "{keys} keys on the owner");
        } else {
            assert_eq!(keys, 0, "node {} holds keys", n.port);
        }
    }
    // A script missing from the node's cache (as after a failover) is loaded again.
    cluster.node_of("{rec}:x").cli(&["SCRIPT", "FLUSH"]);
    exercise(&store).await;
    // The counts and queue depths /metrics reads, and the deletion after the retention.
    assert_eq!(
        store.status_counts().await.unwrap().get("finished"),
        Some(&2)
    );
    let depths = store.queue_depths().await.unwrap();
    assert!(
        depths.contains(&(("callback".into(), String::new()), 0)),
        "{depths:?}"
    );
    let brief = store.clone().with_retention(1);
    let id = created(&brief).await;
    brief
        .transition(&id, Transition::new(Status::Normal, Status::Finished))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(brief.trim_expired(now, 10).await.unwrap(), 1);
    assert_eq!(
        store.status_counts().await.unwrap().get("finished"),
        Some(&2)
    );
}

#[tokio::test]
async fn standalone_mode_against_a_cluster_node_is_named_a_mode_error() {
    let cluster = TestCluster::start();
    let node = &cluster.nodes[0];
    let err = TaskStore::connect(&format!("redis://127.0.0.1:{}/", node.port), "t:")
        .await
        .unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Mode), "{err}");
    assert!(
        err.to_string().contains("PAGECAST_REDIS_MODE=cluster"),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::ServiceUnavailable);

    // Cluster mode against a server without cluster support.
    let plain = TestRedis::start();
    let opts = RedisOptions {
        mode: RedisMode::Cluster,
        ..RedisOptions::standalone(&plain.url)
    };
    let err = TaskStore::open(&opts, "t:").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ServiceUnavailable, "{err}");
    assert!(
        matches!(
            err,
            StoreError::Misconfigured { .. } | StoreError::Unavailable(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_replica_answers_readonly_as_unavailable_and_a_flushed_script_cache_is_reloaded() {
    let primary = TestRedis::start();
    let store = TaskStore::connect(&primary.url, "t:").await.unwrap();
    let id = created(&store).await;
    let c = redis::Client::open(primary.url.as_str()).unwrap();
    let mut raw = c.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    store
        .transition(&id, Transition::new(Status::Normal, Status::Finished))
        .await
        .expect("NOSCRIPT: the script is loaded again");

    let dir = tempfile::tempdir().unwrap();
    let replica = deploy::Server::start(
        dir.path(),
        "replica",
        |port| {
            vec![
                "--port".into(),
                port.to_string(),
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port().to_string(),
            ]
        },
        Vec::new(),
    );
    let started = Instant::now();
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica did not sync"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let on_replica = TaskStore::connect(&format!("redis://127.0.0.1:{}/", replica.port), "t:")
        .await
        .unwrap();
    let err = created_err(&on_replica).await;
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("READONLY"), "{err}");
    assert!(err.to_string().contains("replica"), "{err}");
}

async fn created_err(store: &TaskStore) -> StoreError {
    store
        .create("x", &spec(), &TaskSecrets::default(), 1, 1000)
        .await
        .unwrap_err()
}

#[tokio::test]
async fn sentinel_mode_follows_the_master_through_a_failover() {
    let mut sentinel = TestSentinel::start();
    let opts = RedisOptions {
        mode: RedisMode::Sentinel,
        sentinel_master: Some(SENTINEL_MASTER.into()),
        ..RedisOptions::standalone(&sentinel.url())
    };
    let store = TaskStore::open(&opts, "t:").await.expect("sentinel");
    let id = created(&store).await;
    // Written to the replica before the master dies.
    let started = Instant::now();
    while !sentinel
        .replica
        .cli(&["EXISTS", &format!("t:task:{id}")])
        .contains('1')
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = sentinel.master.port;
    sentinel.master.kill();
    let started = Instant::now();
    let task = loop {
        match store.get(&id).await {
            Ok(t) => break t,
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::ServiceUnavailable, "{e}");
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "no new master after 30 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(task.status, Status::Normal);
    assert_ne!(sentinel.master_port(), old);
    assert_eq!(sentinel.master_port(), sentinel.replica.port);
    // Writes go to the new master.
    exercise(&store).await;

    // A master name no sentinel knows.
    let unknown = RedisOptions {
        sentinel_master: Some("nosuchmaster".into()),
        ..opts.clone()
    };
    let err = TaskStore::open(&unknown, "t:").await.unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Mode), "{err}");
    assert!(
        err.to_string().contains("PAGECAST_REDIS_SENTINEL_MASTER"),
        "{err}"
    );
}

fn store_config(url: &str, mode: RedisMode) -> pagecast::config::StoreConfig {
    pagecast::config::StoreConfig {
        redis_url: url.to_string(),
        key_prefix: "t:".into(),
        task_retention: 3600,
        redis_mode: mode,
        redis_sentinel_master: None,
        redis_sentinel_password: None,
        redis_ca_file: None,
        redis_client_cert: None,
        redis_client_key: None,
    }
}

#[tokio::test]
async fn doctor_and_readiness_check_the_version_and_the_eviction_policy() {
    use pagecast::ops::doctor::{self, Level};
    use pagecast::ops::health::Readiness;

    let redis = TestRedis::start();
    let cfg = store_config(&redis.url, RedisMode::Standalone);
    let f = doctor::redis(&cfg).await;
    assert_eq!(f.level, Level::Ok, "{f:?}");
    assert!(f.detail.contains("maxmemory-policy noeviction"), "{f:?}");

    let store = cfg.connect().await.unwrap();
    let facts = store.server_facts().await.unwrap();
    assert!(facts.version_number().unwrap() >= pagecast::task::store::MIN_VERSION);
    let ready = Readiness::redis_only(store.clone()).check().await;
    assert!(
        ready[0].ok && !ready[0].detail.contains("warning"),
        "{ready:?}"
    );

    // An evicting policy: doctor fails, readiness warns, the store still works.
    let c = redis::Client::open(redis.url.as_str()).unwrap();
    let mut raw = c.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut raw)
        .await
        .unwrap();
    let f = doctor::redis(&cfg).await;
    assert_eq!(f.level, Level::Fail, "{f:?}");
    assert!(
        f.detail.contains("allkeys-lru") && f.detail.contains("noeviction"),
        "{f:?}"
    );
    assert!(f.fix.contains("noeviction"), "{f:?}");
    let ready = Readiness::redis_only(store.clone()).check().await;
    assert!(ready[0].ok, "{ready:?}");
    assert!(
        ready[0]
            .detail
            .contains("warning: maxmemory-policy is allkeys-lru"),
        "{ready:?}"
    );
    created(&store).await;

    // A named error from doctor when the mode is wrong.
    let cluster = TestCluster::start();
    let wrong = store_config(
        &format!("redis://127.0.0.1:{}/", cluster.nodes[0].port),
        RedisMode::Sentinel,
    );
    let f = doctor::redis(&wrong).await;
    assert_eq!(f.level, Level::Fail, "{f:?}");
    // The cluster's INFO comes from the primary of the prefix's slot.
    let on_cluster = store_config(&cluster.url(), RedisMode::Cluster);
    let f = doctor::redis(&on_cluster).await;
    assert_eq!(f.level, Level::Ok, "{f:?}");
    assert!(f.detail.contains("cluster mode"), "{f:?}");
}

/// A managed "primary endpoint" (one name that follows the primary) fails over: the old primary
/// becomes a replica and answers READONLY on the connection the store holds, and the name now
/// leads to the new primary. The store drops its connection, connects by the name again and
/// writes there. The endpoint is a TCP forwarder standing in for the DNS name.
#[tokio::test]
async fn a_standalone_store_follows_its_primary_endpoint_through_a_failover() {
    let a = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let b = deploy::Server::start(
        dir.path(),
        "b",
        |port| {
            vec![
                "--port".into(),
                port.to_string(),
                "--replicaof".into(),
                "127.0.0.1".into(),
                a.port().to_string(),
            ]
        },
        Vec::new(),
    );
    let synced = |s: &deploy::Server| {
        s.cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    };
    let started = Instant::now();
    while !synced(&b) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "b did not sync"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = deploy::Forwarder::start(a.port(), None);
    let store = TaskStore::connect(&endpoint.url(), "t:").await.unwrap();
    let before = created(&store).await;
    // A planned failover promotes a replica that has caught up (replication is asynchronous:
    // promoted at once, b can lack the write made a moment before, as one suite run saw).
    let started = Instant::now();
    while b.cli(&["EXISTS", &format!("t:task:{before}")]).trim() != "1" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "b did not receive {before}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The failover: b promoted, a demoted to b's replica, the name moved to b.
    b.cli(&["REPLICAOF", "NO", "ONE"]);
    let c = redis::Client::open(a.url.as_str()).unwrap();
    let mut raw = c.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(b.port)
        .query_async(&mut raw)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut raw)
            .await
            .unwrap();
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a did not follow b"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    endpoint.point_at(b.port);

    let started = Instant::now();
    let after = loop {
        let id = uuid::Uuid::new_v4().to_string();
        match store
            .create(&id, &spec(), &TaskSecrets::default(), 1_700_000_000, 1000)
            .await
        {
            Ok(()) => break id,
            Err(e) => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "still failing 10 s after the failover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    for id in [&before, &after] {
        assert_eq!(
            b.cli(&["EXISTS", &format!("t:task:{id}")]).trim(),
            "1",
            "{id} on the new primary"
        );
        store.get(id).await.expect("read through the endpoint");
    }
}

/// A Redis older than 6.2 is refused when the store connects, by name, and doctor says so. The
/// server is real; a forwarder shows its version as 5.x.
#[tokio::test]
async fn a_redis_older_than_6_2_is_refused_at_start_by_name() {
    let redis = TestRedis::start();
    let old = deploy::Forwarder::start(redis.port(), Some(5));
    let err = TaskStore::connect(&old.url(), "t:").await.unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Version), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("Redis 5.") && text.contains("6.2"), "{text}");
    let f = pagecast::ops::doctor::redis(&store_config(&old.url(), RedisMode::Standalone)).await;
    assert_eq!(f.level, pagecast::ops::doctor::Level::Fail, "{f:?}");
    assert!(f.detail.contains("6.2") || f.fix.contains("6.2"), "{f:?}");
    // The same server, its version shown as it is, is taken.
    TaskStore::connect(&redis.url, "t:")
        .await
        .expect("a current Redis");
}

/// Sentinels that require a password of their own (PAGECAST_REDIS_SENTINEL_PASSWORD): with it
/// the store finds the master; without it the error is named.
#[tokio::test]
async fn sentinels_with_a_password_of_their_own() {
    let sentinel = TestSentinel::start_with(Some("sentinel-secret"), None);
    let opts = RedisOptions {
        mode: RedisMode::Sentinel,
        sentinel_master: Some(SENTINEL_MASTER.into()),
        sentinel_password: Some("sentinel-secret".into()),
        ..RedisOptions::standalone(&sentinel.url())
    };
    let store = TaskStore::open(&opts, "t:").await.expect("sentinel");
    exercise(&store).await;
    let without = RedisOptions {
        sentinel_password: None,
        ..opts.clone()
    };
    let err = TaskStore::open(&without, "t:").await.unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Auth), "{err:?}");
    assert!(
        err.to_string().contains("PAGECAST_REDIS_SENTINEL_PASSWORD"),
        "{err}"
    );
    assert!(!err.to_string().contains("sentinel-secret"), "{err}");
}

/// Sentinel over TLS: the sentinel, the master and the replica speak only TLS (rediss:// with a
/// private CA); the store reaches the sentinel and the master it names with the CA, and a wrong
/// CA is refused by name.
#[tokio::test]
async fn sentinels_and_their_master_over_tls() {
    let pki = Pki::generate();
    let sentinel = TestSentinel::start_with(None, Some(&pki));
    assert!(sentinel.url().starts_with("rediss://"));
    let opts = RedisOptions {
        mode: RedisMode::Sentinel,
        sentinel_master: Some(SENTINEL_MASTER.into()),
        ca_file: Some(pki.path("ca.pem")),
        ..RedisOptions::standalone(&sentinel.url())
    };
    let store = TaskStore::open(&opts, "t:")
        .await
        .expect("sentinel over TLS");
    exercise(&store).await;
    let wrong = RedisOptions {
        ca_file: Some(pki.path("other-ca.pem")),
        ..opts.clone()
    };
    let err = TaskStore::open(&wrong, "t:").await.unwrap_err();
    assert_eq!(misconfig(&err), Some(Misconfig::Tls), "{err:?}");
    assert!(err.to_string().contains("PAGECAST_REDIS_CA_FILE"), "{err}");
}
