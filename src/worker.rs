//! The worker: claims pending deployments from the durable queue, runs each through its
//! strategy and provider while holding a lease, stores progress and logs as they happen,
//! and recovers deployments whose worker died.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::deploy::provider::{LogSink, ProviderError, ReleaseSpec, RunContext};
use crate::deploy::service::{Running, blocking};
use crate::deploy::{
    self as deploy, AuditStore, Catalog, DeployKind, DeployState, Deployment, DeploymentId, Error,
    ExpiredLease, GateStore, Instance, InstanceSpec, InstanceStore, LockStore, LogStore, Outcome,
    Plan, Progress, ProgressSink, QueueStore, Release, ReleaseStore, RetentionStore, WatchStore,
    strategies,
};
use crate::github::outbox::{GithubAcceptance, OutboxStore};
use crate::provider::SecretMask;

mod gatekeeper;
mod gates;
mod logs;
mod prune;
mod watch;

pub use prune::{PRUNE_TASK, PruneKind, PruneReport, cutoff, prune_and_measure, prune_now};

use logs::close_log;

/// How long a deployment of an instance with `required_contexts` waits for GitHub to
/// accept it (the report is retried with backoff meanwhile) before it fails unrun.
const GITHUB_GATE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long a deploy command left by a lost worker gets between SIGTERM and SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// Who the bot is in locks and the audit trail when it acts by itself.
pub const BOT_ACTOR: &str = "deploybot";

/// The machine of a lease's holder: a worker's `owner` is `host:pid:run` (`Worker::new`).
fn owner_host(owner: &str) -> Option<&str> {
    let mut parts = owner.rsplitn(3, ':');
    let (_run, _pid) = (parts.next()?, parts.next()?);
    parts.next().filter(|host| !host.is_empty())
}

/// The process id in a worker's `owner` (`host:pid:run`).
fn owner_pid(owner: &str) -> Option<u32> {
    owner.rsplit(':').nth(1)?.parse().ok()
}

/// Deployments a worker of this process still holds: running, or finished and writing
/// their outcome. Recovery in this process never settles them, whatever their lease says.
static HELD: std::sync::LazyLock<std::sync::Mutex<HashSet<DeploymentId>>> =
    std::sync::LazyLock::new(Default::default);

/// Marks a deployment held by this process while alive.
struct Held(DeploymentId);

impl Held {
    fn new(id: DeploymentId) -> Self {
        if let Ok(mut held) = HELD.lock() {
            held.insert(id);
        }
        Held(id)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut held) = HELD.lock() {
            held.remove(&self.0);
        }
    }
}

fn held_here(id: DeploymentId) -> bool {
    HELD.lock().is_ok_and(|held| held.contains(&id))
}

/// Whether the process `pid` of this machine is still alive.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // Signal 0 checks that the process exists; EPERM means it exists under another user.
    // SAFETY: kill with signal 0 sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Who holds an expired lease, as far as this process can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// A worker of this process that still has the deployment (e.g. retrying its final
    /// write while the database was away): never settled from here.
    Alive,
    /// Gone from this machine: its leftovers are stopped here and it is settled at once.
    GoneHere,
    /// On another machine, or another live process of this one: settled once expired for
    /// `others_after`, unless it renews or finishes first.
    Elsewhere,
}

/// Classifies the holder of `lease` from this process (`host`, `pid`).
fn holder(lease: &ExpiredLease, host: &str, pid: u32) -> Holder {
    if owner_host(&lease.owner) != Some(host) {
        return Holder::Elsewhere;
    }
    match owner_pid(&lease.owner) {
        Some(p) if p == pid && held_here(lease.id) => Holder::Alive,
        Some(p) if p != pid && process_alive(p) => Holder::Elsewhere,
        _ => Holder::GoneHere,
    }
}

