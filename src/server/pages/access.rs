//! Who may see which page: sign-in with an API token, the signed session cookie, and the
//! signed, expiring log tokens that let someone arriving from a pull request read one
//! deployment without an account.
//!
//! Keys. Sessions and log tokens are HMAC-SHA256 tags under keys derived from the webhook
//! secret: `key = HMAC-SHA256(secret, label)`, with one label per purpose, so a session
//! value can never pass as a log token or the reverse, and the webhook secret itself never
//! signs anything but webhooks. Deriving from a configured secret (rather than a random key
//! per process) is what makes a `log_url` posted on GitHub keep working for its 30 days
//! across restarts and on every replica behind a load balancer. New values are signed with
//! the first secret and checked against all of them, so rotating `DEPLOYBOT_WEBHOOK_SECRET`
//! ("new,old") keeps existing links and sessions valid until the old secret is removed —
//! and removing it revokes them all. Only when no secret is configured at all (a laptop
//! started with `--insecure-no-signature`) is a random key per process used; then links
//! and sessions end with the process.

use std::io::Read;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::Hmac;
use hmac::digest::{Digest, Key, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::deploy::DeploymentId;

type HmacSha256 = Hmac<Sha256>;

/// How long a log token made by [`log_url`] stays valid.
pub const LOG_TOKEN_TTL: TimeDelta = TimeDelta::days(30);
/// How long a sign-in lasts.
pub(super) const SESSION_TTL: TimeDelta = TimeDelta::days(7);
/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "deploybot_session";

const SESSION_LABEL: &[u8] = b"deploybot/pages/session/v1";
const LOG_TOKEN_LABEL: &[u8] = b"deploybot/pages/log-token/v1";

/// Why a log token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogTokenError {
    /// Not of the form `EXPIRES.TAG`.
    #[error("the link's token is malformed")]
    Malformed,
    /// Signed for another deployment, with another key, or changed.
    #[error("the link's token is not valid for this deployment")]
    Invalid,
    /// Genuine, but past its expiry time.
    #[error("the link's token has expired")]
    Expired,
}

/// An HMAC-SHA256 keyed with `key`, prepared as RFC 2104 says (hashed when longer than a
/// block, zero-padded otherwise), which keeps construction infallible.
fn keyed(key: &[u8]) -> HmacSha256 {
    let mut block = Key::<HmacSha256>::default();
    if key.len() > block.len() {
        let digest = Sha256::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <HmacSha256 as KeyInit>::new(&block)
}

/// The purpose-specific key derived from a secret.
fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = keyed(secret);
    mac.update(label);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

fn tag(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(message);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// Constant-time check of `tag` over `message` under any of the keys derived from `secrets`.
fn verify_tag(secrets: &[&[u8]], label: &[u8], message: &[u8], tag: &[u8]) -> bool {
    let mut ok = false;
    for secret in secrets {
        let mut mac = keyed(&derive(secret, label));
        mac.update(message);
        ok |= mac.verify_slice(tag).is_ok();
    }
    ok
}

/// A random key for this process, used only when no webhook secret is configured.
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
        if read.is_err() {
            // UUIDv7s carry OS randomness; four of them are plenty for a per-process key.
            let mut hasher = Sha256::new();
            for _ in 0..4 {
                hasher.update(uuid::Uuid::now_v7().as_bytes());
            }
            key.copy_from_slice(&hasher.finalize());
        }
        key
    })
}

/// The secrets page values are checked against: every configured webhook secret, or the
/// process key when there is none. The first one signs.
pub(super) fn secrets(config: &Config) -> Vec<&[u8]> {
    let configured: Vec<&[u8]> = config
        .webhook_secrets
        .iter()
        .map(|s| s.as_bytes())
        .filter(|s| !s.is_empty())
        .collect();
    if configured.is_empty() {
        vec![process_key().as_slice()]
    } else {
        configured
    }
}

fn log_message(deployment_id: DeploymentId, expires: i64) -> String {
    format!("log:{deployment_id}:{expires}")
}

