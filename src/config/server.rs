//! The server's own settings: the database URL, the listen address, the public URL and the
//! limits on webhook deliveries.

use std::net::SocketAddr;
use std::time::Duration;

use super::checks::{Checker, is_http_url};
use super::env::pick;
use super::secrets::{hide_url_passwords, redact_url};
use super::{
    DEFAULT_DATABASE_URL, DEFAULT_LISTEN, DEFAULT_WEBHOOK_BODY_TIMEOUT, DEFAULT_WEBHOOK_MAX_BYTES,
    DEFAULT_WEBHOOK_MAX_PENDING, DEFAULT_WEBHOOK_PENDING_BYTES, DEFAULT_WEBHOOK_STORE_TIMEOUT,
};

/// `database_url` (or `DATABASE_URL`): `sqlite://PATH` or a PostgreSQL URL.
pub(super) fn database_url(
    raw: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> String {
    match pick(env, "DATABASE_URL", "database_url", raw) {
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
            } else if path.is_none()
                && let Some(problem) = pg_url_problem(&url)
            {
                check.err_at(
                    origin,
                    format!(
                        "\"{}\" is not a URL PostgreSQL can read ({}); write postgres://USER:PASSWORD@HOST:PORT/DB, percent-encoding special characters such as @ / : [ ] in the user and password",
                        redact_url(&url),
                        hide_url_passwords(&problem, &url)
                    ),
                );
            }
            url
        }
        None => DEFAULT_DATABASE_URL.to_string(),
    }
}

/// libpq's complaint about a PostgreSQL connection URL it cannot read, found without
/// connecting.
pub fn pg_url_problem(url: &str) -> Option<String> {
    use std::ffi::{CStr, CString, c_char};
    let Ok(text) = CString::new(url) else {
        return Some("it holds a NUL character".into());
    };
    let mut message: *mut c_char = std::ptr::null_mut();
    // SAFETY: `text` is a NUL-terminated string that outlives the call; libpq allocates the
    // options and the message, and both are freed below with libpq's own functions.
    let options = unsafe { pq_sys::PQconninfoParse(text.as_ptr(), &mut message) };
    if !options.is_null() {
        // SAFETY: `options` came from PQconninfoParse and is freed once.
        unsafe { pq_sys::PQconninfoFree(options) };
    }
    if message.is_null() {
        return None;
    }
    // SAFETY: libpq set `message` to a NUL-terminated string it allocated; it is copied
    // before being freed once.
    let problem = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .trim()
        .to_string();
    // SAFETY: as above.
    unsafe { pq_sys::PQfreemem(message.cast()) };
    Some(problem)
}

/// `listen` (or `DEPLOYBOT_LISTEN`): a socket address.
pub(super) fn listen(
    raw: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> String {
    match pick(env, "DEPLOYBOT_LISTEN", "listen", raw) {
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
        None => DEFAULT_LISTEN.to_string(),
    }
}

/// `public_url` (or `DEPLOYBOT_PUBLIC_URL`) without a trailing slash; `http://` and the
/// listen address when unset.
pub(super) fn public_url(
    raw: Option<String>,
    listen: &str,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> String {
    match pick(env, "DEPLOYBOT_PUBLIC_URL", "public_url", raw) {
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
    }
}

/// The webhook limits as written in the file.
pub(super) struct RawWebhookLimits {
    pub(super) max_bytes: Option<usize>,
    pub(super) body_timeout: Option<String>,
    pub(super) max_pending: Option<usize>,
    pub(super) pending_bytes: Option<usize>,
    pub(super) store_timeout: Option<String>,
}

/// The webhook limits, checked; see the fields of `Config` of the same names.
pub(super) struct WebhookLimits {
    pub(super) max_bytes: usize,
    pub(super) body_timeout: Duration,
    pub(super) max_pending: usize,
    pub(super) pending_bytes: usize,
    pub(super) store_timeout: Duration,
}

/// `webhook_max_bytes`, `webhook_body_timeout`, `webhook_max_pending`,
/// `webhook_pending_bytes` and `webhook_store_timeout`, each within its bounds.
pub(super) fn webhook_limits(raw: RawWebhookLimits, check: &mut Checker) -> WebhookLimits {
    let webhook_max_bytes = raw.max_bytes.unwrap_or(DEFAULT_WEBHOOK_MAX_BYTES);
    if webhook_max_bytes < 1024 {
        check.err(
            "webhook_max_bytes",
            "must be at least 1024 (GitHub sends up to 25 MiB)",
        );
    }
    let webhook_body_timeout = check.duration(
        "webhook_body_timeout",
        raw.body_timeout.as_deref(),
        DEFAULT_WEBHOOK_BODY_TIMEOUT,
    );
    if webhook_body_timeout < Duration::from_secs(1) {
        check.err(
            "webhook_body_timeout",
            "must be at least 1s (GitHub sends a 25 MiB body in well under a minute)",
        );
    }
    let webhook_max_pending = raw.max_pending.unwrap_or(DEFAULT_WEBHOOK_MAX_PENDING);
    if webhook_max_pending == 0 {
        check.err(
            "webhook_max_pending",
            "must be at least 1 (unverified webhook bodies read at once)",
        );
    }
    let webhook_pending_bytes = raw.pending_bytes.unwrap_or(DEFAULT_WEBHOOK_PENDING_BYTES);
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
        raw.store_timeout.as_deref(),
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
    WebhookLimits {
        max_bytes: webhook_max_bytes,
        body_timeout: webhook_body_timeout,
        max_pending: webhook_max_pending,
        pending_bytes: webhook_pending_bytes,
        store_timeout: webhook_store_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

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
}
