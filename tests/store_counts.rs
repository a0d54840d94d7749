//! The counts `/metrics` reads (tasks by status, queue depths) are kept by the store's scripts:
//! after a mixed workload (creations, every transition, races, handovers, re-dispatches, the
//! callback outbox, deletions after the retention) they equal what a walk over the keyspace
//! finds, reading them walks nothing, and data stored before the counts existed is counted
//! once when this version first connects.

#[path = "support/redis.rs"]
mod redis_support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use pagecast::command::Command as ControlMsg;
use pagecast::task::store::{
    Claim, Stage, StageQueue, StoreError, TaskStore, TimeField, Transition,
};
use pagecast::task::{
    CallbackDelivery, Muxer, OutputTarget, StartSpec, Status, StorageType, TaskSecrets,
};
use redis::aio::MultiplexedConnection;
use redis_support::TestRedis;

const PREFIX: &str = "c:";

fn spec() -> StartSpec {
    StartSpec {
        record_url: "https://example.test/page".into(),
        manual_start: false,
        width: 1280,
        height: 720,
        fps: 30,
        max_duration_secs: 600,
        callback_url: Some("https://example.test/cb".into()),
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

async fn create(store: &TaskStore) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    store
        .create(&id, &spec(), &TaskSecrets::default(), 1_700_000_000, 10_000)
        .await
        .expect("create");
    id
}

async fn claim(store: &TaskStore, id: &str, worker: &str, expect: &[Status]) -> u64 {
    match store
        .claim(id, worker, expect, 1_000, 60_000)
        .await
        .unwrap()
    {
        Claim::Acquired { fence, .. } => fence,
        other => panic!("claim {id}: {other:?}"),
    }
}

async fn move_to(store: &TaskStore, id: &str, from: Status, to: Status, lease: (&str, u64)) {
    store
        .transition(id, Transition::new(from, to).with_lease(lease.0, lease.1))
        .await
        .unwrap_or_else(|e| panic!("{id}: {from} -> {to}: {e}"));
}

async fn raw(redis: &TestRedis) -> MultiplexedConnection {
    redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn scan(c: &mut MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Tasks by status as the keyspace holds them (the test's own walk over it).
async fn real_counts(c: &mut MultiplexedConnection) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for key in scan(c, &format!("{PREFIX}task:*")).await {
        let status: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("status")
            .query_async(c)
            .await
            .unwrap();
        *counts
            .entry(status.expect("every task has a status"))
            .or_insert(0) += 1;
    }
    counts
}

/// Every non-empty stage stream and its length, as the keyspace holds them.
async fn real_depths(c: &mut MultiplexedConnection) -> BTreeMap<String, u64> {
    let mut depths = BTreeMap::new();
    for key in scan(c, &format!("{PREFIX}stream:*")).await {
        let len: u64 = redis::cmd("XLEN").arg(&key).query_async(c).await.unwrap();
        if len > 0 {
            depths.insert(
                key.trim_start_matches(&format!("{PREFIX}stream:"))
                    .to_string(),
                len,
            );
        }
    }
    depths
}

fn kept(counts: HashMap<String, u64>) -> BTreeMap<String, u64> {
    counts.into_iter().filter(|(_, n)| *n > 0).collect()
}

async fn kept_depths(store: &TaskStore) -> BTreeMap<String, u64> {
    store
        .queue_depths()
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|((stage, node), n)| {
            let name = if node.is_empty() {
                stage
            } else {
                format!("{stage}:{node}")
            };
            (name, n)
        })
        .collect()
}

async fn assert_counts_match(store: &TaskStore, c: &mut MultiplexedConnection, when: &str) {
    let kept_counts = kept(store.status_counts().await.unwrap());
    assert_eq!(kept_counts, real_counts(c).await, "tasks by status, {when}");
    assert_eq!(
        kept_depths(store).await,
        real_depths(c).await,
        "queue depths, {when}"
    );
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_equal_the_real_counts_after_a_mixed_workload() {
    let redis = TestRedis::start();
    let store = TaskStore::connect(&redis.url, PREFIX)
        .await
        .unwrap()
        .with_retention(3_600);
    // Finished tasks of this handle are deleted one second after they finish.
    let brief = store.clone().with_retention(1);
    let mut c = raw(&redis).await;

    // Unrelated keys, which nothing may count.
    for i in 0..50 {
        let () = redis::cmd("SET")
            .arg(format!("other:{i}"))
            .arg("x")
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let () = redis::cmd("HSET")
        .arg("other:task:x")
        .arg("status")
        .arg("normal")
        .query_async(&mut c)
        .await
        .unwrap();

    // 40 tasks, created concurrently.
    let ids: Vec<String> = futures::future::join_all((0..40).map(|_| create(&store))).await;
    assert_counts_match(&store, &mut c, "after the creations").await;
    // An id taken already, and a full queue, change nothing.
    assert_eq!(
        store
            .create(&ids[0], &spec(), &TaskSecrets::default(), 1, 10_000)
            .await
            .unwrap_err(),
        StoreError::AlreadyExists(ids[0].clone())
    );
    assert!(matches!(
        store
            .create("full", &spec(), &TaskSecrets::default(), 1, 1)
            .await
            .unwrap_err(),
        StoreError::QueueFull { .. }
    ));

    // Take the record queue's entries (acknowledged as workers do).
    let record = StageQueue::shared(Stage::Record);
    let jobs = store
        .read_stage(&record, "c1", 25, 0, 60_000)
        .await
        .unwrap();
    for j in &jobs {
        store.ack(&record, &j.entry_id).await.unwrap();
    }

    // 0..20 recording; 20..25 stopped before they started; 25..40 left waiting.
    let mut fences = HashMap::new();
    for id in &ids[..20] {
        let f = claim(&store, id, "w1", &[Status::Normal]).await;
        store
            .transition(
                id,
                Transition::new(Status::Normal, Status::Recording)
                    .with_lease("w1", f)
                    .with_time(TimeField::Start, 1_700_000_010),
            )
            .await
            .unwrap();
        fences.insert(id.clone(), f);
    }
    for id in &ids[20..25] {
        brief
            .transition(id, Transition::new(Status::Normal, Status::Finished))
            .await
            .unwrap();
    }
    // A claim whose worker died before it started the page: the task waits again.
    let f = claim(&store, &ids[25], "w-dead", &[Status::Normal]).await;
    let _ = f;
    assert!(
        store
            .take_expired(&ids[25], i64::MAX)
            .await
            .unwrap()
            .is_some()
    );
    assert_counts_match(&store, &mut c, "after the starts").await;

    // Races: Pause and Stop (by the API) on the same tasks; one of each pair wins.
    let races = ids[0..6].iter().map(|id| {
        let (a, b) = (store.clone(), store.clone());
        let id = id.clone();
        async move {
            let (p, s) = tokio::join!(
                a.transition(&id, Transition::new(Status::Recording, Status::Paused)),
                b.transition(
                    &id,
                    Transition::new(Status::Recording, Status::Canceled)
                        .with_control(ControlMsg::Stop)
                ),
            );
            assert!(p.is_ok() != s.is_ok(), "{id}: {p:?} {s:?}");
        }
    });
    futures::future::join_all(races).await;
    // An illegal move and a stale one change nothing.
    assert!(matches!(
        store
            .transition(&ids[10], Transition::new(Status::Recording, Status::Upload))
            .await,
        Err(StoreError::Illegal { .. })
    ));
    assert!(matches!(
        store
            .transition(&ids[10], Transition::new(Status::Paused, Status::Recording))
            .await,
        Err(StoreError::Conflict { .. })
    ));

    // Handovers at shutdown (node queue), and a re-dispatch after a worker stopped.
    let node_q = StageQueue::on_node(Stage::Record, "node-a");
    for id in &ids[10..13] {
        store
            .hand_over(id, "w1", fences[id], None, &node_q, 600_000)
            .await
            .unwrap();
        let f = claim(&store, id, "w2", &[Status::Recording]).await;
        fences.insert(id.clone(), f);
    }
    // A recording whose worker vanished goes back to normal to be taken over.
    store
        .transition(
            &ids[13],
            Transition::new(Status::Recording, Status::Normal)
                .with_lease("w1", fences[&ids[13]])
                .with_enqueue(StageQueue::shared(Stage::Record))
                .counting_restart()
                .releasing_lease(),
        )
        .await
        .unwrap();

    // Delivery: 14..18 stop, transcode on their node, upload, callback through the outbox.
    let transcode = StageQueue::on_node(Stage::Transcode, "node-a");
    let upload = StageQueue::on_node(Stage::Upload, "node-a");
    let callback = StageQueue::shared(Stage::Callback);
    for id in &ids[14..18] {
        let lease = ("w1", fences[id]);
        move_to(&store, id, Status::Recording, Status::Canceled, lease).await;
        store
            .transition(
                id,
                Transition::new(Status::Canceled, Status::Transcode)
                    .with_lease("w1", fences[id])
                    .with_enqueue(transcode.clone()),
            )
            .await
            .unwrap();
        store
            .transition(
                id,
                Transition::new(Status::Transcode, Status::Upload)
                    .with_lease("w1", fences[id])
                    .with_enqueue(upload.clone()),
            )
            .await
            .unwrap();
        store
            .transition(
                id,
                Transition::new(Status::Upload, Status::Callback)
                    .with_lease("w1", fences[id])
                    .with_enqueue(callback.clone()),
            )
            .await
            .unwrap();
    }
    for j in store
        .read_stage(&transcode, "c1", 2, 0, 60_000)
        .await
        .unwrap()
    {
        store.ack(&transcode, &j.entry_id).await.unwrap();
    }
    // One callback fails and waits in the outbox; a redelivery is queued later.
    store
        .defer_callback(
            &ids[14],
            "w1",
            fences[&ids[14]],
            &CallbackDelivery::default(),
            None,
            0,
        )
        .await
        .unwrap();
    assert_eq!(store.release_due_callbacks(1, 10).await.unwrap(), 1);
    let f = claim(&store, &ids[14], "w3", &[Status::Callback]).await;
    move_to(
        &store,
        &ids[14],
        Status::Callback,
        Status::Finished,
        ("w3", f),
    )
    .await;
    for id in &ids[15..17] {
        move_to(
            &brief,
            id,
            Status::Callback,
            Status::Finished,
            ("w1", fences[id]),
        )
        .await;
    }
    // A delivery stage re-dispatched after its worker stopped.
    store.requeue(&ids[17], &callback).await.unwrap();
    store.signal(&ids[18], ControlMsg::Refresh).await.unwrap();
    assert_counts_match(&store, &mut c, "after delivery").await;

    // The brief tasks' retention ends: they are deleted and counted out, the others stay.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let deleted = store.trim_expired(now_secs(), 100).await.unwrap();
    assert_eq!(deleted, 7, "5 stopped before starting, 2 delivered");
    assert_eq!(store.trim_expired(now_secs(), 100).await.unwrap(), 0);
    assert_counts_match(&store, &mut c, "after the deletions").await;
    let counts = store.status_counts().await.unwrap();
    assert_eq!(counts.get("finished"), Some(&1));
    assert_eq!(counts.values().sum::<u64>(), 40 - 7);

    // Reading the counts walks nothing.
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .unwrap();
    store.status_counts().await.unwrap();
    store.queue_depths().await.unwrap();
    store.pending_callbacks().await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    for walk in ["cmdstat_scan:", "cmdstat_keys:"] {
        assert!(!stats.contains(walk), "{walk} in\n{stats}");
    }
    assert!(stats.contains("cmdstat_hgetall:"), "{stats}");
}

#[tokio::test]
async fn data_from_a_version_without_counts_is_counted_once() {
    let redis = TestRedis::start();
    let store = TaskStore::connect(&redis.url, PREFIX)
        .await
        .unwrap()
        .with_retention(3_600);
    let mut c = raw(&redis).await;
    let ids: Vec<String> = futures::future::join_all((0..12).map(|_| create(&store))).await;
    for id in &ids[..4] {
        let f = claim(&store, id, "w", &[Status::Normal]).await;
        move_to(&store, id, Status::Normal, Status::Recording, ("w", f)).await;
    }
    for id in &ids[4..7] {
        store.signal(id, ControlMsg::Refresh).await.unwrap();
        store
            .transition(id, Transition::new(Status::Normal, Status::Finished))
            .await
            .unwrap();
    }
    let node_q = StageQueue::on_node(Stage::Transcode, "node-b");
    store.requeue(&ids[8], &node_q).await.unwrap();
    let expected = real_counts(&mut c).await;
    let expected_depths = real_depths(&mut c).await;

    // As the previous version stored it: no counts, no indexes, finished tasks with a TTL.
    for key in ["counts", "streams", "expiry", "schema"] {
        let () = redis::cmd("DEL")
            .arg(format!("{PREFIX}{key}"))
            .query_async(&mut c)
            .await
            .unwrap();
    }
    for id in &ids[4..7] {
        for key in [format!("{PREFIX}task:{id}"), format!("{PREFIX}ctl:{id}")] {
            let () = redis::cmd("EXPIRE")
                .arg(&key)
                .arg(1_000)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    }
    drop(store);

    let store = TaskStore::connect(&redis.url, PREFIX).await.unwrap();
    assert_eq!(kept(store.status_counts().await.unwrap()), expected);
    assert_eq!(kept_depths(&store).await, expected_depths);
    for id in &ids[4..7] {
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("{PREFIX}task:{id}"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(
            ttl, -1,
            "the key expiry became an entry of the expiry index"
        );
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("{PREFIX}ctl:{id}"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(ttl, -1);
        let due: Option<i64> = redis::cmd("ZSCORE")
            .arg(format!("{PREFIX}expiry"))
            .arg(id)
            .query_async(&mut c)
            .await
            .unwrap();
        let due = due.expect("in the expiry index");
        assert!(
            (now_secs() + 990..=now_secs() + 1_000).contains(&due),
            "{due}"
        );
    }
    // Once: the next connection finds the data current and counts nothing.
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut c)
        .await
        .unwrap();
    let again = TaskStore::connect(&redis.url, PREFIX).await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!stats.contains("cmdstat_scan:"), "{stats}");
    // And the counts go on from there.
    create(&again).await;
    assert_eq!(
        again.status_counts().await.unwrap().get("normal").copied(),
        expected.get("normal").map(|n| n + 1)
    );
}

/// The stream index the scrape reads forgets the queues of nodes that are gone: an empty node
/// queue whose node has no live worker is dropped; one with an entry waiting, one of a live
/// node and the shared queues stay; a node that comes back is listed again when work is queued
/// for it.
#[tokio::test]
async fn the_empty_queues_of_nodes_that_are_gone_leave_the_index() {
    let redis = TestRedis::start();
    let store = TaskStore::connect(&redis.url, PREFIX).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    store
        .beat_worker("alive-node/1/aaaa1111", &[], 10_000, now + 60_000)
        .await
        .unwrap();
    // A worker of gone-node stopped beating a minute ago.
    store
        .beat_worker("gone-node/2/bbbb2222", &[], 10_000, now - 60_000)
        .await
        .unwrap();
    for node in ["alive-node", "gone-node", "waiting-node"] {
        let id = create(&store).await;
        store
            .requeue(&id, &StageQueue::on_node(Stage::Transcode, node))
            .await
            .unwrap();
    }
    for node in ["alive-node", "gone-node"] {
        let q = StageQueue::on_node(Stage::Transcode, node);
        for job in store.read_stage(&q, "c1", 10, 0, 60_000).await.unwrap() {
            store.ack(&q, &job.entry_id).await.unwrap();
        }
    }
    let listed = |depths: Vec<((String, String), u64)>| -> BTreeMap<String, u64> {
        depths
            .into_iter()
            .filter(|((_, node), _)| !node.is_empty())
            .map(|((stage, node), n)| (format!("{stage}:{node}"), n))
            .collect()
    };
    let before = listed(store.queue_depths().await.unwrap());
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(store.prune_streams(now).await.unwrap(), 1);
    let after = listed(store.queue_depths().await.unwrap());
    assert_eq!(
        after,
        BTreeMap::from([
            ("transcode:alive-node".to_string(), 0),
            ("transcode:waiting-node".to_string(), 1),
        ])
    );
    let mut c = raw(&redis).await;
    let exists: u64 = redis::cmd("EXISTS")
        .arg(format!("{PREFIX}stream:transcode:gone-node"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    // Shared queues stay whatever their length.
    assert!(
        store
            .queue_depths()
            .await
            .unwrap()
            .iter()
            .any(|((stage, node), _)| stage == "record" && node.is_empty()),
        "the shared record queue is listed"
    );
    assert_eq!(store.prune_streams(now).await.unwrap(), 0);

    // gone-node comes back with work: listed again, and its queue reads.
    let id = create(&store).await;
    let q = StageQueue::on_node(Stage::Transcode, "gone-node");
    store.requeue(&id, &q).await.unwrap();
    let again = listed(store.queue_depths().await.unwrap());
    assert_eq!(again.get("transcode:gone-node"), Some(&1), "{again:?}");
    let jobs = store.read_stage(&q, "c2", 10, 0, 60_000).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].task_id, id);
}
