//! The API spec (`api-spec/openapi.yaml`) agrees with the code: every error code, every Start
//! field, every Describe field, the statuses, the defaults and the limits.

use std::collections::BTreeSet;

use pagecast::api::start::{
    DEFAULT_MAX_DURATION_SECS, DEFAULT_START_TIMEOUT_SECS, IGNORED_START_FIELDS,
    MAX_MAX_DURATION_SECS, MAX_START_TIMEOUT_SECS, START_FIELDS, StartLimits, parse_start,
};
use pagecast::error::ErrorCode;
use pagecast::recording::{DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_WIDTH, MAX_DIMENSION, MAX_FPS};
use pagecast::task::wire::describe_json;
use pagecast::task::{
    CallbackDelivery, CallbackState, Muxer, OutputTarget, StartSpec, Status, StorageType,
    TaskRecord, TaskResult, TaskStats, Video,
};
use serde_json::{Value, json};

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/api-spec/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("read api-spec/openapi.yaml");
    serde_norway::from_str(&text).expect("api-spec/openapi.yaml is valid YAML")
}

/// Follows `$ref: '#/...'` until a schema without one.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
            return schema;
        };
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references are used, got {reference}"));
        schema = root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling reference {reference}"));
    }
    panic!("reference loop at {schema}");
}

fn schema<'a>(root: &'a Value, name: &str) -> &'a Value {
    root.pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("components.schemas.{name} is missing"))
}

/// The named properties of a schema, including those of its `allOf` parts.
fn properties<'a>(root: &'a Value, schema: &'a Value) -> Vec<(&'a str, &'a Value)> {
    let schema = resolve(root, schema);
    let mut out: Vec<(&str, &Value)> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default();
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            out.extend(properties(root, part));
        }
    }
    out
}

fn property<'a>(root: &'a Value, schema: &'a Value, name: &str) -> Option<&'a Value> {
    properties(root, schema)
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| resolve(root, s))
}

/// Every property path under a schema (`Output.Cos.Bucket`), following references and arrays.
fn schema_paths(root: &Value, schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    for (name, sub) in properties(root, schema) {
        let path = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        };
        out.insert(path.clone());
        let sub = resolve(root, sub);
        schema_paths(root, sub, &path, out);
        if let Some(items) = sub.get("items") {
            schema_paths(root, items, &path, out);
        }
    }
}

/// Every key path of a JSON value; array elements share their array's path.
fn value_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                value_paths(v, &path, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                value_paths(v, prefix, out);
            }
        }
        _ => {}
    }
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[test]
fn is_openapi_3_1_with_the_documented_paths() {
    let root = spec();
    assert!(root["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/", "/record", "/files/{path}", "/healthz"] {
        assert!(
            root["paths"].get(path).is_some(),
            "{path} is not documented"
        );
    }
    assert!(root.pointer("/components/securitySchemes/bearer").is_some());
}

#[test]
fn error_code_enum_is_exactly_the_code_table() {
    let root = spec();
    let error_code = property(&root, schema(&root, "ErrorResponse"), "ErrorCode").unwrap();
    let in_spec = strings(&error_code["enum"]);
    let in_code: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(
        in_spec.difference(&in_code).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "codes in the spec that the code does not have"
    );
    assert_eq!(
        in_code.difference(&in_spec).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "codes the spec does not list"
    );
}

#[test]
fn every_error_code_is_explained_with_its_status() {
    let root = spec();
    let tables = [
        root["info"]["description"].as_str().unwrap(),
        property(&root, schema(&root, "ErrorResponse"), "ErrorCode").unwrap()["description"]
            .as_str()
            .unwrap(),
    ];
    for table in tables {
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.http_status());
            assert!(table.contains(&row), "no table row starting {row:?}");
        }
    }
}

#[test]
fn every_error_status_of_the_action_endpoint_is_documented() {
    let root = spec();
    // Only other endpoints answer these: a method a path does not serve, a Range of a file.
    let elsewhere = [ErrorCode::MethodNotAllowed, ErrorCode::RangeNotSatisfiable];
    let statuses: BTreeSet<u16> = ErrorCode::ALL
        .iter()
        .filter(|c| !elsewhere.contains(c))
        .map(|c| c.http_status())
        .chain([200])
        .collect();
    for (path, status) in ["/", "/record"]
        .into_iter()
        .flat_map(|p| statuses.iter().map(move |s| (p, *s)))
    {
        let response = resolve(
            &root,
            &root["paths"][path]["post"]["responses"][status.to_string()],
        );
        assert!(
            response.is_object(),
            "POST {path} does not document {status}"
        );
        assert!(
            response.pointer("/headers/X-Request-ID").is_some(),
            "{status} lacks the X-Request-ID header"
        );
        if status != 200 {
            let body = resolve(&root, &response["content"]["application/json"]["schema"]);
            assert_eq!(body, schema(&root, "ErrorResponse"), "{status}");
        }
    }
}

