//! The repository named by `--repo`, and the repository and account objects GitHub puts in
//! every payload, with ids that stay the same for a name.

use chrono::Utc;
use serde_json::{Value, json};

use super::ids::{node_id, stable_id, timestamp};
use crate::cli::CliError;

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
    pub(super) fn id(&self) -> u64 {
        stable_id(&format!("repo:{}", self.full_name.to_lowercase()))
    }

    /// The id of the repository's webhook, as stable as the repository's.
    pub(super) fn hook_id(&self) -> u64 {
        stable_id(&format!("hook:{}", self.full_name.to_lowercase()))
    }

    pub(super) fn html_url(&self) -> String {
        format!("https://github.com/{}", self.full_name)
    }

    pub(super) fn api_url(&self) -> String {
        format!("https://api.github.com/repos/{}", self.full_name)
    }

    /// The `repository` object. Push payloads carry timestamps as Unix seconds and a few
    /// extra fields; every other event uses ISO 8601 strings.
    pub(super) fn json(&self, for_push: bool) -> Value {
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
        let counts = settings();
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

/// The counts and settings of a new public repository, as the `repository` object lists them.
fn settings() -> Value {
    json!({
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
    })
}

/// A GitHub account object as webhooks carry it (`sender`, `owner`, `user`).
/// `organization`: the account is an organization (a repository owner), not a person.
pub(super) fn user(login: &str, organization: bool) -> Value {
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
