//! The task's wire view: the Describe response for a task, which is also the body POSTed to the
//! task's CallbackURL (`render` re-signs the URLs of local results as it renders).
//!
//! Contract fields (`TaskID`, `RequestID`, `Status`, the times, `Result`) keep the source product's
//! meaning; pagecast's extras (`RecordedDuration`, `Stats`, `Restarts`, `UserContext`, `Muxer`)
//! are added beside them. Optional fields are left out while unknown, never sent as `null`.
//!
//! Only what a client may see is rendered: never the task's secrets (they are not in
//! [`TaskRecord`] at all), never lease internals (`owner`, `fence`, `node`), never the request's
//! URLs or storage settings.

use serde_json::{Map, Value, json};

use crate::delivery::signed_url::UrlSigner;
use crate::task::{
    CallbackDelivery, CallbackState, SnapshotEntry, Status, TaskRecord, TaskResult, TaskStats,
    Video,
};

/// The Describe (and callback) JSON of `task` as a client gets it at `now` (unix seconds): the
/// FileURLs of local results re-signed by `signer` from `now` (left as stored without one).
pub(crate) fn render(
    task: &TaskRecord,
    request_id: &str,
    snapshots: Option<&[SnapshotEntry]>,
    signer: Option<&UrlSigner>,
    now: i64,
) -> Value {
    let mut json = describe_json(task, request_id);
    if let Some(snaps) = snapshots {
        add_snapshots(&mut json, snaps);
    }
    if let Some(signer) = signer {
        signer.refresh_file_urls(&mut json, now);
    }
    json
}

/// The Describe (and callback) JSON of `task`, with the URLs as stored.
pub fn describe_json(task: &TaskRecord, request_id: &str) -> Value {
    let mut out = Map::new();
    out.insert("TaskID".into(), json!(task.id));
    out.insert("RequestID".into(), json!(request_id));
    out.insert("Status".into(), json!(task.status.as_str()));
    out.insert("CreateTime".into(), json!(task.create_time));
    for (name, time) in [
        ("StartTime", task.start_time),
        ("CancelTime", task.cancel_time),
        ("StopTime", task.stop_time),
        ("FinishTime", task.finish_time),
    ] {
        if let Some(t) = time {
            out.insert(name.into(), json!(t));
        }
    }
    match &task.result {
        Some(result) => {
            out.insert("Result".into(), result_json(result));
        }
        // A task whose outcome is being reported, or is over, always has a Result (one stored
        // by an earlier version without it shows no videos).
        None if matches!(task.status, Status::Callback | Status::Finished) => {
            out.insert("Result".into(), result_json(&TaskResult::default()));
        }
        None => {}
    }
    if let Some(stats) = &task.stats {
        if let Some(seconds) = duration_json(stats.recorded_duration) {
            out.insert("RecordedDuration".into(), seconds);
        }
        // The delivery counts an attempt when it is stored, before the stats are; Describe
        // shows one count.
        let attempts = task.callback.as_ref().map_or(0, |d| d.attempts);
        out.insert(
            "Stats".into(),
            stats_json(&TaskStats {
                callback_attempts: stats.callback_attempts.max(attempts),
                ..stats.clone()
            }),
        );
    }
    out.insert("Restarts".into(), json!(task.restarts));
    if let Some(delivery) = &task.callback {
        out.insert("Callback".into(), callback_json(delivery));
    }
    if let Some(context) = &task.spec.user_context {
        out.insert("UserContext".into(), json!(context));
    }
    let muxer = match task.spec.muxer {
        crate::task::Muxer::Mp4 => "mp4",
        crate::task::Muxer::Hls => "hls",
        crate::task::Muxer::None => "none",
    };
    out.insert("Muxer".into(), json!(muxer));
    Value::Object(out)
}

/// Adds `Result.Snapshots` (`Output.Snapshots`): the pictures stored so far, oldest first, each
/// `{Filename, FileSize, FileURL, Time, Key}` (`Filename` the base name as for videos, `Time` ms
/// of recorded time). A task still recording gets a `Result` with no videos yet.
pub fn add_snapshots(describe: &mut Value, snaps: &[SnapshotEntry]) {
    let Some(out) = describe.as_object_mut() else {
        return;
    };
    let result = out
        .entry("Result")
        .or_insert_with(|| result_json(&TaskResult::default()));
    let list: Vec<Value> = snaps
        .iter()
        .map(|s| {
            json!({
                "Filename": s.filename.rsplit('/').next().unwrap_or(&s.filename),
                "FileSize": s.file_size,
                "FileURL": s.file_url,
                "Time": s.time,
                "Key": s.filename,
            })
        })
        .collect();
    if let Some(r) = result.as_object_mut() {
        r.insert("Snapshots".into(), Value::Array(list));
    }
}

