//! The API key RPCs of tenant.v1.TenantService.

use tonic::{Request, Response, Status};

use super::context::call_context;
use super::convert;
use super::tenant::TenantApi;
use crate::domain::{ApiKey, Error};
use crate::proto;
use crate::service::{NewApiKeyInput, TenantRef};

type Reply<T> = Result<Response<T>, Status>;

fn api_key(k: ApiKey) -> proto::ApiKey {
    proto::ApiKey {
        name: k.name(),
        display_name: k.display_name,
        prefix: k.prefix,
        create_time: Some(convert::timestamp(k.create_time)),
        expire_time: k.expire_time.map(convert::timestamp),
        revoke_time: k.revoke_time.map(convert::timestamp),
    }
}

impl TenantApi {
    pub(super) async fn create_key(
        &self,
        request: Request<proto::CreateApiKeyRequest>,
    ) -> Reply<proto::CreateApiKeyResponse> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let parent = TenantRef::parse(&request.parent, "parent")?;
        let wanted = request.api_key.unwrap_or_default();
        // A valid protobuf Timestamp, kept at the catalog's precision (microseconds), so the key
        // returned is the key as stored.
        let expire_time = match wanted.expire_time {
            Some(t) => Some(
                u32::try_from(t.nanos)
                    .ok()
                    .filter(|n| *n < 1_000_000_000)
                    .and_then(|nanos| {
                        chrono::DateTime::from_timestamp(t.seconds, nanos - nanos % 1_000)
                    })
                    .ok_or_else(|| Error::invalid("api_key.expire_time", "is not a valid time"))?,
            ),
            None => None,
        };
        let (key, secret) = self
            .tenants
            .create_api_key(
                &ctx,
                &parent,
                NewApiKeyInput {
                    display_name: wanted.display_name,
                    expire_time,
                },
            )
            .await?;
        Ok(Response::new(proto::CreateApiKeyResponse {
            api_key: Some(api_key(key)),
            secret,
        }))
    }

    pub(super) async fn list_keys(
        &self,
        request: Request<proto::ListApiKeysRequest>,
    ) -> Reply<proto::ListApiKeysResponse> {
        let request = request.into_inner();
        let parent = TenantRef::parse(&request.parent, "parent")?;
        let (keys, next_page_token) = self
            .tenants
            .list_api_keys(&parent, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(proto::ListApiKeysResponse {
            api_keys: keys.into_iter().map(api_key).collect(),
            next_page_token,
        }))
    }

    pub(super) async fn revoke_key(
        &self,
        request: Request<proto::RevokeApiKeyRequest>,
    ) -> Reply<proto::ApiKey> {
        let ctx = call_context(&request);
        let key = self
            .tenants
            .revoke_api_key(&ctx, &request.into_inner().name)
            .await?;
        Ok(Response::new(api_key(key)))
    }
}
