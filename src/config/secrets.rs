//! Secrets: what `Debug` shows instead of them, the database password in URLs, the session
//! key, and every secret value the configuration holds (what stored logs mask).

use std::fmt;

use super::Config;
use super::checks::Checker;
use super::env::{Origin, SESSION_KEY_ENV, non_empty};

/// The fewest bytes `DEPLOYBOT_SESSION_KEY` may decode to.
pub const SESSION_KEY_MIN_BYTES: usize = 32;

/// Shown by `Debug` in place of a secret.
pub(super) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Shown by `Debug` in place of a list of secrets: how many there are.
pub(super) struct RedactedList(pub(super) usize);

impl fmt::Debug for RedactedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("[]"),
            n => write!(f, "[<{n} redacted>]"),
        }
    }
}

impl Config {
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
}

/// The password of a database URL (user info or `?password=`), as written and
/// percent-decoded.
fn database_passwords(url: &str) -> Vec<String> {
    url_passwords(url)
}

/// The passwords a URL may carry: the user info's (`user:password@`, found by hand so that
/// a URL that does not parse, or has no scheme, still gives it up) and `password=` query
/// parameters, as written and percent-decoded.
fn url_passwords(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end_of = |stops: &[char]| rest.find(stops).unwrap_or(rest.len());
    // The host follows the last `@` of the authority; a password holding an unencoded `/`
    // pushes that `@` past the first `/`, so the text before the query is tried too.
    let authority = &rest[..end_of(&['/', '?', '#'])];
    let before_query = &rest[..end_of(&['?', '#'])];
    let mut found: Vec<String> = Vec::new();
    for part in [authority, before_query] {
        if let Some((userinfo, _)) = part.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
            && !password.is_empty()
            && !found.iter().any(|f| f == password)
        {
            found.push(password.to_string());
        }
    }
    if let Some((_, query)) = rest.split_once('?') {
        let query = query.split('#').next().unwrap_or("");
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k.eq_ignore_ascii_case("password")
                && !v.is_empty()
            {
                found.push(v.to_string());
            }
        }
    }
    let decoded: Vec<String> = found.iter().filter_map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    found
}

/// `text` with every password `url` carries (see `url_passwords`) replaced by `***`: for
/// messages that may quote the URL, whole or in part (a driver's or an HTTP client's error).
pub fn hide_url_passwords(text: &str, url: &str) -> String {
    let mut passwords = url_passwords(url);
    // The longest first, so that a password holding another is hidden whole.
    passwords.sort_by_key(|p| std::cmp::Reverse(p.len()));
    passwords.iter().fold(text.to_string(), |out, password| {
        out.replace(password.as_str(), "***")
    })
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

/// A secret string from the file: only its type is ever reported, never its value.
pub(super) fn file_secret(
    check: &mut Checker,
    key: &str,
    value: Option<toml::Value>,
) -> Option<String> {
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
pub(super) fn session_key(check: &mut Checker, value: Option<String>) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

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
    fn passwords_are_hidden_even_in_urls_that_do_not_parse() {
        let hide = |url: &str| hide_url_passwords(&format!("error in URI: \"{url}\""), url);
        assert_eq!(
            hide("postgres://u:DBPASS@[bad/db"),
            "error in URI: \"postgres://u:***@[bad/db\""
        );
        assert_eq!(
            hide("postgres://u:pa/ss@h/db"),
            "error in URI: \"postgres://u:***@h/db\""
        );
        assert_eq!(
            hide("u:PASS@127.0.0.1:1"),
            "error in URI: \"u:***@127.0.0.1:1\""
        );
        assert_eq!(
            hide_url_passwords("p@ss and p%40ss", "postgres://u:p%40ss@h/db"),
            "*** and ***"
        );
        assert_eq!(
            hide("postgres://u@h/db"),
            "error in URI: \"postgres://u@h/db\""
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
