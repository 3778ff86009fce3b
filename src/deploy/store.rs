//! The persistence interface of the domain, as a few traits named for what they hold.
//! Every method is scoped by tenant (a row of another tenant is reported as not found),
//! except the queue's, which serve workers of every tenant.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    AuditEvent, AuditPage, DeployListResult, DeployState, Deployment, DeploymentId, Error,
    ExpiredLease, Instance, InstanceId, Lease, ListOptions, Lock, LockTarget, LogEntry, Release,
    ReleaseId, ReleaseListResult, TriggeredDeployment, WaitKind, WaitingFor,
};

/// Where deployments and releases are kept: the seed's eight methods. Implementations are
/// blocking (call them from a blocking thread) and safe to share between threads.
pub trait Store: Send + Sync + 'static {
    /// Stores a new deployment.
    fn insert_deployment(&self, deployment: &Deployment) -> Result<(), Error>;

    /// One deployment of the tenant.
    fn get_deployment(&self, tenant_id: &str, id: DeploymentId) -> Result<Deployment, Error>;

    /// Writes a changed deployment. A state change the state machine refuses is an
    /// invalid-state error, checked against the stored state inside the same transaction.
    fn update_deployment(&self, deployment: &Deployment) -> Result<(), Error>;

    /// The instance's deployments, newest first, one page at a time.
    fn list_deployments(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
        options: &ListOptions,
    ) -> Result<DeployListResult, Error>;

    /// Stores a new release, allocating its version atomically; returns it numbered.
    fn insert_release(&self, release: &Release) -> Result<Release, Error>;

    /// One release of the tenant.
    fn get_release(&self, tenant_id: &str, id: ReleaseId) -> Result<Release, Error>;

    /// The instance's releases, highest version first, one page at a time.
    fn list_releases(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
        options: &ListOptions,
    ) -> Result<ReleaseListResult, Error>;

    /// The version the next release of the instance will get (informative: the
    /// allocation itself happens inside `insert_release`).
    fn next_release_version(&self, tenant_id: &str, instance_id: InstanceId) -> Result<i64, Error>;
}

/// Releases and deployments beyond the seed's `Store`: the active release, rollback
/// targets, idempotent triggers and cancellation.
pub trait ReleaseStore: Store {
    /// One deployment of the tenant with its release and its instance, read together
    /// (one query: every report to GitHub needs all three).
    fn get_deployment_context(
        &self,
        tenant_id: &str,
        id: DeploymentId,
    ) -> Result<(Deployment, Release, Instance), Error>;

    /// In one transaction: numbers and stores `release`, then stores `deployment` of it.
    fn insert_release_and_deployment(
        &self,
        release: &Release,
        deployment: &Deployment,
    ) -> Result<(Release, Deployment), Error>;

    /// Creates a triggered deployment in one transaction; `None` (and nothing written)
    /// when its trigger key already deployed.
    fn insert_triggered(
        &self,
        triggered: &TriggeredDeployment,
    ) -> Result<Option<Deployment>, Error>;

