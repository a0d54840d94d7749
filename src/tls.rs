//! The process's TLS: rustls (with the aws-lc-rs crypto provider) for every outgoing
//! connection, trusting the system's root certificates.

use aws_sdk_s3::config::SharedHttpClient;
use aws_smithy_http_client::tls;

/// The HTTP client of the S3 clients (and of the credential providers they use).
pub(crate) fn s3_http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https()
}
