//! How the store reaches Redis: the mode (one server, a cluster, or a master found through
//! sentinels), the URL list, TLS material, and the key prefix a cluster needs. Pure functions;
//! the connections themselves are made in `conn.rs`.

use std::path::PathBuf;

use redis::{ClientTlsConfig, TlsCertificates};

use super::StoreError;

/// How Redis is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RedisMode {
    /// One server (or a managed endpoint that always names the primary).
    #[default]
    Standalone,
    /// Redis Cluster: the URL lists seed nodes; the client follows the cluster's topology.
    Cluster,
    /// A master and replicas watched by Redis Sentinel: the URL lists sentinels, the master is
    /// looked up by name and again after a failover.
    Sentinel,
}

impl RedisMode {
    /// The setting's value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RedisMode::Standalone => "standalone",
            RedisMode::Cluster => "cluster",
            RedisMode::Sentinel => "sentinel",
        }
    }
}

/// Everything needed to connect, from the `PAGECAST_REDIS_*` settings.
#[derive(Clone, Default)]
pub struct RedisOptions {
    /// One URL (standalone), or a comma-separated list of seed nodes (cluster) or sentinels
    /// (sentinel). List entries after the first may be bare `host:port`: they take the first
    /// entry's scheme and credentials.
    pub url: String,
    /// How Redis is deployed.
    pub mode: RedisMode,
    /// Sentinel mode: the name the sentinels know the master by.
    pub sentinel_master: Option<String>,
    /// Sentinel mode: the sentinels' own password, if they require one (the URL's credentials
    /// are the master's).
    pub sentinel_password: Option<String>,
    /// `rediss://`: a PEM file of the CA certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `rediss://`: a PEM client certificate (chain) for servers that ask for one.
    pub client_cert: Option<PathBuf>,
    /// `rediss://`: the PEM private key of the client certificate.
    pub client_key: Option<PathBuf>,
}

impl std::fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &self.shown_url())
            .field("mode", &self.mode)
            .field("sentinel_master", &self.sentinel_master)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .finish()
    }
}

