//! The `Service`'s deploy control: locks, freezes, the admission of a request, parameters
//! and the audit trail. Every path (pushes, commands, the API, the CLI, the pages) goes
//! through these methods, so one rule decides everywhere.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::control::{self, Admission, Ask};
use super::service::{Service, blocking};
use super::{
    ActiveFreeze, Actor, AuditEvent, AuditPage, DeployKind, Error, Instance, InstanceId,
    ListOptions, Lock, LockTarget, Origin, TriggeredDeployment, WaitKind, gates,
};

/// The most characters a parameter's value holds.
pub const MAX_PARAM_CHARS: usize = 256;
/// The longest a lock is taken for with a duration; longer is "until unlocked".
pub const MAX_LOCK_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Characters a one-line text from a person may not hold: control characters, and the
/// invisible ones that reorder or hide what a reader sees (bidirectional overrides and
/// isolates, zero-width characters, line and paragraph separators).
pub fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}')
}

/// The most characters a lock's reason holds.
pub const MAX_REASON_CHARS: usize = 500;

impl Service {
    /// The freeze of the named instance in force at `now`, if any.
    pub fn freeze_now(
        &self,
        tenant: &str,
        instance: &str,
        now: DateTime<Utc>,
    ) -> Option<ActiveFreeze> {
        self.catalog.freeze_now(tenant, instance, now)
    }

    /// The next freeze of the named instance to start after `now`, if any.
    pub fn next_freeze(
        &self,
        tenant: &str,
        instance: &str,
        now: DateTime<Utc>,
    ) -> Option<ActiveFreeze> {
        let spec = self.catalog.spec(tenant, instance)?;
        let (_, next) = crate::config::freeze_state(&spec.control.freezes, now);
        next.map(|(w, start, end)| ActiveFreeze {
            reason: w.reason.clone(),
            start,
            end,
        })
    }

    /// The live lock covering an instance (its own, else its repository's).
    pub async fn lock_covering(
        &self,
        tenant: &str,
        instance: InstanceId,
    ) -> Result<Option<Lock>, Error> {
        let store = Arc::clone(&self.store);
        let tenant = tenant.to_string();
        blocking(move || store.lock_covering(&tenant, instance)).await
    }

    /// Marks a push's or a tag's deployment to wait: for a lock (decided by the store as it
    /// is written), for a freeze in force now, else at the first gate that holds it
    /// (promotion, checks, approval; the worker resolves them).
    pub fn hold_for_push(
        &self,
        tenant: &str,
        instance: &Instance,
        triggered: &mut TriggeredDeployment,
    ) {
        triggered.waits_for_locks = true;
        let requested_by = format!("@{}", triggered.deployment.initiator.to_ascii_lowercase());
        triggered.deployment.source.requested_by = requested_by.clone();
        let event = AuditEvent::new(
            tenant,
            &requested_by,
            "deploy",
            requested_detail(instance, triggered),
        );
        triggered.audit.push(event);
        let d = &mut triggered.deployment;
        let now = super::now();
        if let Some(freeze) = self.freeze_now(tenant, &instance.name, now) {
            d.waiting_for = Some(freeze.waiting());
        } else if let Some(spec) = self.catalog.spec(tenant, &instance.name) {
            let facts = facts(instance, &triggered.release.commit_sha, d);
            d.waiting_for = gates::next(None, &spec.control.gates, &facts, now);
        }
    }

