//! Whether a commenter is one of an environment's `deployers`: a login listed there, or an
//! active member of a listed `@org/team` (GitHub's team membership API). Team answers are
//! kept for a minute, so a comment with several commands asks GitHub once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::InstanceConfig;
use crate::github::client::{ApiError, GithubClient};

/// How long a team membership answer is used before GitHub is asked again.
const TEAM_ANSWER_FOR: Duration = Duration::from_secs(60);

/// The most team answers kept; the oldest go first.
const TEAM_ANSWERS_KEPT: usize = 4096;

/// (org, team, login), lower-cased → (when asked, member).
type Answers = HashMap<(String, String, String), (Instant, bool)>;

fn answers() -> &'static Mutex<Answers> {
    static ANSWERS: OnceLock<Mutex<Answers>> = OnceLock::new();
    ANSWERS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A `deployers` entry: a login (`alice`, `@alice`) or a team (`@org/team`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Deployer<'a> {
    Login(&'a str),
    Team { org: &'a str, team: &'a str },
}

impl<'a> Deployer<'a> {
    pub(super) fn of(entry: &'a str) -> Deployer<'a> {
        let entry = entry.trim();
        let name = entry.strip_prefix('@').unwrap_or(entry);
        match name.split_once('/') {
            Some((org, team)) if !org.is_empty() && !team.is_empty() => {
                Deployer::Team { org, team }
            }
            _ => Deployer::Login(name),
        }
    }
}

/// Whether `login` is a deployer of `cfg`; false when it lists none.
pub(super) async fn is_deployer(
    client: &GithubClient,
    repo: &str,
    installation: Option<u64>,
    cfg: &InstanceConfig,
    login: &str,
) -> Result<bool, ApiError> {
    let mut teams = Vec::new();
    for entry in &cfg.deployers {
        match Deployer::of(entry) {
            Deployer::Login(name) if name.eq_ignore_ascii_case(login) => return Ok(true),
            Deployer::Login(_) => {}
            Deployer::Team { org, team } => teams.push((org, team)),
        }
    }
    for (org, team) in teams {
        let key = (
            org.to_ascii_lowercase(),
            team.to_ascii_lowercase(),
            login.to_ascii_lowercase(),
        );
        let known = answers()
            .lock()
            .ok()
            .and_then(|a| a.get(&key).copied())
            .filter(|(at, _)| at.elapsed() < TEAM_ANSWER_FOR)
            .map(|(_, member)| member);
        let member = match known {
            Some(member) => member,
            None => {
                let member = client
                    .team_membership(repo, installation, org, team, login)
                    .await?;
                if let Ok(mut a) = answers().lock() {
                    if a.len() >= TEAM_ANSWERS_KEPT {
                        a.retain(|_, (at, _)| at.elapsed() < TEAM_ANSWER_FOR);
                    }
                    if a.len() < TEAM_ANSWERS_KEPT {
                        a.insert(key, (Instant::now(), member));
                    }
                }
                member
            }
        };
        if member {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_logins_or_teams() {
        assert_eq!(Deployer::of("alice"), Deployer::Login("alice"));
        assert_eq!(Deployer::of("@alice"), Deployer::Login("alice"));
        assert_eq!(
            Deployer::of("@acme/sre"),
            Deployer::Team {
                org: "acme",
                team: "sre"
            }
        );
        assert_eq!(Deployer::of("@acme/"), Deployer::Login("acme/"));
    }
}
