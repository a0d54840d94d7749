//! `Output.Snapshots`: `{Interval, Format, Width?, CallbackURL?}`, pictures taken from the
//! recording every `Interval` seconds of recorded time.

use super::Parser;
use super::reader::Obj;
use crate::api::error::{ApiError, echo};
use crate::task::{SnapshotFormat, SnapshotSpec};

/// Longest interval between two snapshots, seconds (a day).
pub(crate) const MAX_INTERVAL_S: u64 = 86_400;
/// Narrowest and widest snapshot, pixels.
pub(crate) const WIDTH_RANGE: (u64, u64) = (16, 7680);

impl Parser<'_> {
    /// The task's snapshots, if it asks for them.
    pub(super) fn snapshots(&self, out: &Obj<'_>) -> Result<Option<SnapshotSpec>, ApiError> {
        let Some(obj) = out.object("Snapshots")? else {
            return Ok(None);
        };
        // Every field's type is checked before a missing one is reported.
        let interval = obj.int("Interval", 1, MAX_INTERVAL_S, " seconds")?;
        let format = match obj.get("Format") {
            None => None,
            Some(v) => Some(match v.as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("jpg") => SnapshotFormat::Jpg,
                Some("png") => SnapshotFormat::Png,
                _ => {
                    return Err(ApiError::invalid(
                        &obj.field("Format"),
                        format!("must be \"jpg\" or \"png\", got {}", echo(v)),
                    ));
                }
            }),
        };
        let (min, max) = WIDTH_RANGE;
        let width = obj.int("Width", min, max, " pixels")?.map(|w| w as u32);
        let callback_url = match obj.string("CallbackURL", self.limits.max_url_len)? {
            None => None,
            Some(raw) => Some(super::http_url(&obj.field("CallbackURL"), raw.trim())?),
        };
        let Some(interval) = interval else {
            return Err(ApiError::missing(&obj.field("Interval")));
        };
        let Some(format) = format else {
            return Err(ApiError::missing(&obj.field("Format")));
        };
        Ok(Some(SnapshotSpec {
            interval_ms: interval * 1000,
            format,
            width,
            callback_url,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{err, spec};
    use crate::error::ErrorCode;
    use crate::task::{SnapshotFormat, SnapshotSpec};

    #[test]
    fn snapshots_are_read_with_their_defaults() {
        let s = spec(json!({"RecordURL": "https://example.com",
            "Output": {"Snapshots": {"Interval": 5, "Format": "png"}}}));
        assert_eq!(
            s.output.snapshots,
            Some(SnapshotSpec {
                interval_ms: 5000,
                format: SnapshotFormat::Png,
                width: None,
                callback_url: None
            })
        );
        let s = spec(json!({"RecordURL": "https://example.com",
            "Output": {"Snapshots": {"Interval": "2", "Format": "JPG", "Width": 320,
                "CallbackURL": "https://hooks.example.com/snap"}}}));
        let snap = s.output.snapshots.unwrap();
        assert_eq!(snap.format, SnapshotFormat::Jpg);
        assert_eq!(snap.width, Some(320));
        assert_eq!(
            snap.callback_url.as_deref(),
            Some("https://hooks.example.com/snap")
        );
        let s = spec(json!({"RecordURL": "https://example.com"}));
        assert_eq!(s.output.snapshots, None);
    }

    #[test]
    fn bad_snapshot_fields_are_refused_with_stable_codes() {
        for (bad, code, field) in [
            (
                json!({"Interval": 0, "Format": "jpg"}),
                ErrorCode::InvalidParam,
                "Interval",
            ),
            (
                json!({"Interval": 0.5, "Format": "jpg"}),
                ErrorCode::InvalidParam,
                "Interval",
            ),
            (
                json!({"Interval": -1, "Format": "jpg"}),
                ErrorCode::InvalidParam,
                "Interval",
            ),
            (
                json!({"Format": "jpg"}),
                ErrorCode::MissingParam,
                "Interval",
            ),
            (
                json!({"Interval": 1, "Format": "gif"}),
                ErrorCode::InvalidParam,
                "Format",
            ),
            (
                json!({"Interval": 1, "Format": 1}),
                ErrorCode::InvalidParam,
                "Format",
            ),
            (json!({"Interval": 1}), ErrorCode::MissingParam, "Format"),
            (
                json!({"Interval": 1, "Format": "png", "Width": 8}),
                ErrorCode::InvalidParam,
                "Width",
            ),
            (
                json!({"Interval": 1, "Format": "png", "CallbackURL": "ftp://x.example/"}),
                ErrorCode::InvalidParam,
                "CallbackURL",
            ),
        ] {
            let e = err(json!({"RecordURL": "https://example.com", "Output": {"Snapshots": bad}}));
            assert_eq!(e.code, code, "{bad}: {e:?}");
            assert!(
                e.message
                    .contains(&format!("Data.Output.Snapshots.{field}")),
                "{bad}: {}",
                e.message
            );
        }
        let e = err(json!({"RecordURL": "https://example.com", "Output": {"Snapshots": 5}}));
        assert_eq!(e.code, ErrorCode::InvalidParam);
    }
}
