//! Typed configuration: the TOML file, environment overrides and validation.
//!
//! The file is read with serde into private "raw" structs that reject unknown keys, then every
//! value is checked and converted into the public types below. Validation collects every problem
//! it finds and reports them together, each naming the key (and the instance) and what to do.
//! Secrets (webhook secrets, GitHub tokens and private keys, database passwords) never appear in
//! `Debug` output or in error messages.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file read when neither `--config` nor `DEPLOYBOT_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/deploybot.toml";
/// Default `database_url`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://deploybot.db";
/// Default `listen` address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `github.api_url`.
pub const DEFAULT_WEBHOOK_MAX_BYTES: usize = 25 * 1024 * 1024;
/// How long a webhook body may take to arrive (`webhook_body_timeout`).
pub const DEFAULT_WEBHOOK_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many unverified webhook bodies may be read at once (`webhook_max_pending`).
pub const DEFAULT_WEBHOOK_MAX_PENDING: usize = 512;
/// How many bytes of unverified webhook bodies may be held at once (`webhook_pending_bytes`).
pub const DEFAULT_WEBHOOK_PENDING_BYTES: usize = 64 * 1024 * 1024;
/// How long storing a delivery waits for the database (`webhook_store_timeout`).
pub const DEFAULT_WEBHOOK_STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// GitHub's API.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
/// The placeholders an instance `image` may contain, without braces.
pub const IMAGE_PLACEHOLDERS: &[&str] = &["sha", "short_sha", "ref", "branch", "tag", "pr"];
/// The GitHub repository permissions `allowed_permissions` may list.
pub const PERMISSIONS: &[&str] = &["admin", "maintain", "write", "triage", "read"];

const SECRET_ENV: &str = "DEPLOYBOT_WEBHOOK_SECRET";
const METRICS_TOKEN_ENV: &str = "DEPLOYBOT_METRICS_TOKEN";
const SESSION_KEY_ENV: &str = "DEPLOYBOT_SESSION_KEY";
/// The fewest bytes `DEPLOYBOT_SESSION_KEY` may decode to.
pub const SESSION_KEY_MIN_BYTES: usize = 32;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

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
    /// The file this configuration was read from; `None` for defaults or a string.
    pub source: Option<PathBuf>,
}

/// A `[[tenants]]` entry: the webhook secrets of one GitHub account's repository and
/// organization webhooks. `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// The account, lower-cased (`acme` in `acme/web`).
    pub name: String,
    /// The variable the secrets were read from (`webhook_secret_env`).
    pub secret_env: String,
    /// Its secrets, newest first while rotating; empty when the variable is unset or empty.
    pub secrets: Vec<String>,
}

impl fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantConfig")
            .field("name", &self.name)
            .field("secret_env", &self.secret_env)
            .field("secrets", &RedactedList(self.secrets.len()))
            .finish()
    }
}

/// GitHub API access. `Debug` redacts the token and the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct GithubConfig {
    /// API base without a trailing slash (GitHub Enterprise: `https://HOST/api/v3`).
    pub api_url: String,
    pub token: Option<String>,
    pub app_id: Option<u64>,
    /// PEM text of the GitHub App private key.
    pub app_private_key: Option<String>,
    pub app_private_key_path: Option<PathBuf>,
    /// How often a GitHub App's failed webhook deliveries are looked for and redelivered.
    pub redeliver_interval: Duration,
    /// How far back that look goes (GitHub keeps deliveries for three days).
    pub redeliver_lookback: Duration,
}

/// Default `github.redeliver_interval`.
pub const DEFAULT_REDELIVER_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default `github.redeliver_lookback`.
pub const DEFAULT_REDELIVER_LOOKBACK: Duration = Duration::from_secs(3 * 24 * 3600);

/// The worker that runs deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Deployments running at once, across instances (≥ 1).
    pub concurrency: usize,
    /// A running deployment whose worker stops renewing for this long is recovered (≥ 1s).
    pub lease: Duration,
    /// How long shutdown waits for running deployments.
    pub grace: Duration,
    /// The most lines of a deployment's log that are stored (≥ 10).
    pub log_lines: usize,
    /// The most bytes of a deployment's log that are stored (≥ 4 KiB).
    pub log_bytes: usize,
}

/// Bearer tokens for `/v1` and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiConfig {
    pub tokens: Vec<ApiToken>,
}

/// One API token, stored as the hex SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Recorded as the initiator of what the token starts; unique.
    pub name: String,
    /// Lower-case tenant the token acts for.
    pub tenant: String,
    /// 64 lower-case hex characters (upper case in the file is accepted and lower-cased).
    pub sha256: String,
    /// What the token may do (default `deploy`).
    pub role: Role,
    /// Globs over the tenant's instance names the token may see and act on; empty: all.
    pub instances: Vec<String>,
}

impl ApiToken {
    /// Whether the token's `instances` globs cover the instance `name` (no globs: all).
    pub fn covers(&self, name: &str) -> bool {
        globs_cover(&self.instances, name)
    }
}

/// Whether a token's `instances` globs cover the instance `name` (no globs: all).
pub fn globs_cover(globs: &[String], name: &str) -> bool {
    globs.is_empty() || matches_any(globs, name)
}

/// What an API token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read through `GET` routes, and sign in to the pages.
    Read,
    /// Also deploy, roll back and cancel.
    #[default]
    Deploy,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Deploy, Role::Admin];

    /// The name written in `role = "…"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Deploy => "deploy",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("\"{s}\" is not a role; use \"read\", \"deploy\" or \"admin\""))
    }
}

/// The HTML pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PagesConfig {
    /// `true`: `/` and deployment pages need no sign-in.
    pub public: bool,
}

/// One deploy target: a repository and a GitHub environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// 1–63 characters of `[a-z0-9-]`, unique within its tenant.
    pub name: String,
    /// `owner/name` as written in the file.
    pub repo: String,
    /// GitHub environment name.
    pub environment: String,
    /// Image reference with `{sha}`, `{short_sha}`, `{ref}`, `{branch}`, `{tag}`, `{pr}`.
    pub image: String,
    pub strategy: StrategyKind,
    /// Branch globs that deploy on push.
    pub on_push: Vec<String>,
    /// Tag globs that deploy when a tag is pushed.
    pub on_tag: Vec<String>,
    /// Accept `/deploy`, `/rollback`, `/cancel` on pull requests.
    pub commands: bool,
    /// Repository permissions allowed to use the commands.
    pub allowed_permissions: Vec<String>,
    /// Accept commands on pull requests from forks.
    pub allow_forks: bool,
    /// A newer request cancels pending ones for the same instance.
    pub supersede: bool,
    pub environment_url: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Server variables the deploy and health commands also get (none by default).
    pub pass_env: Vec<String>,
    /// Release env names the API may set (none by default).
    pub api_env: Vec<String>,
    /// `pass_env` names whose values are secrets: masked as `***` in stored logs.
    pub secret_env: Vec<String>,
    pub provider: ProviderConfig,
    pub health: Option<HealthConfig>,
    pub canary: CanaryConfig,
    /// Commit status contexts GitHub must see green before deploying.
    pub required_contexts: Vec<String>,
    pub production_environment: Option<bool>,
    pub transient_environment: bool,
}

/// How a deployment is driven.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    #[default]
    Rolling,
    Recreate,
    BlueGreen,
    Canary,
}

/// What changes the running system.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Runs `run` as an argv, with the deployment in `DEPLOY_*` variables.
    Command,
    /// Does nothing and succeeds.
    #[default]
    Noop,
}

/// `[instances.provider]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// argv; no shell unless the command is one. Non-empty for `command`.
    pub run: Vec<String>,
    /// The longest one provider call may take (default 15m).
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL when a call is cancelled or times out (default 10s).
    pub kill_grace: Duration,
}

/// `[instances.health]`: exactly one of `url` and `command` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// An `http://` or `https://` URL that answers 2xx when healthy.
    pub url: Option<String>,
    /// An argv that exits 0 when healthy.
    pub command: Option<Vec<String>>,
    /// One probe (default 5s).
    pub timeout: Duration,
    /// Between probes (default 2s).
    pub interval: Duration,
    /// Until the target must be healthy (default 60s).
    pub deadline: Duration,
}

/// `[instances.canary]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryConfig {
    /// Traffic percentages, strictly increasing, each 1..=100, ending with 100.
    pub steps: Vec<u8>,
    /// Wait between steps.
    pub pause: Duration,
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

// ---------------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------------

impl StrategyKind {
    pub const ALL: [StrategyKind; 4] = [
        StrategyKind::Rolling,
        StrategyKind::Recreate,
        StrategyKind::BlueGreen,
        StrategyKind::Canary,
    ];
    const NAMES: &'static [&'static str] = &["rolling", "recreate", "blue-green", "canary"];

    /// The name used in files, the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Rolling => "rolling",
            StrategyKind::Recreate => "recreate",
            StrategyKind::BlueGreen => "blue-green",
            StrategyKind::Canary => "canary",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = ParseKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseKindError {
                what: "strategy",
                value: s.to_string(),
                valid: StrategyKind::NAMES,
            })
    }
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 2] = [ProviderKind::Command, ProviderKind::Noop];
    const NAMES: &'static [&'static str] = &["command", "noop"];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Command => "command",
            ProviderKind::Noop => "noop",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = ParseKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseKindError {
                what: "provider kind",
                value: s.to_string(),
                valid: ProviderKind::NAMES,
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------------

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            kind: ProviderKind::Noop,
            run: Vec::new(),
            timeout: Duration::from_secs(15 * 60),
            kill_grace: Duration::from_secs(10),
        }
    }
}

impl HealthConfig {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            steps: vec![10, 50, 100],
            pause: Duration::from_secs(30),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 4,
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(30),
            log_lines: 20_000,
            log_bytes: 1024 * 1024,
        }
    }
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_url: DEFAULT_GITHUB_API_URL.to_string(),
            token: None,
            app_id: None,
            app_private_key: None,
            app_private_key_path: None,
            redeliver_interval: DEFAULT_REDELIVER_INTERVAL,
            redeliver_lookback: DEFAULT_REDELIVER_LOOKBACK,
        }
    }
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
            source: None,
        }
    }
}

fn default_permissions() -> Vec<String> {
    ["write", "maintain", "admin"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Debug without secrets
// ---------------------------------------------------------------------------------------------

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

struct RedactedList(usize);

impl fmt::Debug for RedactedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("[]"),
            n => write!(f, "[<{n} redacted>]"),
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
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubConfig")
            .field("api_url", &self.api_url)
            .field("token", &self.token.as_ref().map(|_| Redacted))
            .field("app_id", &self.app_id)
            .field(
                "app_private_key",
                &self.app_private_key.as_ref().map(|_| Redacted),
            )
            .field("app_private_key_path", &self.app_private_key_path)
            .field("redeliver_interval", &self.redeliver_interval)
            .field("redeliver_lookback", &self.redeliver_lookback)
            .finish()
    }
}

/// The password of a database URL (user info or `?password=`), as written and
/// percent-decoded.
fn database_passwords(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let mut found = Vec::new();
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        found.push(password.to_string());
    }
    if let Some((_, query)) = rest.split_once('?') {
        let query = query.split('#').next().unwrap_or("");
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k.eq_ignore_ascii_case("password")
            {
                found.push(v.to_string());
            }
        }
    }
    let decoded: Vec<String> = found.iter().filter_map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    found
}

