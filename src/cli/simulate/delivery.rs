//! Turning the flags of `simulate` into a delivery: each event's flags checked and written
//! into GitHub's payload, with a one-line summary, the delivery id and the hook's ids.

use serde_json::{Value, json};

use super::ids::{node_id, random_sha, random_u64};
use super::payload::{ZEN, comment, ping, push};
use super::{Event, Repo};
use crate::cli::CliError;

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

/// An event's part of a delivery: its name, payload and summary.
struct Built {
    event: &'static str,
    payload: Value,
    summary: String,
}

/// Builds the delivery for `event` on `repo`; `url` is the webhook's URL (in a ping's hook).
pub fn build(event: &Event, repo: &Repo, url: &str) -> Result<Delivery, CliError> {
    let Built {
        event: name,
        mut payload,
        summary,
    } = match event {
        Event::Push {
            branch,
            sha,
            user,
            message,
            ..
        } => branch_push(repo, branch, sha.as_deref(), user, message)?,
        Event::Tag { tag, sha, user, .. } => tag_push(repo, tag, sha.as_deref(), user)?,
        Event::Comment { pr, body, user, .. } => pull_request_comment(repo, *pr, body, user)?,
        Event::Ping { .. } => hook_ping(repo, url),
    };
    let target = event.target();
    if let Some(id) = target.installation {
        payload["installation"] = json!({"id": id, "node_id": node_id("Installation", id)});
    }
    Ok(Delivery {
        event: name,
        id: delivery_id(target.delivery.as_deref())?,
        hook_id: repo.hook_id(),
        repository_id: repo.id(),
        payload,
        summary,
    })
}

/// `simulate push`: a branch moved by one commit.
fn branch_push(
    repo: &Repo,
    branch: &str,
    sha: Option<&str>,
    user: &str,
    message: &str,
) -> Result<Built, CliError> {
    let branch = ref_name("--branch", branch, "refs/heads/")?;
    let sha = commit_sha(sha)?;
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
    Ok(Built {
        event: "push",
        payload,
        summary,
    })
}

/// `simulate tag`: a push that creates the tag.
fn tag_push(repo: &Repo, tag: &str, sha: Option<&str>, user: &str) -> Result<Built, CliError> {
    let tag = ref_name("--tag", tag, "refs/tags/")?;
    let sha = commit_sha(sha)?;
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
    Ok(Built {
        event: "push",
        payload,
        summary,
    })
}

/// `simulate comment`: a new comment on pull request `pr`.
fn pull_request_comment(repo: &Repo, pr: u64, body: &str, user: &str) -> Result<Built, CliError> {
    let login = login(user)?;
    Ok(Built {
        event: "issue_comment",
        payload: comment(repo, pr, body, &login),
        summary: format!("comment {body:?} on #{pr} by @{login}"),
    })
}

/// `simulate ping`: GitHub's check of a new webhook, with one of its aphorisms.
fn hook_ping(repo: &Repo, url: &str) -> Built {
    let zen = ZEN[(random_u64() % ZEN.len() as u64) as usize];
    Built {
        event: "ping",
        payload: ping(repo, url, zen),
        summary: "ping".to_string(),
    }
}

/// The `--delivery` id given, or a fresh UUID.
fn delivery_id(given: Option<&str>) -> Result<String, CliError> {
    match given {
        Some(id) if id.trim().is_empty() => {
            Err(CliError::Usage("--delivery must not be empty".into()))
        }
        Some(id) => Ok(id.trim().to_string()),
        None => Ok(uuid::Uuid::now_v7().to_string()),
    }
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

/// The `--user` login, without a leading `@`.
fn login(user: &str) -> Result<String, CliError> {
    let user = user.trim().trim_start_matches('@');
    if user.is_empty() || user.chars().any(char::is_whitespace) {
        return Err(CliError::Usage(format!(
            "--user {user:?} is not a GitHub login, e.g. --user octocat"
        )));
    }
    Ok(user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::simulate::Target;
    use crate::cli::simulate::payload::ZEROS;
    use crate::github::webhook::events::{self, CommentAction, IssueState};

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
}
