//! The configuration `deploybot sandbox` runs the bot with: the GitHub API is the
//! stand-in, the credentials are a token only the stand-in accepts (never the user's
//! GitHub token or App), and the database is a fresh SQLite file in a temporary directory
//! unless one is named explicitly.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// A directory of its own under the system's temporary directory, removed when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `deploybot-sandbox-…` under the system's temporary directory.
    pub fn create() -> std::io::Result<ScratchDir> {
        let name = format!(
            "deploybot-sandbox-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path)?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A token the stand-in accepts and GitHub never issued.
pub fn sandbox_token() -> String {
    format!("sandbox_{}", uuid::Uuid::now_v7().simple())
}

/// `config` pointed at the stand-in at `api_url` with `token` as its only credentials,
/// storing in `database_url`; links to GitHub go to the sandbox's pages.
pub fn sandbox_config(
    mut config: Config,
    api_url: &str,
    token: &str,
    database_url: &str,
) -> Config {
    config.database_url = database_url.to_string();
    config.github.api_url = api_url.to_string();
    config.github.web_url = format!("{}/sandbox", connectable(&config.public_url));
    config.github.token = Some(token.to_string());
    config.github.app_id = None;
    config.github.app_private_key = None;
    config.github.app_private_key_path = None;
    config
}

/// The SQLite URL of a database file in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("deploybot.db").display())
}

/// The bot's webhook URL as the stand-in reaches it: `http://LISTEN/webhooks/github`,
/// with a wildcard address made connectable.
pub fn webhook_url(listen: &str) -> String {
    format!(
        "{}/webhooks/github",
        connectable(&format!("http://{listen}"))
    )
}

/// The sandbox's page of pull request #`number` of `repo`.
pub fn pull_page_url(config: &Config, repo: &str, number: u64) -> String {
    format!(
        "{}/sandbox/{repo}/pull/{number}",
        connectable(&config.public_url)
    )
}

/// A URL with a wildcard address made connectable (`0.0.0.0` → `127.0.0.1`).
fn connectable(url: &str) -> String {
    url.trim_end_matches('/')
        .replacen("://0.0.0.0", "://127.0.0.1", 1)
        .replacen("://[::]", "://[::1]", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_never_keeps_the_users_github_credentials() {
        let mut config = Config::default();
        config.github.token = Some("ghp_users_own".into());
        config.github.app_id = Some(7);
        config.github.app_private_key = Some("PEM".into());
        config.public_url = "http://0.0.0.0:8080".into();
        let config = sandbox_config(config, "http://127.0.0.1:1", "sandbox_x", "sqlite://x.db");
        assert_eq!(config.github.token.as_deref(), Some("sandbox_x"));
        assert_eq!(config.github.app_id, None);
        assert_eq!(config.github.app_private_key, None);
        assert_eq!(config.github.api_url, "http://127.0.0.1:1");
        assert_eq!(config.github.web_url, "http://127.0.0.1:8080/sandbox");
        assert_eq!(config.database_url, "sqlite://x.db");
        assert_eq!(
            webhook_url("0.0.0.0:9000"),
            "http://127.0.0.1:9000/webhooks/github"
        );
    }
}
