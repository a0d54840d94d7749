//! The HTTP surface of the real `pagecast serve`, over real sockets.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::time::{Duration, Instant};

use common::*;
use service_support::*;

/// `pagecast serve` with these settings must stop at once with status 2, naming `naming`.
fn refuses_to_start(env: &[(&str, &str)], naming: &str) {
    let mut c = pagecast();
    c.args(["serve", "--no-worker"])
        .env("PAGECAST_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("PAGECAST_REDIS_URL", "redis://127.0.0.1:1/")
        .envs(env.iter().copied());
    let began = Instant::now();
    let o = run(c, Duration::from_secs(20));
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{env:?}: took {:?}",
        began.elapsed()
    );
    assert_eq!(o.status.code(), Some(2), "{env:?}: {}", stderr(&o));
    assert!(stderr(&o).contains(naming), "{env:?}: {}", stderr(&o));
}

#[test]
fn settings_that_would_open_the_api_refuse_to_start() {
    // A token list with no token in it would turn authentication off.
    refuses_to_start(&[("PAGECAST_API_TOKENS", " , ")], "PAGECAST_API_TOKENS");
    refuses_to_start(&[("PAGECAST_API_TOKENS", ",")], "PAGECAST_API_TOKENS");
    refuses_to_start(&[("PAGECAST_API_TOKENS", "")], "PAGECAST_API_TOKENS");
    refuses_to_start(
        &[("PAGECAST_CORS_ORIGINS", "evil.example")],
        "PAGECAST_CORS_ORIGINS",
    );
    refuses_to_start(
        &[("PAGECAST_CORS_ORIGINS", "*,https://a.example")],
        "PAGECAST_CORS_ORIGINS",
    );
}
