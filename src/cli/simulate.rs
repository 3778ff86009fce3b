//! `deploybot simulate push|tag|comment|ping`: builds a webhook delivery the way GitHub
//! sends it (the documented payload shapes, the `X-GitHub-*` headers), signs it with the
//! configured webhook secret, sends it to a running server and prints the answer. With it,
//! anyone can try the bot without GitHub.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{SecondsFormat, Utc};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{CliError, Outcome, http};
use crate::config::Config;
use crate::github::signature;

/// The webhook path of the server.
const WEBHOOK_PATH: &str = "/webhooks/github";
/// `before` of a push that created its ref.
const ZEROS: &str = "0000000000000000000000000000000000000000";
/// GitHub's ping aphorisms; one is sent with each simulated ping.
const ZEN: &[&str] = &[
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

/// Which event to send.
#[derive(Debug, Clone, Subcommand)]
pub enum Event {
    /// Commits pushed to a branch (a `push` event for refs/heads/BRANCH).
    Push {
        #[command(flatten)]
        target: Target,
        /// The branch pushed to.
        #[arg(long, default_value = "main")]
        branch: String,
        /// The commit pushed (40 hex characters; default: a random one).
        #[arg(long)]
        sha: Option<String>,
        /// The GitHub login that pushed.
        #[arg(long, default_value = "octocat")]
        user: String,
        /// The head commit's message.
        #[arg(long, default_value = "Update the README")]
        message: String,
    },
    /// A tag pushed (a `push` event for refs/tags/TAG).
    Tag {
        #[command(flatten)]
        target: Target,
        /// The tag, e.g. v1.2.0.
        #[arg(long)]
        tag: String,
        /// The commit tagged (40 hex characters; default: a random one).
        #[arg(long)]
        sha: Option<String>,
        /// The GitHub login that pushed the tag.
        #[arg(long, default_value = "octocat")]
        user: String,
    },
    /// A new comment on a pull request (an `issue_comment` event), e.g. `/deploy production`.
    Comment {
        #[command(flatten)]
        target: Target,
        /// The pull request number.
        #[arg(long, default_value_t = 42, value_parser = clap::value_parser!(u64).range(1..))]
        pr: u64,
        /// The comment's text.
        #[arg(long, default_value = "/deploy")]
        body: String,
        /// The GitHub login that commented.
        #[arg(long, default_value = "octocat")]
        user: String,
    },
    /// GitHub's check that a new webhook reaches the server (a `ping` event).
    Ping {
        #[command(flatten)]
        target: Target,
    },
}

/// Where and how to send the delivery; the same for every event.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The repository, as in an instance's `repo`.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: String,
    /// The server (default: `public_url` of the configuration, else http://LISTEN).
    #[arg(long)]
    pub url: Option<String>,
    /// Configuration file to take the secret and URL from, as for `serve`
    /// (default: $DEPLOYBOT_CONFIG, else config/deploybot.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Sign with this secret instead of the first of the configured webhook secrets
    /// (DEPLOYBOT_WEBHOOK_SECRET or `webhook_secrets`).
    #[arg(long)]
    pub secret: Option<String>,
    /// The X-GitHub-Delivery id (default: a fresh UUID). Send the same one twice to see
    /// how a redelivery is handled.
    #[arg(long)]
    pub delivery: Option<String>,
    /// Add `installation.id`, as in the webhooks of a GitHub App.
    #[arg(long)]
    pub installation: Option<u64>,
    /// Print only the server's JSON answer.
    #[arg(long)]
    pub json: bool,
    /// Print the request (headers and payload) instead of sending it.
    #[arg(long)]
    pub dry_run: bool,
}

/// A delivery ready to send: GitHub's event name, the payload, and a one-line summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The `X-GitHub-Event` header.
    pub event: &'static str,
    /// The `X-GitHub-Delivery` header.
    pub id: String,
    /// The `X-GitHub-Hook-ID` header (also `hook_id` of a ping).
    pub hook_id: u64,
    /// The repository's id (`X-GitHub-Hook-Installation-Target-ID`).
    pub repository_id: u64,
    /// The body.
    pub payload: Value,
    /// What it is, for people: "push to main (6113728) by @octocat".
    pub summary: String,
}

