//! The comment job: a pull-request comment's commands, run from the outbox. Nothing reaches
//! GitHub before the commenter's permission is known; each step (the acknowledgement, then
//! each command) is recorded with its effect, so running a job twice acts once. The checks
//! every environment command shares live here; each command's own work is in its file.

use std::sync::Arc;
use std::time::Duration;

use super::{approve, cancel, deploy, deployers, help, lock, markdown, rollback};
use crate::config::{Config, InstanceConfig};
use crate::deploy::service::blocking;
use crate::deploy::{Actor, AuditEvent, Error, Source, TriggeredDeployment};
use crate::github::client::{GithubClient, PullRequest};
use crate::github::context::Context;
use crate::github::outbox::{
    CommentCommand, CommentJob, CommentReaction, CommentReply, NewOutboxItem, OutboxItem,
    OutboxResult, Work,
};
use crate::github::store::{CommentActed, CommentEffect, CommentStep};

/// How long a commenter without permission waits between two replies on one pull request.
const STRANGER_REPLY_EVERY: Duration = Duration::from_secs(3600);

/// The step a commenter without permission was refused in: the comment never acts after.
const STRANGER_STEP: i32 = -1;

/// The step that acknowledges a permitted commenter's comment (👀).
const SEEN_STEP: i32 = 0;

/// Why a step stopped the job: retried later or given up, as the outbox decides.
pub(super) type Stop = OutboxResult;

/// One comment's commands. Nothing reaches GitHub before the commenter's permission is
/// known. Each step (the acknowledgement, then each command) is recorded in the same
/// transaction as its effect, so a redelivered comment or a re-run job acts once.
pub async fn comment(cx: &Context, item: &OutboxItem, job: &CommentJob) -> OutboxResult {
    let config = cx.config();
    let run = CommentRun {
        cx,
        config: &config,
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
pub(super) struct CommentRun<'a> {
    pub(super) cx: &'a Context,
    /// The configuration in force when the job started: one comment's commands all see
    /// the same one, even if it is reloaded meanwhile.
    pub(super) config: &'a Config,
    pub(super) item: &'a OutboxItem,
    /// `owner/name`, lower-cased, as the comment's records are kept.
    pub(super) repo_key: String,
    pub(super) job: &'a CommentJob,
    pub(super) out: Outgoing,
}

/// What the commands of one comment share: the environments of the repository that take
/// commands, the commenter's role on it, and the pull request once it has been read.
pub(super) struct Commenter<'a> {
    pub(super) instances: Vec<&'a InstanceConfig>,
    role: String,
    client: &'a GithubClient,
    pull: Option<PullRequest>,
}

impl Commenter<'_> {
    /// Whether the commenter's role may run commands on `cfg`.
    fn allows(&self, cfg: &InstanceConfig) -> bool {
        cfg.allowed_permissions
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(&self.role))
    }
}

/// The environment a command acts on, once the shared checks passed, and the pull request.
pub(super) struct Target<'a> {
    pub(super) step: i32,
    pub(super) cfg: &'a InstanceConfig,
    pub(super) pull: &'a PullRequest,
    /// The commenter is one of the environment's `deployers`: `--force` passes what it
    /// may (a freeze; another's lock for a rollback).
    pub(super) may_force: bool,
}

/// What a command acting on an environment needs checked before it runs.
pub(super) struct Checks {
    /// The verb its refusals use: "cannot {verb} `production`".
    pub(super) verb: &'static str,
    pub(super) forks: Forks,
    /// The pull request must be open (and not from a fork, as `forks` says); when false
    /// (`/lock`, `/unlock`) neither is checked: they act on the environment whatever the
    /// pull request is.
    pub(super) open_pull: bool,
}

/// Whether a command runs for a pull request from a fork.
pub(super) enum Forks {
    /// Never: the commenter is asked to use a pull request from the repository.
    Refused,
    /// When the environment sets `allow_forks`.
    WhenAllowed,
}

