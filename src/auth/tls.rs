//! TLS and mutual TLS: the server's certificate, and client certificates as identities.

use std::{path::Path, sync::Arc};

use tonic::transport::{
    Certificate, Identity, ServerTlsConfig,
    server::{TcpConnectInfo, TlsConnectInfo},
};
use x509_cert::der::Decode;

use super::{AuthSettings, Principal, Role};
use crate::app::StartError;

/// The server's TLS configuration, when a certificate is configured.
pub fn server_config(settings: &AuthSettings) -> Result<Option<ServerTlsConfig>, StartError> {
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        return Ok(None);
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read(cert, "TENANT_PLANE_TLS_CERT")?,
        read(key, "TENANT_PLANE_TLS_KEY")?,
    ));
    if let Some(ca) = &settings.tls_client_ca {
        // Optional: callers without a certificate may still bring a bearer token.
        config = config
            .client_ca_root(Certificate::from_pem(read(
                ca,
                "TENANT_PLANE_TLS_CLIENT_CA",
            )?))
            .client_auth_optional(true);
    }
    Ok(Some(config))
}

fn read(path: &Path, setting: &str) -> Result<Vec<u8>, StartError> {
    std::fs::read(path)
        .map_err(|e| StartError::Config(format!("{setting} {}: {e}", path.display())))
}

/// Who the client certificates map to.
#[derive(Debug, Clone)]
pub struct CertificateRoles {
    pub default_role: Role,
    pub admin_subjects: Vec<String>,
}

impl CertificateRoles {
    pub fn from_settings(settings: &AuthSettings) -> Self {
        Self {
            default_role: settings.tls_client_role,
            admin_subjects: settings
                .tls_admin_subjects
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// The verified client certificate of a request, as a principal named by its subject.
    /// tonic has already checked the chain against the client CA during the handshake.
    pub fn principal(&self, extensions: &http::Extensions) -> Option<Arc<Principal>> {
        let certs = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()?
            .peer_certs()?;
        let leaf = certs.first()?;
        let subject = subject(leaf.as_ref())?;
        let role = if self.admin_subjects.contains(&subject) {
            Role::Admin
        } else {
            self.default_role
        };
        Some(Arc::new(Principal {
            role,
            name: subject,
        }))
    }
}

/// The RFC 4514 subject of a DER certificate ("CN=billing,O=Example").
pub fn subject(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(cert.tbs_certificate().subject().to_string())
}
