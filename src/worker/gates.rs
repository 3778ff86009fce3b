//! The gatekeeper's gates: a deployment waiting for promotion moves on once its commit
//! succeeded where it is promoted from, and one waiting for promotion or approval ends
//! cancelled when its time is up. (Approvals move a deployment on as they are recorded;
//! checks are read from GitHub by the GitHub side.)

use std::sync::Arc;

use super::{BOT_ACTOR, Worker};
use crate::config::GateConfig;
use crate::deploy::service::blocking;
use crate::deploy::{
    self as deploy, AuditEvent, DeployState, Deployment, Error, WaitKind, WaitingFor, gates,
};

/// Where a push goes once no lock or freeze holds it: the first gate that holds it, or
/// None to run.
pub(super) fn first_gate(
    config: &GateConfig,
    environment: &str,
    d: &Deployment,
) -> Option<WaitingFor> {
    let requested_by = gates::requested_by(d);
    let facts = gates::Facts {
        kind: d.kind,
        noop: d.noop,
        commit_sha: "",
        requested_by: &requested_by,
        environment,
    };
    gates::next(None, config, &facts, deploy::now())
}

/// How one look at a gate left a deployment.
enum Resolved {
    /// It moved on to its next gate, or may run (true).
    Moved(bool),
    /// It ended: its gate can no longer open.
    Ended,
    Unchanged,
}

impl Worker {
    /// Looks at each deployment waiting for promotion or approval; returns how many may
    /// run now, and whether any changed.
    pub(super) async fn resolve_gates(&self, waiting: &[Deployment]) -> (usize, bool) {
        let (mut runnable, mut changed) = (0, false);
        for d in waiting {
            match self.resolve_gate(d).await {
                Ok(Resolved::Moved(runs)) => {
                    changed = true;
                    runnable += usize::from(runs);
                }
                Ok(Resolved::Ended) => changed = true,
                Ok(Resolved::Unchanged) => {}
                Err(e) => {
                    tracing::warn!(deployment = %d.id, error = %e, "cannot look at the deployment's gate")
                }
            }
        }
        (runnable, changed)
    }

    async fn resolve_gate(&self, d: &Deployment) -> Result<Resolved, Error> {
        let Some(waiting) = d.waiting_for.clone() else {
            return Ok(Resolved::Unchanged);
        };
        let store = Arc::clone(&self.store);
        let (t, instance_id, release_id) = (d.tenant_id.clone(), d.instance_id, d.release_id);
        let (instance, release) = blocking(move || {
            Ok((
                store.get_instance(&t, instance_id)?,
                store.get_release(&t, release_id)?,
            ))
        })
        .await?;
        let Some(spec) = self.catalog.spec(&d.tenant_id, &instance.name) else {
            return Ok(Resolved::Unchanged);
        };
        let config = &spec.control.gates;
        let now = deploy::now();
        let requested_by = gates::requested_by(d);
        let facts = gates::Facts {
            kind: d.kind,
            noop: d.noop,
            commit_sha: &release.commit_sha,
            requested_by: &requested_by,
            environment: &instance.environment,
        };
        if waiting.kind == WaitKind::Promotion {
            let from = config.promote_from.clone().unwrap_or_default();
            let store = Arc::clone(&self.store);
            let (t, repo, f, sha) = (
                d.tenant_id.clone(),
                instance.repo.clone(),
                from.clone(),
                release.commit_sha.clone(),
            );
            let promoted =
                !sha.is_empty() && blocking(move || store.promoted(&t, &repo, &f, &sha)).await?;
            if promoted {
                let next = gates::next(Some(WaitKind::Promotion), config, &facts, now);
                tracing::info!(deployment = %d.id, instance = %instance.name, from = %from, "promoted: the commit succeeded where it is promoted from");
                return self.advance(d, WaitKind::Promotion, next).await;
            }
            // Moved here from a lock or a freeze, its reason did not know the commit yet.
            let mut named = gates::waiting_at(WaitKind::Promotion, config, &facts, now);
            named.until = waiting.until;
            if named.reason != waiting.reason && !gates::timed_out(&waiting, now) {
                return self.advance(d, WaitKind::Promotion, Some(named)).await;
            }
        }
        if !gates::timed_out(&waiting, now) {
            return Ok(Resolved::Unchanged);
        }
        let short: String = release.commit_sha.chars().take(7).collect();
        let reason = match waiting.kind {
            WaitKind::Promotion => format!(
                "promotion timed out: {short} did not succeed on {} within {}",
                config.promote_from.as_deref().unwrap_or_default(),
                humantime::format_duration(config.promotion_timeout)
            ),
            _ => format!(
                "approval expired: not approved within {} ({})",
                humantime::format_duration(config.approval_timeout),
                waiting.describe()
            ),
        };
        self.end(d, waiting.kind, DeployState::Cancelled, reason)
            .await
    }

    async fn advance(
        &self,
        d: &Deployment,
        from: WaitKind,
        next: Option<WaitingFor>,
    ) -> Result<Resolved, Error> {
        let store = Arc::clone(&self.store);
        let (t, id) = (d.tenant_id.clone(), d.id);
        let runs = next.is_none();
        let moved = blocking(move || store.advance_waiting(&t, id, from, next.as_ref())).await?;
        Ok(match moved {
            Some(_) => Resolved::Moved(runs),
            None => Resolved::Unchanged,
        })
    }

    async fn end(
        &self,
        d: &Deployment,
        from: WaitKind,
        state: DeployState,
        reason: String,
    ) -> Result<Resolved, Error> {
        let event = AuditEvent::new(&d.tenant_id, BOT_ACTOR, "gate.expired", reason.clone());
        let store = Arc::clone(&self.store);
        let (t, id) = (d.tenant_id.clone(), d.id);
        let ended =
            blocking(move || store.end_waiting(&t, id, from, state, &reason, &event)).await?;
        Ok(match ended {
            Some(ended) => {
                tracing::info!(deployment = %ended.id, reason = %ended.error, "a gate can no longer open: the deployment ended");
                Resolved::Ended
            }
            None => Resolved::Unchanged,
        })
    }
}
