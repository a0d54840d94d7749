//! End-to-end: what a recorded page, a task's URLs and a task's callback may reach on the
//! worker's network and machine. Real `serve` processes against a real Redis, real Chromium.

mod common;
#[path = "support/redis.rs"]
mod redis_support;
#[path = "support/service.rs"]
mod service_support;

use std::time::Duration;

use common::*;
use redis_support::TestRedis;
use serde_json::json;
use service_support::*;

fn log_of(svc: &Service) -> String {
    std::fs::read_to_string(svc.dir.join("serve.log")).unwrap_or_default()
}

/// `PAGECAST_ALLOWED_PRIVATE_NETWORKS=127.0.0.0/8` with private addresses otherwise refused:
/// a page on 127.0.0.1 is recorded and its callback on 127.0.0.1 delivered, while a RecordURL
/// in another private network is refused at Start and the page's own request to one is refused
/// by the egress proxy.
#[test]
fn named_private_networks_are_reachable_and_other_private_addresses_are_not() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let receiver = CallbackReceiver::start();
    let svc = service_with(
        &redis,
        "iso-named-networks",
        true,
        0,
        1,
        &[
            ("PAGECAST_ALLOW_PRIVATE_URLS", "false"),
            ("PAGECAST_ALLOWED_PRIVATE_NETWORKS", "127.0.0.0/8"),
        ],
    );
    let (status, body) = call(
        &svc.url,
        "Start",
        json!({ "RecordURL": "http://10.20.30.40/class" }),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["ErrorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("PAGECAST_ALLOWED_PRIVATE_NETWORKS"),
        "{body}"
    );

    let id = start(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/requests.html?get=http://192.168.77.1/secret"),
            "MaxDurationLimit": 3,
            "CallbackURL": format!("{}/ok", receiver.url),
        }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    assert!(!d["Result"]["Videos"].as_array().unwrap().is_empty(), "{d}");
    assert_eq!(d["Callback"]["State"], "delivered", "{d}");
    assert!(
        receiver.received().iter().any(|r| r.path == "/ok"),
        "the callback on 127.0.0.1 arrived"
    );
    let log = log_of(&svc);
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a page's request was refused") && l.contains("192.168.77.1"))
        .collect();
    assert!(!refused.is_empty(), "192.168.77.1 was not refused:\n{log}");
    assert!(
        refused[0].contains("PAGECAST_ALLOWED_PRIVATE_NETWORKS"),
        "{}",
        refused[0]
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("egress allowed") && l.contains("192.168.77.1")),
        "{log}"
    );
}

/// A network list that cannot be read stops the start, naming the setting and the entry.
#[test]
fn a_bad_private_network_list_stops_the_start() {
    for cmd in ["serve", "worker"] {
        let mut c = pagecast();
        c.arg(cmd).env(
            "PAGECAST_ALLOWED_PRIVATE_NETWORKS",
            "10.0.0.0/8,10.0.0.0/33",
        );
        let o = run(c, Duration::from_secs(20));
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("PAGECAST_ALLOWED_PRIVATE_NETWORKS") && err.contains("10.0.0.0/33"),
            "{cmd}: {err}"
        );
    }
}

/// Private addresses allowed, as on a trusted network, and loopback named (as the test service
/// does for its fixture pages): a recorded page still cannot reach the service's own API (here:
/// POST a Start, as a `no-cors` fetch can), through loopback or any other address of the
/// machine, while it reaches another server on loopback.
#[test]
fn a_recorded_page_cannot_drive_the_service_it_runs_in() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let other = CallbackReceiver::start();
    let svc = service(&redis, "iso-own-api", true, 0, 1);
    let port = svc.url.rsplit(':').next().unwrap().to_string();
    let mut page = format!("{fixtures}/requests.html?every=500&post={}/", svc.url);
    page.push_str(&format!(
        "&post=http://localhost:{port}/&post=http://0.0.0.0:{port}/"
    ));
    for ip in own_addresses() {
        page.push_str(&format!("&post=http://{ip}:{port}/"));
    }
    page.push_str(&format!("&post={}/ok", other.url));
    let id = start(
        &svc.url,
        json!({ "RecordURL": page, "MaxDurationLimit": 4 }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    // The other server on loopback got the page's requests...
    assert!(
        other
            .received()
            .iter()
            .any(|r| r.path == "/ok" && String::from_utf8_lossy(&r.body).contains("from-the-page")),
        "the page's POST to another loopback server did not arrive"
    );
    // ...the service created no task from them, and its proxy says why.
    let log = log_of(&svc);
    let created: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("api::action: task created"))
        .collect();
    assert_eq!(created.len(), 1, "only the test's own task: {created:#?}");
    assert!(
        !log.contains("from-the-page"),
        "a page's Start reached the API:\n{log}"
    );
    let refused = log
        .lines()
        .filter(|l| l.contains("a page's request was refused") && l.contains("own listener"))
        .count();
    assert!(refused > 0, "no refusal of the API logged:\n{log}");
}

