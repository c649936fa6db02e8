//! Tenant use cases: create, read, list, change, suspend, delete, restore and resolve.

use std::collections::BTreeMap;

use chrono::Duration;
use uuid::Uuid;

use super::paging::{PageSize, PageToken, fingerprint};
use crate::domain::{
    Error, FieldViolation, Isolation, Labels, PlanName, Slug, StorageName, StoragePrefix, Tenant,
    TenantId, TenantState,
};
use crate::store::{Backend, Catalog, ListQuery, NewTenant, RequestRecord};

/// Tenant settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub prefix: StoragePrefix,
    pub default_plan: PlanName,
    /// Isolation of tenants whose plan does not choose one.
    pub default_isolation: Isolation,
    pub purge_retention: Duration,
}

/// How a request names a tenant: "tenants/{id}" or "tenants/{slug}".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRef {
    Id(TenantId),
    Slug(Slug),
}

impl TenantRef {
    pub fn parse(name: &str, field: &str) -> Result<Self, Error> {
        let key = name.strip_prefix("tenants/").ok_or_else(|| {
            Error::invalid(field, "must be \"tenants/{id}\" or \"tenants/{slug}\"")
        })?;
        if let Some(id) = TenantId::parse(key) {
            return Ok(Self::Id(id));
        }
        Slug::parse(key).map(Self::Slug).map_err(|why| {
            Error::invalid(
                field,
                format!("is neither a tenant id nor a valid slug: the slug {why}"),
            )
        })
    }
}

impl std::fmt::Display for TenantRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "tenants/{id}"),
            Self::Slug(slug) => write!(f, "tenants/{slug}"),
        }
    }
}

/// An isolation as sent by a caller, before it is checked.
#[derive(Debug, Clone, Copy)]
pub enum IsolationInput {
    Unspecified,
    Known(Isolation),
    Unknown(i32),
}

/// An AIP-155 request id with a hash of the request it came with.
#[derive(Debug, Clone)]
pub struct RequestKey {
    pub id: Uuid,
    pub request_hash: String,
}

#[derive(Debug, Clone)]
pub struct CreateTenantInput {
    pub slug: String,
    pub display_name: String,
    pub plan: String,
    pub isolation: IsolationInput,
    pub labels: BTreeMap<String, String>,
    pub request: Option<RequestKey>,
    pub validate_only: bool,
    /// Problems the transport already found (e.g. output-only fields set); reported together
    /// with the ones found here, so the caller sees every invalid field at once.
    pub violations: Vec<FieldViolation>,
}

#[derive(Debug, Clone, Default)]
pub struct ListTenantsInput {
    pub page_size: i32,
    pub page_token: String,
    pub states: Vec<TenantState>,
    pub plan: String,
    pub labels: BTreeMap<String, String>,
    pub show_deleted: bool,
}

/// The changes of an UpdateTenant: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateTenantInput {
    pub display_name: Option<String>,
    pub plan: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub limit_overrides: Option<BTreeMap<String, i64>>,
}

/// What ResolveTenant looks a tenant up by.
#[derive(Debug, Clone)]
pub enum Lookup {
    Id(String),
    Slug(String),
    Host(String),
}

/// Where a tenant's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLocation {
    pub isolation: Isolation,
    pub schema_name: Option<String>,
    pub database_name: Option<String>,
    pub row_filter_tenant_id: Option<String>,
}

/// How often a read-modify-write retries when another writer got there first.
const MAX_WRITE_ATTEMPTS: usize = 5;
const MAX_DISPLAY_NAME: usize = 200;
const MAX_SUSPEND_REASON: usize = 500;

#[derive(Clone)]
pub struct Tenants {
    catalog: Catalog,
    settings: TenantSettings,
}

impl Tenants {
    pub fn new(catalog: Catalog, settings: TenantSettings) -> Self {
        Self { catalog, settings }
    }

