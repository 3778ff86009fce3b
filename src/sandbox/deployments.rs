//! Creating deployments and their statuses, as GitHub checks and records them.

use serde_json::{Map, Value, json};

use super::http::Incoming;
use super::json::{deployment_json, status_json};
use super::openapi::{CREATE_DEPLOYMENT, CREATE_DEPLOYMENT_STATUS};
use super::reply::{Reply, custom_error, find_repo, find_repo_mut, paginate, parse_body};
use super::state::{DOCS, Repo, State, now};
use super::types::{FakeDeployment, FakeDeploymentStatus};

impl State {
    pub(super) fn create_deployment(
        &mut self,
        req: &Incoming,
        owner: &str,
        name: &str,
        actor: &str,
    ) -> Reply {
        let excerpt = &CREATE_DEPLOYMENT;
        let docs = excerpt.documentation_url();
        if find_repo(&self.repos, owner, name).is_err() {
            return Reply::not_found(&docs);
        }
        let body = match parse_body(req, excerpt) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let mut deployment = new_deployment(&body, actor);
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(&docs);
        };
        let Some(sha) = resolve_ref(repo, &deployment.git_ref) else {
            let message = format!("No ref found for: {}", deployment.git_ref);
            return Reply::error(422, &message, &docs);
        };
        if let Some(conflict) = failing_contexts(repo, &deployment, &sha, &docs) {
            return conflict;
        }
        deployment.sha = sha;
        deployment.id = self.next_id("deployment");
        let base_url = self.base_url.clone();
        let Ok(repo) = find_repo_mut(&mut self.repos, owner, name) else {
            return Reply::not_found(&docs);
        };
        let answer = deployment_json(&base_url, repo, &deployment);
        repo.deployments.push(deployment);
        Reply::json(201, answer)
    }

    pub(super) fn list_statuses(&self, req: &Incoming, owner: &str, name: &str, id: u64) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(DOCS);
        };
        let Some(deployment) = repo.deployments.iter().find(|d| d.id == id) else {
            return Reply::not_found(DOCS);
        };
        // GitHub lists the newest status first.
        let statuses = deployment.statuses.iter().rev();
        let items = statuses
            .map(|s| status_json(&self.base_url, repo, deployment, s))
            .collect();
        paginate(&self.base_url, req, items)
    }

    pub(super) fn create_status(
        &mut self,
        req: &Incoming,
        owner: &str,
        name: &str,
        id: u64,
        actor: &str,
    ) -> Reply {
        let excerpt = &CREATE_DEPLOYMENT_STATUS;
        let docs = excerpt.documentation_url();
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(&docs);
        };
        if !repo.deployments.iter().any(|d| d.id == id) {
            return Reply::not_found(&docs);
        }
        let body = match parse_body(req, excerpt) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        let description = text("description").unwrap_or_default();
        if description.chars().count() > 140 {
            let message = "description is too long (maximum is 140 characters)";
            return custom_error(excerpt, "description", "custom", message);
        }
        let state = text("state").unwrap_or_default();
        let auto_inactive = body.get("auto_inactive").and_then(Value::as_bool);
        let status_id = self.next_id("status");
        let base_url = self.base_url.clone();
        let Ok(repo) = find_repo_mut(&mut self.repos, owner, name) else {
            return Reply::not_found(&docs);
        };
        let Some(deployment) = repo.deployments.iter_mut().find(|d| d.id == id) else {
            return Reply::not_found(&docs);
        };
        // No environment: the previous status's, else the deployment's. One given moves the deployment.
        let environment = match text("environment") {
            Some(environment) => {
                deployment.environment = environment.clone();
                environment
            }
            None => deployment
                .statuses
                .last()
                .map(|s| s.environment.clone())
                .unwrap_or_else(|| deployment.environment.clone()),
        };
        let log_url = text("log_url")
            .or_else(|| text("target_url"))
            .unwrap_or_default();
        let status = FakeDeploymentStatus {
            id: status_id,
            state: state.clone(),
            description,
            environment: environment.clone(),
            target_url: log_url.clone(),
            log_url,
            environment_url: text("environment_url").unwrap_or_default(),
            auto_inactive,
            creator: actor.to_string(),
            created_at: now(),
        };
        deployment.statuses.push(status.clone());
        let deployment = deployment.clone();
        let answer = status_json(&base_url, repo, &deployment, &status);
        if state == "success" && auto_inactive.unwrap_or(true) {
            self.mark_earlier_inactive(owner, name, id, &environment, actor);
        }
        Reply::json(201, answer)
    }

    /// `auto_inactive` (GitHub's default: true): every earlier deployment of the same
    /// environment whose latest status is `success` gets a new `inactive` status.
    /// GitHub's text says "non-transient, non-production", but it marks production
    /// deployments too; the stand-in does not model transient environments specially.
    pub(super) fn mark_earlier_inactive(
        &mut self,
        owner: &str,
        name: &str,
        id: u64,
        environment: &str,
        actor: &str,
    ) {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return;
        };
        let earlier: Vec<u64> = repo
            .deployments
            .iter()
            .filter(|d| d.id < id && d.environment == environment)
            .filter(|d| d.statuses.last().is_some_and(|s| s.state == "success"))
            .map(|d| d.id)
            .collect();
        for earlier_id in earlier {
            let status_id = self.next_id("status");
            let Ok(repo) = find_repo_mut(&mut self.repos, owner, name) else {
                return;
            };
            let deployment = repo.deployments.iter_mut().find(|d| d.id == earlier_id);
            let Some(deployment) = deployment else {
                continue;
            };
            let Some(previous) = deployment.statuses.last().cloned() else {
                continue;
            };
            deployment.statuses.push(FakeDeploymentStatus {
                id: status_id,
                state: "inactive".to_string(),
                description: String::new(),
                auto_inactive: None,
                creator: actor.to_string(),
                created_at: now(),
                ..previous
            });
        }
    }
}