fn result_json(result: &TaskResult) -> Value {
    let mut out = Map::new();
    if let Some(code) = &result.error_code {
        out.insert("ErrorCode".into(), json!(code));
    }
    if let Some(message) = &result.error_message {
        out.insert("ErrorMessage".into(), json!(message));
    }
    let videos: Vec<Value> = result.videos.iter().map(video_json).collect();
    out.insert("Videos".into(), Value::Array(videos));
    Value::Object(out)
}

/// One of `Result.Videos`, as the source product lists it: `Filename` is the base name,
/// `FileDuration` whole seconds (its clients read an integer); pagecast adds the object's `Key`
/// and, for HLS, `SegmentCount`.
fn video_json(v: &Video) -> Value {
    let base = v.filename.rsplit('/').next().unwrap_or(&v.filename);
    let mut out = Map::new();
    out.insert("Filename".into(), json!(base));
    out.insert("FileSize".into(), json!(v.file_size));
    // Results stored before durations were kept report 0, never nothing.
    let seconds = v.file_duration.filter(|s| s.is_finite() && *s >= 0.0);
    out.insert(
        "FileDuration".into(),
        json!(seconds.map_or(0, |s| s.round() as u64)),
    );
    out.insert("FileURL".into(), json!(v.file_url));
    out.insert("Key".into(), json!(v.filename));
    if let Some(n) = v.segment_count {
        out.insert("SegmentCount".into(), json!(n));
    }
    Value::Object(out)
}

fn callback_json(d: &CallbackDelivery) -> Value {
    let state = match d.state {
        CallbackState::Pending => "pending",
        CallbackState::Delivered => "delivered",
        CallbackState::Failed => "failed",
    };
    let mut out = Map::new();
    out.insert("State".into(), json!(state));
    out.insert("Attempts".into(), json!(d.attempts));
    if let Some(e) = &d.last_error {
        out.insert("LastError".into(), json!(e));
    }
    if let Some(ms) = d.next_attempt_ms {
        out.insert("NextAttemptTime".into(), json!(ms.div_euclid(1000)));
    }
    if !d.event_id.is_empty() {
        out.insert("EventID".into(), json!(d.event_id));
    }
    Value::Object(out)
}

fn stats_json(stats: &TaskStats) -> Value {
    let mut v = json!({
        "FramesCaptured": stats.frames_captured,
        "FramesWritten": stats.frames_written,
        "FramesDuplicated": stats.frames_duplicated,
        "FramesDropped": stats.frames_dropped,
        "Pauses": stats.pauses,
        "Refreshes": stats.refreshes,
        "CallbackAttempts": stats.callback_attempts,
        "PageCrashes": stats.page_crashes,
        "PageHangs": stats.page_hangs,
        "BrowserRestarts": stats.browser_restarts,
        "EncoderRestarts": stats.encoder_restarts,
        "LostSeconds": (stats.lost_seconds * 1000.0).round() / 1000.0,
        "Gaps": stats.gaps.iter().map(|g| json!({
            "Time": (g.time * 1000.0).round() / 1000.0,
            "Seconds": (g.seconds * 1000.0).round() / 1000.0,
        })).collect::<Vec<_>>(),
        "Handovers": stats.handovers,
    });
    // Only with Output.Live: each target's redacted URL, state, attempts and last error.
    if !stats.live.is_empty()
        && let Some(map) = v.as_object_mut()
    {
        map.insert("Live".into(), json!(stats.live));
    }
    v
}