    /// The instance's active release, if any.
    fn active_release(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Option<Release>, Error>;

    /// The release that was active before the active one, if any.
    fn previous_release(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Option<Release>, Error>;

    /// One release of the instance by version.
    fn release_by_version(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
        version: i64,
    ) -> Result<Release, Error>;

    /// The newest succeeded deployment of the instance (its provider_ref names the live slot).
    fn last_succeeded(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Option<Deployment>, Error>;

    /// Makes `release` the one active release of its instance.
    fn activate_release(&self, tenant_id: &str, release_id: ReleaseId) -> Result<(), Error>;

    /// pending → cancelled at once; running → cancellation requested (the worker running
    /// it stops it and marks it cancelled); any other state → invalid-state error.
    fn request_cancel(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        by: &str,
    ) -> Result<Deployment, Error>;

    /// [`ReleaseStore::request_cancel`], with the audit event `audit` makes of the
    /// deployment after the request written in the same transaction.
    fn request_cancel_audited(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        by: &str,
        audit: &(dyn Fn(&Deployment) -> AuditEvent + Sync),
    ) -> Result<Deployment, Error>;
}

/// The queue and its leases. These serve workers, which run deployments of every tenant;
/// their results never reach a user unfiltered.
pub trait QueueStore: Send + Sync + 'static {
    /// Claims the oldest pending deployment whose instance runs nothing else: it becomes
    /// running, leased to `owner` for `lease`. At most one running per instance, FIFO per
    /// instance, exactly one claimer per deployment, across processes.
    fn claim_next(&self, owner: &str, lease: Duration) -> Result<Option<Deployment>, Error>;

    /// Extends `owner`'s lease on a running deployment. An invalid-state error means the
    /// lease was lost (recovered by another worker): stop working on it.
    fn renew_lease(&self, id: DeploymentId, owner: &str, lease: Duration) -> Result<Lease, Error>;

    /// Cancels every queued deployment of the instance (also those waiting for a lock, a
    /// freeze or a gate), each ending with `reason`, reported to GitHub and audited as
    /// `actor`'s; returns them, oldest first.
    fn cancel_instance_queue(
        &self,
        tenant_id: &str,
        instance: InstanceId,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<Deployment>, Error>;

    /// Stores progress of a running deployment that `owner` still holds.
    fn record_progress(&self, deployment: &Deployment, owner: &str) -> Result<(), Error>;

    /// The final write of a run by `owner`: state, error, progress and provider_ref. On
    /// success the release becomes active in the same transaction, and a rollback marks
    /// the deployment it replaced `rolled_back`.
    fn finish_deployment(&self, deployment: &Deployment, owner: &str) -> Result<(), Error>;

    /// Running deployments whose lease expired.
    fn expired_leases(&self) -> Result<Vec<ExpiredLease>, Error>;

    /// The deployments named in `ids` that are still running with an expired lease
    /// become failed ("worker lost; outcome unknown"); returns them.
    fn recover_expired(&self, ids: &[DeploymentId]) -> Result<Vec<Deployment>, Error>;

    /// How many deployments of all tenants are in each state (absent states: none), for metrics.
    fn count_by_state(&self) -> Result<Vec<(DeployState, i64)>, Error>;

    /// Pending deployments of every tenant that wait for something, oldest first, at
    /// most `limit`.
    fn waiting_deployments(&self, limit: u32) -> Result<Vec<Deployment>, Error>;

    /// Changes what a pending deployment waits for (None: a worker may claim it now), and
    /// writes its status report (and, for a command's deployment, its reply's refresh) in
    /// the same transaction. Invalid state when it is no longer pending.
    fn set_waiting(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        waiting: Option<&WaitingFor>,
    ) -> Result<Deployment, Error>;

    /// Of the instance's pending deployments that wait for one of `kinds`: the newest may
    /// run now (its `waiting_for` cleared) and the older ones end cancelled, superseded by
    /// it, with their final reports; one transaction. Returns the one released.
    fn release_waiting(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
        kinds: &[WaitKind],
    ) -> Result<Option<Deployment>, Error> {
        self.release_waiting_to(tenant_id, instance_id, kinds, &|_| None)
    }

    /// [`QueueStore::release_waiting`], except that the newest moves on to what `next`
    /// says it waits for after them (None: it may run now), such as a gate.
    fn release_waiting_to(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
        kinds: &[WaitKind],
        next: &(dyn Fn(&Deployment) -> Option<WaitingFor> + Sync),
    ) -> Result<Option<Deployment>, Error>;
}

/// Locks on instances and repositories. A lock whose `expires_at` passed is not held,
/// whether or not its row is gone yet.
pub trait LockStore: Send + Sync + 'static {
    /// Takes `lock`, or renews it when its holder already holds the target (reason,
    /// expiry and pull request are replaced; `created_at` is kept). Another holder's live
    /// lock is `Error::Locked` naming it; an expired one is replaced.
    fn acquire_lock(&self, lock: &Lock) -> Result<Lock, Error>;

    /// Removes the lock on `target`; the lock that was held, if any.
    fn release_lock(&self, tenant_id: &str, target: &LockTarget) -> Result<Option<Lock>, Error>;

    /// [`LockStore::acquire_lock`], with the audit event `audit` makes of the lock taken
    /// written in the same transaction.
    fn acquire_lock_audited(
        &self,
        lock: &Lock,
        audit: &(dyn Fn(&Lock) -> AuditEvent + Sync),
    ) -> Result<Lock, Error>;

    /// [`LockStore::release_lock`], with the audit event `audit` makes of the lock
    /// released (when one was held) written in the same transaction.
    fn release_lock_audited(
        &self,
        tenant_id: &str,
        target: &LockTarget,
        audit: &(dyn Fn(&Lock) -> AuditEvent + Sync),
    ) -> Result<Option<Lock>, Error>;

    /// The live lock on `target` itself.
    fn get_lock(&self, tenant_id: &str, target: &LockTarget) -> Result<Option<Lock>, Error>;

    /// The live lock that covers an instance: its own, else its repository's.
    fn lock_covering(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Option<Lock>, Error>;

    /// The tenant's live locks, oldest first.
    fn list_locks(&self, tenant_id: &str) -> Result<Vec<Lock>, Error>;

    /// Removes every tenant's locks that expired at or before `now`, each with the audit
    /// event `audit` makes of it in the same transaction; returns them.
    fn expire_locks(
        &self,
        now: DateTime<Utc>,
        audit: &(dyn Fn(&Lock) -> AuditEvent + Sync),
    ) -> Result<Vec<Lock>, Error>;

    /// Removes the live locks taken from pull request `pull_request` of `repo`
    /// (`owner/name`, any case), each with the audit event `audit` makes of it in the same
    /// transaction; returns them.
    fn release_pull_locks(
        &self,
        tenant_id: &str,
        repo: &str,
        pull_request: u64,
        audit: &(dyn Fn(&Lock) -> AuditEvent + Sync),
    ) -> Result<Vec<Lock>, Error>;
}

/// Who did what: the audit trail.
pub trait AuditStore: Send + Sync + 'static {
    /// Appends one event (its `id` is assigned by the store).
    fn record_audit(&self, event: &AuditEvent) -> Result<(), Error>;

    /// The tenant's events, newest first, one page at a time; only one instance's when
    /// `instance_id` is given.
    fn list_audit(
        &self,
        tenant_id: &str,
        instance_id: Option<InstanceId>,
        options: &ListOptions,
    ) -> Result<AuditPage, Error>;

    /// Removes at most `batch` of the first-recorded events stamped before `before`, of
    /// every tenant; returns how many it removed.
    fn prune_audit(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error>;
}

/// How many rows each table holds, for metrics and `deploybot prune`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableRows {
    pub deployments: i64,
    pub releases: i64,
    pub deployment_logs: i64,
    pub deliveries: i64,
    pub outbox: i64,
    pub audit_events: i64,
}

impl TableRows {
    /// Each table's name and row count.
    pub fn by_table(&self) -> [(&'static str, i64); 6] {
        [
            ("deployments", self.deployments),
            ("releases", self.releases),
            ("deployment_logs", self.deployment_logs),
            ("deliveries", self.deliveries),
            ("outbox", self.outbox),
            ("audit_events", self.audit_events),
        ]
    }
}

/// Retention: removing stored records past their time, a batch per transaction, and the
/// lease that lets one replica at a time do it. Releases and deployments are never
/// removed. Each prune removes at most `batch` rows of every tenant, oldest first, and
/// returns how many it removed.
pub trait RetentionStore: AuditStore {
    /// Removes deployment log lines stored before `before`.
    fn prune_logs(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error>;

    /// Removes outbox items sent or given up on (`sent`, `failed`) last changed before
    /// `before`; pending items stay whatever their age.
    fn prune_outbox(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error>;

    /// Removes the records of webhook deliveries received before `before`. A delivery id
    /// seen again after its record is gone is no longer a duplicate; what it triggered
    /// still deduplicates on the deployment's trigger key.
    fn prune_deliveries(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error>;

    /// How many rows the main tables hold.
    fn table_rows(&self) -> Result<TableRows, Error>;

    /// Takes the maintenance task `name` for `owner` until `lease` from now: true when no
    /// other owner holds an unexpired lease on it and, unless `force`, it last ran at least
    /// `every` ago (or never). Atomic across replicas.
    fn claim_maintenance(
        &self,
        name: &str,
        owner: &str,
        every: Duration,
        lease: Duration,
        force: bool,
    ) -> Result<bool, Error>;

    /// Records that `owner`'s run of `name` ended now and lets its lease go; nothing when
    /// `owner` does not hold it.
    fn finish_maintenance(&self, name: &str, owner: &str) -> Result<(), Error>;
}

/// The deployments' logs.
pub trait LogStore: Send + Sync + 'static {
    /// Appends lines to a deployment's log, numbered from `first_seq`.
    fn append_logs(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        first_seq: i64,
        lines: &[(String, String)],
    ) -> Result<(), Error>;

    /// Log lines after `after_seq`, at most `limit`.
    fn read_logs(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, Error>;
}

/// The configured instances as kept in the database, with their stable ids.
pub trait InstanceStore: Send + Sync + 'static {
    /// Creates the instance `(tenant, name)` or updates its repo and environment; the id
    /// stays the same across restarts.
    fn upsert_instance(
        &self,
        tenant_id: &str,
        name: &str,
        repo: &str,
        environment: &str,
    ) -> Result<Instance, Error>;

    /// One instance of the tenant, by id.
    fn get_instance(&self, tenant_id: &str, id: InstanceId) -> Result<Instance, Error>;

    /// One instance of the tenant, by name.
    fn find_instance(&self, tenant_id: &str, name: &str) -> Result<Instance, Error>;

    /// All instances of the tenant, by name.
    fn list_instances(&self, tenant_id: &str) -> Result<Vec<Instance>, Error>;
}

/// What the `Service` reads and writes: releases and deployments, instances, logs, locks
/// and the audit trail.
pub trait ServiceStore:
    ReleaseStore + InstanceStore + LogStore + LockStore + AuditStore + GateStore
{
}

impl<T: ReleaseStore + InstanceStore + LogStore + LockStore + AuditStore + GateStore + ?Sized>
    ServiceStore for T
{
}

/// The gates a pending deployment waits at (promotion, checks, approval): each change is
/// one transaction that first checks the deployment still waits at the gate it resolves,
/// so replicas and people resolving the same gate at once agree.
pub trait GateStore: Send + Sync + 'static {
    /// Whether a deployment of commit `sha` succeeded on `environment` of `repo`
    /// (`owner/name`, any case) in the tenant: a deploy or rollback, not a dry run, that
    /// ended `succeeded` (or was later replaced by a rollback).
    fn promoted(
        &self,
        tenant_id: &str,
        repo: &str,
        environment: &str,
        sha: &str,
    ) -> Result<bool, Error>;

    /// Moves a pending deployment waiting at `from` on to `to` (None: it may run now), with
    /// its reports; None when it no longer waits at `from`.
    fn advance_waiting(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        from: WaitKind,
        to: Option<&WaitingFor>,
    ) -> Result<Option<Deployment>, Error>;

    /// Ends a pending deployment waiting at `from` as `state` (cancelled or failed) with
    /// `reason`, its final reports and `audit`, in one transaction; None when it no longer
    /// waits at `from`.
    fn end_waiting(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        from: WaitKind,
        state: DeployState,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Deployment>, Error>;

    /// Whether release `id` was ever live on its instance (active now, or active before):
    /// only such a release is a rollback's target, so a rollback never passes the gates
    /// with a release whose deploy they stopped, or with a dry run's.
    fn release_was_live(&self, tenant_id: &str, id: ReleaseId) -> Result<bool, Error>;

    /// Pending deployments of every tenant waiting at `gate`, oldest first, among the
    /// first `limit` that wait for anything.
    fn waiting_at_gate(&self, gate: WaitKind, limit: u32) -> Result<Vec<Deployment>, Error>;

    /// Records `approver`'s approval of a deployment waiting for approval, with `audit`,
    /// in one transaction: once enough deployers approved, it may run. `Error::NotApproved`
    /// when the approver asked for it, or it does not wait for approval.
    fn approve(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        approver: &str,
        audit: &AuditEvent,
    ) -> Result<Deployment, Error>;
}

/// What a watch that caught a failing gate asks of [`WatchStore::watch_failed`].
pub struct WatchFailure<'a> {
    /// The gate's sentence ("error rate 0.042 > 0.01 at watch").
    pub reason: &'a str,
    /// With `lock_on_rollback`: the lock the automatic rollback takes, made from the
    /// rolled-back deployment, unless a lock covers its instance already.
    pub lock: Option<&'a (dyn Fn(&Deployment) -> Lock + Sync)>,
    /// The audit event of that lock, once taken.
    pub lock_audit: &'a (dyn Fn(&Lock) -> AuditEvent + Sync),
}

/// What a failed watch changed.
#[derive(Debug, Clone)]
pub struct WatchRollback {
    /// The watched deployment, now `rolled_back` with the gate's reason.
    pub watched: Deployment,
    /// The automatic rollback to the previous release, queued.
    pub rollback: Deployment,
    /// The lock taken against pushes (`lock_on_rollback`), if one was.
    pub lock: Option<Lock>,
}

/// The watch after a successful deployment (`watch`): one replica at a time holds a
/// deployment's watch under a lease and runs its metric gates until `watch_until`. A watch
/// lasts while its deployment is succeeded and current: no newer deployment of its
/// instance (other than a dry run) has started since. Claiming serves every tenant, as the
/// queue does; the other methods act within `tenant_id`.
pub trait WatchStore: Send + Sync + 'static {
    /// Claims for `owner` until `lease` from now at most `limit` watches: succeeded,
    /// current deployments whose window is open and whose watch lease is free, expired or
    /// `owner`'s. A watch found superseded by a newer deployment ends here.
    fn claim_watches(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Deployment>, Error>;

    /// Extends `owner`'s lease on a watch; false when the watch is over for `owner`: the
    /// window passed, another holds it, the deployment is no longer succeeded, or a newer
    /// deployment superseded it (its watch then ends).
    fn renew_watch(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, Error>;

    /// Lets `owner`'s lease on a watch go, its window unchanged: another replica may take
    /// it over at once.
    fn release_watch(&self, tenant_id: &str, id: DeploymentId, owner: &str) -> Result<(), Error>;

    /// Ends `owner`'s watch now (its window closes): no replica claims it again.
    fn end_watch(&self, tenant_id: &str, id: DeploymentId, owner: &str) -> Result<(), Error>;

    /// A gate failed during `owner`'s watch. In one transaction, only while the deployment
    /// is succeeded, watched by `owner` and current: it becomes `rolled_back` with the
    /// gate's reason and "; rolling back to vN", its watch ends, an automatic rollback to
    /// the previous release is queued (held by no lock or freeze), `rollback.automatic` is
    /// recorded, its final state is reported to GitHub, and `failure.lock` is taken. None
    /// when it is not (nothing changes); a conflict when there is no previous release.
    fn watch_failed(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        owner: &str,
        failure: &WatchFailure<'_>,
    ) -> Result<Option<WatchRollback>, Error>;
}
