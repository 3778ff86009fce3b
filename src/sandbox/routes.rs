//! The endpoints of Apps, collaborators, pull requests, git refs and tags, and reading
//! deployments.

use serde_json::{Value, json};

use super::http::Incoming;
use super::json::{deployment_json, user_json};
use super::openapi::CREATE_INSTALLATION_TOKEN;
use super::reply::{Reply, find_repo, paginate, parse_body};
use super::state::{DOCS, ROLES, State, fake_sha};
use super::types::FakeDeployment;

impl State {
    pub(super) fn create_installation_token(
        &mut self,
        req: &Incoming,
        installation: &str,
    ) -> Reply {
        let docs = CREATE_INSTALLATION_TOKEN.documentation_url();
        let Some(app) = &self.app else {
            return Reply::not_found(&docs);
        };
        if installation.parse::<u64>().ok() != Some(app.installation_id) {
            return Reply::not_found(&docs);
        }
        if let Err(reply) = parse_body(req, &CREATE_INSTALLATION_TOKEN) {
            return reply;
        }
        let token = app.installation_token.clone();
        if !self.installation_tokens.contains(&token) {
            self.installation_tokens.push(token.clone());
        }
        let expires_at = chrono::Utc::now() + chrono::Duration::hours(1);
        Reply::json(
            201,
            json!({
                "token": token,
                "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "permissions": {
                    "deployments": "write",
                    "issues": "write",
                    "pull_requests": "write",
                    "metadata": "read",
                    "contents": "read",
                },
                "repository_selection": "all",
            }),
        )
    }

    pub(super) fn get_repo_installation(&self, owner: &str, name: &str) -> Reply {
        let docs = "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app";
        let (Some(app), Ok(repo)) = (&self.app, find_repo(&self.repos, owner, name)) else {
            return Reply::not_found(docs);
        };
        let id = app.installation_id;
        Reply::json(
            200,
            json!({
                "id": id,
                "app_id": app.app_id,
                "account": user_json(repo.owner(), "Organization"),
                "target_type": "Organization",
                "repository_selection": "all",
                "access_tokens_url": format!("{}/app/installations/{id}/access_tokens", self.base_url),
                "repositories_url": format!("{}/installation/repositories", self.base_url),
                "html_url": format!("https://github.com/organizations/{}/settings/installations/{id}", repo.owner()),
                "permissions": {"deployments": "write", "issues": "write", "pull_requests": "write", "metadata": "read"},
                "events": ["push", "create", "issue_comment"],
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z",
                "single_file_name": null,
                "app_slug": "deploybot",
            }),
        )
    }

    pub(super) fn get_permission(&self, owner: &str, name: &str, user: &str) -> Reply {
        let docs = "https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user";
        let repo = match find_repo(&self.repos, owner, name) {
            Ok(repo) => repo,
            Err(_) => return Reply::not_found(docs),
        };
        let user_key = user.to_lowercase();
        let Some((login, role)) = repo.roles.get(&user_key) else {
            return Reply::not_found(docs);
        };
        // GitHub's legacy `permission`: maintain shows as write, triage as read.
        let permission = match role.as_str() {
            "maintain" => "write",
            "triage" => "read",
            other => other,
        };
        let rank = ROLES.iter().position(|r| r == role).unwrap_or(ROLES.len());
        let at_least = |r: &str| rank <= ROLES.iter().position(|x| *x == r).unwrap_or(0);
        let mut user = user_json(login, "User");
        user["permissions"] = json!({
            "admin": at_least("admin"),
            "maintain": at_least("maintain"),
            "push": at_least("write"),
            "triage": at_least("triage"),
            "pull": at_least("read"),
        });
        let role = repo
            .custom_roles
            .get(&user_key)
            .map_or(role.as_str(), |(name, _)| name.as_str());
        user["role_name"] = json!(role);
        Reply::json(
            200,
            json!({"permission": permission, "role_name": role, "user": user}),
        )
    }

    pub(super) fn get_pull(&self, owner: &str, name: &str, number: u64) -> Reply {
        let docs = "https://docs.github.com/rest/pulls/pulls#get-a-pull-request";
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(docs);
        };
        let Some(pull) = repo.pulls.get(&number) else {
            return Reply::not_found(docs);
        };
        let base = &self.base_url;
        let full = &repo.full_name;
        let repo_json = |full_name: &str, id: u64, fork: bool| repo_json(base, full_name, id, fork);
        let head_repo_name = if pull.from_fork {
            format!("{}/{}", pull.author, repo.name())
        } else {
            full.clone()
        };
        let head_owner = if pull.from_fork {
            pull.author.as_str()
        } else {
            repo.owner()
        };
        let closed = pull.state == "closed";
        Reply::json(
            200,
            json!({
                "url": format!("{base}/repos/{full}/pulls/{number}"),
                "id": 1000 + number,
                "node_id": format!("PR_fake{number}"),
                "html_url": format!("https://github.com/{full}/pull/{number}"),
                "diff_url": format!("https://github.com/{full}/pull/{number}.diff"),
                "patch_url": format!("https://github.com/{full}/pull/{number}.patch"),
                "issue_url": format!("{base}/repos/{full}/issues/{number}"),
                "number": number,
                "state": pull.state,
                "locked": false,
                "title": pull.title,
                "user": user_json(&pull.author, "User"),
                "body": if pull.body.is_empty() { Value::Null } else { json!(pull.body) },
                "labels": [],
                "created_at": pull.created_at,
                "updated_at": pull.created_at,
                "closed_at": if closed { json!(pull.created_at) } else { Value::Null },
                "merged_at": null,
                "merge_commit_sha": null,
                "draft": false,
                "head": {
                    "label": format!("{head_owner}:{}", pull.head_ref),
                    "ref": pull.head_ref,
                    "sha": pull.head_sha,
                    "user": user_json(head_owner, "User"),
                    "repo": repo_json(&head_repo_name, repo.id + 100_000, pull.from_fork),
                },
                "base": {
                    "label": format!("{}:main", repo.owner()),
                    "ref": "main",
                    "sha": repo.branches.get("main").cloned().unwrap_or_else(|| fake_sha(&[full, "main"])),
                    "user": user_json(repo.owner(), "Organization"),
                    "repo": repo_json(full, repo.id, false),
                },
                "author_association": if pull.from_fork { "CONTRIBUTOR" } else { "MEMBER" },
                "merged": false,
                "mergeable": true,
                "mergeable_state": "clean",
                "comments": repo.comments.iter().filter(|c| c.issue == number).count(),
            }),
        )
    }

    pub(super) fn get_git_ref(&self, owner: &str, name: &str, git_ref: &str) -> Reply {
        let docs = "https://docs.github.com/rest/git/refs#get-a-reference";
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(docs);
        };
        let base = format!("{}/repos/{}", self.base_url, repo.full_name);
        let object = if let Some(tag) = git_ref.strip_prefix("tags/") {
            repo.tags.get(tag).map(|t| match &t.object_sha {
                Some(object) => json!({"sha": object, "type": "tag", "url": format!("{base}/git/tags/{object}")}),
                None => json!({"sha": t.commit_sha, "type": "commit", "url": format!("{base}/git/commits/{}", t.commit_sha)}),
            })
        } else if let Some(branch) = git_ref.strip_prefix("heads/") {
            repo.branches.get(branch).map(|sha| {
                json!({"sha": sha, "type": "commit", "url": format!("{base}/git/commits/{sha}")})
            })
        } else {
            None
        };
        match object {
            Some(object) => Reply::json(
                200,
                json!({
                    "ref": format!("refs/{git_ref}"),
                    "node_id": format!("REF_{}", fake_sha(&[&base, git_ref])),
                    "url": format!("{base}/git/refs/{git_ref}"),
                    "object": object,
                }),
            ),
            None => Reply::not_found(docs),
        }
    }

    pub(super) fn get_git_tag(&self, owner: &str, name: &str, sha: &str) -> Reply {
        let docs = "https://docs.github.com/rest/git/tags#get-a-tag";
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(docs);
        };
        let found = repo
            .tags
            .iter()
            .find(|(_, t)| t.object_sha.as_deref() == Some(sha));
        let Some((tag, t)) = found else {
            return Reply::not_found(docs);
        };
        let base = format!("{}/repos/{}", self.base_url, repo.full_name);
        Reply::json(
            200,
            json!({
                "node_id": format!("TAG_{sha}"),
                "tag": tag,
                "sha": sha,
                "url": format!("{base}/git/tags/{sha}"),
                "message": format!("Release {tag}\n"),
                "tagger": {"name": "Octo Cat", "email": "octocat@example.com", "date": "2024-01-01T00:00:00Z"},
                "object": {"sha": t.commit_sha, "type": "commit", "url": format!("{base}/git/commits/{}", t.commit_sha)},
                "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
            }),
        )
    }

    pub(super) fn list_deployments(&self, req: &Incoming, owner: &str, name: &str) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(DOCS);
        };
        let matches = |d: &&FakeDeployment| {
            let filter = |key: &str, value: &str| req.query.get(key).is_none_or(|v| v == value);
            filter("sha", &d.sha)
                && filter("ref", &d.git_ref)
                && filter("task", &d.task)
                && filter("environment", &d.environment)
        };
        let newest_first = repo.deployments.iter().rev().filter(matches);
        let items = newest_first
            .map(|d| deployment_json(&self.base_url, repo, d))
            .collect();
        paginate(&self.base_url, req, items)
    }

    pub(super) fn get_deployment(&self, owner: &str, name: &str, id: u64) -> Reply {
        let docs = "https://docs.github.com/rest/deployments/deployments#get-a-deployment";
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(docs);
        };
        match repo.deployments.iter().find(|d| d.id == id) {
            Some(d) => Reply::json(200, deployment_json(&self.base_url, repo, d)),
            None => Reply::not_found(docs),
        }
    }
}

/// A repository as a pull request's `head` and `base` carry it.
fn repo_json(base: &str, full_name: &str, id: u64, fork: bool) -> Value {
    let owner = full_name.split('/').next().unwrap_or_default();
    json!({
        "id": id,
        "name": full_name.split('/').nth(1).unwrap_or_default(),
        "full_name": full_name,
        "owner": user_json(owner, "Organization"),
        "private": false,
        "fork": fork,
        "html_url": format!("https://github.com/{full_name}"),
        "url": format!("{base}/repos/{full_name}"),
        "default_branch": "main",
    })
}