/// A setting that cannot work: the variable at fault and why.
pub(super) type OptionError = (&'static str, String);

impl RedisOptions {
    /// One server at `url`, without TLS material.
    pub fn standalone(url: &str) -> Self {
        RedisOptions {
            url: url.to_string(),
            ..RedisOptions::default()
        }
    }

    /// The URLs of the list, each complete (see [`split_urls`]).
    pub(crate) fn urls(&self) -> Result<Vec<String>, OptionError> {
        split_urls(&self.url).map_err(|why| ("PAGECAST_REDIS_URL", why))
    }

    /// The URL list without credentials or query values, for messages.
    pub(crate) fn shown_url(&self) -> String {
        match split_urls(&self.url) {
            Ok(urls) => urls
                .iter()
                .map(|u| crate::redact::url(u))
                .collect::<Vec<_>>()
                .join(","),
            Err(_) => "<not a Redis URL>".to_string(),
        }
    }

    /// Whether the connections use TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.url.trim_start().starts_with("rediss://")
    }

    /// Checks what can be checked without connecting: the URL list and its form for the mode,
    /// the sentinel master's name, and the TLS files (present, paired, only with `rediss://`).
    pub(crate) fn check(&self) -> Result<(), OptionError> {
        const URL: &str = "PAGECAST_REDIS_URL";
        let urls = self.urls()?;
        for u in &urls {
            redis::Client::open(u.as_str()).map_err(|e| {
                (
                    URL,
                    format!(
                        "{} is not a Redis URL (redis://[user:password@]host:port[/db], or rediss:// for TLS): {e}",
                        crate::redact::url(u)
                    ),
                )
            })?;
        }
        if urls.iter().any(|u| u.starts_with("rediss://"))
            != urls.iter().all(|u| u.starts_with("rediss://"))
        {
            return Err((
                URL,
                "mixes redis:// and rediss:// entries; use one scheme".into(),
            ));
        }
        match self.mode {
            RedisMode::Standalone if urls.len() > 1 => {
                return Err((
                    URL,
                    format!(
                        "lists {} servers, but PAGECAST_REDIS_MODE is standalone: set PAGECAST_REDIS_MODE=cluster (seed nodes) or sentinel (sentinels)",
                        urls.len()
                    ),
                ));
            }
            RedisMode::Sentinel
                if self
                    .sentinel_master
                    .as_deref()
                    .is_none_or(|m| m.trim().is_empty()) =>
            {
                return Err((
                    "PAGECAST_REDIS_SENTINEL_MASTER",
                    "must name the master (as the sentinels know it) when PAGECAST_REDIS_MODE=sentinel".into(),
                ));
            }
            _ => {}
        }
        if self.mode != RedisMode::Sentinel && self.sentinel_master.is_some() {
            return Err((
                "PAGECAST_REDIS_SENTINEL_MASTER",
                format!(
                    "is set, but PAGECAST_REDIS_MODE is {}: set PAGECAST_REDIS_MODE=sentinel",
                    self.mode.as_str()
                ),
            ));
        }
        for (setting, path) in [
            ("PAGECAST_REDIS_CA_FILE", &self.ca_file),
            ("PAGECAST_REDIS_CLIENT_CERT", &self.client_cert),
            ("PAGECAST_REDIS_CLIENT_KEY", &self.client_key),
        ] {
            let Some(path) = path else { continue };
            if !self.tls() {
                return Err((
                    setting,
                    "is set, but PAGECAST_REDIS_URL does not use TLS: use rediss://".into(),
                ));
            }
            std::fs::metadata(path)
                .map_err(|e| (setting, format!("cannot read {}: {e}", path.display())))?;
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => Err((
                "PAGECAST_REDIS_CLIENT_KEY",
                "must be set with PAGECAST_REDIS_CLIENT_CERT".into(),
            )),
            (None, Some(_)) => Err((
                "PAGECAST_REDIS_CLIENT_CERT",
                "must be set with PAGECAST_REDIS_CLIENT_KEY".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The TLS material to use instead of the defaults (system roots, no client certificate);
    /// `None` when none is configured.
    pub(crate) fn tls_certificates(&self) -> Result<Option<TlsCertificates>, StoreError> {
        let read = |setting: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                StoreError::misconfigured(
                    super::Misconfig::Tls,
                    format!("{setting}: cannot read {}: {e}", path.display()),
                )
            })
        };
        let root_cert = self
            .ca_file
            .as_ref()
            .map(|p| read("PAGECAST_REDIS_CA_FILE", p))
            .transpose()?;
        let client_tls = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read("PAGECAST_REDIS_CLIENT_CERT", cert)?,
                client_key: read("PAGECAST_REDIS_CLIENT_KEY", key)?,
            }),
            _ => None,
        };
        Ok(
            (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
                client_tls,
                root_cert,
            }),
        )
    }

    /// The key prefix as the store uses it: on a cluster, every key must carry one hash tag so
    /// that each script's keys live in one slot, so a prefix without one gets its own as tag
    /// (`pagecast:` → `{pagecast}:`). Elsewhere the prefix is kept as configured.
    pub(crate) fn effective_prefix(&self, prefix: &str) -> String {
        if self.mode == RedisMode::Cluster {
            cluster_prefix(prefix)
        } else {
            prefix.to_string()
        }
    }
}

/// Splits a comma-separated URL list. Entries without a scheme (`host:port`) take the first
/// entry's scheme and credentials, so a password is written once.
pub(super) fn split_urls(list: &str) -> Result<Vec<String>, String> {
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let Some(first) = entries.first() else {
        return Err("is empty".into());
    };
    if !first.contains("://") {
        return Err(format!(
            "the first entry ({first}) must be a full URL: redis://host:port or rediss://host:port"
        ));
    }
    let parsed = url::Url::parse(first)
        .map_err(|e| format!("{} is not a URL: {e}", crate::redact::url(first)))?;
    let userinfo = match (parsed.username(), parsed.password()) {
        ("", None) => String::new(),
        (user, None) => format!("{user}@"),
        (user, Some(pass)) => format!("{user}:{pass}@"),
    };
    Ok(entries
        .iter()
        .map(|e| {
            if e.contains("://") {
                (*e).to_string()
            } else {
                format!("{}://{userinfo}{e}", parsed.scheme())
            }
        })
        .collect())
}

