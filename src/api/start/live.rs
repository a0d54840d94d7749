//! `Output.Live`: one push target (an object) or up to three (a list of objects), each
//! `{Url, VideoBitrate?, AudioBitrate?}` (bit rates in kbit/s).

use serde_json::Value;

use super::Parser;
use super::reader::Obj;
use crate::api::error::{ApiError, echo};
use crate::error::ErrorCode;
use crate::media::live::target::{
    AUDIO_KBPS_RANGE, LiveUrlError, MAX_TARGETS, VIDEO_KBPS_RANGE, parse_live_url, redacted_url,
};
use crate::task::LiveSpec;

impl Parser<'_> {
    /// The targets (redacted, for the task) and their full URLs (for its secrets).
    pub(super) fn live(&self, out: &Obj<'_>) -> Result<(Vec<LiveSpec>, Vec<String>), ApiError> {
        let path = out.field("Live");
        let items: Vec<(String, &serde_json::Map<String, Value>)> = match out.get("Live") {
            None => return Ok((Vec::new(), Vec::new())),
            Some(Value::Object(m)) => vec![(path.clone(), m)],
            Some(Value::Array(list)) => {
                if list.len() > MAX_TARGETS {
                    return Err(ApiError::invalid(
                        &path,
                        format!(
                            "may list at most {MAX_TARGETS} targets (got {})",
                            list.len()
                        ),
                    ));
                }
                let mut items = Vec::new();
                for (i, v) in list.iter().enumerate() {
                    let at = format!("{path}[{i}]");
                    match v {
                        Value::Object(m) => items.push((at, m)),
                        other => {
                            return Err(ApiError::invalid(
                                &path,
                                format!("must list objects; item {i} is {}", echo(other)),
                            ));
                        }
                    }
                }
                items
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    &path,
                    format!(
                        "must be an object or a list of objects, got {}",
                        echo(other)
                    ),
                ));
            }
        };
        let mut specs = Vec::new();
        let mut urls: Vec<String> = Vec::new();
        for (at, map) in items {
            let obj = Obj { map, path: at };
            let Some(raw) = obj.string("Url", self.limits.max_url_len)? else {
                return Err(ApiError::missing(&obj.field("Url")));
            };
            let raw = raw.trim();
            if let Err(e) = parse_live_url(raw) {
                let code = match e {
                    LiveUrlError::Scheme(_) => ErrorCode::UnsupportedOutput,
                    LiveUrlError::Invalid(_) => ErrorCode::InvalidParam,
                };
                // The message never quotes the URL: it may hold a stream key.
                return Err(ApiError::new(code, format!("{} {e}", obj.field("Url"))));
            }
            if urls.iter().any(|u| u == raw) {
                return Err(ApiError::invalid(
                    &obj.field("Url"),
                    "names a target listed already",
                ));
            }
            // Absent: the push carries the recording's own stream (no encode of its own).
            let kbps = |name: &str, (min, max): (u32, u32)| {
                obj.int(name, u64::from(min), u64::from(max), " kbit/s")
                    .map(|v| v.map(|v| v as u32))
            };
            specs.push(LiveSpec {
                url: redacted_url(raw),
                video_kbps: kbps("VideoBitrate", VIDEO_KBPS_RANGE)?,
                audio_kbps: kbps("AudioBitrate", AUDIO_KBPS_RANGE)?,
            });
            urls.push(raw.to_owned());
        }
        Ok((specs, urls))
    }
}

