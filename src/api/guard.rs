//! The checks a request passes before a handler sees it, as tower layers
//! (`tower_http::validate_request`): the `Origin` of browser requests, the bearer token, and the
//! JSON content type of the Action endpoint. Each refusal is the contract's error body.
//!
//! The decisions are pure functions ([`CorsOrigins::allows`], [`Tokens::accept`],
//! [`is_json`]); the validators only apply them to a request.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, header};
use tower_http::validate_request::ValidateRequest;

use super::error::ApiError;

/// The request id a request carries (set by the request-id layer before any check runs).
pub(crate) fn request_id_of(headers: &HeaderMap) -> String {
    crate::ops::request_id(headers)
}

/// The origins browsers may call the API from (`PAGECAST_CORS_ORIGINS`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// None: every request carrying an `Origin` header is refused (the default).
    #[default]
    None,
    /// `*`: any origin.
    Any,
    /// These origins (`scheme://host[:port]`, lowercase).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parses the setting's comma-separated items: `*`, or origins such as
    /// `https://app.example.org` or `http://localhost:3000`.
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let items: Vec<&str> = items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(CorsOrigins::None);
        }
        if items.contains(&"*") {
            if items.len() > 1 {
                return Err("`*` allows every origin; list no other origin beside it".into());
            }
            return Ok(CorsOrigins::Any);
        }
        let mut out = Vec::new();
        for item in items {
            out.push(normalize_origin(item).ok_or_else(|| {
                format!(
                    "{item:?} is not an origin (scheme://host[:port], e.g. https://app.example.org)"
                )
            })?);
        }
        Ok(CorsOrigins::List(out))
    }

    /// Whether a request with this `Origin` header value is allowed.
    pub(crate) fn allows(&self, origin: &str) -> bool {
        match self {
            CorsOrigins::None => false,
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => {
                let origin = origin.trim().to_ascii_lowercase();
                list.contains(&origin)
            }
        }
    }
}

/// `scheme://host[:port]` in lowercase, or `None` when `s` is not such an origin.
fn normalize_origin(s: &str) -> Option<String> {
    let s = s.trim_end_matches('/');
    let url = url::Url::parse(s).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return None;
    }
    // `Url::origin` drops a default port, as browsers do in the Origin header.
    Some(url.origin().ascii_serialization().to_ascii_lowercase())
}

/// Refuses requests whose `Origin` is not allowed (403 `OriginNotAllowed`). Requests without
/// an `Origin` header (every non-browser client) pass: the header is what a browser adds to a
/// cross-site request, including a `no-cors` one, so refusing it keeps pages (a page being
/// recorded too) from driving the API.
#[derive(Debug, Clone)]
pub(crate) struct AllowedOrigin(pub Arc<CorsOrigins>);

impl ValidateRequest<Body> for AllowedOrigin {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<Body>) -> Result<(), Response<Body>> {
        let Some(origin) = request.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        if origin.to_str().is_ok_and(|o| self.0.allows(o)) {
            return Ok(());
        }
        Err(ApiError::origin_not_allowed().into_response_with(&request_id_of(request.headers())))
    }
}

/// The accepted API tokens; empty: no authentication.
#[derive(Debug, Clone, Default)]
pub struct Tokens(pub Arc<Vec<String>>);

impl Tokens {
    /// Whether these request headers carry an accepted `Authorization: Bearer <token>` (always
    /// true without tokens).
    pub(crate) fn accept(&self, headers: &HeaderMap) -> bool {
        if self.0.is_empty() {
            return true;
        }
        // The scheme name is case-insensitive (RFC 9110 §11.1); the token is not.
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
        else {
            return false;
        };
        // Check every token (no early exit) so timing does not tell which one is close.
        self.0.iter().fold(false, |found, t| {
            constant_time_eq(t.as_bytes(), given.as_bytes()) | found
        })
    }
}

impl ValidateRequest<Body> for Tokens {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<Body>) -> Result<(), Response<Body>> {
        if self.accept(request.headers()) {
            return Ok(());
        }
        Err(ApiError::unauthorized().into_response_with(&request_id_of(request.headers())))
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Whether the request declares a JSON body: `application/json`, any case, parameters (such as
/// `charset=utf-8`) allowed.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Refuses a body not declared as JSON (415 `UnsupportedMediaType`) before it is read. A
/// browser can send `text/plain`, form or multipart bodies cross-site without a preflight;
/// `application/json` always needs one, which CORS then answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonBody;

impl ValidateRequest<Body> for JsonBody {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<Body>) -> Result<(), Response<Body>> {
        if is_json(request.headers()) {
            return Ok(());
        }
        Err(ApiError::unsupported_media_type()
            .into_response_with(&request_id_of(request.headers())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokem"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn tokens() {
        let t = Tokens(Arc::new(vec!["t1".into(), "t2".into()]));
        assert!(t.accept(&headers(&[(header::AUTHORIZATION, "Bearer t2")])));
        assert!(t.accept(&headers(&[(header::AUTHORIZATION, "bearer t1")])));
        for bad in [
            "t1",
            "Bearer",
            "Bearer t3",
            "Basic dDE6dDE=",
            "Bearer t1,t2",
        ] {
            assert!(
                !t.accept(&headers(&[(header::AUTHORIZATION, bad)])),
                "{bad}"
            );
        }
        assert!(!t.accept(&HeaderMap::new()));
        assert!(Tokens::default().accept(&HeaderMap::new()));
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            " application/json ",
        ] {
            assert!(is_json(&headers(&[(header::CONTENT_TYPE, ok)])), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "text/json",
            "",
        ] {
            assert!(!is_json(&headers(&[(header::CONTENT_TYPE, bad)])), "{bad}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn origins() {
        let parse = |items: &[&str]| {
            CorsOrigins::parse(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(parse(&[]).unwrap(), CorsOrigins::None);
        assert_eq!(parse(&[" ", ""]).unwrap(), CorsOrigins::None);
        assert_eq!(parse(&["*"]).unwrap(), CorsOrigins::Any);
        assert!(parse(&["*", "https://a.example"]).is_err());
        let list = parse(&[
            "https://App.Example.org/",
            "http://localhost:3000",
            "https://b.example:443",
        ])
        .unwrap();
        assert_eq!(
            list,
            CorsOrigins::List(vec![
                "https://app.example.org".into(),
                "http://localhost:3000".into(),
                "https://b.example".into(),
            ])
        );
        assert!(list.allows("https://app.example.org"));
        assert!(list.allows("HTTPS://APP.EXAMPLE.ORG"));
        assert!(list.allows("https://b.example"));
        assert!(!list.allows("https://app.example.org.evil.example"));
        assert!(!list.allows("http://app.example.org"));
        assert!(!list.allows("null"));
        assert!(!CorsOrigins::None.allows("https://app.example.org"));
        assert!(CorsOrigins::Any.allows("null"));
        for bad in [
            "app.example.org",
            "ftp://x",
            "https://a.example/path",
            "https://u@a.example",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
    }
}
