//! JSON shapes, as GitHub answers them.

use serde_json::{Value, json};

use super::state::{Reaction, Repo, stable_number};
use super::types::{FakeComment, FakeDeployment, FakeDeploymentStatus};

pub(super) fn user_json(login: &str, kind: &str) -> Value {
    let id = stable_number(login) % 100_000_000;
    let url = format!("https://api.github.com/users/{login}");
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_fake{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": url,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{url}/followers"),
        "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"),
        "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"),
        "organizations_url": format!("{url}/orgs"),
        "repos_url": format!("{url}/repos"),
        "events_url": format!("{url}/events{{/privacy}}"),
        "received_events_url": format!("{url}/received_events"),
        "type": kind,
        "site_admin": false,
        "user_view_type": "public",
    })
}

/// The API URLs of a repository (after `{api_url}/repos/{owner}/{name}`).
const REPOSITORY_URLS: [(&str, &str); 37] = [
    ("archive_url", "/{archive_format}{/ref}"),
    ("assignees_url", "/assignees{/user}"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("branches_url", "/branches{/branch}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("comments_url", "/comments{/number}"),
    ("commits_url", "/commits{/sha}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("contents_url", "/contents/{+path}"),
    ("contributors_url", "/contributors"),
    ("deployments_url", "/deployments"),
    ("downloads_url", "/downloads"),
    ("events_url", "/events"),
    ("forks_url", "/forks"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("hooks_url", "/hooks"),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("issue_events_url", "/issues/events{/number}"),
    ("issues_url", "/issues{/number}"),
    ("keys_url", "/keys{/key_id}"),
    ("labels_url", "/labels{/name}"),
    ("languages_url", "/languages"),
    ("merges_url", "/merges"),
    ("milestones_url", "/milestones{/number}"),
    (
        "notifications_url",
        "/notifications{?since,all,participating}",
    ),
    ("pulls_url", "/pulls{/number}"),
    ("releases_url", "/releases{/id}"),
    ("stargazers_url", "/stargazers"),
    ("statuses_url", "/statuses/{sha}"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("tags_url", "/tags"),
    ("teams_url", "/teams"),
    ("trees_url", "/git/trees{/sha}"),
    ("url", ""),
];

/// A repository as GitHub embeds it (a pull request's `head.repo` and `base.repo`, a
/// combined status's `repository`): every field of the full shape.
pub(super) fn repository_json(base_url: &str, full_name: &str, id: u64, fork: bool) -> Value {
    let (owner, name) = full_name.split_once('/').unwrap_or((full_name, ""));
    let api = format!("{base_url}/repos/{full_name}");
    let html = format!("https://github.com/{full_name}");
    let mut repo = json!({
        "id": id,
        "node_id": format!("R_fake{id}"),
        "name": name,
        "full_name": full_name,
        "owner": user_json(owner, "Organization"),
        "private": false,
        "html_url": html,
        "description": null,
        "fork": fork,
        "clone_url": format!("{html}.git"),
        "git_url": format!("git://github.com/{full_name}.git"),
        "ssh_url": format!("git@github.com:{full_name}.git"),
        "svn_url": html,
        "mirror_url": null,
        "homepage": null,
        "language": null,
        "license": null,
        "default_branch": "main",
        "forks": 0,
        "forks_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "stargazers_count": 0,
        "open_issues": 0,
        "open_issues_count": 0,
        "size": 0,
        "has_issues": true,
        "has_projects": false,
        "has_wiki": false,
        "has_pages": false,
        "has_downloads": false,
        "archived": false,
        "disabled": false,
        "visibility": "public",
        "pushed_at": "2024-01-01T00:00:00Z",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
    });
    for (field, path) in REPOSITORY_URLS {
        repo[field] = json!(format!("{api}{path}"));
    }
    repo
}

pub(super) fn actor_kind(login: &str) -> &'static str {
    if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    }
}

pub(super) fn deployment_json(base_url: &str, repo: &Repo, d: &FakeDeployment) -> Value {
    let repo_url = format!("{base_url}/repos/{}", repo.full_name);
    let url = format!("{repo_url}/deployments/{}", d.id);
    json!({
        "url": url,
        "id": d.id,
        "node_id": format!("DE_fake{}", d.id),
        "sha": d.sha,
        "ref": d.git_ref,
        "task": d.task,
        "payload": d.payload,
        "original_environment": d.original_environment,
        "environment": d.environment,
        "description": d.description,
        "creator": user_json(&d.creator, actor_kind(&d.creator)),
        "created_at": d.created_at,
        "updated_at": d.statuses.last().map_or(&d.created_at, |s| &s.created_at),
        "statuses_url": format!("{url}/statuses"),
        "repository_url": repo_url,
        "transient_environment": d.transient_environment,
        "production_environment": d.production_environment,
        "performed_via_github_app": null,
    })
}

pub(super) fn status_json(
    base_url: &str,
    repo: &Repo,
    d: &FakeDeployment,
    s: &FakeDeploymentStatus,
) -> Value {
    let repo_url = format!("{base_url}/repos/{}", repo.full_name);
    let deployment_url = format!("{repo_url}/deployments/{}", d.id);
    json!({
        "url": format!("{deployment_url}/statuses/{}", s.id),
        "id": s.id,
        "node_id": format!("DES_fake{}", s.id),
        "state": s.state,
        "creator": user_json(&s.creator, actor_kind(&s.creator)),
        "description": s.description,
        "environment": s.environment,
        "target_url": s.target_url,
        "created_at": s.created_at,
        "updated_at": s.created_at,
        "deployment_url": deployment_url,
        "repository_url": repo_url,
        "environment_url": s.environment_url,
        "log_url": s.log_url,
        "performed_via_github_app": null,
    })
}

pub(super) fn comment_json(base_url: &str, repo: &Repo, c: &FakeComment) -> Value {
    let repo_url = format!("{base_url}/repos/{}", repo.full_name);
    json!({
        "id": c.id,
        "node_id": format!("IC_fake{}", c.id),
        "url": format!("{repo_url}/issues/comments/{}", c.id),
        "html_url": c.html_url,
        "body": c.body,
        "user": user_json(&c.user, actor_kind(&c.user)),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "issue_url": format!("{repo_url}/issues/{}", c.issue),
        "author_association": "NONE",
        "performed_via_github_app": null,
    })
}
pub(super) fn reaction_json(r: &Reaction) -> Value {
    json!({
        "id": r.id,
        "node_id": format!("REA_fake{}", r.id),
        "user": user_json(&r.user, actor_kind(&r.user)),
        "content": r.content,
        "created_at": r.created_at,
    })
}
