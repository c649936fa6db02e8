//! The one error type of every use case. `grpc::status` maps it to gRPC codes and details.

/// One invalid request field, named by its path in the request (e.g. `tenant.slug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// One resource a consumption would take over its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaViolation {
    pub resource: String,
    pub description: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request is malformed; every offending field is listed.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// The resource is in a state that does not allow the operation.
    #[error("{message}")]
    FailedPrecondition { subject: String, message: String },
    /// Optimistic concurrency: the caller's etag is not the current one.
    #[error("{message}")]
    /// `reason` is the ErrorInfo reason: ETAG_MISMATCH, CONCURRENT_UPDATE, REQUEST_IN_PROGRESS.
    Aborted {
        reason: &'static str,
        message: String,
    },
    /// A push that a component's registered history refuses (a changed migration, a version
    /// before the latest, a gap). `reason` is the ErrorInfo reason (MIGRATION_CHANGED,
    /// VERSION_BEFORE_LATEST, MIGRATION_MISSING) with `metadata`; each violation names a
    /// migration (`components/{c}/migrations/{v}`) and says why.
    #[error("{message}")]
    HistoryConflict {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
        violations: Vec<(String, String)>,
    },
    /// A tenant migration failed; the tenant was left at `version`, its previous version.
    #[error("tenant migration failed ({message}); the tenant is left at version {}", .version.as_deref().unwrap_or("none"))]
    MigrationFailed {
        message: String,
        version: Option<String>,
    },
    /// Consuming would exceed a quota; nothing was consumed. `retry_after` is the time until
    /// the earliest reset of an exhausted counter (none when only gauges are exhausted).
    #[error("quota exhausted for {subject}: {}", .violations.iter().map(|v| v.description.as_str()).collect::<Vec<_>>().join("; "))]
    QuotaExhausted {
        subject: String,
        violations: Vec<QuotaViolation>,
        retry_after: Option<std::time::Duration>,
    },
    /// The caller brought no credentials, or ones that are not valid. `reason` is the
    /// ErrorInfo reason: CREDENTIALS_MISSING or CREDENTIALS_INVALID.
    #[error("{message}")]
    Unauthenticated {
        reason: &'static str,
        message: String,
    },
    /// The caller is known but may not do this (its role, or another tenant's resource).
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0} is not implemented yet")]
    Unimplemented(String),
    /// The catalog database cannot be reached; retrying later may work.
    #[error("catalog unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected database answer. The text is logged, never sent to callers.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// Turns collected violations into an error, or `Ok` when there are none.
    pub fn check(violations: Vec<FieldViolation>) -> Result<(), Self> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Self::InvalidArgument(violations))
        }
    }

    /// The field violations of an INVALID_ARGUMENT error; any other error as one violation
    /// without a field, so collecting several checks loses nothing.
    pub fn into_violations(self) -> Vec<FieldViolation> {
        match self {
            Self::InvalidArgument(found) => found,
            other => vec![FieldViolation::new("", other.to_string())],
        }
    }

    /// What a tenant key asking about another tenant is told, whether that tenant exists or
    /// not.
    pub fn other_tenant() -> Self {
        Self::PermissionDenied("an API key reaches only its own tenant".into())
    }

    /// The caller's etag is not the tenant's current one.
    pub fn stale_etag(slug: impl std::fmt::Display) -> Self {
        Self::Aborted {
            reason: "ETAG_MISMATCH",
            message: format!("etag mismatch: tenant {slug} has changed; read it again"),
        }
    }

    /// The caller's etag is not the plan's current one, or names a plan that does not exist.
    pub fn stale_plan_etag(plan: impl std::fmt::Display, exists: bool) -> Self {
        let why = if exists {
            "has changed; read it again"
        } else {
            "does not exist, so no etag can match it"
        };
        Self::Aborted {
            reason: "ETAG_MISMATCH",
            message: format!("etag mismatch: plan {plan} {why}"),
        }
    }

    pub fn tenant_not_found(name: impl Into<String>) -> Self {
        Self::NotFound {
            kind: "tenant",
            name: name.into(),
        }
    }
}
