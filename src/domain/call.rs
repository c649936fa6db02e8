//! Who makes a call, under which request id, and the audit row it owes: the [`CallContext`]
//! every mutating use case takes as a parameter.
//!
//! ## Why explicit
//! The audit row of a change must commit in the change's transaction. When the actor, the
//! request id and the row travelled in task-locals, a store write made from a spawned task (or
//! any future polled outside the RPC's task) found no row to write and silently left the change
//! unaudited. A context passed by hand cannot be lost that way: a use case that changes
//! something takes `&CallContext`, the store's audit functions take it too, and code that
//! forgets it does not compile.
//!
//! The gRPC layers fill a call's context in ([`CallContext::rpc`]); background jobs (the purge
//! job, rollout workers, audit retention) act under [`CallContext::system`], which writes no
//! audit row, as before.

use std::fmt;
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::clock::Clock;

use super::TenantId;

/// A caller's role. As a command-line value it is `admin` or `service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerRole {
    /// Everything.
    Admin,
    /// Resolution, quotas, reading tenants, plans, members and migration status, Envoy checks.
    Service,
}

impl CallerRole {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "admin" => Some(Self::Admin),
            "service" => Some(Self::Service),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }
}

/// A named holder of a role: a bearer token's owner, or a client certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: CallerRole,
    pub name: String,
}

/// Who makes a call, as the audit log names it. Cheap to make (an `Arc` clone at most); the
/// text ([`fmt::Display`]) is written only when an audit row is.
#[derive(Debug, Clone)]
pub enum Actor {
    /// `system`: a background job, or a call that passed through no authentication layer.
    System,
    /// `anonymous`: authentication is off, or the call brought no credentials.
    Anonymous,
    /// `unauthenticated`: the call brought credentials that were refused.
    Unauthenticated,
    /// `<role>:<name>`: a bearer token's owner.
    Token(Arc<Principal>),
    /// `cert:<subject>`: a client certificate.
    Certificate(Arc<Principal>),
    /// `api-key:<key id>`: a tenant API key.
    ApiKey(Uuid),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::Anonymous => f.write_str("anonymous"),
            Self::Unauthenticated => f.write_str("unauthenticated"),
            Self::Token(p) => write!(f, "{}:{}", p.role.as_str(), p.name),
            Self::Certificate(p) => write!(f, "cert:{}", p.name),
            Self::ApiKey(key) => write!(f, "api-key:{key}"),
        }
    }
}

/// The audit row one call of an audited RPC owes, while the call runs. Shared between the
/// call's context (the use case writes the row with its change) and the layer that completes
/// the row when the call has ended (a refusal, or a success that changed nothing).
#[derive(Debug)]
pub struct AuditRow {
    id: Uuid,
    action: &'static str,
    /// The tenant the call turned out to be about, for a row written without a change. A std
    /// mutex: only ever held to copy a value, never across an await.
    tenant: Mutex<Option<TenantId>>,
    replayed: AtomicBool,
    /// A success was recorded in the transaction of a change. Every store function that records
    /// one commits that transaction or fails the call, so a call that succeeds has its row.
    recorded: AtomicBool,
    /// The server's clock: the row's time is read from it when the row is written.
    clock: Clock,
}

impl AuditRow {
    /// The row of a call of `action` ("tenant.v1.TenantService/CreateTenant"), its id a
    /// UUIDv7 chosen now, as the call starts; its time read from `clock` when it is written.
    pub fn new(action: &'static str, clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            id: Uuid::now_v7(),
            action,
            clock,
            tenant: Mutex::new(None),
            replayed: AtomicBool::new(false),
            recorded: AtomicBool::new(false),
        })
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn action(&self) -> &'static str {
        self.action
    }

    /// The time the row says, when it is written: now, by the server's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The tenant noted with [`CallContext::note_tenant`], if any.
    pub fn tenant(&self) -> Option<TenantId> {
        self.tenant.lock().map_or(None, |t| *t)
    }

    /// Whether the call was answered with the first answer to its AIP-155 request id.
    pub fn is_replayed(&self) -> bool {
        self.replayed.load(Ordering::Relaxed)
    }

    /// Whether the row was sent with a change whose transaction the call commits.
    pub fn is_recorded(&self) -> bool {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Notes that the row went with a change (its statement succeeded).
    pub fn mark_recorded(&self) {
        self.recorded.store(true, Ordering::Relaxed);
    }
}

