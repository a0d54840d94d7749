//! Unit tests of Start's validation: general fields and extensions (Output and Video have their
//! own, beside their code).

use super::*;
use serde_json::json;

pub(super) fn parse(data: Value) -> Result<(StartSpec, TaskSecrets), ApiError> {
    parse_start(&data, &test_limits())
}

/// The default limits on a server that lets tasks use the endpoints and buckets these tests name.
pub(super) fn test_limits() -> StartLimits {
    let mut limits = StartLimits::default();
    limits.storage.s3_allowed_endpoints = vec![
        "http://minio.local:9000".into(),
        "https://cos.ap-shanghai.myqcloud.com".into(),
        "https://cos.ap-guangzhou.myqcloud.com".into(),
    ];
    limits.storage.s3_allowed_buckets = ["records-1250000000", "rec-1250000000", "rec", "b"]
        .map(String::from)
        .to_vec();
    limits
}

pub(super) fn ok(data: Value) -> (StartSpec, TaskSecrets) {
    parse(data.clone()).unwrap_or_else(|e| panic!("{data} rejected: {e}"))
}

pub(super) fn spec(data: Value) -> StartSpec {
    ok(data).0
}

pub(super) fn err(data: Value) -> ApiError {
    match parse(data.clone()) {
        Ok((spec, _)) => panic!("{data} accepted: {spec:?}"),
        Err(e) => e,
    }
}

pub(super) fn invalid(data: Value, field: &str) -> String {
    let e = err(data);
    assert_eq!(e.code, ErrorCode::InvalidParam, "{e}");
    assert!(e.message.starts_with(field), "{field}: {}", e.message);
    e.message
}

/// A valid request with `extra` merged in.
pub(super) fn with(extra: Value) -> Value {
    let mut data = json!({"RecordURL": "https://example.org/page"});
    for (k, v) in extra.as_object().unwrap() {
        data[k] = v.clone();
    }
    data
}

// ---- RecordURL ----

#[test]
fn minimal_request_gets_every_default() {
    let (spec, secrets) = ok(json!({"RecordURL": "https://example.org/page"}));
    assert_eq!(
        spec,
        StartSpec {
            record_url: "https://example.org/page".into(),
            manual_start: false,
            width: 1280,
            height: 720,
            fps: 30,
            max_duration_secs: 36_000,
            callback_url: None,
            storage_type: StorageType::Local,
            muxer: Muxer::Mp4,
            auth_url: None,
            output: OutputTarget::default(),
            start_timeout_secs: 0,
            user_context: None,
            audio: true,
            capture: None,
            user_agent: None,
        }
    );
    assert_eq!(secrets, TaskSecrets::default());
}

#[test]
fn record_url_is_required() {
    for data in [
        json!({}),
        json!({"RecordURL": null}),
        json!({"RecordURL": ""}),
    ] {
        let e = err(data);
        assert_eq!(e.code, ErrorCode::MissingParam);
        assert_eq!(e.message, "Data.RecordURL is required");
    }
}

#[test]
fn record_url_name_is_case_sensitive_and_the_message_says_so() {
    let e = err(json!({"recordUrl": "https://example.org/"}));
    assert_eq!(e.code, ErrorCode::MissingParam);
    assert!(e.message.contains("case-sensitive"), "{}", e.message);
    assert!(e.message.contains("\"recordUrl\""), "{}", e.message);
}

#[test]
fn record_url_must_be_http_or_https() {
    assert_eq!(
        spec(json!({"RecordURL": "http://127.0.0.1:8080/x"})).record_url,
        "http://127.0.0.1:8080/x"
    );
    assert!(invalid(json!({"RecordURL": "file:///etc/passwd"}), "Data.RecordURL").contains("http"));
    invalid(
        json!({"RecordURL": "javascript:alert(1)"}),
        "Data.RecordURL",
    );
    invalid(json!({"RecordURL": "not a url"}), "Data.RecordURL");
    invalid(json!({"RecordURL": "https://"}), "Data.RecordURL");
}

