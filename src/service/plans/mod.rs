//! Plan use cases: list, read, and create-or-update (AIP-134 update with allow_missing).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::idempotency;
use super::paging::Page;
use crate::domain::{
    CallContext, ComponentId, Error, FieldViolation, Isolation, Plan, PlanLimit, PlanName,
};
use crate::store::Catalog;

mod input;

use input::Upsert;
pub use input::{PlanFields, PlanLimitInput, UpsertPlanInput, parse_name};

/// How often an upsert retries when another writer got there first.
const MAX_WRITE_ATTEMPTS: usize = 5;
const UPSERT_METHOD: &str = "tenant.v1.PlanService/UpsertPlan";
/// What every ListPlans page token is bound to: there are no filters, but a token issued by
/// another listing is still refused.
const LIST_QUERY: &str = "tenant.v1.PlanService/ListPlans";

#[derive(Clone)]
pub struct Plans {
    catalog: Catalog,
}

impl Plans {
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }

    /// One page of plans, ordered by id, and the token of the next page (empty at the end).
    pub async fn list(
        &self,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Plan>, String), Error> {
        let mut violations = Vec::new();
        let page = Page::parse(
            page_size,
            page_token,
            LIST_QUERY,
            |after| PlanName::parse(after).ok(),
            &mut violations,
        );
        Error::check(violations)?;
        let mut plans = self
            .catalog
            .list_plans(page.after.as_ref(), page.fetch())
            .await?;
        let next = page.finish(&mut plans, |p| p.id.to_string());
        Ok((plans, next))
    }

    pub async fn get(&self, id: &PlanName) -> Result<Plan, Error> {
        self.catalog
            .get_plan(id)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "plan",
                name: format!("plans/{id}"),
            })
    }

    /// Creates the plan from every field of `input`, or changes the fields `input.fields`
    /// names when it exists. A retry with the same request id gets the first answer.
    #[tracing::instrument(skip_all, fields(plan = %input.name))]
    pub async fn upsert(&self, ctx: &CallContext, input: UpsertPlanInput) -> Result<Plan, Error> {
        let request = input.request.clone();
        let upsert = Upsert::check(input, self.catalog.backend())?;
        self.check_registered(&upsert.components).await?;
        let answer = idempotency::once(
            &self.catalog,
            ctx,
            request.as_ref(),
            UPSERT_METHOD,
            // Plans have no UUID; the kept answer names the plan.
            Uuid::nil(),
            || async { self.write(ctx, &upsert).await.map(|p| Answer::from(&p)) },
        )
        .await?;
        answer.into_plan()
    }

    /// Refuses components that are neither compiled nor registered: a plan that listed one
    /// could provision no tenant.
    async fn check_registered(&self, components: &[String]) -> Result<(), Error> {
        let mut violations = Vec::new();
        for (i, id) in components.iter().enumerate() {
            let registered = match ComponentId::parse(id) {
                Ok(id) => id.is_compiled() || self.catalog.get_component(&id).await?.is_some(),
                Err(_) => false,
            };
            if !registered {
                violations.push(FieldViolation::new(
                    format!("plan.components[{i}]"),
                    format!("components/{id} is not registered (CreateComponent first)"),
                ));
            }
        }
        Error::check(violations)
    }

    /// Creates or changes the plan with optimistic concurrency: with an etag, a concurrent
    /// change is the caller's conflict (ABORTED); without one, the change is re-applied to the
    /// fresh row, and a create that lost the race to another becomes an update. A change that
    /// would leave the plan as it is writes nothing, so repeating an upsert keeps the etag.
    async fn write(&self, ctx: &CallContext, upsert: &Upsert) -> Result<Plan, Error> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let Some(current) = self.catalog.get_plan(&upsert.id).await? else {
                if upsert.etag.is_some() {
                    return Err(Error::stale_plan_etag(&upsert.id, false));
                }
                if let Some(created) = self
                    .catalog
                    .insert_plan(ctx, &upsert.new_plan(self.catalog.now()))
                    .await?
                {
                    tracing::info!("plan created");
                    return Ok(created);
                }
                continue;
            };
            if upsert.etag.is_some_and(|e| e != current.etag()) {
                return Err(Error::stale_plan_etag(&upsert.id, true));
            }
            let changed = upsert.apply(&current);
            if changed.same_settings(&current) {
                return Ok(current);
            }
            match self
                .catalog
                .save_plan(ctx, &changed, current.revision)
                .await?
            {
                Some(saved) => {
                    tracing::info!(revision = saved.revision, "plan changed");
                    return Ok(saved);
                }
                None if upsert.etag.is_some() => {
                    return Err(Error::stale_plan_etag(&upsert.id, true));
                }
                None => continue,
            }
        }
        Err(Error::Aborted {
            reason: "CONCURRENT_UPDATE",
            message: format!("plans/{} is being changed concurrently; retry", upsert.id),
        })
    }
}

/// An upsert's answer as kept with its request id, so a retry gets exactly the first answer
/// even after later changes to the plan.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    id: String,
    display_name: String,
    default_isolation: Option<String>,
    limits: serde_json::Value,
    #[serde(default)]
    components: Vec<String>,
    revision: i64,
    /// RFC 3339, to the nanosecond.
    create_time: String,
    update_time: String,
}

impl From<&Plan> for Answer {
    fn from(p: &Plan) -> Self {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        Self {
            id: p.id.to_string(),
            display_name: p.display_name.clone(),
            default_isolation: p.default_isolation.map(|i| i.as_str().to_owned()),
            limits: PlanLimit::encode(&p.limits),
            components: p.components.clone(),
            revision: p.revision,
            create_time: time(p.create_time),
            update_time: time(p.update_time),
        }
    }
}

impl Answer {
    fn into_plan(self) -> Result<Plan, Error> {
        let corrupt =
            |what: &str| Error::Internal(format!("kept UpsertPlan answer has an invalid {what}"));
        let time = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| corrupt("time"))
        };
        let default_isolation = match self.default_isolation.as_deref() {
            None => None,
            Some(text) => Some(Isolation::parse(text).ok_or_else(|| corrupt("isolation"))?),
        };
        Ok(Plan {
            id: PlanName::parse(&self.id).map_err(|_| corrupt("id"))?,
            display_name: self.display_name,
            default_isolation,
            limits: PlanLimit::decode(&self.limits),
            components: self.components,
            revision: self.revision,
            create_time: time(&self.create_time)?,
            update_time: time(&self.update_time)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::QuotaKind;

    #[test]
    fn a_kept_answer_gives_back_the_same_plan() {
        let now = Utc::now();
        let plan = Plan {
            id: PlanName::parse("pro").unwrap(),
            display_name: "Pro".into(),
            default_isolation: Some(Isolation::Database),
            limits: vec![
                PlanLimit::new(
                    "exports_per_hour",
                    3,
                    Some(QuotaKind::Counter),
                    Some(3600),
                    "l",
                )
                .unwrap(),
                PlanLimit::new("users", 3, Some(QuotaKind::Gauge), None, "l").unwrap(),
            ],
            components: vec!["sample".into(), "billing".into()],
            revision: 7,
            create_time: now,
            update_time: now,
        };
        let kept = serde_json::to_value(Answer::from(&plan)).unwrap();
        let answer: Answer = serde_json::from_value(kept).unwrap();
        assert_eq!(answer.into_plan().unwrap(), plan);
    }
}
