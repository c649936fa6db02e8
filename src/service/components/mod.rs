//! Component use cases: register a component, read and list components and their migrations,
//! and push migrations ([`push`]).
//!
//! The compiled component ("sample") is answered from the migrations the server was built
//! with: it is listed first, read like the others, and refuses pushes.

use std::sync::Arc;

use super::paging::Page;
use crate::domain::{
    CallContext, Component, ComponentId, ComponentMigration, Error, FieldViolation, MigrationBody,
    MigrationVersion,
};
use crate::store::Catalog;

mod push;

pub use push::{PushInput, PushOutcome, PushedMigration};

/// What a component's description and owner may hold: a sentence and a name, not a document.
const MAX_DESCRIPTION_CHARS: usize = 1024;
const MAX_OWNER_CHARS: usize = 256;
/// What ListComponents page tokens are bound to.
const LIST_QUERY: &str = "tenant.v1.ComponentService/ListComponents";

/// The registry of components and their migrations.
#[derive(Clone)]
pub struct Components {
    catalog: Catalog,
    /// The versions of the compiled component, oldest first.
    compiled: Arc<Vec<String>>,
    /// What the lint must know of this server.
    server: LintServer,
    /// The turn to lint a push: one at a time (see `push`).
    lints: Arc<tokio::sync::Semaphore>,
}

/// What the lint of a push must know of the server its migrations will run on.
#[derive(Debug, Clone, Default)]
pub struct LintServer {
    /// Whether tenants' storage is SQLite: a migration without SQLite scripts then runs its
    /// PostgreSQL ones there, and they are linted as SQLite too.
    pub sqlite: bool,
    /// The prefix of tenants' role names (TENANT_DATABASE_PREFIX): a script run in every
    /// tenant may grant nothing to a tenant's role, or it would hand each tenant's tables to
    /// that one tenant.
    pub tenant_role_prefix: String,
}

/// A component to register.
#[derive(Debug, Clone, Default)]
pub struct CreateComponentInput {
    pub component_id: String,
    pub description: String,
    pub owner: String,
}

