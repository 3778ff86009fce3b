//! The `[github]` section: API access with a token or a GitHub App, and how missed webhook
//! deliveries are looked for.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::checks::{Checker, is_http_url};
use super::env::{Origin, non_empty, origin_name, pick};
use super::secrets::{Redacted, file_secret};
use super::shape::RawGithub;

/// Default `github.api_url`: GitHub's API.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
/// GitHub's web address for the default API.
pub const DEFAULT_GITHUB_WEB_URL: &str = "https://github.com";
/// Default `github.redeliver_interval`.
pub const DEFAULT_REDELIVER_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default `github.redeliver_lookback`.
pub const DEFAULT_REDELIVER_LOOKBACK: Duration = Duration::from_secs(3 * 24 * 3600);

/// GitHub API access. `Debug` redacts the token and the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct GithubConfig {
    /// API base without a trailing slash (GitHub Enterprise: `https://HOST/api/v3`).
    pub api_url: String,
    /// GitHub's web address without a trailing slash, for the links on deploybot's pages
    /// (pull requests, commits, deployments). Derived from `api_url` (see [`web_url_for`]);
    /// whoever builds the configuration may replace it (the sandbox points it at its own
    /// pages).
    pub web_url: String,
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

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_url: DEFAULT_GITHUB_API_URL.to_string(),
            web_url: DEFAULT_GITHUB_WEB_URL.to_string(),
            token: None,
            app_id: None,
            app_private_key: None,
            app_private_key_path: None,
            redeliver_interval: DEFAULT_REDELIVER_INTERVAL,
            redeliver_lookback: DEFAULT_REDELIVER_LOOKBACK,
        }
    }
}

impl fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubConfig")
            .field("api_url", &self.api_url)
            .field("web_url", &self.web_url)
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

/// `[github]`, with `GITHUB_TOKEN`, `GITHUB_APP_ID`, `GITHUB_APP_PRIVATE_KEY`,
/// `GITHUB_APP_PRIVATE_KEY_PATH` and `DEPLOYBOT_GITHUB_API_URL` winning over the file.
pub(super) fn build_github(
    raw: RawGithub,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> GithubConfig {
    let api_url = api_url(raw.api_url, env, check);
    let file_token = file_secret(check, "github.token", raw.token);
    let token = non_empty(env("GITHUB_TOKEN")).or(file_token);
    let app_id = app_id(raw.app_id, env, check);
    let key = private_key(raw.app_private_key, env, check);
    let key_path = pick(
        env,
        "GITHUB_APP_PRIVATE_KEY_PATH",
        "github.app_private_key_path",
        non_empty(raw.app_private_key_path),
    );
    check_app_credentials(check, &app_id, &key, &key_path);

    GithubConfig {
        web_url: web_url_for(&api_url),
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
        redeliver_lookback: redeliver_lookback(check, raw.redeliver_lookback.as_deref()),
    }
}

/// `github.api_url` (or `DEPLOYBOT_GITHUB_API_URL`) without a trailing slash.
fn api_url(
    raw: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> String {
    match pick(env, "DEPLOYBOT_GITHUB_API_URL", "github.api_url", raw) {
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
    }
}

/// GitHub's web address for an API base: `https://api.github.com` → `https://github.com`,
/// `https://api.SUBDOMAIN.ghe.com` → `https://SUBDOMAIN.ghe.com`, GitHub Enterprise Server's
/// `https://HOST/api/v3` → `https://HOST`. Any other API base is taken as its own web
/// address (a GitHub stand-in serves both).
fn web_url_for(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if let Some(base) = api.strip_suffix("/api/v3") {
        return base.to_string();
    }
    let Some((scheme, rest)) = api.split_once("://") else {
        return api.to_string();
    };
    match rest.strip_prefix("api.") {
        Some(host) if !host.is_empty() && !host.contains('/') => format!("{scheme}://{host}"),
        _ => api.to_string(),
    }
}

/// The App ID (`GITHUB_APP_ID`, else `github.app_id`) and where it came from.
fn app_id(
    raw: Option<u64>,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> Option<(u64, Origin<'static>)> {
    match non_empty(env("GITHUB_APP_ID")) {
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
        None => raw.map(|id| (id, Origin::File("github.app_id"))),
    }
}

/// The App private key's PEM text (`GITHUB_APP_PRIVATE_KEY`, else
/// `github.app_private_key`) and where it came from.
fn private_key(
    raw: Option<toml::Value>,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> Option<(String, Origin<'static>)> {
    let file_key = file_secret(check, "github.app_private_key", raw);
    match non_empty(env("GITHUB_APP_PRIVATE_KEY")) {
        Some(k) => Some((k, Origin::Env("GITHUB_APP_PRIVATE_KEY"))),
        None => file_key.map(|k| (k, Origin::File("github.app_private_key"))),
    }
}

/// An App ID needs exactly one of a private key and a private key path, and either of
/// those needs the App ID.
fn check_app_credentials(
    check: &mut Checker,
    app_id: &Option<(u64, Origin<'_>)>,
    key: &Option<(String, Origin<'_>)>,
    key_path: &Option<(String, Origin<'_>)>,
) {
    match (app_id, key, key_path) {
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
}

/// `github.redeliver_lookback`: within the three days GitHub keeps deliveries.
fn redeliver_lookback(check: &mut Checker, raw: Option<&str>) -> Duration {
    let lookback =
        check.positive_duration("github.redeliver_lookback", raw, DEFAULT_REDELIVER_LOOKBACK);
    if lookback > DEFAULT_REDELIVER_LOOKBACK {
        check.err(
            "github.redeliver_lookback",
            "GitHub keeps webhook deliveries for three days; use \"72h\" or less",
        );
    }
    lookback
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

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
    fn web_links_follow_the_api_address() {
        let web = |api: &str| web_url_for(api);
        assert_eq!(web("https://api.github.com"), "https://github.com");
        assert_eq!(web("https://api.github.com/"), "https://github.com");
        assert_eq!(web("https://api.acme.ghe.com"), "https://acme.ghe.com");
        assert_eq!(web("https://ghe.example/api/v3"), "https://ghe.example");
        assert_eq!(web("https://ghe.example/api/v3/"), "https://ghe.example");
        assert_eq!(web("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(
            web("https://api.example/github"),
            "https://api.example/github"
        );

        assert_eq!(parse_ok("").github.web_url, "https://github.com");
        let ghe = parse_ok("[github]\napi_url = \"https://ghe.example/api/v3/\"\n");
        assert_eq!(ghe.github.web_url, "https://ghe.example");
        let from_env = with_env(
            "",
            &[("DEPLOYBOT_GITHUB_API_URL", "https://git.corp/api/v3")],
        )
        .unwrap();
        assert_eq!(from_env.github.web_url, "https://git.corp");
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
}
