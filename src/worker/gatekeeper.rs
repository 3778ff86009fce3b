//! The worker's gatekeeper: expires locks, lets waiting deployments run once neither a
//! lock nor a freeze holds their instance, and locks an instance after an automatic
//! rollback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{BOT_ACTOR, Worker};
use crate::deploy::service::blocking;
use crate::deploy::{
    self as deploy, ActiveFreeze, AuditEvent, DeployKind, DeployState, Deployment, Error,
    InstanceId, Lock, LockTarget, Release, WaitKind, WaitingFor,
};

/// How often the gatekeeper looks at locks, freezes and waiting deployments when nothing
/// wakes it.
const GATE_EVERY: Duration = Duration::from_secs(1);

/// The least time between two looks of the gatekeeper, however often it is woken.
const GATE_MIN_GAP: Duration = Duration::from_millis(100);

/// The most waiting deployments the gatekeeper reads at one look.
const GATE_BATCH: u32 = 500;

impl Worker {
    /// The gatekeeper: every second, and whenever the worker is woken (an unlock, a new
    /// deployment), expires the locks whose time is up and lets waiting deployments run
    /// once neither a lock nor a freeze holds their instance. Every replica runs it; each
    /// store call is one transaction, so replicas agree.
    pub(super) async fn gate_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut expired_at: Option<tokio::time::Instant> = None;
        // Subscribed before each look, so a wake meanwhile is not lost.
        let mut notified = Box::pin(self.wake.notified());
        notified.as_mut().enable();
        loop {
            // Expiry is a write: once a second, however often the worker is woken.
            if expired_at.is_none_or(|at| at.elapsed() >= GATE_EVERY) {
                expired_at = Some(tokio::time::Instant::now());
                if let Err(e) = self.expire_locks().await {
                    tracing::warn!(error = %e, "cannot expire locks; retrying");
                }
            }
            if let Err(e) = self.release_waiting().await {
                tracing::warn!(error = %e, "cannot look at waiting deployments; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = notified.as_mut() => {}
                _ = tokio::time::sleep(GATE_EVERY) => {}
            }
            notified = Box::pin(self.wake.notified());
            notified.as_mut().enable();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(GATE_MIN_GAP) => {}
            }
        }
    }

    /// One look of the gatekeeper: expires locks, then lets waiting deployments run;
    /// returns how many it let run.
    pub async fn gate_once(&self) -> Result<usize, Error> {
        self.expire_locks().await?;
        self.release_waiting().await
    }

    /// Removes the locks whose time is up, each recorded in the audit trail in the same
    /// transaction (by the one replica whose transaction removed it).
    async fn expire_locks(&self) -> Result<(), Error> {
        let now = deploy::now();
        let store = Arc::clone(&self.store);
        blocking(move || store.expire_locks(now, &expired_event)).await?;
        Ok(())
    }

    /// Lets the newest waiting deployment of each instance that nothing holds any more
    /// run, and marks the others with what holds them now; returns how many it let run.
    async fn release_waiting(&self) -> Result<usize, Error> {
        let store = Arc::clone(&self.store);
        let waiting = blocking(move || store.waiting_deployments(GATE_BATCH)).await?;
        let mut by_instance: BTreeMap<(String, InstanceId), Vec<Deployment>> = BTreeMap::new();
        let mut at_gates = Vec::new();
        for d in waiting {
            match d.waiting_for.as_ref().map(|w| w.kind) {
                Some(WaitKind::Lock | WaitKind::Freeze) => by_instance
                    .entry((d.tenant_id.clone(), d.instance_id))
                    .or_default()
                    .push(d),
                Some(WaitKind::Promotion | WaitKind::Approval) => at_gates.push(d),
                // Checks are read from GitHub by the GitHub side.
                Some(WaitKind::Checks) | None => {}
            }
        }
        let (mut released, mut changed) = self.resolve_gates(&at_gates).await;
        for ((tenant, instance_id), deployments) in by_instance {
            match self.gate_instance(&tenant, instance_id, &deployments).await {
                Ok(Gated::Released) => {
                    released += 1;
                    changed = true;
                }
                Ok(Gated::Marked) => changed = true,
                Ok(Gated::Unchanged) => {}
                Err(e) => {
                    tracing::warn!(tenant = %tenant, instance = %instance_id, error = %e, "cannot update the instance's waiting deployments")
                }
            }
        }
        if changed {
            // A released deployment can be claimed, and new reports wait in the outbox.
            self.wake.notify_waiters();
        }
        Ok(released)
    }

    /// Lets the instance's newest waiting deployment run when nothing holds it any more,
    /// else marks each with what holds it now.
    async fn gate_instance(
        &self,
        tenant: &str,
        instance_id: InstanceId,
        deployments: &[Deployment],
    ) -> Result<Gated, Error> {
        let store = Arc::clone(&self.store);
        let t = tenant.to_string();
        let (lock, instance) = blocking(move || {
            Ok((
                store.lock_covering(&t, instance_id)?,
                store.get_instance(&t, instance_id)?,
            ))
        })
        .await?;
        let freeze = self
            .catalog
            .freeze_now(tenant, &instance.name, deploy::now());
        match hold(lock.as_ref(), freeze.as_ref()) {
            None => {
                let store = Arc::clone(&self.store);
                let t = tenant.to_string();
                let gates = self
                    .catalog
                    .spec(tenant, &instance.name)
                    .map(|spec| spec.control.gates.clone())
                    .unwrap_or_default();
                let environment = instance.environment.clone();
                let released = blocking(move || {
                    let next = |d: &Deployment| super::gates::first_gate(&gates, &environment, d);
                    store.release_waiting_to(
                        &t,
                        instance_id,
                        &[WaitKind::Lock, WaitKind::Freeze],
                        &next,
                    )
                })
                .await?;
                Ok(match released {
                    Some(d) => {
                        tracing::info!(deployment = %d.id, instance = %instance.name, "nothing holds the instance any more; the newest waiting deployment runs");
                        Gated::Released
                    }
                    None => Gated::Unchanged,
                })
            }
            Some(waiting) => {
                let mut marked = false;
                for d in deployments
                    .iter()
                    .filter(|d| d.waiting_for.as_ref() != Some(&waiting))
                {
                    let store = Arc::clone(&self.store);
                    let (t, id, w) = (tenant.to_string(), d.id, waiting.clone());
                    match blocking(move || store.set_waiting(&t, id, Some(&w))).await {
                        Ok(_) => marked = true,
                        // Claimed, released or cancelled meanwhile.
                        Err(Error::Conflict(_) | Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(if marked {
                    Gated::Marked
                } else {
                    Gated::Unchanged
                })
            }
        }
    }

    /// After an automatic rollback of a deploy: locks the instance against pushes, held by
    /// the bot, when its `lock_on_rollback` says so and no lock covers it yet.
    pub(super) async fn lock_on_rollback(&self, deployment: &Deployment) {
        if deployment.state != DeployState::RolledBack
            || deployment.kind != DeployKind::Deploy
            || deployment.noop
        {
            return;
        }
        let store = Arc::clone(&self.store);
        let d = deployment.clone();
        let loaded = blocking(move || {
            Ok((
                store.get_instance(&d.tenant_id, d.instance_id)?,
                store.get_release(&d.tenant_id, d.release_id)?,
                store.lock_covering(&d.tenant_id, d.instance_id)?,
            ))
        })
        .await;
        let (instance, release, covering) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(deployment = %deployment.id, error = %e, "cannot lock the instance after its rollback");
                return;
            }
        };
        let wanted = self
            .catalog
            .spec(&deployment.tenant_id, &instance.name)
            .is_some_and(|spec| spec.control.lock_on_rollback);
        if !wanted || covering.is_some() {
            return;
        }
        let lock = Lock {
            tenant_id: deployment.tenant_id.clone(),
            target: LockTarget::Instance {
                instance_id: instance.id,
            },
            repo: instance.repo.to_ascii_lowercase(),
            holder: BOT_ACTOR.to_string(),
            reason: rollback_lock_reason(&release, &deployment.error),
            pull_request: None,
            created_at: deploy::now(),
            expires_at: None,
        };
        let store = Arc::clone(&self.store);
        let (name, environment, id) = (
            instance.name.clone(),
            instance.environment.clone(),
            deployment.id,
        );
        let audit = move |taken: &Lock| {
            let mut event = AuditEvent::new(
                &taken.tenant_id,
                BOT_ACTOR,
                "lock.on_rollback",
                format!("{name} ({environment}) {}", taken.describe()),
            );
            if let LockTarget::Instance { instance_id } = taken.target {
                event.instance_id = Some(instance_id);
            }
            event.deployment_id = Some(id);
            event
        };
        let taken = match blocking(move || store.acquire_lock_audited(&lock, &audit)).await {
            Ok(taken) => taken,
            // Someone locked it meanwhile: their lock holds pushes already.
            Err(Error::Locked(_)) => return,
            Err(e) => {
                tracing::warn!(deployment = %deployment.id, error = %e, "cannot lock the instance after its rollback");
                return;
            }
        };
        tracing::info!(deployment = %deployment.id, instance = %instance.name, holder = %taken.holder, "rolled back: instance locked against pushes");
    }
}

