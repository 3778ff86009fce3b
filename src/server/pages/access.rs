//! Who may see which page: sign-in with an API token, the signed session cookie, and the
//! signed, expiring log tokens that let someone arriving from a pull request read one
//! deployment without an account.
//!
//! Keys. Sessions and log tokens are HMAC-SHA256 tags under keys derived from one master
//! key of their own, never from the webhook secret: `key = HMAC-SHA256(master, label)`, one
//! label per purpose, so a session value can never pass as a log token or the reverse. The
//! master key is `DEPLOYBOT_SESSION_KEY` when set; otherwise the first server to start
//! generates 32 random bytes and keeps them in the database (`session_keys`), where every
//! replica and every restart finds the same key, so a `log_url` posted on GitHub keeps
//! working for its 30 days. Changing the key ends every session and link.
//!
//! A session names the API token it came from: its name, tenant and a fingerprint of its
//! configured SHA-256. Removing the token, or giving it another value, ends its sessions;
//! its role and instance globs are read from the configuration on every request.
//!
//! A session's form token guards the pages' action forms: an HMAC of the session's cookie
//! value under the session key, with a prefix of its own so it never passes as a session or
//! a log token. Another site can neither read it nor derive it.

use std::fmt;
use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::Hmac;
use hmac::digest::{Digest, Key, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{ApiToken, Config, Role};
use crate::deploy::{DeploymentId, Error};
use crate::store::KeyStore;

type HmacSha256 = Hmac<Sha256>;

/// How long a log token made by [`log_url`] stays valid.
pub const LOG_TOKEN_TTL: TimeDelta = TimeDelta::days(30);
/// How long a sign-in lasts.
pub(super) const SESSION_TTL: TimeDelta = TimeDelta::days(7);
/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "deploybot_session";

const SESSION_LABEL: &[u8] = b"deploybot/pages/session/v2";
const LOG_TOKEN_LABEL: &[u8] = b"deploybot/pages/log-token/v2";
/// What a form token's message starts with (a session payload starts with `v2`).
const FORM_TOKEN_PREFIX: &[u8] = b"form\n";
/// The row of `session_keys` that holds the generated master key.
const STORED_KEY_NAME: &str = "pages";

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

/// The purpose-specific key derived from the master key.
fn derive(master: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = keyed(master);
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

/// Constant-time check of `tag` over `message` under `key`.
fn verify_tag(key: &[u8; 32], message: &[u8], tag: &[u8]) -> bool {
    let mut mac = keyed(key);
    mac.update(message);
    mac.verify_slice(tag).is_ok()
}

/// 32 bytes from the operating system's random source.
fn random_key() -> std::io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

/// The keys that sign page sessions and log links: one per purpose, both derived from the
/// master key (see the module documentation). `Debug` shows no key.
#[derive(Clone, PartialEq, Eq)]
pub struct PageKeys {
    session: [u8; 32],
    log: [u8; 32],
}

impl fmt::Debug for PageKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PageKeys(<redacted>)")
    }
}

impl PageKeys {
    /// The keys derived from `master`.
    pub fn from_master(master: &[u8]) -> PageKeys {
        PageKeys {
            session: derive(master, SESSION_LABEL),
            log: derive(master, LOG_TOKEN_LABEL),
        }
    }

    /// The server's keys: from `DEPLOYBOT_SESSION_KEY` when it is set, otherwise from the
    /// master key kept in the database, generated by whichever server needs it first.
    pub fn load(config: &Config, store: &dyn KeyStore) -> Result<PageKeys, Error> {
        if let Some(master) = &config.session_key {
            return Ok(PageKeys::from_master(master));
        }
        let candidate = random_key().map_err(|e| {
            Error::Internal(format!(
                "cannot read random bytes for the session key from /dev/urandom ({e}); set DEPLOYBOT_SESSION_KEY (e.g. `openssl rand -hex 32`)"
            ))
        })?;
        let master = store.shared_key(STORED_KEY_NAME, &candidate)?;
        Ok(PageKeys::from_master(&master))
    }
}

fn log_message(deployment_id: DeploymentId, expires: i64) -> String {
    format!("log:{deployment_id}:{expires}")
}

