//! A self-signed certificate for `localhost` and `127.0.0.1`, and TLS
//! clients that trust it: for tests of `https://`, `wss://` and HTTP/2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A certificate and its key, as PEM files in a folder of their own
/// (removed when dropped).
pub struct Certificate {
    folder: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    der: CertificateDer<'static>,
}

impl Certificate {
    /// A new self-signed certificate for `localhost` and `127.0.0.1`.
    pub fn localhost() -> Certificate {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let generated = rcgen::generate_simple_self_signed(names).expect("a certificate");
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let folder = std::env::temp_dir().join(format!("demo-tls-{}-{unique}", std::process::id()));
        std::fs::create_dir_all(&folder).expect("a folder for the certificate");
        let (cert, key) = (folder.join("cert.pem"), folder.join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).expect("the certificate is written");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("the key is written");
        Certificate {
            folder,
            cert,
            key,
            der: generated.cert.der().clone(),
        }
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

    /// A TLS client that trusts this certificate alone and offers `alpn`
    /// (`h2`, `http/1.1`).
    pub fn client(&self, alpn: &[&str]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.der.clone())
            .expect("the certificate is a root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|each| each.as_bytes().to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }

    /// A TLS connection to `addr` as `localhost`, offering `alpn`.
    pub async fn connect(&self, addr: SocketAddr, alpn: &[&str]) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.expect("the server accepts");
        let name = ServerName::try_from("localhost").expect("a name");
        self.client(alpn)
            .connect(name, tcp)
            .await
            .expect("the TLS handshake succeeds")
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}
