//! The comment job: a pull-request comment's commands, run from the outbox. Nothing reaches
//! GitHub before the commenter's permission is known; each step (the acknowledgement, then
//! each command) is recorded with its effect, so running a job twice acts once.

use std::sync::Arc;
use std::time::Duration;

use crate::deploy::service::blocking;
use crate::deploy::{DeployRequest, DeployState, Error, ListOptions, RollbackTarget, Source};
use crate::github::client::ApiError;
use crate::github::outbox::{
    CommentReaction, CommentReply, NewOutboxItem, OutboxItem, OutboxResult, Sender, Work,
};
use crate::github::rules::{self, CommentCommand, CommentJob, ImageVars, render_image};
use crate::github::store::{CommentActed, CommentEffect, CommentStep, PullHead};

/// A GitHub API error: retried when GitHub says so, given up otherwise.
fn api(e: ApiError) -> Stop {
    match e {
        ApiError::Retry { after, message } => OutboxResult::Retry {
            after,
            error: message,
        },
        refused => OutboxResult::Failed {
            error: refused.to_string(),
        },
    }
}

/// A store error: retried while the database is unavailable, given up otherwise.
fn store_error(e: Error) -> Stop {
    match e {
        Error::Unavailable(e) => retry(e),
        other => OutboxResult::Failed {
            error: other.to_string(),
        },
    }
}

/// How long a commenter without permission waits between two replies on one pull request.
const STRANGER_REPLY_EVERY: Duration = Duration::from_secs(3600);

/// The step a commenter without permission was refused in: the comment never acts after.
const STRANGER_STEP: i32 = -1;

/// The step that acknowledges a permitted commenter's comment (👀).
const SEEN_STEP: i32 = 0;

/// Why a step stopped the job: retried later or given up, as the outbox decides.
type Stop = OutboxResult;

/// One comment's commands. Nothing reaches GitHub before the commenter's permission is
/// known. Each step (the acknowledgement, then each command) is recorded in the same
/// transaction as its effect, so a redelivered comment or a re-run job acts once.
pub async fn comment(sender: &Sender, item: &OutboxItem, job: &CommentJob) -> OutboxResult {
    let run = CommentRun {
        sender,
        item,
        repo_key: job.repo.to_lowercase(),
        job,
        out: Outgoing {
            tenant: item.tenant_id.clone(),
            ordering_key: item.ordering_key.clone(),
            repo: job.repo.clone(),
            pr: job.pr,
            comment_id: job.comment_id,
            installation_id: job.installation_id,
        },
    };
    match run.all().await {
        Ok(()) | Err(OutboxResult::Sent) => OutboxResult::Sent,
        Err(stop) => stop,
    }
}

/// One run of a comment job.
struct CommentRun<'a> {
    sender: &'a Sender,
    item: &'a OutboxItem,
    repo_key: String,
    job: &'a CommentJob,
    out: Outgoing,
}

