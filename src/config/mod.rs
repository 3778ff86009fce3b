//! Typed configuration: the TOML file, environment overrides and validation.
//!
//! The file is read with serde into private "raw" structs (`shape`) that reject unknown keys,
//! then every value is checked and converted into the public types, each built in the file
//! named for its part of the configuration and re-exported here. Validation collects every
//! problem it finds and reports them together, each naming the key (and the instance) and what
//! to do. Secrets (webhook secrets, GitHub tokens and private keys, database passwords) never
//! appear in `Debug` output or in error messages.
//!
//! - `shape`: the serde structs; `parse_error`: where a TOML error points;
//! - `checks`: collecting problems; `env`: environment overrides;
//! - `server`, `tenants`, `tokens`, `github`, `worker`, `retention`: the top-level keys and
//!   sections;
//! - `instance`, `provider`, `strategy`, `placeholders`, `child_env`, `globs`: `[[instances]]`;
//! - `metric_gates`: `[[instances.gates]]` and `watch`;
//! - `secrets`: redaction, the session key and the values stored logs mask;
//! - `describe`: the table `config check` prints.

mod checks;
mod child_env;
mod describe;
mod env;
mod freeze;
mod gates;
mod github;
mod globs;
mod instance;
mod live;
mod metric_gates;
mod parse_error;
mod placeholders;
mod provider;
mod retention;
mod secrets;
mod server;
mod shape;
mod strategy;
mod tenants;
mod tokens;
mod worker;

pub use freeze::{FreezeWhen, FreezeWindow, freeze_state};
pub use gates::{GateConfig, plural};
pub use github::{
    DEFAULT_GITHUB_API_URL, DEFAULT_REDELIVER_INTERVAL, DEFAULT_REDELIVER_LOOKBACK, GithubConfig,
};
pub use globs::globs_cover;
pub use instance::{InstanceConfig, PERMISSIONS};
pub use live::{LiveConfig, ReloadReport, ReloadStatus};
pub use metric_gates::{
    DEFAULT_GATE_INTERVAL, GATE_PLACEHOLDERS, GateBound, MAX_GATE_COUNT, MetricGateConfig, NoData,
    QueryPart, parse_query,
};
pub use placeholders::IMAGE_PLACEHOLDERS;
pub use provider::{HealthConfig, ProviderConfig, ProviderKind};
pub use retention::{
    DEFAULT_AUDIT_RETENTION, MAX_PRUNE_BATCH, MIN_AUDIT_RETENTION, MIN_PRUNE_INTERVAL,
    MIN_RETENTION, RetentionConfig,
};
pub use secrets::{SESSION_KEY_MIN_BYTES, hide_url_passwords, redact_url};
pub use server::pg_url_problem;
pub use strategy::{CanaryConfig, StrategyKind};
pub use tenants::TenantConfig;
pub use tokens::{ApiConfig, ApiToken, Role};
pub use worker::WorkerConfig;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use checks::Checker;
use env::{METRICS_TOKEN_ENV, SESSION_KEY_ENV, non_empty};
use secrets::{Redacted, RedactedList, session_key};
use shape::RawConfig;