#[test]
fn record_url_is_trimmed_and_normalised() {
    assert_eq!(
        spec(json!({"RecordURL": "  https://Example.org  "})).record_url,
        "https://example.org/"
    );
}

#[test]
fn record_url_must_be_a_string() {
    let m = invalid(json!({"RecordURL": 42}), "Data.RecordURL");
    assert!(m.contains("must be a string, got 42"), "{m}");
}

#[test]
fn record_url_length_is_limited() {
    let limits = StartLimits::default();
    let long = format!("https://example.org/{}", "a".repeat(limits.max_url_len));
    assert!(invalid(json!({"RecordURL": long}), "Data.RecordURL").contains("at most 2048"));
    let fits = format!(
        "https://example.org/{}",
        "a".repeat(limits.max_url_len - 20)
    );
    assert_eq!(spec(json!({"RecordURL": fits})).record_url.len(), 2048);
    // Expansion by percent-encoding counts too.
    let cjk = format!("https://example.org/{}", "中".repeat(1000));
    assert!(invalid(json!({"RecordURL": cjk}), "Data.RecordURL").contains("percent-encoded"));
}

#[test]
fn data_must_be_an_object() {
    let e = err(Value::Null);
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::MissingParam, "Data is required")
    );
    invalid(json!([1, 2]), "Data must be an object");
    invalid(json!("https://example.org"), "Data must be an object");
}

// ---- Audio ----

#[test]
fn audio_defaults_to_on() {
    assert!(spec(with(json!({}))).audio);
    assert!(spec(with(json!({"Audio": null}))).audio);
    assert!(spec(with(json!({"Audio": true}))).audio);
    assert!(!spec(with(json!({"Audio": false}))).audio);
    assert!(!spec(with(json!({"Audio": "false"}))).audio);
    invalid(with(json!({"Audio": "off"})), "Data.Audio");
}

#[test]
fn capture_is_the_workers_default_unless_chosen() {
    assert_eq!(spec(with(json!({}))).capture, None);
    assert_eq!(spec(with(json!({"Capture": null}))).capture, None);
    assert_eq!(spec(with(json!({"Capture": ""}))).capture, None);
    assert_eq!(
        spec(with(json!({"Capture": "X11"}))).capture,
        Some(CaptureBackend::X11)
    );
    assert_eq!(
        spec(with(json!({"Capture": "screencast"}))).capture,
        Some(CaptureBackend::Screencast)
    );
    invalid(with(json!({"Capture": "vnc"})), "Data.Capture");
    invalid(with(json!({"Capture": 1})), "Data.Capture");
}

#[test]
fn tasks_stored_before_audio_existed_record_sound() {
    let mut stored = serde_json::to_value(spec(with(json!({"Audio": false})))).unwrap();
    stored.as_object_mut().unwrap().remove("audio");
    let back: StartSpec = serde_json::from_value(stored).unwrap();
    assert!(back.audio);
}

// ---- ManualStart ----

#[test]
fn manual_start() {
    assert!(spec(with(json!({"ManualStart": true}))).manual_start);
    assert!(!spec(with(json!({"ManualStart": false}))).manual_start);
    assert!(!spec(with(json!({"ManualStart": null}))).manual_start);
    // As the source product's clients send them: 1/0 and "true"/"false".
    assert!(spec(with(json!({"ManualStart": 1}))).manual_start);
    assert!(!spec(with(json!({"ManualStart": 0}))).manual_start);
    assert!(spec(with(json!({"ManualStart": "true"}))).manual_start);
    assert!(!spec(with(json!({"ManualStart": "false"}))).manual_start);
    assert!(!spec(with(json!({"Audio": 0}))).audio);
    // Not a boolean at all: refused. "0"/"1" too (web-record took any such string for true).
    for bad in [
        json!("yes"),
        json!(" true"),
        json!("TRUE"),
        json!("1"),
        json!("0"),
        json!(2),
        json!(0.5),
        json!([]),
        json!({}),
    ] {
        let m = invalid(with(json!({"ManualStart": bad})), "Data.ManualStart");
        assert!(m.contains("boolean"), "{m}");
    }
}

