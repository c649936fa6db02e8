//! tenant.v1.ComponentService: decode the request, call one use case, encode the answer.

use tonic::{Request, Response, Status};

use super::context::call_context;
use super::convert;
use crate::auth::{Caller, Role};
use crate::domain::{Component, ComponentMigration, Error, LintNote, NoteSeverity};
use crate::lint::Allowances;
use crate::proto::{self, component_service_server::ComponentService};
use crate::service::{
    Components, CreateComponentInput, Fleet, PushInput, PushedMigration, parse_component_name,
    parse_migration_name,
};

pub struct ComponentApi {
    components: Components,
    fleet: Fleet,
}

impl ComponentApi {
    pub fn new(components: Components, fleet: Fleet) -> Self {
        Self { components, fleet }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ComponentService for ComponentApi {
    async fn get_fleet_status(
        &self,
        _: Request<proto::GetFleetStatusRequest>,
    ) -> Reply<proto::FleetStatus> {
        let status = self.fleet.status().await?;
        let count = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(Response::new(proto::FleetStatus {
            tenant_count: count(status.tenants),
            components: status
                .components
                .into_iter()
                .map(|c| proto::ComponentFleetStatus {
                    component_id: c.component,
                    latest_version: c.latest_version.unwrap_or_default(),
                    tenant_count: count(c.tenants),
                    versions: c
                        .versions
                        .into_iter()
                        .map(|(version, n)| proto::VersionCount {
                            version: version.unwrap_or_default(),
                            tenant_count: count(n),
                        })
                        .collect(),
                    pending_count: count(c.pending),
                    failed_count: count(c.failed),
                    drifted_count: count(c.drifted),
                })
                .collect(),
            drifted_count: count(status.drifted),
        }))
    }

    async fn create_component(
        &self,
        request: Request<proto::CreateComponentRequest>,
    ) -> Reply<proto::Component> {
        let ctx = call_context(&request);
        let Some(wire) = request.into_inner().component else {
            return Err(Error::invalid("component", "is required").into());
        };
        let input = CreateComponentInput {
            component_id: wire.component_id,
            description: wire.description,
            owner: wire.owner,
        };
        Ok(Response::new(component(
            self.components.create(&ctx, input).await?,
        )))
    }

    async fn get_component(
        &self,
        request: Request<proto::GetComponentRequest>,
    ) -> Reply<proto::Component> {
        let id = parse_component_name(&request.get_ref().name, "name")?;
        Ok(Response::new(component(self.components.get(&id).await?)))
    }

    async fn list_components(
        &self,
        request: Request<proto::ListComponentsRequest>,
    ) -> Reply<proto::ListComponentsResponse> {
        let request = request.into_inner();
        let (components, next_page_token) = self
            .components
            .list(request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(proto::ListComponentsResponse {
            components: components.into_iter().map(component).collect(),
            next_page_token,
        }))
    }

    async fn push_migrations(
        &self,
        request: Request<proto::PushMigrationsRequest>,
    ) -> Reply<proto::PushMigrationsResponse> {
        let ctx = call_context(&request);
        // Calls that passed no authentication layer (none in the server) are not admins.
        let admin =
            request.extensions().get::<Caller>().and_then(Caller::role) == Some(Role::Admin);
        let request = request.into_inner();
        let allow = request.allow.unwrap_or_default();
        let input = PushInput {
            component: request.component,
            migrations: request
                .migrations
                .into_iter()
                .map(|m| PushedMigration {
                    version: m.version,
                    description: m.description,
                    up_sql: m.up_sql,
                    down_sql: m.down_sql,
                    sqlite_up_sql: m.sqlite_up_sql,
                    sqlite_down_sql: m.sqlite_down_sql,
                })
                .collect(),
            allow: Allowances {
                destructive: allow.destructive,
                dynamic_sql: allow.dynamic_sql,
                extensions: allow.extensions,
            },
            validate_only: request.validate_only,
            admin,
        };
        let outcome = self.components.push(&ctx, input).await?;
        Ok(Response::new(proto::PushMigrationsResponse {
            registered: outcome.registered.into_iter().map(migration).collect(),
            unchanged: outcome.unchanged,
            component: Some(component(outcome.component)),
        }))
    }

    async fn list_component_migrations(
        &self,
        request: Request<proto::ListComponentMigrationsRequest>,
    ) -> Reply<proto::ListComponentMigrationsResponse> {
        let request = request.into_inner();
        let id = parse_component_name(&request.parent, "parent")?;
        let (migrations, next_page_token) = self
            .components
            .migrations(&id, request.page_size, &request.page_token)
            .await?;
        Ok(Response::new(proto::ListComponentMigrationsResponse {
            migrations: migrations.into_iter().map(migration).collect(),
            next_page_token,
        }))
    }

    async fn get_component_migration(
        &self,
        request: Request<proto::GetComponentMigrationRequest>,
    ) -> Reply<proto::ComponentMigration> {
        let (id, version) = parse_migration_name(&request.get_ref().name, "name")?;
        Ok(Response::new(migration(
            self.components.migration(&id, &version).await?,
        )))
    }
}

fn component(c: Component) -> proto::Component {
    proto::Component {
        name: c.id.name(),
        compiled: c.compiled(),
        version_table: c.version_table(),
        component_id: c.id.to_string(),
        description: c.description,
        owner: c.owner,
        latest_version: c.latest_version.unwrap_or_default(),
        migration_count: i32::try_from(c.migration_count).unwrap_or(i32::MAX),
        create_time: c.create_time.map(convert::timestamp),
        update_time: c.update_time.map(convert::timestamp),
    }
}

fn migration(m: ComponentMigration) -> proto::ComponentMigration {
    proto::ComponentMigration {
        name: m.name(),
        version: m.body.version.to_string(),
        description: m.body.description,
        up_sql: m.body.up_sql,
        down_sql: m.body.down_sql,
        sqlite_up_sql: m.body.sqlite_up_sql,
        sqlite_down_sql: m.body.sqlite_down_sql,
        checksum: m.checksum,
        index: i32::try_from(m.index).unwrap_or(i32::MAX),
        destructive: m.destructive,
        findings: m.findings.into_iter().map(finding).collect(),
        create_time: m.create_time.map(convert::timestamp),
    }
}

fn finding(n: LintNote) -> proto::LintFinding {
    let severity = match n.severity {
        NoteSeverity::Note => proto::lint_finding::Severity::Note,
        NoteSeverity::Error => proto::lint_finding::Severity::Error,
    };
    proto::LintFinding {
        version: n.version,
        script: n.script.as_str().to_owned(),
        statement_index: i32::try_from(n.statement_index).unwrap_or(i32::MAX),
        rule: n.rule,
        severity: severity as i32,
        message: n.message,
        statement: n.statement,
    }
}
