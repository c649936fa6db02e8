//! Rollouts: migrating many tenants to one version, and the rules that decide when a rollout
//! halts or ends. Pure, so the rules are unit-tested here.

use chrono::{DateTime, Utc};

use super::{Labels, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RolloutState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Halted,
    Cancelled,
}

impl RolloutState {
    pub const ACTIVE: [Self; 2] = [Self::Pending, Self::Running];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Halted => "HALTED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Halted,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }
}

/// Where one tenant of a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetState {
    Pending,
    Running,
    Migrated,
    Skipped,
    Failed,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Migrated => "MIGRATED",
            Self::Skipped => "SKIPPED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Migrated,
            Self::Skipped,
            Self::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Keep going; the rollout ends FAILED if any tenant failed.
    Continue,
    /// Stop starting tenants once the failure ratio exceeds the threshold.
    Halt,
}

impl ErrorPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Continue => "CONTINUE",
            Self::Halt => "HALT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Continue, Self::Halt]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Which tenants a rollout covers, evaluated once when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    Labels(Labels),
    Tenants(Vec<TenantId>),
}

/// Targets by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RolloutCounts {
    pub pending: u32,
    pub running: u32,
    pub migrated: u32,
    pub skipped: u32,
    pub failed: u32,
}

impl RolloutCounts {
    pub fn total(&self) -> u32 {
        self.pending + self.running + self.migrated + self.skipped + self.failed
    }

    /// Targets that have reached an end state.
    pub fn finished(&self) -> u32 {
        self.migrated + self.skipped + self.failed
    }

    pub fn add(&mut self, state: TargetState, n: u32) {
        let slot = match state {
            TargetState::Pending => &mut self.pending,
            TargetState::Running => &mut self.running,
            TargetState::Migrated => &mut self.migrated,
            TargetState::Skipped => &mut self.skipped,
            TargetState::Failed => &mut self.failed,
        };
        *slot += n;
    }

    /// The number of targets in `state`.
    pub fn get(&self, state: TargetState) -> u32 {
        match state {
            TargetState::Pending => self.pending,
            TargetState::Running => self.running,
            TargetState::Migrated => self.migrated,
            TargetState::Skipped => self.skipped,
            TargetState::Failed => self.failed,
        }
    }

    /// Moves one target from one state to another (for running totals of a watched rollout).
    pub fn shift(&mut self, from: TargetState, to: TargetState) {
        let slot = match from {
            TargetState::Pending => &mut self.pending,
            TargetState::Running => &mut self.running,
            TargetState::Migrated => &mut self.migrated,
            TargetState::Skipped => &mut self.skipped,
            TargetState::Failed => &mut self.failed,
        };
        *slot = slot.saturating_sub(1);
        self.add(to, 1);
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub id: uuid::Uuid,
    /// The component whose migrations the rollout runs, by id.
    pub component: String,
    pub target_version: String,
    pub selector: Selector,
    pub max_concurrency: u32,
    pub canary_count: u32,
    pub error_policy: ErrorPolicy,
    pub max_failure_ratio: f64,
    pub state: RolloutState,
    pub error: Option<String>,
    pub create_time: DateTime<Utc>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub counts: RolloutCounts,
}

/// What a rollout should do next, given its counts.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep claiming targets (only canary targets while `canary_only`).
    Proceed { canary_only: bool },
    /// Stop starting targets; let running ones finish, then end in `state`.
    Stop {
        state: RolloutState,
        reason: Option<String>,
    },
}

