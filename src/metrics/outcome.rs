//! How a finished deployment is labelled: the strategy that ran, whether it returned to
//! the previous release and why, and how long that return took.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::CauseLabels;
use crate::deploy::{DeployKind, DeployState, Deployment, DeploymentId};

/// Why a deployment returned to the previous release (the `cause` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackCause {
    /// A health check or metric gate failed while the strategy ran.
    Gate,
    /// A provider step failed (a deploy command exited non-zero, timed out, …).
    Failure,
    /// A metric gate failed during the watch after the deployment succeeded.
    Watch,
    /// A person's or the API's rollback.
    Manual,
}

impl RollbackCause {
    pub const ALL: [RollbackCause; 4] = [
        RollbackCause::Gate,
        RollbackCause::Failure,
        RollbackCause::Watch,
        RollbackCause::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RollbackCause::Gate => "gate",
            RollbackCause::Failure => "failure",
            RollbackCause::Watch => "watch",
            RollbackCause::Manual => "manual",
        }
    }

    /// The cause of a finished deployment's return to the previous release; `None` when it
    /// did not return to one (it succeeded, failed without a restore, or was cancelled).
    /// A succeeded rollback is `manual`, or `watch` when deploybot queued it itself after a
    /// watch failed; a deployment that ended `rolled_back` is `watch` when the failing
    /// gate measured during its watch, `gate` when a gate failed, `failure` otherwise.
    pub fn of(d: &Deployment) -> Option<RollbackCause> {
        match (d.kind, d.state) {
            (DeployKind::Rollback, DeployState::Succeeded) if is_automatic(d) => {
                Some(RollbackCause::Watch)
            }
            (DeployKind::Rollback, DeployState::Succeeded) => Some(RollbackCause::Manual),
            (DeployKind::Deploy, DeployState::RolledBack) => Some(rolled_back_cause(d)),
            _ => None,
        }
    }
}

/// What ended a deployment `rolled_back`: a failing gate reading taken during the watch,
/// any failing gate reading or health check, or else a provider step.
fn rolled_back_cause(d: &Deployment) -> RollbackCause {
    let failed = d.gates.iter().find(|g| !g.passed);
    if failed.is_some_and(|g| g.at.contains("watch")) || d.error.contains(" at watch") {
        return RollbackCause::Watch;
    }
    if failed.is_some() || d.error.starts_with("health check failed") {
        return RollbackCause::Gate;
    }
    RollbackCause::Failure
}

/// A rollback deploybot queued itself (after a failed watch): no person asked for it.
fn is_automatic(d: &Deployment) -> bool {
    d.source.requested_by.is_empty()
        && (d.initiator == "deploybot" || d.source.trigger.starts_with("automatic"))
}

/// Every cause shows from the start (at 0), so rates and alerts work at once.
pub(super) fn causes_at_zero() -> Family<CauseLabels, Counter> {
    let family = Family::<CauseLabels, Counter>::default();
    for cause in RollbackCause::ALL {
        drop(family.get_or_create(&CauseLabels {
            cause: cause.as_str(),
        }));
    }
    family
}

/// The `strategy` label: the strategy that ran (`rollback` for every rollback).
pub(super) fn strategy_label(d: &Deployment) -> String {
    match d.kind {
        DeployKind::Rollback => "rollback".to_string(),
        DeployKind::Deploy => d.strategy.clone(),
    }
}

/// Seconds from `from` to `to` (0 when `to` is earlier).
pub(super) fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

/// How long the return to the previous release took: a rollback from its request to its
/// success; a deployment that rolled back from the moment its failure was detected
/// (`detected`, marked while it ran) or, unmarked, from its start, to its end.
pub(super) fn restore_seconds(d: &Deployment, detected: Option<Instant>) -> Option<f64> {
    let finished = d.finished_at?;
    match (d.kind, detected) {
        (DeployKind::Rollback, _) => Some(seconds(d.created_at, finished)),
        (DeployKind::Deploy, Some(at)) => Some(at.elapsed().as_secs_f64()),
        (DeployKind::Deploy, None) => d.started_at.map(|s| seconds(s, finished)),
    }
}

