//! Wiring: configuration -> catalog -> use cases -> gRPC server, and an orderly stop.

mod error;
mod plans;

pub use error::StartError;

use plans::builtin_plans;

use std::{future::Future, num::NonZeroUsize, sync::Arc, time::Duration};

use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
};

use crate::auth::{self, Bootstrapped, tls::CertificateRoles};
use crate::config::{Config, IsolationSetting};
use crate::dataplane::{DataPlane, DataPlaneSettings, TenantMigrations};
use crate::domain::{CatalogSchema, Isolation, PlanName, StoragePrefix};
use crate::grpc::{self, AuthLayer, Security, Services};
use crate::service::{
    AuditLog, Components, Drifts, Fleet, JobPasses, LintServer, Members, Migrations, Plans,
    Provisioning, Quotas, RolloutSettings, RolloutWorker, Rollouts, TenantSettings, Tenants,
    run_purge_job,
};
use crate::store::{Backend, Catalog, PoolSettings};

/// A started control plane: the catalog is migrated and seeded, the use cases are ready.
pub struct App {
    config: Config,
    catalog: Catalog,
    services: Services,
    /// Set up when the server binds.
    security: Option<Security>,
    worker: RolloutWorker,
    /// The Prometheus endpoint, bound by [`App::bind`] so its port is known before serving.
    metrics: crate::metrics::Endpoint,
    /// The admin token this start created (none was configured or stored), to show once.
    new_admin_token: Option<String>,
    /// When the background jobs' passes ran, by the server's clock.
    passes: JobPasses,
}

/// Attempts at a rollout target before a transient error counts as a failure.
const MAX_ROLLOUT_ATTEMPTS: i32 = 3;