impl Components {
    /// The registry on `catalog`; `compiled` are the compiled component's versions, oldest
    /// first.
    pub fn new(catalog: Catalog, compiled: &[String], server: LintServer) -> Self {
        Self {
            catalog,
            compiled: Arc::new(compiled.to_vec()),
            server,
            lints: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// Registers a component; creating one that exists with the same description and owner
    /// returns it, with others fails with ALREADY_EXISTS.
    #[tracing::instrument(skip_all, fields(component = %input.component_id))]
    pub async fn create(
        &self,
        ctx: &CallContext,
        input: CreateComponentInput,
    ) -> Result<Component, Error> {
        let mut violations = Vec::new();
        let id = ComponentId::parse(&input.component_id)
            .map_err(|why| {
                violations.push(FieldViolation::new("component.component_id", why));
            })
            .ok();
        if input.description.chars().count() > MAX_DESCRIPTION_CHARS {
            violations.push(FieldViolation::new(
                "component.description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        if input.owner.chars().count() > MAX_OWNER_CHARS {
            violations.push(FieldViolation::new(
                "component.owner",
                format!("must be at most {MAX_OWNER_CHARS} characters"),
            ));
        }
        Error::check(violations)?;
        let Some(id) = id else {
            return Err(Error::invalid("component.component_id", "is required"));
        };
        if id.is_compiled() {
            return Err(already_exists(&id));
        }
        let new = Component {
            id: id.clone(),
            description: input.description,
            owner: input.owner,
            latest_version: None,
            migration_count: 0,
            create_time: None,
            update_time: None,
        };
        if let Some(created) = self.catalog.insert_component(ctx, &new).await? {
            tracing::info!("component registered");
            return Ok(created);
        }
        let existing = self.get(&id).await?;
        if existing.description == new.description && existing.owner == new.owner {
            Ok(existing)
        } else {
            Err(already_exists(&id))
        }
    }

    pub async fn get(&self, id: &ComponentId) -> Result<Component, Error> {
        if id.is_compiled() {
            return Ok(self.sample());
        }
        self.catalog
            .get_component(id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// One page of components, ordered by id with the compiled one first, and the token of the
    /// next page (empty at the end).
    pub async fn list(
        &self,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Component>, String), Error> {
        let mut violations = Vec::new();
        let page = Page::parse(
            page_size,
            page_token,
            LIST_QUERY,
            |after| ComponentId::parse(after).ok(),
            &mut violations,
        );
        Error::check(violations)?;
        // The listing is the compiled component, then the registered ones by id.
        let mut components = Vec::new();
        let after = match &page.after {
            None => {
                components.push(self.sample());
                None
            }
            Some(after) if after.is_compiled() => None,
            Some(after) => Some(after),
        };
        let fetch = page.fetch() - components.len() as u64;
        components.extend(self.catalog.list_components(after, fetch).await?);
        let next = page.finish(&mut components, |c| c.id.to_string());
        Ok((components, next))
    }

    /// One page of a component's migrations, oldest first.
    pub async fn migrations(
        &self,
        id: &ComponentId,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<ComponentMigration>, String), Error> {
        let mut violations = Vec::new();
        let page = Page::parse(
            page_size,
            page_token,
            &format!("tenant.v1.ComponentService/ListComponentMigrations {id}"),
            |after| after.parse::<usize>().ok(),
            &mut violations,
        );
        Error::check(violations)?;
        let mut migrations = if id.is_compiled() {
            let start = page.after.map_or(0, |a| a + 1);
            self.compiled_migrations()
                .into_iter()
                .skip(start)
                .take(usize::try_from(page.fetch()).unwrap_or(usize::MAX))
                .collect()
        } else {
            // A component without migrations and one that does not exist list alike: tell
            // them apart.
            self.get(id).await?;
            self.catalog
                .list_component_migrations(id, page.after, page.fetch())
                .await?
        };
        let next = page.finish(&mut migrations, |m| m.index.to_string());
        Ok((migrations, next))
    }

    pub async fn migration(
        &self,
        id: &ComponentId,
        version: &MigrationVersion,
    ) -> Result<ComponentMigration, Error> {
        let found = if id.is_compiled() {
            self.compiled_migrations()
                .into_iter()
                .find(|m| &m.body.version == version)
        } else {
            self.catalog.get_component_migration(id, version).await?
        };
        found.ok_or_else(|| Error::NotFound {
            kind: "component migration",
            name: format!("components/{id}/migrations/{version}"),
        })
    }

    /// The compiled component, as the registry shows it.
    fn sample(&self) -> Component {
        Component {
            id: ComponentId::sample(),
            description: "The sample tenant schema compiled into the server.".into(),
            owner: "tenant-plane".into(),
            latest_version: self.compiled.last().cloned(),
            migration_count: self.compiled.len(),
            create_time: None,
            update_time: None,
        }
    }

    /// The compiled component's migrations: versions only, their code is in the server. A
    /// name that is not a safe word (none of the sample's) is left out.
    fn compiled_migrations(&self) -> Vec<ComponentMigration> {
        self.compiled
            .iter()
            .enumerate()
            .filter_map(|(index, version)| {
                let version = MigrationVersion::parse_compiled(version).ok()?;
                Some(ComponentMigration {
                    component: ComponentId::sample(),
                    body: MigrationBody {
                        version,
                        description: String::new(),
                        up_sql: String::new(),
                        down_sql: String::new(),
                        sqlite_up_sql: String::new(),
                        sqlite_down_sql: String::new(),
                    },
                    checksum: String::new(),
                    index,
                    destructive: false,
                    findings: Vec::new(),
                    create_time: None,
                })
            })
            .collect()
    }
}

/// Parses `components/{id}`, naming `field` when it is not one.
pub fn parse_component_name(name: &str, field: &str) -> Result<ComponentId, Error> {
    let id = name.strip_prefix("components/").ok_or_else(|| {
        Error::invalid(field, "must be a component name, components/{component_id}")
    })?;
    ComponentId::parse(id).map_err(|why| Error::invalid(field, why))
}

/// Parses `components/{id}/migrations/{version}`, naming `field` when it is not one.
pub fn parse_migration_name(
    name: &str,
    field: &str,
) -> Result<(ComponentId, MigrationVersion), Error> {
    let shape = || {
        Error::invalid(
            field,
            "must be a migration name, components/{component_id}/migrations/{version}",
        )
    };
    let rest = name.strip_prefix("components/").ok_or_else(shape)?;
    let (id, version) = rest.split_once("/migrations/").ok_or_else(shape)?;
    let id = ComponentId::parse(id).map_err(|why| Error::invalid(field, why))?;
    let version = if id.is_compiled() {
        MigrationVersion::parse_compiled(version)
    } else {
        MigrationVersion::parse(version)
    }
    .map_err(|why| Error::invalid(field, why))?;
    Ok((id, version))
}

fn not_found(id: &ComponentId) -> Error {
    Error::NotFound {
        kind: "component",
        name: id.name(),
    }
}

fn already_exists(id: &ComponentId) -> Error {
    Error::AlreadyExists {
        kind: "component",
        name: id.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_parse_only_in_their_shape() {
        assert_eq!(
            parse_component_name("components/billing", "name")
                .unwrap()
                .as_str(),
            "billing"
        );
        for bad in ["billing", "components/", "components/Billing", "plans/x"] {
            assert!(parse_component_name(bad, "name").is_err(), "{bad}");
        }
        let (c, v) = parse_migration_name("components/billing/migrations/0001_a", "name").unwrap();
        assert_eq!((c.as_str(), v.as_str()), ("billing", "0001_a"));
        for bad in [
            "components/billing/0001_a",
            "components/billing/migrations/",
            "components/billing/migrations/x",
        ] {
            assert!(parse_migration_name(bad, "name").is_err(), "{bad}");
        }
    }
}
