//! Helpers of the fault-path tests (tests/fault_paths.rs, tests/fault_kills.rs): a service on
//! the test S3 server, the worker that records, `kill -9` of a worker.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common::descendants;
use super::s3_support::TestS3;
use super::service_support::Service;

/// The environment that points a service at `s3`, plus `extra`.
pub fn on_s3(s3: &TestS3, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = s3.env();
    env.push(("PAGECAST_S3_PRESIGN_SECONDS", "3600".into()));
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

pub fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The pid of the worker process (of `svc.procs[1..]`) that runs the task's browser or encoder.
pub fn recording_worker(svc: &Service) -> (usize, u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = svc.procs[1..]
            .iter()
            .enumerate()
            .map(|(i, p)| (i + 1, p.child.id()))
            .find(|(_, pid)| !descendants(*pid).is_empty())
        {
            return found;
        }
        assert!(Instant::now() < deadline, "no worker runs the recording");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGKILLs `svc.procs[index]` and forgets it (reaped, so its Drop signals nothing).
pub fn kill_9(svc: &mut Service, index: usize) {
    let mut p = svc.procs.remove(index);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    std::mem::forget(p);
}

/// A callback receiver (at the returned URL) that takes its first `hang` requests and never
/// answers them, then answers the next ones at once with 204; it records each request's event
/// id.
pub fn hanging_receiver(hang: usize) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    use axum::routing::post;
    let got: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let store = got.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().route(
                "/cb",
                post(move |headers: axum::http::HeaderMap| {
                    let store = store.clone();
                    async move {
                        let first = {
                            let mut got = store.lock().unwrap();
                            got.push(
                                headers
                                    .get("x-pagecast-event-id")
                                    .and_then(|v| v.to_str().ok())
                                    .map(String::from),
                            );
                            got.len() <= hang
                        };
                        if first {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        axum::http::StatusCode::NO_CONTENT
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{}/cb", rx.recv().unwrap()), got)
}
