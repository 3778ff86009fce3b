//! What a pull-request comment may change, and the record that it changed it once.

use chrono::{DateTime, Utc};

use super::{Deployment, DeploymentId, NewOutboxItem, TriggeredDeployment};

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
    Cancel { ids: Vec<DeploymentId>, by: String },
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
