//! The audit log's use cases: list its events (AuditService.ListAuditEvents), and complete the
//! row of a call that has ended (for the gRPC layer). What is recorded, and how a row commits
//! with its change, is told in `store::audit`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::paging::Page;
use super::tenants::{TenantRef, load};
use crate::domain::{CallContext, Error, FieldViolation};
use crate::store::{AuditEvent, AuditQuery, Catalog};

/// Longest actor accepted as a filter: the longest the log stores.
const MAX_ACTOR: usize = 256;
/// Longest action accepted as a filter: the longest the log stores.
const MAX_ACTION: usize = 128;

/// What ListAuditEvents takes, as the caller sent it.
#[derive(Debug, Clone, Default)]
pub struct ListAuditEventsInput {
    /// "tenants/{id}" or "tenants/{slug}"; empty for every tenant (and none).
    pub tenant: String,
    pub actor: String,
    /// An audited RPC, "tenant.v1.TenantService/CreateTenant"; empty for all.
    pub action: String,
    /// Events at or after this time.
    pub start_time: Option<DateTime<Utc>>,
    /// Events before this time.
    pub end_time: Option<DateTime<Utc>>,
    pub page_size: i32,
    pub page_token: String,
    /// Problems the transport already found (an unknown action, an invalid timestamp).
    pub violations: Vec<FieldViolation>,
}

#[derive(Clone)]
pub struct AuditLog {
    catalog: Catalog,
}

impl AuditLog {
    /// The audit row a call of `action` owes; its time is read from the catalog's clock.
    pub fn row(&self, action: &'static str) -> std::sync::Arc<crate::domain::AuditRow> {
        crate::domain::AuditRow::new(action, self.catalog.clock().clone())
    }

    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }

    /// One page of events, newest first, and the next page's token (empty at the end).
    pub async fn list(
        &self,
        input: ListAuditEventsInput,
    ) -> Result<(Vec<AuditEvent>, String), Error> {
        let mut violations = input.violations;
        let tenant = (!input.tenant.is_empty())
            .then(|| {
                TenantRef::parse(&input.tenant, "tenant")
                    .map_err(|e| violations.extend(e.into_violations()))
                    .ok()
            })
            .flatten();
        if input.actor.chars().count() > MAX_ACTOR {
            violations.push(FieldViolation::new(
                "actor",
                format!("must be at most {MAX_ACTOR} characters"),
            ));
        }
        if input.action.chars().count() > MAX_ACTION {
            violations.push(FieldViolation::new(
                "action",
                format!("must be at most {MAX_ACTION} characters"),
            ));
        }
        if let (Some(start), Some(end)) = (input.start_time, input.end_time)
            && end <= start
        {
            violations.push(FieldViolation::new("end_time", "must be after start_time"));
        }
        let micros = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros());
        let query = format!(
            "audit|{}|{}|{}|{:?}|{:?}",
            input.tenant,
            input.actor,
            input.action,
            micros(input.start_time),
            micros(input.end_time)
        );
        let page = Page::parse(
            input.page_size,
            &input.page_token,
            &query,
            parse_cursor,
            &mut violations,
        );
        Error::check(violations)?;
        let tenant = match tenant {
            Some(TenantRef::Id(id)) => Some(id),
            // A slug names the tenant that has it now; its events are found by its id.
            Some(slug) => Some(load(&self.catalog, &slug).await?.id),
            None => None,
        };
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let mut events = self
            .catalog
            .list_audit_events(&AuditQuery {
                tenant,
                actor: non_empty(input.actor),
                action: non_empty(input.action),
                start: input.start_time,
                end: input.end_time,
                before: page.after,
                limit: page.fetch(),
            })
            .await?;
        let next = page.finish(&mut events, |e| cursor(e.time, e.id));
        Ok((events, next))
    }

    /// Completes the row of the call of `ctx`, which ended with `outcome` (a google.rpc.Code
    /// name); see [`Catalog::finish_audit`]. A failure to write is logged: the call's answer
    /// stands.
    pub async fn finish(&self, ctx: &CallContext, outcome: &str, message: Option<&str>) {
        if let Err(error) = self.catalog.finish_audit(ctx, outcome, message).await {
            tracing::error!(%error, outcome, "writing the audit event of a call");
        }
    }
}

/// Deletes, every `interval` by the catalog's clock until `stop` completes, the audit rows
/// older than `retention` by that clock (a first pass at once). A failed pass is logged and
/// tried again at the next.
pub async fn run_audit_prune_job(
    audit: AuditLog,
    retention: chrono::Duration,
    interval: chrono::TimeDelta,
    passes: super::JobPasses,
    stop: impl std::future::Future<Output = ()>,
) {
    let clock = audit.catalog.clock().clone();
    let pass = || async {
        match audit.catalog.prune_audit(clock.now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "audit events past their retention deleted"),
            Err(error) => tracing::warn!(%error, "audit pruning failed; retrying next time"),
        }
    };
    super::jobs::run_every(
        super::Job::AuditPrune,
        &clock,
        interval,
        true,
        &passes,
        stop,
        pass,
    )
    .await;
}

/// Where a page ends: the last event's time (microseconds) and id.
fn cursor(time: DateTime<Utc>, id: Uuid) -> String {
    format!("{}/{id}", time.timestamp_micros())
}

fn parse_cursor(text: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = text.split_once('/')?;
    let time = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((time, Uuid::try_parse(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_to_the_microsecond() {
        let time = DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(parse_cursor(&cursor(time, id)), Some((time, id)));
        for bad in ["", "12", "x/y", "12/not-a-uuid", &format!("x/{id}")] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
