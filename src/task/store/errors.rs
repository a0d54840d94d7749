//! What a Redis error means for pagecast: a blip worth one more try, Redis unavailable for a
//! while (failover, restart, full memory), Redis configured in a way pagecast cannot work with
//! (credentials, certificates, mode, version), or something unexpected. Pure functions, so each
//! case is unit-tested; `conn.rs` acts on them.

use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::options::RedisMode;

/// The kinds of Redis configuration pagecast cannot work with, each named in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Misconfig {
    /// Wrong user or password (`WRONGPASS`, `NOAUTH`).
    Auth,
    /// The ACL user may not run a command or touch a key (`NOPERM`).
    Permission,
    /// The TLS handshake failed: an untrusted or mismatched server certificate, a client
    /// certificate the server wants, or no TLS on that port.
    Tls,
    /// `PAGECAST_REDIS_MODE` does not match the deployment (`MOVED` from a cluster node in
    /// standalone mode, a cluster command to a server without cluster support, an unknown
    /// sentinel master).
    Mode,
    /// The keys of one script hash to different cluster slots (`CROSSSLOT`).
    KeySlots,
    /// The server lacks a command pagecast needs (older than 6.2).
    Version,
}

impl Misconfig {
    /// The name shown in messages, doctor and readiness.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Misconfig::Auth => "RedisAuth",
            Misconfig::Permission => "RedisPermission",
            Misconfig::Tls => "RedisTls",
            Misconfig::Mode => "RedisMode",
            Misconfig::KeySlots => "RedisKeySlots",
            Misconfig::Version => "RedisVersion",
        }
    }
}