/// Checks each live URL against the egress rules RecordURL follows (the same guard, on the
/// target's host and port).
pub(crate) async fn check_live_egress(
    urls: &[String],
    policy: &crate::url_guard::UrlPolicy,
) -> Result<(), ApiError> {
    for (i, raw) in urls.iter().enumerate() {
        let Ok((_, host, port)) = parse_live_url(raw) else {
            continue; // refused by the parser already
        };
        // The guard reads only the host and port of the URL it is given; an http URL with the
        // target's host and port asks it exactly about the push's connection.
        let probe = format!("http://{host}:{port}/");
        if let Err(why) = crate::url_guard::check_url(&probe, policy).await {
            let path = if urls.len() == 1 {
                "Data.Output.Live.Url".to_owned()
            } else {
                format!("Data.Output.Live[{i}].Url")
            };
            return Err(ApiError::invalid(
                &path,
                why.replace(&probe, &redacted_url(raw)),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{err, spec};
    use crate::error::ErrorCode;

    #[test]
    fn one_target_or_a_list_of_up_to_three() {
        let s = spec(json!({"RecordURL": "https://example.com",
            "Output": {"Live": {"Url": "rtmp://live.example.com/app/sekr3t"}}}));
        assert_eq!(s.output.live.len(), 1);
        assert_eq!(s.output.live[0].url, "rtmp://live.example.com/app/***");
        assert_eq!(
            (s.output.live[0].video_kbps, s.output.live[0].audio_kbps),
            (None, None),
            "no bit rate: the recording's own stream"
        );
        let s = spec(
            json!({"RecordURL": "https://example.com", "Output": {"Live": [
            {"Url": "rtmp://a.example/app/k1", "VideoBitrate": 1000, "AudioBitrate": 64},
            {"Url": "srt://b.example:9000?streamid=x"}]}}),
        );
        assert_eq!(s.output.live.len(), 2);
        assert_eq!(s.output.live[0].video_kbps, Some(1000));
        assert_eq!(s.output.live[1].video_kbps, None);
        assert_eq!(s.output.live[1].url, "srt://b.example:9000?streamid=***");
        let four: Vec<_> = (0..4)
            .map(|i| json!({"Url": format!("rtmp://h/app/k{i}")}))
            .collect();
        let e = err(json!({"RecordURL": "https://example.com", "Output": {"Live": four}}));
        assert_eq!(e.code, ErrorCode::InvalidParam);
        assert!(e.message.contains("at most 3"), "{}", e.message);
    }

    #[test]
    fn bad_targets_get_stable_codes_and_keys_are_never_echoed() {
        let e = err(json!({"RecordURL": "https://example.com",
            "Output": {"Live": {"Url": "rtsp://h/app/sekr3t"}}}));
        assert_eq!(e.code, ErrorCode::UnsupportedOutput);
        assert!(e.message.contains("Data.Output.Live.Url"), "{}", e.message);
        assert!(!e.message.contains("sekr3t"), "{}", e.message);
        for bad in [
            json!({"Url": "rtmp://h/app"}),
            json!({"Url": "srt://h"}),
            json!({"Url": 3}),
            json!({}),
            json!({"Url": "rtmp://h/app/k", "VideoBitrate": 50}),
            json!({"Url": "rtmp://h/app/k", "AudioBitrate": 1000}),
        ] {
            let e = err(json!({"RecordURL": "https://example.com", "Output": {"Live": bad}}));
            assert!(
                matches!(e.code, ErrorCode::InvalidParam | ErrorCode::MissingParam),
                "{bad}: {e:?}"
            );
        }
        let e = err(
            json!({"RecordURL": "https://example.com", "Output": {"Live": [
            {"Url": "rtmp://h/app/k"}, {"Url": "rtmp://h/app/k"}]}}),
        );
        assert!(
            e.message.contains("Data.Output.Live[1].Url"),
            "{}",
            e.message
        );
        let e =
            err(json!({"RecordURL": "https://example.com", "Output": {"Live": "rtmp://h/a/k"}}));
        assert_eq!(e.code, ErrorCode::InvalidParam);
    }

    #[tokio::test]
    async fn live_targets_follow_the_egress_rules() {
        let policy = crate::url_guard::UrlPolicy::default();
        let e = super::check_live_egress(&["rtmp://127.0.0.1/app/sekr3t".into()], &policy)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParam);
        assert!(e.message.contains("Data.Output.Live.Url"), "{}", e.message);
        assert!(!e.message.contains("sekr3t"), "{}", e.message);
        let e = super::check_live_egress(
            &["rtmp://93.184.216.34/a/k".into(), "srt://[::1]:9000".into()],
            &policy,
        )
        .await
        .unwrap_err();
        assert!(e.message.contains("Live[1]"), "{}", e.message);
        assert!(
            super::check_live_egress(&["rtmp://93.184.216.34/a/k".into()], &policy)
                .await
                .is_ok()
        );
        let open = crate::url_guard::UrlPolicy::OPEN;
        assert!(
            super::check_live_egress(&["rtmp://127.0.0.1/a/k".into()], &open)
                .await
                .is_ok()
        );
    }
}
