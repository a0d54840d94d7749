//! Reading a JSON object of Start's `Data`, each value under its field path for messages.

use serde_json::{Map, Value};

use crate::api::error::{ApiError, echo};

/// A whole number `0..=max` given as a JSON number (`1280.0` is the same number as `1280`) or,
/// as the source product's code reads it, as a string holding one: digits, optionally followed
/// by a zero fraction (`"3600"`, `"3600.0"`; the spec's pattern `^[0-9]+(\.0+)?$`).
fn lenient_uint(value: &Value, max: u64) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.fract() == 0.0 && *f >= 0.0 && *f <= max as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let (digits, fraction) = s.split_once('.').unwrap_or((s, "0"));
            let plain = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !fraction.is_empty()
                && fraction.bytes().all(|b| b == b'0');
            // Leading zeros are fine; a number beyond u64 is out of range anyway.
            plain.then(|| digits.parse::<u64>().unwrap_or(u64::MAX))
        }
        _ => None,
    }
}

/// `true`/`false`, `1`/`0`, `"true"`/`"false"`. Strings `"1"`/`"0"` are refused: the source
/// product took any non-empty string for true, so a client sending `"0"` meant true there.
fn lenient_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A JSON object being read, with its path for messages (`Data.Output.Cos`).
pub(super) struct Obj<'a> {
    pub(super) map: &'a Map<String, Value>,
    pub(super) path: String,
}

impl<'a> Obj<'a> {
    /// The path of a field of this object.
    pub(super) fn field(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// The value of a field; `null` counts as absent.
    pub(super) fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub(super) fn object(&self, name: &str) -> Result<Option<Obj<'a>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map,
                path: self.field(name),
            })),
            Some(other) => Err(ApiError::invalid(
                &self.field(name),
                format!("must be an object, got {}", echo(other)),
            )),
        }
    }

    /// A boolean: `true`/`false`, or as the source product's clients also send them, `0`/`1`
    /// and `"true"`/`"false"`.
    pub(super) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        lenient_bool(value).map(Some).ok_or_else(|| {
            ApiError::invalid(
                &self.field(name),
                format!(
                    "must be a boolean (true or false; 1 or 0 are accepted), got {}",
                    echo(value)
                ),
            )
        })
    }

    /// An integer in `min..=max`; `note` is appended to the range in the message.
    pub(super) fn int(
        &self,
        name: &str,
        min: u64,
        max: u64,
        note: &str,
    ) -> Result<Option<u64>, ApiError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let n = lenient_uint(value, max).filter(|v| (min..=max).contains(v));
        match n {
            Some(v) => Ok(Some(v)),
            None => Err(ApiError::invalid(
                &self.field(name),
                format!(
                    "must be an integer between {min} and {max}{note}, got {}",
                    echo(value)
                ),
            )),
        }
    }

    /// A string of at most `max_chars` characters; `""` counts as absent.
    pub(super) fn string(&self, name: &str, max_chars: usize) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let len = s.chars().count();
                if len > max_chars {
                    return Err(ApiError::invalid(
                        &self.field(name),
                        format!("must be at most {max_chars} characters long (got {len})"),
                    ));
                }
                Ok(Some(s))
            }
            Some(other) => Err(ApiError::invalid(
                &self.field(name),
                format!("must be a string, got {}", echo(other)),
            )),
        }
    }
}
