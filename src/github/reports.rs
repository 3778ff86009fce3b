//! Sending reports to GitHub: one function per kind of report. A deployment's reports
//! read the deployment, its release and its instance when they are sent.

use std::sync::Arc;

use serde_json::{Value, json};

use super::client::{ApiError, GithubClient};
use super::context::Context;
use super::markdown::code_span;
use super::outbox::{
    CommentReaction, CommentReply, DeploymentReaction, DeploymentReply, OutboxItem, OutboxResult,
    StatusReport,
};
use super::store::{GithubStore, QueueEntry};
use crate::config::InstanceConfig;
use crate::deploy::service::blocking;
use crate::deploy::{
    DeployKind, DeployState, Deployment, DeploymentId, Error, Instance, Release, WORKER_LOST,
};

/// GitHub caps descriptions at 140 characters (it answers 422 to a longer one).
pub const DESCRIPTION_CHARS: usize = 140;

/// `text` in at most `max` characters: cut at a character boundary, keeping its start,
/// with "…" in place of what did not fit.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    let mut out = kept.trim_end().to_string();
    out.push('…');
    out
}

/// The reason a person gave for a rollback (`/rollback --reason`, the API's and the CLI's
/// `reason`), which its trigger carries after ": " ("rollback by alice: bad migration").
pub fn rollback_reason(d: &Deployment) -> Option<&str> {
    if d.kind != DeployKind::Rollback {
        return None;
    }
    let (_, reason) = d.source.trigger.split_once(": ")?;
    Some(reason.trim()).filter(|r| !r.is_empty())
}

