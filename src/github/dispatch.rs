//! What each kind of outbox work does: the [`WorkHandler`] the sender hands items to, with
//! one arm per [`Work`] variant calling its report, job or the comment's commands.

use super::context::Context;
use super::outbox::{OutboxItem, OutboxResult, Work, WorkHandler};
use super::{commands, jobs, reports};

/// Sends reports, runs jobs and comment commands with one [`Context`].
pub struct Dispatch {
    cx: Context,
}

impl Dispatch {
    /// The handler of every kind of work; says once when reports can only be logged.
    pub fn new(cx: Context) -> Self {
        if cx.client.is_none() {
            tracing::warn!(
                "no GitHub credentials (GITHUB_TOKEN or GITHUB_APP_ID + key): reports are written to the log and the pages only"
            );
        }
        Self { cx }
    }
}

#[async_trait::async_trait]
impl WorkHandler for Dispatch {
    async fn handle(&self, item: &OutboxItem, work: &Work) -> OutboxResult {
        let cx = &self.cx;
        let outcome = match work {
            Work::DeploymentCreated(_) => reports::deployment_created(cx, item).await,
            Work::DeploymentStatus(report) => reports::deployment_status(cx, item, report).await,
            Work::DeploymentReaction(reaction) => {
                reports::deployment_reaction(cx, item, reaction).await
            }
            Work::DeploymentReply(reply) => reports::deployment_reply(cx, item, reply).await,
            Work::CommentReaction(reaction) => reports::comment_reaction(cx, item, reaction).await,
            Work::CommentReply(reply) => reports::comment_reply(cx, item, reply).await,
            Work::ResolveTag(job) => return jobs::resolve_tag(cx, item, job).await,
            Work::PullHead(job) => return jobs::pull_head(cx, item, job).await,
            Work::Comment(job) => return commands::comment(cx, item, job).await,
            Work::PullClosed(job) => return jobs::pull_closed(cx, item, job).await,
        };
        outcome.unwrap_or_else(|failure| failure.into_result())
    }
}