    #[tracing::instrument(skip_all, fields(slug = %input.slug))]
    pub async fn create(&self, mut input: CreateTenantInput) -> Result<Tenant, Error> {
        if let Some(key) = &input.request
            && let Some(first) = self.catalog.request_record(key.id).await?
        {
            return self.replay(&first, key).await;
        }
        let mut violations = std::mem::take(&mut input.violations);
        let slug = Slug::parse(&input.slug)
            .map_err(|why| violations.push(FieldViolation::new("tenant.slug", why)))
            .ok();
        let storage = slug.as_ref().and_then(|s| {
            StorageName::derive(&self.settings.prefix, s)
                .map_err(|why| violations.push(FieldViolation::new("tenant.slug", why)))
                .ok()
        });
        check_display_name(&input.display_name, "tenant.display_name", &mut violations);
        let plan = self
            .known_plan(&input.plan, "tenant.plan", &mut violations)
            .await?;
        let labels = parse_labels(&input.labels, "tenant.labels", &mut violations);
        let isolation = match input.isolation {
            IsolationInput::Unknown(n) => {
                violations.push(FieldViolation::new(
                    "tenant.isolation",
                    format!("unknown isolation {n}"),
                ));
                None
            }
            IsolationInput::Known(i) => Some(i),
            IsolationInput::Unspecified => match &plan {
                Some((_, Some(plan_default))) => Some(*plan_default),
                _ => Some(self.settings.default_isolation),
            },
        };
        if isolation == Some(Isolation::Schema) && self.catalog.backend() == Backend::Sqlite {
            violations.push(FieldViolation::new(
                "tenant.isolation",
                "schema isolation needs PostgreSQL; the embedded SQLite catalog offers database and shared",
            ));
        }
        Error::check(violations)?;
        let (Some(slug), Some(storage), Some((plan, _)), Some(isolation), Some(labels)) =
            (slug, storage, plan, isolation, labels)
        else {
            return Err(Error::Internal(
                "validated create input is incomplete".into(),
            ));
        };

        let now = super::now();
        let (schema_name, database_name) = match (isolation, self.catalog.backend()) {
            (Isolation::Schema, _) => (Some(storage.to_string()), None),
            (Isolation::Database, Backend::Postgres) => (None, Some(storage.to_string())),
            (Isolation::Database, Backend::Sqlite) => (None, Some(format!("{storage}.sqlite3"))),
            (Isolation::Shared, _) => (None, None),
        };
        let tenant = Tenant {
            id: TenantId::new(),
            display_name: if input.display_name.is_empty() {
                slug.to_string()
            } else {
                input.display_name
            },
            slug,
            plan,
            isolation,
            state: TenantState::Provisioning,
            state_before_suspend: None,
            state_before_delete: None,
            labels,
            limit_overrides: BTreeMap::new(),
            schema_name,
            database_name,
            suspend_reason: None,
            migration_version: None,
            last_error: None,
            revision: 1,
            create_time: now,
            update_time: now,
            delete_time: None,
            purge_time: None,
            suspend_time: None,
        };
        if input.validate_only {
            if self.catalog.tenant_by_slug(&tenant.slug).await?.is_some() {
                return Err(Error::AlreadyExists {
                    kind: "tenant",
                    name: tenant.slug.to_string(),
                });
            }
            return Ok(tenant);
        }
        let record = input.request.as_ref().map(|key| RequestRecord {
            request_id: key.id,
            method: CREATE_METHOD.into(),
            request_hash: key.request_hash.clone(),
            resource_id: tenant.id.as_uuid(),
        });
        match self.catalog.insert_tenant(&tenant, record.as_ref()).await? {
            NewTenant::Created(created) => {
                tracing::info!(tenant = %created.id, "tenant created");
                Ok(*created)
            }
            NewTenant::SlugTaken => Err(Error::AlreadyExists {
                kind: "tenant",
                name: tenant.slug.to_string(),
            }),
            NewTenant::Replayed(first) => match &input.request {
                Some(key) => self.replay(&first, key).await,
                None => Err(Error::Internal(
                    "replayed a create without a request id".into(),
                )),
            },
        }
    }

    /// The first answer to a retried create; a request id reused for another request is refused.
    async fn replay(&self, first: &RequestRecord, key: &RequestKey) -> Result<Tenant, Error> {
        if first.method != CREATE_METHOD || first.request_hash != key.request_hash {
            return Err(Error::invalid(
                "request_id",
                "was already used for a different request",
            ));
        }
        let id = TenantId::from(first.resource_id);
        self.catalog
            .tenant_by_id(id)
            .await?
            .ok_or_else(|| Error::tenant_not_found(format!("tenants/{id}")))
    }

    pub async fn get(&self, target: &TenantRef) -> Result<Tenant, Error> {
        let found = match target {
            TenantRef::Id(id) => self.catalog.tenant_by_id(*id).await?,
            TenantRef::Slug(slug) => self.catalog.tenant_by_slug(slug).await?,
        };
        found.ok_or_else(|| Error::tenant_not_found(target.to_string()))
    }

