//! Jobs that need GitHub before anything can be deployed: a `/deploy`, `/rollback` or
//! `/cancel` comment (permission check, pull request head) and a tag that arrived only as
//! a `create` event (its commit). They run from the outbox, so a crash between the
//! webhook's answer and the job loses nothing, and their deployments carry a trigger key
//! so that running a job twice deploys once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::client::ApiError;
use super::outbox::Sender;
use super::rules::{self, ImageVars, render_image};
use crate::deploy::service::blocking;
use crate::deploy::{
    DeployRequest, DeployState, Error, ListOptions, NewOutboxItem, OutboxItem, OutboxResult,
    RollbackTarget, Source,
};

fn api(e: ApiError) -> OutboxResult {
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

fn store_error(e: Error) -> OutboxResult {
    match e {
        Error::Unavailable(e) => OutboxResult::Retry {
            after: Duration::from_secs(2),
            error: e,
        },
        other => OutboxResult::Failed {
            error: other.to_string(),
        },
    }
}

/// Runs a job item.
pub async fn run(sender: &Sender, item: &OutboxItem) -> OutboxResult {
    match item.kind.as_str() {
        rules::JOB_RESOLVE_TAG => resolve_tag(sender, item).await,
        _ => command(sender, item).await,
    }
}

async fn resolve_tag(sender: &Sender, item: &OutboxItem) -> OutboxResult {
    let p = &item.payload;
    let repo = p["repo"].as_str().unwrap_or_default();
    let tag = p["tag"].as_str().unwrap_or_default();
    let installation = p["installation_id"].as_u64();
    let Some(client) = sender.client_or_log(item) else {
        return OutboxResult::Failed {
            error: format!(
                "tag {tag} arrived without a push event, and its commit cannot be resolved without GitHub credentials"
            ),
        };
    };
    let sha = match client.tag_commit(repo, installation, tag).await {
        Ok(sha) => sha,
        Err(e) => return api(e),
    };
    let sender_login = p["sender"].as_str().unwrap_or("github");
    let notes = format!(
        "tag {tag} by @{sender_login} ({})",
        sha.get(..7).unwrap_or(&sha)
    );
    for name in p["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let Some(cfg) = sender.instance_config(&item.tenant_id, name) else {
            continue;
        };
        let vars = ImageVars {
            sha: &sha,
            git_ref: &format!("refs/tags/{tag}"),
            branch: None,
            tag: Some(tag),
            pr: None,
        };
        let image = match render_image(&cfg.image, &vars) {
            Ok(image) => image,
            Err(reason) => {
                tracing::warn!(instance = name, %reason, "tag not deployed");
                continue;
            }
        };
        let source = Source {
            trigger: notes.clone(),
            pull_request: None,
            comment_id: None,
            installation_id: installation,
        };
        match deploy(
            sender,
            &item.tenant_id,
            name,
            image,
            sha.clone(),
            notes.clone(),
            sender_login,
            source,
            None,
            format!("tag:{tag}:{sha}"),
        )
        .await
        {
            Ok(_) => {}
            Err(Error::Unavailable(e)) => {
                return OutboxResult::Retry {
                    after: Duration::from_secs(2),
                    error: e,
                };
            }
            Err(e) => tracing::warn!(instance = name, error = %e, "tag not deployed"),
        }
    }
    OutboxResult::Sent
}

/// Prepares and queues one deployment under a trigger key; `Ok(None)` when the key already deployed.
#[allow(clippy::too_many_arguments)]
async fn deploy(
    sender: &Sender,
    tenant: &str,
    instance: &str,
    image: String,
    commit_sha: String,
    notes: String,
    initiator: &str,
    source: Source,
    strategy: Option<String>,
    key: String,
) -> Result<Option<crate::deploy::Deployment>, Error> {
    let inst = sender.service.resolve_instance(tenant, instance).await?;
    let request = DeployRequest {
        instance_id: inst.id,
        image,
        env: Default::default(),
        strategy: strategy.unwrap_or_default(),
        notes,
        commit_sha,
    };
    let mut triggered = sender
        .service
        .prepare(tenant, request, initiator, source)
        .await?;
    triggered.trigger_key = Some(key);
    sender.service.queue(triggered, Vec::new()).await
}

