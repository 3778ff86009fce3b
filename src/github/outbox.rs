//! The outbox sender: delivers reports to GitHub in order per key (a deployment, a
//! comment), with retries and backoff, and runs the jobs that need GitHub. Several
//! processes can send from one database: each item is claimed by exactly one.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::{ApiError, GithubClient};
use super::{jobs, rules};
use crate::config::{Config, InstanceConfig};
use crate::deploy::service::blocking;
use crate::deploy::{
    DeployKind, DeployState, Deployment, DeploymentId, Error, Instance, OutboxItem, OutboxResult,
    Release, Service, Store,
};
use crate::store::{
    DEPLOYMENT_CREATED, DEPLOYMENT_REACTION, DEPLOYMENT_REPLY, DEPLOYMENT_STATUS, SENDER_LOST,
    WORKER_LOST,
};

/// An item that keeps failing is given up after this many attempts.
pub const MAX_ATTEMPTS: i32 = 25;

/// How long a claim on an item lasts; renewed while sending, so that the items of a
/// sender that died are taken over this soon.
const CLAIM_LEASE: Duration = Duration::from_secs(15);

/// How many items are sent at once.
const IN_FLIGHT: usize = 16;

/// Builds the `log_url` of a deployment: its page, with a read token when pages are private.
pub type LogUrl = Arc<dyn Fn(&Deployment) -> String + Send + Sync>;

/// Everything a handler needs.
pub struct Sender {
    pub store: Arc<dyn Store>,
    pub service: Service,
    pub config: Arc<Config>,
    pub client: Option<Arc<GithubClient>>,
    pub log_url: LogUrl,
    owner: String,
    wake: Arc<Notify>,
}

/// GitHub caps descriptions at 140 characters.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The delay before the next attempt: GitHub's own when it gave one, otherwise
/// exponential (1 s, 2 s, 4 s … up to 10 minutes).
fn backoff(attempts: i32, suggested: Duration) -> Duration {
    let exponential = Duration::from_secs(2u64.saturating_pow((attempts - 1).clamp(0, 20) as u32));
    suggested.max(exponential.min(Duration::from_secs(600)))
}