/// `%XX` decoded; `None` when nothing was encoded or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Replaces the password of a `scheme://user:password@host/…` URL (and a `password=` query
/// parameter) with `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = url[..rest_start].to_string();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            let query = &tail[q + 1..];
            let (query, fragment) = match query.find('#') {
                Some(h) => (&query[..h], &query[h..]),
                None => (query, ""),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
            out.push_str(fragment);
        }
        None => out.push_str(tail),
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

impl Config {
    /// Reads the file (explicit path, else $DEPLOYBOT_CONFIG, else config/deploybot.toml when
    /// present, else defaults), then applies env overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env = |key: &str| std::env::var(key).ok();
        let named = match path {
            Some(p) => Some((p.to_path_buf(), "--config")),
            None => {
                non_empty(env("DEPLOYBOT_CONFIG")).map(|p| (PathBuf::from(p), "DEPLOYBOT_CONFIG"))
            }
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

    /// Every secret value this configuration holds: the webhook secrets, the GitHub token,
    /// the App private key (read from its file when given by path), the metrics token and
    /// the database password. Stored deployment logs show each of them as `***`; a new
    /// secret in the configuration belongs here too.
    pub fn secret_values(&self) -> Vec<String> {
        let mut values = self.webhook_secrets.clone();
        for tenant in &self.tenants {
            values.extend(tenant.secrets.iter().cloned());
        }
        values.extend(self.github.token.iter().cloned());
        values.extend(self.github.app_private_key.iter().cloned());
        if let Some(path) = &self.github.app_private_key_path
            && let Ok(pem) = std::fs::read_to_string(path)
        {
            values.push(pem);
        }
        values.extend(self.metrics_token.iter().cloned());
        values.extend(
            self.session_key
                .iter()
                .flat_map(|key| session_key_texts(key)),
        );
        values.extend(database_passwords(&self.database_url));
        values
    }

    /// Human-readable table of instances for `deploybot config check` (name, tenant, repo,
    /// environment, strategy, provider, triggers).
    pub fn describe(&self) -> String {
        if self.instances.is_empty() {
            return "no instances configured (add an [[instances]] table to the config file)\n"
                .to_string();
        }
        let header = [
            "NAME",
            "TENANT",
            "REPO",
            "ENVIRONMENT",
            "STRATEGY",
            "PROVIDER",
            "TRIGGERS",
        ];
        let mut rows: Vec<[String; 7]> = vec![header.map(str::to_string)];
        for i in &self.instances {
            let provider = match (i.provider.kind, i.provider.run.first()) {
                (ProviderKind::Command, Some(program)) => format!("command {program}"),
                (kind, _) => kind.as_str().to_string(),
            };
            let mut triggers = Vec::new();
            if !i.on_push.is_empty() {
                triggers.push(format!("push {}", i.on_push.join(",")));
            }
            if !i.on_tag.is_empty() {
                triggers.push(format!("tag {}", i.on_tag.join(",")));
            }
            if i.commands {
                triggers.push("/deploy".to_string());
            }
            if triggers.is_empty() {
                triggers.push("API only".to_string());
            }
            rows.push([
                i.name.clone(),
                i.tenant(),
                i.repo.clone(),
                i.environment.clone(),
                i.strategy.as_str().to_string(),
                provider,
                triggers.join("; "),
            ]);
        }
        let mut widths = [0usize; 7];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (col, cell) in row.iter().enumerate() {
                if col + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[col] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// The secrets a webhook delivery naming `tenant` must be signed with.
    ///
    /// A tenant with a `[[tenants]]` entry: its own secrets, and the global
    /// (`DEPLOYBOT_WEBHOOK_SECRET`) ones only when GitHub App credentials are configured,
    /// since an App signs every delivery with its one secret. A tenant without an entry:
    /// the global secrets. A delivery that names no account (`None`) can start nothing,
    /// so any configured secret verifies it.
    pub fn webhook_secrets_for(&self, tenant: Option<&str>) -> Vec<&str> {
        let global = self.webhook_secrets.iter().map(String::as_str);
        let Some(tenant) = tenant else {
            let tenants = self.tenants.iter().flat_map(|t| &t.secrets);
            return global.chain(tenants.map(String::as_str)).collect();
        };
        match self.tenants.iter().find(|t| t.name == tenant) {
            Some(entry) if self.github.app_id.is_some() => entry
                .secrets
                .iter()
                .map(String::as_str)
                .chain(global)
                .collect(),
            Some(entry) => entry.secrets.iter().map(String::as_str).collect(),
            None => global.collect(),
        }
    }

    /// What stops webhooks from being verified, each naming the tenant or instance and
    /// what to set: a `[[tenants]]` variable that is unset or empty, an instance whose
    /// tenant has no secret at all, or no secret anywhere. `serve` refuses to start and
    /// `config check` fails while this is not empty.
    pub fn webhook_secret_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for tenant in &self.tenants {
            if tenant.secrets.is_empty() {
                problems.push(format!(
                    "tenant \"{}\": {} is not set or is empty; export it with the secret of {}'s webhooks (comma-separated while rotating)",
                    tenant.name, tenant.secret_env, tenant.name
                ));
            }
        }
        let mut named = std::collections::BTreeSet::new();
        for instance in &self.instances {
            let tenant = instance.tenant();
            let covered = self.tenants.iter().any(|t| t.name == tenant);
            if !covered && self.webhook_secrets.is_empty() && named.insert(tenant.clone()) {
                problems.push(format!(
                    "tenant \"{tenant}\" (instance {} of {}) has no webhook secret: add a [[tenants]] entry with name = \"{tenant}\" and webhook_secret_env, or set {SECRET_ENV}",
                    instance.name, instance.repo
                ));
            }
        }
        if self.webhook_secrets.is_empty() && self.tenants.is_empty() && self.instances.is_empty() {
            problems.push(format!(
                "no webhook secret is configured: set {SECRET_ENV} (the secret of your GitHub App or webhook) or add [[tenants]] entries"
            ));
        }
        problems
    }

    /// The instance called `name` in `tenant` (compared case-insensitively).
    pub fn instance(&self, tenant: &str, name: &str) -> Option<&InstanceConfig> {
        self.instances
            .iter()
            .find(|i| i.name == name && i.tenant().eq_ignore_ascii_case(tenant))
    }
}

impl InstanceConfig {
    /// An instance with every optional key at its default.
    pub fn new(
        name: impl Into<String>,
        repo: impl Into<String>,
        environment: impl Into<String>,
        image: impl Into<String>,
    ) -> Self {
        InstanceConfig {
            name: name.into(),
            repo: repo.into(),
            environment: environment.into(),
            image: image.into(),
            strategy: StrategyKind::default(),
            on_push: Vec::new(),
            on_tag: Vec::new(),
            commands: true,
            allowed_permissions: default_permissions(),
            allow_forks: false,
            supersede: false,
            environment_url: None,
            env: BTreeMap::new(),
            pass_env: Vec::new(),
            api_env: Vec::new(),
            secret_env: Vec::new(),
            provider: ProviderConfig::default(),
            health: None,
            canary: CanaryConfig::default(),
            required_contexts: Vec::new(),
            production_environment: None,
            transient_environment: false,
        }
    }

    /// The repository owner, lower-cased.
    pub fn tenant(&self) -> String {
        self.repo
            .split_once('/')
            .map_or(self.repo.as_str(), |(owner, _)| owner)
            .to_ascii_lowercase()
    }

    /// The repository name without its owner.
    pub fn repo_name(&self) -> &str {
        self.repo
            .split_once('/')
            .map_or(self.repo.as_str(), |(_, name)| name)
    }

    /// Whether a push to `branch` (without `refs/heads/`) deploys this instance.
    pub fn matches_push(&self, branch: &str) -> bool {
        matches_any(&self.on_push, branch)
    }

    /// Whether pushing `tag` (without `refs/tags/`) deploys this instance.
    pub fn matches_tag(&self, tag: &str) -> bool {
        matches_any(&self.on_tag, tag)
    }
}

/// Globs as in GitHub Actions: `*` does not cross `/`, `**` does, `?` and `[…]` as usual.
const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        glob::Pattern::new(p).is_ok_and(|pattern| pattern.matches_with(name, GLOB_OPTIONS))
    })
}

// ---------------------------------------------------------------------------------------------
// Raw file shape
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database_url: Option<String>,
    listen: Option<String>,
    public_url: Option<String>,
    /// `toml::Value` so that a wrongly typed secret is never echoed by serde's error.
    webhook_secrets: Option<toml::Value>,
    webhook_max_bytes: Option<usize>,
    webhook_body_timeout: Option<String>,
    webhook_max_pending: Option<usize>,
    webhook_pending_bytes: Option<usize>,
    webhook_store_timeout: Option<String>,
    #[serde(default)]
    tenants: Vec<RawTenant>,
    #[serde(default)]
    github: RawGithub,
    #[serde(default)]
    worker: RawWorker,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    pages: RawPages,
    #[serde(default)]
    instances: Vec<RawInstance>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Option<String>,
    webhook_secret_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    api_url: Option<String>,
    token: Option<toml::Value>,
    app_id: Option<u64>,
    app_private_key: Option<toml::Value>,
    app_private_key_path: Option<String>,
    redeliver_interval: Option<String>,
    redeliver_lookback: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    concurrency: Option<usize>,
    lease: Option<String>,
    grace: Option<String>,
    log_lines: Option<usize>,
    log_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Option<String>,
    tenant: Option<String>,
    sha256: Option<String>,
    role: Option<String>,
    instances: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPages {
    public: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    name: Option<String>,
    repo: Option<String>,
    environment: Option<String>,
    image: Option<String>,
    strategy: Option<String>,
    on_push: Option<Vec<String>>,
    on_tag: Option<Vec<String>>,
    commands: Option<bool>,
    allowed_permissions: Option<Vec<String>>,
    allow_forks: Option<bool>,
    supersede: Option<bool>,
    environment_url: Option<String>,
    env: Option<BTreeMap<String, String>>,
    pass_env: Option<Vec<String>>,
    api_env: Option<Vec<String>>,
    secret_env: Option<Vec<String>>,
    provider: Option<RawProvider>,
    health: Option<RawHealth>,
    canary: Option<RawCanary>,
    required_contexts: Option<Vec<String>>,
    production_environment: Option<bool>,
    transient_environment: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: Option<String>,
    run: Option<Vec<String>>,
    timeout: Option<String>,
    kill_grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    url: Option<String>,
    command: Option<Vec<String>>,
    timeout: Option<String>,
    interval: Option<String>,
    deadline: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    steps: Option<Vec<i64>>,
    pause: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Parsing and TOML error messages
// ---------------------------------------------------------------------------------------------

fn parse(
    text: &str,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::Parse(toml_error_message(text, file, &e)))?;
    let mut check = Checker {
        file: file.map(|f| f.display().to_string()),
        errors: Vec::new(),
    };
    let mut config = build(raw, env, &mut check);
    if check.errors.is_empty() {
        config.source = file.map(Path::to_path_buf);
        Ok(config)
    } else {
        Err(ConfigError::Invalid(check.errors))
    }
}