async fn command(sender: &Sender, item: &OutboxItem) -> OutboxResult {
    let p = &item.payload;
    let repo = p["repo"].as_str().unwrap_or_default().to_string();
    let installation = p["installation_id"].as_u64();
    let pr = p["pr"].as_u64().unwrap_or_default();
    let comment_id = p["comment_id"].as_u64().unwrap_or_default();
    let user = p["user"].as_str().unwrap_or_default().to_string();
    let action = p["action"].as_str().unwrap_or_default();
    let instance = p["instance"].as_str().unwrap_or_default().to_string();
    let tenant = item.tenant_id.clone();
    // Replies and the 😕 go out after this job, in order, through the outbox.
    let respond = |body: String, refused: bool| {
        let mut items = vec![NewOutboxItem {
            tenant_id: tenant.clone(),
            ordering_key: item.ordering_key.clone(),
            deployment_id: None,
            kind: rules::COMMENT_REPLY.into(),
            payload: json!({"repo": repo, "issue": pr, "body": body, "installation_id": installation}),
        }];
        if refused {
            items.push(NewOutboxItem {
                tenant_id: tenant.clone(),
                ordering_key: item.ordering_key.clone(),
                deployment_id: None,
                kind: rules::COMMENT_REACTION.into(),
                payload: json!({"repo": repo, "comment_id": comment_id, "content": "confused", "installation_id": installation}),
            });
        }
        items
    };
    let finish = |items: Vec<NewOutboxItem>| async {
        let store = Arc::clone(&sender.store);
        match blocking(move || store.enqueue(&items)).await {
            Ok(()) => OutboxResult::Sent,
            Err(e) => store_error(e),
        }
    };
    let Some(cfg) = sender.instance_config(&tenant, &instance) else {
        return finish(respond(
            format!("`{instance}` is no longer configured in deploybot."),
            true,
        ))
        .await;
    };
    let Some(client) = sender.client_or_log(item) else {
        return OutboxResult::Failed {
            error: "commands need GitHub credentials to check the commenter's permission".into(),
        };
    };
    let role = match client.permission(&repo, installation, &user).await {
        Ok(role) => role,
        Err(e) => return api(e),
    };
    if !cfg
        .allowed_permissions
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(&role))
    {
        return finish(respond(
            format!(
                "@{user} cannot {action} `{}`: that needs {} permission on {repo}, and you have `{role}`.",
                cfg.environment,
                cfg.allowed_permissions.join(", "),
            ),
            true,
        ))
        .await;
    }
    let source = Source {
        trigger: format!("/{action} on #{pr} by @{user}"),
        pull_request: Some(pr),
        comment_id: Some(comment_id),
        installation_id: installation,
    };
    let key = format!("comment:{comment_id}:{instance}");
    if action == "cancel" {
        return cancel(
            sender,
            &tenant,
            &instance,
            &user,
            cfg.environment.as_str(),
            respond,
            finish,
        )
        .await;
    }
    let pull = match client.pull(&repo, installation, pr).await {
        Ok(pull) => pull,
        Err(e) => return api(e),
    };
    if !pull.open {
        return finish(respond(
            format!("Pull request #{pr} is closed: nothing was deployed."),
            true,
        ))
        .await;
    }
    if pull.from_fork && !cfg.allow_forks {
        return finish(respond(
            format!("Pull request #{pr} comes from a fork, and `{}` does not deploy forks (`allow_forks = false`).", cfg.environment),
            true,
        ))
        .await;
    }
    let result = if action == "rollback" {
        let target = match &p["target"] {
            Value::Number(n) => RollbackTarget::Version(n.as_i64().unwrap_or_default()),
            _ => RollbackTarget::Previous,
        };
        match sender.service.resolve_instance(&tenant, &instance).await {
            Ok(inst) => sender
                .service
                .rollback_from(&tenant, inst.id, target, &user, source, Some(key))
                .await
                .map(Some),
            Err(e) => Err(e),
        }
    } else {
        let git_ref = format!("refs/heads/{}", pull.head_ref);
        let vars = ImageVars {
            sha: &pull.head_sha,
            git_ref: &git_ref,
            branch: Some(&pull.head_ref),
            tag: None,
            pr: Some(pr),
        };
        match render_image(&cfg.image, &vars) {
            Err(reason) => Err(Error::InvalidRequest(reason)),
            Ok(image) => {
                let notes = format!(
                    "/deploy on #{pr} by @{user} ({})",
                    pull.head_sha.get(..7).unwrap_or(&pull.head_sha)
                );
                let strategy = p["strategy"].as_str().map(str::to_string);
                deploy(
                    sender,
                    &tenant,
                    &instance,
                    image,
                    pull.head_sha.clone(),
                    notes,
                    &user,
                    source,
                    strategy,
                    key,
                )
                .await
            }
        }
    };
    match result {
        // The outcome reply, 🚀 or 😕, follow the deployment through the outbox.
        Ok(_) | Err(Error::Conflict(_)) => OutboxResult::Sent,
        Err(Error::Unavailable(e)) => OutboxResult::Retry {
            after: Duration::from_secs(2),
            error: e,
        },
        Err(e) => {
            finish(respond(
                format!("Could not {action} `{}`: {e}", cfg.environment),
                true,
            ))
            .await
        }
    }
}

async fn cancel<R, F, Fut>(
    sender: &Sender,
    tenant: &str,
    instance: &str,
    user: &str,
    environment: &str,
    respond: R,
    finish: F,
) -> OutboxResult
where
    R: Fn(String, bool) -> Vec<NewOutboxItem>,
    F: Fn(Vec<NewOutboxItem>) -> Fut,
    Fut: std::future::Future<Output = OutboxResult>,
{
    let inst = match sender.service.resolve_instance(tenant, instance).await {
        Ok(inst) => inst,
        Err(e) => return store_error(e),
    };
    let page = match sender
        .service
        .list_deployments(
            tenant,
            inst.id,
            ListOptions {
                cursor: None,
                limit: Some(50),
            },
        )
        .await
    {
        Ok(page) => page,
        Err(e) => return store_error(e),
    };
    let Some(target) = page
        .items
        .iter()
        .find(|d| matches!(d.state, DeployState::Running | DeployState::Pending))
    else {
        return finish(respond(
            format!("Nothing to cancel on `{environment}`: no deployment is queued or running."),
            false,
        ))
        .await;
    };
    match sender.service.cancel(tenant, target.id, user).await {
        Ok(_) => {
            finish(respond(
                format!("Cancelling deployment {} on `{environment}`.", target.id),
                false,
            ))
            .await
        }
        Err(Error::InvalidState(_)) => {
            finish(respond(
                format!(
                    "Deployment {} on `{environment}` has already finished.",
                    target.id
                ),
                false,
            ))
            .await
        }
        Err(e) => store_error(e),
    }
}
