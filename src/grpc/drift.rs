//! MigrationService.CheckDrift: decode the scope, call the drift use case, encode each
//! tenant's finding.

use tonic::Status;

use super::convert;
use crate::proto;
use crate::service::{
    DriftChange, DriftDifference, DriftObject, DriftScope, Drifts, SelectorInput, TenantDrift,
    TenantRef,
};

pub(super) async fn check_drift(
    drifts: &Drifts,
    request: proto::CheckDriftRequest,
) -> Result<proto::CheckDriftResponse, Status> {
    use proto::check_drift_request::Scope;
    use proto::tenant_selector::Selector as Wire;
    let scope = match request.scope {
        None => {
            return Err(crate::domain::Error::invalid(
                "scope",
                "name a tenant or a selector of tenants to check",
            )
            .into());
        }
        Some(Scope::Tenant(name)) => DriftScope::Tenant(TenantRef::parse(&name, "tenant")?),
        Some(Scope::Selector(selector)) => DriftScope::Selector(match selector.selector {
            None => SelectorInput::Missing,
            Some(Wire::All(all)) => SelectorInput::All(all),
            Some(Wire::Labels(labels)) => {
                SelectorInput::Labels(labels.match_labels.into_iter().collect())
            }
            Some(Wire::Tenants(list)) => SelectorInput::Tenants(list.tenants),
        }),
    };
    let summary = drifts.check(scope, request.drifted_only).await?;
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(proto::CheckDriftResponse {
        checked_count: count(summary.checked),
        drifted_count: count(summary.drifted),
        failed_count: count(summary.failed),
        tenants: summary.tenants.into_iter().map(tenant_drift).collect(),
    })
}

fn tenant_drift(drift: TenantDrift) -> proto::TenantDrift {
    let drifted = drift.drifted();
    let mut wire = proto::TenantDrift {
        tenant: drift.tenant,
        slug: drift.slug,
        drifted,
        check_time: Some(convert::timestamp(drift.check_time)),
        ..Default::default()
    };
    match drift.outcome {
        Ok(checked) => {
            wire.differences = checked
                .differences
                .iter()
                .map(|d| d.description.clone())
                .collect();
            wire.difference_details = checked.differences.into_iter().map(difference).collect();
            wire.expected_fingerprint = checked.expected_fingerprint;
            wire.actual_fingerprint = checked.actual_fingerprint;
        }
        Err(error) => wire.error = error,
    }
    wire
}

fn difference(found: DriftDifference) -> proto::DriftDifference {
    let change = match found.change {
        DriftChange::Extra => proto::DriftChange::Extra,
        DriftChange::Missing => proto::DriftChange::Missing,
        DriftChange::Changed => proto::DriftChange::Changed,
    };
    let object = match found.object {
        DriftObject::Table => proto::DriftObject::Table,
        DriftObject::Column => proto::DriftObject::Column,
        DriftObject::Index => proto::DriftObject::Index,
        DriftObject::Constraint => proto::DriftObject::Constraint,
        DriftObject::Policy => proto::DriftObject::Policy,
        DriftObject::Trigger => proto::DriftObject::Trigger,
        DriftObject::Function => proto::DriftObject::Function,
    };
    proto::DriftDifference {
        change: change as i32,
        object: object as i32,
        table: found.table,
        name: found.name,
        aspect: found.aspect,
        actual: found.actual,
        expected: found.expected,
        component: found.component.unwrap_or_default(),
        description: found.description,
    }
}
