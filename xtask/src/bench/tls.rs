//! `bench --tls`: a self-signed certificate for the servers, kept in
//! `target/tls/` between runs, and a TLS client that trusts it alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificate {
    /// The one in `folder`, made for `localhost` and `127.0.0.1` if missing.
    pub fn in_folder(folder: &Path) -> Result<Certificate> {
        let cert = folder.join("cert.pem");
        let key = folder.join("key.pem");
        if !(cert.exists() && key.exists()) {
            let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            let made =
                rcgen::generate_simple_self_signed(names).context("cannot make a certificate")?;
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            std::fs::write(&key, made.signing_key.serialize_pem())
                .with_context(|| format!("cannot write {}", key.display()))?;
            std::fs::write(&cert, made.cert.pem())
                .with_context(|| format!("cannot write {}", cert.display()))?;
        }
        Ok(Certificate { cert, key })
    }

    /// `--tls-cert FILE --tls-key FILE`, for a server's options.
    pub fn options(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

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