/// `FILE:LINE:COLUMN: KEY PATH: message`, without echoing the source line (it may hold a secret).
fn toml_error_message(text: &str, file: Option<&Path>, error: &toml::de::Error) -> String {
    let mut out = match file {
        Some(f) => f.display().to_string(),
        None => "config".to_string(),
    };
    let mut key_path = None;
    if let Some(span) = error.span() {
        let (line, column) = line_column(text, span.start);
        out.push_str(&format!(":{line}:{column}"));
        if let Ok(doc) = toml::de::DeTable::parse(text) {
            let mut path = Vec::new();
            if find_path(doc.get_ref(), span.start, &mut path) {
                key_path = Some(render_path(doc.get_ref(), &path));
            }
        }
    }
    out.push_str(": ");
    if let Some(key_path) = key_path {
        out.push_str(&key_path);
        out.push_str(": ");
    }
    let message = error.message().trim_end();
    out.push_str(message);
    if message.starts_with("unknown field") {
        out.push_str(" (remove the key or fix its spelling)");
    } else if message.starts_with("invalid type") && message.contains("expected a string") {
        out.push_str(" (write the value in quotes, e.g. \"30s\")");
    }
    out
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count()
        + 1;
    (line, column)
}

enum Segment {
    Key(String),
    Index(usize),
}

type Spanned<T> = toml::Spanned<T>;

/// Finds the key path whose key or scalar value covers `offset`.
fn find_path(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<Segment>) -> bool {
    for (key, value) in table.iter() {
        path.push(Segment::Key(key.get_ref().to_string()));
        if key.span().contains(&offset) || find_in_value(value, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(
    value: &Spanned<toml::de::DeValue<'_>>,
    offset: usize,
    path: &mut Vec<Segment>,
) -> bool {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => {
            find_path(table, offset, path) || value.span().contains(&offset)
        }
        toml::de::DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                path.push(Segment::Index(index));
                if find_in_value(item, offset, path) {
                    return true;
                }
                path.pop();
            }
            value.span().contains(&offset)
        }
        _ => value.span().contains(&offset),
    }
}

