//! Sending reports to GitHub: one function per kind of report. A deployment's reports
//! read the deployment, its release and its instance when they are sent.

use std::sync::Arc;

use serde_json::{Value, json};

use super::client::{ApiError, GithubClient};
use super::context::Context;
use super::outbox::{
    CommentReaction, CommentReply, DeploymentReaction, DeploymentReply, OutboxItem, OutboxResult,
    StatusReport,
};
use crate::config::InstanceConfig;
use crate::deploy::service::blocking;
use crate::deploy::{
    DeployKind, DeployState, Deployment, DeploymentId, Error, Instance, Release, WORKER_LOST,
};

/// GitHub caps descriptions at 140 characters.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Why sending a report failed.
pub(super) enum Failure {
    Api(ApiError),
    Store(Error),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Store(e)
    }
}

impl Failure {
    /// How the report ends: retried or given up, as the error says.
    pub(super) fn into_result(self) -> OutboxResult {
        match self {
            Failure::Api(e) => OutboxResult::from_api(e),
            Failure::Store(e) => OutboxResult::from_store(e),
        }
    }
}

/// What a deployment report is sent with: the client, and the deployment as it is now.
struct Report<'a> {
    client: &'a GithubClient,
    id: DeploymentId,
    d: Deployment,
    release: Release,
    instance: Instance,
    cfg: Option<&'a InstanceConfig>,
    log_url: String,
}

impl Report<'_> {
    fn repo(&self) -> &str {
        &self.instance.repo
    }

    fn installation(&self) -> Option<u64> {
        self.d.source.installation_id
    }
}

/// The report was logged only, for want of credentials.
fn logged_only() -> OutboxResult {
    OutboxResult::Skipped {
        reason: "no GitHub credentials: logged only".into(),
    }
}

/// What a deployment report is sent with, or how the report ends without it.
async fn load_report<'a>(
    context: &'a Context,
    item: &OutboxItem,
) -> Result<Result<Report<'a>, OutboxResult>, Failure> {
    let Some(id) = item.deployment_id else {
        return Ok(Err(OutboxResult::Failed {
            error: "a deployment report without a deployment".into(),
        }));
    };
    let Some(client) = context.client_or_log(item) else {
        return Ok(Err(logged_only()));
    };
    let (d, release, instance) = context.load(&item.tenant_id, id).await?;
    let cfg = context.instance_config(&item.tenant_id, &instance.name);
    let log_url = (context.log_url)(&d);
    Ok(Ok(Report {
        client,
        id,
        d,
        release,
        instance,
        cfg,
        log_url,
    }))
}

/// Creates the GitHub Deployment mirroring a deployment (once, even when an earlier
/// attempt's outcome is unknown) and stores its id.
pub(super) async fn deployment_created(
    context: &Context,
    item: &OutboxItem,
) -> Result<OutboxResult, Failure> {
    let cx = match load_report(context, item).await? {
        Ok(cx) => cx,
        Err(ended) => return Ok(ended),
    };
    let (d, release, instance) = (&cx.d, &cx.release, &cx.instance);
    if release.commit_sha.is_empty() {
        return Ok(OutboxResult::Skipped {
            reason: "the release has no commit SHA: not mirrored on GitHub".into(),
        });
    }
    let found = if item.in_doubt() {
        let id = d.id.to_string();
        let (sha, environment) = (&release.commit_sha, &instance.environment);
        cx.client
            .find_deployment(cx.repo(), cx.installation(), sha, environment, &id)
            .await?
    } else {
        None
    };
    let github_id = match found {
        Some(github_id) => github_id,
        None => {
            let body = deployment_body(&cx);
            cx.client
                .create_deployment(cx.repo(), cx.installation(), &body)
                .await?
        }
    };
    let store = Arc::clone(&context.store);
    let (tenant, id) = (item.tenant_id.clone(), cx.id);
    blocking(move || store.set_github_deployment_id(&tenant, id, github_id)).await?;
    Ok(OutboxResult::Sent)
}

/// Sends a deployment status, unless a newer one already replaces it.
pub(super) async fn deployment_status(
    context: &Context,
    item: &OutboxItem,
    report: &StatusReport,
) -> Result<OutboxResult, Failure> {
    let cx = match load_report(context, item).await? {
        Ok(cx) => cx,
        Err(ended) => return Ok(ended),
    };
    let Some(github_id) = cx.d.github_deployment_id else {
        return Ok(OutboxResult::Skipped {
            reason: "no GitHub Deployment to report to".into(),
        });
    };
    // Progress that a newer status already replaces is not sent; the first
    // in_progress ("started") always is, so GitHub shows the deployment ran.
    if report.state == DeployState::Running && report.message != "started" {
        let store = Arc::clone(&context.store);
        let stale = item.clone();
        if blocking(move || store.newer_status_pending(&stale)).await? {
            return Ok(OutboxResult::Skipped {
                reason: "stale: a newer status replaces it".into(),
            });
        }
    }
    let body = status_body(&cx, report.state, &report.message);
    let (repo, installation) = (cx.repo(), cx.installation());
    if item.in_doubt()
        && cx
            .client
            .has_status(repo, installation, github_id, &body)
            .await?
    {
        return Ok(OutboxResult::Sent);
    }
    cx.client
        .create_status(repo, installation, github_id, &body)
        .await?;
    Ok(OutboxResult::Sent)
}