/// Of the expired leases, the ones whose holder is gone from this machine (their
/// leftovers are stopped here first) and all those to settle now: those, and the others'
/// once expired for `others_after`. A lease whose holder is alive in this process is never
/// settled here.
fn to_settle(
    expired: &[ExpiredLease],
    holder: impl Fn(&ExpiredLease) -> Holder,
    now: chrono::DateTime<chrono::Utc>,
    others_after: Duration,
) -> (Vec<DeploymentId>, Vec<DeploymentId>) {
    let mut ours = Vec::new();
    let mut late = Vec::new();
    for lease in expired {
        match holder(lease) {
            Holder::Alive => {}
            Holder::GoneHere => ours.push(lease.id),
            Holder::Elsewhere => {
                if (now - lease.expired_at)
                    .to_std()
                    .is_ok_and(|d| d >= others_after)
                {
                    late.push(lease.id);
                }
            }
        }
    }
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
    /// How long stored records are kept, and how often and in what batches the worker
    /// removes older ones (`[retention]`).
    pub retention: crate::config::RetentionConfig,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(500),
            grace: Duration::from_secs(30),
            retention: crate::config::RetentionConfig::default(),
        }
    }
}

/// The most a deployment's log stores: rows and bytes (a line counts its text and a
/// newline, so empty lines count). Past either, the first and the last lines are kept and
/// one line says how many were dropped between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCap {
    pub lines: usize,
    pub bytes: usize,
}

impl Default for LogCap {
    fn default() -> Self {
        Self {
            lines: 20_000,
            bytes: 1024 * 1024,
        }
    }
}

/// What a worker reads and writes: the queue and its leases, deployments with their
/// releases and instances, logs, whether GitHub accepted a deployment, and the locks and
/// audit trail its gatekeeper keeps.
pub trait WorkerStore:
    ReleaseStore
    + InstanceStore
    + QueueStore
    + LogStore
    + OutboxStore
    + LockStore
    + AuditStore
    + GateStore
    + WatchStore
    + RetentionStore
{
}

impl<
    T: ReleaseStore
        + InstanceStore
        + QueueStore
        + LogStore
        + OutboxStore
        + LockStore
        + AuditStore
        + GateStore
        + WatchStore
        + RetentionStore
        + ?Sized,
> WorkerStore for T
{
}

/// The secret values a pool masks in stored log lines, replaceable while it runs.
pub type MaskSlot = Arc<std::sync::RwLock<Arc<SecretMask>>>;

/// A pool of deployment runners sharing one lease owner name.
pub struct Worker {
    store: Arc<dyn WorkerStore>,
    catalog: Arc<dyn Catalog>,
    running: Arc<Running>,
    wake: Arc<tokio::sync::Notify>,
    settings: WorkerSettings,
    /// This machine's name, the first part of `owner`.
    host: String,
    owner: String,
    /// Secret values replaced by `***` in every log line before it is stored; a reload
    /// of the configuration replaces them.
    mask: MaskSlot,
    /// The most each deployment's log stores.
    log_cap: LogCap,
}

