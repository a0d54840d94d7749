//! The process's one TLS stack: rustls with the aws-lc-rs crypto provider, for every connection
//! pagecast makes itself (callbacks, object storage, credential endpoints; Redis uses the same
//! rustls). No OpenSSL anywhere in the binary.
//!
//! Servers are verified against the system's root certificates (`/etc/ssl/certs`, or
//! `SSL_CERT_FILE` / `SSL_CERT_DIR`), plus the certificate authorities of
//! `PAGECAST_TLS_CA_FILE` when set: a private CA in front of a bucket or a callback receiver.
//! The page a recording loads is Chromium's business, not this module's.

use std::path::Path;
use std::sync::OnceLock;

use aws_sdk_s3::config::SharedHttpClient;
use aws_smithy_http_client::tls;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The extra certificate authorities (PEM, as read) once loaded.
static EXTRA_ROOTS: OnceLock<Vec<u8>> = OnceLock::new();

/// Makes aws-lc-rs the process's default rustls crypto provider, before any TLS client is
/// built: every library then agrees on it, whatever rustls features the dependency tree
/// enables. Idempotent.
pub fn install_crypto_provider() {
    // Err only when a provider is installed already: then that one stays.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The certificates of a PEM file, each checked to be usable as a trust anchor.
pub(crate) fn parse_ca_file(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file of certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store
            .add(cert.clone())
            .map_err(|e| format!("certificate {} cannot be a trust anchor: {e}", i + 1))?;
    }
    Ok(certs)
}

/// Trusts the certificate authorities in `path` (PEM) too, for the rest of the process. The
/// error says what is wrong with the file (for the message naming `PAGECAST_TLS_CA_FILE`).
pub fn use_extra_roots(path: &Path) -> Result<usize, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let count = parse_ca_file(&pem)
        .map_err(|why| format!("{} {why}", path.display()))?
        .len();
    if let Some(installed) = EXTRA_ROOTS.get() {
        return if *installed == pem {
            Ok(count)
        } else {
            Err("another CA file is in use already".into())
        };
    }
    let _ = EXTRA_ROOTS.set(pem);
    Ok(count)
}

/// The extra certificate authorities, if any.
fn extra_roots() -> Option<&'static [u8]> {
    EXTRA_ROOTS.get().map(Vec::as_slice)
}

/// The system's certificate bundle (`SSL_CERT_FILE`, else Debian's `ca-certificates` bundle).
fn system_bundle() -> std::path::PathBuf {
    std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into())
}

/// The trust file for the ffmpeg that pushes RTMPS (GnuTLS: one file replaces the system's
/// roots, so it must hold both): `None` without extra roots (ffmpeg then uses the system's),
/// else the system bundle and `PAGECAST_TLS_CA_FILE` in one file, written once per process to
/// the temporary directory (public certificates only).
pub(crate) fn ffmpeg_ca_file() -> Option<std::path::PathBuf> {
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| {
        let extra = extra_roots()?;
        let mut pem = std::fs::read(system_bundle()).unwrap_or_default();
        pem.push(b'\n');
        pem.extend_from_slice(extra);
        let path = std::env::temp_dir().join(format!("pagecast-{}-ca.pem", std::process::id()));
        match std::fs::write(&path, pem) {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot write the CA bundle for RTMPS pushes; they trust the system's roots only");
                None
            }
        }
    })
    .clone()
}

/// The HTTP client of the S3 clients (and of the credential providers they use).
pub(crate) fn s3_http_client() -> SharedHttpClient {
    install_crypto_provider();
    let mut trust = tls::TrustStore::default();
    if let Some(pem) = extra_roots() {
        trust = trust.with_pem_certificate(pem.to_vec());
    }
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::AwsLc,
    ));
    // A context is only a trust store and server names: building it cannot fail.
    match tls::TlsContext::builder().with_trust_store(trust).build() {
        Ok(ctx) => builder.tls_context(ctx).build_https(),
        Err(_) => builder.build_https(),
    }
}

/// A reqwest client builder on this TLS stack: rustls, the system roots plus the extra ones.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    let builder = reqwest::Client::builder().tls_backend_rustls();
    match extra_roots().map(reqwest::Certificate::from_pem_bundle) {
        // Checked when loaded (`use_extra_roots`).
        Some(Ok(certs)) => builder.tls_certs_merge(certs),
        _ => builder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_must_hold_usable_certificates() {
        assert!(
            parse_ca_file(b"")
                .unwrap_err()
                .contains("no PEM certificate")
        );
        assert!(
            parse_ca_file(b"hello")
                .unwrap_err()
                .contains("no PEM certificate")
        );
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(parse_ca_file(garbage).is_err());
    }

    #[test]
    fn the_system_store_has_roots() {
        // The image and the test machines install ca-certificates.
        let pem = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap();
        assert!(parse_ca_file(&pem).unwrap().len() > 50);
    }
}