/// Who makes a call, under which request id, and the audit row it owes, if any. Passed by
/// reference to every use case that changes something; cloning it is cheap (the row is shared).
#[derive(Debug, Clone)]
pub struct CallContext {
    request_id: String,
    actor: Actor,
    audit: Option<Arc<AuditRow>>,
}

impl CallContext {
    /// The context of an RPC: its request id, its actor and, for an audited RPC, its row.
    pub fn rpc(request_id: impl Into<String>, actor: Actor, audit: Option<Arc<AuditRow>>) -> Self {
        Self {
            request_id: request_id.into(),
            actor,
            audit,
        }
    }

    /// The context of a background job (purge, rollout work, audit retention): actor
    /// `system`, a fresh request id, and no audit row — jobs act on what audited calls asked
    /// for, and those calls have their rows.
    pub fn system() -> Self {
        Self {
            request_id: Uuid::now_v7().to_string(),
            actor: Actor::System,
            audit: None,
        }
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The row the call owes; `None` for a call that is not audited.
    pub fn audit(&self) -> Option<&Arc<AuditRow>> {
        self.audit.as_ref()
    }

    /// Notes the tenant the call is about, for its row if it is written without a change (a
    /// refusal). No-op for a call that is not audited.
    pub fn note_tenant(&self, id: TenantId) {
        if let Some(row) = &self.audit
            && let Ok(mut tenant) = row.tenant.lock()
        {
            *tenant = Some(id);
        }
    }

    /// Notes that the call is answered with the first answer to its AIP-155 request id: it
    /// changes nothing and gets no row of its own. No-op for a call that is not audited.
    pub fn replayed(&self) {
        if let Some(row) = &self.audit {
            row.replayed.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_as_the_audit_log_names_them() {
        let principal = |role, name: &str| {
            Arc::new(Principal {
                role,
                name: name.to_owned(),
            })
        };
        let cases = [
            (Actor::System, "system"),
            (Actor::Anonymous, "anonymous"),
            (Actor::Unauthenticated, "unauthenticated"),
            (
                Actor::Token(principal(CallerRole::Admin, "ops")),
                "admin:ops",
            ),
            (
                Actor::Certificate(principal(CallerRole::Service, "CN=edge")),
                "cert:CN=edge",
            ),
            (
                Actor::ApiKey(Uuid::nil()),
                "api-key:00000000-0000-0000-0000-000000000000",
            ),
        ];
        for (actor, text) in cases {
            assert_eq!(actor.to_string(), text);
        }
    }

    #[test]
    fn a_context_and_its_clones_share_one_row() {
        let row = AuditRow::new(
            "tenant.v1.TenantService/CreateTenant",
            crate::clock::Clock::system(),
        );
        let ctx = CallContext::rpc("req-1", Actor::Anonymous, Some(Arc::clone(&row)));
        let moved = ctx.clone();
        let tenant = TenantId::new();
        std::thread::spawn(move || {
            moved.note_tenant(tenant);
            moved.replayed();
        })
        .join()
        .expect("the thread ran");
        assert_eq!(row.tenant(), Some(tenant));
        assert!(row.is_replayed());
        assert!(!row.is_recorded());
        assert_eq!(ctx.request_id(), "req-1");
    }

    #[test]
    fn the_system_context_owes_no_row() {
        let ctx = CallContext::system();
        assert!(ctx.audit().is_none());
        assert_eq!(ctx.actor().to_string(), "system");
        ctx.note_tenant(TenantId::new());
        ctx.replayed();
    }
}
