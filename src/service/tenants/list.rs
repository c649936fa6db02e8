//! Listing tenants, page by page (AIP-158).

use super::Tenants;
use super::input::{ListTenantsInput, parse_labels};
use crate::domain::{Error, FieldViolation, PlanName, Tenant, TenantId};
use crate::service::paging::{PageSize, PageToken, fingerprint};
use crate::store::ListQuery;

impl Tenants {
    /// One page of tenants and the token of the next page (empty at the end).
    pub async fn list(&self, input: ListTenantsInput) -> Result<(Vec<Tenant>, String), Error> {
        let mut violations = Vec::new();
        let page_size = PageSize::parse(input.page_size, "page_size")
            .map_err(|e| violations.extend(e.into_violations()))
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
        if let Some((component, _)) = &input.component_version
            && component.is_empty()
        {
            violations.push(FieldViolation::new(
                "component_version.component",
                "is required",
            ));
        }
        let query_print = fingerprint(&format!(
            "{states:?}|{}|{:?}|{}|{:?}",
            input.plan,
            labels.as_map(),
            input.show_deleted,
            input.component_version
        ));
        let token = PageToken::decode(&input.page_token, &query_print, "page_token")
            .map_err(|e| violations.extend(e.into_violations()))
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
            component_version: input.component_version,
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
}