/// Reacts to the comment that started a deployment.
pub(super) async fn deployment_reaction(
    context: &Context,
    item: &OutboxItem,
    reaction: &DeploymentReaction,
) -> Result<OutboxResult, Failure> {
    let cx = match load_report(context, item).await? {
        Ok(cx) => cx,
        Err(ended) => return Ok(ended),
    };
    let Some(comment) = cx.d.source.comment_id else {
        return Ok(OutboxResult::Skipped {
            reason: "not triggered by a comment".into(),
        });
    };
    cx.client
        .react(cx.repo(), cx.installation(), comment, &reaction.content)
        .await?;
    Ok(OutboxResult::Sent)
}

/// Replies on the pull request of a command with its deployment's outcome.
pub(super) async fn deployment_reply(
    context: &Context,
    item: &OutboxItem,
    reply: &DeploymentReply,
) -> Result<OutboxResult, Failure> {
    let cx = match load_report(context, item).await? {
        Ok(cx) => cx,
        Err(ended) => return Ok(ended),
    };
    let Some(pr) = cx.d.source.pull_request else {
        return Ok(OutboxResult::Skipped {
            reason: "not triggered on a pull request".into(),
        });
    };
    let reported = as_reported(&cx.d, reply);
    let text = outcome_reply(&reported, &cx.release, &cx.instance, &cx.log_url);
    let key = cx.d.id.to_string();
    let target = (cx.repo(), cx.installation(), pr);
    reply_once(cx.client, target, &key, &text, item.in_doubt()).await
}

/// Reacts to a comment.
pub(super) async fn comment_reaction(
    context: &Context,
    item: &OutboxItem,
    reaction: &CommentReaction,
) -> Result<OutboxResult, Failure> {
    let Some(client) = context.client_or_log(item) else {
        return Ok(logged_only());
    };
    client
        .react(
            &reaction.repo,
            reaction.installation_id,
            reaction.comment_id,
            &reaction.content,
        )
        .await?;
    Ok(OutboxResult::Sent)
}

/// Replies on an issue or pull request, once.
pub(super) async fn comment_reply(
    context: &Context,
    item: &OutboxItem,
    reply: &CommentReply,
) -> Result<OutboxResult, Failure> {
    let Some(client) = context.client_or_log(item) else {
        return Ok(logged_only());
    };
    let key = format!("outbox-{}", item.id);
    let target = (reply.repo.as_str(), reply.installation_id, reply.issue);
    reply_once(client, target, &key, &reply.body, item.in_doubt()).await
}

/// The GitHub Deployment of a deployment, as GitHub wants it.
fn deployment_body(cx: &Report<'_>) -> Value {
    let (d, release, instance, cfg) = (&cx.d, &cx.release, &cx.instance, cx.cfg);
    let trigger = if d.source.trigger.is_empty() {
        &d.initiator
    } else {
        &d.source.trigger
    };
    let mut body = json!({
        "ref": release.commit_sha,
        "task": "deploy",
        "environment": instance.environment,
        "auto_merge": false,
        "required_contexts": cfg.map(|c| c.required_contexts.clone()).unwrap_or_default(),
        "transient_environment": cfg.is_some_and(|c| c.transient_environment),
        "description": clip(&format!("v{} · {}", release.version, trigger), 140),
        "payload": {"deploybot": {
            "deployment_id": d.id.to_string(),
            "release_id": release.id.to_string(),
            "version": release.version,
            "image": release.image,
        }},
    });
    if let Some(production) = cfg.and_then(|c| c.production_environment) {
        body["production_environment"] = json!(production);
    }
    body
}

/// A deployment status as GitHub wants it.
fn status_body(cx: &Report<'_>, state: DeployState, message: &str) -> Value {
    let (github_state, description) = status_line(&cx.d, &cx.release, state, message);
    let mut body = json!({
        "state": github_state,
        "description": clip(&description, 140),
        "log_url": cx.log_url,
        "environment": cx.instance.environment,
    });
    if let Some(url) = cx.cfg.and_then(|c| c.environment_url.clone()) {
        body["environment_url"] = json!(url);
    }
    if github_state == "success" {
        body["auto_inactive"] = json!(true);
    }
    body
}

