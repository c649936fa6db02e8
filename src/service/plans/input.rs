//! What the plan use cases take, as callers sent it, and the checks that turn it into an
//! [`Upsert`].
//!
//! An upsert is checked whole before anything is read: every field of the request is
//! validated, whether the plan turns out to exist or not, so the answer to a malformed request
//! does not depend on a race with another writer.

use std::collections::BTreeMap;

use crate::domain::SAMPLE;
use crate::domain::{
    ComponentId, Error, Etag, FieldViolation, Isolation, Plan, PlanLimit, PlanName, QuotaKind,
};
use crate::service::tenants::{IsolationInput, RequestKey, check_display_name};
use crate::store::Backend;

/// Limits one plan may set. Every quota decision on a tenant of the plan walks them, and the
/// well-known resources plus a plan's own counters come nowhere near this.
const MAX_LIMITS: usize = 100;

/// A plan limit as a caller sent it, before it is checked.
#[derive(Debug, Clone)]
pub struct PlanLimitInput {
    pub resource: String,
    pub limit: i64,
    /// `None` when the caller left the kind unspecified (or sent one this server does not know).
    pub kind: Option<QuotaKind>,
    pub window_secs: Option<i64>,
}

/// The fields an upsert changes when the plan already exists (its update mask).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanFields {
    pub display_name: bool,
    pub default_isolation: bool,
    pub limits: bool,
    pub components: bool,
}

impl PlanFields {
    /// Every mutable field: the update mask "*".
    pub const ALL: Self = Self {
        display_name: true,
        default_isolation: true,
        limits: true,
        components: true,
    };
}

/// An UpsertPlan as the caller sent it.
#[derive(Debug, Clone)]
pub struct UpsertPlanInput {
    /// The plan's resource name, "plans/{plan_id}".
    pub name: String,
    /// Empty, or the final segment of `name`.
    pub plan_id: String,
    /// Empty means the plan id.
    pub display_name: String,
    pub default_isolation: IsolationInput,
    pub limits: Vec<PlanLimitInput>,
    /// The components the plan's tenants get; empty on a new plan means the compiled one.
    pub components: Vec<String>,
    pub fields: PlanFields,
    /// Empty, or the etag the plan must still have.
    pub etag: String,
    pub request: Option<RequestKey>,
    /// Problems the transport already found (e.g. an unknown update mask path); reported
    /// together with the ones found here, so the caller sees every invalid field at once.
    pub violations: Vec<FieldViolation>,
}

/// Parses a plan's resource name, "plans/{plan_id}".
pub fn parse_name(name: &str, field: &str) -> Result<PlanName, Error> {
    let id = name
        .strip_prefix("plans/")
        .ok_or_else(|| Error::invalid(field, "must be \"plans/{plan_id}\""))?;
    PlanName::parse(id).map_err(|why| Error::invalid(field, format!("the plan id {why}")))
}

/// A checked upsert: the plan's values, and which of them to change if it exists.
#[derive(Debug, Clone)]
pub(super) struct Upsert {
    pub(super) id: PlanName,
    display_name: String,
    default_isolation: Option<Isolation>,
    limits: Vec<PlanLimit>,
    pub(super) components: Vec<String>,
    fields: PlanFields,
    pub(super) etag: Option<Etag>,
}

impl Upsert {
    /// Checks `input` for a catalog on `backend`, reporting every invalid field at once.
    pub(super) fn check(mut input: UpsertPlanInput, backend: Backend) -> Result<Self, Error> {
        let mut violations = std::mem::take(&mut input.violations);
        let id = if input.name.is_empty() {
            violations.push(FieldViolation::new("plan.name", "is required"));
            None
        } else {
            parse_name(&input.name, "plan.name")
                .map_err(|e| violations.extend(e.into_violations()))
                .ok()
        };
        if let Some(id) = &id
            && !input.plan_id.is_empty()
            && input.plan_id != id.as_str()
        {
            violations.push(FieldViolation::new(
                "plan.plan_id",
                format!("must be empty or match plan.name ('{id}')"),
            ));
        }
        check_display_name(&input.display_name, "plan.display_name", &mut violations);
        let default_isolation = match input.default_isolation {
            IsolationInput::Unspecified => None,
            IsolationInput::Known(i) => Some(i),
            IsolationInput::Unknown(n) => {
                violations.push(FieldViolation::new(
                    "plan.default_isolation",
                    format!("unknown isolation {n}"),
                ));
                None
            }
        };
        if matches!(
            default_isolation,
            Some(Isolation::Schema | Isolation::Shared)
        ) && backend == Backend::Sqlite
        {
            // Every tenant created on the plan without an isolation would be refused.
            violations.push(FieldViolation::new(
                "plan.default_isolation",
                "schema and shared isolation need PostgreSQL; the embedded SQLite catalog offers database isolation",
            ));
        }
        let limits = check_limits(&input.limits, &mut violations);
        let components = check_components(&input.components, &mut violations);
        let etag = (!input.etag.is_empty())
            .then(|| {
                Etag::parse(&input.etag).ok_or_else(|| {
                    violations.push(FieldViolation::new(
                        "plan.etag",
                        "is not an etag issued by this service",
                    ))
                })
            })
            .and_then(Result::ok);
        Error::check(violations)?;
        let Some(id) = id else {
            return Err(Error::Internal(
                "validated upsert input has no plan id".into(),
            ));
        };
        Ok(Self {
            display_name: if input.display_name.is_empty() {
                id.to_string()
            } else {
                input.display_name
            },
            id,
            default_isolation,
            limits,
            components,
            fields: input.fields,
            etag,
        })
    }

