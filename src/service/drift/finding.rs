//! What a drift check found, as the API returns it (each difference with the component it is
//! attributed to) and as the catalog records it (the data plane's serialisation with the
//! sentence).

use chrono::{DateTime, Utc};

use crate::dataplane::{Attributed, Difference, Drift};

/// One tenant's check.
#[derive(Debug, Clone)]
pub struct TenantDrift {
    /// `tenants/{id}`.
    pub tenant: String,
    pub slug: String,
    pub check_time: DateTime<Utc>,
    /// What the check found, or why it could not be made.
    pub outcome: Result<Checked, String>,
}

/// What a check that could be made found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Each difference, the schema's functions first, then table by table in name order.
    pub differences: Vec<DriftDifference>,
    pub expected_fingerprint: String,
    pub actual_fingerprint: String,
    /// The differences as the catalog records them: the data plane's (tagged by their kind of
    /// change), with their component and sentence.
    pub(super) recorded: Vec<serde_json::Value>,
}

impl Checked {
    /// The components at least one difference is attributed to, each once.
    pub(super) fn drifted_components(&self) -> Vec<String> {
        let mut components: Vec<String> = self
            .differences
            .iter()
            .filter_map(|d| d.component.clone())
            .collect();
        components.sort();
        components.dedup();
        components
    }
}

/// The kind of object a difference is about.
pub use crate::dataplane::Object as DriftObject;

/// How an object differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftChange {
    /// In the tenant's storage, not in the expected shape.
    Extra,
    /// Expected, not in the tenant's storage.
    Missing,
    /// Both have it; one aspect of it differs.
    Changed,
}

/// One way a tenant's storage differs from the shape its applied migrations produce, field by
/// field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftDifference {
    pub change: DriftChange,
    pub object: DriftObject,
    /// The table the object belongs to (the table itself for a table; empty for a function).
    pub table: String,
    pub name: String,
    /// For a changed object, what of it changed (`type`, `nullability`, `default`,
    /// `definition`, `kind`, `row security`); empty otherwise, as are `actual` and `expected`.
    pub aspect: String,
    pub actual: String,
    pub expected: String,
    /// The component whose migrations made the object's table, or the function; `None` when
    /// none made it.
    pub component: Option<String>,
    /// The difference as a sentence ("extra index messages_tmp_idx on messages").
    pub description: String,
}

impl From<&Attributed> for DriftDifference {
    fn from(found: &Attributed) -> Self {
        let difference = &found.difference;
        let (change, aspect, actual, expected) = match difference {
            Difference::Extra { .. } => (DriftChange::Extra, "", "", ""),
            Difference::Missing { .. } => (DriftChange::Missing, "", "", ""),
            Difference::Changed {
                what,
                actual,
                expected,
                ..
            } => (
                DriftChange::Changed,
                what.as_str(),
                actual.as_str(),
                expected.as_str(),
            ),
        };
        Self {
            change,
            object: difference.object(),
            table: difference.table().to_owned(),
            name: difference.name().to_owned(),
            aspect: aspect.to_owned(),
            actual: actual.to_owned(),
            expected: expected.to_owned(),
            component: found.component.clone(),
            description: difference.to_string(),
        }
    }
}

/// A difference as the catalog records it: the data plane's serialisation with the sentence.
#[derive(serde::Serialize)]
struct Recorded<'a> {
    #[serde(flatten)]
    found: &'a Attributed,
    description: String,
}

fn recorded(found: &Attributed) -> serde_json::Value {
    let description = found.difference.to_string();
    // Strings, booleans and maps of them: serialising cannot fail; were it to, the sentence
    // alone is kept.
    serde_json::to_value(Recorded {
        found,
        description: description.clone(),
    })
    .unwrap_or(serde_json::Value::String(description))
}

impl TenantDrift {
    pub fn drifted(&self) -> bool {
        self.outcome
            .as_ref()
            .is_ok_and(|checked| !checked.differences.is_empty())
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct DriftSummary {
    /// Tenants checked, in id order (only drifted and failed ones when asked so).
    pub tenants: Vec<TenantDrift>,
    pub checked: u32,
    pub drifted: u32,
    pub failed: u32,
}

pub(super) fn finding(drift: Drift) -> Checked {
    Checked {
        differences: drift
            .differences
            .iter()
            .map(DriftDifference::from)
            .collect(),
        recorded: drift.differences.iter().map(recorded).collect(),
        expected_fingerprint: drift.expected,
        actual_fingerprint: drift.actual,
    }
}
