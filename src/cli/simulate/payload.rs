//! GitHub's payloads for the simulated events (`push`, `issue_comment`, `ping`), with the
//! fields GitHub sends, including those deploybot does not read.

use chrono::Utc;
use serde_json::{Value, json};

use super::ids::{node_id, random_sha, random_u64, stable_id, timestamp};
use super::repo::{Repo, user};

/// `before` of a push that created its ref.
pub(super) const ZEROS: &str = "0000000000000000000000000000000000000000";
/// GitHub's ping aphorisms; one is sent with each simulated ping.
pub(super) const ZEN: &[&str] = &[
    "Design for failure.",
    "Keep it logically awesome.",
    "Speak like a human.",
    "Anything added dilutes everything else.",
    "Practicality beats purity.",
    "Mind your words, they are important.",
    "Non-blocking is better than blocking.",
    "Responsive is better than fast.",
    "Approachable is better than simple.",
    "Half measures are as bad as nothing at all.",
    "Favor focus over features.",
    "It's not fully shipped until it's fast.",
];

/// The no-reply address GitHub shows for `login`.
fn email(login: &str) -> String {
    let id = stable_id(&format!("user:{}", login.to_lowercase()));
    format!("{id}+{login}@users.noreply.github.com")
}

/// A `push` payload for `git_ref` moved to `sha`. A tag push creates its ref and lists no
/// commits; a branch push moves an existing branch by one commit.
pub(super) fn push(
    repo: &Repo,
    git_ref: &str,
    sha: &str,
    login: &str,
    message: &str,
    tag: bool,
) -> Value {
    let before = if tag { ZEROS.to_string() } else { random_sha() };
    let now = Utc::now();
    let author = json!({"name": login, "email": email(login), "username": login});
    let commit = json!({
        "id": sha,
        "tree_id": random_sha(),
        "distinct": true,
        "message": message,
        "timestamp": timestamp(&now),
        "url": format!("{}/commit/{sha}", repo.html_url()),
        "author": author,
        "committer": author,
        "added": [],
        "removed": [],
        "modified": ["README.md"],
    });
    let (compare, commits) = if tag {
        let name = git_ref.trim_start_matches("refs/tags/");
        (format!("{}/compare/{name}", repo.html_url()), json!([]))
    } else {
        (
            format!(
                "{}/compare/{}...{}",
                repo.html_url(),
                &before[..12],
                &sha[..12]
            ),
            json!([commit]),
        )
    };
    json!({
        "ref": git_ref,
        "before": before,
        "after": sha,
        "repository": repo.json(true),
        "pusher": {"name": login, "email": email(login)},
        "sender": user(login, false),
        "created": tag,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": compare,
        "commits": commits,
        "head_commit": commit,
    })
}

/// An `issue_comment` `created` payload on pull request `number`.
pub(super) fn comment(repo: &Repo, number: u64, body: &str, login: &str) -> Value {
    let now = timestamp(&Utc::now());
    let issue_id = stable_id(&format!("issue:{}#{number}", repo.full_name.to_lowercase()));
    let comment_id = 1_000_000_000 + random_u64() % 1_000_000_000;
    let issue_api = format!("{}/issues/{number}", repo.api_url());
    let pr_html = format!("{}/pull/{number}", repo.html_url());
    let reactions = |url: String| {
        json!({
            "url": url, "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
            "confused": 0, "heart": 0, "rocket": 0, "eyes": 0,
        })
    };
    json!({
        "action": "created",
        "issue": {
            "url": issue_api,
            "repository_url": repo.api_url(),
            "labels_url": format!("{issue_api}/labels{{/name}}"),
            "comments_url": format!("{issue_api}/comments"),
            "events_url": format!("{issue_api}/events"),
            "html_url": pr_html,
            "id": issue_id,
            "node_id": node_id("PullRequest", issue_id),
            "number": number,
            "title": format!("Pull request #{number}"),
            "user": user(login, false),
            "labels": [],
            "state": "open",
            "locked": false,
            "assignee": null,
            "assignees": [],
            "milestone": null,
            "comments": 1,
            "created_at": now,
            "updated_at": now,
            "closed_at": null,
            "author_association": "MEMBER",
            "active_lock_reason": null,
            "draft": false,
            "pull_request": {
                "url": format!("{}/pulls/{number}", repo.api_url()),
                "html_url": pr_html,
                "diff_url": format!("{pr_html}.diff"),
                "patch_url": format!("{pr_html}.patch"),
                "merged_at": null,
            },
            "body": "",
            "reactions": reactions(format!("{issue_api}/reactions")),
            "timeline_url": format!("{issue_api}/timeline"),
            "performed_via_github_app": null,
            "state_reason": null,
        },
        "comment": {
            "url": format!("{}/issues/comments/{comment_id}", repo.api_url()),
            "html_url": format!("{pr_html}#issuecomment-{comment_id}"),
            "issue_url": issue_api,
            "id": comment_id,
            "node_id": node_id("IssueComment", comment_id),
            "user": user(login, false),
            "created_at": now,
            "updated_at": now,
            "author_association": "MEMBER",
            "body": body,
            "reactions": reactions(format!("{}/issues/comments/{comment_id}/reactions", repo.api_url())),
            "performed_via_github_app": null,
        },
        "repository": repo.json(false),
        "sender": user(login, false),
    })
}

/// A `ping` payload for a repository webhook that delivers to `url`.
pub(super) fn ping(repo: &Repo, url: &str, zen: &str) -> Value {
    let hook_id = repo.hook_id();
    let now = timestamp(&Utc::now());
    let hook_api = format!("{}/hooks/{hook_id}", repo.api_url());
    json!({
        "zen": zen,
        "hook_id": hook_id,
        "hook": {
            "type": "Repository",
            "id": hook_id,
            "name": "web",
            "active": true,
            "events": ["create", "issue_comment", "push"],
            "config": {"content_type": "json", "insecure_ssl": "0", "url": url},
            "updated_at": now,
            "created_at": now,
            "url": hook_api,
            "test_url": format!("{hook_api}/test"),
            "ping_url": format!("{hook_api}/pings"),
            "deliveries_url": format!("{hook_api}/deliveries"),
            "last_response": {"code": null, "status": "unused", "message": null},
        },
        "repository": repo.json(false),
        "sender": user("octocat", false),
    })
}
