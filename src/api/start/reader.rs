//! Reading a JSON object of Start's `Data`, each value under its field path for messages.

use serde_json::{Map, Value};

use crate::api::error::{ApiError, echo};

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

    pub(super) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ApiError::invalid(
                &self.field(name),
                format!("must be a boolean (true or false), got {}", echo(other)),
            )),
        }
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
        let n = match value {
            Value::Number(n) => n
                .as_u64()
                .or_else(|| {
                    // 1280.0 is the same JSON number as 1280.
                    n.as_f64()
                        .filter(|f| {
                            f.is_finite() && f.fract() == 0.0 && *f >= 0.0 && *f <= max as f64
                        })
                        .map(|f| f as u64)
                })
                .filter(|v| (min..=max).contains(v)),
            _ => None,
        };
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
