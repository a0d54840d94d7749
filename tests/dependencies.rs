//! One TLS stack in the build: no OpenSSL anywhere in Cargo.lock (reqwest, the AWS SDK and the
//! Redis client all on rustls), one rustls, and one crypto backend built (aws-lc-rs; `ring`
//! is in the lock only for optional features nothing turns on, and must stay unbuilt).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every package of Cargo.lock: name → its versions.
fn locked() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string)
        };
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            panic!("a Cargo.lock package without a name or version: {block}");
        };
        out.entry(name).or_default().insert(version);
    }
    assert!(out.len() > 100, "{} packages", out.len());
    out
}

#[test]
fn the_lock_has_no_openssl_and_one_rustls() {
    let lock = locked();
    for banned in [
        "openssl",
        "openssl-sys",
        "native-tls",
        "hyper-tls",
        "tokio-native-tls",
    ] {
        assert!(
            !lock.contains_key(banned),
            "{banned} {:?} is in Cargo.lock: a dependency turned OpenSSL on",
            lock[banned]
        );
    }
    let rustls = &lock["rustls"];
    assert_eq!(rustls.len(), 1, "rustls in several versions: {rustls:?}");
    assert!(rustls.iter().all(|v| v.starts_with("0.23.")), "{rustls:?}");
    // The AWS SDK without its legacy stack (hyper 0.14 with rustls 0.21).
    assert!(
        lock["hyper"].iter().all(|v| !v.starts_with("0.")),
        "hyper {:?}",
        lock["hyper"]
    );
}

/// What `cargo tree` says is built for this machine (normal dependencies): `name vX.Y.Z` lines.
fn built() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(format!("{} {}", w.next()?, w.next()?))
        })
        .collect()
}

#[test]
fn one_crypto_backend_and_no_openssl_are_built() {
    let built = built();
    let has = |name: &str| built.iter().any(|c| c.split(' ').next() == Some(name));
    assert!(has("aws-lc-rs"), "rustls's backend is not built");
    assert!(has("rustls"));
    for absent in ["ring", "openssl-sys", "native-tls", "quinn"] {
        assert!(!has(absent), "{absent} is built");
    }
}