    /// The plan to create when there is none: every field, whatever the mask says.
    pub(super) fn new_plan(&self, now: chrono::DateTime<chrono::Utc>) -> Plan {
        Plan {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            default_isolation: self.default_isolation,
            limits: self.limits.clone(),
            components: if self.components.is_empty() {
                vec![SAMPLE.to_owned()]
            } else {
                self.components.clone()
            },
            revision: 1,
            create_time: now,
            update_time: now,
        }
    }

    /// `current` with the masked fields replaced.
    pub(super) fn apply(&self, current: &Plan) -> Plan {
        let mut changed = current.clone();
        if self.fields.display_name {
            changed.display_name = self.display_name.clone();
        }
        if self.fields.default_isolation {
            changed.default_isolation = self.default_isolation;
        }
        if self.fields.limits {
            changed.limits = self.limits.clone();
        }
        if self.fields.components {
            changed.components = self.components.clone();
        }
        changed
    }
}

/// Checks each component id's form (a DNS label), and that none is listed twice. Whether each
/// is registered is checked against the catalog afterwards.
fn check_components(ids: &[String], violations: &mut Vec<FieldViolation>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let field = format!("plan.components[{i}]");
        if let Err(why) = ComponentId::parse(id) {
            violations.push(FieldViolation::new(field, why));
        } else if seen.contains(id) {
            violations.push(FieldViolation::new(
                field,
                format!("'{id}' is listed twice"),
            ));
        } else {
            seen.push(id.clone());
        }
    }
    seen
}

/// Checks each limit, and that no resource is limited twice. The result is ordered by
/// resource, as the catalog returns it.
fn check_limits(inputs: &[PlanLimitInput], violations: &mut Vec<FieldViolation>) -> Vec<PlanLimit> {
    if inputs.len() > MAX_LIMITS {
        violations.push(FieldViolation::new(
            "plan.limits",
            format!("a plan has at most {MAX_LIMITS} limits"),
        ));
    }
    let mut first_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut limits = Vec::new();
    for (i, l) in inputs.iter().enumerate() {
        let field = format!("plan.limits[{i}]");
        match PlanLimit::new(&l.resource, l.limit, l.kind, l.window_secs, &field) {
            Ok(limit) => match first_of.get(limit.resource.as_str()) {
                Some(first) => violations.push(FieldViolation::new(
                    format!("{field}.resource"),
                    format!(
                        "'{}' is already limited by plan.limits[{first}]; a plan has one limit per resource",
                        limit.resource
                    ),
                )),
                None => {
                    first_of.insert(limit.resource.as_str().to_owned(), i);
                    limits.push(limit);
                }
            },
            Err(e) => violations.extend(e.into_violations()),
        }
    }
    limits.sort_by(|a, b| a.resource.cmp(&b.resource));
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(resource: &str, kind: QuotaKind, window_secs: Option<i64>) -> PlanLimitInput {
        PlanLimitInput {
            resource: resource.into(),
            limit: 5,
            kind: Some(kind),
            window_secs,
        }
    }

    fn input(name: &str) -> UpsertPlanInput {
        UpsertPlanInput {
            name: name.into(),
            plan_id: String::new(),
            display_name: String::new(),
            default_isolation: IsolationInput::Unspecified,
            limits: Vec::new(),
            components: Vec::new(),
            fields: PlanFields::default(),
            etag: String::new(),
            request: None,
            violations: Vec::new(),
        }
    }

    fn fields_of(error: Error) -> Vec<String> {
        error
            .into_violations()
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn names_must_be_plans_slash_an_id() {
        assert_eq!(parse_name("plans/pro", "name").unwrap().as_str(), "pro");
        assert!(parse_name("pro", "name").is_err());
        assert!(parse_name("plans/Pro", "name").is_err());
        assert!(parse_name("plans/", "name").is_err());
    }

    #[test]
    fn a_resource_limited_twice_is_reported_at_its_second_place() {
        let mut violations = Vec::new();
        let limits = check_limits(
            &[
                limit("users", QuotaKind::Gauge, None),
                limit("exports_per_hour", QuotaKind::Counter, Some(3600)),
                limit("users", QuotaKind::Gauge, None),
            ],
            &mut violations,
        );
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "plan.limits[2].resource");
        let names: Vec<_> = limits.iter().map(|l| l.resource.as_str()).collect();
        assert_eq!(names, ["exports_per_hour", "users"]);
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let mut bad = input("plans/pro");
        bad.plan_id = "free".into();
        bad.display_name = "x".repeat(201);
        bad.etag = "W/\"1\"".into();
        bad.default_isolation = IsolationInput::Unknown(9);
        let fields = fields_of(Upsert::check(bad, Backend::Postgres).unwrap_err());
        assert_eq!(
            fields,
            [
                "plan.plan_id",
                "plan.display_name",
                "plan.default_isolation",
                "plan.etag"
            ]
        );
    }

    #[test]
    fn sqlite_plans_cannot_default_to_schema_isolation() {
        let mut schema = input("plans/pro");
        schema.default_isolation = IsolationInput::Known(Isolation::Schema);
        assert!(Upsert::check(schema.clone(), Backend::Postgres).is_ok());
        let fields = fields_of(Upsert::check(schema, Backend::Sqlite).unwrap_err());
        assert_eq!(fields, ["plan.default_isolation"]);
    }

    #[test]
    fn an_empty_display_name_is_the_plan_id() {
        let upsert = Upsert::check(input("plans/pro"), Backend::Sqlite).unwrap();
        assert_eq!(upsert.new_plan(chrono::Utc::now()).display_name, "pro");
    }
}