// ---- Width / Height ----

#[test]
fn dimensions_zero_means_default() {
    let s = spec(with(json!({"Width": 0, "Height": 0})));
    assert_eq!((s.width, s.height), (1280, 720));
}

#[test]
fn dimensions_in_range() {
    let s = spec(with(json!({"Width": 2560, "Height": 1440})));
    assert_eq!((s.width, s.height), (2560, 1440));
    let s = spec(with(json!({"Width": 16, "Height": 16})));
    assert_eq!((s.width, s.height), (16, 16));
    let s = spec(with(json!({"Width": 1920.0})));
    assert_eq!(s.width, 1920);
}

#[test]
fn dimensions_out_of_range() {
    invalid(with(json!({"Width": 2561})), "Data.Width");
    invalid(with(json!({"Height": 3000})), "Data.Height");
    invalid(with(json!({"Width": -1})), "Data.Width");
    invalid(with(json!({"Height": 1e20})), "Data.Height");
    invalid(with(json!({"Width": 640.5})), "Data.Width");
}

#[test]
fn dimensions_below_chromium_minimum_are_rejected() {
    let m = invalid(with(json!({"Width": 3})), "Data.Width");
    assert!(m.contains("at least 16"), "{m}");
    invalid(with(json!({"Height": 15})), "Data.Height");
}

#[test]
fn dimensions_wrong_type_message_names_the_field_and_value() {
    let m = invalid(with(json!({"Width": "abc"})), "Data.Width");
    assert_eq!(
        m,
        "Data.Width must be an integer between 0 and 2560 (0 means the default, 1280), got \"abc\""
    );
    invalid(with(json!({"Height": "72O"})), "Data.Height");
    invalid(with(json!({"Height": true})), "Data.Height");
}

#[test]
fn numbers_may_come_as_numeric_strings() {
    // web-record's dispatcher ran parseInt on them; its clients send "3600".
    let s = spec(with(json!({
        "Width": "1920", "Height": "1080", "MaxDurationLimit": "3600", "Fps": "25",
        "StartTimeout": "60",
    })));
    assert_eq!((s.width, s.height, s.max_duration_secs), (1920, 1080, 3600));
    assert_eq!((s.fps, s.start_timeout_secs), (25, 60));
    assert_eq!(spec(with(json!({"Width": "1280.0"}))).width, 1280);
    assert_eq!(spec(with(json!({"Width": "01280"}))).width, 1280);
    assert_eq!(spec(with(json!({"Width": "0"}))).width, 1280);
    // Still range-checked, and anything that is not a number is refused.
    invalid(
        with(json!({"MaxDurationLimit": "36001"})),
        "Data.MaxDurationLimit",
    );
    invalid(
        with(json!({"MaxDurationLimit": "99999999999999999999999"})),
        "Data.MaxDurationLimit",
    );
    for bad in [
        "", " ", "abc", "12px", "-5", "+5", "1e3", "inf", "NaN", "0x10", "12.5", "12.", ".0",
        " 720", "720 ", "7 20",
    ] {
        let m = invalid(with(json!({"Width": bad})), "Data.Width");
        assert!(m.contains("must be an integer"), "{bad:?}: {m}");
    }
}

// ---- CallbackURL ----

#[test]
fn callback_url() {
    assert_eq!(
        spec(with(
            json!({"CallbackURL": "https://hooks.example.org/cb?x=1"})
        ))
        .callback_url
        .as_deref(),
        Some("https://hooks.example.org/cb?x=1")
    );
    assert_eq!(spec(with(json!({"CallbackURL": ""}))).callback_url, None);
    assert_eq!(spec(with(json!({"CallbackURL": null}))).callback_url, None);
    invalid(
        with(json!({"CallbackURL": "ftp://example.org/"})),
        "Data.CallbackURL",
    );
    invalid(
        with(json!({"CallbackURL": "hooks.example.org"})),
        "Data.CallbackURL",
    );
    invalid(
        with(json!({"CallbackURL": {"url": "https://x"}})),
        "Data.CallbackURL",
    );
    let long = format!("https://example.org/{}", "a".repeat(3000));
    invalid(with(json!({"CallbackURL": long})), "Data.CallbackURL");
}