/// The file read when neither `--config` nor `DEPLOYBOT_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/deploybot.toml";
/// The variable naming the configuration file.
pub const CONFIG_ENV: &str = "DEPLOYBOT_CONFIG";
/// Default `database_url`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://deploybot.db";
/// Default `listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `webhook_max_bytes`: GitHub caps payloads at 25 MiB.
pub const DEFAULT_WEBHOOK_MAX_BYTES: usize = 25 * 1024 * 1024;
/// How long a webhook body may take to arrive (`webhook_body_timeout`).
pub const DEFAULT_WEBHOOK_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many unverified webhook bodies may be read at once (`webhook_max_pending`).
pub const DEFAULT_WEBHOOK_MAX_PENDING: usize = 512;
/// How many bytes of unverified webhook bodies may be held at once (`webhook_pending_bytes`).
pub const DEFAULT_WEBHOOK_PENDING_BYTES: usize = 64 * 1024 * 1024;
/// How long storing a delivery waits for the database (`webhook_store_timeout`).
pub const DEFAULT_WEBHOOK_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole configuration, validated. `Debug` redacts every secret.
#[derive(Clone, PartialEq)]
pub struct Config {
    /// `sqlite://PATH` or `postgres://…` / `postgresql://…`.
    pub database_url: String,
    /// Socket address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// The URL people reach the bot at, without a trailing slash.
    pub public_url: String,
    /// Webhook secrets; more than one while rotating. Empty: `serve` must refuse to start.
    pub webhook_secrets: Vec<String>,
    /// Largest webhook body accepted (GitHub caps payloads at 25 MiB); larger → 413.
    pub webhook_max_bytes: usize,
    /// How long a webhook body may take to arrive once its head has; slower → 408.
    pub webhook_body_timeout: Duration,
    /// Unverified webhook bodies read at once; past it → 503 with Retry-After.
    pub webhook_max_pending: usize,
    /// Bytes of unverified webhook bodies held at once; past it → 503 with Retry-After.
    pub webhook_pending_bytes: usize,
    /// How long storing a delivery waits for the database before answering 503.
    pub webhook_store_timeout: Duration,
    /// `[[tenants]]`: each tenant's own webhook secrets.
    pub tenants: Vec<TenantConfig>,
    /// `DEPLOYBOT_METRICS_TOKEN`: when set, `GET /metrics` needs it as a bearer token.
    pub metrics_token: Option<String>,
    /// `DEPLOYBOT_SESSION_KEY`, decoded (≥ 32 bytes): signs page sessions and log links.
    /// `None`: a key generated once and kept in the database is used.
    pub session_key: Option<Vec<u8>>,
    pub github: GithubConfig,
    pub worker: WorkerConfig,
    pub api: ApiConfig,
    pub pages: PagesConfig,
    pub instances: Vec<InstanceConfig>,
    /// `command_prefix`: what starts a pull-request command, `/` (default) or `.`.
    pub command_prefix: char,
    /// `[[freeze]]`: freeze windows of every instance.
    pub freezes: Vec<FreezeWindow>,
    /// `[retention]`: how long stored records are kept.
    pub retention: RetentionConfig,
    /// The file this configuration was read from; `None` for defaults or a string.
    pub source: Option<PathBuf>,
}

/// The HTML pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagesConfig {
    /// `true`: `/` and deployment pages need no sign-in.
    pub public: bool,
}

/// Why a configuration could not be loaded. `Display` is a complete message for a person.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {error} (name another file with --config or DEPLOYBOT_CONFIG)", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file named by `--config` or `DEPLOYBOT_CONFIG` does not exist: nothing runs on
    /// a guess (a container started without its configuration must not serve defaults).
    #[error(
        "the configuration file {} (named by {named_by}) does not exist: create it, or in a container mount yours there \
         (docker run -v \"$PWD/deploybot.toml:{}:ro\" …), and set DEPLOYBOT_WEBHOOK_SECRET (or [[tenants]] secrets) and \
         GitHub credentials (GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY_PATH, or GITHUB_TOKEN) in the environment",
        path.display(),
        path.display()
    )]
    Missing {
        path: PathBuf,
        named_by: &'static str,
    },
    /// The file is not valid TOML or does not fit the expected shape (e.g. an unknown key).
    /// The message holds the file, line, column and key.
    #[error("{0}")]
    Parse(String),
    /// One or more values are invalid; one message per problem.
    #[error("invalid configuration ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, bullet_list(.0))]
    Invalid(Vec<String>),
}

fn bullet_list(items: &[String]) -> String {
    items
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A strategy or provider name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{value}\"; use one of: {}", valid.join(", "))]
pub struct ParseKindError {
    pub what: &'static str,
    pub value: String,
    pub valid: &'static [&'static str],
}

