//! TLS material: certificates, keys and CAs read from PEM files and made
//! into rustls configurations, with one crypto provider (ring) and TLS 1.2
//! and 1.3. Servers and clients, the configuration check and the C ABI all
//! read their files here, so a file is refused for the same reasons, in the
//! same words, wherever it is named.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file at fault, when one is.
    pub path: Option<PathBuf>,
    pub reason: String,
}

impl TlsError {
    fn file(path: &Path, reason: impl Into<String>) -> TlsError {
        TlsError {
            path: Some(path.to_owned()),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {}", path.display(), self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for TlsError {}

/// The one crypto provider.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// What a server's TLS is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// The certificate chain, the server's own first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
    /// Application protocols offered, most preferred first.
    pub alpn: Vec<String>,
}

/// Which of a server's files a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFile {
    Cert,
    Key,
    ClientCa,
}

/// Reads `files` into a server configuration: every file read, parsed and
/// checked (the key must match the certificate) before anything is used.
pub fn server_config(files: &ServerFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_or_which(files).map_err(|(_, e)| e)
}

/// [`server_config`], saying which file is at fault: several settings may
/// name one path.
pub fn server_config_or_which(
    files: &ServerFiles,
) -> Result<Arc<ServerConfig>, (ServerFile, TlsError)> {
    let chain = certificates(&files.cert).map_err(|e| (ServerFile::Cert, e))?;
    let key = private_key(&files.key).map_err(|e| (ServerFile::Key, e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| {
            let e = TlsError {
                path: None,
                reason: e.to_string(),
            };
            (ServerFile::Cert, e)
        })?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = roots(ca).map_err(|e| (ServerFile::ClientCa, e))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| {
                    let e = TlsError::file(ca, format!("cannot verify clients with it: {e}"));
                    (ServerFile::ClientCa, e)
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| (ServerFile::Key, key_error(&files.cert, &files.key, e)))?;
    config.alpn_protocols = files.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

fn key_error(cert: &Path, key: &Path, e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => TlsError::file(
            key,
            format!(
                "the key does not match the certificate in {}",
                cert.display()
            ),
        ),
        other => TlsError::file(key, format!("cannot use the key: {other}")),
    }
}

/// The certificates in a PEM file, in order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::file(path, pem_error(&e)))?;
    if certs.is_empty() {
        return Err(TlsError::file(
            path,
            "no certificate in it: expected PEM (\"-----BEGIN CERTIFICATE-----\")",
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::file(
            path,
            "no private key in it: expected PEM (\"-----BEGIN PRIVATE KEY-----\", or an RSA or EC key)",
        ),
        e => TlsError::file(path, pem_error(&e)),
    })
}

/// The CA certificates in a PEM file, as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store
            .add(cert)
            .map_err(|e| TlsError::file(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::file(path, format!("cannot read it: {e}")))
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { end_marker } => format!(
            "not valid PEM: a section has no \"{}\" line",
            String::from_utf8_lossy(end_marker)
        ),
        E::IllegalSectionStart { line } => format!(
            "not valid PEM: a malformed \"-----BEGIN\" line: {:?}",
            String::from_utf8_lossy(line)
        ),
        E::Base64Decode(why) => format!("not valid PEM: its base64 does not decode ({why})"),
        E::NoItemsFound => "nothing of the kind expected in it".to_owned(),
        other => format!("not valid PEM: {other}"),
    }
}

/// A listener's TLS configuration, replaceable while it serves: new
/// handshakes use the newest; connections keep the one they began with.
#[derive(Debug)]
pub struct TlsServer {
    config: RwLock<Arc<ServerConfig>>,
}

impl TlsServer {
    pub fn new(config: Arc<ServerConfig>) -> TlsServer {
        TlsServer {
            config: RwLock::new(config),
        }
    }

    /// The configuration for a new handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// From now on, handshakes use `config`.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }
}

/// What a client trusts and presents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// CA certificates to trust; `None` trusts the system's store.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key, for servers that ask for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Reads `files` into a client configuration.
pub fn client_config(files: &ClientFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match &files.ca {
        Some(ca) => roots(ca)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError {
            path: None,
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key_der = private_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| key_error(cert, key, e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError {
                path: None,
                reason: "a client certificate needs its key, and a key its certificate: give both or neither".into(),
            });
        }
    };
    Ok(Arc::new(config))
}

/// The system's trust store, as the platform keeps it.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(TlsError {
            path: None,
            reason: format!(
                "no CA certificates in the system's trust store ({why}); name a CA file to trust"
            ),
        });
    }
    Ok(store)
}
