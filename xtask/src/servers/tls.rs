//! The certificate the demos serve https:// and wss:// with when none is
//! given: self-signed for `localhost` and `127.0.0.1`, made with rcgen into
//! `target/tls/` once, and reused by later runs (a browser told to trust it
//! keeps trusting it).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use data_encoding::BASE64;
use rcgen::PublicKeyData;

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Made by us (self-signed), rather than given.
    pub generated: bool,
}

impl Certificate {
    /// The files given with `--tls-cert` and `--tls-key`.
    pub fn given(cert: &Path, key: &Path) -> Certificate {
        Certificate {
            cert: cert.to_owned(),
            key: key.to_owned(),
            generated: false,
        }
    }

    /// The self-signed one in `target/tls/`, made now if missing.
    pub fn generated() -> Result<Certificate> {
        let folder = super::target_dir().join("tls");
        let certificate = Certificate {
            cert: folder.join("cert.pem"),
            key: folder.join("key.pem"),
            generated: true,
        };
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