/// Seconds rounded to milliseconds; nothing for a value that is not a real duration.
fn duration_json(seconds: f64) -> Option<Value> {
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    serde_json::Number::from_f64((seconds * 1000.0).round() / 1000.0).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Muxer, OutputTarget, StartSpec, StorageType};

    fn spec() -> StartSpec {
        StartSpec {
            record_url: "https://example.org/secret-room?token=abc".into(),
            manual_start: false,
            width: 1280,
            height: 720,
            fps: 30,
            max_duration_secs: 21_600,
            callback_url: Some("https://hooks.example.org/cb?sig=xyz".into()),
            storage_type: StorageType::S3,
            muxer: Muxer::Hls,
            auth_url: Some("https://keys.example.org/k".into()),
            output: OutputTarget {
                bucket: Some("private-bucket".into()),
                endpoint: Some("http://minio.internal:9000".into()),
                ..OutputTarget::default()
            },
            start_timeout_secs: 300,
            user_context: None,
            audio: true,
            capture: None,
            user_agent: None,
        }
    }

    fn task(status: Status) -> TaskRecord {
        TaskRecord {
            id: "6f1c2d7e-8a4b-4c3d-9e5f-0a1b2c3d4e5f".into(),
            status,
            create_time: 1_700_000_000,
            start_time: None,
            cancel_time: None,
            stop_time: None,
            stop_time_ms: None,
            finish_time: None,
            spec: spec(),
            result: None,
            stats: None,
            owner: Some("worker-7:1234".into()),
            fence: 42,
            node: Some("node-a".into()),
            restarts: 0,
            callback: None,
        }
    }

    #[test]
    fn a_new_task_shows_only_what_is_known() {
        let v = describe_json(&task(Status::Normal), "req-1");
        assert_eq!(
            v,
            json!({
                "TaskID": "6f1c2d7e-8a4b-4c3d-9e5f-0a1b2c3d4e5f",
                "RequestID": "req-1",
                "Status": "normal",
                "CreateTime": 1_700_000_000,
                "Restarts": 0,
                "Muxer": "hls",
            })
        );
    }

    #[test]
    fn a_finished_task_always_has_a_result() {
        for status in [Status::Callback, Status::Finished] {
            let v = describe_json(&task(status), "r");
            assert_eq!(v["Result"], json!({"Videos": []}), "{status}");
        }
        for status in [Status::Normal, Status::Recording, Status::Upload] {
            assert!(describe_json(&task(status), "r").get("Result").is_none());
        }
    }

    #[test]
    fn every_status_is_rendered_as_its_wire_string() {
        for status in Status::ALL {
            let v = describe_json(&task(status), "r");
            assert_eq!(v["Status"], status.as_str());
        }
    }

    #[test]
    fn stats_count_the_callback_attempt_under_way() {
        let mut t = task(Status::Callback);
        t.stats = Some(TaskStats::default());
        t.callback = Some(CallbackDelivery {
            attempts: 1,
            ..CallbackDelivery::default()
        });
        let v = render(&t, "r", None, None, 0);
        assert_eq!(v["Stats"]["CallbackAttempts"], 1, "{v}");
        assert_eq!(v["Callback"]["Attempts"], 1, "{v}");
    }

    #[test]
    fn a_finished_task_has_times_result_and_stats() {
        let mut t = task(Status::Finished);
        t.start_time = Some(1_700_000_010);
        t.cancel_time = Some(1_700_000_100);
        t.stop_time = Some(1_700_000_101);
        t.finish_time = Some(1_700_000_130);
        t.restarts = 1;
        t.spec.muxer = Muxer::Mp4;
        t.spec.user_context = Some("{\"lesson\":7}".into());
        t.result = Some(TaskResult {
            error_code: None,
            error_message: None,
            videos: vec![Video {
                filename: "6f1c/1700000101000.mp4".into(),
                file_size: 123_456,
                file_url: "https://cdn.example.org/6f1c/1700000101000.mp4".into(),
                file_duration: Some(80.6),
                segment_count: None,
            }],
        });
        t.stats = Some(TaskStats {
            recorded_duration: 80.123_456,
            frames_captured: 2000,
            frames_written: 2404,
            frames_duplicated: 410,
            frames_dropped: 6,
            pauses: 2,
            refreshes: 1,
            callback_attempts: 3,
            page_crashes: 1,
            page_hangs: 0,
            browser_restarts: 0,
            encoder_restarts: 0,
            lost_seconds: 0.0,
            gaps: vec![crate::task::RecordingGap {
                time: 1_700_000_050.125,
                seconds: 7.25,
            }],
            handovers: 1,
            lost_media: None,
            live: Vec::new(),
        });
        let v = describe_json(&t, "req-2");
        assert_eq!(
            v,
            json!({
                "TaskID": "6f1c2d7e-8a4b-4c3d-9e5f-0a1b2c3d4e5f",
                "RequestID": "req-2",
                "Status": "finished",
                "CreateTime": 1_700_000_000,
                "StartTime": 1_700_000_010,
                "CancelTime": 1_700_000_100,
                "StopTime": 1_700_000_101,
                "FinishTime": 1_700_000_130,
                "Result": {
                    "Videos": [{
                        "Filename": "1700000101000.mp4",
                        "FileSize": 123_456,
                        "FileDuration": 81,
                        "FileURL": "https://cdn.example.org/6f1c/1700000101000.mp4",
                        "Key": "6f1c/1700000101000.mp4",
                    }],
                },
                "RecordedDuration": 80.123,
                "Stats": {
                    "FramesCaptured": 2000,
                    "FramesWritten": 2404,
                    "FramesDuplicated": 410,
                    "FramesDropped": 6,
                    "Pauses": 2,
                    "Refreshes": 1,
                    "CallbackAttempts": 3,
                    "PageCrashes": 1,
                    "PageHangs": 0,
                    "BrowserRestarts": 0,
                    "EncoderRestarts": 0,
                    "LostSeconds": 0.0,
                    "Gaps": [{ "Time": 1_700_000_050.125, "Seconds": 7.25 }],
                    "Handovers": 1,
                },
                "Restarts": 1,
                "UserContext": "{\"lesson\":7}",
                "Muxer": "mp4",
            })
        );
    }

    #[test]
    fn a_failed_task_reports_its_error_and_empty_videos() {
        let mut t = task(Status::Finished);
        t.result = Some(TaskResult {
            error_code: Some("PageLoadFailed".into()),
            error_message: Some("the page answered HTTP 404".into()),
            videos: vec![],
        });
        let v = describe_json(&t, "r");
        assert_eq!(
            v["Result"],
            json!({"ErrorCode": "PageLoadFailed", "ErrorMessage": "the page answered HTTP 404", "Videos": []})
        );
    }

    #[test]
    fn hls_is_its_playlist_with_a_segment_count_and_old_results_have_a_duration() {
        let mut t = task(Status::Finished);
        t.result = Some(TaskResult {
            error_code: None,
            error_message: None,
            videos: vec![
                Video {
                    filename: "room1/2024/playlist.m3u8".into(),
                    file_size: 900,
                    file_url: "http://cdn.example.org/room1/2024/playlist.m3u8".into(),
                    file_duration: Some(36_000.4),
                    segment_count: Some(18_001),
                },
                // Stored by an earlier version: no duration known.
                Video {
                    filename: "old.mp4".into(),
                    file_size: 1,
                    file_url: "http://x/old.mp4".into(),
                    file_duration: None,
                    segment_count: None,
                },
            ],
        });
        let v = describe_json(&t, "r");
        assert_eq!(
            v["Result"]["Videos"],
            json!([
                {
                    "Filename": "playlist.m3u8",
                    "FileSize": 900,
                    "FileDuration": 36_000,
                    "FileURL": "http://cdn.example.org/room1/2024/playlist.m3u8",
                    "Key": "room1/2024/playlist.m3u8",
                    "SegmentCount": 18_001,
                },
                {
                    "Filename": "old.mp4",
                    "FileSize": 1,
                    "FileDuration": 0,
                    "FileURL": "http://x/old.mp4",
                    "Key": "old.mp4",
                },
            ])
        );
        // A ten-hour HLS recording's Describe stays small.
        assert!(v.to_string().len() < 2048, "{v}");
    }

    #[test]
    fn no_internals_and_no_request_settings_leak() {
        let mut t = task(Status::Recording);
        t.stats = Some(TaskStats::default());
        let text = describe_json(&t, "r").to_string();
        for secret in [
            "worker-7",
            "node-a",
            "42",
            "token=abc",
            "sig=xyz",
            "keys.example.org",
            "private-bucket",
            "minio.internal",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let v: Value = serde_json::from_str(&text).unwrap();
        for key in [
            "Owner",
            "Fence",
            "Node",
            "EncryptKey",
            "AuthUrl",
            "RecordURL",
            "CallbackURL",
        ] {
            assert!(v.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn recorded_duration_is_rounded_and_never_bogus() {
        assert_eq!(duration_json(1.23456), Some(json!(1.235)));
        assert_eq!(duration_json(0.0), Some(json!(0.0)));
        assert_eq!(duration_json(f64::NAN), None);
        assert_eq!(duration_json(-1.0), None);
        let mut t = task(Status::Recording);
        t.stats = Some(TaskStats {
            recorded_duration: f64::INFINITY,
            ..TaskStats::default()
        });
        let v = describe_json(&t, "r");
        assert!(v.get("RecordedDuration").is_none());
        assert!(v.get("Stats").is_some());
    }

    #[test]
    fn render_re_signs_local_urls_only_with_a_signer() {
        use crate::delivery::signed_url::{UrlSigner, unsigned_file_url};
        let mut t = task(Status::Finished);
        t.result = Some(TaskResult {
            videos: vec![Video {
                filename: "d/a.mp4".into(),
                file_size: 1,
                file_url: unsigned_file_url("http://files.example.org", "d/a.mp4"),
                file_duration: None,
                segment_count: None,
            }],
            ..TaskResult::default()
        });
        let url = |v: &Value| {
            v["Result"]["Videos"][0]["FileURL"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let plain = render(&t, "r", None, None, 1_000);
        assert_eq!(url(&plain), t.result.as_ref().unwrap().videos[0].file_url);
        assert_eq!(plain, describe_json(&t, "r"));
        let signer = UrlSigner::new(b"0123456789abcdef0123", std::time::Duration::from_secs(60));
        let signed = render(&t, "r", None, Some(&signer), 1_000);
        assert_eq!(
            url(&signed),
            format!(
                "http://files.example.org{}",
                signer.signed_path("d/a.mp4", 1_000)
            )
        );
    }
}