/// What a cancel's error adds to "cancelled": "restored v12" of "cancelled; restored
/// v12"; nothing of a bare "cancelled".
fn cancel_reason(error: &str) -> &str {
    let error = error.trim();
    match error.strip_prefix("cancelled") {
        Some("") => "",
        Some(rest) if rest.starts_with(';') => rest.trim_start_matches(';').trim(),
        _ => error,
    }
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
    cfg: Option<InstanceConfig>,
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

/// The one reply comment of a command's deployment: created on the first send, edited
/// in place afterwards, telling the deployment's current state (queued with its place in
/// line, waiting, running) or the final outcome it was queued with.
pub(super) async fn deployment_reply(
    context: &Context,
    item: &OutboxItem,
    reply: &DeploymentReply,
) -> Result<OutboxResult, Failure> {
    // Taken before the deployment is read: a run that started after this time is newer
    // than what the reply will show.
    let now = crate::deploy::now();
    let cx = match load_report(context, item).await? {
        Ok(cx) => cx,
        Err(ended) => return Ok(ended),
    };
    let Some(pr) = cx.d.source.pull_request else {
        return Ok(OutboxResult::Skipped {
            reason: "not triggered on a pull request".into(),
        });
    };
    // A refresh that finds the deployment ended leaves the reply to the outcome report
    // queued behind it, which tells the outcome the deployment ended with (a later
    // rollback may since have changed its state).
    if reply.state.is_none() && has_ended(&cx.d) {
        return Ok(OutboxResult::Skipped {
            reason: "ended: the outcome reply follows".into(),
        });
    }
    let store = Arc::clone(&context.store);
    let (tenant, key, repo) = (
        item.tenant_id.clone(),
        cx.d.id.to_string(),
        cx.repo().to_string(),
    );
    let record = blocking(move || store.reply_record(&tenant, &key, &repo, pr)).await?;
    let reported = as_reported(&cx.d, reply);
    if reply.state.is_none()
        && reported.state == DeployState::Running
        && running_shown_recently(&reported, record.edited_at, now)
    {
        return Ok(OutboxResult::Skipped {
            reason: "the reply showed this run less than 3 s ago".into(),
        });
    }
    let text = reply_text(context, &cx, &reported, reply.state.is_some()).await?;
    let body = format!("{text}\n\n{}", reply_marker(&record.marker));
    let (repo, installation) = (cx.repo(), cx.installation());
    // A record this call did not create may stand for a comment whose creation's answer
    // was lost (the attempt that posted it ended before recording it): look first.
    let existing = match record.comment_id {
        Some(id) => Some(id),
        None if item.in_doubt() || !record.created => {
            let marker = reply_marker(&record.marker);
            cx.client
                .find_comment(repo, installation, pr, &marker)
                .await?
        }
        None => None,
    };
    let comment = match existing {
        Some(id) => {
            match cx.client.edit_comment(repo, installation, id, &body).await {
                Ok(()) => id,
                // Someone deleted the reply: there is nothing left to edit.
                Err(ApiError::Refused { status: 404, .. }) => {
                    return Ok(OutboxResult::Skipped {
                        reason: format!("the reply comment {id} is gone"),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => cx.client.comment(repo, installation, pr, &body).await?,
    };
    let store = Arc::clone(&context.store);
    let (tenant, key) = (item.tenant_id.clone(), record.reply_key.clone());
    blocking(move || store.set_reply_comment(&tenant, &key, comment, now)).await?;
    Ok(OutboxResult::Sent)
}

/// Whether the deployment has reached its final state.
fn has_ended(d: &Deployment) -> bool {
    !matches!(d.state, DeployState::Pending | DeployState::Running)
}

/// How often a running deployment's reply is edited at most.
const RUNNING_EDIT_EVERY: chrono::Duration = chrono::Duration::seconds(3);

/// Whether the reply was written while the deployment already ran, less than 3 s ago:
/// then it shows this run, and the newer progress waits for the next edit.
fn running_shown_recently(
    d: &Deployment,
    edited_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    match (edited_at, d.started_at) {
        (Some(edited), Some(started)) => edited >= started && now - edited < RUNNING_EDIT_EVERY,
        _ => false,
    }
}

/// The invisible line that marks a reply comment as this reply's.
fn reply_marker(marker: &str) -> String {
    format!("<!-- deploybot:reply:{marker} -->")
}

/// The reply's text for the deployment as reported: its final outcome when `last` (or it
/// has finished), otherwise its state now.
async fn reply_text(
    context: &Context,
    cx: &Report<'_>,
    d: &Deployment,
    last: bool,
) -> Result<String, Failure> {
    let (release, instance) = (&cx.release, &cx.instance);
    let mut text = if last || has_ended(d) {
        let plan = if d.noop {
            let store = Arc::clone(&context.store);
            let (tenant, id) = (d.tenant_id.clone(), d.id);
            Some(blocking(move || last_log_lines(store.as_ref(), &tenant, id, PLAN_LINES)).await?)
        } else {
            None
        };
        let mut text = outcome_reply(d, release, instance, &cx.log_url);
        if let Some(lines) = plan {
            text.push_str(&plan_block(&lines));
        }
        text
    } else {
        let what = reply_subject(d, release, instance);
        match (d.state, &d.waiting_for) {
            (DeployState::Pending, Some(waiting)) => {
                // The reason may hold a person's text (a lock's reason): shown as code.
                let mut waiting = waiting.clone();
                if !waiting.reason.is_empty() {
                    waiting.reason = code_span(&waiting.reason);
                }
                format!("⏸️ {what} is {}.", waiting.describe())
            }
            (DeployState::Pending, None) => {
                let store = Arc::clone(&context.store);
                let (tenant, instance_id) = (d.tenant_id.clone(), d.instance_id);
                let queue = blocking(move || store.instance_queue(&tenant, instance_id)).await?;
                format!("⏳ {what} is {}.", queued_line(d.id, &queue))
            }
            _ => {
                let p = &d.progress;
                let phase = if p.phase.is_empty() {
                    "starting"
                } else {
                    p.phase.as_str()
                };
                format!(
                    "🔄 {what} is running: {phase} ({}%).",
                    p.percent.clamp(0, 100)
                )
            }
        }
    };
    if let Some(reason) = rollback_reason(d) {
        text.push_str(&format!("\n\nReason: {}", code_span(reason)));
    }
    if !d.params.is_empty() {
        let listed: Vec<String> = d
            .params
            .iter()
            .map(|(k, v)| code_span(&format!("{k}={v}")))
            .collect();
        text.push_str(&format!("\n\nParameters: {}", listed.join(", ")));
    }
    Ok(text)
}

/// How many of a dry run's last log lines its reply shows.
const PLAN_LINES: usize = 30;

/// The last `n` stored log lines of a deployment (stored logs have their secrets masked).
fn last_log_lines(
    store: &dyn GithubStore,
    tenant: &str,
    id: DeploymentId,
    n: usize,
) -> Result<Vec<String>, Error> {
    let mut tail = std::collections::VecDeque::with_capacity(n + 1);
    let mut after = 0;
    // At most 200 pages of 500 lines: a plan longer than that shows its 100,000th line last.
    for _ in 0..200 {
        let page = store.read_logs(tenant, id, after, 500)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let full = page.len() == 500;
        for entry in page {
            tail.push_back(entry.line);
            if tail.len() > n {
                tail.pop_front();
            }
        }
        if !full {
            break;
        }
    }
    Ok(tail.into())
}

/// The plan's output as a collapsed block, fenced so that no line of it is read as
/// Markdown (a fence inside the output is broken up).
fn plan_block(lines: &[String]) -> String {
    if lines.is_empty() {
        return "\n\nThe plan wrote no output.".into();
    }
    let output: Vec<String> = lines
        .iter()
        .map(|l| l.replace("```", "`\u{200b}``"))
        .collect();
    format!(
        "\n\n<details><summary>Plan output</summary>\n\n```\n{}\n```\n\n</details>",
        output.join("\n")
    )
}

/// "queued: 2nd in line behind v12 (running)": the deployment's place among the running
/// and pending deployments of its instance, and what is ahead of it.
fn queued_line(id: DeploymentId, queue: &[QueueEntry]) -> String {
    let Some(at) = queue.iter().position(|e| e.id == id) else {
        return "queued".into();
    };
    if at == 0 {
        return "queued: next in line".into();
    }
    let ahead: Vec<String> = queue[..at]
        .iter()
        .take(5)
        .map(|e| {
            let state = match (e.state, e.waiting) {
                (DeployState::Running, _) => "running",
                (_, true) => "waiting",
                _ => "queued",
            };
            format!("v{} ({state})", e.version)
        })
        .collect();
    let more = if at > 5 {
        format!(" and {} more", at - 5)
    } else {
        String::new()
    };
    format!(
        "queued: {} in line behind {}{more}",
        ordinal(at + 1),
        ahead.join(", ")
    )
}

/// 1st, 2nd, 3rd, 4th … 11th, 12th, 13th, 21st.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
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
    let store = Arc::clone(&context.store);
    let (tenant, key, repo, issue) = (
        item.tenant_id.clone(),
        format!("outbox-{}", item.id),
        reply.repo.clone(),
        reply.issue,
    );
    let record = blocking(move || store.reply_record(&tenant, &key, &repo, issue)).await?;
    if record.comment_id.is_some() {
        return Ok(OutboxResult::Sent);
    }
    let target = (reply.repo.as_str(), reply.installation_id, reply.issue);
    let marker = reply_marker(&record.marker);
    let in_doubt = item.in_doubt() || !record.created;
    let comment = reply_once(client, target, &marker, &reply.body, in_doubt).await?;
    let store = Arc::clone(&context.store);
    let (tenant, key) = (item.tenant_id.clone(), record.reply_key);
    let now = crate::deploy::now();
    blocking(move || store.set_reply_comment(&tenant, &key, comment, now)).await?;
    Ok(OutboxResult::Sent)
}

/// The GitHub Deployment of a deployment, as GitHub wants it.
fn deployment_body(cx: &Report<'_>) -> Value {
    let (d, release, instance, cfg) = (&cx.d, &cx.release, &cx.instance, cx.cfg.as_ref());
    let trigger = if d.source.trigger.is_empty() {
        &d.initiator
    } else {
        &d.source.trigger
    };
    // A dry run is its own task, so that GitHub never takes it for the live deployment.
    let (task, description) = if d.noop {
        (
            "deploy:noop",
            format!("dry run of v{} · {}", release.version, trigger),
        )
    } else {
        ("deploy", format!("v{} · {}", release.version, trigger))
    };
    let mut body = json!({
        "ref": release.commit_sha,
        "task": task,
        "environment": instance.environment,
        "auto_merge": false,
        "required_contexts": cfg.map(|c| c.required_contexts.clone()).unwrap_or_default(),
        "transient_environment": cfg.is_some_and(|c| c.transient_environment),
        "description": clip(&description, DESCRIPTION_CHARS),
        "payload": {"deploybot": {
            "deployment_id": d.id.to_string(),
            "release_id": release.id.to_string(),
            "version": release.version,
            "image": release.image,
        }},
    });
    if d.noop {
        body["payload"]["deploybot"]["noop"] = json!(true);
    }
    if !d.params.is_empty() {
        body["payload"]["deploybot"]["params"] = json!(d.params);
    }
    if let Some(production) = cfg.and_then(|c| c.production_environment) {
        body["production_environment"] = json!(production);
    }
    body
}

/// A deployment status as GitHub wants it.
fn status_body(cx: &Report<'_>, state: DeployState, message: &str) -> Value {
    let (github_state, description) = status_text(&cx.d, &cx.release, state, message);
    let mut body = json!({
        "state": github_state,
        "description": description,
        "log_url": cx.log_url,
        "environment": cx.instance.environment,
    });
    if let Some(url) = cx.cfg.as_ref().and_then(|c| c.environment_url.clone()) {
        body["environment_url"] = json!(url);
    }
    // A dry run's success must not mark the live deployment inactive (GitHub does when
    // `auto_inactive` is left out, so a dry run says false).
    if cx.d.noop {
        body["auto_inactive"] = json!(false);
    } else if github_state == "success" {
        body["auto_inactive"] = json!(true);
    }
    body
}

/// GitHub's state for a deployment state, and the status's description as sent: within
/// GitHub's 140 characters, the start of a reason kept.
fn status_text(
    d: &Deployment,
    release: &Release,
    state: DeployState,
    message: &str,
) -> (&'static str, String) {
    let (github_state, description) = status_line(d, release, state, message);
    (github_state, clip(&description, DESCRIPTION_CHARS))
}

/// GitHub's state for a deployment state, and the status's description.
fn status_line(
    d: &Deployment,
    release: &Release,
    state: DeployState,
    message: &str,
) -> (&'static str, String) {
    let v = release.version;
    if d.noop {
        return noop_status_line(v, state, message);
    }
    match state {
        DeployState::Pending if message.is_empty() => ("queued", format!("v{v} queued")),
        DeployState::Pending => ("queued", format!("v{v} {message}")),
        DeployState::Running if message == "started" => {
            ("in_progress", format!("v{v} {} started", d.strategy))
        }
        DeployState::Running => ("in_progress", format!("v{v} {message}")),
        DeployState::Succeeded if d.kind == DeployKind::Rollback => match rollback_reason(d) {
            Some(reason) => ("success", format!("restored v{v}: {reason}")),
            None => ("success", format!("restored v{v}")),
        },
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

/// GitHub's state and the status's description for a dry run.
fn noop_status_line(v: i64, state: DeployState, message: &str) -> (&'static str, String) {
    match state {
        DeployState::Pending if message.is_empty() => ("queued", format!("dry run of v{v} queued")),
        DeployState::Pending => ("queued", format!("dry run of v{v} {message}")),
        DeployState::Running if message == "started" => {
            ("in_progress", format!("dry run of v{v} planning"))
        }
        DeployState::Running => ("in_progress", format!("dry run of v{v} {message}")),
        DeployState::Succeeded => ("success", format!("dry run of v{v} succeeded")),
        DeployState::Cancelled => ("error", format!("dry run of v{v} cancelled")),
        DeployState::Failed | DeployState::RolledBack => {
            ("failure", format!("dry run of v{v} failed: {message}"))
        }
    }
}

/// Posts `text` on the issue or pull request once, with `marker` (an HTML comment,
/// invisible on GitHub) on a line of its own: when an earlier attempt is in doubt, the
/// comment carrying that marker is the one it posted. The comment's id.
async fn reply_once(
    client: &GithubClient,
    (repo, installation, issue): (&str, Option<u64>, u64),
    marker: &str,
    text: &str,
    in_doubt: bool,
) -> Result<u64, Failure> {
    if in_doubt
        && let Some(found) = client
            .find_comment(repo, installation, issue, marker)
            .await?
    {
        return Ok(found);
    }
    Ok(client
        .comment(repo, installation, issue, &format!("{text}\n\n{marker}"))
        .await?)
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

/// What a reply is about: "Deployment of **v3** to **production**".
fn reply_subject(d: &Deployment, release: &Release, instance: &Instance) -> String {
    match d.kind {
        DeployKind::Rollback => format!(
            "Rollback of **{}** to **v{}**",
            instance.environment, release.version
        ),
        DeployKind::Deploy if d.noop => format!(
            "Dry run of **v{}** on **{}**",
            release.version, instance.environment
        ),
        DeployKind::Deploy => format!(
            "Deployment of **v{}** to **{}**",
            release.version, instance.environment
        ),
    }
}

/// The reply to a command when its deployment ends.
fn outcome_reply(d: &Deployment, release: &Release, instance: &Instance, log_url: &str) -> String {
    let what = reply_subject(d, release, instance);
    let short: String = release.commit_sha.chars().take(7).collect();
    let line = match d.state {
        DeployState::Succeeded if d.noop => {
            format!("🧪 {what} succeeded: nothing was changed.")
        }
        DeployState::Succeeded => {
            format!("🚀 {what} succeeded ({}, `{}`).", d.strategy, release.image)
        }
        DeployState::RolledBack => format!(
            "⚠️ {what} failed and the previous release was restored.{}",
            reason_line("Rolled back", &d.error)
        ),
        DeployState::Cancelled => format!(
            "🛑 {what} was cancelled.{}",
            reason_line("Cancelled", cancel_reason(&d.error))
        ),
        DeployState::Pending | DeployState::Running | DeployState::Failed => {
            format!("❌ {what} failed.{}", reason_line("Failed", &d.error))
        }
    };
    format!(
        "{line}\n\nCommit `{short}` · [deployment {}]({log_url})",
        d.id
    )
}

/// "\n\n**Rolled back:** `error rate 0.042 > 0.01 at canary 50%; restored v12`": the
/// reason on a line of its own, as code (it may hold a command's output or a person's
/// text); nothing when there is none.
fn reason_line(label: &str, reason: &str) -> String {
    let reason = reason.trim();
    if reason.is_empty() {
        return String::new();
    }
    format!("\n\n**{label}:** {}", code_span(reason))
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

    fn entry(version: i64, state: DeployState, waiting: bool) -> QueueEntry {
        QueueEntry {
            id: DeploymentId::new(),
            state,
            version,
            waiting,
        }
    }

    #[test]
    fn a_queued_reply_names_its_place_and_what_runs_ahead() {
        let running = entry(12, DeployState::Running, false);
        let waiting = entry(13, DeployState::Pending, true);
        let me = entry(14, DeployState::Pending, false);
        let queue = vec![running.clone(), waiting, me.clone()];
        assert_eq!(
            queued_line(me.id, &queue),
            "queued: 3rd in line behind v12 (running), v13 (waiting)"
        );
        assert_eq!(
            queued_line(me.id, &[running, me.clone()]),
            "queued: 2nd in line behind v12 (running)"
        );
        assert_eq!(
            queued_line(me.id, std::slice::from_ref(&me)),
            "queued: next in line"
        );
        let long: Vec<QueueEntry> = (1..=8)
            .map(|v| entry(v, DeployState::Pending, false))
            .chain([me.clone()])
            .collect();
        assert_eq!(
            queued_line(me.id, &long),
            "queued: 9th in line behind v1 (queued), v2 (queued), v3 (queued), v4 (queued), v5 (queued) and 3 more"
        );
        assert_eq!(ordinal(11), "11th");
        assert_eq!(ordinal(22), "22nd");
    }

    #[test]
    fn plan_output_cannot_close_its_fence() {
        let block = plan_block(&["ok".into(), "```".into(), "</details> **bold**".into()]);
        assert_eq!(block.matches("```").count(), 2, "{block}");
        assert!(block.starts_with("\n\n<details><summary>Plan output</summary>"));
        assert!(block.ends_with("```\n\n</details>"));
        assert!(block.contains("ok\n`\u{200b}``\n</details> **bold**"));
    }

    #[test]
    fn a_dry_run_is_its_own_task_and_never_retires_the_live_deployment() {
        let (state, text) = noop_status_line(3, DeployState::Succeeded, "");
        assert_eq!(
            (state, text.as_str()),
            ("success", "dry run of v3 succeeded")
        );
        let (state, text) =
            noop_status_line(3, DeployState::Pending, "waiting for the lock to end");
        assert_eq!(state, "queued");
        assert!(text.starts_with("dry run of v3 waiting"), "{text}");
    }

    #[test]
    fn a_waiting_deployments_status_says_what_it_waits_for() {
        let request = crate::deploy::DeployRequest {
            instance_id: crate::deploy::InstanceId::new(),
            image: "ghcr.io/acme/web:1".into(),
            env: Default::default(),
            strategy: String::new(),
            notes: String::new(),
            commit_sha: String::new(),
            params: Default::default(),
            noop: false,
        };
        let release = Release::from_request("acme", &request);
        let d = Deployment::pending(&release, "rolling", "octocat");
        let waiting = "waiting for the lock to end (locked by @alice: incident 42)";
        let (state, text) = status_line(&d, &release, DeployState::Pending, waiting);
        assert_eq!(state, "queued");
        assert_eq!(text, format!("v{} {waiting}", release.version));
        let (_, text) = status_line(&d, &release, DeployState::Pending, "queued");
        assert_eq!(text, format!("v{} queued", release.version));
    }

    #[test]
    fn a_running_reply_is_edited_at_most_every_three_seconds() {
        let request = crate::deploy::DeployRequest {
            instance_id: crate::deploy::InstanceId::new(),
            image: "ghcr.io/acme/web:1".into(),
            env: Default::default(),
            strategy: String::new(),
            notes: String::new(),
            commit_sha: String::new(),
            params: Default::default(),
            noop: false,
        };
        let release = Release::from_request("acme", &request);
        let mut d = Deployment::pending(&release, "rolling", "octocat");
        let now = chrono::Utc::now();
        let ago = |ms: i64| Some(now - chrono::Duration::milliseconds(ms));
        d.started_at = ago(10_000);
        assert!(running_shown_recently(&d, ago(1_000), now));
        assert!(!running_shown_recently(&d, ago(4_000), now));
        // Last written just before the run started: it still says queued, so it is edited.
        d.started_at = ago(1_000);
        assert!(!running_shown_recently(&d, ago(2_000), now));
        assert!(running_shown_recently(&d, ago(500), now));
        assert!(!running_shown_recently(&d, None, now));
    }

    fn release() -> Release {
        let request = crate::deploy::DeployRequest {
            instance_id: crate::deploy::InstanceId::new(),
            image: "ghcr.io/acme/web:13".into(),
            env: Default::default(),
            strategy: String::new(),
            notes: String::new(),
            commit_sha: "a10867b14bb761a232cd80139fbd4c0d33264240".into(),
            params: Default::default(),
            noop: false,
        };
        Release::from_request("acme", &request)
    }

    #[test]
    fn a_rolled_back_status_keeps_the_reasons_start_within_githubs_limit() {
        let release = release();
        let mut d = Deployment::pending(&release, "canary", "octocat");
        let reason = format!(
            "p99 latency of the checkout service in eu-west-1 ({}) 0.842 > 0.5 at canary 50%; restored v12",
            "é≤".repeat(60)
        );
        d.state = DeployState::RolledBack;
        d.error = reason.clone();
        let (state, text) = status_text(&d, &release, DeployState::RolledBack, &reason);
        assert_eq!(state, "failure");
        assert!(
            text.chars().count() <= 140,
            "{} chars: {text}",
            text.chars().count()
        );
        let prefix = format!("v{} rolled back: ", release.version);
        let shown = text.strip_prefix(&prefix).expect(&text);
        let start = shown.trim_end_matches('…');
        assert!(reason.starts_with(start), "{text}");
        assert!(start.starts_with("p99 latency of the checkout service in eu-west-1"));
        assert!(text.ends_with('…'), "{text}");
        let short = "error rate 0.042 > 0.01 at canary 50%; restored v12";
        let (_, text) = status_text(&d, &release, DeployState::RolledBack, short);
        assert_eq!(text, format!("v{} rolled back: {short}", release.version));
    }

    #[test]
    fn a_reply_says_why_it_rolled_back_failed_or_was_cancelled() {
        let release = release();
        let instance = Instance {
            id: release.instance_id,
            tenant_id: "acme".into(),
            name: "web-production".into(),
            repo: "acme/web".into(),
            environment: "production".into(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        let mut d = Deployment::pending(&release, "canary", "octocat");
        let reply = |d: &Deployment| outcome_reply(d, &release, &instance, "http://x/d");
        d.state = DeployState::RolledBack;
        d.error = "error rate 0.042 > 0.01 at canary 50%; restored v12 @acme/sre".into();
        let text = reply(&d);
        assert!(
            text.contains(
                "**Rolled back:** `error rate 0.042 > 0.01 at canary 50%; restored v12 @acme/sre`"
            ),
            "{text}"
        );
        d.state = DeployState::Cancelled;
        d.error = "cancelled; restored v12".into();
        assert!(
            reply(&d).contains("**Cancelled:** `restored v12`"),
            "{}",
            reply(&d)
        );
        d.error = "cancelled".into();
        assert!(!reply(&d).contains("**Cancelled:**"), "{}", reply(&d));
        d.state = DeployState::Failed;
        d.error = "exited with status 3".into();
        assert!(reply(&d).contains("**Failed:** `exited with status 3`"));
    }

    #[test]
    fn a_rollbacks_reason_is_on_its_status() {
        let release = release();
        let mut d = Deployment::pending(&release, "canary", "octocat");
        d.kind = DeployKind::Rollback;
        d.source.trigger = "/rollback on #42 by @octocat: the v13 migration locks orders".into();
        assert_eq!(rollback_reason(&d), Some("the v13 migration locks orders"));
        let (_, text) = status_text(&d, &release, DeployState::Succeeded, "");
        assert_eq!(
            text,
            format!(
                "restored v{}: the v13 migration locks orders",
                release.version
            )
        );
        d.source.trigger = "rollback by token:ci".into();
        assert_eq!(rollback_reason(&d), None);
        let (_, text) = status_text(&d, &release, DeployState::Succeeded, "");
        assert_eq!(text, format!("restored v{}", release.version));
    }

    #[test]
    fn descriptions_fit_githubs_limit() {
        let long = "x".repeat(500);
        let clipped = clip(&long, 140);
        assert_eq!(clipped.chars().count(), 140);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip("short", 140), "short");
        let wide = "é".repeat(200);
        assert_eq!(clip(&wide, 140).chars().count(), 140);
    }
}