/// `instances[1] (web-production).provider.timeout`.
fn render_path(root: &toml::de::DeTable<'_>, path: &[Segment]) -> String {
    let mut out = String::new();
    for (n, segment) in path.iter().enumerate() {
        match segment {
            Segment::Key(key) => {
                if n > 0 {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => {
                out.push_str(&format!("[{index}]"));
                let is_instance = n == 1 && matches!(&path[0], Segment::Key(k) if k == "instances");
                if is_instance && let Some(name) = raw_instance_name(root, *index) {
                    out.push_str(&format!(" ({name})"));
                }
            }
        }
    }
    out
}

fn raw_instance_name(root: &toml::de::DeTable<'_>, index: usize) -> Option<String> {
    let (_, instances) = root.iter().find(|(k, _)| k.get_ref() == "instances")?;
    let item = instances.get_ref().as_array()?.get(index)?;
    let (_, name) = item
        .get_ref()
        .as_table()?
        .iter()
        .find(|(k, _)| k.get_ref() == "name")?;
    name.get_ref().as_str().map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

struct Checker {
    file: Option<String>,
    errors: Vec<String>,
}

impl Checker {
    /// A problem with a key of the file.
    fn err(&mut self, key: &str, message: impl fmt::Display) {
        match &self.file {
            Some(file) => self.errors.push(format!("{file}: {key}: {message}")),
            None => self.errors.push(format!("{key}: {message}")),
        }
    }

    /// A problem with a value that came from an environment variable (or a file key).
    fn err_at(&mut self, origin: Origin<'_>, message: impl fmt::Display) {
        match origin {
            Origin::File(key) => self.err(key, message),
            Origin::Env(var) => self
                .errors
                .push(format!("environment variable {var}: {message}")),
        }
    }

    fn duration(&mut self, key: &str, raw: Option<&str>, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.err(
                    key,
                    format!(
                        "invalid duration \"{raw}\": {e}; write it like \"30s\", \"15m\" or \"1h 30m\""
                    ),
                );
                default
            }
        }
    }

    fn positive_duration(&mut self, key: &str, raw: Option<&str>, default: Duration) -> Duration {
        let d = self.duration(key, raw, default);
        if raw.is_some() && d.is_zero() {
            self.err(key, "must be longer than zero");
        }
        d
    }
}

#[derive(Clone, Copy)]
enum Origin<'a> {
    File(&'a str),
    Env(&'a str),
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The env override when set, else the file value.
fn pick<'a>(
    env: &dyn Fn(&str) -> Option<String>,
    var: &'a str,
    file_key: &'a str,
    file_value: Option<String>,
) -> Option<(String, Origin<'a>)> {
    match non_empty(env(var)) {
        Some(v) => Some((v, Origin::Env(var))),
        None => file_value.map(|v| (v, Origin::File(file_key))),
    }
}

/// A secret string from the file: only its type is ever reported, never its value.
fn file_secret(check: &mut Checker, key: &str, value: Option<toml::Value>) -> Option<String> {
    match value? {
        toml::Value::String(s) => non_empty(Some(s)),
        other => {
            check.err(
                key,
                format!("must be a string in quotes, not a {}", other.type_str()),
            );
            None
        }
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

fn build(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>, check: &mut Checker) -> Config {
    let defaults = Config::default();

    // database_url
    let database_url = match pick(env, "DATABASE_URL", "database_url", raw.database_url) {
        Some((url, origin)) => {
            let path = url
                .strip_prefix("sqlite://")
                .map(|p| p.split('?').next().unwrap_or(""));
            if path == Some("") {
                check.err_at(
                    origin,
                    "sqlite:// needs a file path, e.g. \"sqlite://deploybot.db\"",
                );
            } else if path.is_none()
                && !url.starts_with("postgres://")
                && !url.starts_with("postgresql://")
            {
                check.err_at(
                    origin,
                    format!(
                        "\"{}\" is not a supported database URL; use \"sqlite://PATH\" or \"postgres://USER:PASSWORD@HOST/DB\"",
                        redact_url(&url)
                    ),
                );
            }
            url
        }
        None => defaults.database_url,
    };

    // listen and public_url
    let listen = match pick(env, "DEPLOYBOT_LISTEN", "listen", raw.listen) {
        Some((listen, origin)) => {
            if listen.parse::<SocketAddr>().is_err() {
                check.err_at(
                    origin,
                    format!(
                        "\"{listen}\" is not a socket address; write an IP address and a port, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\""
                    ),
                );
            }
            listen
        }
        None => defaults.listen,
    };
    let public_url = match pick(env, "DEPLOYBOT_PUBLIC_URL", "public_url", raw.public_url) {
        Some((url, origin)) => {
            if !is_http_url(&url) {
                check.err_at(
                    origin,
                    format!(
                        "\"{url}\" is not an http:// or https:// URL; write the address people reach deploybot at, e.g. \"https://deploybot.example.com\""
                    ),
                );
            }
            url.trim_end_matches('/').to_string()
        }
        None => format!("http://{listen}"),
    };

    // webhook secrets
    let env_secrets: Vec<String> = env(SECRET_ENV)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let webhook_secrets = if !env_secrets.is_empty() {
        env_secrets
    } else {
        file_webhook_secrets(check, raw.webhook_secrets)
    };

    let github = build_github(raw.github, env, check);
    let worker = build_worker(raw.worker, check);
    let api = build_api(raw.api, check);
    let pages = PagesConfig {
        public: raw.pages.public.unwrap_or(false),
    };

    let instances: Vec<InstanceConfig> = raw
        .instances
        .into_iter()
        .enumerate()
        .map(|(index, raw)| build_instance(index, raw, check))
        .collect();
    check_unique_instances(&instances, check);

    let webhook_max_bytes = raw.webhook_max_bytes.unwrap_or(DEFAULT_WEBHOOK_MAX_BYTES);
    if webhook_max_bytes < 1024 {
        check.err(
            "webhook_max_bytes",
            "must be at least 1024 (GitHub sends up to 25 MiB)",
        );
    }
    let webhook_body_timeout = check.duration(
        "webhook_body_timeout",
        raw.webhook_body_timeout.as_deref(),
        DEFAULT_WEBHOOK_BODY_TIMEOUT,
    );
    if webhook_body_timeout < Duration::from_secs(1) {
        check.err(
            "webhook_body_timeout",
            "must be at least 1s (GitHub sends a 25 MiB body in well under a minute)",
        );
    }
    let webhook_max_pending = raw
        .webhook_max_pending
        .unwrap_or(DEFAULT_WEBHOOK_MAX_PENDING);
    if webhook_max_pending == 0 {
        check.err(
            "webhook_max_pending",
            "must be at least 1 (unverified webhook bodies read at once)",
        );
    }
    let webhook_pending_bytes = raw
        .webhook_pending_bytes
        .unwrap_or(DEFAULT_WEBHOOK_PENDING_BYTES);
    if webhook_pending_bytes < webhook_max_bytes.min(DEFAULT_WEBHOOK_MAX_BYTES) {
        check.err(
            "webhook_pending_bytes",
            format!(
                "must be at least webhook_max_bytes ({webhook_max_bytes}), or no delivery of the largest size could ever be read"
            ),
        );
    }
    let webhook_store_timeout = check.duration(
        "webhook_store_timeout",
        raw.webhook_store_timeout.as_deref(),
        DEFAULT_WEBHOOK_STORE_TIMEOUT,
    );
    if webhook_store_timeout < Duration::from_millis(100)
        || webhook_store_timeout > Duration::from_secs(8)
    {
        check.err(
            "webhook_store_timeout",
            "must be between 100ms and 8s: GitHub gives up on a webhook after 10 s, and the 503 must reach it before that",
        );
    }
    let tenants = build_tenants(raw.tenants, env, check);
    let config = Config {
        database_url,
        listen,
        public_url,
        webhook_secrets,
        webhook_max_bytes,
        webhook_body_timeout,
        webhook_max_pending,
        webhook_pending_bytes,
        webhook_store_timeout,
        tenants,
        metrics_token: non_empty(env(METRICS_TOKEN_ENV)),
        session_key: session_key(check, non_empty(env(SESSION_KEY_ENV))),
        github,
        worker,
        api,
        pages,
        instances,
        source: None,
    };
    check_passed_values(&config, env, check);
    config
}

/// `[[tenants]]`: names are lower-case and unique; each names the variable holding its
/// secrets (comma-separated while rotating). An unset or empty variable is not an error
/// here (`Config::webhook_secret_problems` reports it), so commands that never verify a
/// webhook work without it.
fn build_tenants(
    raw: Vec<RawTenant>,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> Vec<TenantConfig> {
    let mut tenants: Vec<TenantConfig> = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let name = raw.name.unwrap_or_default();
        let prefix = format!("tenants[{index}]");
        if name.trim().is_empty() {
            check.err(
                &format!("{prefix}.name"),
                "missing: write the GitHub account that owns the repositories, e.g. name = \"acme\"",
            );
            continue;
        }
        if name != name.trim().to_ascii_lowercase() || name.contains('/') {
            check.err(
                &format!("{prefix}.name"),
                format!(
                    "\"{name}\" must be a lower-case GitHub account without spaces or slashes; write \"{}\"",
                    name.trim().to_ascii_lowercase()
                ),
            );
        }
        if tenants.iter().any(|t| t.name == name) {
            check.err(
                &format!("{prefix}.name"),
                format!(
                    "tenant \"{name}\" is listed twice; keep one [[tenants]] entry per account"
                ),
            );
        }
        let secret_env = raw.webhook_secret_env.unwrap_or_default();
        let valid_env = !secret_env.is_empty()
            && secret_env
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid_env {
            check.err(
                &format!("{prefix} ({name}).webhook_secret_env"),
                "must name an environment variable (A-Z, 0-9, _) that holds the tenant's webhook secret, e.g. webhook_secret_env = \"ACME_WEBHOOK_SECRET\"",
            );
        }
        let secrets = env(&secret_env)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        tenants.push(TenantConfig {
            name,
            secret_env,
            secrets,
        });
    }
    tenants
}

fn file_webhook_secrets(check: &mut Checker, value: Option<toml::Value>) -> Vec<String> {
    const HINT: &str = "must be an array of strings, e.g. webhook_secrets = [\"…\"] (better: leave it out and export DEPLOYBOT_WEBHOOK_SECRET)";
    let items = match value {
        None => return Vec::new(),
        Some(toml::Value::String(s)) => vec![toml::Value::String(s)],
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            check.err("webhook_secrets", HINT);
            return Vec::new();
        }
    };
    let mut secrets = Vec::new();
    for (n, item) in items.into_iter().enumerate() {
        let key = format!("webhook_secrets[{n}]");
        match item {
            toml::Value::String(s) if !s.trim().is_empty() => secrets.push(s.trim().to_string()),
            toml::Value::String(_) => check.err(&key, "empty secret; remove it"),
            _ => check.err(&key, HINT),
        }
    }
    secrets
}

fn build_github(
    raw: RawGithub,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> GithubConfig {
    let api_url = match pick(
        env,
        "DEPLOYBOT_GITHUB_API_URL",
        "github.api_url",
        raw.api_url,
    ) {
        Some((url, origin)) => {
            if !is_http_url(&url) {
                check.err_at(
                    origin,
                    format!(
                        "\"{url}\" is not an http:// or https:// URL; use \"https://api.github.com\" or, for GitHub Enterprise, \"https://HOST/api/v3\""
                    ),
                );
            }
            url.trim_end_matches('/').to_string()
        }
        None => DEFAULT_GITHUB_API_URL.to_string(),
    };

    let file_token = file_secret(check, "github.token", raw.token);
    let token = non_empty(env("GITHUB_TOKEN")).or(file_token);

    let app_id = match non_empty(env("GITHUB_APP_ID")) {
        Some(v) => match v.parse::<u64>() {
            Ok(id) => Some((id, Origin::Env("GITHUB_APP_ID"))),
            Err(_) => {
                check.err_at(
                    Origin::Env("GITHUB_APP_ID"),
                    format!("\"{v}\" is not a number; set it to the numeric App ID shown on the GitHub App's settings page"),
                );
                None
            }
        },
        None => raw.app_id.map(|id| (id, Origin::File("github.app_id"))),
    };

    let file_key = file_secret(check, "github.app_private_key", raw.app_private_key);
    let key = match non_empty(env("GITHUB_APP_PRIVATE_KEY")) {
        Some(k) => Some((k, Origin::Env("GITHUB_APP_PRIVATE_KEY"))),
        None => file_key.map(|k| (k, Origin::File("github.app_private_key"))),
    };
    let key_path = pick(
        env,
        "GITHUB_APP_PRIVATE_KEY_PATH",
        "github.app_private_key_path",
        non_empty(raw.app_private_key_path),
    );

    match (&app_id, &key, &key_path) {
        (Some((_, origin)), None, None) => check.err_at(
            *origin,
            "a GitHub App ID needs a private key; set github.app_private_key_path (or GITHUB_APP_PRIVATE_KEY_PATH, or GITHUB_APP_PRIVATE_KEY)",
        ),
        (_, Some((_, key_origin)), Some((_, path_origin))) => check.err_at(
            *key_origin,
            format!(
                "both a private key and a private key path ({}) are set; keep only one",
                origin_name(*path_origin)
            ),
        ),
        (None, Some((_, origin)), None) | (None, None, Some((_, origin))) => check.err_at(
            *origin,
            "a GitHub App private key needs the App ID; set github.app_id (or GITHUB_APP_ID)",
        ),
        _ => {}
    }

    GithubConfig {
        api_url,
        token,
        app_id: app_id.map(|(id, _)| id),
        app_private_key: key.map(|(k, _)| k),
        app_private_key_path: key_path.map(|(p, _)| PathBuf::from(p)),
        redeliver_interval: check.positive_duration(
            "github.redeliver_interval",
            raw.redeliver_interval.as_deref(),
            DEFAULT_REDELIVER_INTERVAL,
        ),
        redeliver_lookback: {
            let lookback = check.positive_duration(
                "github.redeliver_lookback",
                raw.redeliver_lookback.as_deref(),
                DEFAULT_REDELIVER_LOOKBACK,
            );
            if lookback > DEFAULT_REDELIVER_LOOKBACK {
                check.err(
                    "github.redeliver_lookback",
                    "GitHub keeps webhook deliveries for three days; use \"72h\" or less",
                );
            }
            lookback
        },
    }
}

fn origin_name(origin: Origin<'_>) -> &str {
    match origin {
        Origin::File(key) => key,
        Origin::Env(var) => var,
    }
}

fn build_worker(raw: RawWorker, check: &mut Checker) -> WorkerConfig {
    let defaults = WorkerConfig::default();
    let concurrency = raw.concurrency.unwrap_or(defaults.concurrency);
    if concurrency < 1 {
        check.err(
            "worker.concurrency",
            "must be at least 1 (it is the number of deployments running at once)",
        );
    }
    let lease = check.duration("worker.lease", raw.lease.as_deref(), defaults.lease);
    if lease < Duration::from_secs(1) {
        check.err(
            "worker.lease",
            "must be at least 1s (a running deployment whose worker stops renewing for this long is recovered); e.g. \"30s\"",
        );
    }
    let grace = check.duration("worker.grace", raw.grace.as_deref(), defaults.grace);
    let log_lines = raw.log_lines.unwrap_or(defaults.log_lines);
    if log_lines < 10 {
        check.err(
            "worker.log_lines",
            "must be at least 10 (a deployment's log keeps its first and last lines within it); e.g. 20000",
        );
    }
    let log_bytes = raw.log_bytes.unwrap_or(defaults.log_bytes);
    if log_bytes < 4096 {
        check.err(
            "worker.log_bytes",
            "must be at least 4096 (a deployment's log keeps its first and last lines within it); e.g. 1048576",
        );
    }
    WorkerConfig {
        concurrency,
        lease,
        grace,
        log_lines,
        log_bytes,
    }
}

fn build_api(raw: RawApi, check: &mut Checker) -> ApiConfig {
    let mut tokens = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, raw) in raw.tokens.into_iter().enumerate() {
        let name = raw.name.unwrap_or_default().trim().to_string();
        let prefix = if name.is_empty() {
            format!("api.tokens[{index}]")
        } else {
            format!("api.tokens[{index}] ({name})")
        };
        if name.is_empty() {
            check.err(
                &format!("{prefix}.name"),
                "missing; give the token a name such as \"ci\" (it is recorded as the initiator)",
            );
        } else if let Some(first) = seen.get(&name) {
            check.err(
                &format!("{prefix}.name"),
                format!(
                    "duplicate token name \"{name}\" (also api.tokens[{first}]); token names must be unique"
                ),
            );
        } else {
            seen.insert(name.clone(), index);
        }

        let tenant = raw.tenant.unwrap_or_default();
        if tenant.trim().is_empty() {
            check.err(
                &format!("{prefix}.tenant"),
                "missing; set it to the lower-case GitHub account the token acts for, e.g. \"acme\"",
            );
        } else if tenant != tenant.to_ascii_lowercase() || tenant.trim() != tenant {
            check.err(
                &format!("{prefix}.tenant"),
                format!(
                    "\"{tenant}\" must be lower-case without spaces; write \"{}\"",
                    tenant.trim().to_ascii_lowercase()
                ),
            );
        }

        let sha256 = raw.sha256.unwrap_or_default();
        let sha_ok = sha256.len() == 64 && sha256.chars().all(|c| c.is_ascii_hexdigit());
        if !sha_ok {
            // The value is never echoed: people sometimes paste the token itself here.
            check.err(
                &format!("{prefix}.sha256"),
                format!(
                    "must be the hex SHA-256 of the token, 64 characters of 0-9a-f (got {} characters); compute it with `printf %s \"$TOKEN\" | sha256sum`",
                    sha256.chars().count()
                ),
            );
        }
        let role = match raw.role.as_deref().map(str::parse::<Role>) {
            None => Role::default(),
            Some(Ok(role)) => role,
            Some(Err(e)) => {
                check.err(&format!("{prefix}.role"), e);
                Role::default()
            }
        };
        let instances = raw.instances.unwrap_or_default();
        check_globs(
            check,
            &format!("{prefix}.instances"),
            "instance",
            &instances,
        );
        tokens.push(ApiToken {
            name,
            tenant,
            sha256: sha256.to_ascii_lowercase(),
            role,
            instances,
        });
    }
    ApiConfig { tokens }
}

/// Every way `DEPLOYBOT_SESSION_KEY` can be written for `key` (hex in either case, base64
/// standard or URL-safe without padding, a prefix of the padded text): what logs mask.
fn session_key_texts(key: &[u8]) -> [String; 4] {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    [
        hex::encode(key),
        hex::encode_upper(key),
        STANDARD_NO_PAD.encode(key),
        URL_SAFE_NO_PAD.encode(key),
    ]
}

/// `DEPLOYBOT_SESSION_KEY`: at least 32 bytes, written as hex or base64 (standard or
/// URL-safe, padded or not). The value is never echoed.
fn session_key(check: &mut Checker, value: Option<String>) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let value = value?;
    let is_hex = value.len() % 2 == 0 && value.bytes().all(|b| b.is_ascii_hexdigit());
    let decoded = if is_hex {
        hex::decode(&value).ok()
    } else {
        let padded = value.trim_end_matches('=');
        let padding = "=".repeat((4 - padded.len() % 4) % 4);
        let padded = format!("{padded}{padding}");
        STANDARD
            .decode(&padded)
            .or_else(|_| URL_SAFE.decode(&padded))
            .ok()
    };
    match decoded {
        Some(key) if key.len() >= SESSION_KEY_MIN_BYTES => Some(key),
        Some(key) => {
            check.err_at(
                Origin::Env(SESSION_KEY_ENV),
                format!(
                    "decodes to {} bytes; it needs at least {SESSION_KEY_MIN_BYTES} random bytes, e.g. `openssl rand -hex 32`",
                    key.len()
                ),
            );
            None
        }
        None => {
            check.err_at(
                Origin::Env(SESSION_KEY_ENV),
                "is neither hex nor base64; generate one with `openssl rand -hex 32`",
            );
            None
        }
    }
}

fn valid_instance_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Why `repo` is not a GitHub `owner/name`, if it is not.
fn repo_problem(repo: &str) -> Option<String> {
    let Some((owner, name)) = repo.split_once('/') else {
        return Some(format!(
            "\"{repo}\" is not \"owner/name\"; write the GitHub repository like \"acme/web\""
        ));
    };
    if owner.is_empty()
        || owner.len() > 39
        || owner.starts_with('-')
        || owner.ends_with('-')
        || owner.contains("--")
        || !owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Some(format!(
            "owner \"{owner}\" in \"{repo}\" is not a valid GitHub account name (1-39 letters, digits and single hyphens, not at the start or end)"
        ));
    }
    if name.is_empty()
        || name == "."
        || name == ".."
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some(format!(
            "repository name \"{name}\" in \"{repo}\" is not valid (letters, digits, '.', '_' and '-'; not \".\" or \"..\")"
        ));
    }
    None
}

