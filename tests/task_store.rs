//! The task store against a real `redis-server` (one per test, no persistence).

#[path = "support/redis.rs"]
mod redis_support;

use std::time::{Duration, Instant};

use pagecast::command::Command as ControlMsg;
use pagecast::error::{ErrorCode, HasErrorCode};
use pagecast::task::store::{
    Claim, Stage, StageQueue, StoreError, TaskStore, TimeField, Transition,
};
use pagecast::task::{
    CallbackDelivery, Muxer, OutputTarget, StartSpec, Status, StorageType, TaskResult, TaskSecrets,
    TaskStats,
};
use redis_support::TestRedis;

const PREFIX: &str = "t:";
const KEY: &str = "00112233445566778899aabbccddeeff";

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
        muxer: Muxer::Hls,
        auth_url: Some("https://example.test/key".into()),
        output: OutputTarget {
            bucket: Some("b".into()),
            ..OutputTarget::default()
        },
        start_timeout_secs: 300,
        user_context: Some("ctx".into()),
        audio: true,
        capture: None,
        user_agent: None,
    }
}

fn secrets() -> TaskSecrets {
    TaskSecrets {
        encrypt_key: Some(KEY.into()),
        encrypt_iv: None,
        key_generated: false,
        live_urls: Vec::new(),
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn setup() -> (TestRedis, TaskStore) {
    let redis = TestRedis::start();
    let store = TaskStore::connect(&redis.url, PREFIX)
        .await
        .expect("connect");
    (redis, store)
}

async fn created(store: &TaskStore) -> String {
    let id = new_id();
    store
        .create(&id, &spec(), &secrets(), 1_700_000_000, 100)
        .await
        .expect("create");
    id
}

/// A task in `recording`, claimed by `worker`; returns (id, fence).
async fn recording(store: &TaskStore, worker: &str, now_ms: i64) -> (String, u64) {
    let id = created(store).await;
    let Claim::Acquired { fence, .. } = store
        .claim(&id, worker, &[Status::Normal], now_ms, 10_000)
        .await
        .unwrap()
    else {
        panic!("claim failed")
    };
    store
        .transition(
            &id,
            Transition::new(Status::Normal, Status::Recording)
                .with_lease(worker, fence)
                .with_time(TimeField::Start, 1_700_000_010),
        )
        .await
        .unwrap();
    (id, fence)
}

async fn raw(redis: &TestRedis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Waits (up to 5 s) until a client of `redis` is blocked in `command` (`CLIENT LIST` shows it
/// with the `b` flag): a reader that has started waiting, not one about to.
async fn wait_blocked(redis: &TestRedis, command: &str) {
    let mut c = raw(redis).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut c)
            .await
            .unwrap();
        let blocked = list.lines().any(|l| {
            let field = |name: &str| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(name))
                    .unwrap_or_default()
            };
            field("cmd=") == command && field("flags=").contains('b')
        });
        if blocked {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no client blocked in {command}:\n{list}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn create_get_round_trip_without_secrets() {
    let (redis, store) = setup().await;
    let id = created(&store).await;

    let task = store.get(&id).await.unwrap();
    assert_eq!(task.id, id);
    assert_eq!(task.status, Status::Normal);
    assert_eq!(task.create_time, 1_700_000_000);
    assert_eq!(task.spec, spec());
    assert_eq!(
        (
            task.start_time,
            task.finish_time,
            task.result.clone(),
            task.stats.clone()
        ),
        (None, None, None, None)
    );
    assert_eq!(
        (
            task.owner.clone(),
            task.fence,
            task.restarts,
            task.node.clone()
        ),
        (None, 0, 0, None)
    );
    assert!(
        !format!("{task:?}").contains(KEY),
        "the record must not carry the key"
    );
    assert_eq!(store.secrets(&id).await.unwrap(), secrets());
    assert!(
        !format!("{:?}", secrets()).contains(KEY),
        "secrets are redacted in Debug"
    );

    // Stored apart, as documented.
    let mut c = raw(&redis).await;
    let stored: String = redis::cmd("HGET")
        .arg(format!("{PREFIX}task:{id}"))
        .arg("secrets")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(stored.contains(KEY));

    // Queued on the record stage, counted as queued.
    assert_eq!(store.queued_count().await.unwrap(), 1);
    let jobs = store
        .read_stage(&StageQueue::shared(Stage::Record), "c1", 10, 0, 60_000)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].task_id, id);
}

#[tokio::test]
async fn unknown_tasks_are_not_found() {
    let (_redis, store) = setup().await;
    let id = new_id();
    let nf = |r: StoreError| assert_eq!(r, StoreError::NotFound(id.clone()));
    nf(store.get(&id).await.unwrap_err());
    nf(store.secrets(&id).await.unwrap_err());
    nf(store
        .transition(&id, Transition::new(Status::Normal, Status::Recording))
        .await
        .unwrap_err());
    nf(store.signal(&id, ControlMsg::Refresh).await.unwrap_err());
    nf(store
        .claim(&id, "w", &[Status::Normal], 0, 1000)
        .await
        .unwrap_err());
    nf(store.renew(&id, "w", 1, 0, 1000).await.unwrap_err());
    assert_eq!(store.take_expired(&id, 0).await.unwrap(), None);
    let err = store.get(&id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::TaskNotFound);
    assert!(err.to_string().contains(&id));
}

#[tokio::test]
async fn create_twice_and_queue_limit() {
    let (_redis, store) = setup().await;
    let a = new_id();
    store.create(&a, &spec(), &secrets(), 1, 2).await.unwrap();
    let err = store
        .create(&a, &spec(), &secrets(), 1, 2)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::AlreadyExists(a.clone()));
    assert_eq!(err.code(), ErrorCode::InvalidParam);

    store
        .create(&new_id(), &spec(), &secrets(), 2, 2)
        .await
        .unwrap();
    let c = new_id();
    let err = store
        .create(&c, &spec(), &secrets(), 3, 2)
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::QueueFull { limit: 2 });
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
    assert_eq!(
        store.get(&c).await.unwrap_err(),
        StoreError::NotFound(c.clone()),
        "nothing written"
    );

    // A claim takes a task out of the queue: room again.
    assert!(matches!(
        store
            .claim(&a, "w", &[Status::Normal], 0, 1000)
            .await
            .unwrap(),
        Claim::Acquired { .. }
    ));
    assert_eq!(store.queued_count().await.unwrap(), 1);
    store.create(&c, &spec(), &secrets(), 3, 2).await.unwrap();
}

