//! Certificates for the TLS tests, made fresh by each test with rcgen: a CA,
//! a server certificate for 127.0.0.1, ::1 and localhost, a client
//! certificate, and the bad ones (another CA's, expired, for another name,
//! a key that belongs to no certificate). Files go to a directory of their
//! own, removed when the `Pki` is dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};

pub struct Pki {
    pub dir: PathBuf,
    /// The CA that signed the server's and the client's certificates.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Another CA, and a client certificate it signed.
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
    /// A server certificate of the first CA that expired in 2020.
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    /// A server certificate of the first CA for example.com only.
    pub wrong_name_cert: PathBuf,
    pub wrong_name_key: PathBuf,
    /// A server certificate of the other CA, for 127.0.0.1 and localhost.
    pub other_server_cert: PathBuf,
    pub other_server_key: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = fresh_dir();
        let write = |name: &str, text: &str| -> PathBuf {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca = issuer("netlab test CA");
        let other = issuer("another test CA");
        let local = || vec!["127.0.0.1".into(), "::1".into(), "localhost".into()];

        let (cert, key) = leaf(&ca, local(), None);
        let (client_cert, client_key) = leaf(&ca, vec!["client.test".into()], None);
        let (other_client_cert, other_client_key) = leaf(&other, vec!["client.test".into()], None);
        let (expired_cert, expired_key) = leaf(
            &ca,
            local(),
            Some((date_time_ymd(2019, 1, 1), date_time_ymd(2020, 1, 1))),
        );
        let (wrong_cert, wrong_key) = leaf(&ca, vec!["example.com".into()], None);
        let (other_cert, other_key) = leaf(&other, local(), None);
        Pki {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &cert),
            server_key: write("server.key", &key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            other_ca: write("other-ca.pem", &other.pem()),
            other_client_cert: write("other-client.pem", &other_client_cert),
            other_client_key: write("other-client.key", &other_client_key),
            expired_cert: write("expired.pem", &expired_cert),
            expired_key: write("expired.key", &expired_key),
            wrong_name_cert: write("wrong-name.pem", &wrong_cert),
            wrong_name_key: write("wrong-name.key", &wrong_key),
            other_server_cert: write("other-server.pem", &other_cert),
            other_server_key: write("other-server.key", &other_key),
            dir,
        }
    }

    /// A `tls = { ... }` table for a listener with this certificate and key.
    pub fn tls_table(&self, cert: &Path, key: &Path, extra: &str) -> String {
        format!(
            "{{ cert = {:?}, key = {:?}{extra} }}",
            cert.display().to_string(),
            key.display().to_string()
        )
    }

    /// The server's own certificate and key, as a `tls` table.
    pub fn server_tls(&self) -> String {
        self.tls_table(&self.server_cert, &self.server_key, "")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate's validity bound, as rcgen takes it.
type Date = time::OffsetDateTime;

fn issuer(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `names` signed by `ca`, valid now unless `validity`
/// says otherwise; its PEM and its key's PEM.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
    validity: Option<(Date, Date)>,
) -> (String, String) {
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "netlab test");
    if let Some((from, to)) = validity {
        params.not_before = from;
        params.not_after = to;
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn fresh_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "netlab-pki-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