    /// Admits a person's request (a command, the API, the CLI, a page): it runs or waits
    /// at a gate, or it is refused with `Error::Locked`, `Error::Frozen` or
    /// `Error::PromotionOrder`. The request, and what `force` passed, are recorded in the
    /// audit trail as the deployment is written; a refusal at once. Unless it passed
    /// another's lock, the deployment is marked to be refused as well by a lock someone
    /// else takes before it is written.
    pub async fn admit(
        &self,
        tenant: &str,
        instance: &Instance,
        triggered: &mut TriggeredDeployment,
        actor: &Actor,
        force: bool,
    ) -> Result<(), Error> {
        let lock = self.lock_covering(tenant, instance.id).await?;
        let freeze = self.freeze_now(tenant, &instance.name, super::now());
        let ask = Ask {
            kind: triggered.deployment.kind,
            noop: triggered.deployment.noop,
            force,
        };
        let admission = control::admit(Origin::Person, actor, ask, lock.as_ref(), freeze.as_ref());
        let passed_a_lock = lock.as_ref().is_some_and(|lock| !actor.holds(lock));
        triggered.lock_holder = (!passed_a_lock).then(|| actor.id.clone());
        triggered.deployment.source.requested_by = actor.id.clone();
        let admitted = match admission {
            Ok(Admission::Run { forced }) => self
                .pass_gates(tenant, instance, triggered)
                .await
                .map(|()| forced),
            Ok(Admission::Wait(_)) => Err(Error::Internal(
                "a person's request was asked to wait".into(),
            )),
            Err(e) => Err(e),
        };
        let refused = match admitted {
            Ok(forced) => {
                self.audit_admitted(tenant, instance, triggered, actor, &forced);
                return Ok(());
            }
            Err(e @ (Error::Unavailable(_) | Error::Internal(_))) => return Err(e),
            Err(e) => e,
        };
        let mut event = AuditEvent::new(
            tenant,
            &actor.id,
            "refused",
            format!(
                "{} of {} refused: {refused}",
                requested_action(triggered),
                instance.name
            ),
        );
        event.instance_id = Some(instance.id);
        self.record_audit(event).await?;
        Err(refused)
    }

    /// The gates of a person's admitted request: refused with `Error::PromotionOrder` when
    /// its commit has not succeeded where it is promoted from; else it waits at the first
    /// later gate that holds it (checks, approval), if any.
    async fn pass_gates(
        &self,
        tenant: &str,
        instance: &Instance,
        triggered: &mut TriggeredDeployment,
    ) -> Result<(), Error> {
        let Some(spec) = self.catalog.spec(tenant, &instance.name) else {
            return Ok(());
        };
        let gates = &spec.control.gates;
        let sha = triggered.release.commit_sha.clone();
        let facts = facts(instance, &sha, &triggered.deployment);
        if gates::applies(WaitKind::Promotion, gates, &facts) {
            let from = gates.promote_from.clone().unwrap_or_default();
            if !self.promoted(tenant, instance, &from, &sha).await? {
                return Err(Error::PromotionOrder(promotion_refusal(
                    instance, &from, &sha,
                )));
            }
        }
        if sha.is_empty() && gates::applies(WaitKind::Checks, gates, &facts) {
            return Err(Error::InvalidRequest(format!(
                "{} requires checks to pass ({}): name the commit to deploy (commit_sha)",
                instance.name,
                gates.required_checks.join(", ")
            )));
        }
        let waiting = gates::next(Some(WaitKind::Promotion), gates, &facts, super::now());
        triggered.deployment.waiting_for = waiting;
        Ok(())
    }

    /// Whether a deployment of commit `sha` succeeded on environment `from` of the
    /// instance's repository.
    pub async fn promoted(
        &self,
        tenant: &str,
        instance: &Instance,
        from: &str,
        sha: &str,
    ) -> Result<bool, Error> {
        if sha.is_empty() {
            return Ok(false);
        }
        let store = Arc::clone(&self.store);
        let (t, repo, from, sha) = (
            tenant.to_string(),
            instance.repo.clone(),
            from.to_string(),
            sha.to_string(),
        );
        blocking(move || store.promoted(&t, &repo, &from, &sha)).await
    }

