//! `bench --tls`'s clients: TLS that trusts the servers' certificate alone
//! (the self-signed one in `target/tls/`, see `harness/src/tls.rs`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;

/// A client that trusts the certificate in `cert` alone and offers HTTP/1.1
/// (ALPN `http/1.1`): WebSockets and event streams, one connection each.
pub fn connector(cert: &Path) -> Result<TlsConnector> {
    let der = CertificateDer::from_pem_file(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(der)
        .context("the certificate cannot be trusted")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("no TLS version in common")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every client is a browser of its own: a full handshake each, as the
    // servers would see from the field.
    config.resumption = Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}
