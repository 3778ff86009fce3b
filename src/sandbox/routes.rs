//! The endpoints of Apps, collaborators, pull requests, git refs and tags, and reading
//! deployments.

use serde_json::{Value, json};

use super::http::Incoming;
use super::json::{deployment_json, repository_json, user_json};
use super::openapi::CREATE_INSTALLATION_TOKEN;
use super::reply::{Reply, find_repo, paginate, parse_body};
use super::state::{DOCS, Pull, ROLES, Repo, State, fake_sha};
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
        let api = format!("{base}/repos/{full}");
        let html = format!("https://github.com/{full}/pull/{number}");
        let closed = pull.state == "closed";
        let mut answer = json!({
            "url": format!("{api}/pulls/{number}"),
            "id": 1000 + number,
            "node_id": format!("PR_fake{number}"),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "issue_url": format!("{api}/issues/{number}"),
            "commits_url": format!("{api}/pulls/{number}/commits"),
            "review_comments_url": format!("{api}/pulls/{number}/comments"),
            "review_comment_url": format!("{api}/pulls/comments{{/number}}"),
            "comments_url": format!("{api}/issues/{number}/comments"),
            "statuses_url": format!("{api}/statuses/{}", pull.head_sha),
            "number": number,
            "state": pull.state,
            "locked": false,
            "title": pull.title,
            "user": user_json(&pull.author, "User"),
            "body": if pull.body.is_empty() { Value::Null } else { json!(pull.body) },
            "labels": [],
            "milestone": null,
            "assignee": null,
            "created_at": pull.created_at,
            "updated_at": pull.created_at,
            "closed_at": if closed { json!(pull.created_at) } else { Value::Null },
            "merged_at": null,
            "merge_commit_sha": null,
            "draft": false,
            "author_association": if pull.from_fork { "CONTRIBUTOR" } else { "MEMBER" },
            "auto_merge": null,
            "merged": false,
            "merged_by": null,
            "mergeable": true,
            "mergeable_state": "clean",
            "maintainer_can_modify": false,
            "comments": repo.comments.iter().filter(|c| c.issue == number).count(),
            "review_comments": 0,
            "commits": 1,
            "additions": 1,
            "deletions": 0,
            "changed_files": 1,
        });
        answer["_links"] = json!({
            "self": {"href": format!("{api}/pulls/{number}")},
            "html": {"href": html},
            "issue": {"href": format!("{api}/issues/{number}")},
            "comments": {"href": format!("{api}/issues/{number}/comments")},
            "review_comments": {"href": format!("{api}/pulls/{number}/comments")},
            "review_comment": {"href": format!("{api}/pulls/comments{{/number}}")},
            "commits": {"href": format!("{api}/pulls/{number}/commits")},
            "statuses": {"href": format!("{api}/statuses/{}", pull.head_sha)},
        });
        let (head, base) = pull_ends(base, repo, pull);
        answer["head"] = head;
        answer["base"] = base;
        Reply::json(200, answer)
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

/// A pull request's `head` (its branch, in a fork or not) and `base` (the branch it merges
/// into, at that branch's current head).
fn pull_ends(base_url: &str, repo: &Repo, pull: &Pull) -> (Value, Value) {
    let full = &repo.full_name;
    let (head_owner, head_repo) = if pull.from_fork {
        let fork = format!("{}/{}", pull.author, repo.name());
        (pull.author.as_str(), fork)
    } else {
        (repo.owner(), full.clone())
    };
    let head = json!({
        "label": format!("{head_owner}:{}", pull.head_ref),
        "ref": pull.head_ref,
        "sha": pull.head_sha,
        "user": user_json(head_owner, "User"),
        "repo": repository_json(base_url, &head_repo, repo.id + 100_000, pull.from_fork),
    });
    let base_ref = &pull.base_ref;
    let base_sha = repo
        .branches
        .get(base_ref)
        .cloned()
        .unwrap_or_else(|| fake_sha(&[full, base_ref]));
    let base = json!({
        "label": format!("{}:{base_ref}", repo.owner()),
        "ref": base_ref,
        "sha": base_sha,
        "user": user_json(repo.owner(), "Organization"),
        "repo": repository_json(base_url, full, repo.id, false),
    });
    (head, base)
}