impl Worker {
    /// A pool that runs the deployments `service` queues, kept in `store`.
    pub fn new(
        store: Arc<dyn WorkerStore>,
        service: &crate::deploy::Service,
        settings: WorkerSettings,
    ) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && !h.contains(':'))
            .unwrap_or_else(|| "host".into());
        Self {
            store,
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
            mask: MaskSlot::default(),
            log_cap: LogCap::default(),
        }
    }

    /// This pool, storing at most `cap` of each deployment's log.
    pub fn with_log_cap(mut self, cap: LogCap) -> Self {
        self.log_cap = cap;
        self
    }

    /// This pool, masking `mask`'s secret values in every deployment log line it stores.
    pub fn masking(self, mask: SecretMask) -> Self {
        *self
            .mask
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(mask);
        self
    }

    /// Where this pool reads the secret values it masks, for a reload to replace them.
    pub fn mask_slot(&self) -> MaskSlot {
        Arc::clone(&self.mask)
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
        let [recovery, gatekeeper, watches] = Arc::clone(&self).start_loops(&shutdown);
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
                    // The instance's name is recorded once it is read (`execute`).
                    let span = tracing::info_span!(
                        "deployment",
                        deployment = %deployment.id,
                        tenant = %deployment.tenant_id,
                        instance = tracing::field::Empty
                    );
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
        gatekeeper.abort();
        // The watches let their leases go as shutdown begins, for another replica.
        let _ = watches.await;
    }

    /// Starts the loops beside the claims: recovery, the gatekeeper, pruning (detached)
    /// and the watches.
    fn start_loops(
        self: Arc<Self>,
        shutdown: &CancellationToken,
    ) -> [tokio::task::JoinHandle<()>; 3] {
        let recovery = tokio::spawn(Arc::clone(&self).recover_loop(shutdown.clone()));
        let gatekeeper = tokio::spawn(Arc::clone(&self).gate_loop(shutdown.clone()));
        tokio::spawn(Arc::clone(&self).prune_loop(shutdown.clone()));
        let watches = tokio::spawn(self.watch_loop(shutdown.clone()));
        [recovery, gatekeeper, watches]
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
            let pid = std::process::id();
            let (ours, settle) = to_settle(
                &expired,
                |lease| holder(lease, &self.host, pid),
                deploy::now(),
                others_after,
            );
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
                        crate::metrics::global().deployment_finished(&d);
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
                _ = cancel.cancelled() => return Some(Outcome::cancelled()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Runs one claimed deployment to its end.
    /// `claiming`: when the claim was asked for (its lease runs from no earlier).
    async fn run_one(self: Arc<Self>, mut deployment: Deployment, claiming: tokio::time::Instant) {
        let id = deployment.id;
        let _held = Held::new(id);
        let token = CancellationToken::new();
        self.running.register(id, token.clone());
        let (log, writer) = self.start_log(&deployment);
        let lost = CancellationToken::new();
        let finished = CancellationToken::new();
        // Stopped whichever way this function ends (or is dropped, after the grace period).
        let _heartbeat = AbortOnDrop(tokio::spawn(Arc::clone(&self).heartbeat(
            deployment.clone(),
            token.clone(),
            Fence {
                lost: lost.clone(),
                finished: finished.clone(),
            },
            claiming,
        )));

        let (progress, progress_writer) = StoredProgress::start(
            Arc::clone(&self.store),
            deployment.clone(),
            self.owner.clone(),
        );
        let run = RunHandles {
            cancel: token.clone(),
            halt: lost.clone(),
            log: log.clone(),
        };
        let outcome = self.execute(&deployment, run, &progress).await;
        // The command is over: from now on the lease is kept (renewed while the database
        // answers) until the outcome is written, and an expired lease no longer stops
        // anything.
        finished.cancel();
        if let Ok(last) = progress.last.lock() {
            deployment.progress = last.clone();
        }
        if let Ok(readings) = progress.readings.lock() {
            deployment.gates = readings.clone();
        }
        // The last report is stored before the outcome (which repeats it): a later one
        // would find the deployment no longer running.
        drop(progress);
        let _ = progress_writer.await;
        self.running.remove(id);
        close_log(log, writer).await;

        if lost.is_cancelled() {
            tracing::warn!(deployment = %id, "lease lost while running; lease recovery records the outcome");
            return;
        }
        if let Err(e) = settle(&mut deployment, outcome) {
            tracing::error!(deployment = %id, error = %e, "impossible final state");
            return;
        }
        deployment.watch_until = self.watch_until(&deployment).await;
        // Locked before the outcome is visible, so that whoever sees the rollback also
        // finds the instance locked.
        self.lock_on_rollback(&deployment).await;
        self.write_outcome(&deployment, &lost).await;
    }

    /// Writes the outcome of a finished deployment. While the database is unavailable it
    /// retries with backoff (the heartbeat keeps the lease meanwhile, and recovery in this
    /// process leaves the deployment alone), until it lands, another server settled the
    /// deployment, or the process stops.
    async fn write_outcome(&self, deployment: &Deployment, lost: &CancellationToken) {
        let id = deployment.id;
        let mut wait = Duration::from_millis(200);
        let mut attempt = 0u32;
        loop {
            let store = Arc::clone(&self.store);
            let (d, owner) = (deployment.clone(), self.owner.clone());
            match blocking(move || store.finish_deployment(&d, &owner)).await {
                Ok(()) => {
                    tracing::info!(deployment = %id, state = %deployment.state, "deployment finished");
                    crate::metrics::global().deployment_finished(deployment);
                    // The next deployment of this instance can run now: do not wait for the poll.
                    self.wake.notify_waiters();
                    return;
                }
                Err(Error::Unavailable(e)) if !lost.is_cancelled() => {
                    attempt += 1;
                    tracing::warn!(deployment = %id, error = %e, attempt, retry_in = ?wait, "cannot record the outcome yet (the database is unavailable); retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(deployment = %id, state = %deployment.state, error = %e, "cannot record the outcome");
                    return;
                }
            }
        }
    }

    /// Prepares the plan and runs the strategy.
    async fn execute(
        &self,
        deployment: &Deployment,
        running: RunHandles,
        progress: &StoredProgress,
    ) -> Result<Outcome, Error> {
        let RunHandles { cancel, halt, log } = running;
        let stored = self.load(deployment).await?;
        tracing::Span::current().record("instance", stored.instance.name.as_str());
        let spec = self
            .catalog
            .spec(&deployment.tenant_id, &stored.instance.name)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "instance {} is no longer in the configuration",
                    stored.instance.name
                ))
            })?;
        if spec.wait_for_github
            && let Some(refused) = self.github_gate(deployment, &cancel, &log, progress).await
        {
            return Ok(refused);
        }
        // A rollback takes the fast path whatever the instance's strategy.
        let strategy: &dyn deploy::Strategy = if deployment.kind == DeployKind::Rollback {
            &strategies::FastRollback
        } else {
            strategies::by_name(&deployment.strategy).ok_or_else(|| {
                Error::InvalidRequest(format!("unknown strategy {:?}", deployment.strategy))
            })?
        };
        let run = RunContext {
            deployment_id: deployment.id,
            tenant_id: deployment.tenant_id.clone(),
            instance: stored.instance.name.clone(),
            environment: stored.instance.environment.clone(),
            strategy: deployment.strategy.clone(),
            release: release_spec(&stored.release),
            cancel,
            log,
            params: deployment.params.clone(),
            noop: deployment.noop,
        };
        let previous = stored
            .active
            .as_ref()
            .filter(|a| a.id != stored.release.id)
            .map(release_spec);
        log_start(&run, deployment, &stored, &spec, previous.as_ref());
        if deployment.noop {
            // The live slot is unchanged: the next deployment's strategy reads it from here.
            let live_ref = stored
                .last
                .as_ref()
                .map(|d| d.provider_ref.clone())
                .unwrap_or_default();
            return Ok(dry_run(spec.provider.as_ref(), &run, progress, live_ref).await);
        }
        let plan = Plan {
            provider: spec.provider.as_ref(),
            health: spec.health.as_deref(),
            gates: &spec.gates,
            run: &run,
            previous,
            previous_ref: stored.last.map(|d| d.provider_ref),
            canary: spec.canary.clone(),
            progress,
            halt,
        };
        Ok(strategy.execute(&plan).await)
    }

    /// What a run reads from the store before it starts.
    async fn load(&self, deployment: &Deployment) -> Result<Stored, Error> {
        let store = Arc::clone(&self.store);
        let d = deployment.clone();
        blocking(move || {
            Ok(Stored {
                instance: store.get_instance(&d.tenant_id, d.instance_id)?,
                release: store.get_release(&d.tenant_id, d.release_id)?,
                active: store.active_release(&d.tenant_id, d.instance_id)?,
                last: store.last_succeeded(&d.tenant_id, d.instance_id)?,
            })
        })
        .await
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
        fence: Fence,
        claiming: tokio::time::Instant,
    ) {
        let Fence { lost, finished } = fence;
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
                // The command has finished: nothing runs that another server's next
                // deployment could meet, and the outcome waits for the database.
                Err(e) if finished.is_cancelled() => {
                    tracing::warn!(deployment = %id, error = %e, "cannot renew the lease while writing the outcome; retrying")
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

/// The handles of one running deployment.
struct RunHandles {
    /// A person's cancel (and a lost lease).
    cancel: CancellationToken,
    /// A lost lease only: stops a restore too.
    halt: CancellationToken,
    log: LogSink,
}

/// What a run reads from the store before it starts.
struct Stored {
    instance: Instance,
    release: Release,
    /// The instance's active release, restored when a phase fails.
    active: Option<Release>,
    /// The instance's last succeeded deployment, whose `provider_ref` its strategy reads.
    last: Option<Deployment>,
}

/// A release as the provider needs it.
fn release_spec(release: &Release) -> ReleaseSpec {
    ReleaseSpec {
        id: release.id,
        version: release.version,
        image: release.image.clone(),
        commit_sha: release.commit_sha.clone(),
        env: release.env.clone(),
    }
}

/// The log's first line: what is deployed where, how, and what runs now.
fn log_start(
    run: &RunContext,
    deployment: &Deployment,
    stored: &Stored,
    spec: &InstanceSpec,
    previous: Option<&ReleaseSpec>,
) {
    if deployment.noop {
        run.log.system(format!(
            "dry run of v{} ({}) on {} via the {} provider: it plans, nothing changes{}",
            stored.release.version,
            stored.release.image,
            stored.instance.name,
            spec.provider.kind(),
            previous
                .map(|p| format!("; v{} runs now and stays", p.version))
                .unwrap_or_default()
        ));
        return;
    }
    run.log.system(format!(
        "{} v{} ({}) on {} with {} via the {} provider{}",
        if deployment.kind == DeployKind::Rollback {
            "rolling back to"
        } else {
            "deploying"
        },
        stored.release.version,
        stored.release.image,
        stored.instance.name,
        deployment.strategy,
        spec.provider.kind(),
        previous
            .map(|p| format!("; v{} runs now", p.version))
            .unwrap_or_default()
    ));
}

/// A dry run: the one `plan` phase, with its progress; no strategy, no traffic, no health
/// gate. Succeeds with `live_ref` (what runs is unchanged).
async fn dry_run(
    provider: &dyn deploy::provider::Provider,
    run: &RunContext,
    progress: &dyn ProgressSink,
    live_ref: String,
) -> Outcome {
    let report = |percent: i32, message: String| {
        run.log.system(format!("[{percent:>3}%] plan: {message}"));
        progress.report(Progress {
            phase: "plan".into(),
            percent,
            message,
        })
    };
    report(
        0,
        format!("planning v{} ({})", run.release.version, run.release.image),
    )
    .await;
    match provider.plan(run, &run.release).await {
        Ok(()) => {
            report(100, "planned; nothing was changed".into()).await;
            Outcome::Succeeded {
                provider_ref: live_ref,
            }
        }
        Err(e) if e == ProviderError::Cancelled || run.cancel.is_cancelled() => {
            Outcome::cancelled()
        }
        Err(e) => {
            run.log
                .system(format!("the plan failed: {e}; nothing was changed"));
            Outcome::Failed {
                reason: e.to_string(),
            }
        }
    }
}

/// Moves a finished deployment to the state its outcome means, with its error and the
/// `provider_ref` a succeeded strategy returned.
fn settle(
    deployment: &mut Deployment,
    outcome: Result<Outcome, Error>,
) -> Result<(), deploy::InvalidTransition> {
    let (state, error, provider_ref) = match outcome {
        Ok(Outcome::Succeeded { provider_ref }) => {
            (DeployState::Succeeded, String::new(), Some(provider_ref))
        }
        Ok(Outcome::RolledBack { reason }) => (DeployState::RolledBack, reason, None),
        Ok(Outcome::Failed { reason }) => (DeployState::Failed, reason, None),
        Ok(Outcome::Cancelled { reason }) if reason.is_empty() => {
            (DeployState::Cancelled, "cancelled".to_string(), None)
        }
        Ok(Outcome::Cancelled { reason }) => {
            (DeployState::Cancelled, format!("cancelled; {reason}"), None)
        }
        Err(e) => (DeployState::Failed, e.to_string(), None),
    };
    deployment.transition(state)?;
    deployment.error = error;
    if let Some(provider_ref) = provider_ref {
        deployment.provider_ref = provider_ref;
    }
    if state != DeployState::Succeeded {
        deployment.progress.message = deployment.error.clone();
    }
    Ok(())
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the heartbeat and its deployment's runner tell each other.
struct Fence {
    /// Set by the heartbeat: the lease is lost (another server settled the deployment, or
    /// it expired while the command ran); the runner records nothing.
    lost: CancellationToken,
    /// Set by the runner: the command has finished; only the outcome is left to write.
    finished: CancellationToken,
}

/// Stores progress reports on the deployment row. A report never waits for the
/// database: `write_progress` stores the latest one in the background, so a strategy
/// whose command has finished is not held up (past its lease) by an unavailable database.
struct StoredProgress {
    /// The latest report, written again with the final state.
    last: std::sync::Mutex<Progress>,
    latest: tokio::sync::watch::Sender<Option<Progress>>,
    /// Each metric gate's last measurement, stored with the outcome.
    readings: std::sync::Mutex<Vec<deploy::provider::GateReading>>,
    /// The deployment reported on: its restore's start is marked for the time to restore.
    id: DeploymentId,
}

impl StoredProgress {
    /// The sink, and its writer (which ends once the sink is dropped).
    fn start(
        store: Arc<dyn WorkerStore>,
        deployment: Deployment,
        owner: String,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (latest, reports) = tokio::sync::watch::channel(None);
        let id = deployment.id;
        let writer = tokio::spawn(write_progress(store, deployment, owner, reports));
        let sink = Self {
            last: std::sync::Mutex::new(Progress::default()),
            latest,
            readings: std::sync::Mutex::default(),
            id,
        };
        (sink, writer)
    }
}

#[async_trait]
impl ProgressSink for StoredProgress {
    async fn report(&self, progress: Progress) {
        // A strategy's restore of the previous release begins with its `rollback` phase.
        if progress.phase == "rollback" {
            crate::metrics::global().restore_started(self.id);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = progress.clone();
        }
        self.latest.send_replace(Some(progress));
    }

    fn reading(&self, reading: deploy::provider::GateReading) {
        if let Ok(mut readings) = self.readings.lock() {
            readings.retain(|r| r.gate != reading.gate);
            readings.push(reading);
        }
    }
}

/// Stores the latest progress report whenever there is a newer one, until the sink is
/// dropped.
async fn write_progress(
    store: Arc<dyn WorkerStore>,
    deployment: Deployment,
    owner: String,
    mut reports: tokio::sync::watch::Receiver<Option<Progress>>,
) {
    while reports.changed().await.is_ok() {
        let Some(progress) = reports.borrow_and_update().clone() else {
            continue;
        };
        let store = Arc::clone(&store);
        let mut d = deployment.clone();
        d.progress = progress;
        let owner = owner.clone();
        if let Err(e) = blocking(move || store.record_progress(&d, &owner)).await {
            tracing::warn!(deployment = %deployment.id, error = %e, "cannot store progress");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease whose holder is gone from this machine is stopped and settled at once;
    /// another machine's (or another live process's) only once expired for `others_after`;
    /// one whose holder is alive in this process never.
    #[test]
    fn only_a_gone_worker_is_settled_at_once() {
        let now = deploy::now();
        let lease = |owner: &str, ago: i64| ExpiredLease {
            id: DeploymentId::new(),
            owner: owner.into(),
            expired_at: now - chrono::TimeDelta::seconds(ago),
        };
        let gone = lease("build-1:4242:0190a1b2c3d4", 1);
        let alive = lease("build-1:4243:0190a1b2c3d7", 600);
        let there = lease("build-2:4242:0190a1b2c3d5", 1);
        let there_long_ago = lease("build-2:4242:0190a1b2c3d6", 60);
        let expired = [
            gone.clone(),
            alive.clone(),
            there.clone(),
            there_long_ago.clone(),
        ];
        let classify = |l: &ExpiredLease| {
            if l.id == gone.id {
                Holder::GoneHere
            } else if l.id == alive.id {
                Holder::Alive
            } else {
                Holder::Elsewhere
            }
        };
        let minute = Duration::from_secs(59);
        let (ours, settle) = to_settle(&expired, classify, now, minute);
        assert_eq!(ours, vec![gone.id]);
        assert_eq!(settle, vec![gone.id, there_long_ago.id]);
        let (_, settle) = to_settle(&expired, classify, now, Duration::ZERO);
        assert_eq!(settle, vec![gone.id, there.id, there_long_ago.id]);
    }

    /// A deployment this process still holds is alive; another machine's is elsewhere; a
    /// dead process of this machine is gone; a live one is elsewhere.
    #[test]
    fn the_holder_of_a_lease_is_told_from_its_owner() {
        let me = std::process::id();
        let lease = |owner: String| ExpiredLease {
            id: DeploymentId::new(),
            owner,
            expired_at: deploy::now(),
        };
        let held = lease(format!("build-1:{me}:0190a1b2"));
        let _held = Held::new(held.id);
        assert_eq!(holder(&held, "build-1", me), Holder::Alive);
        let dropped = lease(format!("build-1:{me}:0190a1b2"));
        assert_eq!(holder(&dropped, "build-1", me), Holder::GoneHere);
        assert_eq!(holder(&held, "build-2", me), Holder::Elsewhere);
        // pid 1 always runs; a pid above the kernel's maximum never does.
        let live = lease("build-1:1:0190a1b2".into());
        assert_eq!(holder(&live, "build-1", me), Holder::Elsewhere);
        let dead = lease("build-1:2147483647:0190a1b2".into());
        assert_eq!(holder(&dead, "build-1", me), Holder::GoneHere);
        assert_eq!(
            holder(&lease("slow".into()), "build-1", me),
            Holder::Elsewhere
        );
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
