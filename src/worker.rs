//! The worker: claims pending deployments from the durable queue, runs each through its
//! strategy and provider while holding a lease, stores progress and logs as they happen,
//! and recovers deployments whose worker died.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::deploy::service::{Running, blocking};
use crate::deploy::{
    self as deploy, Catalog, DeployState, Deployment, DeploymentId, Error, ExpiredLease,
    GithubAcceptance, Outcome, Plan, Progress, ProgressSink, Store, strategies,
};
use crate::provider::{LogLine, LogSink, ReleaseSpec, RunContext};

/// How long a deployment of an instance with `required_contexts` waits for GitHub to
/// accept it (the report is retried with backoff meanwhile) before it fails unrun.
const GITHUB_GATE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long a deploy command left by a lost worker gets between SIGTERM and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// The machine of a lease's holder: a worker's `owner` is `host:pid:run` (`Worker::new`).
fn owner_host(owner: &str) -> Option<&str> {
    let mut parts = owner.rsplitn(3, ':');
    let (_run, _pid) = (parts.next()?, parts.next()?);
    parts.next().filter(|host| !host.is_empty())
}

/// Of the expired leases, the ones held on `host` (their leftovers are stopped here
/// first) and all those to settle now: this machine's, and another machine's once expired
/// for `others_after`.
fn to_settle(
    expired: &[ExpiredLease],
    host: &str,
    now: chrono::DateTime<chrono::Utc>,
    others_after: Duration,
) -> (Vec<DeploymentId>, Vec<DeploymentId>) {
    let (ours, others): (Vec<&ExpiredLease>, Vec<&ExpiredLease>) = expired
        .iter()
        .partition(|lease| owner_host(&lease.owner) == Some(host));
    let ours: Vec<DeploymentId> = ours.iter().map(|lease| lease.id).collect();
    let late = others
        .iter()
        .filter(|lease| {
            (now - lease.expired_at)
                .to_std()
                .is_ok_and(|d| d >= others_after)
        })
        .map(|lease| lease.id);
    let settle = ours.iter().copied().chain(late).collect();
    (ours, settle)
}

/// How a worker pool behaves.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Deployments running at once in this process, across instances.
    pub concurrency: usize,
    /// A running deployment whose worker stops renewing for this long is recovered.
    pub lease: Duration,
    /// How often to look for work when nothing wakes the worker.
    pub poll: Duration,
    /// On shutdown, how long running deployments may take to finish.
    pub grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            grace: Duration::from_secs(30),
        }
    }
}

/// Most bytes of log stored per deployment; the rest is counted, not stored.
pub const LOG_CAP_BYTES: usize = 1024 * 1024;

/// A pool of deployment runners sharing one lease owner name.
pub struct Worker {
    store: Arc<dyn Store>,
    catalog: Arc<dyn Catalog>,
    running: Arc<Running>,
    wake: Arc<tokio::sync::Notify>,
    settings: WorkerSettings,
    /// This machine's name, the first part of `owner`.
    host: String,
    owner: String,
}

