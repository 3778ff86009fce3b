//! Seeding the GitHub stand-in from a configuration, for `deploybot sandbox`: every
//! repository of the configured instances gets a default branch with a few commits, an
//! open pull request #1 from a branch, three users with different roles, and a webhook to
//! the bot signed with the secret the bot verifies for that repository.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::hooks::deliver_hook;
use super::state::{Pull, State, fake_sha, lock};
use super::{FakeGithub, HookSend, HookTarget};
use crate::cli::simulate::sandbox::{account_json, repository_json};
use crate::config::Config;

/// How often, a second apart, an announcement is sent before the stand-in gives up.
const ANNOUNCE_ATTEMPTS: u32 = 60;

/// The users of every seeded repository and their roles.
pub const USERS: [(&str, &str); 3] = [("octocat", "admin"), ("alice", "write"), ("bob", "read")];
/// The branch of the seeded pull request #1.
pub const PULL_BRANCH: &str = "feature/greeting";
/// The seeded pull request's number.
pub const PULL_NUMBER: u64 = 1;
/// The seeded pull request's title.
pub const PULL_TITLE: &str = "Greet visitors on the home page";
const PULL_BODY: &str = "The home page says hello.\n\n\
    Try it in a comment: `/deploy staging`, then `/rollback staging`.";
/// The commit messages of the default branch, oldest first.
const MAIN_COMMITS: [&str; 3] = [
    "Initial commit",
    "Add the home page",
    "Serve the health check",
];

/// One seeded repository: its name and the head commit of its pull request #1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// `owner/name`, as the configuration spells it.
    pub repo: String,
    /// The head commit of pull request #1.
    pub head_sha: String,
}

impl FakeGithub {
    /// Seeds every repository of `config`'s instances (once each, in the configuration's
    /// order) and sends their webhooks to `webhook_url`, each signed with the first secret
    /// the bot accepts for the repository's owner.
    pub fn seed(&self, config: &Config, webhook_url: &str) -> Vec<Seeded> {
        let mut repos: Vec<&str> = Vec::new();
        for instance in &config.instances {
            if !repos.iter().any(|r| r.eq_ignore_ascii_case(&instance.repo)) {
                repos.push(&instance.repo);
            }
        }
        self.seed_webhook(config, webhook_url, &repos);
        repos.into_iter().map(|repo| self.seed_repo(repo)).collect()
    }

    /// The webhook target, with each owner's own secret where it has one.
    fn seed_webhook(&self, config: &Config, webhook_url: &str, repos: &[&str]) {
        let default = config.webhook_secrets.first().cloned().unwrap_or_default();
        let mut owner_secrets = BTreeMap::new();
        for repo in repos {
            let owner = repo.split('/').next().unwrap_or_default().to_lowercase();
            let secrets = config.webhook_secrets_for(Some(&owner));
            if let Some(secret) = secrets.first() {
                owner_secrets.insert(owner, secret.to_string());
            }
        }
        let mut state = lock(&self.state);
        state.hook_target = Some(HookTarget {
            url: webhook_url.to_string(),
            secret: default,
            owner_secrets: owner_secrets.into_iter().collect(),
        });
        state.version += 1;
    }

    /// One repository: `main` with a few commits, the users, and pull request #1 from
    /// [`PULL_BRANCH`], opened by `alice`.
    fn seed_repo(&self, full_name: &str) -> Seeded {
        self.add_repo(full_name);
        for (user, role) in USERS {
            self.set_permission(full_name, user, role);
        }
        let mut main = String::new();
        for message in MAIN_COMMITS {
            main = fake_sha(&[full_name, "main", &main, message]);
        }
        self.add_branch(full_name, "main", &main);
        let head_sha = fake_sha(&[full_name, PULL_BRANCH, &main]);
        self.add_branch(full_name, PULL_BRANCH, &head_sha);
        let mut state = self.state();
        let repo = state.repo_mut(full_name);
        repo.pulls.insert(
            PULL_NUMBER,
            Pull {
                head_sha: head_sha.clone(),
                head_ref: PULL_BRANCH.to_string(),
                from_fork: false,
                state: "open".to_string(),
                author: "alice".to_string(),
                created_at: an_hour_ago(),
                title: PULL_TITLE.to_string(),
                body: PULL_BODY.to_string(),
                base_ref: "main".to_string(),
            },
        );
        Seeded {
            repo: full_name.to_string(),
            head_sha,
        }
    }
}

impl FakeGithub {
    /// Sends `pull_request` `opened` for every open pull request, as GitHub did when each
    /// was opened, so that the bot knows their heads from before any comment. Runs on a
    /// thread of its own: each delivery is tried again, a second apart, until the bot
    /// accepts it (it may still be starting) or a minute has passed. A comment through
    /// the sandbox's comment route waits until they are sent.
    pub fn announce_pulls(&self) {
        lock(&self.announcements).extend(opened_payloads(&lock(&self.state)));
        let (shared, announcements) = (Arc::clone(&self.state), Arc::clone(&self.announcements));
        let spawned = std::thread::Builder::new()
            .name("stand-in-announce".into())
            .spawn(move || announce(&shared, &announcements));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "the GitHub stand-in cannot announce its pull requests");
        }
    }
}

/// Sends the announcements still to send; holds them while it does, so that whoever calls
/// it next finds them sent.
pub(super) fn announce(shared: &Arc<Mutex<State>>, announcements: &Mutex<Vec<String>>) {
    let mut pending = lock(announcements);
    for body in std::mem::take(&mut *pending) {
        let guid = uuid::Uuid::now_v7().to_string();
        for attempt in 0..ANNOUNCE_ATTEMPTS {
            let send = HookSend {
                guid: guid.clone(),
                event: "pull_request".to_string(),
                body: body.clone(),
                redelivery: attempt > 0,
            };
            if deliver_hook(shared, send).succeeded() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The `pull_request` `opened` payload of every open pull request.
fn opened_payloads(state: &State) -> Vec<String> {
    let mut bodies = Vec::new();
    for repo in state.repos.values() {
        let Some(repository) = repository_json(&repo.full_name) else {
            continue;
        };
        let (owner, name) = (repo.owner(), repo.name());
        for (number, pull) in &repo.pulls {
            if pull.state != "open" {
                continue;
            }
            let pull_json = state.get_pull(owner, name, *number).body;
            let payload = json!({
                "action": "opened",
                "number": number,
                "pull_request": pull_json,
                "repository": repository,
                "sender": account_json(&pull.author),
            });
            bodies.push(payload.to_string());
        }
    }
    bodies
}

/// GitHub's time an hour ago: when the seeded pull request was opened.
fn an_hour_ago() -> String {
    let at = chrono::Utc::now() - chrono::Duration::hours(1);
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
