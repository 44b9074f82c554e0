//! TLS for the clients: what a client trusts and presents, the name it
//! expects the server's certificate to carry, and rustls' refusals said in
//! words a user can act on.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError};

use super::ClientError;
use crate::tls::ClientFiles;

/// A client's TLS settings, made once and used for any number of calls.
#[derive(Clone)]
pub struct TlsClient {
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry; the address's IP when
    /// none is given.
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Reads the CA (the system's when `files.ca` is `None`) and the
    /// client certificate and key, if any.
    pub fn new(files: &ClientFiles) -> Result<TlsClient, ClientError> {
        let config = crate::tls::client_config(files).map_err(|e| ClientError::Tls {
            context: "set up TLS".into(),
            reason: e.to_string(),
        })?;
        Ok(TlsClient {
            config,
            server_name: None,
        })
    }

    /// Expects the server's certificate to be for `name` (a host name or an
    /// IP address), and says it in the handshake (SNI).
    pub fn with_server_name(mut self, name: &str) -> Result<TlsClient, ClientError> {
        let name = ServerName::try_from(name.to_owned()).map_err(|_| {
            ClientError::invalid(format!(
                "{name:?} is not a host name or an IP address to expect in the server's certificate"
            ))
        })?;
        self.server_name = Some(name);
        Ok(self)
    }
}

impl TlsClient {
    /// The rustls configuration, for callers that drive their own sessions
    /// (the load generator).
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// The name a server at `peer` is expected to carry.
    pub fn server_name_for(&self, peer: std::net::SocketAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(peer.ip().into()))
    }
}

/// A rustls error during a handshake with `peer`, said for the user.
pub(crate) fn describe(e: &rustls::Error, expected: &ServerName<'_>) -> String {
    use rustls::Error as E;
    let name = match expected {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => "the server".to_owned(),
    };
    match e {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "the server's certificate is not signed by a CA this client trusts (name the CA that signed it)".into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate is not valid for {name} (expect another name, or connect by the name it carries)"
                )
            }
            CertificateError::Revoked => "the server's certificate is revoked".into(),
            CertificateError::BadSignature => "the server's certificate has a bad signature".into(),
            other => format!("the server's certificate is refused: {other:?}"),
        },
        E::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                "the server requires a client certificate (give one, with its key)".into()
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied => {
                "the server refused this client's certificate".into()
            }
            AlertDescription::HandshakeFailure | AlertDescription::ProtocolVersion => {
                "the server and this client have no TLS version or cipher in common".into()
            }
            AlertDescription::NoApplicationProtocol => {
                "the server offers none of the application protocols (ALPN) asked for".into()
            }
            other => format!("the server ended the handshake ({other:?})"),
        },
        E::NoCertificatesPresented => "the server presented no certificate".into(),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => {
            "the server does not speak TLS (is it a plain listener?)".into()
        }
        other => other.to_string(),
    }
}