// ---- MaxDurationLimit ----

#[test]
fn max_duration_limit() {
    assert_eq!(
        spec(with(json!({"MaxDurationLimit": 0}))).max_duration_secs,
        36_000
    );
    assert_eq!(
        spec(with(json!({"MaxDurationLimit": 60}))).max_duration_secs,
        60
    );
    assert_eq!(
        spec(with(json!({"MaxDurationLimit": 36000}))).max_duration_secs,
        36_000
    );
    invalid(
        with(json!({"MaxDurationLimit": 36001})),
        "Data.MaxDurationLimit",
    );
    invalid(
        with(json!({"MaxDurationLimit": -5})),
        "Data.MaxDurationLimit",
    );
    assert_eq!(
        spec(with(json!({"MaxDurationLimit": "60"}))).max_duration_secs,
        60
    );
    invalid(
        with(json!({"MaxDurationLimit": "sixty"})),
        "Data.MaxDurationLimit",
    );
}

// ---- StorageType ----

#[test]
fn storage_type_and_aliases() {
    for (raw, want) in [
        ("local", StorageType::Local),
        ("cfs", StorageType::Local),
        ("CFS", StorageType::Local),
        ("s3", StorageType::S3),
        ("cos", StorageType::S3),
        ("COS", StorageType::S3),
        ("S3", StorageType::S3),
    ] {
        assert_eq!(
            spec(with(json!({"StorageType": raw}))).storage_type,
            want,
            "{raw}"
        );
    }
    assert_eq!(
        spec(with(json!({"StorageType": ""}))).storage_type,
        StorageType::Local
    );
    invalid(with(json!({"StorageType": "vod"})), "Data.StorageType");
    invalid(with(json!({"StorageType": 1})), "Data.StorageType");
}

// ---- extensions ----

#[test]
fn fps() {
    assert_eq!(spec(with(json!({"Fps": 25}))).fps, 25);
    assert_eq!(spec(with(json!({"Fps": 60}))).fps, 60);
    assert_eq!(spec(with(json!({"Fps": 1}))).fps, 1);
    assert_eq!(spec(with(json!({"Fps": 0}))).fps, 30);
    invalid(with(json!({"Fps": 61})), "Data.Fps");
    invalid(with(json!({"Fps": 29.97})), "Data.Fps");
    invalid(with(json!({"Fps": "30 fps"})), "Data.Fps");
}

#[test]
fn start_timeout() {
    assert_eq!(spec(with(json!({"StartTimeout": 5}))).start_timeout_secs, 5);
    assert_eq!(
        spec(with(json!({"StartTimeout": 86400}))).start_timeout_secs,
        86_400
    );
    // 0 and absent: no deadline of its own (the wait ends at MaxDurationLimit).
    assert_eq!(spec(with(json!({"StartTimeout": 0}))).start_timeout_secs, 0);
    assert_eq!(spec(with(json!({}))).start_timeout_secs, 0);
    invalid(with(json!({"StartTimeout": 86401})), "Data.StartTimeout");
    invalid(with(json!({"StartTimeout": [300]})), "Data.StartTimeout");
}

#[test]
fn user_context() {
    assert_eq!(
        spec(with(json!({"UserContext": "{\"lesson\":7}"})))
            .user_context
            .as_deref(),
        Some("{\"lesson\":7}")
    );
    assert_eq!(spec(with(json!({"UserContext": ""}))).user_context, None);
    let fits = "字".repeat(4096);
    assert_eq!(
        spec(with(json!({"UserContext": fits.clone()}))).user_context,
        Some(fits)
    );
    invalid(
        with(json!({"UserContext": "x".repeat(4097)})),
        "Data.UserContext",
    );
    invalid(
        with(json!({"UserContext": {"lesson": 7}})),
        "Data.UserContext must be a string",
    );
}