/// Why an image template is not usable, if it is not.
fn image_problems(image: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rest = image;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let placeholder = &after[..close];
                if !IMAGE_PLACEHOLDERS.contains(&placeholder) {
                    problems.push(format!(
                        "unknown placeholder {{{placeholder}}} in \"{image}\"; use {}",
                        IMAGE_PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
                rest = &after[close + 1..];
            }
            None => {
                problems.push(format!(
                    "unclosed '{{' in \"{image}\"; write placeholders like {{sha}}"
                ));
                break;
            }
        }
    }
    problems
}

fn check_globs(check: &mut Checker, key: &str, what: &str, patterns: &[String]) {
    for (n, pattern) in patterns.iter().enumerate() {
        if pattern.is_empty() {
            check.err(
                &format!("{key}[{n}]"),
                format!("empty {what} glob; remove it or write a pattern like \"main\""),
            );
        } else if let Err(e) = glob::Pattern::new(pattern) {
            check.err(
                &format!("{key}[{n}]"),
                format!(
                    "invalid {what} glob \"{pattern}\": {e} (use `*` within a path segment, `**` as a whole segment, `?` and `[...]`)"
                ),
            );
        }
    }
}

fn build_instance(index: usize, raw: RawInstance, check: &mut Checker) -> InstanceConfig {
    let name = raw.name.unwrap_or_default();
    let p = if name.is_empty() {
        format!("instances[{index}]")
    } else {
        format!("instances[{index}] ({name})")
    };
    let key = |k: &str| format!("{p}.{k}");

    if name.is_empty() {
        check.err(
            &key("name"),
            "missing; give the instance a name like \"web-production\" (1-63 characters of a-z, 0-9 and -)",
        );
    } else if !valid_instance_name(&name) {
        check.err(
            &key("name"),
            format!(
                "\"{name}\" is not a valid instance name; use 1-63 characters of lower-case letters, digits and '-', not starting with '-'"
            ),
        );
    }

    let repo = raw.repo.unwrap_or_default();
    if repo.is_empty() {
        check.err(
            &key("repo"),
            "missing; set it to the GitHub repository as \"owner/name\", e.g. \"acme/web\"",
        );
    } else if let Some(problem) = repo_problem(&repo) {
        check.err(&key("repo"), problem);
    }

    let environment = raw.environment.unwrap_or_default();
    if environment.trim().is_empty() {
        check.err(
            &key("environment"),
            "missing; set it to the GitHub environment name, e.g. \"production\"",
        );
    } else if environment.chars().count() > 255 {
        check.err(
            &key("environment"),
            format!(
                "is {} characters long; GitHub environment names have at most 255",
                environment.chars().count()
            ),
        );
    }

    let image = raw.image.unwrap_or_default();
    if image.trim().is_empty() {
        check.err(
            &key("image"),
            "missing; set the image to deploy, e.g. \"ghcr.io/acme/web:{sha}\"",
        );
    } else {
        for problem in image_problems(&image) {
            check.err(&key("image"), problem);
        }
    }

    let strategy = match raw.strategy.as_deref() {
        None => StrategyKind::default(),
        Some(s) => s.parse().unwrap_or_else(|e: ParseKindError| {
            check.err(&key("strategy"), e);
            StrategyKind::default()
        }),
    };

    let on_push = raw.on_push.unwrap_or_default();
    check_globs(check, &key("on_push"), "branch", &on_push);
    let on_tag = raw.on_tag.unwrap_or_default();
    check_globs(check, &key("on_tag"), "tag", &on_tag);

    let allowed_permissions = raw.allowed_permissions.unwrap_or_else(default_permissions);
    for (n, permission) in allowed_permissions.iter().enumerate() {
        if !PERMISSIONS.contains(&permission.as_str()) {
            check.err(
                &key(&format!("allowed_permissions[{n}]")),
                format!(
                    "unknown permission \"{permission}\"; use {}",
                    PERMISSIONS.join(", ")
                ),
            );
        }
    }

    if let Some(url) = &raw.environment_url
        && !is_http_url(url)
    {
        check.err(
            &key("environment_url"),
            format!("\"{url}\" is not an http:// or https:// URL"),
        );
    }

    let env = raw.env.unwrap_or_default();
    for (name, value) in &env {
        if let Err(e) = crate::deploy::env::check_release_name(name) {
            check.err(&key("env"), e);
        } else if value.contains('\0') {
            check.err(
                &key(&format!("env.{name}")),
                "contains a NUL character, which no process environment can hold",
            );
        }
    }

    let (pass_env, api_env, secret_env) = build_child_env_names(
        &p,
        raw.pass_env.unwrap_or_default(),
        raw.api_env.unwrap_or_default(),
        raw.secret_env.unwrap_or_default(),
        check,
    );

    let provider = build_provider(&p, raw.provider.unwrap_or_default(), check);
    let health = raw.health.map(|h| build_health(&p, h, check));
    let canary = build_canary(&p, raw.canary.unwrap_or_default(), check);

    let required_contexts = raw.required_contexts.unwrap_or_default();
    for (n, context) in required_contexts.iter().enumerate() {
        if context.trim().is_empty() {
            check.err(
                &key(&format!("required_contexts[{n}]")),
                "empty context; remove it or name a status check, e.g. \"ci/test\"",
            );
        }
    }

    InstanceConfig {
        name,
        repo,
        environment,
        image,
        strategy,
        on_push,
        on_tag,
        commands: raw.commands.unwrap_or(true),
        allowed_permissions,
        allow_forks: raw.allow_forks.unwrap_or(false),
        supersede: raw.supersede.unwrap_or(false),
        environment_url: raw.environment_url,
        env,
        pass_env,
        api_env,
        secret_env,
        provider,
        health,
        canary,
        required_contexts,
        production_environment: raw.production_environment,
        transient_environment: raw.transient_environment.unwrap_or(false),
    }
}

/// `pass_env`, `api_env` and `secret_env` of the instance `p`, each name checked by the
/// domain's rule (`deploy::env`); `secret_env` names must be in `pass_env`.
fn build_child_env_names(
    p: &str,
    pass_env: Vec<String>,
    api_env: Vec<String>,
    secret_env: Vec<String>,
    check: &mut Checker,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    for (n, name) in pass_env.iter().enumerate() {
        if let Err(e) = crate::deploy::env::check_pass_name(name) {
            check.err(&format!("{p}.pass_env[{n}]"), e);
        }
    }
    for (n, name) in api_env.iter().enumerate() {
        if let Err(e) = crate::deploy::env::check_release_name(name) {
            check.err(&format!("{p}.api_env[{n}]"), e);
        }
    }
    for (n, name) in secret_env.iter().enumerate() {
        if !pass_env.contains(name) {
            check.err(
                &format!("{p}.secret_env[{n}]"),
                format!(
                    "{name:?} is not in pass_env; secret_env marks which pass_env variables hold secrets, so add {name:?} to pass_env too or remove it here"
                ),
            );
        }
    }
    (pass_env, api_env, secret_env)
}

/// A `pass_env` variable whose value is one of deploybot's own secrets (whatever its
/// name, e.g. the variable a tenant's webhook secret is read from) is refused.
fn check_passed_values(config: &Config, env: &dyn Fn(&str) -> Option<String>, check: &mut Checker) {
    let secrets: Vec<String> = config
        .secret_values()
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| s.len() >= 4)
        .collect();
    for (index, instance) in config.instances.iter().enumerate() {
        for (n, name) in instance.pass_env.iter().enumerate() {
            let names_a_tenant_secret = config.tenants.iter().any(|t| &t.secret_env == name);
            let holds_a_secret =
                env(name).is_some_and(|value| secrets.iter().any(|s| value.contains(s.as_str())));
            if names_a_tenant_secret || holds_a_secret {
                check.err(
                    &format!("instances[{index}] ({}).pass_env[{n}]", instance.name),
                    format!(
                        "{name} holds one of deploybot's own secrets, which never reach a deploy command; remove it from pass_env"
                    ),
                );
            }
        }
    }
}

fn build_provider(p: &str, raw: RawProvider, check: &mut Checker) -> ProviderConfig {
    let defaults = ProviderConfig::default();
    let kind = match raw.kind.as_deref() {
        None => defaults.kind,
        Some(s) => s.parse().unwrap_or_else(|e: ParseKindError| {
            check.err(&format!("{p}.provider.kind"), e);
            defaults.kind
        }),
    };
    let run = raw.run.unwrap_or_default();
    if kind == ProviderKind::Command && run.first().is_none_or(|program| program.trim().is_empty())
    {
        check.err(
            &format!("{p}.provider.run"),
            "kind = \"command\" needs the program to run as an argv array, e.g. run = [\"./deploy/ship.sh\"]",
        );
    }
    let timeout = check.positive_duration(
        &format!("{p}.provider.timeout"),
        raw.timeout.as_deref(),
        defaults.timeout,
    );
    let kill_grace = check.duration(
        &format!("{p}.provider.kill_grace"),
        raw.kill_grace.as_deref(),
        defaults.kill_grace,
    );
    ProviderConfig {
        kind,
        run,
        timeout,
        kill_grace,
    }
}

fn build_health(p: &str, raw: RawHealth, check: &mut Checker) -> HealthConfig {
    let key = |k: &str| format!("{p}.health.{k}");
    match (&raw.url, &raw.command) {
        (Some(_), Some(_)) => check.err(
            &format!("{p}.health"),
            "set either url or command, not both",
        ),
        (None, None) => check.err(
            &format!("{p}.health"),
            "needs url = \"https://…/healthz\" or command = [\"…\"]; or remove the [instances.health] table",
        ),
        (Some(url), None) if !is_http_url(url) => check.err(
            &key("url"),
            format!("\"{url}\" is not an http:// or https:// URL"),
        ),
        (None, Some(command)) if command.first().is_none_or(|c| c.trim().is_empty()) => check.err(
            &key("command"),
            "must be a non-empty argv array, e.g. command = [\"./deploy/check.sh\"]",
        ),
        _ => {}
    }
    let timeout = check.positive_duration(
        &key("timeout"),
        raw.timeout.as_deref(),
        HealthConfig::DEFAULT_TIMEOUT,
    );
    let interval = check.positive_duration(
        &key("interval"),
        raw.interval.as_deref(),
        HealthConfig::DEFAULT_INTERVAL,
    );
    let deadline = check.positive_duration(
        &key("deadline"),
        raw.deadline.as_deref(),
        HealthConfig::DEFAULT_DEADLINE,
    );
    HealthConfig {
        url: raw.url,
        command: raw.command,
        timeout,
        interval,
        deadline,
    }
}

fn build_canary(p: &str, raw: RawCanary, check: &mut Checker) -> CanaryConfig {
    let defaults = CanaryConfig::default();
    let key = |k: &str| format!("{p}.canary.{k}");
    let pause = check.duration(&key("pause"), raw.pause.as_deref(), defaults.pause);
    let Some(raw_steps) = raw.steps else {
        return CanaryConfig {
            steps: defaults.steps,
            pause,
        };
    };
    let mut steps = Vec::new();
    let mut ok = true;
    for (n, &step) in raw_steps.iter().enumerate() {
        match u8::try_from(step) {
            Ok(s) if (1..=100).contains(&s) => {
                if let Some(&last) = steps.last()
                    && s <= last
                {
                    ok = false;
                    check.err(
                        &key(&format!("steps[{n}]")),
                        format!(
                            "{s} after {last}: steps must be strictly increasing traffic percentages, e.g. [10, 50, 100]"
                        ),
                    );
                }
                steps.push(s);
            }
            _ => {
                ok = false;
                check.err(
                    &key(&format!("steps[{n}]")),
                    format!("{step} is not a traffic percentage from 1 to 100"),
                );
            }
        }
    }
    match raw_steps.last() {
        None => {
            ok = false;
            check.err(
                &key("steps"),
                "is empty; list traffic percentages ending with 100, e.g. [10, 50, 100]",
            );
        }
        Some(&last) if last != 100 => {
            ok = false;
            check.err(
                &key("steps"),
                format!(
                    "the last step is {last}; it must be 100 so the release ends with all traffic"
                ),
            );
        }
        _ => {}
    }
    CanaryConfig {
        steps: if ok { steps } else { defaults.steps },
        pause,
    }
}

