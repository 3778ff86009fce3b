//! HTTP plumbing shared by `simulate` and the API commands: one client, URL checks, and
//! errors that say which URL was tried and what to do.

use std::error::Error as _;
use std::time::Duration;

use super::CliError;
use crate::server::error::ErrorBody;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client of the command line.
pub(crate) fn client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .user_agent(concat!("deploybot-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| CliError::Usage(format!("cannot set up the HTTP client: {e}")))
}

/// `url` without trailing slashes, or a usage error naming `what` (`--url`) when it is not
/// an http(s) URL.
pub(crate) fn base_url(what: &str, url: &str) -> Result<String, CliError> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(trimmed.to_string()),
        _ => Err(CliError::Usage(format!(
            "{what} {:?} is not a URL: use http://HOST:PORT or https://HOST",
            shown(url)
        ))),
    }
}

/// `url` as messages show it: the password of its user info (`user:password@`) replaced
/// by `***`, even when it is not a URL at all.
pub(crate) fn shown(url: &str) -> String {
    crate::config::hide_url_passwords(url, url)
}

/// A failed request (no HTTP answer) as an error naming the URL tried, why, and `hint`.
pub(crate) fn unreachable(url: &str, err: &reqwest::Error, hint: &str) -> CliError {
    CliError::Unreachable {
        url: shown(url),
        reason: crate::config::hide_url_passwords(&reason(err), url),
        hint: hint.to_string(),
    }
}

/// The most useful words about a transport error: "connection refused", a timeout, or the
/// innermost cause.
fn reason(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return format!(
            "no answer within {} s",
            if err.is_connect() {
                CONNECT_TIMEOUT.as_secs()
            } else {
                REQUEST_TIMEOUT.as_secs()
            }
        );
    }
    let mut innermost = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
                _ => {}
            }
        }
        innermost = cause.to_string();
        source = cause.source();
    }
    innermost
}

/// A non-2xx answer as an error: the API's `error.message` and `code` when the body has
/// that shape, else the start of the body.
pub(crate) fn api_error(status: reqwest::StatusCode, body: &str) -> CliError {
    if let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) {
        return CliError::Api {
            status: status.as_u16(),
            code: parsed.error.code,
            message: parsed.error.message,
        };
    }
    let text: String = body.trim().chars().take(300).collect();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the server answered with an error")
            .to_string()
    } else {
        text
    };
    CliError::Api {
        status: status.as_u16(),
        code: String::new(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            base_url("--url", "http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("--url", "https://deploy.acme.dev").unwrap(),
            "https://deploy.acme.dev"
        );
        for bad in ["127.0.0.1:8080", "http://", "ftp://x", ""] {
            let err = base_url("--url", bad).unwrap_err().to_string();
            assert!(err.contains("--url") && err.contains("http://"), "{err}");
        }
    }

    #[test]
    fn api_errors_carry_the_servers_message() {
        let err = api_error(
            reqwest::StatusCode::CONFLICT,
            r#"{"error":{"code":"invalid_state","message":"a deployment that is succeeded cannot become cancelled"}}"#,
        );
        assert_eq!(
            err.to_string(),
            "a deployment that is succeeded cannot become cancelled (HTTP 409 invalid_state)"
        );
        let err = api_error(reqwest::StatusCode::BAD_GATEWAY, "");
        assert_eq!(err.to_string(), "Bad Gateway (HTTP 502)");
        let err = api_error(reqwest::StatusCode::NOT_FOUND, "<html>nope</html>");
        assert_eq!(err.to_string(), "<html>nope</html> (HTTP 404)");
    }
}
