//! Quotas: the limited resources, their kinds and windows, and the arithmetic of a decision.
//!
//! A COUNTER counts use per fixed window (the UTC day for `messages_per_day`): windows are
//! aligned to the Unix epoch, so every replica agrees where one ends without talking to the
//! others. A GAUGE is a level that rises and falls (users, storage bytes) and has no window.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Error;

const MAX_RESOURCE_BYTES: usize = 63;
/// The longest window a plan may give a counter: 366 days.
pub const MAX_WINDOW_SECS: i64 = 366 * 86_400;

/// A resource name such as `messages_per_day`: a-z, 0-9 and '_', starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Resource(String);

impl Resource {
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= MAX_RESOURCE_BYTES
            && text.as_bytes()[0].is_ascii_lowercase()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(format!(
                "'{text}' is not a resource name (1 to {MAX_RESOURCE_BYTES} of a-z, 0-9 and '_', starting with a letter)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Resource {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<Resource> for String {
    fn from(r: Resource) -> Self {
        r.0
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a resource's use is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaKind {
    /// Counted per window of this many seconds.
    Counter,
    /// A level, without a window.
    Gauge,
}

/// What a resource is: its kind and, for a counter, its window in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metering {
    Counter { window_secs: i64 },
    Gauge,
}

impl Metering {
    pub fn kind(self) -> QuotaKind {
        match self {
            Self::Counter { .. } => QuotaKind::Counter,
            Self::Gauge => QuotaKind::Gauge,
        }
    }

    pub fn window_secs(self) -> Option<i64> {
        match self {
            Self::Counter { window_secs } => Some(window_secs),
            Self::Gauge => None,
        }
    }

    /// Start of the window holding `now` (Unix seconds); 0 for a gauge.
    pub fn window_start(self, now: i64) -> i64 {
        match self {
            Self::Counter { window_secs } if window_secs > 0 => now - now.rem_euclid(window_secs),
            _ => 0,
        }
    }
}

/// The resources every tenant has, with their fixed metering.
pub const WELL_KNOWN: [(&str, Metering); 4] = [
    (
        "api_calls_per_minute",
        Metering::Counter { window_secs: 60 },
    ),
    (
        "messages_per_day",
        Metering::Counter {
            window_secs: 86_400,
        },
    ),
    ("storage_bytes", Metering::Gauge),
    ("users", Metering::Gauge),
];

pub fn well_known(resource: &str) -> Option<Metering> {
    WELL_KNOWN
        .iter()
        .find(|(name, _)| *name == resource)
        .map(|(_, m)| *m)
}

/// A plan's limit for one resource. `limit` -1 is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLimit {
    pub resource: Resource,
    pub limit: i64,
    pub metering: Metering,
}

/// How plan limits are kept in the catalog (a JSON list).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredLimit {
    resource: Resource,
    limit: i64,
    kind: QuotaKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_secs: Option<i64>,
}

impl PlanLimit {
    /// Checks a limit as a client sent it; `field` is the path of the limit in the request.
    pub fn new(
        resource: &str,
        limit: i64,
        kind: Option<QuotaKind>,
        window_secs: Option<i64>,
        field: &str,
    ) -> Result<Self, Error> {
        let resource = Resource::parse(resource)
            .map_err(|why| Error::invalid(format!("{field}.resource"), why))?;
        if limit < -1 {
            return Err(Error::invalid(
                format!("{field}.limit"),
                "must be -1 (unlimited) or more",
            ));
        }
        let Some(kind) = kind else {
            return Err(Error::invalid(
                format!("{field}.kind"),
                "must be COUNTER or GAUGE",
            ));
        };
        let metering = match (kind, window_secs) {
            (QuotaKind::Gauge, None) => Metering::Gauge,
            (QuotaKind::Gauge, Some(_)) => {
                return Err(Error::invalid(
                    format!("{field}.window"),
                    "must be unset for a GAUGE",
                ));
            }
            (QuotaKind::Counter, Some(secs)) if (1..=MAX_WINDOW_SECS).contains(&secs) => {
                Metering::Counter { window_secs: secs }
            }
            (QuotaKind::Counter, _) => {
                return Err(Error::invalid(
                    format!("{field}.window"),
                    format!("a COUNTER needs a window of whole seconds, 1s to {MAX_WINDOW_SECS}s"),
                ));
            }
        };
        if let Some(fixed) = well_known(resource.as_str())
            && fixed != metering
        {
            return Err(Error::invalid(
                field.to_owned(),
                format!("'{resource}' is well-known: its kind and window are fixed"),
            ));
        }
        Ok(Self {
            resource,
            limit,
            metering,
        })
    }

    /// Encodes a plan's limits for the catalog.
    pub fn encode(limits: &[PlanLimit]) -> serde_json::Value {
        let stored: Vec<StoredLimit> = limits
            .iter()
            .map(|l| StoredLimit {
                resource: l.resource.clone(),
                limit: l.limit,
                kind: l.metering.kind(),
                window_secs: l.metering.window_secs(),
            })
            .collect();
        serde_json::to_value(stored).unwrap_or_default()
    }