impl App {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with(config, TenantMigrations::builtin()).await
    }

    /// Builds with another set of tenant migrations (an embedding application's own, or a test's).
    pub async fn build_with(
        config: Config,
        migrations: TenantMigrations,
    ) -> Result<Self, StartError> {
        let prefix = StoragePrefix::parse(&config.tenant_database_prefix)
            .map_err(|why| StartError::Config(format!("TENANT_DATABASE_PREFIX {why}")))?;
        let default_plan = PlanName::parse(&config.tenant_default_plan)
            .map_err(|why| StartError::Config(format!("TENANT_DEFAULT_PLAN {why}")))?;
        if config.auth.insecure
            && !config.listen.ip().is_loopback()
            && !config.auth.insecure_trusted_network
        {
            return Err(StartError::Config(format!(
                "--insecure (TENANT_PLANE_INSECURE) turns authentication off, and the listen \
                 address {} (TENANT_PLANE_LISTEN) is not a loopback address: anyone who can \
                 reach it could do everything. Listen on 127.0.0.1, or, if every host that can \
                 reach it may do so, also set --insecure-trusted-network \
                 (TENANT_PLANE_INSECURE_TRUSTED_NETWORK=true)",
                config.listen
            )));
        }
        if config.pool_size == 0 {
            return Err(StartError::Config(
                "TENANT_PLANE_POOL_SIZE must be at least 1".into(),
            ));
        }
        if config.rollout_connections == 0 {
            return Err(StartError::Config(
                "TENANT_PLANE_ROLLOUT_CONNECTIONS must be at least 1".into(),
            ));
        }
        let tenant_connections =
            NonZeroUsize::new(config.tenant_connections as usize).ok_or_else(|| {
                StartError::Config("TENANT_PLANE_TENANT_CONNECTIONS must be at least 1".into())
            })?;

        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&config.data_dir)?;
                format!(
                    "sqlite://{}?mode=rwc",
                    config.data_dir.join("catalog.sqlite3").display()
                )
            }
        };
        let catalog_schema = CatalogSchema::parse(&config.catalog_schema)
            .map_err(|why| StartError::Config(format!("TENANT_PLANE_CATALOG_SCHEMA {why}")))?;
        let pool = PoolSettings {
            catalog_schema,
            max_connections: config.pool_size,
            rollout_connections: config.rollout_connections,
            acquire_timeout: config.pool_acquire_timeout(),
            cache_capacity: NonZeroUsize::new(config.cache_capacity as usize).ok_or_else(|| {
                StartError::Config("TENANT_PLANE_CACHE_CAPACITY must be at least 1".into())
            })?,
        };
        crate::store::pooler::refuse_transaction_pooler(&url).await?;
        let catalog = Catalog::connect(&url, &pool, config.clock.clone()).await?;
        let default_isolation = match (config.tenant_isolation_strategy, catalog.backend()) {
            (Some(IsolationSetting::Schema), Backend::Sqlite) => {
                return Err(StartError::Config(
                    "TENANT_ISOLATION_STRATEGY=schema needs PostgreSQL (set DATABASE_URL); the embedded SQLite catalog offers database isolation".into(),
                ));
            }
            (Some(IsolationSetting::Shared), Backend::Sqlite) => {
                return Err(StartError::Config(
                    "TENANT_ISOLATION_STRATEGY=shared needs PostgreSQL (set DATABASE_URL): row-level security".into(),
                ));
            }
            (Some(IsolationSetting::Schema), _) | (None, Backend::Postgres) => Isolation::Schema,
            (Some(IsolationSetting::Database), _) | (None, Backend::Sqlite) => Isolation::Database,
            (Some(IsolationSetting::Shared), _) => Isolation::Shared,
        };
        catalog.migrate().await?;
        catalog.restrict_catalog_connect().await?;
        catalog
            .ensure_plans(&builtin_plans(&config, &default_plan))
            .await?;
        tracing::info!(backend = ?catalog.backend(), isolation = default_isolation.as_str(), "catalog ready");

        let settings = TenantSettings {
            prefix,
            default_plan,
            default_isolation,
            purge_retention: chrono::Duration::days(i64::from(config.purge_retention_days)),
        };
        let dataplane = Arc::new(DataPlane::new(
            catalog.conn().clone(),
            catalog.backend(),
            DataPlaneSettings {
                catalog_url: url,
                data_dir: config.data_dir.clone(),
                tenant_connections,
                acquire_timeout: config.pool_acquire_timeout(),
                clock: catalog.clock().clone(),
            },
            migrations,
        ));
        let rollout_settings = RolloutSettings {
            default_concurrency: config.rollout_concurrency.max(1),
            max_concurrency: config.rollout_max_concurrency.max(1),
            lease: Duration::from_secs(config.rollout_lease_secs.max(1)),
            poll_interval: Duration::from_millis(config.rollout_poll_ms.max(10)),
            max_attempts: MAX_ROLLOUT_ATTEMPTS,
        };
        let wake = Arc::new(Notify::new());
        let rollouts = Rollouts::new(
            catalog.clone(),
            dataplane.clone(),
            rollout_settings.clone(),
            wake.clone(),
        );
        let worker = RolloutWorker::new(catalog.clone(), dataplane.clone(), rollout_settings, wake);
        let metrics =
            crate::metrics::endpoint(config.metrics_listen, catalog.clone(), dataplane.clone());
        let provisioning = Provisioning::new(catalog.clone(), dataplane.clone());
        let quotas = Quotas::new(
            catalog.clone(),
            dataplane.clone(),
            pool.cache_capacity,
            config.quota_deadline(),
        );
        let auto_provision = config.tenant_auto_provision.then(|| provisioning.clone());
        let components = Components::new(
            catalog.clone(),
            dataplane.migrations().names(),
            LintServer {
                sqlite: catalog.backend() == Backend::Sqlite,
                tenant_role_prefix: config.tenant_database_prefix.clone(),
            },
        );
        let fleet = Fleet::new(catalog.clone(), dataplane.clone());
        let drifts = Drifts::new(catalog.clone(), dataplane.clone(), rollouts.clone());
        let services = Services {
            tenants: Tenants::new(catalog.clone(), settings, auto_provision),
            members: Members::new(catalog.clone()),
            provisioning,
            migrations: Migrations::new(catalog.clone(), dataplane),
            rollouts,
            drifts,
            quotas,
            plans: Plans::new(catalog.clone()),
            components,
            fleet,
            audit: AuditLog::new(catalog.clone()),
            tenant_id_source: config.tenant_id_source,
            tenant_anonymous_sources: config.tenant_anonymous_sources.clone(),
            tenant_anonymous_quota: config.tenant_anonymous_quota,
        };
        Ok(Self {
            config,
            catalog,
            services,
            security: None,
            worker,
            metrics,
            new_admin_token: None,
            passes: JobPasses::default(),
        })
    }

    /// Sets up authentication and TLS for serving: loads the tokens, or creates the first
    /// start's admin token. Done by [`Self::bind`], so commands that do not serve (`migrate`)
    /// never create a token nobody would see.
    async fn secure(&mut self) -> Result<Security, StartError> {
        if let Some(security) = &self.security {
            return Ok(security.clone());
        }
        let settings = &self.config.auth;
        let tls = auth::tls::server_config(settings)?;
        let tenants = self.services.tenants.clone();
        let auth = if settings.insecure {
            tracing::warn!(
                "authentication is OFF (--insecure): every caller may do everything; use this \
                 only for local experiments"
            );
            AuthLayer::insecure(tenants, self.services.audit.clone())
        } else {
            let Bootstrapped {
                tokens,
                new_admin_token,
            } = auth::load_tokens(settings, &self.catalog).await?;
            self.new_admin_token = new_admin_token;
            let certificates = settings
                .tls_client_ca
                .is_some()
                .then(|| CertificateRoles::from_settings(settings));
            AuthLayer::new(
                tokens,
                certificates,
                tenants,
                self.services.audit.clone(),
                self.metrics.auth_refusals(),
            )
        };
        let security = Security { auth, tls };
        self.security = Some(security.clone());
        Ok(security)
    }

    /// The admin token this start created, if it did: shown once, never stored in clear.
    pub fn take_new_admin_token(&mut self) -> Option<String> {
        self.new_admin_token.take()
    }

    /// When each background job's last pass began, by the server's clock: a test that moves
    /// the clock waits on it for a pass that saw the new time.
    pub fn job_passes(&self) -> JobPasses {
        self.passes.clone()
    }

    /// Whether authentication is off (`--insecure`).
    pub fn is_insecure(&self) -> bool {
        self.config.auth.insecure
    }

    /// Whether the server speaks TLS.
    pub fn uses_tls(&self) -> bool {
        self.config.auth.tls_cert.is_some()
    }

    /// The use cases, for callers that do not serve gRPC (the `migrate` command).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Runs `work` with this replica's rollout worker alongside, then stops the worker and
    /// closes the pool.
    pub async fn work_until<T>(self, work: impl Future<Output = T>) -> T {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(self.worker.run(async {
            let _ = stopped.await;
        }));
        let result = work.await;
        let _ = stop.send(());
        if let Err(e) = worker.await {
            tracing::warn!(error = %e, "rollout worker ended abnormally");
        }
        if let Err(e) = self.catalog.close().await {
            tracing::warn!(error = %e, "closing the catalog pool");
        }
        result
    }

    /// Binds the configured listen address (returned) and the metrics endpoint's (kept).
    pub async fn bind(&mut self) -> Result<TcpListener, StartError> {
        self.secure().await?;
        let listener = TcpListener::bind(self.config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: self.config.listen.to_string(),
                setting: "--listen / TENANT_PLANE_LISTEN",
                source,
            })?;
        self.bind_metrics().await?;
        Ok(listener)
    }

    /// Binds the metrics endpoint, unless it is off or bound already.
    async fn bind_metrics(&self) -> Result<(), StartError> {
        match self.metrics.bind().await {
            Ok(_) => Ok(()),
            Err(source) => Err(StartError::Bind {
                addr: match self.config.metrics_listen {
                    crate::config::Listen::On(addr) => addr.to_string(),
                    crate::config::Listen::Off => "off".into(),
                },
                setting: "--metrics-listen / TENANT_PLANE_METRICS_LISTEN",
                source,
            }),
        }
    }

    /// Where the metrics endpoint listens, once bound; `None` when it is off.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.local_addr()
    }

    /// Serves on `listener` until `shutdown` completes, drains, then closes the pool.
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let security = self.secure().await?;
        let (stopping, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stopping.send(true);
        });
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // Bound here unless `bind` did it: a port in use stops the start, as for gRPC.
        self.bind_metrics().await?;
        let metrics = tokio::spawn(self.metrics.serve(until_stopped(stopped.clone())));
        let worker = tokio::spawn(self.worker.run(until_stopped(stopped.clone())));
        let purge = (self.config.purge_interval_secs > 0).then(|| {
            tokio::spawn(run_purge_job(
                self.services.provisioning.clone(),
                self.catalog.clock().clone(),
                seconds(self.config.purge_interval_secs),
                self.passes.clone(),
                until_stopped(stopped.clone()),
            ))
        });
        let prune = (self.config.audit_prune_interval_secs > 0
            && self.config.audit_retention_days > 0)
            .then(|| {
                tokio::spawn(crate::service::run_audit_prune_job(
                    self.services.audit.clone(),
                    chrono::Duration::days(i64::from(self.config.audit_retention_days)),
                    seconds(self.config.audit_prune_interval_secs),
                    self.passes.clone(),
                    until_stopped(stopped.clone()),
                ))
            });
        let follower = {
            let catalog = self.catalog.clone();
            let stop = until_stopped(stopped.clone());
            tokio::spawn(async move { catalog.follow_changes(stop).await })
        };
        let measure = (self.config.storage_measure_interval_secs > 0).then(|| {
            tokio::spawn(self.services.quotas.clone().run_storage_job(
                seconds(self.config.storage_measure_interval_secs),
                self.passes.clone(),
                until_stopped(stopped.clone()),
            ))
        });
        let drift = (self.config.drift_check_interval_secs > 0).then(|| {
            tokio::spawn(self.services.drifts.clone().run_job(
                seconds(self.config.drift_check_interval_secs),
                self.passes.clone(),
                until_stopped(stopped.clone()),
            ))
        });
        let (release_leases, leases_stop) = tokio::sync::oneshot::channel::<()>();
        let leases = tokio::spawn(self.services.quotas.clone().run_lease_job(
            self.passes.clone(),
            async {
                let _ = leases_stop.await;
            },
        ));
        // Stop accepting and drain RPCs, then stop background work, then close the pool.
        let served = grpc::serve(
            listener,
            self.services,
            security,
            until_stopped(stopped),
            self.config.shutdown_grace(),
        )
        .await;
        if let Err(e) = worker.await {
            tracing::warn!(error = %e, "rollout worker ended abnormally");
        }
        if let Some(purge) = purge
            && let Err(e) = purge.await
        {
            tracing::warn!(error = %e, "purge job ended abnormally");
        }
        // Leases are given back once nothing can take one any more.
        let _ = release_leases.send(());
        match metrics.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics endpoint failed"),
            Err(e) => tracing::warn!(error = %e, "metrics endpoint ended abnormally"),
        }
        for (what, task) in [
            ("audit pruning", prune),
            ("change follower", Some(follower)),
            ("storage measuring", measure),
            ("drift checking", drift),
            ("quota leases", Some(leases)),
        ] {
            if let Some(task) = task
                && let Err(e) = task.await
            {
                tracing::warn!(error = %e, "{what} ended abnormally");
            }
        }
        if let Err(e) = self.catalog.close().await {
            tracing::warn!(error = %e, "closing the catalog pool");
        }
        tracing::info!("stopped");
        Ok(served?)
    }
}

/// A job's interval of `secs` seconds (a setting), as the clock counts it.
fn seconds(secs: u64) -> chrono::TimeDelta {
    i64::try_from(secs)
        .ok()
        .and_then(chrono::TimeDelta::try_seconds)
        .unwrap_or(chrono::TimeDelta::MAX)
}