/// A token that lets its holder read the page of one deployment until `expires`, without
/// signing in. `secret_key` is the first webhook secret (see the module documentation); the
/// token is `EXPIRES.TAG`, safe in a URL query without encoding.
pub fn log_token(secret_key: &[u8], deployment_id: DeploymentId, expires: DateTime<Utc>) -> String {
    let expires = expires.timestamp();
    let key = derive(secret_key, LOG_TOKEN_LABEL);
    let tag = tag(&key, log_message(deployment_id, expires).as_bytes());
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks a token made by [`log_token`] for `deployment_id` under any of `secret_keys`, in
/// constant time; an expired token is reported as such only when its signature is genuine.
pub fn verify_log_token(
    secret_keys: &[impl AsRef<[u8]>],
    deployment_id: DeploymentId,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(), LogTokenError> {
    let (expires, tag) = token.split_once('.').ok_or(LogTokenError::Malformed)?;
    let expires: i64 = expires.parse().map_err(|_| LogTokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| LogTokenError::Malformed)?;
    let secrets: Vec<&[u8]> = secret_keys
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| !s.is_empty())
        .collect();
    let message = log_message(deployment_id, expires);
    if !verify_tag(&secrets, LOG_TOKEN_LABEL, message.as_bytes(), &tag) {
        return Err(LogTokenError::Invalid);
    }
    if now.timestamp() >= expires {
        return Err(LogTokenError::Expired);
    }
    Ok(())
}

/// The link to a deployment's page for GitHub (`log_url`):
/// `{public_url}/deployments/{id}?token=…`, readable without an account for
/// [`LOG_TOKEN_TTL`] even when the pages are private.
pub fn log_url(config: &Config, deployment_id: DeploymentId) -> String {
    let secrets = secrets(config);
    let secret = secrets.first().copied().unwrap_or(process_key().as_slice());
    let token = log_token(secret, deployment_id, Utc::now() + LOG_TOKEN_TTL);
    format!(
        "{}/deployments/{deployment_id}?token={token}",
        config.public_url.trim_end_matches('/')
    )
}

/// A signed-in viewer: the API token's name and tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    pub(super) tenant: String,
    pub(super) name: String,
}

fn session_payload(session: &Session, expires: i64) -> String {
    format!("v1\n{}\n{}\n{expires}", session.tenant, session.name)
}

/// The cookie value for a session: `base64url(payload).base64url(tag)`.
pub(super) fn session_value(config: &Config, session: &Session, now: DateTime<Utc>) -> String {
    let payload = session_payload(session, (now + SESSION_TTL).timestamp());
    let secrets = secrets(config);
    let secret = secrets.first().copied().unwrap_or(process_key().as_slice());
    let tag = tag(&derive(secret, SESSION_LABEL), payload.as_bytes());
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The session a cookie value names, when its tag is genuine, it has not expired and its
/// API token is still configured (removing a token from the config ends its sessions).
pub(super) fn verify_session(config: &Config, value: &str, now: DateTime<Utc>) -> Option<Session> {
    let (payload, tag) = value.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    if !verify_tag(&secrets(config), SESSION_LABEL, &payload, &tag) {
        return None;
    }
    let payload = String::from_utf8(payload).ok()?;
    let mut parts = payload.split('\n');
    let (version, tenant, name, expires) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "v1"
        || parts.next().is_some()
        || now.timestamp() >= expires.parse::<i64>().ok()?
    {
        return None;
    }
    config
        .api
        .tokens
        .iter()
        .any(|t| t.name == name && t.tenant == tenant)
        .then(|| Session {
            tenant: tenant.to_string(),
            name: name.to_string(),
        })
}

/// The configured API token that `token` is, compared by SHA-256 in constant time against
/// every configured hash (no early exit, so timing does not tell which one matched).
pub(super) fn check_api_token(config: &Config, token: &str) -> Option<Session> {
    let digest = Sha256::digest(token.trim().as_bytes());
    let mut found = None;
    for configured in &config.api.tokens {
        let mut expected = [0u8; 32];
        if hex::decode_to_slice(&configured.sha256, &mut expected).is_err() {
            continue;
        }
        if bool::from(digest.as_slice().ct_eq(&expected)) && found.is_none() {
            found = Some(Session {
                tenant: configured.tenant.clone(),
                name: configured.name.clone(),
            });
        }
    }
    found
}

/// The `Set-Cookie` value that stores a session: HttpOnly, SameSite=Lax, and Secure when
/// the server is reached over https.
pub(super) fn session_cookie(config: &Config, value: &str) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        SESSION_TTL.num_seconds(),
        secure_flag(config)
    )
}

