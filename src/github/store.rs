//! What `github` keeps in the database besides the outbox: webhook deliveries, the
//! deployments they trigger, and what pull-request comments changed. The traits are
//! implemented in `store/`.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::outbox::{NewOutboxItem, OutboxStore};
use crate::deploy::{
    DeployState, Deployment, DeploymentId, Error, GateStore, InstanceId, InstanceStore, LogStore,
    ReleaseStore, TriggeredDeployment,
};

/// A webhook delivery as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    pub action: String,
    pub tenant_id: String,
    pub repo: String,
}

/// What recording a delivery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The delivery id was seen before: nothing was written.
    pub duplicate: bool,
    pub created: Vec<Deployment>,
    /// Deployments not created because their trigger key already deployed.
    pub already: Vec<DeploymentId>,
    /// How many deliveries were committed in the same transaction as this one (group
    /// commit; 1 when it was written alone, 0 when it was not a delivery).
    pub batch: usize,
}

/// The GitHub repository a delivery names, as GitHub identifies it. The first one seen
/// for a name is kept ("pinned"); a later delivery for the same name with another
/// repository id is refused (the name now belongs to another repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySeen {
    /// `owner/name`, lower-cased.
    pub full_name: String,
    /// The owner, lower-cased.
    pub tenant: String,
    pub repository_id: i64,
    pub installation_id: Option<i64>,
}

/// Why a delivery was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] Error),
    /// The name is pinned to another repository id.
    #[error(
        "{full_name} is now repository id {delivered}, but deploybot knows it as repository id \
         {pinned}: the name may have been deleted and re-created by someone else, so nothing \
         was done. If the new repository is yours, run `deploybot repos accept {full_name}` \
         and redeliver"
    )]
    RepositoryReplaced {
        full_name: String,
        pinned: i64,
        delivered: i64,
    },
}

/// One step of a comment: step 0 acknowledges the comment (👀, or 😕 for a commenter
/// without permission), step N is its N-th command line. Each acts at most once ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentStep {
    pub tenant_id: String,
    /// `owner/name`, lower-cased.
    pub repo: String,
    pub comment_id: u64,
    pub step: i32,
}

/// The change a step makes, in the same transaction as the record that it acted.
#[derive(Debug, Clone)]
pub enum CommentEffect {
    /// Only the outbox items (a reaction, a reply).
    Reply,
    /// A commenter without permission: the reply, if any, is allowed once an hour per
    /// commenter and pull request.
    Stranger {
        pull_request: u64,
        login: String,
        within: std::time::Duration,
    },
    /// Queue a deployment (unless its trigger key already deployed).
    Deploy(Box<TriggeredDeployment>),
    /// Cancel these deployments (queued ones at once, a running one is asked to stop).
    /// Each cancel is in the audit trail as `audit`, its detail followed by the
    /// deployment, written with it.
    Cancel {
        ids: Vec<DeploymentId>,
        by: String,
        audit: crate::deploy::AuditEvent,
    },
}

/// What a step did when it acted.
#[derive(Debug, Clone, Default)]
pub struct CommentActed {
    /// The deployment queued by `Deploy`.
    pub created: Option<Deployment>,
    /// `Deploy` found its trigger key already deployed.
    pub already: bool,
    /// What `Cancel` cancelled or asked to stop, as it is now.
    pub cancelled: Vec<Deployment>,
    /// `Cancel` targets that had finished in the meantime.
    pub finished: Vec<DeploymentId>,
    /// `Stranger`: no reply went to this commenter on this pull request in the last hour.
    pub may_reply: bool,
}

/// Builds the outbox items of a step from what it did (its reply names what it changed).
pub type CommentItems<'a> = &'a (dyn Fn(&CommentActed) -> Vec<NewOutboxItem> + Sync);

/// A pull request's head commit, and the GitHub time it became the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullHead {
    pub head_sha: String,
    pub at: DateTime<Utc>,
}

