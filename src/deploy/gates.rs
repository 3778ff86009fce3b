//! The gates a deployment passes after locks and freezes, in order: promotion (the commit
//! was deployed to the environment it is promoted from), checks (its check runs and commit
//! statuses are green) and approval (other deployers approved it). A deployment waits at
//! the first gate that holds it; `waiting_for` names that gate, and whoever resolves a gate
//! moves the deployment on to the next one, or lets it run after the last.

use chrono::{DateTime, Utc};

use super::control::ApprovalState;
use super::{DeployKind, Deployment, WaitKind, WaitingFor};
use crate::config::{GateConfig, plural};

/// The gates after locks and freezes, in the order a deployment passes them.
pub const ORDER: [WaitKind; 3] = [WaitKind::Promotion, WaitKind::Checks, WaitKind::Approval];

/// What the gates need to know of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts<'a> {
    pub kind: DeployKind,
    pub noop: bool,
    /// The commit it deploys (empty when it names none).
    pub commit_sha: &'a str,
    /// `@alice` or `token:ci`: who asked for it.
    pub requested_by: &'a str,
    /// The instance's GitHub environment.
    pub environment: &'a str,
}

/// Whether `gate` holds a deployment with these facts at all. A dry run changes nothing,
/// so no gate holds it; a rollback is recovery, so only `rollback_approvals` does.
pub fn applies(gate: WaitKind, gates: &GateConfig, facts: &Facts<'_>) -> bool {
    if facts.noop {
        return false;
    }
    let deploy = facts.kind == DeployKind::Deploy;
    match gate {
        WaitKind::Promotion => deploy && gates.promote_from.is_some(),
        WaitKind::Checks => deploy && !gates.required_checks.is_empty(),
        WaitKind::Approval => approvals_needed(gates, facts.kind) > 0,
        WaitKind::Lock | WaitKind::Freeze => false,
    }
}

/// How many approvals a deployment of `kind` needs.
pub fn approvals_needed(gates: &GateConfig, kind: DeployKind) -> u32 {
    match kind {
        DeployKind::Deploy => gates.approvals,
        DeployKind::Rollback => gates.rollback_approvals,
    }
}

/// The first gate after `after` (None: from the first) that holds the deployment, as the
/// `waiting_for` it gets at `now`; None when no gate is left and it may run.
pub fn next(
    after: Option<WaitKind>,
    gates: &GateConfig,
    facts: &Facts<'_>,
    now: DateTime<Utc>,
) -> Option<WaitingFor> {
    let start = after
        .and_then(|kind| ORDER.iter().position(|g| *g == kind))
        .map_or(0, |i| i + 1);
    ORDER[start..]
        .iter()
        .copied()
        .find(|gate| applies(*gate, gates, facts))
        .map(|gate| waiting_at(gate, gates, facts, now))
}

/// The `waiting_for` of a deployment held at `gate` from `now`.
pub fn waiting_at(
    gate: WaitKind,
    gates: &GateConfig,
    facts: &Facts<'_>,
    now: DateTime<Utc>,
) -> WaitingFor {
    let until = |d: std::time::Duration| {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
    };
    let short: String = facts.commit_sha.chars().take(7).collect();
    let commit = if short.is_empty() {
        "the commit".to_string()
    } else {
        short
    };
    match gate {
        WaitKind::Promotion => WaitingFor::new(
            gate,
            format!(
                "{commit} to succeed on {} first",
                gates.promote_from.as_deref().unwrap_or_default()
            ),
            until(gates.promotion_timeout),
        ),
        WaitKind::Checks => {
            WaitingFor::new(gate, checks_reason(gates), until(gates.checks_timeout))
        }
        WaitKind::Approval => {
            let needed = approvals_needed(gates, facts.kind);
            let mut waiting = WaitingFor::new(
                gate,
                format!(
                    "{} by a deployer of {} other than {}",
                    plural(needed, "approval"),
                    facts.environment,
                    facts.requested_by
                ),
                until(gates.approval_timeout),
            );
            waiting.approval = Some(ApprovalState {
                requested_by: facts.requested_by.to_string(),
                approved_by: Vec::new(),
                needed,
            });
            waiting
        }
        WaitKind::Lock | WaitKind::Freeze => WaitingFor::new(gate, String::new(), None),
    }
}

/// "required checks: ci/test, build" or "all checks of the commit".
fn checks_reason(gates: &GateConfig) -> String {
    if gates.all_checks() {
        "all checks of the commit".to_string()
    } else {
        format!("required checks: {}", gates.required_checks.join(", "))
    }
}

/// Who asked for a deployment, as locks and the audit trail name people: as recorded
/// with it, else from its initiator (API and page deployments record a token's name and
/// say so in their trigger; the others a login).
pub fn requested_by(deployment: &Deployment) -> String {
    if !deployment.source.requested_by.is_empty() {
        return deployment.source.requested_by.clone();
    }
    let initiator = deployment.initiator.as_str();
    if deployment.source.trigger.starts_with("API") || deployment.source.trigger.starts_with("page")
    {
        format!("token:{initiator}")
    } else {
        format!("@{}", initiator.to_ascii_lowercase())
    }
}

/// Whether the gate a deployment waits at is past its time at `now`.
pub fn timed_out(waiting: &WaitingFor, now: DateTime<Utc>) -> bool {
    waiting.until.is_some_and(|until| until <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: DeployKind, noop: bool) -> Facts<'static> {
        Facts {
            kind,
            noop,
            commit_sha: "abc1234def",
            requested_by: "@alice",
            environment: "production",
        }
    }

    fn all_gates() -> GateConfig {
        GateConfig {
            approvals: 1,
            promote_from: Some("staging".into()),
            required_checks: vec!["ci/test".into()],
            ..GateConfig::default()
        }
    }

    #[test]
    fn a_deploy_passes_promotion_then_checks_then_approval() {
        let gates = all_gates();
        let f = facts(DeployKind::Deploy, false);
        let now = crate::deploy::now();
        let kinds: Vec<_> = [None, Some(WaitKind::Promotion), Some(WaitKind::Checks)]
            .into_iter()
            .map(|after| next(after, &gates, &f, now).map(|w| w.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                Some(WaitKind::Promotion),
                Some(WaitKind::Checks),
                Some(WaitKind::Approval)
            ]
        );
        assert_eq!(next(Some(WaitKind::Approval), &gates, &f, now), None);
        let approval = next(Some(WaitKind::Checks), &gates, &f, now).unwrap();
        assert_eq!(approval.approval.unwrap().requested_by, "@alice");
        assert_eq!(
            approval.until,
            Some(now + chrono::Duration::hours(1)),
            "approval_timeout defaults to an hour"
        );
    }

    #[test]
    fn rollbacks_and_dry_runs_pass_the_gates_unless_rollback_approvals() {
        let mut gates = all_gates();
        let now = crate::deploy::now();
        assert_eq!(
            next(None, &gates, &facts(DeployKind::Rollback, false), now),
            None
        );
        assert_eq!(
            next(None, &gates, &facts(DeployKind::Deploy, true), now),
            None
        );
        gates.rollback_approvals = 2;
        let held = next(None, &gates, &facts(DeployKind::Rollback, false), now).unwrap();
        assert_eq!(held.kind, WaitKind::Approval);
        assert_eq!(held.approval.unwrap().needed, 2);
    }
}
