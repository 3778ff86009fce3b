//! The persistence interface of the domain. Every method is scoped by tenant: a row of
//! another tenant is reported as not found.

use super::{
    DeployListResult, Deployment, DeploymentId, Error, Instance, InstanceId, ListOptions, Release,
    ReleaseId, ReleaseListResult,
};

/// Where deployments, releases and instances are kept. Implementations are blocking
/// (call them from a blocking thread) and safe to share between threads.
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

    /// In one transaction: numbers and stores `release`, then stores `deployment` of it.
    fn insert_release_and_deployment(
        &self,
        release: &Release,
        deployment: &Deployment,
    ) -> Result<(Release, Deployment), Error>;

    /// Makes `release` the one active release of its instance.
    fn activate_release(&self, tenant_id: &str, release_id: ReleaseId) -> Result<(), Error>;

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
