//! `api-spec/openapi.yaml` as a small validator, for the tests that check real answers against
//! the spec: `tests/api_contract.rs` (every answer of its in-process API) and
//! `tests/webrecord_client.rs` (every answer and callback a web-record client gets from the
//! running service).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use reqwest::header::HeaderMap;
use serde_json::Value;

pub static SPEC: LazyLock<Spec> = LazyLock::new(Spec::load);

pub struct Spec {
    pub root: Value,
    /// `ErrorCode` → HTTP status, from the table in the spec's `ErrorResponse.ErrorCode`.
    pub http_of_code: HashMap<String, u16>,
}

impl Spec {
    pub fn load() -> Spec {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/api-spec/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("read api-spec/openapi.yaml");
        let root: Value = serde_norway::from_str(&text).expect("api-spec/openapi.yaml is YAML");
        let table = root
            .pointer("/components/schemas/ErrorResponse/properties/ErrorCode/description")
            .and_then(Value::as_str)
            .expect("the spec describes ErrorResponse.ErrorCode with a table");
        let mut http_of_code = HashMap::new();
        for line in table.lines().map(str::trim) {
            if !line.starts_with("| `") {
                continue;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells[1].trim_matches('`').to_owned();
            let status: u16 = cells[2]
                .parse()
                .unwrap_or_else(|_| panic!("bad HTTP status in the spec's table: {line}"));
            http_of_code.insert(code, status);
        }
        assert!(
            http_of_code.len() >= 11,
            "the spec's ErrorCode table has too few rows: {http_of_code:?}"
        );
        Spec { root, http_of_code }
    }

    /// Follows `$ref: '#/...'` to the referenced node.
    pub fn deref<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else {
                return node;
            };
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("the spec uses only local references, got {reference}"));
            node = self
                .root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling reference {reference} in the spec"));
        }
        panic!("reference loop in the spec at {node}");
    }

    /// What is wrong with an answer to `method path` (empty: it conforms).
    pub fn check_response(
        &self,
        path: &str,
        method: &str,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Vec<String> {
        let mut errs = Vec::new();
        let pointer = format!(
            "/paths/{}/{method}/responses",
            path.replace('~', "~0").replace('/', "~1")
        );
        let responses = self
            .root
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("the spec has no {method} {path}"));
        let Some(response) = responses.get(status.to_string()) else {
            errs.push(format!(
                "{method} {path}: the spec declares no {status} response"
            ));
            return errs;
        };
        let response = self.deref(response);

        let request_id_header = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let declares_request_id = response
            .get("headers")
            .and_then(|h| h.get("X-Request-ID"))
            .is_some();
        if declares_request_id && request_id_header.is_none() {
            errs.push(format!(
                "{method} {path} {status}: the spec declares an X-Request-ID header; none was sent"
            ));
        }

        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return errs;
        };
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let Some(media) = content.get(&content_type) else {
            errs.push(format!(
                "{method} {path} {status}: content type {content_type:?} is not declared (the spec declares {:?})",
                content.keys().collect::<Vec<_>>()
            ));
            return errs;
        };
        if content_type != "application/json" {
            return errs;
        }
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                errs.push(format!(
                    "{method} {path} {status}: the body is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(body)
                ));
                return errs;
            }
        };
        if let Some(schema) = media.get("schema") {
            self.validate(schema, &value, "body", &mut errs);
        }
        if let (Some(header), Some(in_body)) = (
            request_id_header.as_deref(),
            value.get("RequestID").and_then(Value::as_str),
        ) && header != in_body
        {
            errs.push(format!(
                "X-Request-ID {header:?} differs from the body's RequestID {in_body:?}"
            ));
        }
        if status != 200
            && let Some(code) = value.get("ErrorCode").and_then(Value::as_str)
        {
            match self.http_of_code.get(code) {
                Some(&expected) if expected == status => {}
                Some(&expected) => errs.push(format!(
                    "ErrorCode {code} was answered with HTTP {status}; the spec lists {expected}"
                )),
                None => errs.push(format!("ErrorCode {code} is not in the spec's table")),
            }
        }
        errs
    }

    /// A small JSON Schema check: `$ref`, `allOf`, `oneOf`, `type`, `enum`, `const`, `format:
    /// uuid`, `minimum`, `maximum`, `maxLength`, `properties` (closed: an undeclared key is an
    /// error, stricter than JSON Schema, so that undocumented fields are caught), `required` and
    /// `items`. Which `oneOf` alternative a value matches is decided as JSON Schema decides it
    /// (a client's validator does: objects are open unless `additionalProperties: false`), and
    /// the value is then checked strictly against that one.
    pub fn validate(&self, schema: &Value, value: &Value, at: &str, errs: &mut Vec<String>) {
        self.check(schema, value, at, errs, true);
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, errs: &mut Vec<String>, strict: bool) {
        let schema = self.deref(schema);
        let mut parts = vec![schema];
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            parts.extend(all.iter().map(|p| self.deref(p)));
        }
        for part in &parts {
            if let Some(t) = part.get("type") {
                let types: Vec<&str> = match t {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                if !types.iter().any(|t| type_matches(t, value)) {
                    errs.push(format!("{at}: expected type {types:?}, got {value}"));
                }
            }
            if let Some(allowed) = part.get("enum").and_then(Value::as_array)
                && !allowed.contains(value)
            {
                errs.push(format!(
                    "{at}: {value} is not one of the spec's values {allowed:?}"
                ));
            }
            if let Some(c) = part.get("const")
                && c != value
            {
                errs.push(format!("{at}: expected {c}, got {value}"));
            }
            if part.get("format").and_then(Value::as_str) == Some("uuid")
                && let Some(s) = value.as_str()
                && uuid::Uuid::parse_str(s).is_err()
            {
                errs.push(format!("{at}: {s:?} is not a UUID"));
            }
            if let Some(n) = value.as_f64() {
                if let Some(min) = part.get("minimum").and_then(Value::as_f64)
                    && n < min
                {
                    errs.push(format!("{at}: {n} is below the minimum {min}"));
                }
                if let Some(max) = part.get("maximum").and_then(Value::as_f64)
                    && n > max
                {
                    errs.push(format!("{at}: {n} is above the maximum {max}"));
                }
            }
            if let (Some(max), Some(s)) = (
                part.get("maxLength").and_then(Value::as_u64),
                value.as_str(),
            ) && s.chars().count() as u64 > max
            {
                errs.push(format!("{at}: longer than {max} characters"));
            }
        }

        if let Value::Object(map) = value {
            let mut declared: BTreeMap<&str, &Value> = BTreeMap::new();
            let mut required: Vec<&str> = Vec::new();
            let mut closed = false;
            for part in &parts {
                if let Some(props) = part.get("properties").and_then(Value::as_object) {
                    closed |= strict;
                    declared.extend(props.iter().map(|(k, v)| (k.as_str(), v)));
                }
                if part.get("additionalProperties") == Some(&Value::Bool(false)) {
                    closed = true;
                }
                if let Some(req) = part.get("required").and_then(Value::as_array) {
                    required.extend(req.iter().filter_map(Value::as_str));
                }
            }
            for name in required {
                if !map.contains_key(name) {
                    errs.push(format!("{at}: the required property {name} is missing"));
                }
            }
            for (key, sub) in map {
                match declared.get(key.as_str()) {
                    Some(sub_schema) => {
                        self.check(sub_schema, sub, &format!("{at}.{key}"), errs, strict)
                    }
                    None if closed => errs.push(format!(
                        "{at}.{key}: not a property the spec declares (declared: {:?})",
                        declared.keys().collect::<Vec<_>>()
                    )),
                    None => {}
                }
            }
        }
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                self.check(item_schema, item, &format!("{at}[{i}]"), errs, strict);
            }
        }
        if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
            let matching: Vec<&Value> = alternatives
                .iter()
                .filter(|alt| {
                    let mut e = Vec::new();
                    self.check(alt, value, at, &mut e, false);
                    e.is_empty()
                })
                .collect();
            match matching.as_slice() {
                [one] => self.check(one, value, at, errs, strict),
                _ => errs.push(format!(
                    "{at}: matches {} of the spec's oneOf alternatives, not exactly one: {value}",
                    matching.len()
                )),
            }
        }
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

impl Spec {
    /// The schema of the body POSTed to a task's CallbackURL (the `result` callback of `POST /`).
    pub fn callback_schema(&self) -> &Value {
        let callback = self
            .root
            .pointer("/paths/~1/post/callbacks/result")
            .and_then(Value::as_object)
            .and_then(|c| c.values().next())
            .expect("the spec declares the result callback of POST /");
        callback
            .pointer("/post/requestBody/content/application~1json/schema")
            .expect("the result callback has a JSON body")
    }

    /// What is wrong with a callback body (empty: it conforms).
    pub fn check_callback(&self, body: &[u8]) -> Vec<String> {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => {
                let mut errs = Vec::new();
                self.validate(self.callback_schema(), &value, "callback", &mut errs);
                errs
            }
            Err(e) => vec![format!(
                "the callback body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            )],
        }
    }
}