#[test]
fn limits_are_configurable() {
    let limits = StartLimits {
        max_url_len: 40,
        max_string_len: 4,
        max_context_len: 2,
        ..test_limits()
    };
    let p = |d: Value| parse_start(&d, &limits);
    assert!(p(json!({"RecordURL": "https://example.org/"})).is_ok());
    assert!(p(json!({"RecordURL": "https://example.org/a-rather-long-path-here"})).is_err());
    assert!(p(json!({"RecordURL": "https://example.org/", "UserContext": "abc"})).is_err());
    assert!(
        p(json!({"RecordURL": "https://example.org/", "Output": {"Cos": {"Bucket": "abcde"}}}))
            .is_err()
    );
}

#[test]
fn a_full_source_product_request_is_accepted() {
    let (spec, secrets) = ok(json!({
        "RecordURL": "https://class.example.org/room/1?role=recorder",
        "ManualStart": true,
        "Width": 1920,
        "Height": 1080,
        "CallbackURL": "https://api.example.org/record/callback",
        "MaxDurationLimit": 7200,
        "StorageType": "cos",
        "Output": {
            "Cos": {"Bucket": "rec-1250000000", "Region": "ap-guangzhou", "TargetDir": "room1", "TargetName": "final"},
            "Video": {"Muxer": "hls", "EncryptKey": KEY, "AuthUrl": "https://api.example.org/key"},
        },
    }));
    assert!(spec.manual_start);
    assert_eq!(
        (spec.width, spec.height, spec.max_duration_secs),
        (1920, 1080, 7200)
    );
    assert_eq!(spec.storage_type, StorageType::S3);
    assert_eq!(spec.muxer, Muxer::Hls);
    assert_eq!(spec.output.region.as_deref(), Some("ap-guangzhou"));
    assert!(secrets.encrypt_key.is_some());
}

/// Every listed field is really read: a wrong type at its path is reported under its path.
#[test]
fn every_listed_field_is_parsed() {
    for path in START_FIELDS {
        let mut data = json!({"RecordURL": "https://example.org/"});
        let mut node = &mut data;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            node = node
                .as_object_mut()
                .unwrap()
                .entry(part.to_string())
                .or_insert_with(|| json!({}));
        }
        node[parts[parts.len() - 1]] = json!([1]);
        let e = err(data);
        // Output.Vod is read only to be refused.
        let code = match *path {
            "Output.Vod" => ErrorCode::UnsupportedOutput,
            _ => ErrorCode::InvalidParam,
        };
        assert_eq!(e.code, code, "{path}: {e}");
        assert!(
            e.message.starts_with(&format!("Data.{path} ")),
            "{path}: {}",
            e.message
        );
    }
}

/// An EncryptKey in mixed case.
pub(super) const KEY: &str = "00112233445566778899AaBbCcDdEeFf";

// ---- Headers.UserAgent ----

#[test]
fn user_agent_from_headers() {
    let ua = "Mozilla/5.0 (X11; Linux x86_64) ClassRecorder/2.1";
    assert_eq!(
        spec(with(json!({"Headers": {"UserAgent": ua}}))).user_agent,
        Some(ua.to_owned())
    );
    assert_eq!(spec(with(json!({}))).user_agent, None);
    assert_eq!(
        spec(with(json!({"Headers": {"UserAgent": ""}}))).user_agent,
        None
    );
    assert_eq!(spec(with(json!({"Headers": {}}))).user_agent, None);
    assert_eq!(spec(with(json!({"Headers": null}))).user_agent, None);
    for bad in ["a\r\nX-Injected: 1", "tab\there", "录制"] {
        let m = invalid(
            with(json!({"Headers": {"UserAgent": bad}})),
            "Data.Headers.UserAgent",
        );
        assert!(m.contains("printable ASCII"), "{m}");
    }
    invalid(
        with(json!({"Headers": "UA"})),
        "Data.Headers must be an object",
    );
    invalid(
        with(json!({"Headers": {"UserAgent": 7}})),
        "Data.Headers.UserAgent must be a string",
    );
}
