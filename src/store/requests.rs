//! AIP-155 request ids: which call claimed an id, for what request, and what it answered.

use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use super::entity::request_id;
use super::{Catalog, db_error};
use crate::domain::Error;

/// A request id and what it made, for AIP-155 retries.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub request_id: Uuid,
    pub method: String,
    pub request_hash: String,
    pub resource_id: Uuid,
    /// The first answer, once the first call has finished (for requests that keep one).
    pub result: Option<serde_json::Value>,
}

impl Catalog {
    pub async fn request_record(&self, request_id: Uuid) -> Result<Option<RequestRecord>, Error> {
        let row = request_id::Entity::find_by_id(request_id)
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| RequestRecord {
            request_id: r.request_id,
            method: r.method,
            request_hash: r.request_hash,
            resource_id: r.resource_id,
            result: r.result,
        }))
    }

    /// Claims a request id for a call about to run; `Some` with the first call's record when the
    /// id is already taken (finished, or still running if it has no result yet).
    pub async fn claim_request(
        &self,
        record: &RequestRecord,
    ) -> Result<Option<RequestRecord>, Error> {
        let row = request_id::ActiveModel {
            request_id: Set(record.request_id),
            method: Set(record.method.clone()),
            request_hash: Set(record.request_hash.clone()),
            resource_id: Set(record.resource_id),
            result: Set(None),
            create_time: Set(self.now()),
        };
        let inserted = request_id::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(request_id::Column::RequestId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await
            .map_err(db_error)?;
        if inserted == 1 {
            return Ok(None);
        }
        self.request_record(record.request_id).await
    }

    /// Keeps the answer of a claimed request.
    pub async fn complete_request(
        &self,
        request_id: Uuid,
        result: serde_json::Value,
    ) -> Result<(), Error> {
        request_id::Entity::update_many()
            .col_expr(request_id::Column::Result, Expr::value(result))
            .filter(request_id::Column::RequestId.eq(request_id))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Releases a claimed request whose call failed, so a retry runs it again.
    pub async fn release_request(&self, request_id: Uuid) -> Result<(), Error> {
        request_id::Entity::delete_by_id(request_id)
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