fn check_unique_instances(instances: &[InstanceConfig], check: &mut Checker) {
    let mut names: HashMap<(String, String), usize> = HashMap::new();
    let mut targets: HashMap<(String, String, String), usize> = HashMap::new();
    for (index, instance) in instances.iter().enumerate() {
        if instance.repo.is_empty() || repo_problem(&instance.repo).is_some() {
            continue;
        }
        let tenant = instance.tenant();
        let p = format!("instances[{index}] ({})", instance.name);
        if !instance.name.is_empty() {
            let name_key = (tenant.clone(), instance.name.clone());
            if let Some(first) = names.get(&name_key) {
                check.err(
                    &format!("{p}.name"),
                    format!(
                        "duplicate instance name \"{}\" in tenant \"{tenant}\" (also instances[{first}]); names must be unique per repository owner",
                        instance.name
                    ),
                );
            } else {
                names.insert(name_key, index);
            }
        }
        if !instance.environment.trim().is_empty() {
            let target_key = (
                tenant,
                instance.repo.to_ascii_lowercase(),
                instance.environment.to_lowercase(),
            );
            if let Some(first) = targets.get(&target_key) {
                check.err(
                    &format!("{p}.environment"),
                    format!(
                        "repo \"{}\" with environment \"{}\" is already configured by instances[{first}] ({}); each repository + environment pair is one instance",
                        instance.repo, instance.environment, instances[*first].name
                    ),
                );
            } else {
                targets.insert(target_key, index);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../config/deploybot.toml");

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_ok(text: &str) -> Config {
        match Config::from_toml_str(text, &no_env) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    /// The Display of the error, which must exist.
    fn parse_err(text: &str) -> String {
        match Config::from_toml_str(text, &no_env) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_toml_str(text, &move |k| vars.get(k).cloned())
    }

    fn instance(extra: &str) -> String {
        format!(
            "[[instances]]\nname = \"web-production\"\nrepo = \"acme/web\"\nenvironment = \"production\"\nimage = \"ghcr.io/acme/web:{{sha}}\"\n{extra}\n"
        )
    }

    #[test]
    fn each_tenant_is_verified_with_its_own_secrets() {
        let text = format!(
            "[[tenants]]\nname = \"acme\"\nwebhook_secret_env = \"ACME_SECRET\"\n{}",
            instance("")
        );
        let config = with_env(
            &text,
            &[
                ("ACME_SECRET", "new, old"),
                ("DEPLOYBOT_WEBHOOK_SECRET", "global"),
            ],
        )
        .expect("valid");
        assert_eq!(config.webhook_secrets_for(Some("acme")), vec!["new", "old"]);
        assert_eq!(config.webhook_secrets_for(Some("globex")), vec!["global"]);
        assert_eq!(
            config.webhook_secrets_for(None),
            vec!["global", "new", "old"]
        );
        assert!(config.webhook_secret_problems().is_empty());
        assert!(config.secret_values().contains(&"old".to_string()));
        assert!(!format!("{config:?}").contains("new"));

        // A GitHub App signs every delivery with its one secret.
        let mut app = config.clone();
        app.github.app_id = Some(1);
        assert_eq!(
            app.webhook_secrets_for(Some("acme")),
            vec!["new", "old", "global"]
        );

        // Unset: named, with the variable to set.
        let unset = with_env(&text, &[]).expect("valid");
        let problems = unset.webhook_secret_problems().join("\n");
        assert_mentions(&problems, &["tenant \"acme\"", "ACME_SECRET"]);

        let err = parse_err("[[tenants]]\nname = \"Acme\"\nwebhook_secret_env = \"lower\"\n");
        assert_mentions(&err, &["tenants[0].name", "\"acme\"", "webhook_secret_env"]);
    }

    #[test]
    fn unverified_bounds_and_store_timeout() {
        let config = parse_ok("");
        assert_eq!(config.webhook_max_pending, DEFAULT_WEBHOOK_MAX_PENDING);
        assert_eq!(config.webhook_pending_bytes, DEFAULT_WEBHOOK_PENDING_BYTES);
        assert_eq!(config.webhook_store_timeout, Duration::from_secs(5));
        let err = parse_err(
            "webhook_max_pending = 0\nwebhook_pending_bytes = 10\nwebhook_store_timeout = \"30s\"\n",
        );
        assert_mentions(
            &err,
            &[
                "webhook_max_pending",
                "webhook_pending_bytes",
                "webhook_store_timeout",
            ],
        );
    }

    fn assert_mentions(error: &str, needles: &[&str]) {
        for needle in needles {
            assert!(
                error.contains(needle),
                "error should mention {needle:?}:\n{error}"
            );
        }
    }

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
    fn instance_defaults() {
        let config = parse_ok(&instance(""));
        let i = &config.instances[0];
        assert_eq!(i.strategy, StrategyKind::Rolling);
        assert!(i.on_push.is_empty() && i.on_tag.is_empty());
        assert!(i.commands);
        assert_eq!(i.allowed_permissions, vec!["write", "maintain", "admin"]);
        assert!(!i.allow_forks);
        assert!(!i.supersede);
        assert!(i.env.is_empty());
        assert_eq!(i.environment_url, None);
        assert_eq!(i.provider.kind, ProviderKind::Noop);
        assert_eq!(i.provider.timeout, Duration::from_secs(15 * 60));
        assert_eq!(i.provider.kill_grace, Duration::from_secs(10));
        assert_eq!(i.health, None);
        assert_eq!(i.canary.steps, vec![10, 50, 100]);
        assert_eq!(i.canary.pause, Duration::from_secs(30));
        assert!(i.required_contexts.is_empty());
        assert_eq!(i.production_environment, None);
        assert!(!i.transient_environment);
        assert_eq!(i.tenant(), "acme");
        assert_eq!(i.repo_name(), "web");
        assert!(!i.matches_push("main"));
        assert_eq!(
            *i,
            InstanceConfig::new(
                "web-production",
                "acme/web",
                "production",
                "ghcr.io/acme/web:{sha}"
            )
        );
    }

    #[test]
    fn health_defaults_and_full_instance() {
        let config = parse_ok(&instance(
            "strategy = \"blue-green\"\nenv = { LOG_LEVEL = \"info\" }\nenvironment_url = \"https://web.acme.dev\"\nrequired_contexts = [\"ci/test\"]\nproduction_environment = true\n[instances.health]\nurl = \"https://web.acme.dev/healthz\"\n",
        ));
        let i = &config.instances[0];
        assert_eq!(i.strategy, StrategyKind::BlueGreen);
        assert_eq!(i.env.get("LOG_LEVEL").map(String::as_str), Some("info"));
        assert_eq!(i.production_environment, Some(true));
        let health = i.health.as_ref().expect("health");
        assert_eq!(health.url.as_deref(), Some("https://web.acme.dev/healthz"));
        assert_eq!(health.command, None);
        assert_eq!(health.timeout, Duration::from_secs(5));
        assert_eq!(health.interval, Duration::from_secs(2));
        assert_eq!(health.deadline, Duration::from_secs(60));
    }

    #[test]
    fn tenant_is_lower_cased_owner() {
        let config = parse_ok(
            "[[instances]]\nname = \"web\"\nrepo = \"Acme-Corp/Web.Site\"\nenvironment = \"prod\"\nimage = \"x\"\n",
        );
        let i = &config.instances[0];
        assert_eq!(i.tenant(), "acme-corp");
        assert_eq!(i.repo, "Acme-Corp/Web.Site");
        assert_eq!(i.repo_name(), "Web.Site");
        assert!(config.instance("acme-corp", "web").is_some());
        assert!(config.instance("other", "web").is_none());
    }

    #[test]
    fn globs_match() {
        let mut i = InstanceConfig::new("web", "acme/web", "production", "img");
        i.on_push = vec!["main".into(), "release/*".into()];
        i.on_tag = vec!["v*".into()];
        assert!(i.matches_push("main"));
        assert!(i.matches_push("release/1.2"));
        assert!(!i.matches_push("release/1.2/hotfix"));
        assert!(!i.matches_push("mainline"));
        assert!(i.matches_tag("v1.2.0"));
        assert!(!i.matches_tag("x1"));
        i.on_push = vec!["feature/**".into()];
        assert!(i.matches_push("feature/a/b"));
    }

    #[test]
    fn strategy_and_provider_names() {
        for kind in StrategyKind::ALL {
            assert_eq!(kind.as_str().parse::<StrategyKind>(), Ok(kind));
        }
        assert_eq!(StrategyKind::BlueGreen.as_str(), "blue-green");
        assert_eq!(StrategyKind::default(), StrategyKind::Rolling);
        let err = "bluegreen".parse::<StrategyKind>().unwrap_err().to_string();
        assert_mentions(
            &err,
            &["bluegreen", "rolling, recreate, blue-green, canary"],
        );
        assert_eq!(
            serde_json::to_string(&StrategyKind::BlueGreen).unwrap(),
            "\"blue-green\""
        );
        assert_eq!(
            serde_json::from_str::<StrategyKind>("\"canary\"").unwrap(),
            StrategyKind::Canary
        );
        assert_eq!("command".parse::<ProviderKind>(), Ok(ProviderKind::Command));
        assert_eq!(ProviderKind::default(), ProviderKind::Noop);
        assert_eq!(
            serde_json::to_string(&ProviderKind::Noop).unwrap(),
            "\"noop\""
        );
    }

    #[test]
    fn unknown_top_level_key_is_named_with_line_and_column() {
        let err = parse_err("listen = \"127.0.0.1:8080\"\nlisten_addr = \"x\"\n");
        assert_mentions(&err, &["listen_addr", "config:2:1", "unknown field"]);
    }

    #[test]
    fn unknown_instance_key_names_instance_and_key() {
        let err = parse_err(&format!(
            "{}{}",
            instance("strategy = \"canary\""),
            "[instances.provider]\nkind = \"noop\"\ntiemout = \"5m\"\n"
        ));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).provider.tiemout",
                "unknown field `tiemout`",
                "timeout",
                ":9:1",
            ],
        );
    }

    #[test]
    fn unknown_key_in_file_is_prefixed_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[pages]\npublik = true\n").expect("write");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert_mentions(
            &err,
            &[&format!("{}:2:1", path.display()), "pages.publik", "publik"],
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

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse_err("[worker]\nconcurrency = \"four\"\n");
        assert_mentions(&err, &["worker.concurrency", "invalid type"]);
    }

    #[test]
    fn duplicate_names_within_a_tenant_are_errors() {
        let text = format!(
            "{}{}",
            instance(""),
            "[[instances]]\nname = \"web-production\"\nrepo = \"ACME/api\"\nenvironment = \"production\"\nimage = \"x\"\n"
        );
        let err = parse_err(&text);
        assert_mentions(
            &err,
            &[
                "instances[1] (web-production).name",
                "duplicate instance name",
                "acme",
                "instances[0]",
            ],
        );
        // The same name in another tenant is fine.
        parse_ok(&format!(
            "{}{}",
            instance(""),
            "[[instances]]\nname = \"web-production\"\nrepo = \"other/web\"\nenvironment = \"production\"\nimage = \"x\"\n"
        ));
    }

    #[test]
    fn duplicate_repo_environment_is_an_error() {
        let text = format!(
            "{}{}",
            instance(""),
            "[[instances]]\nname = \"web-prod-2\"\nrepo = \"acme/web\"\nenvironment = \"production\"\nimage = \"x\"\n"
        );
        let err = parse_err(&text);
        assert_mentions(
            &err,
            &[
                "instances[1] (web-prod-2).environment",
                "instances[0]",
                "acme/web",
            ],
        );
    }

    #[test]
    fn bad_repo_is_an_error() {
        for repo in [
            "acme",
            "-acme/web",
            "acme-/web",
            "ac--me/web",
            "acme/..",
            "acme/we b",
            "a_b/web",
            "acme/web/x",
            &format!("{}/web", "a".repeat(40)),
        ] {
            let err = parse_err(&format!(
                "[[instances]]\nname = \"web\"\nrepo = \"{repo}\"\nenvironment = \"prod\"\nimage = \"x\"\n"
            ));
            assert_mentions(&err, &["instances[0] (web).repo"]);
        }
        parse_ok(&format!(
            "[[instances]]\nname = \"web\"\nrepo = \"{}/my_repo.rs-2\"\nenvironment = \"prod\"\nimage = \"x\"\n",
            "a".repeat(39)
        ));
    }

    #[test]
    fn bad_name_and_environment_are_errors() {
        for name in ["Web", "-web", "web_prod", &"a".repeat(64)] {
            let err = parse_err(&format!(
                "[[instances]]\nname = \"{name}\"\nrepo = \"acme/web\"\nenvironment = \"prod\"\nimage = \"x\"\n"
            ));
            assert_mentions(
                &err,
                &[&format!("instances[0] ({name}).name"), "lower-case"],
            );
        }
        let err =
            parse_err("[[instances]]\nrepo = \"acme/web\"\nenvironment = \"\"\nimage = \"x\"\n");
        assert_mentions(
            &err,
            &[
                "instances[0].name: missing",
                "instances[0].environment: missing",
            ],
        );
        let err = parse_err(&format!(
            "[[instances]]\nname = \"web\"\nrepo = \"acme/web\"\nenvironment = \"{}\"\nimage = \"x\"\n",
            "e".repeat(256)
        ));
        assert_mentions(&err, &["instances[0] (web).environment", "255"]);
    }

    #[test]
    fn unknown_strategy_lists_valid_ones() {
        let err = parse_err(&instance("strategy = \"yolo\""));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).strategy",
                "yolo",
                "rolling, recreate, blue-green, canary",
            ],
        );
    }

    #[test]
    fn bad_glob_is_an_error() {
        let err = parse_err(&instance(
            "on_push = [\"main\", \"release/[\"]\non_tag = [\"v**\"]",
        ));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).on_push[1]",
                "release/[",
                "instances[0] (web-production).on_tag[0]",
                "Pattern syntax error",
            ],
        );
    }

    #[test]
    fn bad_durations_name_the_key() {
        let err = parse_err(&format!(
            "[worker]\nlease = \"soon\"\n{}{}",
            instance(""),
            "[instances.provider]\ntimeout = \"15 parsecs\"\n[instances.canary]\npause = \"x\"\n"
        ));
        assert_mentions(
            &err,
            &[
                "worker.lease: invalid duration \"soon\"",
                "instances[0] (web-production).provider.timeout: invalid duration \"15 parsecs\"",
                "instances[0] (web-production).canary.pause",
                "\"30s\"",
            ],
        );
        // All problems are reported together, one per line.
        assert!(err.lines().count() >= 4, "{err}");
    }

    #[test]
    fn command_provider_needs_run() {
        let err = parse_err(&instance("[instances.provider]\nkind = \"command\""));
        assert_mentions(
            &err,
            &["instances[0] (web-production).provider.run", "argv"],
        );
        let err = parse_err(&instance("[instances.provider]\nkind = \"shell\""));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).provider.kind",
                "command, noop",
            ],
        );
    }

    #[test]
    fn image_must_be_set_and_placeholders_known() {
        let err = parse_err(
            "[[instances]]\nname = \"web\"\nrepo = \"acme/web\"\nenvironment = \"prod\"\nimage = \"\"\n",
        );
        assert_mentions(&err, &["instances[0] (web).image: missing"]);
        let err = parse_err(
            "[[instances]]\nname = \"web\"\nrepo = \"acme/web\"\nenvironment = \"prod\"\nimage = \"ghcr.io/acme/web:{version}-{sha\"\n",
        );
        assert_mentions(
            &err,
            &[
                "instances[0] (web).image",
                "{version}",
                "{short_sha}",
                "unclosed",
            ],
        );
        parse_ok(
            "[[instances]]\nname = \"web\"\nrepo = \"acme/web\"\nenvironment = \"prod\"\nimage = \"r/{sha}{short_sha}{ref}{branch}{tag}{pr}\"\n",
        );
    }

    #[test]
    fn canary_steps_are_checked() {
        for (steps, needle) in [
            ("[10, 10, 100]", "steps[1]"),
            ("[50, 10, 100]", "strictly increasing"),
            ("[0, 100]", "steps[0]"),
            ("[10, 150]", "steps[1]"),
            ("[10, 50]", "must be 100"),
            ("[]", "empty"),
        ] {
            let err = parse_err(&instance(&format!("[instances.canary]\nsteps = {steps}")));
            assert_mentions(
                &err,
                &["instances[0] (web-production).canary.steps", needle],
            );
        }
        let config = parse_ok(&instance("[instances.canary]\nsteps = [1, 100]"));
        assert_eq!(config.instances[0].canary.steps, vec![1, 100]);
    }

    #[test]
    fn health_needs_exactly_one_check() {
        let err = parse_err(&instance(
            "[instances.health]\nurl = \"https://x/healthz\"\ncommand = [\"true\"]",
        ));
        assert_mentions(&err, &["instances[0] (web-production).health", "not both"]);
        let err = parse_err(&instance("[instances.health]\ntimeout = \"1s\""));
        assert_mentions(&err, &["instances[0] (web-production).health", "url"]);
        let err = parse_err(&instance("[instances.health]\nurl = \"ftp://x\""));
        assert_mentions(&err, &["instances[0] (web-production).health.url", "http"]);
        let config = parse_ok(&instance("[instances.health]\ncommand = [\"./check.sh\"]"));
        assert_eq!(
            config.instances[0]
                .health
                .as_ref()
                .and_then(|h| h.command.clone()),
            Some(vec!["./check.sh".to_string()])
        );
    }

    #[test]
    fn webhook_body_timeout() {
        assert_eq!(parse_ok("").webhook_body_timeout, Duration::from_secs(10));
        let config = parse_ok("webhook_body_timeout = \"2m\"\n");
        assert_eq!(config.webhook_body_timeout, Duration::from_secs(120));
        let err = parse_err("webhook_body_timeout = \"100ms\"\n");
        assert_mentions(&err, &["webhook_body_timeout", "at least 1s"]);
        let err = parse_err("webhook_body_timeout = \"soon\"\n");
        assert_mentions(&err, &["webhook_body_timeout", "invalid duration"]);
    }

    #[test]
    fn worker_limits() {
        let err = parse_err("[worker]\nconcurrency = 0\nlease = \"500ms\"\n");
        assert_mentions(
            &err,
            &[
                "worker.concurrency",
                "at least 1",
                "worker.lease",
                "at least 1s",
            ],
        );
        let config = parse_ok("[worker]\nconcurrency = 8\nlease = \"1m\"\ngrace = \"5s\"\n");
        assert_eq!(config.worker.concurrency, 8);
        assert_eq!(config.worker.lease, Duration::from_secs(60));
        assert_eq!(config.worker.grace, Duration::from_secs(5));
    }

    #[test]
    fn log_caps_are_checked() {
        let err = parse_err("[worker]\nlog_lines = 3\nlog_bytes = 100\n");
        assert_mentions(
            &err,
            &[
                "worker.log_lines",
                "at least 10",
                "worker.log_bytes",
                "at least 4096",
            ],
        );
        let config = parse_ok("[worker]\nlog_lines = 500\nlog_bytes = 65536\n");
        assert_eq!(config.worker.log_lines, 500);
        assert_eq!(config.worker.log_bytes, 65536);
        let config = parse_ok("");
        assert_eq!(config.worker.log_lines, 20_000);
        assert_eq!(config.worker.log_bytes, 1024 * 1024);
    }

    #[test]
    fn api_tokens_are_checked() {
        let good = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let config = parse_ok(&format!(
            "[[api.tokens]]\nname = \"ci\"\ntenant = \"acme\"\nsha256 = \"{}\"\n",
            good.to_uppercase()
        ));
        assert_eq!(config.api.tokens[0].sha256, good);
        assert_eq!(config.api.tokens[0].tenant, "acme");

        let err = parse_err(&format!(
            "[[api.tokens]]\nname = \"ci\"\ntenant = \"Acme\"\nsha256 = \"my-raw-token\"\n\
             [[api.tokens]]\nname = \"ci\"\ntenant = \"\"\nsha256 = \"{good}\"\n"
        ));
        assert_mentions(
            &err,
            &[
                "api.tokens[0] (ci).tenant",
                "lower-case",
                "api.tokens[0] (ci).sha256",
                "64",
                "api.tokens[1] (ci).name",
                "duplicate",
                "api.tokens[1] (ci).tenant: missing",
            ],
        );
        assert!(!err.contains("my-raw-token"), "{err}");
    }

    #[test]
    fn token_roles_and_instance_globs_are_read_and_checked() {
        let good = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let config = parse_ok(&format!(
            "[[api.tokens]]\nname = \"ci\"\ntenant = \"acme\"\nsha256 = \"{good}\"\n\
             [[api.tokens]]\nname = \"dash\"\ntenant = \"acme\"\nsha256 = \"{good}\"\nrole = \"read\"\ninstances = [\"web-*\"]\n"
        ));
        let [ci, dash] = &config.api.tokens[..] else {
            panic!("two tokens")
        };
        assert_eq!((ci.role, dash.role), (Role::Deploy, Role::Read));
        assert!(ci.covers("api-production"));
        assert!(dash.covers("web-production") && !dash.covers("api-production"));

        let err = parse_err(&format!(
            "[[api.tokens]]\nname = \"ci\"\ntenant = \"acme\"\nsha256 = \"{good}\"\nrole = \"owner\"\ninstances = [\"[web\"]\n"
        ));
        assert_mentions(
            &err,
            &[
                "api.tokens[0] (ci).role",
                "\"owner\" is not a role",
                "api.tokens[0] (ci).instances[0]",
            ],
        );
    }

    #[test]
    fn the_session_key_is_hex_or_base64_of_at_least_32_bytes() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let config = with_env("", &[("DEPLOYBOT_SESSION_KEY", hex_key)]).expect("valid");
        assert_eq!(config.session_key, Some(hex::decode(hex_key).unwrap()));
        assert!(!format!("{config:?}").contains(hex_key));
        let b64 = "ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8";
        let config = with_env("", &[("DEPLOYBOT_SESSION_KEY", b64)]).expect("valid");
        assert_eq!(config.session_key, Some(hex::decode(hex_key).unwrap()));
        assert_eq!(with_env("", &[]).expect("valid").session_key, None);
        for bad in ["0011", "not a key!"] {
            let err = with_env("", &[("DEPLOYBOT_SESSION_KEY", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("DEPLOYBOT_SESSION_KEY"), "{err}");
            assert!(!err.contains(bad), "{err}");
        }
    }

    #[test]
    fn allowed_permissions_are_checked() {
        let err = parse_err(&instance("allowed_permissions = [\"write\", \"push\"]"));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).allowed_permissions[1]",
                "push",
                "admin, maintain, write, triage, read",
            ],
        );
    }

    #[test]
    fn listen_and_database_url_are_checked() {
        let err = parse_err("listen = \"localhost\"\ndatabase_url = \"mysql://x\"\n");
        assert_mentions(
            &err,
            &[
                "listen",
                "socket address",
                "database_url",
                "sqlite://",
                "postgres://",
            ],
        );
        parse_ok("database_url = \"postgresql://u@h/db\"\nlisten = \"[::1]:9000\"\n");
        let err = with_env("", &[("DEPLOYBOT_LISTEN", "nope")])
            .unwrap_err()
            .to_string();
        assert_mentions(&err, &["DEPLOYBOT_LISTEN", "nope"]);
    }

    #[test]
    fn env_overrides_win_over_the_file() {
        let file = "database_url = \"sqlite://file.db\"\nlisten = \"127.0.0.1:1\"\nwebhook_secrets = [\"from-file\"]\n[github]\ntoken = \"file-token\"\napi_url = \"https://ghe.example/api/v3/\"\n";
        let config = with_env(
            file,
            &[
                ("DATABASE_URL", "postgres://u:pw@db/deploybot"),
                ("DEPLOYBOT_LISTEN", "0.0.0.0:9090"),
                ("DEPLOYBOT_WEBHOOK_SECRET", " new , old ,, "),
                ("GITHUB_TOKEN", "env-token"),
                ("GITHUB_APP_ID", "12345"),
                ("GITHUB_APP_PRIVATE_KEY_PATH", "/keys/app.pem"),
                ("DEPLOYBOT_GITHUB_API_URL", ""),
            ],
        )
        .expect("valid");
        assert_eq!(config.database_url, "postgres://u:pw@db/deploybot");
        assert_eq!(config.listen, "0.0.0.0:9090");
        assert_eq!(config.public_url, "http://0.0.0.0:9090");
        assert_eq!(config.webhook_secrets, vec!["new", "old"]);
        assert_eq!(config.github.token.as_deref(), Some("env-token"));
        assert_eq!(config.github.app_id, Some(12345));
        assert_eq!(
            config.github.app_private_key_path.as_deref(),
            Some(Path::new("/keys/app.pem"))
        );
        // An empty variable counts as unset; the trailing slash is dropped.
        assert_eq!(config.github.api_url, "https://ghe.example/api/v3");

        let config = with_env(
            "public_url = \"https://file.example\"",
            &[("DEPLOYBOT_PUBLIC_URL", "https://deploy.acme.dev/")],
        )
        .expect("valid");
        assert_eq!(config.public_url, "https://deploy.acme.dev");

        let config = with_env("webhook_secrets = [\"a\", \"b\"]", &[]).expect("valid");
        assert_eq!(config.webhook_secrets, vec!["a", "b"]);
    }

    #[test]
    fn github_app_settings_are_checked() {
        let err = with_env("", &[("GITHUB_APP_ID", "abc")])
            .unwrap_err()
            .to_string();
        assert_mentions(&err, &["GITHUB_APP_ID", "not a number"]);
        let err = parse_err("[github]\napp_id = 7\n");
        assert_mentions(&err, &["github.app_id", "private key"]);
        let err = with_env("", &[("GITHUB_APP_PRIVATE_KEY", "-----BEGIN SECRET-----")])
            .unwrap_err()
            .to_string();
        assert_mentions(&err, &["GITHUB_APP_PRIVATE_KEY", "App ID"]);
        assert!(!err.contains("BEGIN SECRET"), "{err}");
    }

    #[test]
    fn missed_deliveries_are_looked_for_every_few_minutes_within_three_days() {
        let defaults = parse_ok("");
        assert_eq!(defaults.github.redeliver_interval, Duration::from_secs(300));
        assert_eq!(
            defaults.github.redeliver_lookback,
            Duration::from_secs(72 * 3600)
        );
        let set = parse_ok("[github]\nredeliver_interval = \"30s\"\nredeliver_lookback = \"6h\"\n");
        assert_eq!(set.github.redeliver_interval, Duration::from_secs(30));
        assert_eq!(set.github.redeliver_lookback, Duration::from_secs(6 * 3600));
        let err = parse_err("[github]\nredeliver_interval = \"0s\"\n");
        assert_mentions(&err, &["github.redeliver_interval", "longer than zero"]);
        let err = parse_err("[github]\nredeliver_lookback = \"4 days\"\n");
        assert_mentions(&err, &["github.redeliver_lookback", "three days"]);
    }

    #[test]
    fn secrets_never_appear_in_debug_or_errors() {
        let config = with_env(
            "[github]\napp_id = 1\napp_private_key = \"-----BEGIN PRIVATE KEY----- pk-secret\"\n",
            &[
                ("DEPLOYBOT_WEBHOOK_SECRET", "hook-secret-1,hook-secret-2"),
                ("GITHUB_TOKEN", "ghp_token_secret"),
                (
                    "DATABASE_URL",
                    "postgres://deploy:db-password@db:5432/deploybot",
                ),
            ],
        )
        .expect("valid");
        assert_eq!(config.webhook_secrets.len(), 2);
        let debug = format!("{config:?}");
        for secret in [
            "hook-secret",
            "ghp_token_secret",
            "pk-secret",
            "db-password",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
        assert_mentions(
            &debug,
            &["redacted", "postgres://deploy:***@db:5432/deploybot"],
        );
        let pretty = format!("{config:#?}");
        assert!(!pretty.contains("hook-secret"));

        // A wrongly typed secret is reported without its value.
        let err = parse_err(
            "webhook_secrets = { value = \"hook-secret-3\" }\n[github]\ntoken = [\"ghp_x_secret\"]\n",
        );
        assert_mentions(&err, &["webhook_secrets", "github.token"]);
        assert!(
            !err.contains("hook-secret-3") && !err.contains("ghp_x_secret"),
            "{err}"
        );
    }

    #[test]
    fn redact_url_hides_passwords() {
        assert_eq!(redact_url("sqlite://deploybot.db"), "sqlite://deploybot.db");
        assert_eq!(
            redact_url("postgres://u:p@h/db?sslmode=require&password=x"),
            "postgres://u:***@h/db?sslmode=require&password=***"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn all_errors_are_reported_together() {
        let err = parse_err(
            "listen = \"x\"\n[[instances]]\nname = \"A\"\nrepo = \"acme\"\nenvironment = \"p\"\nimage = \"i\"\nstrategy = \"fast\"\n",
        );
        assert!(
            err.starts_with("invalid configuration (4 problems):"),
            "{err}"
        );
        assert_mentions(
            &err,
            &[
                "listen",
                "instances[0] (A).name",
                "instances[0] (A).repo",
                "instances[0] (A).strategy",
            ],
        );
    }

    #[test]
    fn child_env_keys_are_read_and_default_to_none() {
        let config = parse_ok(&instance(""));
        let i = &config.instances[0];
        assert!(i.pass_env.is_empty() && i.api_env.is_empty() && i.secret_env.is_empty());
        let config = parse_ok(&instance(
            "pass_env = [\"AWS_PROFILE\", \"AWS_SECRET_ACCESS_KEY\"]\napi_env = [\"LOG_LEVEL\"]\nsecret_env = [\"AWS_SECRET_ACCESS_KEY\"]\n",
        ));
        let i = &config.instances[0];
        assert_eq!(i.pass_env, vec!["AWS_PROFILE", "AWS_SECRET_ACCESS_KEY"]);
        assert_eq!(i.api_env, vec!["LOG_LEVEL"]);
        assert_eq!(i.secret_env, vec!["AWS_SECRET_ACCESS_KEY"]);
    }

    #[test]
    fn env_names_a_shell_or_loader_reads_are_refused_naming_key_and_instance() {
        let err = parse_err(&instance(
            "env = { LD_PRELOAD = \"/tmp/x.so\", log_level = \"x\" }\npass_env = [\"GITHUB_TOKEN\", \"PATH\"]\napi_env = [\"BASH_ENV\"]\nsecret_env = [\"AWS_SECRET_ACCESS_KEY\"]\n",
        ));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).env",
                "LD_PRELOAD",
                "log_level",
                "instances[0] (web-production).pass_env[0]",
                "GITHUB_TOKEN",
                "instances[0] (web-production).pass_env[1]",
                "PATH",
                "instances[0] (web-production).api_env[0]",
                "BASH_ENV",
                "instances[0] (web-production).secret_env[0]",
                "AWS_SECRET_ACCESS_KEY",
            ],
        );
    }

    #[test]
    fn pass_env_holding_a_bot_secret_is_refused_whatever_its_name() {
        let err = with_env(
            &instance("pass_env = [\"SOME_HOOK\"]\n"),
            &[
                ("DEPLOYBOT_WEBHOOK_SECRET", "hook-secret-value"),
                ("SOME_HOOK", "hook-secret-value"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert_mentions(
            &err,
            &["instances[0] (web-production).pass_env[0]", "SOME_HOOK"],
        );
        assert!(!err.contains("hook-secret-value"), "{err}");

        // A tenant's webhook secret variable, by name, and a copy of it while rotating.
        let err = with_env(
            &format!(
                "[[tenants]]\nname = \"acme\"\nwebhook_secret_env = \"ACME_HOOK\"\n{}",
                instance("pass_env = [\"ACME_HOOK\", \"HOOKS_COPY\"]\n")
            ),
            &[
                ("ACME_HOOK", "acme-new-secret,acme-old-secret"),
                ("HOOKS_COPY", "acme-new-secret,acme-old-secret"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).pass_env[0]",
                "ACME_HOOK",
                "instances[0] (web-production).pass_env[1]",
                "HOOKS_COPY",
            ],
        );
        assert!(!err.contains("acme-new-secret"), "{err}");

        // A copy of the session key, in another of its encodings.
        let key = "5a".repeat(32);
        let err = with_env(
            &instance("pass_env = [\"KEY_COPY\"]\n"),
            &[
                ("DEPLOYBOT_SESSION_KEY", &key),
                ("KEY_COPY", &key.to_uppercase()),
            ],
        )
        .unwrap_err()
        .to_string();
        assert_mentions(
            &err,
            &["instances[0] (web-production).pass_env[0]", "KEY_COPY"],
        );
    }

    #[test]
    fn secret_values_list_every_secret_the_config_holds() {
        let config = with_env(
            "[github]\ntoken = \"ghp_file_token\"\n",
            &[
                ("DEPLOYBOT_WEBHOOK_SECRET", "hook-1,hook-2"),
                ("DEPLOYBOT_METRICS_TOKEN", "metrics-token"),
                ("DATABASE_URL", "postgres://bot:p%40ss-word@db/deploybot"),
                ("DEPLOYBOT_SESSION_KEY", &"5a".repeat(32)),
            ],
        )
        .unwrap();
        let values = config.secret_values();
        for secret in [
            "hook-1",
            "hook-2",
            "ghp_file_token",
            "metrics-token",
            "p%40ss-word",
            "p@ss-word",
            &"5a".repeat(32),
            &"5A".repeat(32),
            "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo",
        ] {
            assert!(values.iter().any(|v| v == secret), "{secret}: {values:?}");
        }
    }
}
