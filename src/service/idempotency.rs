//! AIP-155 request ids for calls whose answer cannot be recomputed on retry (a migration run,
//! a provisioning): the first call claims the id, runs, and keeps its answer; a retry gets that
//! answer without running again. A failed call releases the id, so a retry runs afresh.

use std::future::Future;

use serde::{Serialize, de::DeserializeOwned};
use uuid::Uuid;

use super::tenants::RequestKey;
use crate::domain::{CallContext, Error};
use crate::store::{Catalog, RequestRecord};

/// Runs `call` once per request id: a retry returns the first answer. Without a key, just runs.
pub(crate) async fn once<T, F, Fut>(
    catalog: &Catalog,
    ctx: &CallContext,
    key: Option<&RequestKey>,
    method: &str,
    resource: Uuid,
    call: F,
) -> Result<T, Error>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let Some(key) = key else { return call().await };
    let record = RequestRecord {
        request_id: key.id,
        method: method.to_owned(),
        request_hash: key.request_hash.clone(),
        resource_id: resource,
        result: None,
    };
    if let Some(first) = catalog.claim_request(&record).await? {
        if first.method != method || first.request_hash != key.request_hash {
            return Err(Error::invalid(
                "request_id",
                "was already used for a different request",
            ));
        }
        let Some(result) = first.result else {
            return Err(Error::Aborted {
                reason: "REQUEST_IN_PROGRESS",
                message: "a call with this request_id is still running; retry later".into(),
            });
        };
        ctx.replayed();
        return serde_json::from_value(result)
            .map_err(|e| Error::Internal(format!("stored answer of request {}: {e}", key.id)));
    }
    match call().await {
        Ok(answer) => {
            let stored =
                serde_json::to_value(&answer).map_err(|e| Error::Internal(e.to_string()))?;
            catalog.complete_request(key.id, stored).await?;
            Ok(answer)
        }
        Err(error) => {
            if let Err(release) = catalog.release_request(key.id).await {
                tracing::warn!(error = %release, "releasing the request id of a failed call");
            }
            Err(error)
        }
    }
}
