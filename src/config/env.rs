//! Environment overrides: a variable that is set and not empty wins over the file's key, and
//! each value remembers where it came from, so that a problem names the variable or the key.

/// The global webhook secrets, comma-separated while rotating.
pub(super) const SECRET_ENV: &str = "DEPLOYBOT_WEBHOOK_SECRET";
/// The bearer token `GET /metrics` needs.
pub(super) const METRICS_TOKEN_ENV: &str = "DEPLOYBOT_METRICS_TOKEN";
/// The key that signs page sessions and log links.
pub(super) const SESSION_KEY_ENV: &str = "DEPLOYBOT_SESSION_KEY";

/// Where a value came from: a key of the file or an environment variable.
#[derive(Clone, Copy)]
pub(super) enum Origin<'a> {
    File(&'a str),
    Env(&'a str),
}

/// The key or variable itself.
pub(super) fn origin_name(origin: Origin<'_>) -> &str {
    match origin {
        Origin::File(key) => key,
        Origin::Env(var) => var,
    }
}

/// The value trimmed; `None` when unset or empty.
pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The env override when set, else the file value.
pub(super) fn pick<'a>(
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

/// A comma-separated list (secrets while rotating), trimmed, without empty items.
pub(super) fn comma_list(value: Option<String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;
    use std::path::Path;

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
}