impl Sender {
    pub fn new(
        store: Arc<dyn Store>,
        service: Service,
        config: Arc<Config>,
        client: Option<Arc<GithubClient>>,
        log_url: LogUrl,
    ) -> Self {
        let wake = Arc::clone(service.wake());
        Self {
            store,
            service,
            config,
            client,
            log_url,
            owner: format!(
                "sender:{}:{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            wake,
        }
    }

    /// Sends until `stop`: what is being sent is finished, and what is still queued stays
    /// in the outbox for the next start (or another server). It does not drain a backlog
    /// first, which could take minutes against a slow or rate-limiting GitHub.
    ///
    /// Up to `IN_FLIGHT` items are sent at once, and more are claimed whenever a quarter
    /// of the places are free: an item that GitHub is slow to answer holds up only its own
    /// key (the claim never hands out an item while an older one of its key is pending),
    /// not the items claimed with it.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        if self.client.is_none() {
            tracing::warn!(
                "no GitHub credentials (GITHUB_TOKEN or GITHUB_APP_ID + key): reports are written to the log and the pages only"
            );
        }
        let mut sending = tokio::task::JoinSet::new();
        let mut renew_at = tokio::time::Instant::now() + CLAIM_LEASE / 3;
        while !stop.is_cancelled() {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Claims are made for a quarter of the places at least (or when nothing is in
            // flight): each claim reads every lane, so not one per finished item.
            let free = IN_FLIGHT.saturating_sub(sending.len());
            if free >= IN_FLIGHT / 4 || sending.is_empty() {
                let store = Arc::clone(&self.store);
                let owner = self.owner.clone();
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match blocking(move || store.claim_outbox(&owner, CLAIM_LEASE, limit)).await {
                    Ok(items) => {
                        let claimed = items.len();
                        for item in items {
                            let me = Arc::clone(&self);
                            sending.spawn(async move { me.process(item).await });
                        }
                        // More may be waiting: look again at once while places are free.
                        if claimed > 0 && claimed < free {
                            continue;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the outbox; retrying"),
                }
            }
            tokio::select! {
                Some(_) = sending.join_next(), if !sending.is_empty() => {
                    while sending.try_join_next().is_some() {}
                }
                _ = &mut notified => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = tokio::time::sleep_until(renew_at), if !sending.is_empty() => {}
                _ = stop.cancelled() => {}
            }
            if sending.is_empty() || tokio::time::Instant::now() >= renew_at {
                if !sending.is_empty() {
                    self.renew_claims().await;
                }
                renew_at = tokio::time::Instant::now() + CLAIM_LEASE / 3;
            }
        }
        // Finish what is being sent, keeping its claims meanwhile.
        loop {
            tokio::select! {
                next = sending.join_next() => if next.is_none() { break },
                _ = tokio::time::sleep_until(renew_at) => {
                    self.renew_claims().await;
                    renew_at = tokio::time::Instant::now() + CLAIM_LEASE / 3;
                }
            }
        }
        tracing::info!("outbox sender stopped; reports not sent yet stay queued");
    }

    /// Keeps the claims on the items being sent, however slow GitHub is.
    async fn renew_claims(&self) {
        let store = Arc::clone(&self.store);
        let owner = self.owner.clone();
        if let Err(e) = blocking(move || store.renew_outbox(&owner, CLAIM_LEASE)).await {
            tracing::warn!(error = %e, "cannot renew the claims on reports being sent");
        }
    }

    /// Sends one item and records the outcome.
    pub async fn process(&self, item: OutboxItem) {
        let mut result = self.handle(&item).await;
        if let OutboxResult::Retry { after, error } = &result {
            if item.attempts + 1 >= MAX_ATTEMPTS {
                result = OutboxResult::Failed {
                    error: format!("gave up after {MAX_ATTEMPTS} attempts: {error}"),
                };
            } else {
                result = OutboxResult::Retry {
                    after: backoff(item.attempts + 1, *after),
                    error: error.clone(),
                };
            }
        }
        match &result {
            OutboxResult::Sent => tracing::debug!(item = item.id, kind = %item.kind, "sent"),
            OutboxResult::Retry { after, error } => {
                tracing::warn!(item = item.id, kind = %item.kind, deployment = ?item.deployment_id, %error, ?after, "GitHub report delayed")
            }
            OutboxResult::Failed { error } => {
                tracing::error!(item = item.id, kind = %item.kind, deployment = ?item.deployment_id, %error, "GitHub refused a report")
            }
            OutboxResult::Skipped { reason } => {
                tracing::info!(item = item.id, kind = %item.kind, deployment = ?item.deployment_id, %reason, "report not sent")
            }
        }
        let label = match &result {
            OutboxResult::Sent => crate::metrics::SendResult::Sent,
            OutboxResult::Retry { .. } => crate::metrics::SendResult::Retry,
            OutboxResult::Failed { .. } => crate::metrics::SendResult::Failed,
            OutboxResult::Skipped { .. } => crate::metrics::SendResult::Skipped,
        };
        crate::metrics::global().outbox_result(&item.kind, label);
        let store = Arc::clone(&self.store);
        let owner = self.owner.clone();
        let id = item.id;
        if let Err(e) = blocking(move || store.complete_outbox(id, &owner, &result)).await {
            tracing::warn!(item = id, error = %e, "cannot record the outcome of a report; it will be retried");
        }
    }

    async fn handle(&self, item: &OutboxItem) -> OutboxResult {
        let outcome = match item.kind.as_str() {
            DEPLOYMENT_CREATED | DEPLOYMENT_STATUS | DEPLOYMENT_REACTION | DEPLOYMENT_REPLY => {
                self.deployment_report(item).await
            }
            rules::COMMENT_REACTION => self.comment_reaction(item).await,
            rules::COMMENT_REPLY => self.comment_reply(item).await,
            rules::JOB_COMMAND | rules::JOB_PULL_HEAD | rules::JOB_RESOLVE_TAG => {
                return jobs::run(self, item).await;
            }
            other => {
                return OutboxResult::Failed {
                    error: format!("unknown outbox item kind {other:?}"),
                };
            }
        };
        match outcome {
            Ok(result) => result,
            Err(Failure::Api(ApiError::Retry { after, message })) => OutboxResult::Retry {
                after,
                error: message,
            },
            Err(Failure::Api(refused)) => OutboxResult::Failed {
                error: refused.to_string(),
            },
            Err(Failure::Store(Error::Unavailable(e))) => OutboxResult::Retry {
                after: Duration::from_secs(2),
                error: e,
            },
            Err(Failure::Store(e)) => OutboxResult::Failed {
                error: e.to_string(),
            },
        }
    }

    /// The client, or the log line of a report that cannot be sent.
    pub fn client_or_log(&self, item: &OutboxItem) -> Option<&GithubClient> {
        if self.client.is_none() {
            tracing::info!(kind = %item.kind, deployment = ?item.deployment_id, payload = %item.payload, "no GitHub credentials: would report");
        }
        self.client.as_deref()
    }

    pub(crate) async fn load(
        &self,
        tenant: &str,
        id: DeploymentId,
    ) -> Result<(Deployment, Release, Instance), Error> {
        let store = Arc::clone(&self.store);
        let tenant = tenant.to_string();
        blocking(move || store.get_deployment_context(&tenant, id)).await
    }

    pub(crate) fn instance_config(&self, tenant: &str, name: &str) -> Option<&InstanceConfig> {
        self.config.instance(tenant, name)
    }

    async fn deployment_report(&self, item: &OutboxItem) -> Result<OutboxResult, Failure> {
        let Some(id) = item.deployment_id else {
            return Ok(OutboxResult::Failed {
                error: "a deployment report without a deployment".into(),
            });
        };
        let Some(client) = self.client_or_log(item) else {
            return Ok(OutboxResult::Skipped {
                reason: "no GitHub credentials: logged only".into(),
            });
        };
        let (d, release, instance) = self.load(&item.tenant_id, id).await?;
        let cfg = self.instance_config(&item.tenant_id, &instance.name);
        let repo = instance.repo.as_str();
        let installation = d.source.installation_id;
        let log_url = (self.log_url)(&d);
        let in_doubt = in_doubt(item);
        match item.kind.as_str() {
            DEPLOYMENT_CREATED => {
                if release.commit_sha.is_empty() {
                    return Ok(OutboxResult::Skipped {
                        reason: "the release has no commit SHA: not mirrored on GitHub".into(),
                    });
                }
                let mut body = json!({
                    "ref": release.commit_sha,
                    "task": "deploy",
                    "environment": instance.environment,
                    "auto_merge": false,
                    "required_contexts": cfg.map(|c| c.required_contexts.clone()).unwrap_or_default(),
                    "transient_environment": cfg.is_some_and(|c| c.transient_environment),
                    "description": clip(&format!("v{} · {}", release.version, if d.source.trigger.is_empty() { &d.initiator } else { &d.source.trigger }), 140),
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
                let found = if in_doubt {
                    let id = d.id.to_string();
                    let (sha, environment) = (&release.commit_sha, &instance.environment);
                    client
                        .find_deployment(repo, installation, sha, environment, &id)
                        .await?
                } else {
                    None
                };
                let github_id = match found {
                    Some(github_id) => github_id,
                    None => client.create_deployment(repo, installation, &body).await?,
                };
                let store = Arc::clone(&self.store);
                let tenant = item.tenant_id.clone();
                blocking(move || store.set_github_deployment_id(&tenant, id, github_id)).await?;
                Ok(OutboxResult::Sent)
            }
            DEPLOYMENT_STATUS => {
                let Some(github_id) = d.github_deployment_id else {
                    return Ok(OutboxResult::Skipped {
                        reason: "no GitHub Deployment to report to".into(),
                    });
                };
                let state = item.payload["state"].as_str().unwrap_or_default();
                let message = item.payload["message"].as_str().unwrap_or_default();
                // Progress that a newer status already replaces is not sent; the first
                // in_progress ("started") always is, so GitHub shows the deployment ran.
                if state == DeployState::Running.as_str() && message != "started" {
                    let store = Arc::clone(&self.store);
                    let stale = item.clone();
                    if blocking(move || store.newer_status_pending(&stale)).await? {
                        return Ok(OutboxResult::Skipped {
                            reason: "stale: a newer status replaces it".into(),
                        });
                    }
                }
                let body = status_body(&d, &release, &instance, cfg, state, message, &log_url);
                if in_doubt
                    && client
                        .has_status(repo, installation, github_id, &body)
                        .await?
                {
                    return Ok(OutboxResult::Sent);
                }
                client
                    .create_status(repo, installation, github_id, &body)
                    .await?;
                Ok(OutboxResult::Sent)
            }
            DEPLOYMENT_REACTION => {
                let Some(comment) = d.source.comment_id else {
                    return Ok(OutboxResult::Skipped {
                        reason: "not triggered by a comment".into(),
                    });
                };
                let content = item.payload["content"].as_str().unwrap_or("confused");
                client.react(repo, installation, comment, content).await?;
                Ok(OutboxResult::Sent)
            }
            _ => {
                let Some(pr) = d.source.pull_request else {
                    return Ok(OutboxResult::Skipped {
                        reason: "not triggered on a pull request".into(),
                    });
                };
                let text = outcome_reply(
                    &as_reported(&d, &item.payload),
                    &release,
                    &instance,
                    &log_url,
                );
                let key = d.id.to_string();
                reply_once(client, (repo, installation, pr), &key, &text, in_doubt).await
            }
        }
    }

    async fn comment_reaction(&self, item: &OutboxItem) -> Result<OutboxResult, Failure> {
        let Some(client) = self.client_or_log(item) else {
            return Ok(OutboxResult::Skipped {
                reason: "no GitHub credentials: logged only".into(),
            });
        };
        let p = &item.payload;
        client
            .react(
                p["repo"].as_str().unwrap_or_default(),
                p["installation_id"].as_u64(),
                p["comment_id"].as_u64().unwrap_or_default(),
                p["content"].as_str().unwrap_or("eyes"),
            )
            .await?;
        Ok(OutboxResult::Sent)
    }

    async fn comment_reply(&self, item: &OutboxItem) -> Result<OutboxResult, Failure> {
        let Some(client) = self.client_or_log(item) else {
            return Ok(OutboxResult::Skipped {
                reason: "no GitHub credentials: logged only".into(),
            });
        };
        let p = &item.payload;
        let (repo, installation) = (
            p["repo"].as_str().unwrap_or_default(),
            p["installation_id"].as_u64(),
        );
        let issue = p["issue"].as_u64().unwrap_or_default();
        let text = p["body"].as_str().unwrap_or_default();
        let key = format!("outbox-{}", item.id);
        reply_once(
            client,
            (repo, installation, issue),
            &key,
            text,
            in_doubt(item),
        )
        .await
    }
}

/// Why handling an item failed.
pub(crate) enum Failure {
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

/// A deployment status as GitHub wants it.
fn status_body(
    d: &Deployment,
    release: &Release,
    instance: &Instance,
    cfg: Option<&InstanceConfig>,
    state: &str,
    message: &str,
    log_url: &str,
) -> Value {
    let (github_state, description) = match state {
        "pending" => ("queued", format!("v{} queued", release.version)),
        "running" if message == "started" => (
            "in_progress",
            format!("v{} {} started", release.version, d.strategy),
        ),
        "running" => ("in_progress", format!("v{} {message}", release.version)),
        "succeeded" if d.kind == DeployKind::Rollback => {
            ("success", format!("restored v{}", release.version))
        }
        "succeeded" => (
            "success",
            format!("v{} deployed ({})", release.version, d.strategy),
        ),
        "failed" if message == WORKER_LOST => ("error", format!("v{}: {message}", release.version)),
        "failed" => ("failure", format!("v{} failed: {message}", release.version)),
        "rolled_back" => (
            "failure",
            format!("v{} rolled back: {message}", release.version),
        ),
        _ => (
            "error",
            format!(
                "v{} {}",
                release.version,
                if message.is_empty() {
                    "cancelled"
                } else {
                    message
                }
            ),
        ),
    };
    let mut body = json!({
        "state": github_state,
        "description": clip(&description, 140),
        "log_url": log_url,
        "environment": instance.environment,
    });
    if let Some(url) = cfg.and_then(|c| c.environment_url.clone()) {
        body["environment_url"] = json!(url);
    }
    if github_state == "success" {
        body["auto_inactive"] = json!(true);
    }
    body
}

/// Whether an earlier attempt may have reached GitHub although no outcome was recorded
/// (it was tried before, or its sender died mid-send): then look before sending again.
fn in_doubt(item: &OutboxItem) -> bool {
    item.attempts > 0 || item.last_error == SENDER_LOST
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
fn as_reported(d: &Deployment, payload: &serde_json::Value) -> Deployment {
    let mut d = d.clone();
    if let Some(state) = payload["state"].as_str().and_then(|s| s.parse().ok()) {
        d.state = state;
        d.error = payload["error"].as_str().unwrap_or_default().to_string();
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
        _ => format!("❌ {what} failed: {}", d.error),
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
        };
        let release = Release::from_request("acme", &request);
        let mut d = Deployment::pending(&release, "rolling", "octocat");
        // Since queued: a later rollback marked it rolled back.
        d.state = DeployState::RolledBack;
        d.error = "rolled back by dep_x".into();
        let sent = as_reported(&d, &serde_json::json!({"state": "succeeded", "error": ""}));
        assert_eq!(sent.state, DeployState::Succeeded);
        assert_eq!(sent.error, "");
        let old = as_reported(&d, &serde_json::json!({}));
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

    #[test]
    fn backoff_grows_and_honours_github() {
        assert_eq!(backoff(1, Duration::ZERO), Duration::from_secs(1));
        assert_eq!(backoff(4, Duration::ZERO), Duration::from_secs(8));
        assert_eq!(backoff(30, Duration::ZERO), Duration::from_secs(600));
        assert_eq!(backoff(1, Duration::from_secs(42)), Duration::from_secs(42));
    }
}