/// The `Set-Cookie` value that removes the session.
pub(super) fn clear_session_cookie(config: &Config) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        secure_flag(config)
    )
}

fn secure_flag(config: &Config) -> &'static str {
    if config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// The value of cookie `name` in a `Cookie` request header.
pub(super) fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// `next` when it is a path on this server, otherwise `/`: a sign-in link can never send
/// someone to another site.
pub(super) fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiToken;

    fn config() -> Config {
        Config {
            webhook_secrets: vec!["new-secret".into(), "old-secret".into()],
            api: crate::config::ApiConfig {
                tokens: vec![ApiToken {
                    name: "ci".into(),
                    tenant: "acme".into(),
                    sha256: hex::encode(Sha256::digest(b"s3cret")),
                }],
            },
            ..Config::default()
        }
    }

    #[test]
    fn log_tokens_verify_only_for_their_deployment_and_until_expiry() {
        let (a, b) = (DeploymentId::new(), DeploymentId::new());
        let now = Utc::now();
        let token = log_token(b"old-secret", a, now + TimeDelta::hours(1));
        let secrets = ["new-secret", "old-secret"];
        assert_eq!(verify_log_token(&secrets, a, &token, now), Ok(()));
        assert_eq!(
            verify_log_token(&secrets, b, &token, now),
            Err(LogTokenError::Invalid)
        );
        assert_eq!(
            verify_log_token(&["new-secret"], a, &token, now),
            Err(LogTokenError::Invalid)
        );
        assert_eq!(
            verify_log_token(&secrets, a, &token, now + TimeDelta::hours(2)),
            Err(LogTokenError::Expired)
        );
        // Moving the expiry forward breaks the tag.
        let (_, tag) = token.split_once('.').unwrap_or_default();
        let forged = format!("{}.{tag}", (now + TimeDelta::days(999)).timestamp());
        assert_eq!(
            verify_log_token(&secrets, a, &forged, now),
            Err(LogTokenError::Invalid)
        );
        assert_eq!(
            verify_log_token(&secrets, a, "garbage", now),
            Err(LogTokenError::Malformed)
        );
    }

    #[test]
    fn a_log_token_is_not_a_session_and_sessions_need_their_token_configured() {
        let config = config();
        let now = Utc::now();
        let session = Session {
            tenant: "acme".into(),
            name: "ci".into(),
        };
        let value = session_value(&config, &session, now);
        assert_eq!(verify_session(&config, &value, now), Some(session));
        assert_eq!(
            verify_session(&config, &value, now + SESSION_TTL + TimeDelta::seconds(1)),
            None
        );
        let mut without_token = config.clone();
        without_token.api.tokens.clear();
        assert_eq!(verify_session(&without_token, &value, now), None);
        let token = log_token(
            b"new-secret",
            DeploymentId::new(),
            now + TimeDelta::hours(1),
        );
        assert_eq!(verify_session(&config, &token, now), None);
    }

    #[test]
    fn api_tokens_are_checked_by_hash() {
        let config = config();
        assert_eq!(
            check_api_token(&config, " s3cret\n").map(|s| s.tenant),
            Some("acme".to_string())
        );
        assert_eq!(check_api_token(&config, "s3cret!"), None);
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_on_https() {
        let mut config = config();
        let plain = session_cookie(&config, "v");
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Lax"));
        assert!(!plain.contains("Secure"));
        config.public_url = "https://deploy.acme.dev".into();
        assert!(session_cookie(&config, "v").ends_with("; Secure"));
        assert!(clear_session_cookie(&config).contains("Max-Age=0"));
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/deployments/x")), "/deployments/x");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "x"] {
            assert_eq!(local_path(Some(bad)), "/");
        }
        assert_eq!(
            cookie("a=1; deploybot_session=abc.def; b=2", SESSION_COOKIE),
            Some("abc.def")
        );
    }
}
