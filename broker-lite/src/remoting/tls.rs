//! TLS for the remoting ports, with RocketMQ's switch (`tls.server.mode`, RocketMQ 4.9's
//! `TlsSystemConfig`): `disabled`, `permissive` (a connection whose first byte opens a TLS
//! handshake gets TLS, any other is served in clear, as RocketMQ's `TlsModeHandler`
//! decides) or `enforcing` (TLS only). rustls (aws-lc-rs provider) does the work.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// `tls.server.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Clear text only (our default: TLS needs a certificate).
    #[default]
    Disabled,
    /// TLS for clients that start a handshake, clear text for the others.
    Permissive,
    /// TLS only: a clear-text client is disconnected.
    Enforcing,
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "disabled" => Ok(TlsMode::Disabled),
            "permissive" => Ok(TlsMode::Permissive),
            "enforcing" => Ok(TlsMode::Enforcing),
            other => Err(format!(
                "`{other}` is not disabled, permissive or enforcing"
            )),
        }
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsMode::Disabled => "disabled",
            TlsMode::Permissive => "permissive",
            TlsMode::Enforcing => "enforcing",
        })
    }
}

/// The first byte of a TLS handshake record (content type 22).
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TlsError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server side: the certificate chain and its private key (PEM files).
///
/// # Errors
/// A file that cannot be read or parsed, or a key that does not fit the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError {
        path: key.to_owned(),
        reason: format!("no usable private key: {e}"),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError {
            path: key.to_owned(),
            reason: format!("does not go with {}: {e}", cert.display()),
        })?;
    Ok(Arc::new(config))
}

/// The client side: trusts the certificates in `ca` (PEM) and nothing else.
///
/// # Errors
/// A file that cannot be read or holds no usable certificate.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| TlsError {
            path: ca.to_owned(),
            reason: e.to_string(),
        })?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            path: ca.to_owned(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What a client needs to open TLS connections: whom to trust, and the name to expect in
/// the server's certificate (default: the address dialled).
#[derive(Clone)]
pub struct ClientTls {
    /// The rustls configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// The server name to verify; `None`: the dialled IP address.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// The name to verify the certificate of `addr` against.
    ///
    /// # Errors
    /// A configured name that is not a valid DNS name or address.
    pub fn server_name_for(
        &self,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<ServerName<'static>> {
        match &self.server_name {
            Some(name) => ServerName::try_from(name.clone()).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{name}: {e}"))
            }),
            None => Ok(ServerName::IpAddress(addr.ip().into())),
        }
    }
}