/// The defaults, without reading any file or environment variable.
impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DEFAULT_DATABASE_URL.to_string(),
            listen: DEFAULT_LISTEN.to_string(),
            public_url: format!("http://{DEFAULT_LISTEN}"),
            webhook_secrets: Vec::new(),
            webhook_max_bytes: DEFAULT_WEBHOOK_MAX_BYTES,
            webhook_body_timeout: DEFAULT_WEBHOOK_BODY_TIMEOUT,
            webhook_max_pending: DEFAULT_WEBHOOK_MAX_PENDING,
            webhook_pending_bytes: DEFAULT_WEBHOOK_PENDING_BYTES,
            webhook_store_timeout: DEFAULT_WEBHOOK_STORE_TIMEOUT,
            tenants: Vec::new(),
            metrics_token: None,
            session_key: None,
            github: GithubConfig::default(),
            worker: WorkerConfig::default(),
            api: ApiConfig::default(),
            pages: PagesConfig::default(),
            instances: Vec::new(),
            command_prefix: '/',
            freezes: Vec::new(),
            retention: RetentionConfig::default(),
            source: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("webhook_secrets", &RedactedList(self.webhook_secrets.len()))
            .field("tenants", &self.tenants)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| Redacted),
            )
            .field("session_key", &self.session_key.as_ref().map(|_| Redacted))
            .field("github", &self.github)
            .field("worker", &self.worker)
            .field("api", &self.api)
            .field("pages", &self.pages)
            .field("instances", &self.instances)
            .field("command_prefix", &self.command_prefix)
            .field("freezes", &self.freezes)
            .field("retention", &self.retention)
            .field("source", &self.source)
            .finish()
    }
}

impl Config {
    /// Reads the file (explicit path, else $DEPLOYBOT_CONFIG, else config/deploybot.toml when
    /// present, else defaults), then applies env overrides, then validates. A file named by
    /// `path` or `DEPLOYBOT_CONFIG` must exist.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(path, &[])
    }

    /// Same, with `overrides` (variable name, value) taking the place of the environment's
    /// values for those variables: command-line flags that stand for a variable.
    pub fn load_with(
        path: Option<&Path>,
        overrides: &[(&str, String)],
    ) -> Result<Config, ConfigError> {
        let env = |key: &str| {
            overrides
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.clone())
                .or_else(|| std::env::var(key).ok())
        };
        let named_in_env = non_empty(env(CONFIG_ENV)).map(PathBuf::from);
        let named = match path {
            // The command line hands DEPLOYBOT_CONFIG's value over as the path: name the
            // variable when the path is its value.
            Some(p) if named_in_env.as_deref() == Some(p) => Some((p.to_path_buf(), CONFIG_ENV)),
            Some(p) => Some((p.to_path_buf(), "--config")),
            None => named_in_env.map(|p| (p, CONFIG_ENV)),
        };
        let file = match named {
            Some((file, named_by)) => {
                if !file.exists() {
                    return Err(ConfigError::Missing {
                        path: file,
                        named_by,
                    });
                }
                Some(file)
            }
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                default.is_file().then(|| default.to_path_buf())
            }
        };
        match file {
            Some(file) => {
                let text = std::fs::read_to_string(&file).map_err(|error| ConfigError::Read {
                    path: file.clone(),
                    error,
                })?;
                parse(&text, Some(&file), &env)
            }
            None => parse("", None, &env),
        }
    }

    /// Same from a string and an explicit env lookup (for tests): `env` maps variable names to
    /// values.
    pub fn from_toml_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        parse(text, None, env)
    }

    /// What `config check` and `serve` say about the file they read: `Ok` names it, `Err`
    /// is the warning that they read none.
    pub fn source_message(&self) -> Result<String, String> {
        match &self.source {
            Some(file) => Ok(format!("reading configuration from {}", file.display())),
            None => Err(format!(
                "no configuration file: {DEFAULT_CONFIG_PATH} does not exist; using defaults and \
                 the environment"
            )),
        }
    }

    /// The instance called `name` in `tenant` (compared case-insensitively).
    pub fn instance(&self, tenant: &str, name: &str) -> Option<&InstanceConfig> {
        self.instances
            .iter()
            .find(|i| i.name == name && i.tenant().eq_ignore_ascii_case(tenant))
    }
}