    /// Queues the audit events of an admitted request with its deployment: what `force`
    /// passed, and the request itself.
    fn audit_admitted(
        &self,
        tenant: &str,
        instance: &Instance,
        triggered: &mut TriggeredDeployment,
        actor: &Actor,
        forced: &[String],
    ) {
        if !forced.is_empty() {
            let detail = format!(
                "{} of {} passed {} with --force",
                triggered.deployment.kind.as_str(),
                instance.name,
                forced.join(" and ")
            );
            triggered
                .audit
                .push(AuditEvent::new(tenant, &actor.id, "force", detail));
        }
        let mut detail = requested_detail(instance, triggered);
        if let Some(waiting) = &triggered.deployment.waiting_for {
            detail.push_str(&format!("; {}", waiting.describe()));
        }
        triggered.audit.push(AuditEvent::new(
            tenant,
            &actor.id,
            requested_action(triggered),
            detail,
        ));
    }

    /// Takes (or renews) the lock on an instance, or with `global` on every instance of its
    /// repository; `Error::Locked` when another holds it.
    #[allow(clippy::too_many_arguments)]
    pub async fn lock(
        &self,
        tenant: &str,
        instance: &Instance,
        global: bool,
        actor: &Actor,
        reason: &str,
        ttl: Option<Duration>,
        pull_request: Option<u64>,
    ) -> Result<Lock, Error> {
        let reason = reason.trim();
        if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(is_hidden_char) {
            return Err(Error::InvalidRequest(format!(
                "the lock's reason is longer than {MAX_REASON_CHARS} characters or holds control or invisible characters: write it as one line of plain text"
            )));
        }
        if ttl.is_some_and(|ttl| ttl > MAX_LOCK_TTL) {
            return Err(Error::InvalidRequest(format!(
                "a lock's duration is at most {} days: lock without a duration to hold it until unlocked",
                MAX_LOCK_TTL.as_secs() / 86_400
            )));
        }
        let now = super::now();
        let expires_at = match ttl {
            None => None,
            Some(ttl) if ttl < Duration::from_secs(1) => {
                return Err(Error::InvalidRequest(
                    "a lock's duration is at least a second: write it like 30m, 2h or 1d".into(),
                ));
            }
            Some(ttl) => Some(
                chrono::Duration::from_std(ttl)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| {
                        Error::InvalidRequest("the lock's duration is too long".into())
                    })?,
            ),
        };
        let lock = Lock {
            tenant_id: tenant.to_string(),
            target: target(instance, global),
            repo: instance.repo.to_ascii_lowercase(),
            holder: actor.id.clone(),
            reason: reason.to_string(),
            pull_request,
            created_at: now,
            expires_at,
        };
        let store = Arc::clone(&self.store);
        let (t, actor_id, scope) = (
            tenant.to_string(),
            actor.id.clone(),
            scope_name(instance, global),
        );
        let instance_id = (!global).then_some(instance.id);
        blocking(move || {
            let audit = |taken: &Lock| {
                let mut event = AuditEvent::new(
                    &t,
                    &actor_id,
                    "lock",
                    format!("{scope} {}", taken.describe()),
                );
                event.instance_id = instance_id;
                event
            };
            store.acquire_lock_audited(&lock, &audit)
        })
        .await
    }

    /// Releases the lock on an instance (or with `global` its repository's); the lock that
    /// was held, if any. The worker then lets the newest waiting push run.
    pub async fn unlock(
        &self,
        tenant: &str,
        instance: &Instance,
        global: bool,
        actor: &Actor,
    ) -> Result<Option<Lock>, Error> {
        let store = Arc::clone(&self.store);
        let (t, target) = (tenant.to_string(), target(instance, global));
        let (actor_id, scope) = (actor.id.clone(), scope_name(instance, global));
        let instance_id = (!global).then_some(instance.id);
        let released = blocking(move || {
            let audit = |lock: &Lock| {
                let detail = format!("{scope} unlocked (it was {})", lock.describe());
                let mut event = AuditEvent::new(&t, &actor_id, "unlock", detail);
                event.instance_id = instance_id;
                event
            };
            store.release_lock_audited(&t, &target, &audit)
        })
        .await?;
        if released.is_some() {
            self.wake.notify_waiters();
        }
        Ok(released)
    }

    /// The tenant's live locks.
    pub async fn locks(&self, tenant: &str) -> Result<Vec<Lock>, Error> {
        let store = Arc::clone(&self.store);
        let tenant = tenant.to_string();
        blocking(move || store.list_locks(&tenant)).await
    }

    /// The live lock on an instance itself (or with `global` on its repository).
    pub async fn get_lock(
        &self,
        tenant: &str,
        instance: &Instance,
        global: bool,
    ) -> Result<Option<Lock>, Error> {
        let store = Arc::clone(&self.store);
        let (tenant, target) = (tenant.to_string(), target(instance, global));
        blocking(move || store.get_lock(&tenant, &target)).await
    }

    /// Releases the live locks taken from pull request `pr` of `repo` (`owner/name`) whose
    /// target `releases` accepts (the instances that set `unlock_on_merge`), records each
    /// as `lock.released_on_merge` by deploybot and wakes the worker, so the newest push
    /// that waited runs. The locks released.
    pub async fn release_pull_locks(
        &self,
        tenant: &str,
        repo: &str,
        pr: u64,
        releases: impl Fn(&LockTarget) -> bool,
    ) -> Result<Vec<Lock>, Error> {
        let held: Vec<Lock> = self
            .locks(tenant)
            .await?
            .into_iter()
            .filter(|l| l.pull_request == Some(pr) && l.repo.eq_ignore_ascii_case(repo))
            .collect();
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let store = Arc::clone(&self.store);
        let tenant_owned = tenant.to_string();
        let (t, r) = (tenant.to_string(), repo.to_string());
        let audit = move |lock: &Lock| {
            let mut event = AuditEvent::new(
                &t,
                "deploybot",
                "lock.released_on_merge",
                format!(
                    "pull request #{pr} of {r} closed: released the lock it took ({})",
                    lock.describe()
                ),
            );
            if let LockTarget::Instance { instance_id } = &lock.target {
                event.instance_id = Some(*instance_id);
            }
            event
        };
        let released = if held.iter().all(|l| releases(&l.target)) {
            let repo = repo.to_string();
            blocking(move || store.release_pull_locks(&tenant_owned, &repo, pr, &audit)).await?
        } else {
            let targets: Vec<LockTarget> = held
                .into_iter()
                .map(|l| l.target)
                .filter(|t| releases(t))
                .collect();
            blocking(move || {
                let mut released = Vec::new();
                for target in targets {
                    // Only the pull request's own lock: another taken meanwhile stays.
                    match store.get_lock(&tenant_owned, &target)? {
                        Some(lock) if lock.pull_request == Some(pr) => {
                            released.extend(store.release_lock_audited(
                                &tenant_owned,
                                &target,
                                &audit,
                            )?);
                        }
                        _ => {}
                    }
                }
                Ok(released)
            })
            .await?
        };
        if !released.is_empty() {
            self.wake.notify_waiters();
        }
        Ok(released)
    }

    /// Records `actor`'s approval of a deployment that waits for approval; once enough
    /// deployers approved, it runs. `Error::NotApproved` (recorded in the audit trail) for
    /// the requester's own approval or a deployment that does not wait for one. Callers
    /// check first that `actor` may deploy the instance.
    pub async fn approve(
        &self,
        tenant: &str,
        id: super::DeploymentId,
        actor: &Actor,
    ) -> Result<super::Deployment, Error> {
        let event = AuditEvent::new(
            tenant,
            &actor.id,
            "approve",
            format!("approved deployment {id}"),
        );
        let store = Arc::clone(&self.store);
        let (t, approver) = (tenant.to_string(), actor.id.clone());
        match blocking(move || store.approve(&t, id, &approver, &event)).await {
            Ok(d) => {
                if d.waiting_for.is_none() {
                    tracing::info!(deployment = %d.id, "approved: the deployment runs");
                    self.wake.notify_waiters();
                }
                Ok(d)
            }
            Err(Error::NotApproved(why)) => {
                let mut event = AuditEvent::new(
                    tenant,
                    &actor.id,
                    "refused",
                    format!("approval of deployment {id} refused: {why}"),
                );
                event.deployment_id = Some(id);
                let store = Arc::clone(&self.store);
                let t = tenant.to_string();
                event.instance_id = blocking(move || store.get_deployment(&t, id))
                    .await
                    .ok()
                    .map(|d| d.instance_id);
                self.record_audit(event).await?;
                Err(Error::NotApproved(why))
            }
            Err(e) => Err(e),
        }
    }

    /// Appends one event to the audit trail.
    pub async fn record_audit(&self, event: AuditEvent) -> Result<(), Error> {
        let store = Arc::clone(&self.store);
        blocking(move || store.record_audit(&event)).await
    }

    /// The tenant's audit trail, newest first.
    pub async fn list_audit(
        &self,
        tenant: &str,
        instance: Option<InstanceId>,
        options: ListOptions,
    ) -> Result<AuditPage, Error> {
        let store = Arc::clone(&self.store);
        let tenant = tenant.to_string();
        blocking(move || store.list_audit(&tenant, instance, &options)).await
    }
}