/// GitHub's state for a deployment state, and the status's description.
fn status_line(
    d: &Deployment,
    release: &Release,
    state: DeployState,
    message: &str,
) -> (&'static str, String) {
    let v = release.version;
    match state {
        DeployState::Pending => ("queued", format!("v{v} queued")),
        DeployState::Running if message == "started" => {
            ("in_progress", format!("v{v} {} started", d.strategy))
        }
        DeployState::Running => ("in_progress", format!("v{v} {message}")),
        DeployState::Succeeded if d.kind == DeployKind::Rollback => {
            ("success", format!("restored v{v}"))
        }
        DeployState::Succeeded => ("success", format!("v{v} deployed ({})", d.strategy)),
        DeployState::Failed if message == WORKER_LOST => ("error", format!("v{v}: {message}")),
        DeployState::Failed => ("failure", format!("v{v} failed: {message}")),
        DeployState::RolledBack => ("failure", format!("v{v} rolled back: {message}")),
        DeployState::Cancelled => (
            "error",
            format!(
                "v{v} {}",
                if message.is_empty() {
                    "cancelled"
                } else {
                    message
                }
            ),
        ),
    }
}

/// Posts `text` on the issue or pull request once: the comment carries an HTML comment
/// (invisible on GitHub) naming `key`, and when an earlier attempt is in doubt, a comment
/// with that marker already there counts as sent.
async fn reply_once(
    client: &GithubClient,
    (repo, installation, issue): (&str, Option<u64>, u64),
    key: &str,
    text: &str,
    in_doubt: bool,
) -> Result<OutboxResult, Failure> {
    let marker = format!("<!-- deploybot:reply:{key} -->");
    if in_doubt
        && client
            .has_comment(repo, installation, issue, &marker)
            .await?
    {
        return Ok(OutboxResult::Sent);
    }
    client
        .comment(repo, installation, issue, &format!("{text}\n\n{marker}"))
        .await?;
    Ok(OutboxResult::Sent)
}

/// The deployment with the final state and error its reply was queued with (replies queued
/// by an older version carry none: then the state it has now).
fn as_reported(d: &Deployment, reply: &DeploymentReply) -> Deployment {
    let mut d = d.clone();
    if let Some(state) = reply.state {
        d.state = state;
        d.error = reply.error.clone();
    }
    d
}

/// The one reply to a command, when its deployment ends.
fn outcome_reply(d: &Deployment, release: &Release, instance: &Instance, log_url: &str) -> String {
    let what = match d.kind {
        DeployKind::Rollback => format!(
            "Rollback of **{}** to **v{}**",
            instance.environment, release.version
        ),
        DeployKind::Deploy => format!(
            "Deployment of **v{}** to **{}**",
            release.version, instance.environment
        ),
    };
    let short: String = release.commit_sha.chars().take(7).collect();
    let line = match d.state {
        DeployState::Succeeded => {
            format!("🚀 {what} succeeded ({}, `{}`).", d.strategy, release.image)
        }
        DeployState::RolledBack => format!(
            "⚠️ {what} failed and the previous release was restored: {}",
            d.error
        ),
        DeployState::Cancelled => format!("🛑 {what} was cancelled: {}", d.error),
        DeployState::Pending | DeployState::Running | DeployState::Failed => {
            format!("❌ {what} failed: {}", d.error)
        }
    };
    format!(
        "{line}\n\nCommit `{short}` · [deployment {}]({log_url})",
        d.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_tells_the_outcome_it_was_queued_with() {
        let request = crate::deploy::DeployRequest {
            instance_id: crate::deploy::InstanceId::new(),
            image: "ghcr.io/acme/web:1".into(),
            env: Default::default(),
            strategy: String::new(),
            notes: String::new(),
            commit_sha: "a10867b14bb761a232cd80139fbd4c0d33264240".into(),
            params: Default::default(),
            noop: false,
        };
        let release = Release::from_request("acme", &request);
        let mut d = Deployment::pending(&release, "rolling", "octocat");
        // Since queued: a later rollback marked it rolled back.
        d.state = DeployState::RolledBack;
        d.error = "rolled back by dep_x".into();
        let reply =
            |payload: Value| -> DeploymentReply { serde_json::from_value(payload).unwrap() };
        let sent = as_reported(&d, &reply(json!({"state": "succeeded", "error": ""})));
        assert_eq!(sent.state, DeployState::Succeeded);
        assert_eq!(sent.error, "");
        let old = as_reported(&d, &reply(json!({})));
        assert_eq!(old.state, DeployState::RolledBack);
        assert_eq!(old.error, "rolled back by dep_x");
    }

    #[test]
    fn descriptions_fit_githubs_limit() {
        let long = "x".repeat(500);
        let clipped = clip(&long, 140);
        assert_eq!(clipped.chars().count(), 140);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip("short", 140), "short");
    }
}