    /// One page of tenants and the token of the next page (empty at the end).
    pub async fn list(&self, input: ListTenantsInput) -> Result<(Vec<Tenant>, String), Error> {
        let mut violations = Vec::new();
        let page_size = PageSize::parse(input.page_size, "page_size")
            .map_err(|e| push(&mut violations, e))
            .ok();
        let plan = (!input.plan.is_empty())
            .then(|| {
                PlanName::parse(&input.plan)
                    .map_err(|why| violations.push(FieldViolation::new("plan", why)))
                    .ok()
            })
            .flatten();
        let labels = parse_labels(&input.labels, "labels", &mut violations).unwrap_or_default();
        let mut states = input.states.clone();
        states.sort_by_key(|s| s.as_str());
        states.dedup();
        let query_print = fingerprint(&format!(
            "{states:?}|{}|{:?}|{}",
            input.plan,
            labels.as_map(),
            input.show_deleted
        ));
        let token = PageToken::decode(&input.page_token, &query_print, "page_token")
            .map_err(|e| push(&mut violations, e))
            .ok()
            .flatten();
        let after = match token.map(|t| TenantId::parse(&t.after)) {
            Some(None) => {
                violations.push(FieldViolation::new(
                    "page_token",
                    "is not a page token issued for this query",
                ));
                None
            }
            Some(Some(id)) => Some(id),
            None => None,
        };
        Error::check(violations)?;
        let limit = page_size.map_or(PageSize::DEFAULT, PageSize::get);
        let query = ListQuery {
            states,
            plan,
            labels,
            show_deleted: input.show_deleted,
            after,
            limit: limit + 1,
        };
        let mut page = self.catalog.list_tenants(&query).await?;
        let next = if page.len() as u64 > limit {
            page.truncate(limit as usize);
            page.last()
                .map(|t| PageToken::new(t.id.to_string(), &query_print).encode())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((page, next))
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn update(
        &self,
        target: &TenantRef,
        etag: Option<&str>,
        changes: UpdateTenantInput,
    ) -> Result<Tenant, Error> {
        let mut violations = Vec::new();
        if let Some(name) = &changes.display_name {
            check_display_name(name, "tenant.display_name", &mut violations);
            if name.is_empty() {
                violations.push(FieldViolation::new(
                    "tenant.display_name",
                    "must not be empty",
                ));
            }
        }
        let plan = match &changes.plan {
            Some(p) if p.is_empty() => {
                violations.push(FieldViolation::new("tenant.plan", "must not be empty"));
                None
            }
            Some(p) => self
                .known_plan(p, "tenant.plan", &mut violations)
                .await?
                .map(|(plan, _)| plan),
            None => None,
        };
        let labels = changes
            .labels
            .as_ref()
            .and_then(|l| parse_labels(l, "tenant.labels", &mut violations));
        if let Some(overrides) = &changes.limit_overrides {
            for resource in overrides.keys() {
                if PlanName::parse(resource).is_err() || resource.contains('-') {
                    violations.push(FieldViolation::new(
                        "tenant.limit_overrides",
                        format!("'{resource}' is not a quota resource name (a-z, 0-9 and '_', starting with a letter)"),
                    ));
                }
            }
        }
        Error::check(violations)?;
        self.mutate(target, etag, |t, _| {
            t.ensure_mutable()?;
            if let Some(name) = &changes.display_name {
                t.display_name = name.clone();
            }
            if let Some(plan) = &plan {
                t.plan = plan.clone();
            }
            if let Some(labels) = &labels {
                t.labels = labels.clone();
            }
            if let Some(overrides) = &changes.limit_overrides {
                t.limit_overrides = overrides.clone();
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn delete(&self, target: &TenantRef, etag: Option<&str>) -> Result<Tenant, Error> {
        let retention = self.settings.purge_retention;
        self.mutate(target, etag, |t, now| t.delete(now, retention))
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn undelete(&self, target: &TenantRef, etag: Option<&str>) -> Result<Tenant, Error> {
        self.mutate(target, etag, |t, _| t.undelete()).await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn suspend(
        &self,
        target: &TenantRef,
        reason: &str,
        etag: Option<&str>,
    ) -> Result<Tenant, Error> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_SUSPEND_REASON {
            return Err(Error::invalid(
                "reason",
                format!("must be 1 to {MAX_SUSPEND_REASON} characters"),
            ));
        }
        self.mutate(target, etag, |t, now| t.suspend(reason.to_owned(), now))
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn resume(&self, target: &TenantRef, etag: Option<&str>) -> Result<Tenant, Error> {
        self.mutate(target, etag, |t, _| t.resume()).await
    }

    /// Finds the tenant a key belongs to and where its data lives.
    pub async fn resolve(&self, lookup: Lookup) -> Result<(Tenant, DataLocation), Error> {
        let target = match &lookup {
            Lookup::Id(id) => TenantId::parse(id)
                .map(TenantRef::Id)
                .ok_or_else(|| Error::invalid("id", "must be a UUID"))?,
            Lookup::Slug(slug) => {
                TenantRef::Slug(Slug::parse(slug).map_err(|why| Error::invalid("slug", why))?)
            }
            Lookup::Host(host) => TenantRef::Slug(slug_of_host(host)?),
        };
        let tenant = self.get(&target).await?;
        let location = DataLocation {
            isolation: tenant.isolation,
            schema_name: tenant.schema_name.clone(),
            database_name: tenant.database_name.clone(),
            row_filter_tenant_id: (tenant.isolation == Isolation::Shared)
                .then(|| tenant.id.to_string()),
        };
        Ok((tenant, location))
    }

    /// Read-modify-write with optimistic concurrency. With an etag, a concurrent change is the
    /// caller's conflict (ABORTED); without one, the change is re-applied to the fresh row.
    async fn mutate<F>(
        &self,
        target: &TenantRef,
        etag: Option<&str>,
        change: F,
    ) -> Result<Tenant, Error>
    where
        F: Fn(&mut Tenant, chrono::DateTime<chrono::Utc>) -> Result<(), Error>,
    {
        let expected = etag.filter(|e| !e.is_empty()).map(|e| {
            crate::domain::Etag::parse(e)
                .ok_or_else(|| Error::invalid("etag", "is not an etag issued by this service"))
        });
        let expected = expected.transpose()?;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let mut tenant = self.get(target).await?;
            if let Some(expected) = expected
                && expected != tenant.etag()
            {
                return Err(stale(&tenant));
            }
            let revision = tenant.revision;
            change(&mut tenant, super::now())?;
            match self.catalog.save_tenant(&tenant, revision).await? {
                Some(saved) => return Ok(saved),
                None if expected.is_some() => return Err(stale(&tenant)),
                None => continue,
            }
        }
        Err(Error::Aborted {
            message: format!("{target} is being changed concurrently; retry"),
        })
    }

    /// The plan named by `text` (empty = the default plan) and its default isolation.
    async fn known_plan(
        &self,
        text: &str,
        field: &str,
        violations: &mut Vec<FieldViolation>,
    ) -> Result<Option<(PlanName, Option<Isolation>)>, Error> {
        let plan = if text.is_empty() {
            self.settings.default_plan.clone()
        } else {
            match PlanName::parse(text) {
                Ok(plan) => plan,
                Err(why) => {
                    violations.push(FieldViolation::new(field, why));
                    return Ok(None);
                }
            }
        };
        match self.catalog.plan_default_isolation(&plan).await? {
            Some(isolation) => Ok(Some((plan, isolation))),
            None => {
                violations.push(FieldViolation::new(field, format!("unknown plan '{plan}'")));
                Ok(None)
            }
        }
    }
}

const CREATE_METHOD: &str = "tenant.v1.TenantService/CreateTenant";

fn stale(tenant: &Tenant) -> Error {
    Error::Aborted {
        message: format!(
            "etag mismatch: tenant {} has changed; read it again",
            tenant.slug
        ),
    }
}

fn push(violations: &mut Vec<FieldViolation>, error: Error) {
    match error {
        Error::InvalidArgument(found) => violations.extend(found),
        other => violations.push(FieldViolation::new("", other.to_string())),
    }
}

fn check_display_name(name: &str, field: &str, violations: &mut Vec<FieldViolation>) {
    if name.chars().count() > MAX_DISPLAY_NAME {
        violations.push(FieldViolation::new(
            field,
            format!("must be at most {MAX_DISPLAY_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        violations.push(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
}

fn parse_labels(
    labels: &BTreeMap<String, String>,
    field: &str,
    violations: &mut Vec<FieldViolation>,
) -> Option<Labels> {
    Labels::parse(labels)
        .map_err(|errors| {
            for (key, why) in errors {
                let field = if key.is_empty() {
                    field.to_owned()
                } else {
                    format!("{field}[{key}]")
                };
                violations.push(FieldViolation::new(field, why));
            }
        })
        .ok()
}

/// The slug in a host name: its first label ("acme.example.com:443" -> acme).
fn slug_of_host(host: &str) -> Result<Slug, Error> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let first = host
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    Slug::parse(&first).map_err(|why| {
        Error::invalid(
            "host",
            format!("its first label is not a tenant slug: the slug {why}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_accept_ids_and_slugs() {
        let id = TenantId::new();
        assert_eq!(
            TenantRef::parse(&format!("tenants/{id}"), "name").unwrap(),
            TenantRef::Id(id)
        );
        assert!(matches!(
            TenantRef::parse("tenants/acme", "name").unwrap(),
            TenantRef::Slug(_)
        ));
        for bad in [
            "acme",
            "tenants/",
            "tenants/Acme",
            "tenant/acme",
            "tenants/acme/x",
        ] {
            assert!(TenantRef::parse(bad, "name").is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_resolve_by_their_first_label() {
        assert_eq!(slug_of_host("acme.example.com").unwrap().as_str(), "acme");
        assert_eq!(
            slug_of_host("Acme.example.com:8443").unwrap().as_str(),
            "acme"
        );
        assert_eq!(slug_of_host("acme").unwrap().as_str(), "acme");
        assert!(slug_of_host("").is_err());
        assert!(slug_of_host("'; drop table tenants;--.example.com").is_err());
    }
}