/// The file's text read into its shape, checked and converted; `file` names it in messages.
fn parse(
    text: &str,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text)
        .map_err(|e| ConfigError::Parse(parse_error::toml_error_message(text, file, &e)))?;
    let mut check = Checker::new(file);
    let mut config = build(raw, env, &mut check);
    let errors = check.into_errors();
    if errors.is_empty() {
        config.source = file.map(Path::to_path_buf);
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

/// Every section read and checked, environment overrides applied; each problem is recorded
/// in `check`.
fn build(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>, check: &mut Checker) -> Config {
    let database_url = server::database_url(raw.database_url, env, check);
    let listen = server::listen(raw.listen, env, check);
    let public_url = server::public_url(raw.public_url, &listen, env, check);
    let webhook_secrets = tenants::webhook_secrets(raw.webhook_secrets, env, check);
    let github = github::build_github(raw.github, env, check);
    let worker = worker::build_worker(raw.worker, check);
    let api = tokens::build_api(raw.api, check);
    let pages = PagesConfig {
        public: raw.pages.public.unwrap_or(false),
    };
    let instances = instance::build_instances(raw.instances, check);
    let webhook = server::webhook_limits(
        server::RawWebhookLimits {
            max_bytes: raw.webhook_max_bytes,
            body_timeout: raw.webhook_body_timeout,
            max_pending: raw.webhook_max_pending,
            pending_bytes: raw.webhook_pending_bytes,
            store_timeout: raw.webhook_store_timeout,
        },
        check,
    );
    let tenants = tenants::build_tenants(raw.tenants, env, check);
    let command_prefix = command_prefix(raw.command_prefix.as_deref(), check);
    let freezes = freeze::build_freezes("freeze", raw.freeze, check);
    let retention = retention::build_retention(raw.retention, github.redeliver_lookback, check);
    let config = Config {
        database_url,
        listen,
        public_url,
        webhook_secrets,
        webhook_max_bytes: webhook.max_bytes,
        webhook_body_timeout: webhook.body_timeout,
        webhook_max_pending: webhook.max_pending,
        webhook_pending_bytes: webhook.pending_bytes,
        webhook_store_timeout: webhook.store_timeout,
        tenants,
        metrics_token: non_empty(env(METRICS_TOKEN_ENV)),
        session_key: session_key(check, non_empty(env(SESSION_KEY_ENV))),
        github,
        worker,
        api,
        pages,
        instances,
        command_prefix,
        freezes,
        retention,
        source: None,
    };
    child_env::check_passed_values(&config, env, check);
    config
}

/// `command_prefix`: `/` (default) or `.`.
fn command_prefix(raw: Option<&str>, check: &mut Checker) -> char {
    match raw {
        None | Some("/") => '/',
        Some(".") => '.',
        Some(other) => {
            check.err(
                "command_prefix",
                format!(
                    "\"{other}\" is not a command prefix; use \"/\" (/deploy) or \".\" (.deploy)"
                ),
            );
            '/'
        }
    }
}

#[cfg(test)]
mod documented;
#[cfg(test)]
mod test_support;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    const SHIPPED: &str = include_str!("../../config/deploybot.toml");

    #[test]
    fn shipped_example_parses_and_validates() {
        let config = parse_ok(SHIPPED);
        assert_eq!(config.database_url, "sqlite://deploybot.db");
        assert!(config.pages.public);
        assert!(config.webhook_secrets.is_empty());
        assert_eq!(config.instances.len(), 2);

        let staging = config.instance("acme", "web-staging").expect("web-staging");
        assert_eq!(staging.repo, "acme/web");
        assert_eq!(staging.environment, "staging");
        assert_eq!(staging.strategy, StrategyKind::Rolling);
        assert!(staging.supersede);
        assert!(staging.matches_push("main"));
        assert!(!staging.matches_push("feature/x"));
        assert_eq!(staging.provider.kind, ProviderKind::Command);
        assert_eq!(staging.provider.run, vec!["config/ship.sh".to_string()]);
        assert_eq!(staging.provider.timeout, Duration::from_secs(120));
        assert!(staging.health.is_none());

        let production = config
            .instance("ACME", "web-production")
            .expect("web-production");
        assert_eq!(production.environment, "production");
        assert_eq!(production.strategy, StrategyKind::Canary);
        assert_eq!(production.canary.steps, vec![10, 50, 100]);
        assert_eq!(production.canary.pause, Duration::from_secs(2));
        assert!(production.matches_tag("v1.2.0"));
        assert!(!production.matches_push("main"));

        let table = config.describe();
        assert_mentions(
            &table,
            &[
                "NAME",
                "TRIGGERS",
                "web-staging",
                "web-production",
                "acme/web",
                "canary",
                "command config/ship.sh",
                "push main",
                "tag v*",
            ],
        );
        assert_eq!(table.lines().count(), 3);
    }

    #[test]
    fn shipped_ship_script_is_executable() {
        use std::os::unix::fs::PermissionsExt;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ship.sh");
        let mode = std::fs::metadata(&path)
            .expect("config/ship.sh exists")
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "config/ship.sh must be executable");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse_ok("");
        assert_eq!(config.database_url, "sqlite://deploybot.db");
        assert_eq!(config.listen, "127.0.0.1:8080");
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert!(config.webhook_secrets.is_empty());
        assert_eq!(config.github.api_url, "https://api.github.com");
        assert_eq!(config.github.token, None);
        assert_eq!(config.github.app_id, None);
        assert_eq!(config.worker.concurrency, 4);
        assert_eq!(config.worker.lease, Duration::from_secs(30));
        assert_eq!(config.worker.grace, Duration::from_secs(30));
        assert!(config.api.tokens.is_empty());
        assert!(!config.pages.public);
        assert!(config.instances.is_empty());
        assert_eq!(config.source, None);
        assert_eq!(config, Config::default());
        assert_mentions(&config.describe(), &["no instances"]);
    }

    #[test]
    fn command_prefix_is_slash_or_dot() {
        assert_eq!(parse_ok("").command_prefix, '/');
        assert_eq!(parse_ok("command_prefix = \"/\"").command_prefix, '/');
        assert_eq!(parse_ok("command_prefix = \".\"").command_prefix, '.');
        for bad in ["!", "//", "", " .", "deploy"] {
            let err = parse_err(&format!("command_prefix = \"{bad}\""));
            assert_mentions(&err, &["command_prefix", "\"/\"", "\".\""]);
        }
    }

    #[test]
    fn top_level_freezes_are_read() {
        let config = parse_ok(
            "[[freeze]]\nreason = \"holidays\"\nstart = \"2026-12-20T00:00:00+01:00\"\nend = 2027-01-04T08:00:00Z\n[[freeze]]\nreason = \"weekend\"\nweekly = { from = \"Fri 15:00\", until = \"Mon 08:00\", timezone = \"Europe/Berlin\" }\n",
        );
        assert_eq!(config.freezes.len(), 2);
        let holidays = &config.freezes[0];
        assert_eq!(holidays.reason, "holidays");
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("instant")
                .with_timezone(&chrono::Utc)
        };
        assert_eq!(
            holidays.when,
            FreezeWhen::Fixed {
                start: at("2026-12-19T23:00:00Z"),
                end: at("2027-01-04T08:00:00Z"),
            }
        );
        assert_eq!(
            config.freezes[1].when,
            FreezeWhen::Weekly {
                from: (
                    chrono::Weekday::Fri,
                    chrono::NaiveTime::from_hms_opt(15, 0, 0).expect("time")
                ),
                until: (
                    chrono::Weekday::Mon,
                    chrono::NaiveTime::from_hms_opt(8, 0, 0).expect("time")
                ),
                timezone: chrono_tz::Europe::Berlin,
            }
        );
        assert!(
            config.freezes[1]
                .active_at(at("2026-12-12T12:00:00Z"))
                .is_some()
        );
        assert!(
            config.freezes[1]
                .active_at(at("2026-12-09T12:00:00Z"))
                .is_none()
        );
    }

    #[test]
    fn load_reads_file_and_records_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ok.toml");
        std::fs::write(&path, instance("")).expect("write");
        let config = Config::load(Some(&path)).expect("valid");
        assert_eq!(config.source.as_deref(), Some(path.as_path()));
        assert_eq!(config.instances.len(), 1);

        let missing = dir.path().join("missing.toml");
        let err = Config::load(Some(&missing)).unwrap_err().to_string();
        assert_mentions(
            &err,
            &["missing.toml", "does not exist", "--config", "mount"],
        );

        // A file that exists but cannot be read says why, once.
        let unreadable = dir.path().join("a-directory.toml");
        std::fs::create_dir(&unreadable).expect("mkdir");
        let err = Config::load(Some(&unreadable)).unwrap_err().to_string();
        assert_mentions(&err, &["cannot read config file", "a-directory.toml"]);
    }
}
