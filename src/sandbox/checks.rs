//! The endpoints deployment gates read: a commit's check runs and combined status, a pull
//! request's reviews, and the comparison of two commits. The answers have the shapes of
//! GitHub's OpenAPI description (`openapi/*.response.json`).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::http::Incoming;
use super::json::{repository_json, user_json};
use super::openapi::CHECK_RUNS_PARAMETERS;
use super::reply::{Reply, check_query, find_repo, paginate};
use super::state::{CheckRun, CommitStatus, Repo, Review, State, fake_sha};

const CHECK_RUNS_DOCS: &str =
    "https://docs.github.com/rest/checks/runs#list-check-runs-for-a-git-reference";
const COMBINED_STATUS_DOCS: &str = "https://docs.github.com/rest/commits/statuses#get-the-combined-status-for-a-specific-reference";
const REVIEWS_DOCS: &str =
    "https://docs.github.com/rest/pulls/reviews#list-reviews-for-a-pull-request";
const COMPARE_DOCS: &str = "https://docs.github.com/rest/commits/commits#compare-two-commits";

/// The commit a ref names, as GitHub's commit endpoints read it: a branch (`heads/`
/// optional), a tag (`tags/` optional) or a commit SHA (hex, 7 to 40 digits). The
/// stand-in keeps no commits, so every such SHA exists.
fn resolve_commit(repo: &Repo, git_ref: &str) -> Option<String> {
    let git_ref = git_ref.strip_prefix("refs/").unwrap_or(git_ref);
    if let Some(branch) = git_ref.strip_prefix("heads/") {
        return repo.branches.get(branch).cloned();
    }
    if let Some(tag) = git_ref.strip_prefix("tags/") {
        return repo.tags.get(tag).map(|t| t.commit_sha.clone());
    }
    if let Some(sha) = repo.branches.get(git_ref) {
        return Some(sha.clone());
    }
    if let Some(tag) = repo.tags.get(git_ref) {
        return Some(tag.commit_sha.clone());
    }
    let is_sha =
        (7..=40).contains(&git_ref.len()) && git_ref.bytes().all(|b| b.is_ascii_hexdigit());
    is_sha.then(|| git_ref.to_lowercase())
}

/// GitHub's 422 for a ref that names no commit.
fn no_commit(git_ref: &str, docs: &str) -> Reply {
    Reply::error(422, &format!("No commit found for SHA: {git_ref}"), docs)
}

/// The app that runs the check runs: GitHub Actions.
fn actions_app() -> Value {
    json!({
        "id": 15368,
        "slug": "github-actions",
        "node_id": "MDM6QXBwMTUzNjg=",
        "owner": user_json("github", "Organization"),
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": "https://github.com/apps/github-actions",
        "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2024-04-10T20:33:16Z",
        "permissions": {"checks": "write", "contents": "write", "metadata": "read", "statuses": "write"},
        "events": ["check_run", "check_suite", "pull_request", "push"],
    })
}