/// The most marks kept: a mark whose deployment never finishes here is dropped in time.
const MARKS: usize = 1024;

/// When each running deployment's failure was detected, until it finishes.
#[derive(Default)]
pub(super) struct Marks(Mutex<VecDeque<(DeploymentId, Instant)>>);

impl Marks {
    /// Marks `id` now (a second mark keeps the first).
    pub(super) fn mark(&self, id: DeploymentId) {
        let Ok(mut marks) = self.0.lock() else { return };
        if marks.iter().any(|(m, _)| *m == id) {
            return;
        }
        if marks.len() >= MARKS {
            marks.pop_front();
        }
        marks.push_back((id, Instant::now()));
    }

    /// The mark of `id`, removed.
    pub(super) fn take(&self, id: DeploymentId) -> Option<Instant> {
        let mut marks = self.0.lock().ok()?;
        let at = marks.iter().position(|(m, _)| *m == id)?;
        marks.remove(at).map(|(_, instant)| instant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::provider::GateReading;
    use crate::deploy::{DeployRequest, InstanceId, Release};

    fn deployment(kind: DeployKind, state: DeployState, error: &str) -> Deployment {
        let request = DeployRequest {
            instance_id: InstanceId::new(),
            image: "ghcr.io/acme/web:1".into(),
            env: Default::default(),
            strategy: String::new(),
            notes: String::new(),
            commit_sha: String::new(),
            params: Default::default(),
            noop: false,
        };
        let release = Release::from_request("acme", &request);
        let mut d = Deployment::pending(&release, "canary", "octocat");
        d.kind = kind;
        d.state = state;
        d.error = error.into();
        d
    }

    fn reading(at: &str, passed: bool) -> GateReading {
        GateReading {
            gate: "error rate".into(),
            value: "0.042".into(),
            bound: "≤ 0.01".into(),
            passed,
            at: at.into(),
        }
    }

    #[test]
    fn a_return_to_the_previous_release_is_counted_by_what_caused_it() {
        use DeployKind::{Deploy, Rollback};
        use DeployState::{Failed, RolledBack, Succeeded};
        let of = |d: &Deployment| RollbackCause::of(d).map(RollbackCause::as_str);
        let mut gate = deployment(Deploy, RolledBack, "error rate 0.042 > 0.01 at canary 50%");
        gate.gates = vec![reading("canary 10%", true), reading("canary 50%", false)];
        assert_eq!(of(&gate), Some("gate"));
        let health = deployment(
            Deploy,
            RolledBack,
            "health check failed: GET /; restored v1",
        );
        assert_eq!(of(&health), Some("gate"));
        let step = deployment(Deploy, RolledBack, "exited with status 3; restored v1");
        assert_eq!(of(&step), Some("failure"));
        let mut watched = deployment(Deploy, RolledBack, "error rate 0.2 > 0.01 at watch");
        watched.gates = vec![reading("watch", false)];
        assert_eq!(of(&watched), Some("watch"));
        assert_eq!(of(&deployment(Rollback, Succeeded, "")), Some("manual"));
        let mut automatic = deployment(Rollback, Succeeded, "");
        automatic.initiator = "deploybot".into();
        assert_eq!(of(&automatic), Some("watch"));
        assert_eq!(
            of(&deployment(Deploy, Failed, "exited with status 3")),
            None
        );
        assert_eq!(of(&deployment(Deploy, Succeeded, "")), None);
        assert_eq!(of(&deployment(Rollback, Failed, "boom")), None);
    }

    #[test]
    fn a_mark_is_taken_once() {
        let marks = Marks::default();
        let id = DeploymentId::new();
        marks.mark(id);
        assert!(marks.take(id).is_some());
        assert!(marks.take(id).is_none());
    }
}
