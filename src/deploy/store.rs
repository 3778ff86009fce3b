//! The persistence interface of the domain. Every method is scoped by tenant: a row of
//! another tenant is reported as not found.

use std::time::Duration;

use super::{
    DeployListResult, Deployment, DeploymentId, Error, Instance, InstanceId, Lease, ListOptions,
    LogEntry, Release, ReleaseId, ReleaseListResult,
};

/// Where deployments, releases and instances are kept. Implementations are blocking
/// (call them from a blocking thread) and safe to share between threads.
pub trait Store: Send + Sync + 'static {
    /// Stores a new deployment.
    fn insert_deployment(&self, deployment: &Deployment) -> Result<(), Error>;

    /// One deployment of the tenant.
    fn get_deployment(&self, tenant_id: &str, id: DeploymentId) -> Result<Deployment, Error>;

    /// One deployment of the tenant with its release and its instance, read together
    /// (one query: every report to GitHub needs all three).
    fn get_deployment_context(
        &self,
        tenant_id: &str,
        id: DeploymentId,
    ) -> Result<(Deployment, Release, Instance), Error>;

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

    /// In one transaction: numbers and stores `release`, then stores `deployment` of it.
    fn insert_release_and_deployment(
        &self,
        release: &Release,
        deployment: &Deployment,
    ) -> Result<(Release, Deployment), Error>;

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

    /// pending → cancelled at once; running → cancellation requested (the worker running
    /// it stops it and marks it cancelled); any other state → invalid-state error.
    fn request_cancel(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        by: &str,
    ) -> Result<Deployment, Error>;

    // The queue. These serve workers, which run deployments of every tenant; their
    // results never reach a user unfiltered.

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
    fn expired_leases(&self) -> Result<Vec<super::ExpiredLease>, Error>;

    /// The deployments named in `ids` that are still running with an expired lease
    /// become failed ("worker lost; outcome unknown"); returns them.
    fn recover_expired(&self, ids: &[DeploymentId]) -> Result<Vec<Deployment>, Error>;

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

    /// Makes `release` the one active release of its instance.
    fn activate_release(&self, tenant_id: &str, release_id: ReleaseId) -> Result<(), Error>;

    // Webhooks and the outbox.

    /// In one transaction: records the delivery (a delivery id seen before is a
    /// duplicate and writes nothing), creates the triggered deployments whose trigger key
    /// has not deployed yet, and enqueues `items`.
    fn record_delivery(
        &self,
        delivery: &super::Delivery,
        triggered: &[super::TriggeredDeployment],
        items: &[super::NewOutboxItem],
    ) -> Result<super::DeliveryRecord, Error>;

    /// Which of these delivery ids (`X-GitHub-Delivery`) are stored.
    fn stored_deliveries(&self, ids: &[String]) -> Result<Vec<String>, Error>;

    /// Creates one triggered deployment (unless its key already deployed) and enqueues
    /// `items`, in one transaction.
    fn insert_triggered(
        &self,
        triggered: &super::TriggeredDeployment,
        items: &[super::NewOutboxItem],
    ) -> Result<super::DeliveryRecord, Error>;

    /// Adds outbox items.
    fn enqueue(&self, items: &[super::NewOutboxItem]) -> Result<(), Error>;

    /// Claims up to `limit` sendable items: for each ordering key only its oldest pending
    /// item, and only when its retry time has come. Exactly one sender gets each.
    fn claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<super::OutboxItem>, Error>;

    /// Extends the claims `owner` still holds on items it is sending, so that only the
    /// claims of a sender that stopped expire.
    fn renew_outbox(&self, owner: &str, lease: Duration) -> Result<(), Error>;

    /// Records how sending a claimed item ended.
    fn complete_outbox(
        &self,
        id: i64,
        owner: &str,
        result: &super::OutboxResult,
    ) -> Result<(), Error>;

    /// Whether GitHub accepted the Deployment that mirrors deployment `id`.
    fn github_acceptance(
        &self,
        tenant_id: &str,
        id: DeploymentId,
    ) -> Result<super::GithubAcceptance, Error>;

    /// Whether a newer status report of the same deployment waits (this one is stale).
    fn newer_status_pending(&self, item: &super::OutboxItem) -> Result<bool, Error>;

    /// The reports of one deployment, in order (for its page).
    fn outbox_items(
        &self,
        tenant_id: &str,
        id: DeploymentId,
    ) -> Result<Vec<super::OutboxItem>, Error>;

    /// (pending, failed) outbox items, for metrics.
    fn outbox_counts(&self) -> Result<(i64, i64), Error>;

    /// How many deployments of all tenants are in each state (absent states: none), for metrics.
    fn count_by_state(&self) -> Result<Vec<(super::DeployState, i64)>, Error>;

    /// Stores the id of the GitHub Deployment mirroring a deployment.
    fn set_github_deployment_id(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        github_id: i64,
    ) -> Result<(), Error>;

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

    // Pull-request comments.

    /// In one transaction: records that `step` acted, makes its `effect` and enqueues the
    /// items `items` builds from it. `None` (and nothing written) when the step acted before.
    fn act_on_comment(
        &self,
        step: &super::CommentStep,
        effect: &super::CommentEffect,
        items: super::CommentItems<'_>,
    ) -> Result<Option<super::CommentActed>, Error>;

    /// The steps of a comment that acted already.
    fn comment_steps(
        &self,
        tenant_id: &str,
        repo: &str,
        comment_id: u64,
    ) -> Result<Vec<i32>, Error>;

    /// Records that a pull request's head became `head.head_sha` at `head.at` (GitHub's time).
    fn record_pull_head(
        &self,
        tenant_id: &str,
        repo: &str,
        pull_request: u64,
        head: &super::PullHead,
    ) -> Result<(), Error>;

    /// The recorded heads of a pull request, oldest first.
    fn pull_heads(
        &self,
        tenant_id: &str,
        repo: &str,
        pull_request: u64,
    ) -> Result<Vec<super::PullHead>, Error>;
}