impl CommentRun<'_> {
    async fn all(&self) -> Result<(), Stop> {
        let done = {
            let store = Arc::clone(&self.sender.store);
            let (tenant, repo, id) = (
                self.item.tenant_id.clone(),
                self.repo_key.clone(),
                self.job.comment_id,
            );
            blocking(move || store.comment_steps(&tenant, &repo, id))
                .await
                .map_err(store_error)?
        };
        let last = self.job.steps.len() as i32;
        if done.contains(&STRANGER_STEP) || (1..=last).all(|step| done.contains(&step)) {
            return Ok(());
        }
        let Some(client) = self.sender.client_or_log(self.item) else {
            return Err(OutboxResult::Failed {
                error: "commands need GitHub credentials to check the commenter's permission"
                    .into(),
            });
        };
        let job = self.job;
        let role = client
            .permission(&job.repo, job.installation_id, &job.user)
            .await
            .map_err(api)?;
        let allows = |cfg: &crate::config::InstanceConfig| {
            cfg.allowed_permissions
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(&role))
        };
        let instances: Vec<&crate::config::InstanceConfig> = self
            .sender
            .config
            .instances
            .iter()
            .filter(|i| i.commands && i.repo.eq_ignore_ascii_case(&job.repo))
            .collect();
        if instances.is_empty() {
            tracing::info!(repo = %job.repo, comment = job.comment_id, "no instance of the repository accepts commands any more: comment ignored");
            return Ok(());
        }
        if !instances.iter().any(|cfg| allows(cfg)) {
            return self.stranger(&role, &instances).await;
        }
        if !done.contains(&SEEN_STEP) {
            let seen = self.out.reaction("eyes");
            self.act(SEEN_STEP, CommentEffect::Reply, move |_| vec![seen.clone()])
                .await?;
        }
        let mut pull = None;
        for (n, command) in job.steps.iter().enumerate() {
            let step = n as i32 + 1;
            if done.contains(&step) {
                continue;
            }
            self.command(step, command, &instances, &allows, client, &mut pull)
                .await?;
        }
        Ok(())
    }

    /// A commenter without permission on any environment: one 😕, and a reply at most once
    /// an hour per commenter and pull request. Nothing else is read or written.
    async fn stranger(
        &self,
        role: &str,
        instances: &[&crate::config::InstanceConfig],
    ) -> Result<(), Stop> {
        let job = self.job;
        let mut needed: Vec<&str> = Vec::new();
        for permission in instances.iter().flat_map(|cfg| &cfg.allowed_permissions) {
            if !needed.contains(&permission.as_str()) {
                needed.push(permission);
            }
        }
        let text = format!(
            "@{} cannot run deploybot commands on {}: that needs {} permission on the repository, and you have `{role}`. Ask a maintainer to run the command.",
            job.user,
            job.repo,
            needed.join(", "),
        );
        let effect = CommentEffect::Stranger {
            pull_request: job.pr,
            login: job.user.clone(),
            within: STRANGER_REPLY_EVERY,
        };
        let out = self.out.clone();
        let items = move |acted: &CommentActed| {
            let mut items = vec![out.reaction("confused")];
            if acted.may_reply {
                items.push(out.reply(text.clone()));
            }
            items
        };
        self.act(STRANGER_STEP, effect, items).await.map(|_| ())
    }

    async fn command(
        &self,
        step: i32,
        command: &CommentCommand,
        instances: &[&crate::config::InstanceConfig],
        allows: &(dyn Fn(&crate::config::InstanceConfig) -> bool + Sync),
        client: &crate::github::client::GithubClient,
        pull: &mut Option<crate::github::client::PullRequest>,
    ) -> Result<(), Stop> {
        let job = self.job;
        let (instance, action) = match command {
            CommentCommand::Help => {
                let text = format!(
                    "{}\n\nEnvironments of {}: {}.",
                    super::parser::HELP,
                    job.repo,
                    rules::choices(instances)
                );
                return self.refuse_or_reply(step, text, false).await;
            }
            CommentCommand::Invalid { message } => {
                return self.refuse_or_reply(step, message.clone(), true).await;
            }
            CommentCommand::Deploy { instance, .. } => (instance, "deploy"),
            CommentCommand::Rollback { instance, .. } => (instance, "roll back"),
            CommentCommand::Cancel { instance, .. } => (instance, "cancel"),
        };
        let Some(cfg) = self.sender.instance_config(&self.item.tenant_id, instance) else {
            let text = format!("`{instance}` is no longer configured in deploybot.");
            return self.refuse_or_reply(step, text, true).await;
        };
        if !allows(cfg) {
            let text = format!(
                "@{} cannot {action} `{}`: that needs {} permission on {}.",
                job.user,
                cfg.environment,
                cfg.allowed_permissions.join(", "),
                job.repo,
            );
            return self.refuse_or_reply(step, text, true).await;
        }
        let pull = match pull {
            Some(pull) => pull,
            None => pull.insert(
                client
                    .pull(&job.repo, job.installation_id, job.pr)
                    .await
                    .map_err(api)?,
            ),
        };
        if !pull.open {
            let text = format!(
                "Pull request #{} is closed: deploybot does not {action} `{}` from it.",
                job.pr, cfg.environment
            );
            return self.refuse_or_reply(step, text, true).await;
        }
        let forks_allowed = matches!(command, CommentCommand::Deploy { .. }) && cfg.allow_forks;
        if pull.from_fork && !forks_allowed {
            let text = if matches!(command, CommentCommand::Deploy { .. }) {
                format!(
                    "Pull request #{} comes from a fork, and `{}` does not deploy forks (`allow_forks = false`).",
                    job.pr, cfg.environment
                )
            } else {
                format!(
                    "Pull request #{} comes from a fork: deploybot does not {action} `{}` from it. Comment on a pull request from this repository.",
                    job.pr, cfg.environment
                )
            };
            return self.refuse_or_reply(step, text, true).await;
        }
        match command {
            CommentCommand::Deploy { strategy, .. } => {
                self.deploy(step, cfg, strategy.clone(), pull).await
            }
            CommentCommand::Rollback { version, .. } => self.rollback(step, cfg, *version).await,
            CommentCommand::Cancel { queued, .. } => self.cancel(step, cfg, *queued).await,
            CommentCommand::Help | CommentCommand::Invalid { .. } => Ok(()),
        }
    }

    fn source(&self, action: &str) -> Source {
        Source {
            trigger: format!("/{action} on #{} by @{}", self.job.pr, self.job.user),
            pull_request: Some(self.job.pr),
            comment_id: Some(self.job.comment_id),
            installation_id: self.job.installation_id,
        }
    }

    /// `/deploy`: the head the pull request had when the comment was written, or nothing.
    async fn deploy(
        &self,
        step: i32,
        cfg: &crate::config::InstanceConfig,
        strategy: Option<String>,
        pull: &crate::github::client::PullRequest,
    ) -> Result<(), Stop> {
        let job = self.job;
        if let Some(refusal) = self.head_moved(pull).await? {
            return self.refuse_or_reply(step, refusal, true).await;
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
                return self.refuse_or_reply(step, text, true).await;
            }
        };
        let prepared = async {
            let service = &self.sender.service;
            let inst = service
                .resolve_instance(&self.item.tenant_id, &cfg.name)
                .await?;
            let request = DeployRequest {
                instance_id: inst.id,
                image,
                env: Default::default(),
                strategy: strategy.unwrap_or_default(),
                notes: format!(
                    "/deploy on #{} by @{} ({})",
                    job.pr,
                    job.user,
                    short(&pull.head_sha)
                ),
                commit_sha: pull.head_sha.clone(),
            };
            service
                .prepare(
                    &self.item.tenant_id,
                    request,
                    &job.user,
                    self.source("deploy"),
                )
                .await
        };
        self.queue(step, cfg, "deploy", prepared.await).await
    }

    /// `/rollback`.
    async fn rollback(
        &self,
        step: i32,
        cfg: &crate::config::InstanceConfig,
        version: Option<i64>,
    ) -> Result<(), Stop> {
        let target = version.map_or(RollbackTarget::Previous, RollbackTarget::Version);
        let prepared = async {
            let service = &self.sender.service;
            let inst = service
                .resolve_instance(&self.item.tenant_id, &cfg.name)
                .await?;
            service
                .prepare_rollback(
                    &self.item.tenant_id,
                    inst.id,
                    target,
                    &self.job.user,
                    self.source("rollback"),
                    None,
                )
                .await
        };
        self.queue(step, cfg, "roll back", prepared.await).await
    }

    /// Queues a prepared deployment with the step's record; the outcome reply, 🚀 or 😕
    /// follow the deployment through the outbox.
    async fn queue(
        &self,
        step: i32,
        cfg: &crate::config::InstanceConfig,
        action: &str,
        prepared: Result<crate::deploy::TriggeredDeployment, Error>,
    ) -> Result<(), Stop> {
        let mut triggered = match prepared {
            Ok(triggered) => triggered,
            Err(Error::Unavailable(e)) => return Err(retry(e)),
            Err(e) => {
                let text = format!("Could not {action} `{}`: {e}", cfg.environment);
                return self.refuse_or_reply(step, text, true).await;
            }
        };
        triggered.trigger_key = Some(format!("comment:{}:{}", self.job.comment_id, cfg.name));
        let effect = CommentEffect::Deploy(Box::new(triggered));
        self.act(step, effect, |_| Vec::new()).await?;
        self.sender.service.wake().notify_waiters();
        Ok(())
    }

    /// Whether the pull request's head moved after the comment: the refusal to reply.
    /// The heads come from `pull_request` events with GitHub's time; a head deploybot has
    /// no record of before the comment is never deployed.
    async fn head_moved(
        &self,
        pull: &crate::github::client::PullRequest,
    ) -> Result<Option<String>, Stop> {
        let job = self.job;
        let heads = {
            let store = Arc::clone(&self.sender.store);
            let (tenant, repo, pr) = (self.item.tenant_id.clone(), self.repo_key.clone(), job.pr);
            blocking(move || store.pull_heads(&tenant, &repo, pr))
                .await
                .map_err(store_error)?
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
            let store = Arc::clone(&self.sender.store);
            let (tenant, repo, pr) = (self.item.tenant_id.clone(), self.repo_key.clone(), job.pr);
            let head = PullHead {
                head_sha: pull.head_sha.clone(),
                at: crate::deploy::now(),
            };
            blocking(move || store.record_pull_head(&tenant, &repo, pr, &head))
                .await
                .map_err(store_error)?;
        }
        Ok(Some(refusal))
    }

    /// `/cancel ENV` stops the running deployment; `--queued` cancels the waiting ones.
    async fn cancel(
        &self,
        step: i32,
        cfg: &crate::config::InstanceConfig,
        queued: bool,
    ) -> Result<(), Stop> {
        let environment = cfg.environment.as_str();
        let service = &self.sender.service;
        let tenant = &self.item.tenant_id;
        let inst = service
            .resolve_instance(tenant, &cfg.name)
            .await
            .map_err(store_error)?;
        let page = service
            .list_deployments(
                tenant,
                inst.id,
                ListOptions {
                    cursor: None,
                    limit: Some(100),
                },
            )
            .await
            .map_err(store_error)?;
        let waiting = page
            .items
            .iter()
            .filter(|d| d.state == DeployState::Pending)
            .count();
        let ids: Vec<_> = page
            .items
            .iter()
            .filter(|d| {
                d.state
                    == if queued {
                        DeployState::Pending
                    } else {
                        DeployState::Running
                    }
            })
            .map(|d| d.id)
            .collect();
        if ids.is_empty() {
            let text = if queued {
                format!("Nothing to cancel on `{environment}`: no deployment is queued.")
            } else if waiting > 0 {
                format!(
                    "Nothing to cancel on `{environment}`: no deployment is running. {waiting} wait in the queue: `/cancel {environment} --queued` cancels them."
                )
            } else {
                format!("Nothing to cancel on `{environment}`: no deployment is running.")
            };
            return self.refuse_or_reply(step, text, false).await;
        }
        let effect = CommentEffect::Cancel {
            ids,
            by: self.job.user.clone(),
        };
        let out = self.out.clone();
        let environment = environment.to_string();
        let items = move |acted: &CommentActed| {
            let mut lines = Vec::new();
            for d in &acted.cancelled {
                lines.push(if d.state == DeployState::Running {
                    format!(
                        "Stopping deployment {} on `{environment}`; the release it replaces is restored.",
                        d.id
                    )
                } else {
                    format!("Cancelled queued deployment {} on `{environment}`.", d.id)
                });
            }
            for id in &acted.finished {
                lines.push(format!(
                    "Deployment {id} on `{environment}` has already finished."
                ));
            }
            vec![out.reply(lines.join("\n"))]
        };
        let Some(acted) = self.act(step, effect, items).await? else {
            return Ok(());
        };
        for d in acted.cancelled {
            if d.state == DeployState::Running {
                service.stop_running(d.id);
            }
        }
        service.wake().notify_waiters();
        Ok(())
    }

    /// A step whose only effect is a reply (and 😕 when it refuses).
    async fn refuse_or_reply(&self, step: i32, text: String, refused: bool) -> Result<(), Stop> {
        let mut items = vec![self.out.reply(text)];
        if refused {
            items.push(self.out.reaction("confused"));
        }
        self.act(step, CommentEffect::Reply, move |_| items.clone())
            .await
            .map(|_| ())
    }

    /// Records `step` with its effect and items; None when it acted before.
    async fn act(
        &self,
        step: i32,
        effect: CommentEffect,
        items: impl Fn(&CommentActed) -> Vec<NewOutboxItem> + Send + Sync + 'static,
    ) -> Result<Option<CommentActed>, Stop> {
        let step = CommentStep {
            tenant_id: self.item.tenant_id.clone(),
            repo: self.repo_key.clone(),
            comment_id: self.job.comment_id,
            step,
        };
        let store = Arc::clone(&self.sender.store);
        match blocking(move || store.act_on_comment(&step, &effect, &items)).await {
            Ok(acted) => Ok(acted),
            // Another run of the same step committed first: it acted.
            Err(Error::Conflict(_)) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }
}

/// Builds the reactions and replies of one comment.
#[derive(Clone)]
struct Outgoing {
    tenant: String,
    ordering_key: String,
    repo: String,
    pr: u64,
    comment_id: u64,
    installation_id: Option<u64>,
}

impl Outgoing {
    fn reply(&self, body: String) -> NewOutboxItem {
        NewOutboxItem {
            tenant_id: self.tenant.clone(),
            ordering_key: self.ordering_key.clone(),
            deployment_id: None,
            work: Work::CommentReply(CommentReply {
                repo: self.repo.clone(),
                issue: self.pr,
                body,
                installation_id: self.installation_id,
            }),
        }
    }

    fn reaction(&self, content: &str) -> NewOutboxItem {
        NewOutboxItem {
            tenant_id: self.tenant.clone(),
            ordering_key: self.ordering_key.clone(),
            deployment_id: None,
            work: Work::CommentReaction(CommentReaction {
                repo: self.repo.clone(),
                comment_id: self.comment_id,
                content: content.to_string(),
                installation_id: self.installation_id,
            }),
        }
    }
}

fn retry(error: String) -> OutboxResult {
    OutboxResult::Retry {
        after: Duration::from_secs(2),
        error,
    }
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}