impl State {
    /// `GET /repos/{owner}/{repo}/commits/{ref}/check-runs`: newest first; `filter=latest`
    /// (the default) keeps the newest run of each name; `check_name` and `status` filter.
    pub(super) fn list_check_runs(
        &self,
        req: &Incoming,
        owner: &str,
        name: &str,
        git_ref: &str,
    ) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(CHECK_RUNS_DOCS);
        };
        if let Err(reply) = check_query(req, &CHECK_RUNS_PARAMETERS) {
            return reply;
        }
        let Some(sha) = resolve_commit(repo, git_ref) else {
            return no_commit(git_ref, CHECK_RUNS_DOCS);
        };
        let query = |key: &str| req.query.get(key).map(String::as_str);
        let latest_only = query("filter") != Some("all");
        let mut seen = HashSet::new();
        let runs: Vec<Value> = repo
            .check_runs
            .iter()
            .rev()
            .filter(|r| r.sha == sha)
            .filter(|r| !latest_only || seen.insert(r.name.as_str()))
            .filter(|r| query("check_name").is_none_or(|n| n == r.name))
            .filter(|r| query("status").is_none_or(|s| s == r.status))
            .map(|r| self.check_run_json(repo, r))
            .collect();
        let total_count = runs.len();
        let mut reply = paginate(&self.base_url, req, runs);
        let page = std::mem::take(&mut reply.body);
        reply.body = json!({"total_count": total_count, "check_runs": page});
        reply
    }

    fn check_run_json(&self, repo: &Repo, run: &CheckRun) -> Value {
        let api = format!("{}/repos/{}", self.base_url, repo.full_name);
        let id = run.id;
        let pulls: Vec<Value> = repo
            .pulls
            .iter()
            .filter(|(_, p)| p.state == "open" && !p.from_fork && p.head_sha == run.sha)
            .map(|(number, p)| {
                let repo_ref = json!({"id": repo.id, "url": api, "name": repo.name()});
                let base_sha = repo.branches.get(&p.base_ref).cloned().unwrap_or_default();
                json!({
                    "id": 1000 + number,
                    "number": number,
                    "url": format!("{api}/pulls/{number}"),
                    "head": {"ref": p.head_ref, "sha": p.head_sha, "repo": repo_ref},
                    "base": {"ref": p.base_ref, "sha": base_sha, "repo": repo_ref},
                })
            })
            .collect();
        json!({
            "id": id,
            "node_id": format!("CR_fake{id}"),
            "head_sha": run.sha,
            "external_id": "",
            "url": format!("{api}/check-runs/{id}"),
            "html_url": format!("https://github.com/{}/runs/{id}", repo.full_name),
            "details_url": format!("https://github.com/{}/actions/runs/{id}/job/{id}", repo.full_name),
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
            "output": {
                "title": run.conclusion.as_ref().map(|c| format!("{} {c}", run.name)),
                "summary": null,
                "text": null,
                "annotations_count": 0,
                "annotations_url": format!("{api}/check-runs/{id}/annotations"),
            },
            "name": run.name,
            "check_suite": {"id": id},
            "app": actions_app(),
            "pull_requests": pulls,
        })
    }

    /// `GET /repos/{owner}/{repo}/commits/{ref}/status`: the newest status of each
    /// context, and their combined state (failure when one is error or failure, else
    /// pending when one is pending or there are none, else success).
    pub(super) fn combined_status(
        &self,
        req: &Incoming,
        owner: &str,
        name: &str,
        git_ref: &str,
    ) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(COMBINED_STATUS_DOCS);
        };
        let Some(sha) = resolve_commit(repo, git_ref) else {
            return no_commit(git_ref, COMBINED_STATUS_DOCS);
        };
        let mut seen = HashSet::new();
        let mut newest: Vec<&CommitStatus> = repo
            .commit_statuses
            .iter()
            .rev()
            .filter(|s| s.sha == sha && seen.insert(s.context.as_str()))
            .collect();
        newest.reverse();
        let states: Vec<&str> = newest.iter().map(|s| s.state.as_str()).collect();
        let state = if states.iter().any(|s| *s == "error" || *s == "failure") {
            "failure"
        } else if states.is_empty() || states.contains(&"pending") {
            "pending"
        } else {
            "success"
        };
        let api = format!("{}/repos/{}", self.base_url, repo.full_name);
        let statuses: Vec<Value> = newest.iter().map(|s| status_json(&api, s)).collect();
        let total_count = statuses.len();
        let mut reply = paginate(&self.base_url, req, statuses);
        let page = std::mem::take(&mut reply.body);
        reply.body = json!({
            "state": state,
            "statuses": page,
            "sha": sha,
            "total_count": total_count,
            "repository": repository_json(&self.base_url, &repo.full_name, repo.id, false),
            "commit_url": format!("{api}/commits/{sha}"),
            "url": format!("{api}/commits/{sha}/status"),
        });
        reply
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}/reviews`: oldest first; a PENDING review
    /// only to its author.
    pub(super) fn list_reviews(
        &self,
        req: &Incoming,
        (owner, name): (&str, &str),
        number: u64,
        actor: &str,
    ) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(REVIEWS_DOCS);
        };
        if !repo.pulls.contains_key(&number) {
            return Reply::not_found(REVIEWS_DOCS);
        }
        let reviews: Vec<Value> = repo
            .reviews
            .iter()
            .filter(|r| r.pull == number)
            .filter(|r| r.state != "PENDING" || r.user.eq_ignore_ascii_case(actor))
            .map(|r| review_json(&self.base_url, repo, r))
            .collect();
        paginate(&self.base_url, req, reviews)
    }

    /// `GET /repos/{owner}/{repo}/compare/{base}...{head}`, from the (head, base) pairs
    /// the repository knows to be contained (see `Repo::contains`).
    pub(super) fn compare(&self, owner: &str, name: &str, basehead: &str) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(COMPARE_DOCS);
        };
        let Some((base_ref, head_ref)) = basehead.split_once("...") else {
            return Reply::not_found(COMPARE_DOCS);
        };
        let (Some(base), Some(head)) = (
            resolve_commit(repo, base_ref),
            resolve_commit(repo, head_ref),
        ) else {
            return Reply::not_found(COMPARE_DOCS);
        };
        let contains = |a: &str, b: &str| repo.contains.contains(&(a.to_string(), b.to_string()));
        let (status, ahead_by, behind_by, merge_base) = if base == head {
            ("identical", 0, 0, base.clone())
        } else if contains(&head, &base) {
            ("ahead", 1, 0, base.clone())
        } else if contains(&base, &head) {
            ("behind", 0, 1, head.clone())
        } else {
            ("diverged", 1, 1, fake_sha(&[&base, &head, "merge-base"]))
        };
        let api = format!("{}/repos/{}", self.base_url, repo.full_name);
        let html = format!("https://github.com/{}", repo.full_name);
        let commit = |sha: &str| commit_json(&api, &html, sha);
        let commits: Vec<Value> = (ahead_by > 0).then(|| commit(&head)).into_iter().collect();
        Reply::json(
            200,
            json!({
                "url": format!("{api}/compare/{basehead}"),
                "html_url": format!("{html}/compare/{basehead}"),
                "permalink_url": format!("{html}/compare/{}:{base}...{}:{head}", repo.owner(), repo.owner()),
                "diff_url": format!("{html}/compare/{basehead}.diff"),
                "patch_url": format!("{html}/compare/{basehead}.patch"),
                "base_commit": commit(&base),
                "merge_base_commit": commit(&merge_base),
                "status": status,
                "ahead_by": ahead_by,
                "behind_by": behind_by,
                "total_commits": ahead_by,
                "commits": commits,
                "files": [],
            }),
        )
    }
}

fn status_json(api: &str, s: &CommitStatus) -> Value {
    json!({
        "url": format!("{api}/statuses/{}", s.sha),
        "avatar_url": "https://avatars.githubusercontent.com/oa/4808?v=4",
        "id": s.id,
        "node_id": format!("SC_fake{}", s.id),
        "state": s.state,
        "description": format!("{} is {}", s.context, s.state),
        "target_url": s.target_url,
        "context": s.context,
        "created_at": s.created_at,
        "updated_at": s.created_at,
    })
}

fn review_json(base_url: &str, repo: &Repo, r: &Review) -> Value {
    let full = &repo.full_name;
    let html_url = format!(
        "https://github.com/{full}/pull/{}#pullrequestreview-{}",
        r.pull, r.id
    );
    let pull_url = format!("{base_url}/repos/{full}/pulls/{}", r.pull);
    let mut review = json!({
        "id": r.id,
        "node_id": format!("PRR_fake{}", r.id),
        "user": user_json(&r.user, "User"),
        "body": "",
        "state": r.state,
        "html_url": html_url,
        "pull_request_url": pull_url,
        "_links": {"html": {"href": html_url}, "pull_request": {"href": pull_url}},
        "commit_id": r.commit_id,
        "author_association": if repo.roles.contains_key(&r.user.to_lowercase()) { "COLLABORATOR" } else { "NONE" },
    });
    if let Some(at) = &r.submitted_at {
        review["submitted_at"] = json!(at);
    }
    review
}

fn commit_json(api: &str, html: &str, sha: &str) -> Value {
    let person =
        json!({"name": "Octo Cat", "email": "octocat@example.com", "date": "2024-01-01T00:00:00Z"});
    json!({
        "url": format!("{api}/commits/{sha}"),
        "sha": sha,
        "node_id": format!("C_fake{sha}"),
        "html_url": format!("{html}/commit/{sha}"),
        "comments_url": format!("{api}/commits/{sha}/comments"),
        "commit": {
            "url": format!("{api}/git/commits/{sha}"),
            "author": person,
            "committer": person,
            "message": format!("Commit {sha}"),
            "tree": {"sha": fake_sha(&[sha, "tree"]), "url": format!("{api}/git/trees/{}", fake_sha(&[sha, "tree"]))},
            "comment_count": 0,
            "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
        },
        "author": null,
        "committer": null,
        "parents": [],
    })
}