/// The audit event of a lock that expired, by the bot.
fn expired_event(lock: &Lock) -> AuditEvent {
    let mut event = AuditEvent::new(
        &lock.tenant_id,
        BOT_ACTOR,
        "lock.expired",
        format!("the lock expired (it was {})", lock.describe()),
    );
    if let LockTarget::Instance { instance_id } = lock.target {
        event.instance_id = Some(instance_id);
    }
    event
}

/// How one look of the gatekeeper left an instance's waiting deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gated {
    /// The newest runs now (the older ones were superseded).
    Released,
    /// What they wait for changed.
    Marked,
    Unchanged,
}

/// What a push waits for while `lock` and `freeze` hold its instance: the lock first,
/// then the freeze; None when nothing holds it.
fn hold(lock: Option<&Lock>, freeze: Option<&ActiveFreeze>) -> Option<WaitingFor> {
    lock.map(Lock::waiting)
        .or_else(|| freeze.map(ActiveFreeze::waiting))
}

/// The reason of the lock an automatic rollback takes: "v3 (abc1234) failed and was rolled
/// back: …", within the longest reason a lock holds.
pub(super) fn rollback_lock_reason(release: &Release, error: &str) -> String {
    let what = if release.commit_sha.is_empty() {
        release.image.clone()
    } else {
        release.commit_sha.chars().take(7).collect()
    };
    let reason = format!(
        "v{} ({what}) failed and was rolled back: {error}",
        release.version
    );
    if reason.chars().count() <= deploy::MAX_REASON_CHARS {
        return reason;
    }
    let mut cut: String = reason.chars().take(deploy::MAX_REASON_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock holds a push before a freeze does; nothing holds it without either.
    #[test]
    fn a_push_waits_for_the_lock_first_then_the_freeze() {
        let now = deploy::now();
        let lock = Lock {
            tenant_id: "acme".into(),
            target: LockTarget::Repo {
                repo: "acme/web".into(),
            },
            repo: "acme/web".into(),
            holder: BOT_ACTOR.into(),
            reason: "v3 (abc1234) failed and was rolled back: exit 1".into(),
            pull_request: None,
            created_at: now,
            expires_at: None,
        };
        let freeze = ActiveFreeze {
            reason: "end-of-year freeze".into(),
            start: now,
            end: now + chrono::TimeDelta::hours(1),
        };
        let by_lock = hold(Some(&lock), Some(&freeze)).unwrap();
        assert_eq!(by_lock.kind, WaitKind::Lock);
        assert!(by_lock.reason.contains("locked by deploybot"));
        let by_freeze = hold(None, Some(&freeze)).unwrap();
        assert_eq!(by_freeze.kind, WaitKind::Freeze);
        assert_eq!(by_freeze.until, Some(freeze.end));
        assert_eq!(hold(None, None), None);
    }

    /// The lock an automatic rollback takes names the version, the commit and the error,
    /// within the longest reason a lock holds.
    #[test]
    fn a_rollback_lock_says_what_failed() {
        let release = Release {
            id: deploy::ReleaseId::new(),
            created_at: deploy::now(),
            updated_at: deploy::now(),
            tenant_id: "acme".into(),
            instance_id: InstanceId::new(),
            version: 3,
            image: "ghcr.io/acme/web:3".into(),
            env: Default::default(),
            notes: String::new(),
            commit_sha: "abc1234def5678".into(),
            active: false,
        };
        assert_eq!(
            rollback_lock_reason(&release, "health: GET /healthz answered 503"),
            "v3 (abc1234) failed and was rolled back: health: GET /healthz answered 503"
        );
        let long = rollback_lock_reason(&release, &"x".repeat(2000));
        assert_eq!(long.chars().count(), deploy::MAX_REASON_CHARS);
        assert!(long.ends_with('…'));
        let without_sha = Release {
            commit_sha: String::new(),
            ..release
        };
        assert!(rollback_lock_reason(&without_sha, "e").starts_with("v3 (ghcr.io/acme/web:3) "));
    }
}