impl CommentRun<'_> {
    /// Every step the comment has not taken yet, after the permission check.
    async fn all(&self) -> Result<(), Stop> {
        let done = self.done_steps().await?;
        let last = self.job.steps.len() as i32;
        if done.contains(&STRANGER_STEP) || (1..=last).all(|step| done.contains(&step)) {
            return Ok(());
        }
        let Some(mut commenter) = self.commenter().await? else {
            return Ok(());
        };
        if !commenter.instances.iter().any(|cfg| commenter.allows(cfg)) {
            return self.stranger(&commenter).await;
        }
        if !done.contains(&SEEN_STEP) {
            let seen = self.out.reaction("eyes");
            self.act(SEEN_STEP, CommentEffect::Reply, move |_| vec![seen.clone()])
                .await?;
        }
        for (n, command) in self.job.steps.iter().enumerate() {
            let step = n as i32 + 1;
            if !done.contains(&step) {
                self.command(step, command, &mut commenter).await?;
            }
        }
        Ok(())
    }

    /// The steps of this comment that acted before.
    async fn done_steps(&self) -> Result<Vec<i32>, Stop> {
        let store = Arc::clone(&self.cx.store);
        let (tenant, repo, id) = (
            self.item.tenant_id.clone(),
            self.repo_key.clone(),
            self.job.comment_id,
        );
        blocking(move || store.comment_steps(&tenant, &repo, id))
            .await
            .map_err(Stop::from_store)
    }

    /// The commenter's role and the environments that take commands; None when no
    /// environment of the repository takes commands any more.
    async fn commenter(&self) -> Result<Option<Commenter<'_>>, Stop> {
        let Some(client) = self.cx.client_or_log(self.item) else {
            return Err(OutboxResult::Failed {
                error: "commands need GitHub credentials to check the commenter's permission"
                    .into(),
            });
        };
        let job = self.job;
        let role = client
            .permission(&job.repo, job.installation_id, &job.user)
            .await
            .map_err(Stop::from_api)?;
        let instances: Vec<&InstanceConfig> = self
            .config
            .instances
            .iter()
            .filter(|i| i.commands && i.repo.eq_ignore_ascii_case(&job.repo))
            .collect();
        if instances.is_empty() {
            tracing::info!(repo = %job.repo, comment = job.comment_id, "no instance of the repository accepts commands any more: comment ignored");
            return Ok(None);
        }
        Ok(Some(Commenter {
            instances,
            role,
            client,
            pull: None,
        }))
    }

    /// A commenter without permission on any environment: one 😕, and a reply at most once
    /// an hour per commenter and pull request. Nothing else is read or written.
    async fn stranger(&self, commenter: &Commenter<'_>) -> Result<(), Stop> {
        let job = self.job;
        let mut needed: Vec<&str> = Vec::new();
        for permission in commenter
            .instances
            .iter()
            .flat_map(|cfg| &cfg.allowed_permissions)
        {
            if !needed.contains(&permission.as_str()) {
                needed.push(permission);
            }
        }
        let text = format!(
            "@{} cannot run deploybot commands on {}: that needs {} permission on the repository, and you have `{}`. Ask a maintainer to run the command.",
            job.user,
            job.repo,
            needed.join(", "),
            commenter.role,
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

    /// Runs step `step`: one command line of the comment. A command on an environment
    /// runs once the shared checks pass; a refused check has recorded its reply.
    async fn command(
        &self,
        step: i32,
        command: &CommentCommand,
        commenter: &mut Commenter<'_>,
    ) -> Result<(), Stop> {
        match command {
            CommentCommand::Help => help::handle(self, step, &commenter.instances).await,
            CommentCommand::Invalid { message } => {
                self.refuse_or_reply(step, message.clone(), true).await
            }
            CommentCommand::Deploy {
                instance,
                strategy,
                force,
                params,
            } => {
                let ask = deploy::Ask::deploy(strategy, *force, params);
                self.deploy(step, instance, &deploy::CHECKS, ask, commenter)
                    .await
            }
            CommentCommand::Noop { instance, params } => {
                let ask = deploy::Ask::noop(params);
                self.deploy(step, instance, &deploy::NOOP_CHECKS, ask, commenter)
                    .await
            }
            CommentCommand::Rollback {
                instance,
                version,
                force,
                reason,
            } => {
                let checked = self.target(step, instance, &rollback::CHECKS, commenter);
                let Some(target) = checked.await? else {
                    return Ok(());
                };
                rollback::handle(self, &target, *version, *force, reason.as_deref()).await
            }
            CommentCommand::Lock {
                instance,
                global,
                for_secs,
                reason,
            } => {
                let checked = self.lock_target(step, instance, *global, &lock::CHECKS, commenter);
                let Some(target) = checked.await? else {
                    return Ok(());
                };
                let ttl = for_secs.map(Duration::from_secs);
                lock::lock(self, &target, *global, ttl, reason.as_deref()).await
            }
            CommentCommand::Unlock { instance, global } => {
                let checks = &lock::UNLOCK_CHECKS;
                let checked = self.lock_target(step, instance, *global, checks, commenter);
                let Some(target) = checked.await? else {
                    return Ok(());
                };
                lock::unlock(self, &target, *global).await
            }
            CommentCommand::Locks => lock::locks(self, step, &commenter.instances).await,
            CommentCommand::Approve { instance } => {
                let checked = self.target(step, instance, &approve::CHECKS, commenter);
                let Some(target) = checked.await? else {
                    return Ok(());
                };
                approve::handle(self, &target).await
            }
            CommentCommand::Cancel { instance, queued } => {
                let checked = self.target(step, instance, &cancel::CHECKS, commenter);
                let Some(target) = checked.await? else {
                    return Ok(());
                };
                cancel::handle(self, &target, *queued).await
            }
        }
    }

    /// `/deploy` or `/noop` on `instance`, once the shared checks pass.
    async fn deploy(
        &self,
        step: i32,
        instance: &str,
        checks: &Checks,
        ask: deploy::Ask,
        commenter: &mut Commenter<'_>,
    ) -> Result<(), Stop> {
        let Some(target) = self.target(step, instance, checks, commenter).await? else {
            return Ok(());
        };
        deploy::handle(self, &target, ask).await
    }

    /// The checks every command on an environment passes first: the instance is still
    /// configured, the commenter may use it, and the pull request is open (and not from a
    /// fork, unless allowed). None when a check refused the step (the refusal is recorded).
    async fn target<'c>(
        &'c self,
        step: i32,
        instance: &str,
        checks: &Checks,
        commenter: &'c mut Commenter<'_>,
    ) -> Result<Option<Target<'c>>, Stop> {
        let job = self.job;
        let verb = checks.verb;
        let Some(cfg) = self.config.instance(&self.item.tenant_id, instance) else {
            let text = format!("`{instance}` is no longer configured in deploybot.");
            let detail = format!("{verb} of {instance} refused: no longer configured");
            return self.refused_audited(step, text, detail, None).await;
        };
        if !commenter.allows(cfg) {
            let text = format!(
                "@{} cannot {verb} `{}`: that needs {} permission on {}.",
                job.user,
                cfg.environment,
                cfg.allowed_permissions.join(", "),
                job.repo,
            );
            let detail = format!("{verb} of {} refused: no permission", cfg.name);
            return self.refused_audited(step, text, detail, Some(cfg)).await;
        }
        let may_force = self.is_deployer(commenter, cfg).await?;
        if !cfg.deployers.is_empty() && !may_force {
            let text = format!(
                "@{} cannot {verb} `{}`: only its deployers may ({}).",
                job.user,
                cfg.environment,
                deployer_list(cfg),
            );
            let detail = format!("{verb} of {} refused: not a deployer", cfg.name);
            return self.refused_audited(step, text, detail, Some(cfg)).await;
        }
        let pull = self.pull(commenter).await?;
        if let Some(text) = pull_refusal(job, cfg, checks, pull) {
            let detail = format!("{verb} of {} refused on #{}: {text}", cfg.name, job.pr);
            return self.refused_audited(step, text, detail, Some(cfg)).await;
        }
        Ok(Some(Target {
            step,
            cfg,
            pull,
            may_force,
        }))
    }

    /// [`Self::target`] for `/lock` and `/unlock`. A global lock holds every environment
    /// of the repository, so with `global` the commenter must first be allowed on each.
    async fn lock_target<'c>(
        &'c self,
        step: i32,
        instance: &str,
        global: bool,
        checks: &Checks,
        commenter: &'c mut Commenter<'_>,
    ) -> Result<Option<Target<'c>>, Stop> {
        if global
            && !self
                .allowed_everywhere(step, checks.verb, commenter)
                .await?
        {
            return Ok(None);
        }
        self.target(step, instance, checks, commenter).await
    }

    /// Whether the commenter may use every configured environment of the repository (its
    /// permission and its `deployers`), as a global lock needs. When not, the refusal is
    /// recorded, naming each environment and who may, and it is in the audit trail.
    async fn allowed_everywhere(
        &self,
        step: i32,
        verb: &str,
        commenter: &Commenter<'_>,
    ) -> Result<bool, Stop> {
        let job = self.job;
        let tenant = self.item.tenant_id.as_str();
        let mut refused = Vec::new();
        let mut names = Vec::new();
        for cfg in self.config.instances.iter().filter(|i| {
            i.repo.eq_ignore_ascii_case(&job.repo) && i.tenant().eq_ignore_ascii_case(tenant)
        }) {
            let why = if !commenter.allows(cfg) {
                let needed = cfg.allowed_permissions.join(", ");
                format!("`{}` (that needs {needed} permission)", cfg.environment)
            } else if !cfg.deployers.is_empty() && !self.is_deployer(commenter, cfg).await? {
                let who = deployer_list(cfg);
                format!("`{}` (only its deployers may: {who})", cfg.environment)
            } else {
                continue;
            };
            refused.push(why);
            names.push(cfg.name.as_str());
        }
        if refused.is_empty() {
            return Ok(true);
        }
        let text = format!(
            "@{} cannot {verb} every environment of {}: a global lock holds all of them, and you may not {verb} {}. Only someone allowed on every environment may.",
            job.user,
            job.repo,
            refused.join(", "),
        );
        let detail = format!(
            "global {verb} of {} refused: not allowed on {}",
            job.repo,
            names.join(", ")
        );
        self.refused_audited::<()>(step, text, detail, None).await?;
        Ok(false)
    }

    /// Records a refusal of `step` (its reply and 😕) and, the first time, puts it in the
    /// audit trail as the commenter's `refused`, on `cfg`'s instance when there is one.
    pub(super) async fn refused_audited<T>(
        &self,
        step: i32,
        text: String,
        detail: String,
        cfg: Option<&InstanceConfig>,
    ) -> Result<Option<T>, Stop> {
        let items = vec![self.out.reply(text), self.out.reaction("confused")];
        let acted = self
            .act(step, CommentEffect::Reply, move |_| items.clone())
            .await?;
        if acted.is_none() {
            return Ok(None);
        }
        let tenant = self.item.tenant_id.as_str();
        let service = &self.cx.service;
        let actor = Actor::login(&self.job.user, false);
        let mut event = AuditEvent::new(tenant, &actor.id, "refused", detail);
        if let Some(cfg) = cfg {
            event.instance_id = service
                .resolve_instance(tenant, &cfg.name)
                .await
                .ok()
                .map(|i| i.id);
        }
        if let Err(e) = service.record_audit(event).await {
            tracing::warn!(repo = %self.job.repo, error = %e, "a refused command is not in the audit trail");
        }
        Ok(None)
    }

    /// Whether the commenter is one of `cfg`'s `deployers`; false when it lists none.
    async fn is_deployer(
        &self,
        commenter: &Commenter<'_>,
        cfg: &InstanceConfig,
    ) -> Result<bool, Stop> {
        if cfg.deployers.is_empty() {
            return Ok(false);
        }
        let job = self.job;
        deployers::is_deployer(
            commenter.client,
            &job.repo,
            job.installation_id,
            cfg,
            &job.user,
        )
        .await
        .map_err(Stop::from_api)
    }

    /// The pull request, read once per comment by the first command that needs it.
    async fn pull<'c>(&self, commenter: &'c mut Commenter<'_>) -> Result<&'c PullRequest, Stop> {
        let job = self.job;
        let pull = match commenter.pull.take() {
            Some(pull) => pull,
            None => commenter
                .client
                .pull(&job.repo, job.installation_id, job.pr)
                .await
                .map_err(Stop::from_api)?,
        };
        Ok(&*commenter.pull.insert(pull))
    }

    /// Where a deployment from this comment comes from, for its record.
    pub(super) fn source(&self, action: &str) -> Source {
        Source {
            trigger: format!(
                "{}{action} on #{} by @{}",
                self.config.command_prefix, self.job.pr, self.job.user
            ),
            pull_request: Some(self.job.pr),
            comment_id: Some(self.job.comment_id),
            installation_id: self.job.installation_id,
            requested_by: format!("@{}", self.job.user.to_ascii_lowercase()),
        }
    }

    /// An `Error::Locked` refusal's text with the lock's holder and reason shown safely.
    pub(super) async fn locked(&self, why: &str) -> Result<String, Stop> {
        let service = &self.cx.service;
        let held = service
            .locks(&self.item.tenant_id)
            .await
            .map_err(Stop::from_store)?;
        Ok(markdown::locked(why, &held))
    }

    /// The commenter as locks and the audit trail name them.
    pub(super) fn actor(&self, target: &Target<'_>) -> Actor {
        Actor::login(&self.job.user, target.may_force)
    }

    /// Admits a prepared deployment through the environment's lock and freeze (`force`
    /// passes what a deployer may), then queues it with the step's record; the outcome
    /// reply, 🚀 or 😕 follow the deployment through the outbox. A refusal is the step's
    /// reply, naming the lock's holder, reason and end, or the freeze.
    pub(super) async fn queue(
        &self,
        target: &Target<'_>,
        verb: &str,
        prepared: Result<TriggeredDeployment, Error>,
        force: bool,
    ) -> Result<(), Stop> {
        let cfg = target.cfg;
        let service = &self.cx.service;
        let tenant = self.item.tenant_id.as_str();
        let admitted = match prepared {
            Ok(mut triggered) => match service.resolve_instance(tenant, &cfg.name).await {
                Ok(instance) => service
                    .admit(
                        tenant,
                        &instance,
                        &mut triggered,
                        &self.actor(target),
                        force,
                    )
                    .await
                    .map(|()| triggered),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let mut triggered = match admitted {
            Ok(triggered) => triggered,
            Err(Error::Unavailable(e)) => return Err(Stop::unavailable(e)),
            Err(Error::Locked(why)) => return self.refuse_locked(target, verb, &why).await,
            Err(Error::Frozen(why)) => {
                let text = format!(
                    "@{} cannot {verb} `{}`: {why}",
                    self.job.user, cfg.environment
                );
                return self.refuse_or_reply(target.step, text, true).await;
            }
            Err(e) => {
                let text = format!("Could not {verb} `{}`: {e}", cfg.environment);
                let detail = format!("{verb} of {} refused: {e}", cfg.name);
                return self
                    .refused_audited::<()>(target.step, text, detail, Some(cfg))
                    .await
                    .map(|_| ());
            }
        };
        triggered.trigger_key = Some(format!("comment:{}:{}", self.job.comment_id, cfg.name));
        let effect = CommentEffect::Deploy(Box::new(triggered));
        match self.try_act(target.step, effect, |_| Vec::new()).await {
            // A lock taken since the deployment was admitted: refused as it is written.
            Err(Error::Locked(why)) => return self.refuse_locked(target, verb, &why).await,
            Err(e) => return Err(Stop::from_store(e)),
            Ok(_) => {}
        }
        self.cx.service.wake().notify_waiters();
        Ok(())
    }

    /// The reply to a deploy or rollback refused by another's lock: who holds it, why and
    /// until when, shown safely.
    async fn refuse_locked(&self, target: &Target<'_>, verb: &str, why: &str) -> Result<(), Stop> {
        let text = format!(
            "@{} cannot {verb} `{}`: {}",
            self.job.user,
            target.cfg.environment,
            self.locked(why).await?
        );
        self.refuse_or_reply(target.step, text, true).await
    }

    /// A step whose only effect is a reply (and 😕 when it refuses).
    pub(super) async fn refuse_or_reply(
        &self,
        step: i32,
        text: String,
        refused: bool,
    ) -> Result<(), Stop> {
        let mut items = vec![self.out.reply(text)];
        if refused {
            items.push(self.out.reaction("confused"));
        }
        self.act(step, CommentEffect::Reply, move |_| items.clone())
            .await
            .map(|_| ())
    }

    /// Records `step` with its effect and items; None when it acted before.
    pub(super) async fn act(
        &self,
        step: i32,
        effect: CommentEffect,
        items: impl Fn(&CommentActed) -> Vec<NewOutboxItem> + Send + Sync + 'static,
    ) -> Result<Option<CommentActed>, Stop> {
        self.try_act(step, effect, items)
            .await
            .map_err(Stop::from_store)
    }

    /// [`act`](Self::act), answering the store's refusal as it is.
    pub(super) async fn try_act(
        &self,
        step: i32,
        effect: CommentEffect,
        items: impl Fn(&CommentActed) -> Vec<NewOutboxItem> + Send + Sync + 'static,
    ) -> Result<Option<CommentActed>, Error> {
        let step = CommentStep {
            tenant_id: self.item.tenant_id.clone(),
            repo: self.repo_key.clone(),
            comment_id: self.job.comment_id,
            step,
        };
        let store = Arc::clone(&self.cx.store);
        match blocking(move || store.act_on_comment(&step, &effect, &items)).await {
            Ok(acted) => Ok(acted),
            // Another run of the same step committed first: it acted.
            Err(Error::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Why a command may not act from this pull request (it is closed, or from a fork), when
/// its checks ask for an open one.
fn pull_refusal(
    job: &CommentJob,
    cfg: &InstanceConfig,
    checks: &Checks,
    pull: &PullRequest,
) -> Option<String> {
    let verb = checks.verb;
    if !checks.open_pull {
        return None;
    }
    if !pull.open {
        return Some(format!(
            "Pull request #{} is closed: deploybot does not {verb} `{}` from it.",
            job.pr, cfg.environment
        ));
    }
    if !pull.from_fork {
        return None;
    }
    match checks.forks {
        Forks::WhenAllowed if cfg.allow_forks => None,
        Forks::WhenAllowed => Some(format!(
            "Pull request #{} comes from a fork, and `{}` does not deploy forks (`allow_forks = false`).",
            job.pr, cfg.environment
        )),
        Forks::Refused => Some(format!(
            "Pull request #{} comes from a fork: deploybot does not {verb} `{}` from it. Comment on a pull request from this repository.",
            job.pr, cfg.environment
        )),
    }
}

/// An environment's `deployers` as inline code, comma-separated.
fn deployer_list(cfg: &InstanceConfig) -> String {
    cfg.deployers
        .iter()
        .map(|d| format!("`{}`", d.replace('`', "")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds the reactions and replies of one comment.
#[derive(Clone)]
pub(super) struct Outgoing {
    tenant: String,
    ordering_key: String,
    repo: String,
    pr: u64,
    comment_id: u64,
    installation_id: Option<u64>,
}

impl Outgoing {
    /// A reply on the comment's pull request.
    pub(super) fn reply(&self, body: String) -> NewOutboxItem {
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

    /// A reaction to the comment.
    pub(super) fn reaction(&self, content: &str) -> NewOutboxItem {
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
