//! Queries on `auth_tokens`: the bearer tokens the control plane created, by hash only.

use sea_orm::{ActiveValue::Set, EntityTrait, sea_query::OnConflict};

use super::entity::auth_token;
use super::{Catalog, db_error};
use crate::domain::Error;

/// A stored token: its name, role and hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub name: String,
    pub role: String,
    pub token_hash: String,
}

impl Catalog {
    /// Every token the control plane created.
    pub async fn auth_tokens(&self) -> Result<Vec<StoredToken>, Error> {
        let rows = auth_token::Entity::find()
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|m| StoredToken {
                name: m.name,
                role: m.role,
                token_hash: m.token_hash,
            })
            .collect())
    }

    /// Stores `token` unless one of the same name exists; true when this call stored it. Two
    /// replicas starting at once on an empty catalog both try, and exactly one wins.
    pub async fn insert_auth_token_once(&self, token: &StoredToken) -> Result<bool, Error> {
        let row = auth_token::ActiveModel {
            name: Set(token.name.clone()),
            role: Set(token.role.clone()),
            token_hash: Set(token.token_hash.clone()),
            create_time: Set(self.now()),
        };
        let inserted = auth_token::Entity::insert(row)
            .on_conflict(
                OnConflict::column(auth_token::Column::Name)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await
            .map_err(db_error)?;
        Ok(inserted > 0)
    }
}