/// Sends the delivery `event` describes and prints the answer. Exit 1 when the server did
/// not answer 2xx.
pub async fn run(event: Event) -> Result<Outcome, CliError> {
    let target = match &event {
        Event::Push { target, .. }
        | Event::Tag { target, .. }
        | Event::Comment { target, .. }
        | Event::Ping { target } => target.clone(),
    };
    let repo = Repo::parse(&target.repo)?;
    let (secret, base) = secret_and_url(&target)?;
    let url = if base.ends_with(WEBHOOK_PATH) {
        base
    } else {
        format!("{base}{WEBHOOK_PATH}")
    };
    let delivery = build(&event, &repo, &url)?;
    let body = serde_json::to_vec_pretty(&delivery.payload)
        .map_err(|e| CliError::Usage(format!("cannot encode the payload: {e}")))?;
    let signature = signature::sign(secret.as_bytes(), &body);
    let headers = [
        ("Content-Type", "application/json".to_string()),
        (
            "User-Agent",
            "GitHub-Hookshot/deploybot-simulate".to_string(),
        ),
        ("X-GitHub-Event", delivery.event.to_string()),
        ("X-GitHub-Delivery", delivery.id.clone()),
        ("X-GitHub-Hook-ID", delivery.hook_id.to_string()),
        (
            "X-GitHub-Hook-Installation-Target-Type",
            "repository".to_string(),
        ),
        (
            "X-GitHub-Hook-Installation-Target-ID",
            delivery.repository_id.to_string(),
        ),
        ("X-Hub-Signature-256", signature),
    ];
    if target.dry_run {
        println!("POST {url}");
        for (name, value) in &headers {
            println!("{name}: {value}");
        }
        println!();
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(Outcome::Success);
    }

    let client = http::client()?;
    let mut request = client.post(&url).body(body);
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    let hint = "is `deploybot serve` running there? Start it with `deploybot serve`, or pass \
                --url (the default is public_url, else http://LISTEN, of the configuration)";
    let response = request
        .send()
        .await
        .map_err(|e| http::unreachable(&url, &e, hint))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| http::unreachable(&url, &e, hint))?;
    let answer: Option<Value> = serde_json::from_str(&text).ok();

    if target.json {
        println!("{}", text.trim());
    } else {
        println!("sent {} on {}", delivery.summary, repo.full_name);
        println!(
            "POST {url} (X-GitHub-Event: {}, X-GitHub-Delivery: {})",
            delivery.event, delivery.id
        );
        println!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        );
        match &answer {
            Some(value) => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_else(|_| text.clone())
            ),
            None if !text.trim().is_empty() => println!("{}", text.trim()),
            None => {}
        }
        if let Some(value) = &answer {
            for line in hints(value) {
                println!("{line}");
            }
        }
    }
    if status.is_success() {
        Ok(Outcome::Success)
    } else {
        let message = answer
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str())
            .unwrap_or("see the answer above");
        eprintln!(
            "deploybot: the server refused the webhook (HTTP {}): {message}",
            status.as_u16()
        );
        Ok(Outcome::Failed)
    }
}

/// Next steps suggested by an answer.
fn hints(answer: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match answer["status"].as_str() {
        Some("duplicate") => out.push(
            "this delivery id was seen before: a redelivery is acknowledged and deploys nothing"
                .to_string(),
        ),
        Some("accepted") => {
            for id in answer["deployments"].as_array().into_iter().flatten() {
                if let Some(id) = id.as_str() {
                    out.push(format!("follow it: deploybot watch {id}"));
                }
            }
            let jobs = answer["jobs"].as_u64().unwrap_or(0);
            if jobs > 0 {
                out.push(format!(
                    "{jobs} job(s) queued for GitHub (commands check the commenter's permission \
                     and the pull request's head there): without GitHub credentials the server \
                     only logs them"
                ));
            }
        }
        _ => {}
    }
    out
}