/// Non-loopback addresses of this machine's interfaces, as URL hosts.
fn own_addresses() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let family = f.nth(2)?;
            let addr = f.next()?.split('/').next()?.to_string();
            match family {
                "inet" if !addr.starts_with("127.") => Some(addr),
                "inet6" if addr != "::1" && !addr.starts_with("fe80") => Some(format!("[{addr}]")),
                _ => None,
            }
        })
        .collect()
}

/// A page asking for a refused address in a tight loop (hundreds of requests a second) leaves
/// a bounded number of lines in the worker's log, and one saying how many were left out.
#[test]
fn a_page_requesting_a_refused_address_in_a_loop_does_not_flood_the_log() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let svc = service(&redis, "iso-log-flood", true, 0, 1);
    let id = start(
        &svc.url,
        json!({
            "RecordURL": format!("{fixtures}/requests.html?loop=6&get=http://169.254.169.254/latest/meta-data/"),
            "MaxDurationLimit": 5,
        }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let log = log_of(&svc);
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("a page's request was refused"))
        .collect();
    // At most 3 a destination per 10 s (the recording and its page load take less than two
    // such periods).
    assert!(
        !refusals.is_empty() && refusals.len() <= 6,
        "{} refusal lines:\n{}",
        refusals.len(),
        refusals.join("\n")
    );
    let left_out: u64 = log
        .lines()
        .filter(|l| l.contains("suppressed="))
        .filter_map(|l| {
            l.split("suppressed=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        left_out >= 100,
        "the page asked in a loop, so most refusals were counted, not logged: {left_out}\n{log}"
    );
}

/// An HTTP server on every address of this machine (`0.0.0.0`) that records the paths asked.
fn path_recorder() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let paths = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 2048];
            let n = conn.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some(path) = head.split(' ').nth(1) {
                paths.lock().unwrap().push(path.to_string());
            }
            let _ = conn.write_all(
                b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (port, seen)
}

/// `PAGECAST_ALLOW_PRIVATE_URLS=true` trusts private networks, not the machine itself: a
/// recorded page cannot reach another service on the machine (a local Redis, an agent) through
/// loopback or any of the machine's interface addresses, unless
/// `PAGECAST_ALLOWED_PRIVATE_NETWORKS` names the address (here 127.0.0.1 only, where the test
/// page and one "named" request go). Before, allow-private opened every address but the
/// service's own ports.
#[test]
fn with_private_networks_allowed_the_machines_own_addresses_stay_refused_unless_named() {
    let redis = TestRedis::start();
    let fixtures = fixture_server();
    let (port, seen) = path_recorder();
    let svc = service_with(
        &redis,
        "iso-own-addresses",
        true,
        0,
        1,
        &[
            ("PAGECAST_ALLOW_PRIVATE_URLS", "true"),
            ("PAGECAST_ALLOWED_PRIVATE_NETWORKS", "127.0.0.1"),
        ],
    );
    let mut page = format!("{fixtures}/requests.html?every=500");
    page.push_str(&format!("&get=http://127.0.0.1:{port}/named"));
    page.push_str(&format!("&get=http://127.0.0.2:{port}/loopback"));
    page.push_str(&format!("&get=http://0.0.0.0:{port}/unspecified"));
    let own = own_addresses();
    for (i, ip) in own.iter().enumerate() {
        page.push_str(&format!("&get=http://{ip}:{port}/own{i}"));
    }
    // Start refuses a RecordURL there too.
    let (status, body) = call(
        &svc.url,
        "Start",
        json!({ "RecordURL": format!("http://127.0.0.2:{port}/") }),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["ErrorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("an address of this machine"),
        "{body}"
    );
    let id = start(
        &svc.url,
        json!({ "RecordURL": page, "MaxDurationLimit": 4 }),
    );
    let d = wait_finished(&svc.url, &id, Duration::from_secs(90));
    assert!(d["Result"]["ErrorCode"].is_null(), "{d}");
    let paths = seen.lock().unwrap().clone();
    assert!(
        paths.iter().any(|p| p.starts_with("/named")),
        "the named address is reached (the page's requests ran): {paths:?}"
    );
    assert!(
        paths.iter().all(|p| p.starts_with("/named")),
        "only the named address is reached: {paths:?} (own addresses: {own:?})"
    );
    let log = log_of(&svc);
    assert!(
        log.lines()
            .any(|l| l.contains("a page's request was refused")
                && l.contains("127.0.0.2")
                && l.contains("an address of this machine")),
        "{log}"
    );
}