/// What the gates know of a deployment of `instance` at commit `sha`.
fn facts<'a>(instance: &'a Instance, sha: &'a str, d: &'a super::Deployment) -> gates::Facts<'a> {
    gates::Facts {
        kind: d.kind,
        noop: d.noop,
        commit_sha: sha,
        requested_by: &d.source.requested_by,
        environment: &instance.environment,
    }
}

/// The refusal of a deploy that breaks the promotion order: where to deploy first.
pub fn promotion_refusal(instance: &Instance, from: &str, sha: &str) -> String {
    let short: String = sha.chars().take(7).collect();
    if short.is_empty() {
        return format!(
            "{} ({}) is promoted from {from}: deploy a commit that succeeded on {from}",
            instance.name, instance.environment
        );
    }
    format!(
        "{short} has not been deployed to {from} yet, and {} ({}) only takes commits that succeeded there: deploy {short} to {from} first",
        instance.name, instance.environment
    )
}

/// The audit action of an admitted request: `deploy`, `noop` or `rollback`.
fn requested_action(triggered: &TriggeredDeployment) -> &'static str {
    match (triggered.deployment.kind, triggered.deployment.noop) {
        (DeployKind::Rollback, _) => "rollback",
        (DeployKind::Deploy, true) => "noop",
        (DeployKind::Deploy, false) => "deploy",
    }
}