impl Worker {
    pub fn new(service: &crate::deploy::Service, settings: WorkerSettings) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && !h.contains(':'))
            .unwrap_or_else(|| "host".into());
        Self {
            store: Arc::clone(service.store()),
            catalog: Arc::clone(service.catalog()),
            running: Arc::clone(service.running()),
            wake: Arc::clone(service.wake()),
            settings,
            owner: format!(
                "{host}:{}:{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            host,
        }
    }

    /// The name this pool holds leases under.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn heartbeat_every(&self) -> Duration {
        (self.settings.lease / 3).min(Duration::from_secs(1))
    }

    /// Runs until `shutdown` is cancelled; then stops claiming, gives running deployments
    /// `grace` to finish, and leaves whatever still runs to lease recovery.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let recovery = tokio::spawn(Arc::clone(&self).recover_loop(shutdown.clone()));
        tracing::info!(owner = %self.owner, concurrency = self.settings.concurrency, "worker started");
        loop {
            // `biased`: once shutdown has begun, nothing new is claimed, even when a slot
            // is free at the same moment (an unbiased select picks a ready branch at random).
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                permit = Arc::clone(&slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let store = Arc::clone(&self.store);
            let owner = self.owner.clone();
            let lease = self.settings.lease;
            // Subscribe before looking, so a deployment queued meanwhile still wakes us.
            let wake = Arc::clone(&self.wake);
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The lease the claim writes runs from no earlier than this.
            let claiming = tokio::time::Instant::now();
            match blocking(move || store.claim_next(&owner, lease)).await {
                Ok(Some(deployment)) => {
                    // The claim wrote the `in_progress` report to the outbox: wake its
                    // sender (it shares this signal) instead of leaving it to its poll.
                    self.wake.notify_waiters();
                    let me = Arc::clone(&self);
                    let span = tracing::info_span!("deployment", deployment = %deployment.id);
                    tasks.spawn(
                        async move {
                            me.run_one(deployment, claiming).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot claim deployments; retrying"),
            }
            drop(permit);
            // Reap finished runs so the set does not grow.
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = &mut notified => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
        tracing::info!(running = tasks.len(), grace = ?self.settings.grace, "worker stopping: no new claims");
        let drained = tokio::time::timeout(self.settings.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                running = tasks.len(),
                "grace period over; leaving the rest to lease recovery"
            );
            tasks.abort_all();
        }
        recovery.abort();
    }

    async fn recover_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let every = (self.settings.lease / 4).max(Duration::from_millis(250));
        loop {
            let store = Arc::clone(&self.store);
            let expired = match blocking(move || store.expired_leases()).await {
                Ok(expired) => expired,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read expired leases; retrying");
                    Vec::new()
                }
            };
            // A worker of this machine that lost its lease (its server was killed; the
            // command's process group was not) may have left its command running: stop
            // it before the deployment is settled, so that the instance's next deployment
            // cannot start beside it. Another machine's leftovers are out of reach: its
            // deployment is settled once that machine has had the time to stop them
            // (should its server come back).
            let others_after = self.settings.lease + 2 * LEFTOVER_GRACE;
            let (ours, settle) = to_settle(&expired, &self.host, deploy::now(), others_after);
            futures_util::future::join_all(ours.iter().map(|id| {
                let id = id.to_string();
                async move { crate::provider::process::stop_leftovers(&id, LEFTOVER_GRACE).await }
            }))
            .await;
            let store = Arc::clone(&self.store);
            match blocking(move || store.recover_expired(&settle)).await {
                Ok(recovered) => {
                    for d in recovered {
                        tracing::warn!(deployment = %d.id, "worker lost; deployment marked failed");
                        crate::server::metrics::global().deployment_finished(&d);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "lease recovery failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// An instance with `required_contexts` deploys a commit only once GitHub has accepted
    /// the Deployment that mirrors it (GitHub checks the commit statuses first): waits for
    /// GitHub's answer to the `deployment.created` report. `None` to go on; otherwise how
    /// the deployment ends without running.
    async fn github_gate(
        &self,
        deployment: &Deployment,
        cancel: &CancellationToken,
        log: &LogSink,
        progress: &StoredProgress,
    ) -> Option<Outcome> {
        let started = tokio::time::Instant::now();
        let mut waiting = false;
        loop {
            let store = Arc::clone(&self.store);
            let (tenant, id) = (deployment.tenant_id.clone(), deployment.id);
            match blocking(move || store.github_acceptance(&tenant, id)).await {
                Ok(GithubAcceptance::NotAsked | GithubAcceptance::Accepted) => {
                    if waiting {
                        log.system("GitHub accepted the deployment");
                    }
                    return None;
                }
                Ok(GithubAcceptance::Refused(why)) => {
                    return Some(Outcome::Failed {
                        reason: format!(
                            "GitHub refused the deployment (required_contexts), so it did not run: {why}"
                        ),
                    });
                }
                Ok(GithubAcceptance::Waiting) => {}
                // The database is back in a moment, or the lease expires meanwhile.
                Err(e) => {
                    tracing::warn!(deployment = %deployment.id, error = %e, "cannot read GitHub's answer yet")
                }
            }
            if !waiting {
                waiting = true;
                let message = "waiting for GitHub to accept the deployment (required_contexts)";
                log.system(message);
                progress
                    .report(Progress {
                        phase: "github".into(),
                        percent: 0,
                        message: message.into(),
                    })
                    .await;
            }
            if started.elapsed() >= GITHUB_GATE_TIMEOUT {
                return Some(Outcome::Failed {
                    reason: format!(
                        "GitHub did not accept the deployment within {} (required_contexts), so it did not run",
                        humantime::format_duration(GITHUB_GATE_TIMEOUT)
                    ),
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => return Some(Outcome::Cancelled),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Runs one claimed deployment to its end.
    /// `claiming`: when the claim was asked for (its lease runs from no earlier).
    async fn run_one(self: Arc<Self>, mut deployment: Deployment, claiming: tokio::time::Instant) {
        let id = deployment.id;
        let token = CancellationToken::new();
        self.running.register(id, token.clone());
        let (log, lines) = LogSink::channel(4096);
        let writer = tokio::spawn(write_logs(
            Arc::clone(&self.store),
            deployment.tenant_id.clone(),
            id,
            lines,
        ));
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(Arc::clone(&self).heartbeat(
            deployment.clone(),
            token.clone(),
            lost.clone(),
            claiming,
        ));

        let progress = StoredProgress {
            store: Arc::clone(&self.store),
            deployment: deployment.clone(),
            owner: self.owner.clone(),
            last: std::sync::Mutex::new(Progress::default()),
        };
        let outcome = self
            .execute(&deployment, token.clone(), log.clone(), &progress)
            .await;
        if let Ok(last) = progress.last.lock() {
            deployment.progress = last.clone();
        }
        heartbeat.abort();
        self.running.remove(id);
        if log.dropped() > 0 {
            log.system(format!(
                "{} log lines were dropped because the log writer fell behind",
                log.dropped()
            ));
        }
        drop(log);
        let _ = writer.await;

        if lost.is_cancelled() {
            tracing::warn!(deployment = %id, "lease lost while running; lease recovery records the outcome");
            return;
        }
        let (state, error, slot) = match outcome {
            Ok(Outcome::Succeeded { slot }) => (DeployState::Succeeded, String::new(), Some(slot)),
            Ok(Outcome::RolledBack { reason }) => (DeployState::RolledBack, reason, None),
            Ok(Outcome::Failed { reason }) => (DeployState::Failed, reason, None),
            Ok(Outcome::Cancelled) => (DeployState::Cancelled, "cancelled".to_string(), None),
            Err(e) => (DeployState::Failed, e.to_string(), None),
        };
        if let Err(e) = deployment.transition(state) {
            tracing::error!(deployment = %id, error = %e, "impossible final state");
            return;
        }
        deployment.error = error;
        if let Some(slot) = slot {
            deployment.provider_ref = slot;
        }
        if state != DeployState::Succeeded {
            deployment.progress.message = deployment.error.clone();
        }
        // The final write must land: retry while the database is unavailable; if it never
        // does, the lease expires and recovery marks the deployment failed.
        for attempt in 0..10u32 {
            let store = Arc::clone(&self.store);
            let (d, owner) = (deployment.clone(), self.owner.clone());
            match blocking(move || store.finish_deployment(&d, &owner)).await {
                Ok(()) => {
                    tracing::info!(deployment = %id, state = %state, "deployment finished");
                    crate::server::metrics::global().deployment_finished(&deployment);
                    // The next deployment of this instance can run now: do not wait for the poll.
                    self.wake.notify_waiters();
                    return;
                }
                Err(Error::Unavailable(e)) => {
                    tracing::warn!(deployment = %id, error = %e, attempt, "cannot record the outcome yet");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
                }
                Err(e) => {
                    tracing::error!(deployment = %id, error = %e, "cannot record the outcome");
                    return;
                }
            }
        }
    }

    /// Prepares the plan and runs the strategy.
    async fn execute(
        &self,
        deployment: &Deployment,
        cancel: CancellationToken,
        log: LogSink,
        progress: &StoredProgress,
    ) -> Result<Outcome, Error> {
        let store = Arc::clone(&self.store);
        let d = deployment.clone();
        let (instance, release, active, last) = blocking(move || {
            let instance = store.get_instance(&d.tenant_id, d.instance_id)?;
            let release = store.get_release(&d.tenant_id, d.release_id)?;
            let active = store.active_release(&d.tenant_id, d.instance_id)?;
            let last = store.last_succeeded(&d.tenant_id, d.instance_id)?;
            Ok((instance, release, active, last))
        })
        .await?;
        let spec = self
            .catalog
            .spec(&deployment.tenant_id, &instance.name)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "instance {} is no longer in the configuration",
                    instance.name
                ))
            })?;
        if spec.wait_for_github
            && let Some(refused) = self.github_gate(deployment, &cancel, &log, progress).await
        {
            return Ok(refused);
        }
        let strategy = strategies::by_name(&deployment.strategy).ok_or_else(|| {
            Error::InvalidRequest(format!("unknown strategy {:?}", deployment.strategy))
        })?;
        let spec_of = |r: &crate::deploy::Release| ReleaseSpec {
            id: r.id,
            version: r.version,
            image: r.image.clone(),
            commit_sha: r.commit_sha.clone(),
            env: r.env.clone(),
        };
        let run = RunContext {
            deployment_id: deployment.id,
            tenant_id: deployment.tenant_id.clone(),
            instance: instance.name.clone(),
            environment: instance.environment.clone(),
            strategy: deployment.strategy.clone(),
            release: spec_of(&release),
            cancel,
            log,
        };
        let live_slot = last
            .as_ref()
            .filter(|d| d.provider_ref == "blue" || d.provider_ref == "green")
            .map(|d| d.provider_ref.clone())
            .unwrap_or_else(|| "blue".to_string());
        let previous = active.as_ref().filter(|a| a.id != release.id).map(spec_of);
        run.log.system(format!(
            "{} v{} ({}) on {} with {} via the {} provider{}",
            if deployment.kind == crate::deploy::DeployKind::Rollback {
                "rolling back to"
            } else {
                "deploying"
            },
            release.version,
            release.image,
            instance.name,
            deployment.strategy,
            spec.provider.kind(),
            previous
                .as_ref()
                .map(|p| format!("; v{} runs now", p.version))
                .unwrap_or_default()
        ));
        let plan = Plan {
            provider: spec.provider.as_ref(),
            health: spec.health.as_deref(),
            run: &run,
            previous,
            live_slot,
            canary: spec.canary.clone(),
            progress,
        };
        Ok(strategy.execute(&plan).await)
    }

    /// Renews the lease and watches for a cancel request from any process.
    ///
    /// When the lease cannot be renewed (the database is unreachable, or a renewal hangs)
    /// until it has expired by this machine's clock, the deployment's command is stopped:
    /// another server may already count the deployment as lost and, once it has settled
    /// it, start the instance's next deployment, which must not run beside this one.
    async fn heartbeat(
        self: Arc<Self>,
        deployment: Deployment,
        cancel: CancellationToken,
        lost: CancellationToken,
        claiming: tokio::time::Instant,
    ) {
        let every = self.heartbeat_every();
        let lease = self.settings.lease;
        // The lease in the database was written (by the claim, then by each renewal) no
        // earlier than this, so it ends no earlier than `held_since + lease`.
        let mut held_since = claiming;
        loop {
            tokio::time::sleep(every).await;
            let store = Arc::clone(&self.store);
            let (id, owner) = (deployment.id, self.owner.clone());
            let asked = tokio::time::Instant::now();
            let left = lease.saturating_sub(held_since.elapsed());
            let renewal = tokio::time::timeout(
                left.max(every),
                blocking(move || store.renew_lease(id, &owner, lease)),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unavailable(
                    "the renewal did not answer in time".into(),
                ))
            });
            match renewal {
                Ok(renewed) => {
                    held_since = asked;
                    if renewed.cancel_requested && !cancel.is_cancelled() {
                        tracing::info!(deployment = %id, "cancel requested; stopping");
                        cancel.cancel();
                    }
                }
                Err(Error::Conflict(e)) => {
                    tracing::warn!(deployment = %id, error = %e, "lease lost; stopping");
                    lost.cancel();
                    cancel.cancel();
                    return;
                }
                Err(e) if held_since.elapsed() >= lease => {
                    tracing::error!(
                        deployment = %id,
                        error = %e,
                        lease = ?lease,
                        "the lease could not be renewed before it expired; stopping the deployment's command, as another server may take the deployment over"
                    );
                    lost.cancel();
                    cancel.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(deployment = %id, error = %e, "cannot renew the lease; retrying")
                }
            }
        }
    }
}

/// Stores each progress report on the deployment row.
struct StoredProgress {
    store: Arc<dyn Store>,
    deployment: Deployment,
    owner: String,
    /// The latest report, written again with the final state.
    last: std::sync::Mutex<Progress>,
}

#[async_trait]
impl ProgressSink for StoredProgress {
    async fn report(&self, progress: Progress) {
        if let Ok(mut last) = self.last.lock() {
            *last = progress.clone();
        }
        let store = Arc::clone(&self.store);
        let mut d = self.deployment.clone();
        d.progress = progress;
        let owner = self.owner.clone();
        if let Err(e) = blocking(move || store.record_progress(&d, &owner)).await {
            tracing::warn!(deployment = %self.deployment.id, error = %e, "cannot store progress");
        }
    }
}

/// Writes log lines in small batches (at most 200 ms old, at most 200 lines), numbering
/// them, until every sink is dropped.
async fn write_logs(
    store: Arc<dyn Store>,
    tenant: String,
    id: crate::deploy::DeploymentId,
    mut lines: mpsc::Receiver<LogLine>,
) {
    const FLUSH_AFTER: Duration = Duration::from_millis(200);
    let mut seq = 0i64;
    let mut bytes = 0usize;
    let mut truncated = 0u64;
    let mut batch: Vec<(String, String)> = Vec::new();
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        let next = match flush_at {
            None => lines.recv().await.map(Some),
            Some(at) => match tokio::time::timeout_at(at, lines.recv()).await {
                Ok(line) => line.map(Some),
                Err(_) => Some(None),
            },
        };
        let open = next.is_some();
        if let Some(Some(line)) = next {
            if bytes + line.text.len() <= LOG_CAP_BYTES {
                bytes += line.text.len();
                batch.push((line.stream.as_str().to_string(), line.text));
                flush_at.get_or_insert_with(|| tokio::time::Instant::now() + FLUSH_AFTER);
            } else {
                truncated += 1;
            }
            let due = flush_at.is_some_and(|at| at <= tokio::time::Instant::now());
            if batch.len() < 200 && !due {
                continue;
            }
        }
        if !open && truncated > 0 {
            batch.push((
                "deploybot".into(),
                format!(
                    "log truncated at {} KiB: {truncated} more lines were not stored",
                    LOG_CAP_BYTES / 1024
                ),
            ));
        }
        flush_at = None;
        if !batch.is_empty() {
            let first = seq + 1;
            seq += batch.len() as i64;
            let rows = std::mem::take(&mut batch);
            let (store, tenant) = (Arc::clone(&store), tenant.clone());
            if let Err(e) = blocking(move || store.append_logs(&tenant, id, first, &rows)).await {
                tracing::warn!(deployment = %id, error = %e, "cannot store log lines");
            }
        }
        if !open {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's expired leases are stopped and settled at once; another machine's
    /// only once expired for `others_after`.
    #[test]
    fn another_machines_leases_are_settled_late() {
        let now = deploy::now();
        let lease = |owner: &str, ago: i64| ExpiredLease {
            id: DeploymentId::new(),
            owner: owner.into(),
            expired_at: now - chrono::TimeDelta::seconds(ago),
        };
        let here = lease("build-1:4242:0190a1b2c3d4", 1);
        let there = lease("build-2:4242:0190a1b2c3d5", 1);
        let there_long_ago = lease("build-2:4242:0190a1b2c3d6", 60);
        let not_a_worker = lease("slow", 1);
        let expired = [
            here.clone(),
            there.clone(),
            there_long_ago.clone(),
            not_a_worker.clone(),
        ];
        let minute = Duration::from_secs(59);
        let (ours, settle) = to_settle(&expired, "build-1", now, minute);
        assert_eq!(ours, vec![here.id]);
        assert_eq!(settle, vec![here.id, there_long_ago.id]);
        // A host whose name only starts like this one's is another machine.
        let (ours, settle) = to_settle(&expired, "build-", now, minute);
        assert!(ours.is_empty());
        assert_eq!(settle, vec![there_long_ago.id]);
        let (_, settle) = to_settle(&expired, "build-1", now, Duration::ZERO);
        assert_eq!(settle.len(), 4);
    }

    #[test]
    fn the_host_is_what_precedes_the_pid_and_the_run() {
        assert_eq!(owner_host("build-1:4242:0190a1b2"), Some("build-1"));
        assert_eq!(
            owner_host("build-1.example.com:1:x"),
            Some("build-1.example.com")
        );
        // Not a worker's owner name: no host.
        assert_eq!(owner_host("slow"), None);
        assert_eq!(owner_host("a:b"), None);
        assert_eq!(owner_host(":1:x"), None);
    }
}
