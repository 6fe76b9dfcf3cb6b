//! TLS, and what HTTP/2 needs of the server: `https://` and `wss://`, and
//! every event stream of a browser over one connection.
//!
//! Over HTTP/1.1 a browser opens at most six connections to one host, and an
//! open event stream holds one: the seventh tab hangs. Browsers speak HTTP/2
//! (all streams over one connection) only over TLS, so the server offers
//! `h2` and `http/1.1` by ALPN. WebSockets stay on HTTP/1.1 (a browser opens
//! an HTTP/1.1 connection for them when the server does not offer RFC 8441).
//!
//! Over HTTP/2 a stalled event stream must be reset alone (RST_STREAM), not
//! its whole connection: hyper runs each stream as its own task, spawned by
//! [`Streams`], which gives the stream a token to reset it by (its route
//! finds it with [`stream_reset`]) and drops the stream's task when it is
//! cancelled, which resets the stream.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::tasks::Tasks;

/// Certificate or key files that cannot serve.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The acceptor for the PEM certificate chain at `cert` and key at `key`,
/// offering HTTP/2 and HTTP/1.1.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|error| TlsError(format!("--tls-cert {}: {error}", cert.display())))?;
    if chain.is_empty() {
        let why = format!("--tls-cert {}: no certificate in it (PEM)", cert.display());
        return Err(TlsError(why));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| TlsError(format!("--tls-key {}: {error}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|error| TlsError(format!("--tls-cert and --tls-key: {error}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

tokio::task_local! {
    /// The HTTP/2 stream whose task is running, by the token that resets it.
    static STREAM_RESET: CancellationToken;
}

/// Within an HTTP/2 request's route: the token that resets its stream alone.
/// `None` over HTTP/1.1.
pub fn stream_reset() -> Option<CancellationToken> {
    STREAM_RESET.try_with(CancellationToken::clone).ok()
}

/// Runs each HTTP/2 stream as a task of the server's, which shutdown waits
/// for, and which stops (resetting the stream) when its token is cancelled.
#[derive(Clone)]
pub struct Streams {
    pub tasks: Tasks,
}

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let reset = CancellationToken::new();
        let scoped = STREAM_RESET.scope(reset.clone(), stream);
        self.tasks.spawn(async move {
            tokio::select! {
                () = scoped => {}
                // Dropping the stream's task drops its handle, and h2 resets
                // a stream whose handle is dropped before it ends.
                () = reset.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_one_clear_line() {
        let error = acceptor(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .err()
        .unwrap();
        assert!(
            error.0.starts_with("--tls-cert /nonexistent/cert.pem:"),
            "{error}"
        );
        assert!(!error.0.contains('\n'));
    }

    #[test]
    fn a_file_that_is_not_pem_is_refused() {
        let folder = std::env::temp_dir().join(format!("demo-tls-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let junk = folder.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let error = acceptor(&junk, &junk).err().unwrap();
        assert!(error.0.contains("no certificate"), "{error}");
        let _ = std::fs::remove_dir_all(&folder);
    }
}
