//! Where the outbox is kept: the items waiting to be sent, their claims and outcomes.

use std::time::Duration;

use super::item::{GithubAcceptance, NewOutboxItem, OutboxItem, OutboxResult};
use crate::deploy::{DeploymentId, Error};

/// The outbox. Implementations are blocking (call them from a blocking thread) and safe
/// to share between threads.
pub trait OutboxStore: Send + Sync + 'static {
    /// Adds outbox items.
    fn enqueue(&self, items: &[NewOutboxItem]) -> Result<(), Error>;

    /// Claims up to `limit` sendable items: for each ordering key only its oldest pending
    /// item, and only when its retry time has come. Exactly one sender gets each.
    fn claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, Error>;

    /// Extends the claims `owner` still holds on items it is sending, so that only the
    /// claims of a sender that stopped expire.
    fn renew_outbox(&self, owner: &str, lease: Duration) -> Result<(), Error>;

    /// Records how sending a claimed item ended.
    fn complete_outbox(&self, id: i64, owner: &str, result: &OutboxResult) -> Result<(), Error>;

    /// Whether GitHub accepted the Deployment that mirrors deployment `id`.
    fn github_acceptance(
        &self,
        tenant_id: &str,
        id: DeploymentId,
    ) -> Result<GithubAcceptance, Error>;

    /// Whether a newer status report of the same deployment waits (this one is stale).
    fn newer_status_pending(&self, item: &OutboxItem) -> Result<bool, Error>;

    /// The reports of one deployment, in order (for its page).
    fn outbox_items(&self, tenant_id: &str, id: DeploymentId) -> Result<Vec<OutboxItem>, Error>;

    /// The tenant's newest `limit` failed items, newest first: what GitHub refused for
    /// good and what this version cannot read, each with its reason in `last_error`.
    fn failed_outbox(&self, tenant_id: &str, limit: u32) -> Result<Vec<OutboxItem>, Error>;

    /// (pending, failed) outbox items, for metrics.
    fn outbox_counts(&self) -> Result<(i64, i64), Error>;

    /// Stores the id of the GitHub Deployment mirroring a deployment.
    fn set_github_deployment_id(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        github_id: i64,
    ) -> Result<(), Error>;
}