/// Whether `key` has a Redis Cluster hash tag: a `{` followed later by a `}` with at least one
/// character between them (the first such pair decides the slot).
pub(super) fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

/// `prefix` with a hash tag: as it is when it has one, else its name wrapped in braces
/// (`pagecast:` → `{pagecast}:`).
pub(super) fn cluster_prefix(prefix: &str) -> String {
    if has_hash_tag(prefix) {
        return prefix.to_string();
    }
    let name = prefix.trim_end_matches(':');
    let colons = &prefix[name.len()..];
    format!("{{{name}}}{colons}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_lists_expand_bare_entries_with_the_first_entrys_scheme_and_credentials() {
        assert_eq!(
            split_urls("rediss://u:p%40ss@a:1, b:2 ,rediss://c:3").unwrap(),
            vec![
                "rediss://u:p%40ss@a:1",
                "rediss://u:p%40ss@b:2",
                "rediss://c:3"
            ]
        );
        assert_eq!(
            split_urls("redis://:pw@h:1,h:2").unwrap(),
            vec!["redis://:pw@h:1", "redis://:pw@h:2"]
        );
        assert_eq!(split_urls("redis://h:1").unwrap(), vec!["redis://h:1"]);
        assert!(split_urls(" , ").is_err());
        assert!(split_urls("h:1,redis://h:2").is_err());
    }

    #[test]
    fn shown_urls_carry_no_credentials() {
        let o = RedisOptions {
            url: "rediss://app:secret@a:1,b:2".into(),
            mode: RedisMode::Cluster,
            ..RedisOptions::default()
        };
        let shown = o.shown_url();
        assert_eq!(shown, "rediss://a:1,rediss://b:2");
        assert!(!format!("{o:?}").contains("secret"));
    }

    #[test]
    fn cluster_prefixes_get_a_hash_tag() {
        assert_eq!(cluster_prefix("pagecast:"), "{pagecast}:");
        assert_eq!(cluster_prefix("{pagecast}:"), "{pagecast}:");
        assert_eq!(cluster_prefix("app:{rec}:"), "app:{rec}:");
        assert_eq!(cluster_prefix("rec"), "{rec}");
        assert_eq!(cluster_prefix("{}x:"), "{{}x}:");
        assert!(has_hash_tag(&cluster_prefix("{}x:")));
        assert!(!has_hash_tag("a{}b"));
        assert!(!has_hash_tag("a{b"));
        let standalone = RedisOptions::standalone("redis://h:1");
        assert_eq!(standalone.effective_prefix("pagecast:"), "pagecast:");
    }

    #[test]
    fn options_are_checked_against_the_mode() {
        let mut o = RedisOptions::standalone("redis://a:1,b:2");
        assert_eq!(o.check().unwrap_err().0, "PAGECAST_REDIS_URL");
        o.mode = RedisMode::Cluster;
        assert!(o.check().is_ok());
        o.mode = RedisMode::Sentinel;
        assert_eq!(o.check().unwrap_err().0, "PAGECAST_REDIS_SENTINEL_MASTER");
        o.sentinel_master = Some("mymaster".into());
        assert!(o.check().is_ok());
        o.mode = RedisMode::Standalone;
        o.url = "redis://a:1".into();
        assert_eq!(o.check().unwrap_err().0, "PAGECAST_REDIS_SENTINEL_MASTER");
        o.sentinel_master = None;
        o.ca_file = Some("/etc/hostname".into());
        assert_eq!(o.check().unwrap_err().0, "PAGECAST_REDIS_CA_FILE");
        o.url = "rediss://a:1".into();
        assert!(o.check().is_ok());
        o.client_cert = Some("/etc/hostname".into());
        assert_eq!(o.check().unwrap_err().0, "PAGECAST_REDIS_CLIENT_KEY");
        o.client_key = Some("/nonexistent/key.pem".into());
        assert_eq!(o.check().unwrap_err().0, "PAGECAST_REDIS_CLIENT_KEY");
        o.url = "rediss://a:1,redis://b:2".into();
        o.mode = RedisMode::Cluster;
        assert_eq!(o.check().unwrap_err().0, "PAGECAST_REDIS_URL");
        assert!(RedisOptions::standalone("http://x/").check().is_err());
    }
}
