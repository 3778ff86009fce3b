//! The persistence interface of the domain, as a few traits named for what they hold.
//! Every method is scoped by tenant (a row of another tenant is reported as not found),
//! except the queue's, which serve workers of every tenant.

use std::time::Duration;

use super::{
    DeployListResult, DeployState, Deployment, DeploymentId, Error, ExpiredLease, Instance,
    InstanceId, Lease, ListOptions, LogEntry, Release, ReleaseId, ReleaseListResult,
    TriggeredDeployment,
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

/// What the `Service` reads and writes: releases and deployments, instances and logs.
pub trait ServiceStore: ReleaseStore + InstanceStore + LogStore {}

impl<T: ReleaseStore + InstanceStore + LogStore + ?Sized> ServiceStore for T {}