/// "dry run of web (production) to v4 (ghcr.io/acme/web:4), API (ci)".
fn requested_detail(instance: &Instance, triggered: &TriggeredDeployment) -> String {
    let d = &triggered.deployment;
    let what = match (d.kind, d.noop) {
        (DeployKind::Rollback, _) => "rollback",
        (DeployKind::Deploy, true) => "dry run",
        (DeployKind::Deploy, false) => "deploy",
    };
    let mut line = format!("{what} of {} ({})", instance.name, instance.environment);
    if triggered.new_release {
        line.push_str(&format!(" with {}", d.image));
    } else {
        line.push_str(&format!(" to v{} ({})", triggered.release.version, d.image));
    }
    if !d.params.is_empty() {
        let params: Vec<String> = d.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push_str(&format!(" with {}", params.join(" ")));
    }
    if !d.source.trigger.is_empty() {
        line.push_str(&format!(", {}", d.source.trigger));
    }
    line
}

/// What a lock on `instance` (or with `global` its repository) is kept under.
fn target(instance: &Instance, global: bool) -> LockTarget {
    if global {
        LockTarget::Repo {
            repo: instance.repo.to_ascii_lowercase(),
        }
    } else {
        LockTarget::Instance {
            instance_id: instance.id,
        }
    }
}

fn scope_name(instance: &Instance, global: bool) -> String {
    if global {
        format!("every environment of {}", instance.repo)
    } else {
        format!("{} ({})", instance.name, instance.environment)
    }
}
