//! The control plane as a client sees it: a channel, and the bearer token it calls with.

use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue, errors::InvalidMetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// Adds `authorization: Bearer <token>` to every call (nothing without a token). Its debug
/// output never shows the token.
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    pub fn new(token: &str) -> Result<Self, InvalidMetadataValue> {
        // Not marked sensitive: HPACK then indexes the header once per connection, as other gRPC
        // clients do, instead of Huffman-coding the whole token into every call (a fifth of
        // ResolveTenant's throughput in the hot-path bench). Debug output is redacted below.
        let value: MetadataValue<Ascii> = format!("Bearer {token}").parse()?;
        Ok(Self(Some(value)))
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(..)"
        } else {
            "BearerToken(none)"
        })
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to the control plane with the credentials to call it. A bare [`Channel`] converts
/// into one without credentials (for a server run with `--insecure`).
#[derive(Clone, Debug)]
pub struct ControlPlane {
    channel: Channel,
    token: BearerToken,
}

impl ControlPlane {
    /// Calls the control plane at `channel` with `token` (a service token, typically).
    pub fn new(channel: Channel, token: &str) -> Result<Self, InvalidMetadataValue> {
        Ok(Self {
            channel,
            token: BearerToken::new(token)?,
        })
    }

    /// The channel with the token added to every call, for a generated client's
    /// `with_interceptor`-style constructor (`XClient::new(control_plane.service())`).
    pub fn service(&self) -> InterceptedService<Channel, BearerToken> {
        InterceptedService::new(self.channel.clone(), self.token.clone())
    }
}

impl From<Channel> for ControlPlane {
    fn from(channel: Channel) -> Self {
        Self {
            channel,
            token: BearerToken::default(),
        }
    }
}
