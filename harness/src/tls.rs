//! Certificates for https:// and wss://: a self-signed one for `localhost`
//! and `127.0.0.1` (made with rcgen, kept in `target/tls/` for the tasks, or
//! in a folder of a test's own), or the files given; and TLS clients that
//! trust one alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use data_encoding::BASE64;
use rcgen::PublicKeyData;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A certificate chain and its key, as PEM files.
#[derive(Debug)]
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Made by us (self-signed), rather than given.
    pub generated: bool,
    /// A test's own folder, removed when dropped.
    temporary: Option<PathBuf>,
}

impl Certificate {
    /// The files given with `--tls-cert` and `--tls-key`.
    pub fn given(cert: &Path, key: &Path) -> Certificate {
        Certificate {
            cert: cert.to_owned(),
            key: key.to_owned(),
            generated: false,
            temporary: None,
        }
    }

    /// The self-signed one in `target/tls/`, made now if missing and kept
    /// for later runs (a browser told to trust it keeps trusting it).
    pub fn generated() -> Result<Certificate> {
        let folder = crate::target_dir().join("tls");
        let certificate = Certificate::in_folder(&folder, None);
        if certificate.complete() {
            return Ok(certificate);
        }
        if folder.exists() && std::fs::read_dir(&folder)?.next().is_some() {
            bail!(
                "{} holds no cert.pem and key.pem: remove it to make a new certificate",
                folder.display()
            );
        }
        // Made beside it, then renamed into place: two runs at once never
        // pair one's certificate with the other's key.
        let making = folder.with_file_name(format!("tls.{}", std::process::id()));
        write(&making).with_context(|| format!("cannot write {}", making.display()))?;
        let renamed = std::fs::rename(&making, &folder);
        if renamed.is_err() {
            let _ = std::fs::remove_dir_all(&making);
        }
        match renamed {
            Ok(()) => Ok(certificate),
            // Another run made it first.
            Err(_) if certificate.complete() => Ok(certificate),
            Err(error) => Err(error).with_context(|| format!("cannot create {}", folder.display())),
        }
    }

    /// For a test: a new self-signed certificate in a folder of its own,
    /// removed when dropped; panics if it cannot be written.
    pub fn localhost() -> Certificate {
        let folder = std::env::temp_dir().join(format!(
            "demo-tls-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        write(&folder).unwrap_or_else(|why| panic!("{}: {why:#}", folder.display()));
        Certificate::in_folder(&folder, Some(folder.clone()))
    }

    fn in_folder(folder: &Path, temporary: Option<PathBuf>) -> Certificate {
        Certificate {
            cert: folder.join("cert.pem"),
            key: folder.join("key.pem"),
            generated: true,
            temporary,
        }
    }

    fn complete(&self) -> bool {
        self.cert.is_file() && self.key.is_file()
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

    /// What Chromium's `--ignore-certificate-errors-spki-list` takes to trust
    /// this certificate: the base64 SHA-256 of its public key (SPKI).
    pub fn spki_sha256(&self) -> Result<String> {
        let pem = std::fs::read_to_string(&self.key)
            .with_context(|| format!("cannot read {}", self.key.display()))?;
        let key = rcgen::KeyPair::from_pem(&pem)
            .with_context(|| format!("{}: not a private key rcgen reads", self.key.display()))?;
        // rustls's own SHA-256 (from ring): no hashing crate of our own.
        let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let hash = suite
            .tls13()
            .context("TLS 1.3 suite")?
            .common
            .hash_provider
            .hash(&key.subject_public_key_info());
        Ok(BASE64.encode(hash.as_ref()))
    }

    /// For tests: a TLS client that trusts this certificate alone and offers
    /// `alpn` (`h2`, `http/1.1`).
    pub fn client(&self, alpn: &[&str]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_file_iter(&self.cert).expect("the certificate reads") {
            roots
                .add(der.expect("the certificate is PEM"))
                .expect("the certificate is a root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|each| each.as_bytes().to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }

    /// For tests: a TLS connection to `addr` as `localhost`, offering `alpn`.
    pub async fn connect(&self, addr: SocketAddr, alpn: &[&str]) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.expect("the server accepts");
        let name = ServerName::try_from("localhost").expect("a name");
        self.client(alpn)
            .connect(name, tcp)
            .await
            .expect("the TLS handshake succeeds, with a certificate for localhost")
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        if let Some(folder) = &self.temporary {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

/// A new self-signed certificate for `localhost` and `127.0.0.1` (an IP
/// address name), into `folder`.
fn write(folder: &Path) -> Result<()> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names).context("rcgen")?;
    std::fs::create_dir_all(folder)?;
    std::fs::write(folder.join("cert.pem"), generated.cert.pem())?;
    let key = folder.join("key.pem");
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    // Only its owner needs to read a private key, even a development one.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
