//! Jobs that need GitHub or the database before anything can be deployed: a pull
//! request's new head, a tag that arrived only as a `create` event (its commit), and a
//! closed pull request's locks (`unlock_on_merge`). They
//! run from the outbox, so a crash between the webhook's answer and the job loses nothing.
//! (A comment's commands are the comment job of `github::commands`.)

use std::sync::Arc;

use super::context::Context;
use super::image::{ImageVars, render_image, short};
use super::outbox::{OutboxItem, OutboxResult, PullClosedJob, PullHeadJob, ResolveTagJob};
use super::store::PullHead;
use crate::deploy::service::blocking;
use crate::deploy::{DeployRequest, Error, LockTarget, Source};

/// Resolves a tag's commit through the API, then deploys it on each instance the job
/// names (one deployment per instance and tag, shared with the tag's push event).
pub(super) async fn resolve_tag(
    cx: &Context,
    item: &OutboxItem,
    job: &ResolveTagJob,
) -> OutboxResult {
    let Some(client) = cx.client_or_log(item) else {
        return OutboxResult::Failed {
            error: format!(
                "tag {} arrived without a push event, and its commit cannot be resolved without GitHub credentials",
                job.tag
            ),
        };
    };
    let sha = match client
        .tag_commit(&job.repo, job.installation_id, &job.tag)
        .await
    {
        Ok(sha) => sha,
        Err(e) => return OutboxResult::from_api(e),
    };
    for name in &job.instances {
        match deploy_tag(cx, item, job, &sha, name).await {
            Ok(()) => {}
            Err(Error::Unavailable(e)) => return OutboxResult::unavailable(e),
            Err(e) => tracing::warn!(instance = %name, error = %e, "tag not deployed"),
        }
    }
    OutboxResult::Sent
}

/// Prepares and queues the deployment of a tag on one instance, under the tag's trigger
/// key. An instance no longer configured, or whose image the tag cannot fill, is skipped.
async fn deploy_tag(
    cx: &Context,
    item: &OutboxItem,
    job: &ResolveTagJob,
    sha: &str,
    name: &str,
) -> Result<(), Error> {
    let tenant = item.tenant_id.as_str();
    let Some(cfg) = cx.instance_config(tenant, name) else {
        return Ok(());
    };
    let tag = job.tag.as_str();
    let vars = ImageVars {
        sha,
        git_ref: &format!("refs/tags/{tag}"),
        branch: None,
        tag: Some(tag),
        pr: None,
    };
    let image = match render_image(&cfg.image, &vars) {
        Ok(image) => image,
        Err(reason) => {
            tracing::warn!(instance = name, %reason, "tag not deployed");
            return Ok(());
        }
    };
    let notes = format!("tag {tag} by @{} ({})", job.sender, short(sha));
    let source = Source {
        trigger: notes.clone(),
        pull_request: None,
        comment_id: None,
        installation_id: job.installation_id,
        requested_by: format!("@{}", job.sender.to_ascii_lowercase()),
    };
    let inst = cx.service.resolve_instance(tenant, name).await?;
    let request = DeployRequest {
        instance_id: inst.id,
        image,
        env: Default::default(),
        strategy: String::new(),
        notes,
        commit_sha: sha.to_string(),
        params: Default::default(),
        noop: false,
    };
    let mut triggered = cx
        .service
        .prepare(tenant, request, &job.sender, source)
        .await?;
    cx.service.hold_for_push(tenant, &inst, &mut triggered);
    triggered.trigger_key = Some(format!("tag:{tag}:{sha}"));
    cx.service.queue(triggered).await?;
    Ok(())
}

/// Records a pull request's new head, with GitHub's time.
pub(super) async fn pull_head(cx: &Context, item: &OutboxItem, job: &PullHeadJob) -> OutboxResult {
    let store = Arc::clone(&cx.store);
    let tenant = item.tenant_id.clone();
    let head = PullHead {
        head_sha: job.head_sha.clone(),
        at: job.at,
    };
    let (repo, pr) = (job.repo.to_lowercase(), job.pr);
    match blocking(move || store.record_pull_head(&tenant, &repo, pr, &head)).await {
        Ok(()) => OutboxResult::Sent,
        Err(e) => OutboxResult::from_store(e),
    }
}

/// Releases the locks taken from a closed pull request on the instances of its repository
/// that set `unlock_on_merge`; a lock on the whole repository when all of them set it.
/// The worker then runs the newest push that waited.
pub(super) async fn pull_closed(
    cx: &Context,
    item: &OutboxItem,
    job: &PullClosedJob,
) -> OutboxResult {
    let tenant = item.tenant_id.as_str();
    let config = cx.config();
    let of_repo: Vec<_> = config
        .instances
        .iter()
        .filter(|i| {
            i.repo.eq_ignore_ascii_case(&job.repo) && i.tenant().eq_ignore_ascii_case(tenant)
        })
        .collect();
    let mut unlocking = Vec::new();
    for cfg in of_repo.iter().filter(|i| i.unlock_on_merge) {
        match cx.service.resolve_instance(tenant, &cfg.name).await {
            Ok(instance) => unlocking.push(instance.id),
            Err(Error::Unavailable(e)) => return OutboxResult::unavailable(e),
            Err(e) => tracing::warn!(instance = %cfg.name, error = %e, "instance not found"),
        }
    }
    if unlocking.is_empty() {
        return OutboxResult::Sent;
    }
    let whole_repo = of_repo.iter().all(|i| i.unlock_on_merge);
    let releases = |target: &LockTarget| match target {
        LockTarget::Instance { instance_id } => unlocking.contains(instance_id),
        LockTarget::Repo { .. } => whole_repo,
    };
    match cx
        .service
        .release_pull_locks(tenant, &job.repo, job.pr, releases)
        .await
    {
        Ok(released) => {
            for lock in released {
                tracing::info!(repo = %job.repo, pr = job.pr, lock = %lock.describe(), "pull request closed: its lock released");
            }
            OutboxResult::Sent
        }
        Err(e) => OutboxResult::from_store(e),
    }
}