/// What a deployment `ref` names: a full SHA, a known short SHA, a branch or a tag
/// (with or without `refs/heads/` / `refs/tags/`); tags resolve to their commit.
pub(super) fn resolve_ref(repo: &Repo, git_ref: &str) -> Option<String> {
    let is_hex = !git_ref.is_empty() && git_ref.chars().all(|c| c.is_ascii_hexdigit());
    if is_hex && git_ref.len() == 40 {
        return Some(git_ref.to_lowercase());
    }
    let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
    if let Some(sha) = repo.branches.get(branch) {
        return Some(sha.clone());
    }
    let tag = git_ref.strip_prefix("refs/tags/").unwrap_or(git_ref);
    if let Some(tag) = repo.tags.get(tag) {
        return Some(tag.commit_sha.clone());
    }
    if is_hex && git_ref.len() >= 7 {
        let known = repo
            .branches
            .values()
            .chain(repo.tags.values().map(|t| &t.commit_sha));
        let known = known.chain(repo.pulls.values().map(|p| &p.head_sha));
        return known
            .into_iter()
            .find(|sha| sha.starts_with(git_ref))
            .cloned();
    }
    None
}

/// A deployment as the request body describes it, with GitHub's defaults; its id and
/// commit are set once it is accepted.
fn new_deployment(body: &Map<String, Value>, actor: &str) -> FakeDeployment {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    let flag = |key: &str| body.get(key).and_then(Value::as_bool);
    let environment = text("environment").unwrap_or_else(|| "production".to_string());
    let required_contexts: Option<Vec<String>> = body.get("required_contexts").map(|c| {
        let items = c.as_array().into_iter().flatten();
        items
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect()
    });
    let payload = match body.get("payload") {
        None => json!({}),
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        Some(other) => other.clone(),
    };
    FakeDeployment {
        id: 0,
        git_ref: text("ref").unwrap_or_default(),
        sha: String::new(),
        task: text("task").unwrap_or_else(|| "deploy".to_string()),
        production_environment: flag("production_environment")
            .unwrap_or(environment == "production"),
        transient_environment: flag("transient_environment").unwrap_or(false),
        original_environment: environment.clone(),
        environment,
        description: match body.get("description") {
            None => Some(String::new()),
            Some(d) => d.as_str().map(str::to_string),
        },
        payload,
        auto_merge: flag("auto_merge").unwrap_or(true),
        required_contexts,
        creator: actor.to_string(),
        created_at: now(),
        statuses: Vec::new(),
    }
}

/// GitHub's 409 when a required context's newest status on `sha` is not success (a
/// context without one is "missing"), else `None`.
fn failing_contexts(repo: &Repo, d: &FakeDeployment, sha: &str, docs: &str) -> Option<Reply> {
    let failing: Vec<Value> = d
        .required_contexts
        .iter()
        .flatten()
        .filter_map(|context| {
            let state = repo
                .commit_statuses
                .iter()
                .rev()
                .find(|s| s.sha == sha && &s.context == context)
                .map_or("missing", |s| s.state.as_str());
            (state != "success").then(|| json!({"context": context, "state": state}))
        })
        .collect();
    if failing.is_empty() {
        return None;
    }
    Some(Reply::json(
        409,
        json!({
            "message": format!("Conflict: Commit status checks failed for {}.", d.git_ref),
            "errors": [{"contexts": failing, "resource": "Deployment", "field": "required_contexts", "code": "invalid"}],
            "documentation_url": docs,
            "status": "409",
        }),
    ))
}
