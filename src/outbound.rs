//! HTTPS out of the process: one TLS configuration and one HTTP client stack for every
//! outbound call — ElevenLabs, the Make webhook, Turnstile's Siteverify, the DynamoDB API
//! ([`crate::store::dynamodb`] sends through `reqwest` too) and PostgreSQL without its own CA.
//!
//! rustls on ring, trusting Mozilla's root CAs as compiled into `webpki-roots`: the same roots
//! on every platform (Lambda, Vercel, a laptop), nothing read from the file system at start-up,
//! and one mechanism instead of three (the SDK's default client loaded the system store and
//! reqwest's own default is the platform verifier). livekit-api builds its client the same way
//! (ring, `webpki-roots`) inside the crate. A custom endpoint behind a private CA is not
//! trusted by this configuration (see docs/DYNAMODB.md, docs/POSTGRES.md's `DATABASE_CA_CERT`).

use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The process's TLS client configuration, built on first use and shared (the root store is
/// built once; each client clones an `Arc`).
pub fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Arc::new(config_trusting(roots))
        })
        .clone()
}

/// A TLS client configuration on ring, TLS 1.2 and 1.3, verifying servers against `roots`
/// only: [`tls_config`]'s, and PostgreSQL's when `DATABASE_CA_CERT` names its own CA.
pub fn config_trusting(roots: RootCertStore) -> ClientConfig {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the safe default TLS versions (1.2 and 1.3)")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A `reqwest` client builder on [`tls_config`]: HTTP/1.1 (no HTTP/2 is linked), no redirects
/// followed (a redirect would resend a provider's key to wherever it points), and this
/// service's user agent. Callers add their timeouts.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(ClientConfig::clone(&tls_config()))
        .user_agent(concat!("chamada/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
}

/// A client from [`client_builder`]. Building it fails only if the TLS configuration is not
/// reqwest's (a version mismatch caught by the tests), which the caller reports.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    client_builder().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tls_configuration_is_shared_by_every_client() {
        assert!(Arc::ptr_eq(&tls_config(), &tls_config()));
        assert!(!tls_config().alpn_protocols.contains(&b"h2".to_vec()));
    }

    #[test]
    fn reqwest_accepts_the_configuration() {
        // A configuration of another rustls version would make `build` fail ("unknown TLS
        // backend"): this is the test that catches such a mismatch.
        http_client().expect("reqwest takes the shared rustls configuration");
    }
}