#[test]
fn every_response_carries_the_request_id_header() {
    let root = spec();
    for (path, item) in root["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let response = resolve(&root, response);
                assert!(
                    response.pointer("/headers/X-Request-ID").is_some(),
                    "{method} {path} {status} lacks X-Request-ID"
                );
            }
        }
    }
}

#[test]
fn actions_are_the_contracts() {
    let root = spec();
    let action = property(&root, schema(&root, "ActionRequest"), "Action").unwrap();
    let want: BTreeSet<String> = pagecast::api::action::Action::ALL
        .map(|a| a.as_str().to_string())
        .into();
    assert!(want.contains("Cancel"), "web-record's name for Stop");
    assert_eq!(strings(&action["enum"]), want);
}

#[test]
fn every_start_field_is_documented_and_nothing_else() {
    let root = spec();
    let mut documented = BTreeSet::new();
    schema_paths(&root, schema(&root, "StartData"), "", &mut documented);
    for field in START_FIELDS.iter().chain(IGNORED_START_FIELDS) {
        assert!(
            documented.contains(*field),
            "StartData does not document {field}"
        );
    }
    let parsed: BTreeSet<String> = START_FIELDS
        .iter()
        .chain(IGNORED_START_FIELDS)
        .map(|s| s.to_string())
        .collect();
    let extra: Vec<_> = documented.difference(&parsed).collect();
    assert!(extra.is_empty(), "documented but not parsed: {extra:?}");
}

#[test]
fn start_defaults_and_ranges_match_the_code() {
    let root = spec();
    let start = schema(&root, "StartData");
    let field = |name: &str| property(&root, start, name).unwrap().clone();
    let limits = StartLimits::default();
    for (name, default) in [("Width", DEFAULT_WIDTH), ("Height", DEFAULT_HEIGHT)] {
        let f = field(name);
        assert_eq!(f["default"], json!(default), "{name}");
        assert_eq!(f["minimum"], json!(0), "{name}");
        assert_eq!(f["maximum"], json!(MAX_DIMENSION), "{name}");
    }
    let f = field("MaxDurationLimit");
    assert_eq!(f["default"], json!(DEFAULT_MAX_DURATION_SECS));
    assert_eq!(f["maximum"], json!(MAX_MAX_DURATION_SECS));
    let f = field("Fps");
    assert_eq!(f["default"], json!(DEFAULT_FPS));
    assert_eq!(f["maximum"], json!(MAX_FPS));
    let f = field("StartTimeout");
    assert_eq!(f["default"], json!(DEFAULT_START_TIMEOUT_SECS));
    assert_eq!(f["maximum"], json!(MAX_START_TIMEOUT_SECS));
    assert_eq!(field("ManualStart")["default"], json!(false));
    assert_eq!(field("StorageType")["default"], json!("local"));
    assert_eq!(field("RecordURL")["maxLength"], json!(limits.max_url_len));
    assert_eq!(field("CallbackURL")["maxLength"], json!(limits.max_url_len));
    assert_eq!(
        field("UserContext")["maxLength"],
        json!(limits.max_context_len)
    );
    assert_eq!(
        strings(&start["required"]),
        BTreeSet::from(["RecordURL".to_owned()])
    );
}

#[test]
fn the_start_examples_are_accepted() {
    let root = spec();
    let body = resolve(&root, &root["paths"]["/"]["post"]["requestBody"]);
    let examples = body
        .pointer("/content/application~1json/examples")
        .and_then(Value::as_object)
        .unwrap();
    // The server the examples are written for (see the example's description).
    let mut limits = StartLimits::default();
    limits.storage.s3_bucket = Some("records-1250000000".into());
    limits.storage.s3_allowed_endpoints = vec!["https://cos.ap-shanghai.myqcloud.com".into()];
    let mut starts = 0;
    for (name, example) in examples {
        let value = &example["value"];
        if value["Action"] == "Start" {
            starts += 1;
            if let Err(e) = parse_start(&value["Data"], &limits) {
                panic!("example {name} is rejected: {e}");
            }
        }
    }
    assert!(starts >= 1);
}