    /// Decodes a plan's limits from the catalog. Entries that no longer parse are skipped with
    /// a warning rather than making the plan unusable.
    pub fn decode(value: &serde_json::Value) -> Vec<PlanLimit> {
        // Catalogs written before plans had kinds and windows kept a map resource -> limit of
        // well-known resources only.
        if let Some(map) = value.as_object() {
            return map
                .iter()
                .filter_map(|(name, limit)| {
                    Some(PlanLimit {
                        resource: Resource::parse(name).ok()?,
                        limit: limit.as_i64()?.max(-1),
                        metering: well_known(name)?,
                    })
                })
                .collect();
        }
        let stored: Vec<StoredLimit> = match serde_json::from_value(value.clone()) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, "a plan's stored limits do not parse; treated as none");
                return Vec::new();
            }
        };
        let mut limits: Vec<PlanLimit> = stored
            .into_iter()
            .filter_map(|s| {
                let metering = match (s.kind, s.window_secs) {
                    (QuotaKind::Counter, Some(w)) if w > 0 => Metering::Counter { window_secs: w },
                    (QuotaKind::Gauge, _) => Metering::Gauge,
                    _ => return None,
                };
                Some(PlanLimit {
                    resource: s.resource,
                    limit: s.limit.max(-1),
                    metering,
                })
            })
            .collect();
        limits.sort_by(|a, b| a.resource.cmp(&b.resource));
        limits
    }
}

/// A tenant's effective limit on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: i64,
    pub metering: Metering,
}

impl Quota {
    pub fn unlimited(self) -> bool {
        self.limit < 0
    }

    /// Whether `used + amount` stays within the limit.
    pub fn admits(self, used: i64, amount: i64) -> bool {
        self.unlimited() || used.saturating_add(amount) <= self.limit
    }

    pub fn remaining(self, used: i64) -> i64 {
        if self.unlimited() {
            -1
        } else {
            (self.limit - used).max(0)
        }
    }
}

/// Every resource a tenant is limited on: the well-known ones, then its plan's, with its own
/// overrides applied. An override changes a limit, never a kind or window, and an override of a
/// resource neither well-known nor named by the plan has nothing to apply to.
pub fn effective_quotas(
    plan: &[PlanLimit],
    overrides: &BTreeMap<String, i64>,
) -> BTreeMap<String, Quota> {
    let mut quotas: BTreeMap<String, Quota> = WELL_KNOWN
        .iter()
        .map(|(name, metering)| {
            (
                (*name).to_owned(),
                Quota {
                    limit: -1,
                    metering: *metering,
                },
            )
        })
        .collect();
    for l in plan {
        quotas.insert(
            l.resource.as_str().to_owned(),
            Quota {
                limit: l.limit,
                metering: l.metering,
            },
        );
    }
    for (resource, limit) in overrides {
        if let Some(q) = quotas.get_mut(resource) {
            q.limit = (*limit).max(-1);
        }
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch() {
        let day = Metering::Counter {
            window_secs: 86_400,
        };
        // 2026-11-23T13:45:00Z
        assert_eq!(day.window_start(1_795_441_500), 1_795_392_000);
        assert_eq!(day.window_start(1_795_392_000), 1_795_392_000);
        assert_eq!(Metering::Gauge.window_start(1_795_441_500), 0);
    }

    #[test]
    fn limits_admit_up_to_and_including_the_limit() {
        let q = Quota {
            limit: 10,
            metering: Metering::Gauge,
        };
        assert!(q.admits(9, 1));
        assert!(!q.admits(10, 1));
        assert!(q.admits(10, 0));
        assert_eq!(q.remaining(12), 0);
        let unlimited = Quota { limit: -1, ..q };
        assert!(unlimited.admits(i64::MAX, 1));
        assert_eq!(unlimited.remaining(5), -1);
    }

    #[test]
    fn well_known_resources_keep_their_metering() {
        let wrong = PlanLimit::new(
            "messages_per_day",
            5,
            Some(QuotaKind::Counter),
            Some(60),
            "plan.limits[0]",
        );
        assert!(wrong.is_err());
        let gauge_with_window = PlanLimit::new("seats", 5, Some(QuotaKind::Gauge), Some(60), "l");
        assert!(gauge_with_window.is_err());
        assert!(
            PlanLimit::new(
                "exports_per_hour",
                5,
                Some(QuotaKind::Counter),
                Some(3600),
                "l"
            )
            .is_ok()
        );
        assert!(PlanLimit::new("Bad", 5, Some(QuotaKind::Gauge), None, "l").is_err());
        assert!(PlanLimit::new("seats", -2, Some(QuotaKind::Gauge), None, "l").is_err());
    }

    #[test]
    fn limits_round_trip_through_the_catalog_encoding() {
        let limits = vec![
            PlanLimit::new(
                "exports_per_hour",
                5,
                Some(QuotaKind::Counter),
                Some(3600),
                "l",
            )
            .unwrap(),
            PlanLimit::new("users", -1, Some(QuotaKind::Gauge), None, "l").unwrap(),
        ];
        assert_eq!(PlanLimit::decode(&PlanLimit::encode(&limits)), limits);
    }

    #[test]
    fn overrides_change_limits_of_known_resources_only() {
        let plan = vec![PlanLimit::new("users", 10, Some(QuotaKind::Gauge), None, "l").unwrap()];
        let overrides = BTreeMap::from([("users".to_owned(), 50), ("nothing".to_owned(), 1)]);
        let quotas = effective_quotas(&plan, &overrides);
        assert_eq!(quotas["users"].limit, 50);
        assert_eq!(quotas["messages_per_day"].limit, -1);
        assert!(!quotas.contains_key("nothing"));
    }
}