/// Webhook deliveries and what they trigger, and the record of pull-request comments.
/// The blocking methods are called from a blocking thread.
#[async_trait::async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// In one transaction: records the delivery (a delivery id seen before is a
    /// duplicate and writes nothing), creates the triggered deployments whose trigger key
    /// has not deployed yet, and enqueues `items`.
    fn record_delivery(
        &self,
        delivery: &Delivery,
        triggered: &[TriggeredDeployment],
        items: &[NewOutboxItem],
    ) -> Result<DeliveryRecord, Error>;

    /// `record_delivery`, group-committed with the deliveries arriving meanwhile, and in
    /// the same transaction: `seen` is checked against (or becomes) the repository's pin,
    /// and the database is waited for only until `deadline` (then `Error::Unavailable`,
    /// with nothing stored). The answer comes after the transaction has committed.
    async fn record_delivery_checked(
        &self,
        delivery: Delivery,
        triggered: Vec<TriggeredDeployment>,
        items: Vec<NewOutboxItem>,
        seen: Option<RepositorySeen>,
        deadline: Option<Instant>,
    ) -> Result<DeliveryRecord, IngestError>;

    /// Which of these delivery ids (`X-GitHub-Delivery`) are stored.
    fn stored_deliveries(&self, ids: &[String]) -> Result<Vec<String>, Error>;

    /// In one transaction: records that `step` acted, makes its `effect` and enqueues the
    /// items `items` builds from it. `None` (and nothing written) when the step acted before.
    fn act_on_comment(
        &self,
        step: &CommentStep,
        effect: &CommentEffect,
        items: CommentItems<'_>,
    ) -> Result<Option<CommentActed>, Error>;

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
        head: &PullHead,
    ) -> Result<(), Error>;

    /// The recorded heads of a pull request, oldest first.
    fn pull_heads(
        &self,
        tenant_id: &str,
        repo: &str,
        pull_request: u64,
    ) -> Result<Vec<PullHead>, Error>;
}

/// The one reply comment of a command (`reply_key`: the deployment's id), edited in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRecord {
    pub tenant_id: String,
    pub reply_key: String,
    /// `owner/name`.
    pub repo: String,
    pub issue: u64,
    /// 32 hex digits from the operating system's random source, written invisibly into the
    /// comment: finds it again when the answer to its creation was lost. Unguessable, so
    /// that nobody else's comment can pass for it.
    pub marker: String,
    /// The GitHub comment, once created.
    pub comment_id: Option<u64>,
    /// When the comment was last written (created or edited).
    pub edited_at: Option<DateTime<Utc>>,
    /// This call created the record: no earlier attempt can have posted the comment.
    pub created: bool,
}

/// A deployment of an instance's queue: running or pending, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: DeploymentId,
    pub state: DeployState,
    pub version: i64,
    /// It waits for something (a lock, a freeze) before it may run.
    pub waiting: bool,
}

/// The reply comments of commands, and what their text reads.
pub trait ReplyStore: Send + Sync + 'static {
    /// The record of the reply `reply_key`, created with a fresh marker on first use
    /// (then `created`).
    fn reply_record(
        &self,
        tenant_id: &str,
        reply_key: &str,
        repo: &str,
        issue: u64,
    ) -> Result<ReplyRecord, Error>;

    /// Records the comment the reply is (created or found) and when it was written.
    fn set_reply_comment(
        &self,
        tenant_id: &str,
        reply_key: &str,
        comment_id: u64,
        at: DateTime<Utc>,
    ) -> Result<(), Error>;

    /// The running and pending deployments of an instance, oldest first.
    fn instance_queue(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Vec<QueueEntry>, Error>;
}

/// What the GitHub sender and its jobs read and write: deployments with their releases,
/// instances and logs, deliveries and comments, reply comments, and the outbox.
pub trait GithubStore:
    ReleaseStore + InstanceStore + LogStore + DeliveryStore + ReplyStore + OutboxStore + GateStore
{
}

impl<
    T: ReleaseStore
        + InstanceStore
        + LogStore
        + DeliveryStore
        + ReplyStore
        + OutboxStore
        + GateStore
        + ?Sized,
> GithubStore for T
{
}
