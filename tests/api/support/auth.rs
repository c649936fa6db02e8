//! Credentials of the test servers: an admin and a service token, configured by hash like an
//! operator would, and clients that carry them.

use tenant_plane::auth::hash_token;
use tenant_plane_client::{BearerToken, ControlPlane};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::TestServer;

/// The admin token every test server accepts.
pub const ADMIN_TOKEN: &str = "tpa_test-admin-0123456789abcdefghijklmnopqrstuvwxyz";
/// The service token every test server accepts.
pub const SERVICE_TOKEN: &str = "tpa_test-service-0123456789abcdefghijklmnopqrstuvwxyz";
/// The actor the audit log records for [`ADMIN_TOKEN`].
pub const ADMIN_ACTOR: &str = "admin:test-admin";
/// The actor the audit log records for [`SERVICE_TOKEN`].
pub const SERVICE_ACTOR: &str = "service:test-service";

/// A channel that sends a bearer token (or none) with every call.
pub type Conn = InterceptedService<Channel, BearerToken>;

/// The TENANT_PLANE_AUTH_TOKENS entries of the test tokens.
pub fn token_entries() -> Vec<String> {
    vec![
        format!("admin:test-admin:{}", hash_token(ADMIN_TOKEN)),
        format!("service:test-service:{}", hash_token(SERVICE_TOKEN)),
    ]
}

/// `channel` calling with `token`.
pub fn with_token(channel: Channel, token: &str) -> Conn {
    InterceptedService::new(channel, BearerToken::new(token).expect("a token is ASCII"))
}

impl TestServer {
    /// The server's channel with the admin token.
    pub fn conn(&self) -> Conn {
        with_token(self.channel.clone(), ADMIN_TOKEN)
    }

    /// The server's channel with `token` (a service token, a tenant API key, a bad one...).
    pub fn conn_as(&self, token: &str) -> Conn {
        with_token(self.channel.clone(), token)
    }

    /// The server's channel with no credentials at all.
    pub fn anonymous(&self) -> Conn {
        InterceptedService::new(self.channel.clone(), BearerToken::default())
    }

    /// The control plane as the client library sees it, with the service token.
    pub fn control_plane(&self) -> ControlPlane {
        ControlPlane::new(self.channel.clone(), SERVICE_TOKEN).expect("a token is ASCII")
    }
}