impl std::fmt::Display for Misconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one failed Redis call means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Class {
    /// Redis cannot serve now; the text says why when it is more than a broken connection.
    Unavailable(Option<&'static str>),
    /// Redis is set up in a way pagecast cannot work with; the text says how to fix it.
    Misconfigured(Misconfig, String),
    /// Neither: a bug or an unexpected answer.
    Unexpected,
}

/// The connection broke (or could not be made): worth one retry on a new connection.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// After this error, the store's shared connection is dropped and a new one made before the
/// retry: a `READONLY` server was demoted (failover) and the primary is elsewhere now (a managed
/// endpoint's DNS name, or the master the sentinels name); in sentinel mode, a broken
/// connection may mean the master died. Cluster connections follow the topology themselves.
pub(crate) fn needs_new_connection(mode: RedisMode, e: &RedisError) -> bool {
    match mode {
        RedisMode::Cluster => false,
        RedisMode::Standalone => is_read_only(e),
        RedisMode::Sentinel => is_read_only(e) || is_connection_error(e),
    }
}

fn is_read_only(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
}

/// Classifies `e`, met in `mode` with keys under `prefix`.
pub(crate) fn classify(mode: RedisMode, prefix: &str, e: &RedisError) -> Class {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if let Some(c) = tls_problem(&lower) {
        return c;
    }
    if is_connection_error(e) {
        return Class::Unavailable(None);
    }
    let code = e.code().unwrap_or_default();
    if e.kind() == ErrorKind::AuthenticationFailed
        || matches!(code, "WRONGPASS" | "NOAUTH")
        || lower.contains("invalid username-password")
        || lower.contains("authentication required")
    {
        let mut why = String::from(
            "Redis refused the credentials: check the user and password in PAGECAST_REDIS_URL \
             (redis://user:password@host:port, or redis://:password@host:port without an ACL user)",
        );
        // The refusal may come from a sentinel, which has a password of its own.
        if mode == RedisMode::Sentinel {
            why.push_str(
                "; for the sentinels, which may require their own, check \
                 PAGECAST_REDIS_SENTINEL_PASSWORD",
            );
        }
        return Class::Misconfigured(Misconfig::Auth, why);
    }
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::NoPerm) => {
            return Class::Misconfigured(
                Misconfig::Permission,
                format!(
                    "the Redis user may not run a command or touch a key pagecast needs: grant \
                     it every command on its keys, e.g. ACL SETUSER <user> on >password ~{prefix}* +@all"
                ),
            );
        }
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
            if mode != RedisMode::Cluster =>
        {
            return Class::Misconfigured(
                Misconfig::Mode,
                "Redis answered MOVED: it is a cluster node; set PAGECAST_REDIS_MODE=cluster \
                 and list seed nodes in PAGECAST_REDIS_URL"
                    .into(),
            );
        }
        ErrorKind::Server(ServerErrorKind::CrossSlot) => {
            return Class::Misconfigured(
                Misconfig::KeySlots,
                format!(
                    "the keys of one operation hash to different cluster slots: every key must \
                     carry one hash tag; set PAGECAST_REDIS_MODE=cluster (which gives the prefix \
                     {prefix:?} a tag) or write one into PAGECAST_KEY_PREFIX, e.g. {{pagecast}}:"
                ),
            );
        }
        ErrorKind::MasterNameNotFoundBySentinel | ErrorKind::NoValidReplicasFoundBySentinel => {
            return Class::Misconfigured(
                Misconfig::Mode,
                "no sentinel knows a master by that name: check PAGECAST_REDIS_SENTINEL_MASTER \
                 (the name in the sentinels' `sentinel monitor` line)"
                    .into(),
            );
        }
        ErrorKind::EmptySentinelList => {
            return Class::Misconfigured(
                Misconfig::Mode,
                "PAGECAST_REDIS_URL lists no sentinel".into(),
            );
        }
        _ => {}
    }
    if lower.contains("cluster support disabled") {
        return Class::Misconfigured(
            Misconfig::Mode,
            "this Redis is not a cluster: set PAGECAST_REDIS_MODE=standalone (or sentinel)".into(),
        );
    }
    if lower.contains("unknown command") {
        return Class::Misconfigured(
            Misconfig::Version,
            format!(
                "Redis does not know a command pagecast needs ({}): pagecast needs Redis 6.2 or later",
                text.trim()
            ),
        );
    }
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::ReadOnly) => Class::Unavailable(Some(
            "Redis answered READONLY: the server is a replica (a failover is in progress, or \
             PAGECAST_REDIS_URL names a replica: point it at the primary, or use \
             PAGECAST_REDIS_MODE=sentinel)",
        )),
        ErrorKind::Server(ServerErrorKind::NoScript) => Class::Unavailable(Some(
            "Redis lost its script cache (a failover or SCRIPT FLUSH); the next call loads the \
             script again",
        )),
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => Class::Unavailable(
            Some("the cluster's slots are moving; the client follows the new topology"),
        ),
        ErrorKind::Server(ServerErrorKind::ClusterDown) => {
            Class::Unavailable(Some("the cluster is down (CLUSTERDOWN)"))
        }
        ErrorKind::Server(ServerErrorKind::MasterDown) => {
            Class::Unavailable(Some("the replica lost its master (MASTERDOWN)"))
        }
        ErrorKind::Server(ServerErrorKind::BusyLoading) => {
            Class::Unavailable(Some("Redis is loading its data (LOADING)"))
        }
        ErrorKind::Server(ServerErrorKind::TryAgain) => Class::Unavailable(None),
        ErrorKind::ClusterConnectionNotFound | ErrorKind::InvalidClientConfig => {
            Class::Unavailable(None)
        }
        _ => match code {
            "OOM" => Class::Unavailable(Some(
                "Redis is out of memory (maxmemory reached with maxmemory-policy noeviction): \
                 give it more memory or shorten PAGECAST_TASK_RETENTION",
            )),
            "MISCONF" => Class::Unavailable(Some(
                "Redis cannot persist its data (MISCONF) and refuses writes",
            )),
            "BUSY" => Class::Unavailable(Some("Redis is busy running a script (BUSY)")),
            _ => Class::Unexpected,
        },
    }
}

