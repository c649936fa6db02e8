//! Storage names a new tenant may not take (PostgreSQL): the catalog's own schema, any role
//! (a schema named like a role comes first on that role's default `search_path`, `"$user"`),
//! and any schema or database that exists already, which the control plane did not make for
//! the new tenant and so must not adopt. The one schema of SHARED tenants may exist, with its
//! mark. Storage names are also unique in the catalog (catalog migration 000015), whatever
//! prefix each tenant was made with.

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::pinned::SHARED_MARK;
use super::{Backend, Catalog, db_error};
use crate::domain::{Error, Isolation, Tenant};

impl Catalog {
    /// Refuses the storage name of `tenant`, not yet inserted, when it is taken outside the
    /// catalog (ALREADY_EXISTS, naming what holds it). SQLite: nothing to look up.
    pub async fn check_storage_name(&self, tenant: &Tenant) -> Result<(), Error> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        let (name, kind) = match tenant.isolation {
            Isolation::Schema | Isolation::Shared => (&tenant.schema_name, "schema"),
            Isolation::Database => (&tenant.database_name, "database"),
        };
        let Some(name) = name else {
            return Err(Error::Internal("a new tenant has no storage name".into()));
        };
        if name == self.schema.as_str() {
            return Err(Error::AlreadyExists {
                kind: "catalog schema",
                name: name.clone(),
            });
        }
        let row = self
            .conn()
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT to_regrole(quote_ident($1)) IS NOT NULL AS role, \
                   EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS database, \
                   (SELECT coalesce(obj_description(oid, 'pg_namespace'), '') \
                      FROM pg_namespace WHERE nspname = $1) AS schema_mark, \
                   coalesce((SELECT nspowner = current_user::regrole \
                      FROM pg_namespace WHERE nspname = $1), false) AS schema_ours",
                [name.as_str().into()],
            ))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::Internal("looking a storage name up returned nothing".into()))?;
        let role: bool = row.try_get("", "role").map_err(db_error)?;
        let database: bool = row.try_get("", "database").map_err(db_error)?;
        let schema_mark: Option<String> = row.try_get("", "schema_mark").map_err(db_error)?;
        let schema_ours: bool = row.try_get("", "schema_ours").map_err(db_error)?;
        // The shared schema, made by the control plane (a mark on a schema someone else owns
        // could have been written by that owner).
        let shared_schema = tenant.isolation == Isolation::Shared
            && schema_ours
            && schema_mark.as_deref() == Some(SHARED_MARK);
        let taken = if role {
            Some("PostgreSQL role")
        } else if kind == "database" && database {
            Some("PostgreSQL database")
        } else if kind == "schema" && schema_mark.is_some() && !shared_schema {
            Some("PostgreSQL schema")
        } else {
            None
        };
        match taken {
            Some(kind) => {
                tracing::warn!(tenant = %tenant.slug, name, kind, "storage name refused: it exists and was not made for this tenant");
                Err(Error::AlreadyExists {
                    kind,
                    name: name.clone(),
                })
            }
            None => Ok(()),
        }
    }
}