/// The secret to sign with and the server's base URL: from the flags, else the configuration.
fn secret_and_url(target: &Target) -> Result<(String, String), CliError> {
    let config = if target.secret.is_none() || target.url.is_none() {
        Some(Config::load(target.config.as_deref())?)
    } else {
        None
    };
    let secret = match (&target.secret, &config) {
        (Some(secret), _) => Some(secret.clone()),
        (None, Some(config)) => config.webhook_secrets.first().cloned(),
        (None, None) => None,
    };
    let secret = secret.filter(|s| !s.is_empty()).ok_or_else(|| {
        CliError::Usage(
            "no webhook secret to sign with: set DEPLOYBOT_WEBHOOK_SECRET (or webhook_secrets in \
             the configuration) as for `deploybot serve`, or pass --secret"
                .into(),
        )
    })?;
    let url = match (&target.url, &config) {
        (Some(url), _) => http::base_url("--url", url)?,
        (None, Some(config)) => http::base_url(
            "public_url of the configuration",
            &connectable(&config.public_url),
        )?,
        (None, None) => {
            return Err(CliError::Usage(
                "no server URL: pass --url http://HOST:PORT".into(),
            ));
        }
    };
    Ok((secret, url))
}

/// A listen-derived URL with a wildcard address made connectable (`0.0.0.0` → `127.0.0.1`).
fn connectable(url: &str) -> String {
    url.replacen("://0.0.0.0", "://127.0.0.1", 1)
        .replacen("://[::]", "://[::1]", 1)
}