#[tokio::test]
async fn transition_is_a_compare_and_set() {
    let (_redis, store) = setup().await;
    let id = created(&store).await;
    let t = Transition::new(Status::Normal, Status::Recording).with_time(TimeField::Start, 10);
    store.transition(&id, t.clone()).await.unwrap();
    let err = store.transition(&id, t).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            expected: Status::Normal,
            actual: Status::Recording
        }
    );
    assert_eq!(err.code(), ErrorCode::InvalidState);
    assert_eq!(
        store.queued_count().await.unwrap(),
        0,
        "leaving normal leaves the queue"
    );

    // Start and cancel times are kept once set; stop and finish times are overwritten.
    let task = store.get(&id).await.unwrap();
    assert_eq!(task.start_time, Some(10));
    store
        .transition(
            &id,
            Transition::new(Status::Recording, Status::Canceled)
                .with_time(TimeField::Start, 99)
                .with_time(TimeField::Cancel, 20)
                .with_time(TimeField::Stop, 21),
        )
        .await
        .unwrap();
    let result = TaskResult {
        error_code: Some("RecordFailed".into()),
        ..TaskResult::default()
    };
    let stats = TaskStats {
        frames_written: 42,
        ..TaskStats::default()
    };
    store
        .transition(
            &id,
            Transition::new(Status::Canceled, Status::Transcode)
                .with_time(TimeField::Cancel, 98)
                .with_time(TimeField::Stop, 22)
                .with_result(result.clone())
                .with_stats(stats.clone())
                .with_node("node-a"),
        )
        .await
        .unwrap();
    let task = store.get(&id).await.unwrap();
    assert_eq!(task.status, Status::Transcode);
    assert_eq!(
        (task.start_time, task.cancel_time, task.stop_time),
        (Some(10), Some(20), Some(22))
    );
    assert_eq!(task.stop_time_ms, Some(22_000), "a past second: its start");
    assert_eq!(
        (task.result, task.stats, task.node.as_deref()),
        (Some(result), Some(stats), Some("node-a"))
    );
}

/// The stop time is kept in milliseconds too (the name of an MP4 without TargetName), within the
/// second the caller gave.
#[tokio::test]
async fn the_stop_time_is_kept_in_milliseconds() {
    let (_redis, store) = setup().await;
    let id = created(&store).await;
    store
        .transition(&id, Transition::new(Status::Normal, Status::Recording))
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    store
        .transition(
            &id,
            Transition::new(Status::Recording, Status::Canceled).with_time(TimeField::Stop, now),
        )
        .await
        .unwrap();
    let task = store.get(&id).await.unwrap();
    assert_eq!(task.stop_time, Some(now));
    let ms = task.stop_time_ms.expect("stop_ms is set with stop_time");
    assert_eq!(ms / 1000, now, "{ms}");
}

