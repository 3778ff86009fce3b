//! `/deploy [to] [ENV] [--strategy NAME] [--force] [| KEY=VALUE …]`: deploy the pull
//! request's head, as it was when the comment was written, to an environment; and
//! `/noop [ENV] [| KEY=VALUE …]`, its dry run (the provider plans, nothing changes).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::reviews;
use super::run::{Checks, CommentRun, Forks, Stop, Target};
use crate::deploy::DeployRequest;
use crate::deploy::service::blocking;
use crate::github::client::PullRequest;
use crate::github::image::{ImageVars, render_image, short};
use crate::github::store::PullHead;

/// The command's syntax, as help and parse errors show it.
pub const USAGE: &str = "/deploy [to] [ENV] [--strategy NAME] [--force] [| KEY=VALUE …]";

/// `/noop`'s syntax, as help and parse errors show it.
pub const NOOP_USAGE: &str = "/noop [ENV] [| KEY=VALUE …]";

/// Deploying a fork's head is up to the environment (`allow_forks`).
pub(super) const CHECKS: Checks = Checks {
    verb: "deploy",
    forks: Forks::WhenAllowed,
    open_pull: true,
};

/// A dry run of a fork's head is up to the environment, as its deploy is.
pub(super) const NOOP_CHECKS: Checks = Checks {
    verb: "dry-run",
    forks: Forks::WhenAllowed,
    open_pull: true,
};

/// What a `/deploy` or `/noop` asks besides its environment.
pub(super) struct Ask {
    pub(super) strategy: Option<String>,
    pub(super) force: bool,
    pub(super) params: BTreeMap<String, String>,
    /// `/noop`: a dry run.
    pub(super) noop: bool,
}

impl Ask {
    /// `/deploy`'s.
    pub(super) fn deploy(
        strategy: &Option<String>,
        force: bool,
        params: &BTreeMap<String, String>,
    ) -> Self {
        Ask {
            strategy: strategy.clone(),
            force,
            params: params.clone(),
            noop: false,
        }
    }

    /// `/noop`'s: a dry run, never forced.
    pub(super) fn noop(params: &BTreeMap<String, String>) -> Self {
        Ask {
            strategy: None,
            force: false,
            params: params.clone(),
            noop: true,
        }
    }
}

/// Queues the head the pull request had when the comment was written, or refuses.
pub(super) async fn handle(
    run: &CommentRun<'_>,
    target: &Target<'_>,
    ask: Ask,
) -> Result<(), Stop> {
    let Ask {
        strategy,
        force,
        params,
        noop,
    } = ask;
    let (verb, command) = if noop {
        ("dry-run", "noop")
    } else {
        (CHECKS.verb, "deploy")
    };
    let (job, cfg, pull) = (run.job, target.cfg, target.pull);
    if let Some(refusal) = head_moved(run, pull).await? {
        let detail = format!("{verb} of {} refused: {refusal}", cfg.name);
        return run
            .refused_audited::<()>(target.step, refusal, detail, Some(cfg))
            .await
            .map(|_| ());
    }
    if let Some((text, detail)) = reviews::refusal(run, target, verb).await? {
        return run
            .refused_audited::<()>(target.step, text, detail, Some(cfg))
            .await
            .map(|_| ());
    }
    let git_ref = format!("refs/heads/{}", pull.head_ref);
    let vars = ImageVars {
        sha: &pull.head_sha,
        git_ref: &git_ref,
        branch: Some(&pull.head_ref),
        tag: None,
        pr: Some(job.pr),
    };
    let image = match render_image(&cfg.image, &vars) {
        Ok(image) => image,
        Err(reason) => {
            let text = format!("Could not deploy `{}`: {reason}", cfg.environment);
            return run.refuse_or_reply(target.step, text, true).await;
        }
    };
    let prepared = async {
        let service = &run.cx.service;
        let inst = service
            .resolve_instance(&run.item.tenant_id, &cfg.name)
            .await?;
        let request = DeployRequest {
            instance_id: inst.id,
            image,
            env: Default::default(),
            strategy: strategy.unwrap_or_default(),
            notes: format!(
                "{}{command} on #{} by @{} ({})",
                run.config.command_prefix,
                job.pr,
                job.user,
                short(&pull.head_sha)
            ),
            commit_sha: pull.head_sha.clone(),
            params,
            noop,
        };
        service
            .prepare(&run.item.tenant_id, request, &job.user, run.source(command))
            .await
    };
    run.queue(target, verb, prepared.await, force).await
}

/// Whether the pull request's head moved after the comment: the refusal to reply.
/// The heads come from `pull_request` events with GitHub's time; a head deploybot has
/// no record of before the comment is never deployed.
async fn head_moved(run: &CommentRun<'_>, pull: &PullRequest) -> Result<Option<String>, Stop> {
    let job = run.job;
    let heads = {
        let store = Arc::clone(&run.cx.store);
        let (tenant, repo, pr) = (run.item.tenant_id.clone(), run.repo_key.clone(), job.pr);
        blocking(move || store.pull_heads(&tenant, &repo, pr))
            .await
            .map_err(Stop::from_store)?
    };
    let before = heads.iter().rev().find(|h| h.at < job.created_at);
    let moved_after = heads.iter().any(|h| h.at >= job.created_at);
    let current = short(&pull.head_sha);
    let refusal = match before {
        _ if moved_after => format!(
            "the pull request changed after your comment; comment again to deploy {current}"
        ),
        Some(head) if head.head_sha == pull.head_sha => return Ok(None),
        Some(_) => format!(
            "the pull request changed after your comment; comment again to deploy {current}"
        ),
        None => format!(
            "deploybot has no record of this pull request's head from before your comment (the pull request was opened before deploybot was set up, or GitHub's `pull_request` event did not reach it); comment again to deploy {current}"
        ),
    };
    // The head seen now counts from now on, so that the next comment can deploy it
    // even when GitHub's event for it never arrives.
    if heads.last().is_none_or(|h| h.head_sha != pull.head_sha) {
        let store = Arc::clone(&run.cx.store);
        let (tenant, repo, pr) = (run.item.tenant_id.clone(), run.repo_key.clone(), job.pr);
        let head = PullHead {
            head_sha: pull.head_sha.clone(),
            at: crate::deploy::now(),
        };
        blocking(move || store.record_pull_head(&tenant, &repo, pr, &head))
            .await
            .map_err(Stop::from_store)?;
    }
    Ok(Some(refusal))
}