/// A token that lets its holder read the page of one deployment until `expires`, without
/// signing in: `EXPIRES.TAG`, safe in a URL query without encoding.
pub fn log_token(keys: &PageKeys, deployment_id: DeploymentId, expires: DateTime<Utc>) -> String {
    let expires = expires.timestamp();
    let tag = tag(&keys.log, log_message(deployment_id, expires).as_bytes());
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks a token made by [`log_token`] for `deployment_id`, in constant time; an expired
/// token is reported as such only when its signature is genuine.
pub fn verify_log_token(
    keys: &PageKeys,
    deployment_id: DeploymentId,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(), LogTokenError> {
    let (expires, tag) = token.split_once('.').ok_or(LogTokenError::Malformed)?;
    let expires: i64 = expires.parse().map_err(|_| LogTokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| LogTokenError::Malformed)?;
    let message = log_message(deployment_id, expires);
    if !verify_tag(&keys.log, message.as_bytes(), &tag) {
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
pub fn log_url(config: &Config, keys: &PageKeys, deployment_id: DeploymentId) -> String {
    let token = log_token(keys, deployment_id, Utc::now() + LOG_TOKEN_TTL);
    format!(
        "{}/deployments/{deployment_id}?token={token}",
        config.public_url.trim_end_matches('/')
    )
}

/// A signed-in viewer: the API token it signed in with, as configured now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    pub(super) tenant: String,
    pub(super) name: String,
    /// The token's role, read from the configuration on every request.
    pub(super) role: Role,
    /// The token's `instances` globs; empty: all of the tenant's.
    pub(super) instances: Vec<String>,
    /// The form token of this signed-in browser (see [`form_token`]): every action form
    /// carries it.
    pub(super) form_token: String,
}

impl Session {
    fn of(token: &ApiToken, form_token: String) -> Session {
        Session {
            tenant: token.tenant.clone(),
            name: token.name.clone(),
            role: token.role,
            instances: token.instances.clone(),
            form_token,
        }
    }

    /// Whether the session may act (lock, unlock, cancel, roll back): a token of role
    /// `deploy` or `admin`.
    pub(super) fn may_act(&self) -> bool {
        self.role >= Role::Deploy
    }

    /// Whether `presented` is the form token of this sign-in (constant time).
    pub(super) fn form_token_matches(&self, presented: &str) -> bool {
        presented.len() == self.form_token.len()
            && bool::from(presented.as_bytes().ct_eq(self.form_token.as_bytes()))
    }

    /// Whether the session's token covers the instance `name`.
    pub(super) fn covers(&self, name: &str) -> bool {
        crate::config::globs_cover(&self.instances, name)
    }
}

/// A short fingerprint of a token's configured SHA-256: a session carries it, so a token
/// given another value no longer carries its old sessions.
fn fingerprint(token: &ApiToken) -> String {
    hex::encode(&Sha256::digest(token.sha256.as_bytes())[..12])
}

fn session_payload(token: &ApiToken, expires: i64) -> String {
    format!(
        "v2\n{}\n{}\n{}\n{expires}",
        token.tenant,
        token.name,
        fingerprint(token)
    )
}

/// The cookie value for a session of `token`: `base64url(payload).base64url(tag)`.
pub(super) fn session_value(keys: &PageKeys, token: &ApiToken, now: DateTime<Utc>) -> String {
    let payload = session_payload(token, (now + SESSION_TTL).timestamp());
    let tag = tag(&keys.session, payload.as_bytes());
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The session a cookie value names, when its tag is genuine, it has not expired and the
/// API token it came from is still configured with the same tenant and value.
pub(super) fn verify_session(
    config: &Config,
    keys: &PageKeys,
    value: &str,
    now: DateTime<Utc>,
) -> Option<Session> {
    let (payload, tag) = value.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    if !verify_tag(&keys.session, &payload, &tag) {
        return None;
    }
    let payload = String::from_utf8(payload).ok()?;
    let mut parts = payload.split('\n');
    let (version, tenant, name, print, expires) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if version != "v2"
        || parts.next().is_some()
        || now.timestamp() >= expires.parse::<i64>().ok()?
    {
        return None;
    }
    let token = config.api.tokens.iter().find(|t| t.name == name)?;
    let same =
        token.tenant == tenant && bool::from(fingerprint(token).as_bytes().ct_eq(print.as_bytes()));
    same.then(|| Session::of(token, form_token(keys, value)))
}

/// The token an action form of the session `value` carries (against cross-site requests):
/// an HMAC of the session's cookie value under the session key, with its own prefix so it
/// can never pass as a session or a log token.
pub(super) fn form_token(keys: &PageKeys, value: &str) -> String {
    let mut message = Vec::with_capacity(value.len() + 5);
    message.extend_from_slice(FORM_TOKEN_PREFIX);
    message.extend_from_slice(value.as_bytes());
    URL_SAFE_NO_PAD.encode(tag(&keys.session, &message))
}

/// The configured API token that `token` is, compared by SHA-256 in constant time against
/// every configured hash (no early exit, so timing does not tell which one matched).
pub(super) fn check_api_token<'a>(config: &'a Config, token: &str) -> Option<&'a ApiToken> {
    let digest = Sha256::digest(token.trim().as_bytes());
    let mut found = None;
    for configured in &config.api.tokens {
        let mut expected = [0u8; 32];
        if hex::decode_to_slice(&configured.sha256, &mut expected).is_err() {
            continue;
        }
        if bool::from(digest.as_slice().ct_eq(&expected)) && found.is_none() {
            found = Some(configured);
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

    fn token(name: &str, secret: &str) -> ApiToken {
        ApiToken {
            name: name.into(),
            tenant: "acme".into(),
            sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            role: Default::default(),
            instances: vec!["web-*".into()],
        }
    }

    fn config() -> Config {
        Config {
            webhook_secrets: vec!["new-secret".into(), "old-secret".into()],
            api: crate::config::ApiConfig {
                tokens: vec![token("ci", "s3cret")],
            },
            ..Config::default()
        }
    }

    #[test]
    fn log_tokens_verify_only_for_their_deployment_and_until_expiry() {
        let (a, b) = (DeploymentId::new(), DeploymentId::new());
        let now = Utc::now();
        let keys = PageKeys::from_master(b"master key of at least thirty-two bytes");
        let token = log_token(&keys, a, now + TimeDelta::hours(1));
        assert_eq!(verify_log_token(&keys, a, &token, now), Ok(()));
        assert_eq!(
            verify_log_token(&keys, b, &token, now),
            Err(LogTokenError::Invalid)
        );
        let other = PageKeys::from_master(b"another master key of thirty-two bytes");
        assert_eq!(
            verify_log_token(&other, a, &token, now),
            Err(LogTokenError::Invalid)
        );
        assert_eq!(
            verify_log_token(&keys, a, &token, now + TimeDelta::hours(2)),
            Err(LogTokenError::Expired)
        );
        // Moving the expiry forward breaks the tag.
        let (_, tag) = token.split_once('.').unwrap_or_default();
        let forged = format!("{}.{tag}", (now + TimeDelta::days(999)).timestamp());
        assert_eq!(
            verify_log_token(&keys, a, &forged, now),
            Err(LogTokenError::Invalid)
        );
        assert_eq!(
            verify_log_token(&keys, a, "garbage", now),
            Err(LogTokenError::Malformed)
        );
    }

    #[test]
    fn a_log_token_is_not_a_session_and_sessions_need_their_token_as_configured() {
        let config = config();
        let keys = PageKeys::from_master(b"master key of at least thirty-two bytes");
        let now = Utc::now();
        let value = session_value(&keys, &config.api.tokens[0], now);
        let session = verify_session(&config, &keys, &value, now).expect("a session");
        assert_eq!(
            (session.tenant.as_str(), session.name.as_str()),
            ("acme", "ci")
        );
        assert!(session.covers("web-production") && !session.covers("api-production"));
        assert_eq!(
            verify_session(
                &config,
                &keys,
                &value,
                now + SESSION_TTL + TimeDelta::seconds(1)
            ),
            None
        );
        let other = PageKeys::from_master(b"another master key of thirty-two bytes");
        assert_eq!(verify_session(&config, &other, &value, now), None);
        let mut without_token = config.clone();
        without_token.api.tokens.clear();
        assert_eq!(verify_session(&without_token, &keys, &value, now), None);
        let mut new_value = config.clone();
        new_value.api.tokens = vec![token("ci", "a new token value")];
        assert_eq!(verify_session(&new_value, &keys, &value, now), None);
        let token = log_token(&keys, DeploymentId::new(), now + TimeDelta::hours(1));
        assert_eq!(verify_session(&config, &keys, &token, now), None);
    }

    #[test]
    fn a_form_token_belongs_to_one_session_and_one_key() {
        let config = config();
        let keys = PageKeys::from_master(b"master key of at least thirty-two bytes");
        let now = Utc::now();
        let value = session_value(&keys, &config.api.tokens[0], now);
        let session = verify_session(&config, &keys, &value, now).expect("a session");
        assert!(session.form_token_matches(&form_token(&keys, &value)));
        assert!(!session.form_token_matches(""));
        let later = session_value(&keys, &config.api.tokens[0], now + TimeDelta::seconds(5));
        assert!(!session.form_token_matches(&form_token(&keys, &later)));
        let other = PageKeys::from_master(b"another master key of thirty-two bytes");
        assert!(!session.form_token_matches(&form_token(&other, &value)));
        // The form token is not the session value, and does not verify as a session.
        assert_eq!(
            verify_session(&config, &keys, &session.form_token, now),
            None
        );
    }

    #[test]
    fn api_tokens_are_checked_by_hash() {
        let config = config();
        assert_eq!(
            check_api_token(&config, " s3cret\n").map(|t| t.tenant.as_str()),
            Some("acme")
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