#[tokio::test]
async fn illegal_transitions_are_refused_without_touching_redis() {
    let (mut redis, store) = setup().await;
    let id = created(&store).await;
    let err = store
        .transition(&id, Transition::new(Status::Normal, Status::Upload))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Illegal {
            from: Status::Normal,
            to: Status::Upload
        }
    );
    assert_eq!(err.code(), ErrorCode::InvalidState);
    assert_eq!(store.get(&id).await.unwrap().status, Status::Normal);

    // Not even a connection is needed to refuse it.
    redis.stop();
    let started = Instant::now();
    let err = store
        .transition(&id, Transition::new(Status::Finished, Status::Normal))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Illegal {
            from: Status::Finished,
            to: Status::Normal
        }
    );
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn leases_and_fencing() {
    let (redis, store) = setup().await;
    let id = created(&store).await;
    let t0 = 1_000_000;

    // w1 claims; w2 finds it busy; a status nobody expects is not claimable.
    let Claim::Acquired { fence: f1, task } = store
        .claim(&id, "w1", &[Status::Normal], t0, 5_000)
        .await
        .unwrap()
    else {
        panic!("w1 should get the lease")
    };
    assert_eq!(
        (f1, task.owner.as_deref(), task.status),
        (1, Some("w1"), Status::Normal)
    );
    assert_eq!(
        store
            .claim(&id, "w2", &[Status::Normal], t0 + 1_000, 5_000)
            .await
            .unwrap(),
        Claim::Busy
    );
    assert_eq!(
        store
            .claim(&id, "w2", &[Status::Recording], t0 + 1_000, 5_000)
            .await
            .unwrap(),
        Claim::NotClaimable(Status::Normal)
    );

    // Renewal extends the lease and reports the status.
    assert_eq!(
        store.renew(&id, "w1", f1, t0 + 3_000, 5_000).await.unwrap(),
        Status::Normal
    );
    assert_eq!(
        store
            .renew(&id, "w2", f1, t0 + 3_000, 5_000)
            .await
            .unwrap_err(),
        StoreError::LeaseLost
    );
    assert_eq!(
        store
            .renew(&id, "w1", f1 + 1, t0 + 3_000, 5_000)
            .await
            .unwrap_err(),
        StoreError::LeaseLost
    );
    assert!(
        store
            .expired_leases(t0 + 7_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.take_expired(&id, t0 + 7_000).await.unwrap(),
        None,
        "not expired yet"
    );

    // Expired: exactly one of two concurrent diagnose loops takes it.
    assert_eq!(
        store.expired_leases(t0 + 9_000, 10).await.unwrap(),
        vec![id.clone()]
    );
    let other = TaskStore::connect(&redis.url, PREFIX).await.unwrap(); // another worker
    let (a, b) = tokio::join!(
        store.take_expired(&id, t0 + 9_000),
        other.take_expired(&id, t0 + 9_000)
    );
    let taken: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(taken.len(), 1, "exactly one caller takes an expired lease");
    assert_eq!(
        (taken[0].owner.as_deref(), taken[0].fence),
        (Some("w1"), 1),
        "as it was: who stopped"
    );
    assert_eq!(store.get(&id).await.unwrap().owner, None, "lease cleared");
    assert!(
        store
            .expired_leases(t0 + 9_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.queued_count().await.unwrap(),
        1,
        "a normal task is queued again"
    );

    // The stale worker can no longer write.
    let stale = Transition::new(Status::Normal, Status::Recording).with_lease("w1", f1);
    assert_eq!(
        store.transition(&id, stale.clone()).await.unwrap_err(),
        StoreError::LeaseLost
    );

    // w2 takes over; the stale worker still cannot overwrite anything w2 writes.
    let Claim::Acquired { fence: f2, .. } = store
        .claim(&id, "w2", &[Status::Normal], t0 + 10_000, 5_000)
        .await
        .unwrap()
    else {
        panic!("w2 should get the lease")
    };
    assert_eq!(f2, 2);
    store
        .transition(
            &id,
            Transition::new(Status::Normal, Status::Recording).with_lease("w2", f2),
        )
        .await
        .unwrap();
    let mine = TaskStats {
        frames_written: 7,
        ..TaskStats::default()
    };
    store.set_stats(&id, "w2", f2, &mine).await.unwrap();
    let theirs = TaskStats {
        frames_written: 1,
        ..TaskStats::default()
    };
    assert_eq!(
        store.set_stats(&id, "w1", f1, &theirs).await.unwrap_err(),
        StoreError::LeaseLost
    );
    let late = Transition::new(Status::Recording, Status::Canceled).with_lease("w1", f1);
    assert_eq!(
        store.transition(&id, late).await.unwrap_err(),
        StoreError::LeaseLost
    );
    assert_eq!(
        store
            .renew(&id, "w1", f1, t0 + 11_000, 5_000)
            .await
            .unwrap_err(),
        StoreError::LeaseLost
    );
    assert_eq!(
        store.release(&id, "w1", f1).await.unwrap_err(),
        StoreError::LeaseLost
    );
    let task = store.get(&id).await.unwrap();
    assert_eq!(
        (task.status, task.stats, task.owner.as_deref()),
        (Status::Recording, Some(mine), Some("w2"))
    );

    // An API-side move is seen by the owner's next heartbeat.
    store
        .transition(&id, Transition::new(Status::Recording, Status::Paused))
        .await
        .unwrap();
    assert_eq!(
        store
            .renew(&id, "w2", f2, t0 + 12_000, 5_000)
            .await
            .unwrap(),
        Status::Paused
    );

    // An expired lease nobody took yet is simply taken over by a new claim (fence moves on).
    let Claim::Acquired { fence: f3, .. } = store
        .claim(&id, "w3", &[Status::Paused], t0 + 60_000, 5_000)
        .await
        .unwrap()
    else {
        panic!("w3 should take over the expired lease")
    };
    assert_eq!(f3, 3);
    assert_eq!(
        store
            .renew(&id, "w2", f2, t0 + 60_000, 5_000)
            .await
            .unwrap_err(),
        StoreError::LeaseLost
    );

    // Release clears the owner and the lease index, keeps the fence.
    store.release(&id, "w3", f3).await.unwrap();
    let task = store.get(&id).await.unwrap();
    assert_eq!((task.owner, task.fence), (None, 3));
    assert!(store.expired_leases(i64::MAX, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn redispatch_counts_restarts() {
    let (_redis, store) = setup().await;
    let (id, fence) = recording(&store, "w1", 0).await;
    assert_eq!(store.queued_count().await.unwrap(), 0);
    let t = Transition::new(Status::Recording, Status::Normal)
        .with_lease("w1", fence)
        .with_enqueue(StageQueue::shared(Stage::Record))
        .releasing_lease()
        .counting_restart();
    store.transition(&id, t).await.unwrap();
    let task = store.get(&id).await.unwrap();
    assert_eq!(
        (task.status, task.restarts, task.owner, task.fence),
        (Status::Normal, 1, None, 1)
    );
    assert_eq!(store.queued_count().await.unwrap(), 1);
    assert!(store.expired_leases(i64::MAX, 10).await.unwrap().is_empty());
    let jobs = store
        .read_stage(&StageQueue::shared(Stage::Record), "c", 10, 0, 60_000)
        .await
        .unwrap();
    assert_eq!(
        jobs.iter().filter(|j| j.task_id == id).count(),
        2,
        "created, then queued again"
    );

    // A delivery stage whose worker stopped is queued again on its node, status unchanged.
    let (id, fence) = recording(&store, "w2", 0).await;
    store
        .transition(
            &id,
            Transition::new(Status::Recording, Status::Canceled).with_lease("w2", fence),
        )
        .await
        .unwrap();
    store
        .transition(
            &id,
            Transition::new(Status::Canceled, Status::Transcode).with_lease("w2", fence),
        )
        .await
        .unwrap();
    let taken = store
        .take_expired(&id, 60_000)
        .await
        .unwrap()
        .expect("expired");
    assert_eq!(taken.status, Status::Transcode);
    let q = StageQueue::on_node(Stage::Transcode, "node-a");
    store.requeue(&id, &q).await.unwrap();
    let task = store.get(&id).await.unwrap();
    assert_eq!(
        (task.status, task.restarts, task.owner),
        (Status::Transcode, 1, None)
    );
    let jobs = store.read_stage(&q, "c", 10, 0, 60_000).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.task_id.as_str()).collect::<Vec<_>>(),
        vec![id.as_str()]
    );
    let unknown = new_id();
    assert_eq!(
        store.requeue(&unknown, &q).await.unwrap_err(),
        StoreError::NotFound(unknown.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transitions_have_exactly_one_winner() {
    let (_redis, store) = setup().await;
    let (id, _) = recording(&store, "w1", 0).await;

    let mut handles = Vec::new();
    for i in 0..20 {
        let (store, id) = (store.clone(), id.clone());
        handles.push(tokio::spawn(async move {
            let t = if i % 2 == 0 {
                Transition::new(Status::Recording, Status::Paused).with_control(ControlMsg::Pause)
            } else {
                Transition::new(Status::Recording, Status::Canceled)
                    .with_control(ControlMsg::Stop)
                    .with_time(TimeField::Cancel, 1_000 + i)
            };
            let to = t.to();
            (to, store.transition(&id, t).await)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            (to, Ok(())) => winners.push(to),
            (_, Err(e)) => losers.push(e),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner, got {winners:?}");
    let winner = winners[0];
    assert_eq!(losers.len(), 19);
    for e in losers {
        assert_eq!(
            e,
            StoreError::Conflict {
                expected: Status::Recording,
                actual: winner
            }
        );
    }

    let task = store.get(&id).await.unwrap();
    assert_eq!(task.status, winner);
    assert_eq!(task.cancel_time.is_some(), winner == Status::Canceled);
    let msgs = store.read_controls(&id, "0", 0).await.unwrap();
    let expected = if winner == Status::Paused {
        ControlMsg::Pause
    } else {
        ControlMsg::Stop
    };
    assert_eq!(
        msgs.into_iter().map(|(_, m)| m).collect::<Vec<_>>(),
        vec![expected]
    );
}

#[tokio::test]
async fn stage_queue_reclaims_unacked_entries() {
    let (redis, store) = setup().await;
    let q = StageQueue::shared(Stage::Record);
    let id = created(&store).await;

    let jobs = store.read_stage(&q, "c1", 10, 0, 60_000).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].task_id, id);

    // Delivered to c1 and not acked: nobody else gets it while it is fresh.
    let started = Instant::now();
    assert!(
        store
            .read_stage(&q, "c2", 10, 200, 60_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "it blocked"
    );

    // c1 died: after min_idle another consumer reclaims it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let again = store.read_stage(&q, "c2", 10, 0, 100).await.unwrap();
    assert_eq!(again, jobs);

    store.ack(&q, &again[0].entry_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        store
            .read_stage(&q, "c3", 10, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let mut c = raw(&redis).await;
    let len: u64 = redis::cmd("XLEN")
        .arg(format!("{PREFIX}stream:record"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(len, 0, "acked entries are deleted");

    // A blocked reader wakes up for a transition's enqueue on a node queue.
    let node_q = StageQueue::on_node(Stage::Transcode, "node-a");
    let reader = {
        let (store, node_q) = (store.clone(), node_q.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            (
                store.read_stage(&node_q, "c1", 10, 3_000, 60_000).await,
                started.elapsed(),
            )
        })
    };
    wait_blocked(&redis, "xreadgroup").await;
    // The blocked read has its own connection: other calls are not held up meanwhile.
    let started = Instant::now();
    store.ping().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));

    let (id2, fence) = recording(&store, "w", 0).await;
    store
        .transition(
            &id2,
            Transition::new(Status::Recording, Status::Canceled).with_lease("w", fence),
        )
        .await
        .unwrap();
    store
        .transition(
            &id2,
            Transition::new(Status::Canceled, Status::Transcode)
                .with_lease("w", fence)
                .with_enqueue(node_q.clone()),
        )
        .await
        .unwrap();
    let (jobs, waited) = reader.await.unwrap();
    let jobs = jobs.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.task_id.as_str()).collect::<Vec<_>>(),
        vec![id2.as_str()]
    );
    assert!(
        waited < Duration::from_millis(2_500),
        "woken by the entry, waited {waited:?}"
    );
    let len: u64 = redis::cmd("XLEN")
        .arg(format!("{PREFIX}stream:transcode:node-a"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(len, 1);
}

#[tokio::test]
async fn control_stream_with_blocking_read() {
    let (redis, store) = setup().await;
    let (id, _) = recording(&store, "w", 0).await;
    assert!(store.read_controls(&id, "0", 0).await.unwrap().is_empty());

    let reader = {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            (
                store.read_controls(&id, "$", 5_000).await,
                started.elapsed(),
            )
        })
    };
    // "$" reads only what arrives after the read began: signal once it is waiting.
    wait_blocked(&redis, "xread").await;
    store.signal(&id, ControlMsg::Refresh).await.unwrap();
    let (msgs, waited) = reader.await.unwrap();
    let msgs = msgs.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].1, ControlMsg::Refresh);
    assert!(
        waited < Duration::from_secs(2),
        "woken by the message, waited {waited:?}"
    );
    assert_eq!(
        store.get(&id).await.unwrap().status,
        Status::Recording,
        "signal keeps the status"
    );

    store
        .transition(
            &id,
            Transition::new(Status::Recording, Status::Paused).with_control(ControlMsg::Pause),
        )
        .await
        .unwrap();
    let next = store.read_controls(&id, &msgs[0].0, 0).await.unwrap();
    assert_eq!(
        next.iter().map(|(_, m)| *m).collect::<Vec<_>>(),
        vec![ControlMsg::Pause]
    );
    let all = store.read_controls(&id, "0", 0).await.unwrap();
    assert_eq!(
        all.iter().map(|(_, m)| *m).collect::<Vec<_>>(),
        vec![ControlMsg::Refresh, ControlMsg::Pause]
    );

    // Nothing new: a short blocking read times out empty.
    let started = Instant::now();
    assert!(
        store
            .read_controls(&id, &next[0].0, 300)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn finished_tasks_expire() {
    let (redis, store) = setup().await;
    let store = store.with_retention(3_600);
    let (id, fence) = recording(&store, "w", 0).await;
    store.signal(&id, ControlMsg::Refresh).await.unwrap();
    let c = raw(&redis).await;
    let expiry = |id: String| {
        let mut c = c.clone();
        async move {
            redis::cmd("ZSCORE")
                .arg(format!("{PREFIX}expiry"))
                .arg(id)
                .query_async::<Option<i64>>(&mut c)
                .await
                .unwrap()
        }
    };
    assert_eq!(expiry(id.clone()).await, None);

    let result = TaskResult {
        error_code: Some("PageCrashed".into()),
        ..TaskResult::default()
    };
    store
        .transition(
            &id,
            Transition::new(Status::Recording, Status::Finished).with_result(result.clone()),
        )
        .await
        .unwrap();
    let task = store.get(&id).await.unwrap();
    assert_eq!(task.status, Status::Finished);
    let finished = task.finish_time.expect("finish time defaults to now");
    assert!(finished > 1_600_000_000);
    assert_eq!((task.owner, task.result), (None, Some(result)));
    // Kept for the retention period: in the expiry index (no Redis TTL, which the counts
    // could not follow).
    assert_eq!(expiry(id.clone()).await, Some(finished + 3_600));
    let mut c2 = c.clone();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{PREFIX}task:{id}"))
        .query_async(&mut c2)
        .await
        .unwrap();
    assert_eq!(ttl, -1);
    assert_eq!(store.trim_expired(finished, 100).await.unwrap(), 0);
    assert!(
        store.expired_leases(i64::MAX, 10).await.unwrap().is_empty(),
        "lease released"
    );
    assert_eq!(
        store.renew(&id, "w", fence, 0, 1_000).await.unwrap_err(),
        StoreError::LeaseLost
    );

    // Finished from normal (Stop before start): leaves the queue; an explicit finish time wins.
    let id2 = created(&store).await;
    assert_eq!(store.queued_count().await.unwrap(), 1);
    store
        .transition(
            &id2,
            Transition::new(Status::Normal, Status::Finished).with_time(TimeField::Finish, 1_234),
        )
        .await
        .unwrap();
    assert_eq!(store.queued_count().await.unwrap(), 0);
    assert_eq!(store.get(&id2).await.unwrap().finish_time, Some(1_234));
    assert!(expiry(id2.clone()).await.is_some_and(|t| t > 1_600_000_000));

    // With a one-second retention, the task and its control stream go once it is over, and
    // leave the counts.
    let short = store.clone().with_retention(1);
    let (id3, _) = recording(&short, "w", 0).await;
    short.signal(&id3, ControlMsg::Refresh).await.unwrap();
    short
        .transition(&id3, Transition::new(Status::Recording, Status::Finished))
        .await
        .unwrap();
    assert_eq!(
        short.status_counts().await.unwrap().get("finished"),
        Some(&3)
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(short.trim_expired(now, 100).await.unwrap(), 1);
    assert_eq!(
        short.get(&id3).await.unwrap_err(),
        StoreError::NotFound(id3.clone())
    );
    let mut c3 = c.clone();
    let ctl: i64 = redis::cmd("EXISTS")
        .arg(format!("{PREFIX}ctl:{id3}"))
        .query_async(&mut c3)
        .await
        .unwrap();
    assert_eq!(ctl, 0);
    assert_eq!(expiry(id3).await, None);
    assert_eq!(
        short.status_counts().await.unwrap().get("finished"),
        Some(&2)
    );
    // The others are kept.
    assert_eq!(store.get(&id).await.unwrap().status, Status::Finished);
}

#[tokio::test]
async fn outage_is_unavailable_then_recovers() {
    let (mut redis, store) = setup().await;
    let id = created(&store).await;
    let q = StageQueue::shared(Stage::Record);
    assert_eq!(
        store
            .read_stage(&q, "c", 10, 0, 60_000)
            .await
            .unwrap()
            .len(),
        1
    );

    redis.stop();
    let started = Instant::now();
    let err = store.get(&id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::ServiceUnavailable);
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", redis.port())),
        "{err}"
    );
    assert!(matches!(
        store.ping().await.unwrap_err(),
        StoreError::Unavailable(_)
    ));
    assert!(matches!(
        store.read_controls(&id, "$", 1_000).await.unwrap_err(),
        StoreError::Unavailable(_)
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // Back (empty: no persistence): the same store works again, scripts and groups included.
    redis.restart();
    store.ping().await.expect("first call after the restart");
    assert_eq!(
        store.get(&id).await.unwrap_err(),
        StoreError::NotFound(id.clone())
    );
    let id2 = created(&store).await;
    let jobs = store.read_stage(&q, "c", 10, 0, 60_000).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.task_id.as_str()).collect::<Vec<_>>(),
        vec![id2.as_str()]
    );
    store.signal(&id2, ControlMsg::Refresh).await.unwrap();
    assert_eq!(
        store.read_controls(&id2, "0", 1_000).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_without_the_password() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = TaskStore::connect(&format!("redis://:hunter2@127.0.0.1:{port}/"), PREFIX)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");

    let err = TaskStore::connect("http://nowhere/", PREFIX)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn unresponsive_redis_times_out_as_unavailable() {
    let (mut redis, store) = setup().await;
    let id = created(&store).await;
    redis.freeze();
    let started = Instant::now();
    let err = store.get(&id).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    redis.thaw();
    assert_eq!(store.get(&id).await.unwrap().id, id);
}

#[tokio::test]
async fn callback_outbox_defers_under_the_lease_and_requeues_each_attempt_once() {
    let (_redis, store) = setup().await;
    let (id, fence) = recording(&store, "w1", 1_000).await;
    for (from, to) in [
        (Status::Recording, Status::Canceled),
        (Status::Canceled, Status::Transcode),
        (Status::Transcode, Status::Upload),
        (Status::Upload, Status::Callback),
    ] {
        store
            .transition(&id, Transition::new(from, to).with_lease("w1", fence))
            .await
            .unwrap();
    }
    let delivery = CallbackDelivery {
        attempts: 1,
        last_error: Some("the receiver answered HTTP 503".into()),
        first_attempt_ms: 1_000,
        next_attempt_ms: Some(5_000),
        event_id: "e1".into(),
        ..CallbackDelivery::default()
    };
    // A stale worker cannot reschedule.
    assert!(matches!(
        store
            .defer_callback(&id, "w2", fence, &delivery, None, 5_000)
            .await,
        Err(StoreError::LeaseLost)
    ));
    store
        .defer_callback(&id, "w1", fence, &delivery, None, 5_000)
        .await
        .unwrap();
    let task = store.get(&id).await.unwrap();
    assert_eq!(task.status, Status::Callback);
    assert_eq!(task.callback, Some(delivery));
    assert_eq!(task.owner, None, "the lease is released while waiting");
    assert_eq!(store.pending_callbacks().await.unwrap(), 1);

    // Not due yet: stays in the outbox.
    assert_eq!(store.release_due_callbacks(4_999, 10).await.unwrap(), 0);
    // Due, with two workers releasing at once: queued exactly once.
    let (a, b) = tokio::join!(
        store.release_due_callbacks(5_000, 10),
        store.release_due_callbacks(5_000, 10)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(store.pending_callbacks().await.unwrap(), 0);
    let jobs = store
        .read_stage(&StageQueue::shared(Stage::Callback), "c1", 10, 0, 60_000)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].task_id, id);
}

/// `set_callback` stores the delivery about to be attempted (its event id, its attempt count)
/// under the lease, without releasing it or queueing anything: a worker that takes the delivery
/// over reads the same event id. A stale worker cannot store one.
#[tokio::test]
async fn a_callback_attempt_is_stored_under_the_lease_before_it_is_sent() {
    let (_redis, store) = setup().await;
    let (id, fence) = recording(&store, "w1", 1_000).await;
    for (from, to) in [
        (Status::Recording, Status::Canceled),
        (Status::Canceled, Status::Transcode),
        (Status::Transcode, Status::Upload),
        (Status::Upload, Status::Callback),
    ] {
        store
            .transition(&id, Transition::new(from, to).with_lease("w1", fence))
            .await
            .unwrap();
    }
    let delivery = CallbackDelivery {
        attempts: 1,
        first_attempt_ms: 1_000,
        event_id: "e-first".into(),
        ..CallbackDelivery::default()
    };
    assert!(matches!(
        store.set_callback(&id, "w2", fence, &delivery).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store.set_callback(&id, "w1", fence + 1, &delivery).await,
        Err(StoreError::LeaseLost)
    ));
    assert_eq!(store.get(&id).await.unwrap().callback, None);
    store
        .set_callback(&id, "w1", fence, &delivery)
        .await
        .unwrap();
    let task = store.get(&id).await.unwrap();
    assert_eq!(task.callback, Some(delivery));
    assert_eq!(task.status, Status::Callback);
    assert_eq!(task.owner.as_deref(), Some("w1"), "the lease is kept");
    assert_eq!(store.pending_callbacks().await.unwrap(), 0);
    assert!(matches!(
        store
            .set_callback("no-such-task", "w1", fence, &CallbackDelivery::default())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// `hand_over` (a worker shutting down): stats stored, lease given up, the task queued on the
/// node's record queue with its status kept, claimable by another worker at once, and ended by
/// the diagnose loop's `take_expired` only after the handover deadline. A stale worker cannot
/// hand over; a task not started yet simply waits in the shared queue again.
#[tokio::test]
async fn hand_over_gives_a_running_task_to_another_worker() {
    let (_redis, store) = setup().await;
    let node_q = StageQueue::on_node(Stage::Record, "node-a");
    let (id, fence) = recording(&store, "w1", 0).await;
    let stats = TaskStats {
        recorded_duration: 3.5,
        frames_written: 105,
        ..TaskStats::default()
    };
    store
        .hand_over(&id, "w1", fence, Some(&stats), &node_q, 300_000)
        .await
        .unwrap();
    let task = store.get(&id).await.unwrap();
    // A handover is not a restart: the worker counts it in its stats.
    assert_eq!(
        (task.status, task.owner.clone(), task.restarts),
        (Status::Recording, None, 0)
    );
    assert_eq!(task.stats.as_ref().map(|s| s.frames_written), Some(105));
    // Not expired before the deadline; after it, the diagnose loop gets it, without owner.
    assert!(store.take_expired(&id, 299_000).await.unwrap().is_none());
    let jobs = store.read_stage(&node_q, "c", 10, 0, 60_000).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.task_id.as_str()).collect::<Vec<_>>(),
        vec![id.as_str()]
    );
    // The old worker's lease is gone: it cannot hand over (or write) again.
    assert_eq!(
        store
            .hand_over(&id, "w1", fence, None, &node_q, 300_000)
            .await
            .unwrap_err(),
        StoreError::LeaseLost
    );
    // Another worker takes it over right away, with the live status.
    let Claim::Acquired { fence: f2, task } = store
        .claim(
            &id,
            "w2",
            &[Status::Recording, Status::Paused],
            1_000,
            10_000,
        )
        .await
        .unwrap()
    else {
        panic!("the handed-over task is claimable")
    };
    assert!(f2 > fence);
    assert_eq!(task.status, Status::Recording);

    // Nobody continues a second one: after the deadline, take_expired hands it over with no owner.
    let (id2, fence2) = recording(&store, "w3", 0).await;
    store
        .hand_over(&id2, "w3", fence2, None, &node_q, 5_000)
        .await
        .unwrap();
    let taken = store
        .take_expired(&id2, 6_000)
        .await
        .unwrap()
        .expect("expired after the deadline");
    assert_eq!((taken.status, taken.owner), (Status::Recording, None));

    // A task not started yet goes back to the shared queue and the queued index, no deadline.
    let id3 = created(&store).await;
    let shared = StageQueue::shared(Stage::Record);
    let _ = store
        .read_stage(&shared, "c", 100, 0, 60_000)
        .await
        .unwrap();
    let Claim::Acquired { fence: f3, .. } = store
        .claim(&id3, "w4", &[Status::Normal], 0, 10_000)
        .await
        .unwrap()
    else {
        panic!("claim failed")
    };
    let queued_before = store.queued_count().await.unwrap();
    store
        .hand_over(&id3, "w4", f3, None, &shared, 5_000)
        .await
        .unwrap();
    assert_eq!(store.queued_count().await.unwrap(), queued_before + 1);
    assert!(store.take_expired(&id3, i64::MAX).await.unwrap().is_none());
    let task = store.get(&id3).await.unwrap();
    assert_eq!((task.status, task.owner), (Status::Normal, None));
    let jobs = store.read_stage(&shared, "c", 10, 0, 60_000).await.unwrap();
    assert!(jobs.iter().any(|j| j.task_id == id3));
}

/// The counts `/metrics` reports: tasks by status and stage queue depths.
#[tokio::test]
async fn status_counts_and_queue_depths() {
    let (_redis, store) = setup().await;
    let (_a, _) = recording(&store, "w1", 0).await;
    let _b = created(&store).await;
    let _c = created(&store).await;
    let counts = store.status_counts().await.unwrap();
    assert_eq!(counts.get("recording"), Some(&1));
    assert_eq!(counts.get("normal"), Some(&2));
    let depths = store.queue_depths().await.unwrap();
    // Three entries were added to the record stream; none acknowledged.
    assert_eq!(
        depths,
        vec![(("record".to_string(), String::new()), 3)],
        "{depths:?}"
    );
    assert_eq!(
        store
            .queue_len(&StageQueue::shared(Stage::Record))
            .await
            .unwrap(),
        3
    );
}

/// A spec whose result goes to `dir`/`name` (None: the defaults) at `location`.
fn spec_at(
    dir: Option<&str>,
    name: Option<&str>,
    muxer: Muxer,
    location: Option<&str>,
) -> StartSpec {
    StartSpec {
        muxer,
        output: OutputTarget {
            target_dir: dir.map(String::from),
            target_name: name.map(String::from),
            location: location.map(String::from),
            ..OutputTarget::default()
        },
        ..spec()
    }
}

async fn create_at(store: &TaskStore, spec: &StartSpec) -> Result<String, StoreError> {
    let id = new_id();
    store
        .create(&id, spec, &secrets(), 1_700_000_000, 100)
        .await
        .map(|()| id)
}

/// Two tasks in progress never aim at the same result: the second Start for a place a task in
/// progress holds is refused (OutputInUse, 409), in the same script that creates the task. Once
/// the holder no longer writes (callback or finished), the place is free: replacing a finished
/// task's result by name is allowed.
#[tokio::test]
async fn result_places_are_reserved_while_a_task_is_in_progress() {
    let (redis, store) = setup().await;
    let lesson = spec_at(Some("class/7"), Some("lesson"), Muxer::Mp4, None);
    let a = create_at(&store, &lesson).await.unwrap();
    let err = create_at(&store, &lesson).await.unwrap_err();
    assert_eq!(err, StoreError::OutputInUse("class/7/lesson.mp4".into()));
    assert_eq!(err.code(), ErrorCode::OutputInUse);
    assert_eq!(err.code().http_status(), 409);
    assert_eq!(
        store.queued_count().await.unwrap(),
        1,
        "nothing was created"
    );
    // Another name, the other container, or another storage location: no conflict.
    create_at(
        &store,
        &spec_at(Some("class/7"), Some("lesson-2"), Muxer::Mp4, None),
    )
    .await
    .unwrap();
    create_at(
        &store,
        &spec_at(Some("class/7"), Some("lesson"), Muxer::Hls, None),
    )
    .await
    .unwrap();
    create_at(
        &store,
        &spec_at(
            Some("class/7"),
            Some("lesson"),
            Muxer::Mp4,
            Some("s3 http://h:1 b"),
        ),
    )
    .await
    .unwrap();
    // MP4s without a name are named after their stop time: no reservation.
    let unnamed = spec_at(Some("class/7"), None, Muxer::Mp4, None);
    create_at(&store, &unnamed).await.unwrap();
    create_at(&store, &unnamed).await.unwrap();
    // HLS without a name is playlist.m3u8: two of them in one directory conflict.
    let room = spec_at(Some("room"), None, Muxer::Hls, None);
    let hls = create_at(&store, &room).await.unwrap();
    assert_eq!(
        create_at(&store, &room).await.unwrap_err(),
        StoreError::OutputInUse("room/playlist.m3u8".into())
    );

    // The holder reaches callback (it writes no more): free. Finished: free.
    store
        .transition(&a, Transition::new(Status::Normal, Status::Callback))
        .await
        .unwrap();
    let b = create_at(&store, &lesson).await.unwrap();
    assert_eq!(
        create_at(&store, &lesson).await.unwrap_err().code(),
        ErrorCode::OutputInUse
    );
    store
        .transition(&hls, Transition::new(Status::Normal, Status::Finished))
        .await
        .unwrap();
    create_at(&store, &room).await.unwrap();

    // A reservation whose holder is gone (its hash expired or was deleted) is taken over.
    let mut c = raw(&redis).await;
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{PREFIX}task:{b}"))
        .query_async(&mut c)
        .await
        .unwrap();
    create_at(&store, &lesson).await.unwrap();
    // Released places are deleted, not left behind.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}result:*"))
        .query_async(&mut c)
        .await
        .unwrap();
    // lesson, lesson-2, the HLS lesson, the lesson in the bucket, room.
    assert_eq!(keys.len(), 5, "{keys:?}");
}

/// A task's own directory (the TaskID, its default TargetDir) is its own while it is in progress:
/// another task cannot aim into it.
#[tokio::test]
async fn a_task_in_progress_owns_its_id_directory() {
    let (_redis, store) = setup().await;
    let a = create_at(&store, &spec_at(None, None, Muxer::Hls, None))
        .await
        .unwrap();
    for dir in [a.clone(), format!("{a}/sub")] {
        for name in [Some("x"), None] {
            let err = create_at(&store, &spec_at(Some(&dir), name, Muxer::Hls, None))
                .await
                .unwrap_err();
            assert_eq!(
                err,
                StoreError::OutputInUse(format!("{a}/")),
                "{dir} {name:?}"
            );
        }
    }
    // Elsewhere, it is not A's.
    create_at(
        &store,
        &spec_at(Some(&a), None, Muxer::Hls, Some("s3 http://h:1 b")),
    )
    .await
    .unwrap();
    store
        .transition(&a, Transition::new(Status::Normal, Status::Finished))
        .await
        .unwrap();
    create_at(&store, &spec_at(Some(&a), Some("x"), Muxer::Hls, None))
        .await
        .unwrap();
}

/// Many Starts for one place at once: exactly one wins.
#[tokio::test]
async fn concurrent_starts_for_one_place_have_exactly_one_winner() {
    let (_redis, store) = setup().await;
    let lesson = spec_at(Some("race"), Some("lesson"), Muxer::Mp4, None);
    let tries = (0..16).map(|_| {
        let (store, lesson) = (store.clone(), lesson.clone());
        tokio::spawn(async move { create_at(&store, &lesson).await })
    });
    let results: Vec<_> = futures::future::join_all(tries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert_eq!(
            r.as_ref().unwrap_err(),
            &StoreError::OutputInUse("race/lesson.mp4".into())
        );
    }
    assert_eq!(store.queued_count().await.unwrap(), 1);
}

/// Error messages a task keeps (Result.ErrorMessage, Callback.LastError) never show the server's
/// absolute paths: the store cuts them to their last component when it writes them.
#[tokio::test]
async fn kept_messages_show_no_server_paths() {
    let (_redis, store) = setup().await;
    let id = created(&store).await;
    let result = TaskResult {
        error_code: Some("TranscodeFailed".into()),
        error_message: Some(
            "reading /var/lib/pagecast/work/6f1c/seg_000003.ts: No such file or directory \
             (concatf:/var/lib/pagecast/work/6f1c/parts-000000.txt)"
                .into(),
        ),
        ..TaskResult::default()
    };
    let delivery = CallbackDelivery {
        last_error: Some("could not read /etc/pagecast/secret".into()),
        ..CallbackDelivery::default()
    };
    store
        .transition(
            &id,
            Transition::new(Status::Normal, Status::Callback)
                .with_result(result)
                .with_callback(delivery),
        )
        .await
        .unwrap();
    let task = store.get(&id).await.unwrap();
    assert_eq!(
        task.result.unwrap().error_message.as_deref(),
        Some("reading …/seg_000003.ts: No such file or directory (concatf:…/parts-000000.txt)")
    );
    assert_eq!(
        task.callback.unwrap().last_error.as_deref(),
        Some("could not read …/secret")
    );
}

/// A client's EncryptKey stays in Redis while the task runs (a worker taking it over encrypts
/// with it) and is deleted when the task finishes, whichever way it finishes.
#[tokio::test]
async fn the_encrypt_key_is_deleted_when_the_task_finishes() {
    let (redis, store) = setup().await;
    let c = raw(&redis).await;
    let stored = |id: String| {
        let mut c = c.clone();
        async move {
            let all: Vec<String> = redis::cmd("HGETALL")
                .arg(format!("{PREFIX}task:{id}"))
                .query_async(&mut c)
                .await
                .unwrap();
            all.join(" ")
        }
    };
    // Delivered: through every stage.
    let (id, fence) = recording(&store, "w1", 0).await;
    for (from, to) in [
        (Status::Recording, Status::Canceled),
        (Status::Canceled, Status::Transcode),
        (Status::Transcode, Status::Upload),
        (Status::Upload, Status::Callback),
    ] {
        store
            .transition(&id, Transition::new(from, to).with_lease("w1", fence))
            .await
            .unwrap();
        assert_eq!(
            store.secrets(&id).await.unwrap(),
            secrets(),
            "kept while {to}"
        );
    }
    store
        .transition(
            &id,
            Transition::new(Status::Callback, Status::Finished).with_lease("w1", fence),
        )
        .await
        .unwrap();
    assert!(!stored(id.clone()).await.contains(KEY), "the key is gone");
    assert_eq!(
        store.secrets(&id).await.unwrap_err(),
        StoreError::NotFound(id.clone())
    );
    assert_eq!(store.get(&id).await.unwrap().status, Status::Finished);
    // Stopped before it began, and failed: the same.
    let stopped = created(&store).await;
    store
        .transition(&stopped, Transition::new(Status::Normal, Status::Finished))
        .await
        .unwrap();
    assert!(!stored(stopped).await.contains(KEY));
    let (failed, fence) = recording(&store, "w2", 0).await;
    store
        .transition(
            &failed,
            Transition::new(Status::Recording, Status::Finished)
                .with_lease("w2", fence)
                .with_result(TaskResult {
                    error_code: Some("RecordFailed".into()),
                    ..TaskResult::default()
                }),
        )
        .await
        .unwrap();
    assert!(!stored(failed).await.contains(KEY));
}

/// A worker that stops beating loses its recording before the lease runs out (issue 23: a
/// killed worker is replaced within its liveness period): exactly one of several diagnose loops
/// takes the task, only while the worker is silent and still holds it, and the silent worker,
/// should it come back (it was only stalled), can write nothing more: fencing stays exact.
#[tokio::test]
async fn a_silent_workers_task_is_taken_before_its_lease_expires_and_it_is_fenced_out() {
    let (redis, store) = setup().await;
    let t0 = 2_000_000;
    // The lease lasts 10 s; the worker beats with a liveness of 2 s.
    let (id, f1) = recording(&store, "w1", t0).await;
    store
        .beat_worker("w1", std::slice::from_ref(&id), 30_000, t0 + 2_000)
        .await
        .unwrap();
    store
        .beat_worker("w2", &[], 30_000, t0 + 2_000)
        .await
        .unwrap();

    // Alive: nobody is silent, and its task cannot be taken.
    assert!(
        store
            .silent_workers(t0 + 1_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.take_orphaned(&id, "w1", t0 + 1_000).await.unwrap(),
        None
    );

    // It beats again: still alive at t0 + 3 s, when it would have been silent without the beat.
    store
        .beat_worker("w1", std::slice::from_ref(&id), 30_000, t0 + 3_500)
        .await
        .unwrap();
    store
        .beat_worker("w2", &[], 30_000, t0 + 10_000)
        .await
        .unwrap();
    assert!(
        store
            .silent_workers(t0 + 3_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.take_orphaned(&id, "w1", t0 + 3_000).await.unwrap(),
        None
    );

    // It stops beating: silent from t0 + 3.5 s on, while its lease runs until t0 + 10 s.
    let now = t0 + 4_000;
    assert_eq!(store.silent_workers(now, 10).await.unwrap(), vec!["w1"]);
    assert_eq!(
        store.worker_tasks("w1").await.unwrap(),
        Some(vec![id.clone()]),
        "its announcement lives on (two lease periods) so its tasks can be found"
    );
    assert_eq!(
        store.take_expired(&id, now).await.unwrap(),
        None,
        "lease not expired"
    );
    // Only its own tasks are taken through it.
    assert_eq!(store.take_orphaned(&id, "w2", now).await.unwrap(), None);
    let other = TaskStore::connect(&redis.url, PREFIX).await.unwrap(); // another worker's loop
    let (a, b) = tokio::join!(
        store.take_orphaned(&id, "w1", now),
        other.take_orphaned(&id, "w1", now)
    );
    let taken: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(taken.len(), 1, "exactly one caller takes the task");
    assert_eq!(
        (taken[0].owner.as_deref(), taken[0].fence, taken[0].status),
        (Some("w1"), f1, Status::Recording),
        "as it was: who stopped"
    );
    let task = store.get(&id).await.unwrap();
    assert_eq!((task.owner, task.status), (None, Status::Recording));
    assert!(
        store.expired_leases(i64::MAX, 10).await.unwrap().is_empty(),
        "lease cleared"
    );

    // The next worker claims it (its record queue entry) and records on.
    let Claim::Acquired { fence: f2, .. } = store
        .claim(&id, "w2", &[Status::Recording], now + 100, 10_000)
        .await
        .unwrap()
    else {
        panic!("w2 should get the lease")
    };
    assert_eq!(f2, f1 + 1);

    // w1 was only stalled and comes back: it beats again, but whatever it tries is refused.
    store
        .beat_worker("w1", std::slice::from_ref(&id), 30_000, now + 5_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .renew(&id, "w1", f1, now + 200, 10_000)
            .await
            .unwrap_err(),
        StoreError::LeaseLost
    );
    let stale = TaskStats {
        frames_written: 1,
        ..TaskStats::default()
    };
    assert_eq!(
        store.set_stats(&id, "w1", f1, &stale).await.unwrap_err(),
        StoreError::LeaseLost
    );
    let late = Transition::new(Status::Recording, Status::Canceled).with_lease("w1", f1);
    assert_eq!(
        store.transition(&id, late).await.unwrap_err(),
        StoreError::LeaseLost
    );
    // Its task is w2's now: however silent w1 becomes again, the task is not taken through it.
    assert_eq!(
        store.take_orphaned(&id, "w1", now + 60_000).await.unwrap(),
        None
    );
    assert_eq!(
        store.renew(&id, "w2", f2, now + 300, 10_000).await.unwrap(),
        Status::Recording
    );

    // A silent worker with nothing left is dropped from the liveness set; one that stops
    // cleanly leaves it at once.
    store.forget_silent_worker("w1").await.unwrap();
    assert!(
        store
            .silent_workers(i64::MAX, 10)
            .await
            .unwrap()
            .iter()
            .all(|w| w != "w1")
    );
    store.forget_worker("w2").await.unwrap();
    assert!(store.silent_workers(i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.worker_tasks("w2").await.unwrap(), None);
}

/// The record loop's read of its node's queue and the shared one at once: an entry in either is
/// seen as soon as it arrives (the blocking read waits on both), the node's comes first, and a
/// job put back is read again by the next reader.
#[tokio::test]
async fn one_blocking_read_sees_an_entry_in_any_of_several_queues() {
    let (redis, store) = setup().await;
    let node = StageQueue::on_node(Stage::Record, "n1");
    let shared = StageQueue::shared(Stage::Record);
    let queues = [node.clone(), shared.clone()];
    // Two tasks, created (queued on the shared queue, where a Start puts them) and taken.
    let (a, b) = (created(&store).await, created(&store).await);
    for job in store
        .read_stage(&shared, "c0", 10, 0, 60_000)
        .await
        .unwrap()
    {
        store.ack(&shared, &job.entry_id).await.unwrap();
    }
    assert!(
        store
            .read_stages(&queues, "c1", 10, 30_000)
            .await
            .unwrap()
            .is_empty()
    );

    // An entry on the node's queue arrives while the read blocks (2 s): seen at once.
    let other = TaskStore::connect(&redis.url, PREFIX).await.unwrap();
    let began = Instant::now();
    let (jobs, queued) = tokio::join!(store.read_stages(&queues, "c1", 2_000, 30_000), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        other.requeue(&a, &node).await
    });
    queued.unwrap();
    let jobs = jobs.unwrap();
    assert!(
        began.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (&jobs[0].0, jobs[0].1.task_id.as_str()),
        (&node, a.as_str())
    );
    store.ack(&node, &jobs[0].1.entry_id).await.unwrap();

    // Entries in both: one of each, the node's first; the second is put back and read again.
    store.requeue(&b, &shared).await.unwrap();
    store.requeue(&a, &node).await.unwrap();
    let jobs = store.read_stages(&queues, "c1", 100, 30_000).await.unwrap();
    let read: Vec<(&StageQueue, &str)> =
        jobs.iter().map(|(q, j)| (q, j.task_id.as_str())).collect();
    assert_eq!(read, vec![(&node, a.as_str()), (&shared, b.as_str())]);
    store.ack(&node, &jobs[0].1.entry_id).await.unwrap();
    store.put_back(&shared, &jobs[1].1).await.unwrap();
    let again = store.read_stages(&queues, "c2", 100, 30_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (&again[0].0, again[0].1.task_id.as_str()),
        (&shared, b.as_str())
    );
    assert_eq!(
        store.queue_len(&shared).await.unwrap(),
        1,
        "the read entry was acknowledged"
    );
}

/// A worker known dead (its lock file on the machine was free: `pipeline/node_watch.rs`) loses
/// its tasks at once, however recent its last beat; only tasks it still holds are taken, once.
#[tokio::test]
async fn a_dead_workers_task_is_taken_at_once_and_only_its_own() {
    let (_redis, store) = setup().await;
    let t0 = 3_000_000;
    let (id, f1) = recording(&store, "w1", t0).await;
    store
        .beat_worker("w1", std::slice::from_ref(&id), 30_000, t0 + 2_000)
        .await
        .unwrap();
    assert_eq!(
        store.take_orphaned(&id, "w1", t0 + 100).await.unwrap(),
        None,
        "beat lately"
    );
    assert_eq!(
        store.take_from_dead(&id, "w2", t0 + 100).await.unwrap(),
        None,
        "not w2's"
    );
    let taken = store
        .take_from_dead(&id, "w1", t0 + 100)
        .await
        .unwrap()
        .expect("taken");
    assert_eq!((taken.owner.as_deref(), taken.fence), (Some("w1"), f1));
    assert_eq!(
        store.take_from_dead(&id, "w1", t0 + 100).await.unwrap(),
        None,
        "once"
    );
    assert_eq!(
        store
            .renew(&id, "w1", f1, t0 + 200, 10_000)
            .await
            .unwrap_err(),
        StoreError::LeaseLost
    );
}
