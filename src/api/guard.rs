//! The checks a request passes before a handler sees it, as tower layers
//! (`tower_http::validate_request`): the bearer token. Each refusal is the contract's error
//! body.
//!
//! The decisions are pure functions ([`Tokens::accept`]); the validators only apply them to a
//! request.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, Response, header};
use tower_http::validate_request::ValidateRequest;

use super::error::ApiError;

/// The request id a request carries (set by the request-id layer before any check runs).
pub fn request_id_of(headers: &HeaderMap) -> String {
    crate::ops::request_id(headers)
}

/// The accepted API tokens; empty: no authentication.
#[derive(Debug, Clone, Default)]
pub struct Tokens(pub Arc<Vec<String>>);

impl Tokens {
    /// Whether these request headers carry an accepted `Authorization: Bearer <token>` (always
    /// true without tokens).
    pub fn accept(&self, headers: &HeaderMap) -> bool {
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
}
