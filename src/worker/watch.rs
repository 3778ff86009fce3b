//! The watch after a successful deployment (`watch`): every replica claims open watches
//! from the store and runs each one's metric gates again and again until its window ends,
//! holding it under a lease, so that one replica at a time watches a deployment and
//! another takes the window over when it stops. A gate that fails within the window rolls
//! the deployment back to the previous release; a newer deployment of the instance ends
//! the watch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{BOT_ACTOR, Worker, release_spec};
use crate::deploy::provider::{GatePoint, LogSink, MetricGate, ProviderError, RunContext};
use crate::deploy::service::blocking;
use crate::deploy::{
    self as deploy, AuditEvent, DeployKind, DeployState, Deployment, DeploymentId, Error, Instance,
    InstanceSpec, Lock, LockTarget, Release, WatchFailure,
};

/// How often a replica looks for watches to take when nothing wakes it.
const WATCH_POLL: Duration = Duration::from_secs(1);

/// The most watches a replica claims at one look.
const WATCH_BATCH: u32 = 100;

/// The shortest pause between two rounds of a watched deployment's gates.
const WATCH_PAUSE: Duration = Duration::from_millis(250);

/// How long a stopping replica waits for its watches to let their leases go.
const WATCH_STOP: Duration = Duration::from_secs(5);

/// How a watch ended.
#[derive(Debug)]
enum Watched {
    /// The window passed with every gate passing.
    Passed,
    /// A gate failed: the reason.
    Failed(String),
    /// The lease was lost, or a newer deployment ended the watch.
    Lost,
    /// This replica is stopping.
    Stopping,
}

/// The deployments this replica watches; an entry leaves when its task ends.
struct Watching {
    ids: Arc<Mutex<HashSet<DeploymentId>>>,
    id: DeploymentId,
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Ok(mut ids) = self.ids.lock() {
            ids.remove(&self.id);
        }
    }
}

impl Worker {
    /// When `d` starts a watch as it succeeds: a deploy (not a dry run, not a rollback) of
    /// an instance with `watch` and at least one metric gate; then its window's end.
    pub(super) async fn watch_until(
        &self,
        d: &Deployment,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        if d.state != DeployState::Succeeded || d.kind != DeployKind::Deploy || d.noop {
            return None;
        }
        let store = Arc::clone(&self.store);
        let (tenant, instance) = (d.tenant_id.clone(), d.instance_id);
        let instance = match blocking(move || store.get_instance(&tenant, instance)).await {
            Ok(instance) => instance,
            Err(e) => {
                tracing::warn!(deployment = %d.id, error = %e, "cannot read the instance: no watch after its success");
                return None;
            }
        };
        let spec = self.catalog.spec(&d.tenant_id, &instance.name)?;
        let watch = spec.watch.filter(|_| !spec.gates.is_empty())?;
        Some(deploy::now() + chrono::Duration::from_std(watch).ok()?)
    }