/// A TLS handshake failure, told apart by rustls' messages.
fn tls_problem(lower: &str) -> Option<Class> {
    let has = |s: &str| lower.contains(s);
    let why = if has("unknownissuer") || has("unknown issuer") || has("invalid peer certificate") {
        if has("notvalidforname") || has("not valid for name") {
            "the server's certificate does not name the host in PAGECAST_REDIS_URL"
        } else {
            "the server's certificate is not signed by a trusted CA: set PAGECAST_REDIS_CA_FILE \
             to the CA that signed it (by default the system's roots are trusted)"
        }
    } else if has("certificaterequired") || has("certificate required") {
        "the server asks for a client certificate: set PAGECAST_REDIS_CLIENT_CERT and \
         PAGECAST_REDIS_CLIENT_KEY"
    } else if has("badcertificate") || has("bad certificate") || has("unknownca") {
        "the server refused the client certificate (PAGECAST_REDIS_CLIENT_CERT): it is not \
         signed by a CA the server trusts"
    } else if has("invalidcontenttype") || has("corrupt message") || has("invalid content type") {
        "the server does not speak TLS on that port: use redis:// instead of rediss://, or the \
         server's TLS port"
    } else if has("unable to parse") && (has("pem") || has("certificate") || has("private key"))
        || has("unable to build client with tls")
        || has("unable to extract private key")
    {
        "a TLS file cannot be used: PAGECAST_REDIS_CA_FILE, PAGECAST_REDIS_CLIENT_CERT and \
         PAGECAST_REDIS_CLIENT_KEY must be PEM files (certificate, certificate, private key)"
    } else {
        return None;
    };
    Some(Class::Misconfigured(Misconfig::Tls, why.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a server reply line gives (`-CODE detail`).
    fn reply(line: &str) -> RedisError {
        let v = redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap();
        match v {
            redis::Value::ServerError(e) => e.into(),
            other => panic!("not an error: {other:?}"),
        }
    }

    fn misconfig(c: Class) -> Option<Misconfig> {
        match c {
            Class::Misconfigured(m, _) => Some(m),
            _ => None,
        }
    }

    #[test]
    fn cluster_and_replica_answers_are_named() {
        let sa = RedisMode::Standalone;
        let moved = reply("MOVED 3999 127.0.0.1:6381");
        assert_eq!(misconfig(classify(sa, "p:", &moved)), Some(Misconfig::Mode));
        assert!(matches!(
            classify(RedisMode::Cluster, "{p}:", &moved),
            Class::Unavailable(Some(_))
        ));
        let cross = reply("CROSSSLOT Keys in request don't hash to the same slot");
        assert_eq!(
            misconfig(classify(RedisMode::Cluster, "p:", &cross)),
            Some(Misconfig::KeySlots)
        );
        let ro = reply("READONLY You can't write against a read only replica.");
        assert!(
            matches!(classify(sa, "p:", &ro), Class::Unavailable(Some(m)) if m.contains("replica"))
        );
        assert!(needs_new_connection(sa, &ro));
        assert!(needs_new_connection(RedisMode::Sentinel, &ro));
        assert!(!needs_new_connection(RedisMode::Cluster, &ro));
        let noscript = reply("NOSCRIPT No matching script. Please use EVAL.");
        assert!(matches!(
            classify(sa, "p:", &noscript),
            Class::Unavailable(Some(_))
        ));
        let disabled = reply("ERR This instance has cluster support disabled");
        assert_eq!(
            misconfig(classify(RedisMode::Cluster, "p:", &disabled)),
            Some(Misconfig::Mode)
        );
    }

    #[test]
    fn credentials_permissions_and_versions_are_named() {
        let sa = RedisMode::Standalone;
        for line in [
            "WRONGPASS invalid username-password pair or user is disabled.",
            "NOAUTH Authentication required.",
        ] {
            assert_eq!(
                misconfig(classify(sa, "p:", &reply(line))),
                Some(Misconfig::Auth),
                "{line}"
            );
        }
        let noperm = reply("NOPERM this user has no permissions to run the 'xautoclaim' command");
        let c = classify(sa, "app:", &noperm);
        assert!(
            matches!(&c, Class::Misconfigured(Misconfig::Permission, m) if m.contains("~app:*"))
        );
        let unknown = reply("ERR unknown command 'XAUTOCLAIM', with args beginning with: 'x'");
        assert_eq!(
            misconfig(classify(sa, "p:", &unknown)),
            Some(Misconfig::Version)
        );
        assert!(matches!(
            classify(sa, "p:", &reply("OOM command not allowed when used memory > 'maxmemory'.")),
            Class::Unavailable(Some(m)) if m.contains("out of memory")
        ));
        assert_eq!(
            classify(sa, "p:", &reply("ERR wrong number of arguments")),
            Class::Unexpected
        );
    }

    #[test]
    fn tls_failures_are_named() {
        for (text, needle) in [
            (
                "invalid peer certificate: UnknownIssuer",
                "PAGECAST_REDIS_CA_FILE",
            ),
            (
                "received fatal alert: CertificateRequired",
                "PAGECAST_REDIS_CLIENT_CERT",
            ),
            (
                "received corrupt message of type InvalidContentType",
                "redis://",
            ),
        ] {
            let e = RedisError::from(std::io::Error::other(text));
            match classify(RedisMode::Standalone, "p:", &e) {
                Class::Misconfigured(Misconfig::Tls, why) => assert!(why.contains(needle), "{why}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let plain = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert_eq!(
            classify(RedisMode::Standalone, "p:", &plain),
            Class::Unavailable(None)
        );
    }
}