/// Builds the delivery for `event` on `repo`; `url` is the webhook's URL (in a ping's hook).
pub fn build(event: &Event, repo: &Repo, url: &str) -> Result<Delivery, CliError> {
    let (name, payload, summary, target) = match event {
        Event::Push {
            target,
            branch,
            sha,
            user,
            message,
        } => {
            let branch = ref_name("--branch", branch, "refs/heads/")?;
            let sha = commit_sha(sha.as_deref())?;
            let login = login(user)?;
            let summary = format!("push to {branch} ({}) by @{login}", &sha[..7]);
            let payload = push(
                repo,
                &format!("refs/heads/{branch}"),
                &sha,
                &login,
                message,
                false,
            );
            ("push", payload, summary, target)
        }
        Event::Tag {
            target,
            tag,
            sha,
            user,
        } => {
            let tag = ref_name("--tag", tag, "refs/tags/")?;
            let sha = commit_sha(sha.as_deref())?;
            let login = login(user)?;
            let summary = format!("tag {tag} ({}) by @{login}", &sha[..7]);
            let payload = push(
                repo,
                &format!("refs/tags/{tag}"),
                &sha,
                &login,
                &format!("Release {tag}"),
                true,
            );
            ("push", payload, summary, target)
        }
        Event::Comment {
            target,
            pr,
            body,
            user,
        } => {
            let login = login(user)?;
            let summary = format!("comment {body:?} on #{pr} by @{login}");
            (
                "issue_comment",
                comment(repo, *pr, body, &login),
                summary,
                target,
            )
        }
        Event::Ping { target } => {
            let zen = ZEN[(random_u64() % ZEN.len() as u64) as usize];
            ("ping", ping(repo, url, zen), "ping".to_string(), target)
        }
    };
    let mut payload = payload;
    if let Some(id) = target.installation {
        payload["installation"] = json!({"id": id, "node_id": node_id("Installation", id)});
    }
    let id = match &target.delivery {
        Some(id) if id.trim().is_empty() => {
            return Err(CliError::Usage("--delivery must not be empty".into()));
        }
        Some(id) => id.trim().to_string(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    Ok(Delivery {
        event: name,
        id,
        hook_id: repo.hook_id(),
        repository_id: repo.id(),
        payload,
        summary,
    })
}

/// A repository named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub owner: String,
    pub name: String,
    pub full_name: String,
}

impl Repo {
    /// `OWNER/NAME`, or a usage error saying so.
    pub fn parse(text: &str) -> Result<Repo, CliError> {
        let text = text.trim();
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match text.split_once('/') {
            Some((owner, name)) if valid(owner) && valid(name) => Ok(Repo {
                owner: owner.to_string(),
                name: name.to_string(),
                full_name: text.to_string(),
            }),
            _ => Err(CliError::Usage(format!(
                "--repo {text:?} is not OWNER/NAME: use the repository as in an instance's \
                 `repo`, e.g. --repo acme/web"
            ))),
        }
    }

    /// A stable id, as GitHub gives every repository one.
    fn id(&self) -> u64 {
        stable_id(&format!("repo:{}", self.full_name.to_lowercase()))
    }

    fn hook_id(&self) -> u64 {
        stable_id(&format!("hook:{}", self.full_name.to_lowercase()))
    }

    fn html_url(&self) -> String {
        format!("https://github.com/{}", self.full_name)
    }

    fn api_url(&self) -> String {
        format!("https://api.github.com/repos/{}", self.full_name)
    }

    /// The `repository` object. Push payloads carry timestamps as Unix seconds and a few
    /// extra fields; every other event uses ISO 8601 strings.
    fn json(&self, for_push: bool) -> Value {
        let id = self.id();
        let now = Utc::now();
        let created = now - chrono::Duration::days(400);
        let (created_at, updated_at, pushed_at) = if for_push {
            (
                json!(created.timestamp()),
                json!(timestamp(&now)),
                json!(now.timestamp()),
            )
        } else {
            (
                json!(timestamp(&created)),
                json!(timestamp(&now)),
                json!(timestamp(&now)),
            )
        };
        let mut owner = user(&self.owner, true);
        if for_push {
            owner["name"] = json!(self.owner);
            owner["email"] = Value::Null;
        }
        let mut repo = json!({
            "id": id,
            "node_id": node_id("Repository", id),
            "name": self.name,
            "full_name": self.full_name,
            "private": false,
            "owner": owner,
            "html_url": self.html_url(),
            "description": null,
            "fork": false,
            "url": if for_push { self.html_url() } else { self.api_url() },
            "hooks_url": format!("{}/hooks", self.api_url()),
            "issues_url": format!("{}/issues{{/number}}", self.api_url()),
            "pulls_url": format!("{}/pulls{{/number}}", self.api_url()),
            "deployments_url": format!("{}/deployments", self.api_url()),
            "created_at": created_at,
            "updated_at": updated_at,
            "pushed_at": pushed_at,
            "git_url": format!("git://github.com/{}.git", self.full_name),
            "ssh_url": format!("git@github.com:{}.git", self.full_name),
            "clone_url": format!("https://github.com/{}.git", self.full_name),
        });
        let counts = json!({
            "homepage": null,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": null,
            "has_issues": true,
            "has_projects": true,
            "has_downloads": true,
            "has_wiki": true,
            "has_pages": false,
            "forks_count": 0,
            "archived": false,
            "disabled": false,
            "open_issues_count": 1,
            "license": null,
            "allow_forking": true,
            "is_template": false,
            "topics": [],
            "visibility": "public",
            "forks": 0,
            "open_issues": 1,
            "watchers": 0,
            "default_branch": "main",
        });
        if let (Some(repo), Value::Object(counts)) = (repo.as_object_mut(), counts) {
            repo.extend(counts);
        }
        if for_push {
            repo["stargazers"] = json!(0);
            repo["master_branch"] = json!("main");
        }
        repo
    }
}

/// A GitHub account object as webhooks carry it (`sender`, `owner`, `user`).
/// `organization`: the account is an organization (a repository owner), not a person.
fn user(login: &str, organization: bool) -> Value {
    let id = stable_id(&format!("user:{}", login.to_lowercase()));
    let kind = if login.ends_with("[bot]") {
        "Bot"
    } else if organization {
        "Organization"
    } else {
        "User"
    };
    let api = format!("https://api.github.com/users/{login}");
    json!({
        "login": login,
        "id": id,
        "node_id": node_id(kind, id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": api,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{api}/followers"),
        "repos_url": format!("{api}/repos"),
        "type": kind,
        "user_view_type": "public",
        "site_admin": false,
    })
}

fn email(login: &str) -> String {
    let id = stable_id(&format!("user:{}", login.to_lowercase()));
    format!("{id}+{login}@users.noreply.github.com")
}

/// A `push` payload for `git_ref` moved to `sha`. A tag push creates its ref and lists no
/// commits; a branch push moves an existing branch by one commit.
fn push(repo: &Repo, git_ref: &str, sha: &str, login: &str, message: &str, tag: bool) -> Value {
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
fn comment(repo: &Repo, number: u64, body: &str, login: &str) -> Value {
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
fn ping(repo: &Repo, url: &str, zen: &str) -> Value {
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

/// A branch or tag name from a flag (a `refs/heads/` or `refs/tags/` prefix is dropped).
fn ref_name(flag: &str, value: &str, prefix: &str) -> Result<String, CliError> {
    let name = value.trim();
    let name = name.strip_prefix(prefix).unwrap_or(name);
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CliError::Usage(format!(
            "{flag} {value:?} is not a git ref name: give a name without spaces, e.g. {flag} {}",
            if flag == "--tag" { "v1.2.0" } else { "main" }
        )));
    }
    Ok(name.to_string())
}

/// The `--sha` given (40 hex characters, lower-cased), or a random one.
fn commit_sha(given: Option<&str>) -> Result<String, CliError> {
    match given {
        None => Ok(random_sha()),
        Some(sha) => {
            let sha = sha.trim();
            if sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(sha.to_ascii_lowercase())
            } else {
                Err(CliError::Usage(format!(
                    "--sha {sha:?} is not a full commit SHA: give 40 hexadecimal characters \
                     (git rev-parse HEAD), or leave it out for a random one"
                )))
            }
        }
    }
}

fn login(user: &str) -> Result<String, CliError> {
    let user = user.trim().trim_start_matches('@');
    if user.is_empty() || user.chars().any(char::is_whitespace) {
        return Err(CliError::Usage(format!(
            "--user {user:?} is not a GitHub login, e.g. --user octocat"
        )));
    }
    Ok(user.to_string())
}

/// GitHub's legacy global node id: base64 of `0<len>:<Type><id>`.
fn node_id(kind: &str, id: u64) -> String {
    STANDARD.encode(format!("0{}:{kind}{id}", kind.len()))
}

fn timestamp(at: &chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A number derived from `key`, the same every time, in the range GitHub's ids live in.
fn stable_id(key: &str) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&digest[..4]);
    10_000_000 + u64::from(u32::from_be_bytes(bytes)) % 900_000_000
}

