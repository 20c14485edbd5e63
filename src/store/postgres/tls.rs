//! TLS to the database server, for URLs that ask for it (`sslmode=require`).
//!
//! The server's certificate is always verified, against the system's trust
//! store (so a private CA installed there works), as the Mattermost link's
//! is: one root store for the whole agent. A
//! connection that carries every prompt must not accept a stranger's
//! certificate. libpq's `require` encrypts without verifying; here it is
//! stricter on purpose.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// A connector that verifies the server against the system's roots, with
/// rustls' ring provider (the one the rest of the agent uses).
pub(super) fn connector() -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "a system certificate could not be read; it is skipped");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system certificates for the state database");
    Ok(MakeRustlsConnect::new(config_with(roots)?))
}

/// The client configuration trusting exactly `roots`.
pub(super) fn config_with(roots: RootCertStore) -> Result<ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Postgres(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