#[test]
fn statuses_are_the_task_statuses() {
    let root = spec();
    let status = property(&root, schema(&root, "DescribeResponse"), "Status").unwrap();
    let in_code: BTreeSet<String> = Status::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(strings(&status["enum"]), in_code);
}

fn full_task() -> TaskRecord {
    TaskRecord {
        id: "6f1c2d7e-8a4b-4c3d-9e5f-0a1b2c3d4e5f".into(),
        status: Status::Finished,
        create_time: 1_700_000_000,
        start_time: Some(1_700_000_010),
        cancel_time: Some(1_700_000_100),
        stop_time: Some(1_700_000_101),
        stop_time_ms: Some(1_700_000_101_250),
        finish_time: Some(1_700_000_130),
        spec: StartSpec {
            record_url: "https://example.org/".into(),
            manual_start: true,
            width: 1280,
            height: 720,
            fps: 30,
            max_duration_secs: 21_600,
            callback_url: Some("https://hooks.example.org/".into()),
            storage_type: StorageType::Local,
            muxer: Muxer::Hls,
            auth_url: Some("https://keys.example.org/".into()),
            output: OutputTarget::default(),
            start_timeout_secs: 300,
            user_context: Some("ctx".into()),
            audio: true,
            capture: None,
            user_agent: None,
        },
        result: Some(TaskResult {
            error_code: Some("CallbackFailed".into()),
            error_message: Some("the receiver answered 500".into()),
            videos: vec![Video {
                filename: "a/b.m3u8".into(),
                file_size: 1,
                file_url: "https://cdn.example.org/a/b.m3u8".into(),
                file_duration: Some(89.9),
                segment_count: Some(45),
            }],
        }),
        stats: Some(TaskStats {
            recorded_duration: 90.0,
            frames_captured: 1,
            frames_written: 2,
            frames_duplicated: 1,
            frames_dropped: 0,
            pauses: 1,
            refreshes: 1,
            callback_attempts: 5,
            page_crashes: 1,
            page_hangs: 0,
            browser_restarts: 0,
            encoder_restarts: 1,
            lost_seconds: 0.5,
            gaps: vec![pagecast::task::RecordingGap {
                time: 1_700_000_003.5,
                seconds: 4.0,
            }],
            handovers: 2,
            lost_media: None,
            live: vec![pagecast::media::live::LiveTargetStats {
                url: "srt://10.0.0.1:9000?streamid=***".into(),
                state: "retrying".into(),
                attempts: 2,
                last_error: Some("Connection refused".into()),
            }],
        }),
        owner: Some("worker".into()),
        fence: 3,
        node: Some("node".into()),
        restarts: 1,
        callback: Some(CallbackDelivery {
            state: CallbackState::Pending,
            attempts: 2,
            last_error: Some("the receiver answered HTTP 503".into()),
            first_attempt_ms: 1_700_000_130_000,
            next_attempt_ms: Some(1_700_000_140_000),
            event_id: "0b7e1c2a-5d6f-4a8b-9c0d-1e2f3a4b5c6d".into(),
        }),
    }
}

#[test]
fn describe_fields_are_exactly_the_documented_ones() {
    let root = spec();
    let mut documented = BTreeSet::new();
    schema_paths(
        &root,
        schema(&root, "DescribeResponse"),
        "",
        &mut documented,
    );
    let mut produced = BTreeSet::new();
    let mut full = describe_json(&full_task(), "req");
    // `Output.Snapshots`: Describe adds the stored pictures from their own list.
    pagecast::task::wire::add_snapshots(
        &mut full,
        &[pagecast::task::SnapshotEntry {
            filename: "a/snapshots/3000.jpg".into(),
            file_size: 1,
            file_url: "https://cdn.example.org/a/snapshots/3000.jpg".into(),
            time: 3000,
        }],
    );
    value_paths(&full, "", &mut produced);
    let undocumented: Vec<_> = produced.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "Describe fields missing from the spec: {undocumented:?}"
    );
    let never_sent: Vec<_> = documented.difference(&produced).collect();
    assert!(
        never_sent.is_empty(),
        "documented Describe fields never produced: {never_sent:?}"
    );
}