impl Rollout {
    /// The rules: canaries first, and a canary failure halts whatever the policy; under HALT, a
    /// failure ratio above the threshold halts; when nothing is left, SUCCEEDED or (any failure)
    /// FAILED. `canary` are the counts among the first `canary_count` targets.
    pub fn verdict(&self, canary: RolloutCounts) -> Verdict {
        let counts = self.counts;
        if canary.failed > 0 {
            return Verdict::Stop {
                state: RolloutState::Halted,
                reason: Some(format!("{} canary tenant(s) failed", canary.failed)),
            };
        }
        if self.error_policy == ErrorPolicy::Halt && counts.failed > 0 {
            let ratio = f64::from(counts.failed) / f64::from(counts.finished().max(1));
            if ratio > self.max_failure_ratio {
                return Verdict::Stop {
                    state: RolloutState::Halted,
                    reason: Some(format!(
                        "{} of {} finished tenants failed, above the allowed ratio {}",
                        counts.failed,
                        counts.finished(),
                        self.max_failure_ratio
                    )),
                };
            }
        }
        if counts.pending == 0 && counts.running == 0 {
            let state = if counts.failed > 0 {
                RolloutState::Failed
            } else {
                RolloutState::Succeeded
            };
            return Verdict::Stop {
                state,
                reason: None,
            };
        }
        Verdict::Proceed {
            canary_only: canary.pending + canary.running > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(policy: ErrorPolicy, ratio: f64, counts: RolloutCounts) -> Rollout {
        Rollout {
            component: "sample".into(),
            id: uuid::Uuid::now_v7(),
            target_version: "v".into(),
            selector: Selector::All,
            max_concurrency: 4,
            canary_count: 2,
            error_policy: policy,
            max_failure_ratio: ratio,
            state: RolloutState::Running,
            error: None,
            create_time: Utc::now(),
            start_time: None,
            end_time: None,
            counts,
        }
    }

    fn counts(pending: u32, running: u32, migrated: u32, failed: u32) -> RolloutCounts {
        RolloutCounts {
            pending,
            running,
            migrated,
            skipped: 0,
            failed,
        }
    }

    #[test]
    fn canaries_go_first_and_a_failed_canary_halts_whatever_the_policy() {
        let r = rollout(ErrorPolicy::Continue, 1.0, counts(8, 2, 0, 0));
        assert_eq!(
            r.verdict(counts(0, 2, 0, 0)),
            Verdict::Proceed { canary_only: true }
        );
        assert_eq!(
            r.verdict(counts(0, 0, 2, 0)),
            Verdict::Proceed { canary_only: false }
        );
        assert!(matches!(
            r.verdict(counts(0, 0, 1, 1)),
            Verdict::Stop {
                state: RolloutState::Halted,
                ..
            }
        ));
    }

    #[test]
    fn halt_stops_above_the_failure_ratio_and_continue_does_not() {
        let halting = rollout(ErrorPolicy::Halt, 0.25, counts(5, 0, 3, 1));
        assert_eq!(
            halting.verdict(RolloutCounts::default()),
            Verdict::Proceed { canary_only: false },
            "1/4 is not above 0.25"
        );
        let over = rollout(ErrorPolicy::Halt, 0.25, counts(5, 0, 2, 1));
        assert!(matches!(
            over.verdict(RolloutCounts::default()),
            Verdict::Stop {
                state: RolloutState::Halted,
                ..
            }
        ));
        let zero = rollout(ErrorPolicy::Halt, 0.0, counts(5, 0, 9, 1));
        assert!(matches!(
            zero.verdict(RolloutCounts::default()),
            Verdict::Stop {
                state: RolloutState::Halted,
                ..
            }
        ));
        let continuing = rollout(ErrorPolicy::Continue, 0.0, counts(5, 0, 0, 5));
        assert_eq!(
            continuing.verdict(RolloutCounts::default()),
            Verdict::Proceed { canary_only: false }
        );
    }

    #[test]
    fn a_rollout_with_nothing_left_ends_by_its_failures() {
        let ok = rollout(
            ErrorPolicy::Continue,
            0.0,
            RolloutCounts {
                skipped: 3,
                migrated: 2,
                ..Default::default()
            },
        );
        assert_eq!(
            ok.verdict(RolloutCounts::default()),
            Verdict::Stop {
                state: RolloutState::Succeeded,
                reason: None
            }
        );
        let failed = rollout(ErrorPolicy::Continue, 0.0, counts(0, 0, 2, 1));
        assert_eq!(
            failed.verdict(RolloutCounts::default()),
            Verdict::Stop {
                state: RolloutState::Failed,
                reason: None
            }
        );
    }

    #[test]
    fn running_totals_shift_between_states() {
        let mut c = counts(2, 0, 0, 0);
        c.shift(TargetState::Pending, TargetState::Running);
        c.shift(TargetState::Running, TargetState::Migrated);
        assert_eq!(c, counts(1, 0, 1, 0));
        assert_eq!(c.total(), 2);
    }
}
