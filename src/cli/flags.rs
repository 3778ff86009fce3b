//! The flags the server commands share: the configuration file, and the settings that
//! also come from the environment. A flag wins over its variable, and both win over the
//! file's key; `--help` shows each variable clap's way (`[env: DATABASE_URL]`), secrets
//! without their values.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::{Config, ConfigError};

/// `--config FILE`, or `DEPLOYBOT_CONFIG`.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigFlag {
    /// Configuration file; without it, config/deploybot.toml is read when it exists. A file
    /// named here that does not exist is an error.
    #[arg(long, env = "DEPLOYBOT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigFlag {
    /// The configuration, read and checked.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref())
    }

    /// The file named by the flag or the variable, if any.
    pub fn path(&self) -> Option<&Path> {
        self.config.as_deref()
    }
}

/// What the commands that open the database (`migrate`, `repos`) read from flags or the
/// environment, over the configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct DatabaseFlags {
    #[command(flatten)]
    pub config: ConfigFlag,
    /// The database: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB (the file's
    /// `database_url`; by default sqlite://deploybot.db).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<String>,
}

impl DatabaseFlags {
    /// The configuration: the file, then the environment, then these flags over both.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load_with(self.config.path(), &self.overrides())
    }

    fn overrides(&self) -> Vec<(&'static str, String)> {
        self.database_url
            .iter()
            .map(|url| ("DATABASE_URL", url.clone()))
            .collect()
    }
}

/// What `serve` reads from flags or the environment, over the configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerFlags {
    #[command(flatten)]
    pub database: DatabaseFlags,
    /// The address to listen on (the file's `listen`; by default 127.0.0.1:8080).
    #[arg(long, env = "DEPLOYBOT_LISTEN", value_name = "ADDRESS")]
    pub listen: Option<String>,
    /// The URL people reach deploybot at, for the links on GitHub (the file's `public_url`;
    /// by default http:// and the listen address).
    #[arg(long, env = "DEPLOYBOT_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// The webhook secret; several, comma-separated, while rotating (the file's
    /// `webhook_secrets`; none by default, and serve refuses to start without one). Prefer
    /// the variable: other users of the machine can see a command line.
    #[arg(
        long,
        env = "DEPLOYBOT_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub webhook_secret: Option<String>,
    /// A token for the GitHub API (the file's `github.token`; none by default: without
    /// credentials the bot logs what it would have sent). Prefer the variable.
    #[arg(
        long,
        env = "GITHUB_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub github_token: Option<String>,
    /// The GitHub App's id, for App credentials (the file's `github.app_id`).
    #[arg(long, env = "GITHUB_APP_ID", value_name = "ID")]
    pub github_app_id: Option<String>,
    /// The GitHub App's private key, a PEM file (the file's `github.app_private_key_path`;
    /// GITHUB_APP_PRIVATE_KEY may hold the PEM text instead).
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_PATH", value_name = "FILE")]
    pub github_app_private_key_path: Option<PathBuf>,
    /// The GitHub API base; for GitHub Enterprise https://HOST/api/v3 (the file's
    /// `github.api_url`; by default https://api.github.com).
    #[arg(long, env = "DEPLOYBOT_GITHUB_API_URL", value_name = "URL")]
    pub github_api_url: Option<String>,
}

/// What `serve --help` adds under the flags: the variables that have no flag.
pub const SERVER_ENV_HELP: &str = "\
Also read from the environment:
  GITHUB_APP_PRIVATE_KEY   the GitHub App's private key as PEM text
  DEPLOYBOT_SESSION_KEY    the key that signs page sessions and log links
  DEPLOYBOT_METRICS_TOKEN  a bearer token GET /metrics then needs
  DEPLOYBOT_LOG            the log filter, e.g. info or deploybot=debug (or RUST_LOG)
  DEPLOYBOT_LOG_FORMAT     json: one JSON object per log line";

impl ServerFlags {
    /// The configuration: the file, then the environment, then these flags over both.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut overrides = self.database.overrides();
        overrides.extend(self.overrides());
        Config::load_with(self.database.config.path(), &overrides)
    }

    /// Each flag given, as the environment variable it stands for.
    fn overrides(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        [
            ("DEPLOYBOT_LISTEN", self.listen.clone()),
            ("DEPLOYBOT_PUBLIC_URL", self.public_url.clone()),
            ("DEPLOYBOT_WEBHOOK_SECRET", self.webhook_secret.clone()),
            ("GITHUB_TOKEN", self.github_token.clone()),
            ("GITHUB_APP_ID", self.github_app_id.clone()),
            (
                "GITHUB_APP_PRIVATE_KEY_PATH",
                path(&self.github_app_private_key_path),
            ),
            ("DEPLOYBOT_GITHUB_API_URL", self.github_api_url.clone()),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}