    /// Claims open watches (at start, every second, and whenever the worker is woken) and
    /// runs each in its own task until its window ends; on shutdown lets their leases go,
    /// so another replica takes the windows over at once.
    pub(super) async fn watch_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let ids: Arc<Mutex<HashSet<DeploymentId>>> = Arc::default();
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let store = Arc::clone(&self.store);
            let (owner, lease) = (self.owner.clone(), self.settings.lease);
            match blocking(move || store.claim_watches(&owner, lease, WATCH_BATCH)).await {
                Ok(claimed) => {
                    for d in claimed {
                        let Ok(mut held) = ids.lock() else { continue };
                        if !held.insert(d.id) {
                            continue;
                        }
                        let guard = Watching {
                            ids: Arc::clone(&ids),
                            id: d.id,
                        };
                        let span = tracing::info_span!(
                            "watch",
                            deployment = %d.id,
                            tenant = %d.tenant_id,
                            instance = tracing::field::Empty
                        );
                        let me = Arc::clone(&self);
                        let stop = shutdown.clone();
                        tasks.spawn(
                            async move {
                                me.watch_one(d, stop).await;
                                drop(guard);
                            }
                            .instrument(span),
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim watches; retrying"),
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = &mut notified => {}
                _ = tokio::time::sleep(WATCH_POLL) => {}
            }
        }
        let stopped = tokio::time::timeout(WATCH_STOP, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            tasks.abort_all();
        }
    }

    /// Watches one claimed deployment until its window ends, a gate fails, the watch is
    /// lost or superseded, or this replica stops.
    async fn watch_one(self: Arc<Self>, d: Deployment, shutdown: CancellationToken) {
        let store = Arc::clone(&self.store);
        let key = d.clone();
        let loaded = blocking(move || {
            Ok((
                store.get_instance(&key.tenant_id, key.instance_id)?,
                store.get_release(&key.tenant_id, key.release_id)?,
            ))
        })
        .await;
        let (instance, release) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the watched deployment; letting the watch go");
                self.let_go(&d, false).await;
                return;
            }
        };
        tracing::Span::current().record("instance", instance.name.as_str());
        let spec = self.catalog.spec(&d.tenant_id, &instance.name);
        let Some(spec) = spec.filter(|s| !s.gates.is_empty()) else {
            tracing::info!(instance = %instance.name, "the instance has no metric gates any more; the watch ends");
            self.let_go(&d, true).await;
            return;
        };
        tracing::info!(instance = %instance.name, version = release.version, until = ?d.watch_until, "watching the deployment's metric gates");
        let over = CancellationToken::new();
        let _renewing = super::AbortOnDrop(tokio::spawn(
            Arc::clone(&self).renew_watch(d.clone(), over.clone()),
        ));
        let watched = tokio::select! {
            watched = self.watch_gates(&d, &instance, &release, &spec.gates, &over) => watched,
            _ = shutdown.cancelled() => Watched::Stopping,
        };
        over.cancel();
        match watched {
            Watched::Passed => {
                tracing::info!(instance = %instance.name, "the watch passed");
                self.let_go(&d, false).await;
            }
            Watched::Stopping => self.let_go(&d, false).await,
            Watched::Lost => tracing::info!(
                instance = %instance.name,
                "the watch was taken over or ended by a newer deployment"
            ),
            Watched::Failed(reason) => {
                self.watch_failed(&d, &instance, &release, &spec, &reason)
                    .await;
            }
        }
    }

    /// Runs the gates again and again until the window ends, one fails, or `over` fires.
    async fn watch_gates(
        &self,
        d: &Deployment,
        instance: &Instance,
        release: &Release,
        gates: &[Arc<dyn MetricGate>],
        over: &CancellationToken,
    ) -> Watched {
        let run = RunContext {
            deployment_id: d.id,
            tenant_id: d.tenant_id.clone(),
            instance: instance.name.clone(),
            environment: instance.environment.clone(),
            strategy: d.strategy.clone(),
            release: release_spec(release),
            cancel: over.child_token(),
            log: LogSink::discard(),
            params: d.params.clone(),
            noop: false,
        };
        let at = GatePoint::new("watch", &d.provider_ref, 100, "watch");
        let Some(until) = d.watch_until else {
            return Watched::Passed;
        };
        let left = (until - deploy::now()).to_std().unwrap_or_default();
        let window = tokio::time::sleep(left);
        tokio::pin!(window);
        // Between rounds: the shortest of the gates' intervals, never under WATCH_PAUSE.
        let pause = gates
            .iter()
            .map(|g| g.interval())
            .min()
            .unwrap_or(WATCH_PAUSE)
            .max(WATCH_PAUSE);
        loop {
            let round = async {
                for gate in gates {
                    gate.evaluate(&run, &at, &|_| {}).await?;
                }
                Ok::<(), ProviderError>(())
            };
            tokio::select! {
                biased;
                _ = over.cancelled() => return Watched::Lost,
                _ = &mut window => return Watched::Passed,
                result = round => match result {
                    Ok(()) => {}
                    Err(ProviderError::Cancelled) => return Watched::Lost,
                    Err(e) => return Watched::Failed(e.to_string()),
                },
            }
            tokio::select! {
                biased;
                _ = over.cancelled() => return Watched::Lost,
                _ = &mut window => return Watched::Passed,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Renews the watch's lease until `over` fires; fires `over` when the watch is no
    /// longer this replica's (taken over, superseded, or unrenewable until it expired).
    async fn renew_watch(self: Arc<Self>, d: Deployment, over: CancellationToken) {
        let lease = self.settings.lease;
        let mut held_since = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = over.cancelled() => return,
                _ = tokio::time::sleep(self.heartbeat_every()) => {}
            }
            let store = Arc::clone(&self.store);
            let (tenant, id, owner) = (d.tenant_id.clone(), d.id, self.owner.clone());
            let asked = tokio::time::Instant::now();
            match blocking(move || store.renew_watch(&tenant, id, &owner, lease)).await {
                Ok(true) => held_since = asked,
                Ok(false) => {
                    over.cancel();
                    return;
                }
                Err(e) if held_since.elapsed() >= lease => {
                    tracing::warn!(error = %e, "the watch's lease could not be renewed before it expired; another replica may take it over");
                    over.cancel();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the watch's lease; retrying"),
            }
        }
    }

    /// Lets the watch's lease go (`end`: and closes its window).
    async fn let_go(&self, d: &Deployment, end: bool) {
        let store = Arc::clone(&self.store);
        let (tenant, id, owner) = (d.tenant_id.clone(), d.id, self.owner.clone());
        let done = blocking(move || {
            if end {
                store.end_watch(&tenant, id, &owner)
            } else {
                store.release_watch(&tenant, id, &owner)
            }
        })
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "cannot let the watch go; its lease expires by itself");
        }
    }

    /// A gate failed: the store rolls the deployment back (when it is still this
    /// replica's watch and current), queues the rollback, and locks the instance when its
    /// `lock_on_rollback` says so. Retried while the database is unavailable.
    async fn watch_failed(
        &self,
        d: &Deployment,
        instance: &Instance,
        release: &Release,
        spec: &InstanceSpec,
        reason: &str,
    ) {
        tracing::warn!(instance = %instance.name, reason, "a gate failed during the watch; rolling back");
        let lock = spec
            .control
            .lock_on_rollback
            .then(|| rollback_lock(instance, release));
        let mut wait = Duration::from_millis(200);
        let started = tokio::time::Instant::now();
        loop {
            let store = Arc::clone(&self.store);
            let (tenant, id, owner) = (d.tenant_id.clone(), d.id, self.owner.clone());
            let (reason, lock, audit) =
                (reason.to_string(), lock.clone(), lock_event(instance, d.id));
            let result = blocking(move || {
                let lock = lock
                    .as_deref()
                    .map(|l| l as &(dyn Fn(&Deployment) -> Lock + Sync));
                let failure = WatchFailure {
                    reason: &reason,
                    lock,
                    lock_audit: &audit,
                };
                store.watch_failed(&tenant, id, &owner, &failure)
            })
            .await;
            match result {
                Ok(Some(done)) => {
                    tracing::warn!(instance = %instance.name, rollback = %done.rollback.id, error = %done.watched.error, locked = done.lock.is_some(), "rolled back after a gate failed during the watch");
                    // The rollback can be claimed, and its reports sent, now.
                    self.wake.notify_waiters();
                    return;
                }
                Ok(None) => {
                    tracing::info!(instance = %instance.name, "the watch was no longer this replica's, or a newer deployment ended it: nothing rolled back");
                    return;
                }
                Err(Error::Unavailable(e)) if started.elapsed() < self.settings.lease => {
                    tracing::warn!(error = %e, retry_in = ?wait, "cannot record the failed watch yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                // Nothing to roll back to: the window closes.
                Err(e @ Error::Conflict(_)) => {
                    tracing::error!(instance = %instance.name, error = %e, "cannot roll back after the failed watch");
                    self.let_go(d, true).await;
                    return;
                }
                // The window stays open: the next claim measures again and, still failing,
                // tries again, rather than leaving a failing release live unwatched.
                Err(e) => {
                    tracing::error!(instance = %instance.name, error = %e, "cannot roll back after the failed watch yet; the watch goes on");
                    self.let_go(d, false).await;
                    return;
                }
            }
        }
    }
}

/// The lock an automatic rollback after a failed watch takes, made from the rolled-back
/// deployment (its error names the gate's reason).
fn rollback_lock(
    instance: &Instance,
    release: &Release,
) -> Arc<dyn Fn(&Deployment) -> Lock + Send + Sync> {
    let (instance, release) = (instance.clone(), release.clone());
    Arc::new(move |rolled_back: &Deployment| Lock {
        tenant_id: instance.tenant_id.clone(),
        target: LockTarget::Instance {
            instance_id: instance.id,
        },
        repo: instance.repo.to_ascii_lowercase(),
        holder: BOT_ACTOR.to_string(),
        reason: super::gatekeeper::rollback_lock_reason(&release, &rolled_back.error),
        pull_request: None,
        created_at: deploy::now(),
        expires_at: None,
    })
}

/// The audit event of that lock, as the worker's other automatic rollbacks record it.
fn lock_event(
    instance: &Instance,
    id: DeploymentId,
) -> impl Fn(&Lock) -> AuditEvent + Send + Sync + 'static {
    let (name, environment) = (instance.name.clone(), instance.environment.clone());
    move |taken: &Lock| {
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
    }
}
