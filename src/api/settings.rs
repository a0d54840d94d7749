//! The HTTP API's settings (flags and `PAGECAST_*` variables), beside the code that reads them
//! (like [`super::signing_key::UrlSigningConfig`]): the listener, tokens, CORS, the compat mode,
//! body and connection limits.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::error::{ConfigError, invalid};
use crate::secret::{Secret, read_secret_file};

/// The HTTP API.
#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    /// Address the API listens on.
    #[arg(long, env = "PAGECAST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// API tokens, comma-separated; when set, every request needs `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "PAGECAST_API_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub(crate) api_tokens: Vec<Secret>,
    /// A file of API tokens (one per line or comma-separated; `#` starts a comment), added to
    /// PAGECAST_API_TOKENS. Rotate by adding the new token, moving clients, removing the old one.
    #[arg(long, env = "PAGECAST_API_TOKENS_FILE")]
    pub(crate) api_tokens_file: Option<PathBuf>,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "PAGECAST_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub(crate) max_body_bytes: usize,
    /// Start answers 429 LimitExceeded when this many tasks wait for a worker.
    #[arg(long, env = "PAGECAST_MAX_QUEUED", default_value_t = 1000)]
    pub max_queued: u64,
    /// Origins browsers may call the API from, comma-separated (`https://app.example.org`), or
    /// `*` for any. A request carrying an `Origin` header not listed is refused (403), so by
    /// default no web page can drive the API; listed origins get CORS answers.
    #[arg(long, env = "PAGECAST_CORS_ORIGINS", value_delimiter = ',')]
    pub(crate) cors_origins: Vec<String>,
    /// `web-record`: answer Action errors with HTTP 200 and web-record's error codes, for
    /// clients written against it; `off`: pagecast's codes with their HTTP statuses.
    #[arg(long, env = "PAGECAST_COMPAT", value_enum, default_value_t = super::compat::Compat::Off)]
    pub(crate) compat: super::compat::Compat,
    /// Seconds a client may take to send a request's headers (and an idle kept-alive
    /// connection may stay open).
    #[arg(long, env = "PAGECAST_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) header_read_timeout: u64,
    /// Seconds a client may take to send a request's body.
    #[arg(long, env = "PAGECAST_BODY_READ_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) body_read_timeout: u64,
    /// Open connections one client address (IPv6: one /64) may hold; further ones are closed
    /// at once.
    #[arg(long, env = "PAGECAST_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub(crate) max_connections_per_client: u64,
}

impl ApiConfig {
    /// Adds the tokens of `api_tokens_file`, if set. Call once at start.
    pub fn load_token_file(&mut self) -> Result<(), String> {
        if let Some(path) = &self.api_tokens_file {
            let text = read_secret_file(path, "PAGECAST_API_TOKENS_FILE")?;
            let tokens: Vec<Secret> = text
                .lines()
                .map(|l| l.split('#').next().unwrap_or_default())
                .flat_map(|l| l.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Secret::from(t.to_string()))
                .collect();
            if tokens.is_empty() {
                return Err(format!(
                    "PAGECAST_API_TOKENS_FILE: {} holds no token",
                    path.display()
                ));
            }
            self.api_tokens.extend(tokens);
        }
        Ok(())
    }
}

impl ApiConfig {
    /// Checks what clap cannot: the listen address's form.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.listen.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
            _ => Err(invalid(
                "PAGECAST_LISTEN",
                format!("{:?} must be host:port, e.g. 0.0.0.0:8080", self.listen),
            )),
        }
    }
}

impl ApiConfig {
    /// The accepted tokens, or a configuration error when tokens were given but every one is
    /// blank (`PAGECAST_API_TOKENS=' , '`): that would silently turn authentication off.
    pub fn tokens(&self) -> Result<Vec<String>, ConfigError> {
        let tokens: Vec<String> = self
            .api_tokens
            .iter()
            .map(|t| t.expose().trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        // clap drops an empty variable; set but empty is as blank as `' , '`.
        let given =
            !self.api_tokens.is_empty() || std::env::var_os("PAGECAST_API_TOKENS").is_some();
        if tokens.is_empty() && given {
            return Err(invalid(
                "PAGECAST_API_TOKENS",
                "holds no token (only separators or spaces); unset it to run without \
                 authentication, or give at least one token",
            ));
        }
        Ok(tokens)
    }

    /// The CORS origins, checked.
    pub(crate) fn cors(&self) -> Result<super::guard::CorsOrigins, ConfigError> {
        super::guard::CorsOrigins::parse(&self.cors_origins)
            .map_err(|why| invalid("PAGECAST_CORS_ORIGINS", why))
    }

    /// The settings the HTTP layers apply.
    pub fn http_policy(&self) -> Result<super::layers::HttpPolicy, ConfigError> {
        Ok(super::layers::HttpPolicy {
            cors: self.cors()?,
            compat: self.compat,
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: Duration::from_secs(self.body_read_timeout),
        })
    }

    /// The server's connection limits.
    pub fn server_limits(&self) -> super::server::ServerLimits {
        super::server::ServerLimits {
            header_read_timeout: Duration::from_secs(self.header_read_timeout),
            max_connections_per_client: usize::try_from(self.max_connections_per_client)
                .unwrap_or(usize::MAX),
        }
    }
}