/// 32 unpredictable bytes: SHA-256 over a fresh UUIDv7 (74 random bits), the process id and
/// a counter, so two calls never repeat.
fn random_bytes() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    hasher.update(uuid::Uuid::now_v7().as_bytes());
    hasher.update(std::process::id().to_be_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest);
    out
}

fn random_sha() -> String {
    hex::encode(&random_bytes()[..20])
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&random_bytes()[..8]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::events::{self, CommentAction, IssueState};

    fn target() -> Target {
        Target {
            repo: "acme/web".into(),
            url: None,
            config: None,
            secret: None,
            delivery: None,
            installation: None,
            json: false,
            dry_run: false,
        }
    }

    fn repo() -> Repo {
        Repo::parse("acme/web").unwrap()
    }

    fn parse(delivery: &Delivery) -> events::Event {
        let body = serde_json::to_vec(&delivery.payload).unwrap();
        events::parse(delivery.event, &body).unwrap()
    }

    #[test]
    fn push_reads_as_the_push_github_sends() {
        let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
        let event = Event::Push {
            target: Target {
                installation: Some(7),
                ..target()
            },
            branch: "main".into(),
            sha: Some(sha.to_uppercase()),
            user: "@octocat".into(),
            message: "Fix the build".into(),
        };
        let delivery = build(&event, &repo(), "http://x/webhooks/github").unwrap();
        assert_eq!(delivery.event, "push");
        assert_eq!(delivery.summary, "push to main (6113728) by @octocat");
        let events::Event::Push(push) = parse(&delivery) else {
            panic!("not a push");
        };
        assert_eq!(push.branch(), Some("main"));
        assert_eq!(push.after, sha);
        assert!(!push.created && !push.deleted && !push.forced && !push.is_deletion());
        assert_eq!(push.before.len(), 40);
        assert_ne!(push.before, ZEROS);
        let head = push.head_commit.unwrap();
        assert_eq!(
            (head.id.as_str(), head.message.as_str()),
            (sha, "Fix the build")
        );
        assert_eq!(push.repository.full_name, "acme/web");
        assert_eq!(push.repository.tenant(), "acme");
        assert_eq!(push.sender.login, "octocat");
        assert_eq!(push.sender.kind, "User");
        assert_eq!(push.pusher.name, "octocat");
        assert_eq!(push.installation.map(|i| i.id), Some(7));
        // Fields deploybot does not read are there too, as GitHub sends them.
        let p = &delivery.payload;
        assert_eq!(p["commits"][0]["id"], sha);
        assert!(p["repository"]["created_at"].is_i64());
        assert_eq!(p["repository"]["owner"]["type"], "Organization");
        assert_eq!(p["compare"].as_str().unwrap().matches("...").count(), 1);
    }

    #[test]
    fn tag_is_a_push_that_creates_the_tag() {
        let event = Event::Tag {
            target: target(),
            tag: "refs/tags/v1.2.0".into(),
            sha: None,
            user: "octocat".into(),
        };
        let delivery = build(&event, &repo(), "http://x").unwrap();
        let events::Event::Push(push) = parse(&delivery) else {
            panic!("not a push");
        };
        assert_eq!(push.tag(), Some("v1.2.0"));
        assert_eq!(push.before, ZEROS);
        assert!(push.created);
        assert_eq!(push.head_commit.unwrap().id, push.after);
        assert!(push.after.bytes().all(|b| b.is_ascii_hexdigit()) && push.after.len() == 40);
        assert_eq!(delivery.payload["commits"], json!([]));
        assert_eq!(push.installation, None);
    }

    #[test]
    fn comment_is_a_new_comment_on_a_pull_request() {
        let event = Event::Comment {
            target: target(),
            pr: 42,
            body: "/deploy production".into(),
            user: "hubot".into(),
        };
        let delivery = build(&event, &repo(), "http://x").unwrap();
        assert_eq!(delivery.event, "issue_comment");
        let events::Event::IssueComment(c) = parse(&delivery) else {
            panic!("not a comment");
        };
        assert_eq!(c.action, CommentAction::Created);
        assert!(c.is_pull_request());
        assert_eq!(c.issue.number, 42);
        assert_eq!(c.issue.state, IssueState::Open);
        assert_eq!(c.comment.body, "/deploy production");
        assert_eq!(c.comment.user.login, "hubot");
        assert!(!c.comment.user.is_bot());
        assert!(
            c.comment
                .html_url
                .ends_with(&format!("#issuecomment-{}", c.comment.id))
        );
        assert_eq!(c.repository.full_name, "acme/web");
    }

    #[test]
    fn ping_carries_a_zen_and_the_hook() {
        let delivery = build(
            &Event::Ping { target: target() },
            &repo(),
            "http://127.0.0.1:8080/webhooks/github",
        )
        .unwrap();
        let events::Event::Ping(ping) = parse(&delivery) else {
            panic!("not a ping");
        };
        assert!(ZEN.contains(&ping.zen.as_str()));
        assert_eq!(ping.hook_id, delivery.hook_id);
        assert_eq!(
            delivery.payload["hook"]["config"]["url"],
            "http://127.0.0.1:8080/webhooks/github"
        );
        assert_eq!(ping.repository.unwrap().full_name, "acme/web");
    }

    #[test]
    fn deliveries_are_fresh_unless_forced() {
        let ping = Event::Ping { target: target() };
        let a = build(&ping, &repo(), "u").unwrap();
        let b = build(&ping, &repo(), "u").unwrap();
        assert_ne!(a.id, b.id);
        assert!(uuid::Uuid::parse_str(&a.id).is_ok());
        let forced = Event::Ping {
            target: Target {
                delivery: Some("d-1".into()),
                ..target()
            },
        };
        assert_eq!(build(&forced, &repo(), "u").unwrap().id, "d-1");
        // Ids are stable per repository, as on GitHub.
        assert_eq!(a.repository_id, b.repository_id);
        assert_eq!(a.payload["repository"]["id"], a.repository_id);
    }

    #[test]
    fn bad_input_is_refused_with_the_flag_named() {
        for bad in ["acme", "acme/", "/web", "acme/web/x", "ac me/web"] {
            let err = Repo::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("--repo") && err.contains("OWNER/NAME"),
                "{err}"
            );
        }
        let err = commit_sha(Some("abc123")).unwrap_err().to_string();
        assert!(err.contains("--sha") && err.contains("40"), "{err}");
        let err = ref_name("--branch", "my branch", "refs/heads/")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--branch"), "{err}");
        assert_eq!(random_sha().len(), 40);
        assert_ne!(random_sha(), random_sha());
    }

    #[test]
    fn node_ids_look_like_githubs() {
        assert_eq!(node_id("User", 21031067), "MDQ6VXNlcjIxMDMxMDY3");
        assert_eq!(
            node_id("Repository", 186853002),
            "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI="
        );
    }

    #[test]
    fn wildcard_listen_addresses_become_connectable() {
        assert_eq!(connectable("http://0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(connectable("http://[::]:8080"), "http://[::1]:8080");
        assert_eq!(
            connectable("https://deploy.acme.dev"),
            "https://deploy.acme.dev"
        );
    }
}
