//! The GitHub API client: a GitHub App (per-installation tokens, minted, cached and
//! refreshed by octocrab, the installation looked up per repository when the webhook did
//! not name it) or a plain token. Requests go out through reqwest so that deploybot
//! controls every header (octocrab would add a second `User-Agent: octocrab`). Every answer is classified for the outbox: sent,
//! retry later (network, 5xx, 429, secondary rate limits — honouring `Retry-After` and
//! `x-ratelimit-reset`), or refused for good (other 4xx, with GitHub's message).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};
use octocrab::secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::config::GithubConfig;

pub use super::checks::{CheckKind, CheckState, CommitCheck};

/// The REST API version deploybot speaks.
pub const API_VERSION: &str = "2022-11-28";

/// How a call ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A passing failure: try again after `after`.
    #[error("{message} (retrying in {after:?})")]
    Retry { after: Duration, message: String },
    /// GitHub refused the request; sending it again would not help.
    #[error("GitHub answered {status}: {message}")]
    Refused { status: u16, message: String },
}

/// What deploybot needs of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub head_sha: String,
    pub head_ref: String,
    pub from_fork: bool,
    pub open: bool,
    /// The branch it merges into (`base.ref`).
    pub base_ref: String,
    /// That branch's head when GitHub answered (`base.sha`).
    pub base_sha: String,
    /// Who opened it (`user.login`).
    pub author: String,
}

/// One attempt of GitHub to deliver an App webhook, as `GET /app/hook/deliveries` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct HookDelivery {
    /// This attempt's id (what `POST /app/hook/deliveries/{id}/attempts` takes).
    pub id: u64,
    /// The event's GUID: the `X-GitHub-Delivery` header, shared by every attempt.
    pub guid: String,
    pub delivered_at: chrono::DateTime<chrono::Utc>,
    /// Whether this attempt was a redelivery.
    pub redelivery: bool,
    /// GitHub's summary, e.g. `OK`, `Invalid HTTP Response: 503`, `timed out`.
    pub status: String,
    /// The HTTP status the receiver answered (0 when there was no answer).
    pub status_code: u16,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
}

impl HookDelivery {
    /// Whether the receiver accepted this attempt (a 2xx answer).
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// The `cursor` of the `rel="next"` page in a `Link` header.
fn next_cursor(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().eq_ignore_ascii_case("rel=\"next\""));
        if !is_next {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let url = reqwest::Url::parse(target).ok()?;
        url.query_pairs()
            .find(|(name, _)| name == "cursor")
            .map(|(_, value)| value.into_owned())
            .filter(|cursor| !cursor.is_empty())
    })
}

/// A GitHub API client for every repository deploybot serves.
pub struct GithubClient {
    http: reqwest::Client,
    api_url: String,
    /// The App (JWT) client that mints installation tokens; `None` with a plain token.
    app: Option<Octocrab>,
    /// The App's id and key, for the calls made as the App itself (its webhook deliveries).
    app_key: Option<(u64, jsonwebtoken::EncodingKey)>,
    token: Option<String>,
    /// One client per installation, shared so that its token cache is shared.
    installations: Mutex<HashMap<u64, std::sync::Arc<Octocrab>>>,
    repo_installations: Mutex<HashMap<String, u64>>,
    rate_remaining: AtomicI64,
}

fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The user's role from GitHub's answer to "get repository permissions for a user":
/// `role_name` when it is one of the five built-in roles; for an organization's custom
/// role (`role_name` is then its own name, such as `deployer`) the highest built-in role
/// it grants, from `user.permissions`; the legacy `permission` field last.
fn role_of(answer: &serde_json::Value) -> &str {
    const BUILT_IN: [(&str, &str); 5] = [
        ("admin", "admin"),
        ("maintain", "maintain"),
        ("write", "push"),
        ("triage", "triage"),
        ("read", "pull"),
    ];
    if let Some(role) = answer["role_name"].as_str()
        && BUILT_IN.iter().any(|(name, _)| *name == role)
    {
        return role;
    }
    let flags = &answer["user"]["permissions"];
    if let Some((role, _)) = BUILT_IN
        .iter()
        .find(|(_, flag)| flags[*flag].as_bool() == Some(true))
    {
        return role;
    }
    answer["permission"].as_str().unwrap_or("none")
}

/// One path segment: like [`encode_path`], with `/` escaped too.
fn encode_segment(segment: &str) -> String {
    encode_path(segment).replace('/', "%2F")
}

/// Pages [`GithubClient::all_pages`] reads of one list (100 items each).
const MAX_PAGES: u32 = 10;

/// Whether a `Link` header names a `rel="next"` page.
fn has_next_page(link: &str) -> bool {
    link.split(',').any(|part| {
        part.split(';')
            .skip(1)
            .any(|p| p.trim().eq_ignore_ascii_case("rel=\"next\""))
    })
}

fn repo_path(repo: &str) -> String {
    encode_path(repo)
}

impl GithubClient {
    /// Builds the client from the configuration; `None` when no credentials are set.
    pub fn from_config(config: &GithubConfig) -> Result<Option<Self>, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            reqwest::header::HeaderValue::from_static(API_VERSION),
        );
        let http = reqwest::Client::builder()
            .user_agent(concat!("deploybot/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the GitHub client: {e}"))?;
        let api_url = config.api_url.trim_end_matches('/').to_string();
        let (app, token) = if let Some(app_id) = config.app_id {
            let pem = match (&config.app_private_key, &config.app_private_key_path) {
                (Some(key), _) => key.clone(),
                (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "cannot read the GitHub App private key {}: {e}",
                        path.display()
                    )
                })?,
                (None, None) => {
                    return Err("GITHUB_APP_ID is set without a private key: set GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH".into());
                }
            };
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| format!("the GitHub App private key is not an RSA PEM key: {e}"))?;
            let app = Octocrab::builder()
                .base_uri(api_url.as_str())
                .map_err(|e| format!("github.api_url {:?} is not a URL: {e}", config.api_url))?
                .app(AppId(app_id), key.clone())
                .build()
                .map_err(|e| format!("cannot build the GitHub App client: {e}"))?;
            (Some((app, (app_id, key))), None)
        } else if let Some(token) = &config.token {
            (None, Some(token.clone()))
        } else {
            return Ok(None);
        };
        let (app, app_key) = match app {
            Some((app, key)) => (Some(app), Some(key)),
            None => (None, None),
        };
        Ok(Some(Self {
            http,
            api_url,
            app,
            app_key,
            token,
            installations: Mutex::new(HashMap::new()),
            repo_installations: Mutex::new(HashMap::new()),
            rate_remaining: AtomicI64::new(-1),
        }))
    }

    /// The last `x-ratelimit-remaining` GitHub sent (-1 before any call).
    pub fn rate_limit_remaining(&self) -> i64 {
        self.rate_remaining.load(Ordering::Relaxed)
    }

    /// The token acting for `repo`: the App's installation token there, or the plain token.
    async fn token_for(&self, repo: &str, installation: Option<u64>) -> Result<String, ApiError> {
        let Some(app) = &self.app else {
            return Ok(self.token.clone().unwrap_or_default());
        };
        let cached = self
            .repo_installations
            .lock()
            .ok()
            .and_then(|m| m.get(repo).copied());
        let id = match installation.or(cached) {
            Some(id) => id,
            None => {
                // Authenticated as the App itself (a JWT octocrab signs).
                let found: Value = app
                    .get(
                        format!("/repos/{}/installation", repo_path(repo)),
                        None::<&()>,
                    )
                    .await
                    .map_err(|e| match e {
                        octocrab::Error::GitHub { source, .. } => {
                            classify(source.status_code.as_u16(), None, None, &source.message)
                        }
                        other => ApiError::Retry {
                            after: Duration::from_secs(5),
                            message: format!(
                                "cannot look up the App's installation for {repo}: {other}"
                            ),
                        },
                    })?;
                found["id"].as_u64().ok_or_else(|| ApiError::Refused {
                    status: 200,
                    message: format!("GitHub named no installation of the App for {repo}"),
                })?
            }
        };
        if let Ok(mut m) = self.repo_installations.lock() {
            m.insert(repo.to_string(), id);
        }
        let crab = match self
            .installations
            .lock()
            .ok()
            .and_then(|m| m.get(&id).cloned())
        {
            Some(crab) => crab,
            None => {
                let crab =
                    std::sync::Arc::new(app.installation(InstallationId(id)).map_err(|e| {
                        ApiError::Refused {
                            status: 0,
                            message: format!("cannot act as installation {id}: {e}"),
                        }
                    })?);
                // Concurrent first calls: keep the first client, so one token is minted.
                match self.installations.lock() {
                    Ok(mut m) => std::sync::Arc::clone(m.entry(id).or_insert(crab)),
                    Err(_) => crab,
                }
            }
        };
        // Cached by octocrab, and minted again shortly before it expires.
        match crab.installation_token().await {
            Ok(token) => Ok(token.expose_secret().to_string()),
            Err(octocrab::Error::GitHub { source, .. }) => Err(classify(
                source.status_code.as_u16(),
                None,
                None,
                &source.message,
            )),
            Err(e) => Err(ApiError::Retry {
                after: Duration::from_secs(5),
                message: format!("cannot get an installation token: {e}"),
            }),
        }
    }

    /// One request, classified.
    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        self.call_with_headers(token, method, path, body)
            .await
            .map(|(value, _)| value)
    }

    /// One request, classified; a success comes with the answer's headers.
    async fn call_with_headers(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, reqwest::header::HeaderMap), ApiError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| ApiError::Retry {
            after: Duration::from_secs(5),
            message: format!("GitHub could not be reached: {e}"),
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(remaining) = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
        {
            self.rate_remaining.store(remaining, Ordering::Relaxed);
        }
        let text = response.text().await.map_err(|e| ApiError::Retry {
            after: Duration::from_secs(5),
            message: format!("GitHub's answer could not be read: {e}"),
        })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok((value, headers));
        }
        let message = value["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(300).collect());
        let detail = match value["errors"].as_array() {
            Some(errors) if !errors.is_empty() => {
                // A Deployment refused for its required_contexts lists each failing
                // context with its state: say them in words.
                let contexts: Vec<String> = errors
                    .iter()
                    .filter_map(|e| e["contexts"].as_array())
                    .flatten()
                    .filter_map(|c| {
                        Some(format!(
                            "{} is {}",
                            c["context"].as_str()?,
                            c["state"].as_str()?
                        ))
                    })
                    .collect();
                if contexts.is_empty() {
                    format!("{message}: {}", Value::Array(errors.clone()))
                } else {
                    format!("{message} ({})", contexts.join(", "))
                }
            }
            _ => message,
        };
        Err(classify(
            status,
            Some(&headers),
            headers
                .get("x-ratelimit-remaining")
                .and_then(|v| v.to_str().ok()),
            &detail,
        ))
    }

    async fn request(
        &self,
        repo: &str,
        installation: Option<u64>,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let token = self.token_for(repo, installation).await?;
        self.call(&token, method, path, body).await
    }

    /// Whether GitHub App credentials are configured (calls as the App itself work).
    pub fn is_app(&self) -> bool {
        self.app_key.is_some()
    }

    /// A JWT for the App itself (RS256, issued a minute in the past, valid nine minutes).
    fn app_jwt(&self) -> Result<String, ApiError> {
        let Some((id, key)) = &self.app_key else {
            return Err(ApiError::Refused {
                status: 0,
                message: "this needs GitHub App credentials: set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_PATH (or GITHUB_APP_PRIVATE_KEY)".into(),
            });
        };
        octocrab::auth::create_jwt(AppId(*id), key).map_err(|e| ApiError::Refused {
            status: 0,
            message: format!("cannot sign a JWT with the GitHub App private key: {e}"),
        })
    }

    /// One page (at most `per_page`, up to 100) of the App's webhook deliveries, newest
    /// first, starting at `cursor`; with the cursor of the next page when there is one
    /// (from the `Link` header). Entries not in the documented shape are left out.
    pub async fn app_hook_deliveries(
        &self,
        cursor: Option<&str>,
        per_page: u32,
    ) -> Result<(Vec<HookDelivery>, Option<String>), ApiError> {
        let mut path = format!("/app/hook/deliveries?per_page={}", per_page.clamp(1, 100));
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.push_str(&encode_path(cursor).replace('/', "%2F"));
        }
        let jwt = self.app_jwt()?;
        let (listed, headers) = self
            .call_with_headers(&jwt, reqwest::Method::GET, &path, None)
            .await?;
        let Value::Array(entries) = listed else {
            return Err(ApiError::Refused {
                status: 200,
                message: "GitHub's answer to GET /app/hook/deliveries is not a list".into(),
            });
        };
        let deliveries = entries
            .into_iter()
            .filter_map(
                |entry| match serde_json::from_value::<HookDelivery>(entry) {
                    Ok(delivery) => Some(delivery),
                    Err(e) => {
                        tracing::debug!(error = %e, "a listed webhook delivery was left out");
                        None
                    }
                },
            )
            .collect();
        let next = headers
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_cursor);
        Ok((deliveries, next))
    }

    /// Asks GitHub to deliver an App webhook delivery again
    /// (`POST /app/hook/deliveries/{delivery_id}/attempts`, answered 202).
    pub async fn redeliver_app_hook_delivery(&self, delivery_id: u64) -> Result<(), ApiError> {
        let jwt = self.app_jwt()?;
        self.call(
            &jwt,
            reqwest::Method::POST,
            &format!("/app/hook/deliveries/{delivery_id}/attempts"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// A GET on the repository's behalf.
    async fn get(
        &self,
        repo: &str,
        installation: Option<u64>,
        path: &str,
    ) -> Result<Value, ApiError> {
        self.request(repo, installation, reqwest::Method::GET, path, None)
            .await
    }

    /// Creates a GitHub Deployment; returns its id.
    pub async fn create_deployment(
        &self,
        repo: &str,
        installation: Option<u64>,
        body: &Value,
    ) -> Result<i64, ApiError> {
        let created = self
            .request(
                repo,
                installation,
                reqwest::Method::POST,
                &format!("/repos/{}/deployments", repo_path(repo)),
                Some(body),
            )
            .await?;
        created["id"].as_i64().ok_or_else(|| ApiError::Refused {
            status: 200,
            message: format!("GitHub did not create the deployment: {created}"),
        })
    }

    /// Adds a deployment status.
    pub async fn create_status(
        &self,
        repo: &str,
        installation: Option<u64>,
        deployment: i64,
        body: &Value,
    ) -> Result<(), ApiError> {
        self.request(
            repo,
            installation,
            reqwest::Method::POST,
            &format!(
                "/repos/{}/deployments/{deployment}/statuses",
                repo_path(repo)
            ),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// The GitHub Deployment whose payload names `deployment_id` (deploybot's id), among
    /// the newest of `sha` in `environment`: finds one created by an attempt whose outcome
    /// was lost.
    pub async fn find_deployment(
        &self,
        repo: &str,
        installation: Option<u64>,
        sha: &str,
        environment: &str,
        deployment_id: &str,
    ) -> Result<Option<i64>, ApiError> {
        let path = format!(
            "/repos/{}/deployments?sha={}&environment={}&per_page=100",
            repo_path(repo),
            encode_path(sha),
            encode_path(environment).replace('/', "%2F")
        );
        let listed = self.get(repo, installation, &path).await?;
        Ok(listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["payload"]["deploybot"]["deployment_id"] == deployment_id)
            .and_then(|d| d["id"].as_i64()))
    }

    /// Whether one of the newest statuses of `deployment` has the state and description
    /// of `status`: it was sent by an attempt whose outcome was lost.
    pub async fn has_status(
        &self,
        repo: &str,
        installation: Option<u64>,
        deployment: i64,
        status: &Value,
    ) -> Result<bool, ApiError> {
        let path = format!(
            "/repos/{}/deployments/{deployment}/statuses?per_page=100",
            repo_path(repo)
        );
        let listed = self.get(repo, installation, &path).await?;
        Ok(listed
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["state"] == status["state"] && s["description"] == status["description"]))
    }

    /// Reacts to an issue or pull-request comment (`eyes`, `rocket`, `confused`, …).
    pub async fn react(
        &self,
        repo: &str,
        installation: Option<u64>,
        comment: u64,
        content: &str,
    ) -> Result<(), ApiError> {
        self.request(
            repo,
            installation,
            reqwest::Method::POST,
            &format!(
                "/repos/{}/issues/comments/{comment}/reactions",
                repo_path(repo)
            ),
            Some(&json!({"content": content})),
        )
        .await
        .map(|_| ())
    }

    /// Comments on an issue or pull request; returns the comment's id.
    pub async fn comment(
        &self,
        repo: &str,
        installation: Option<u64>,
        issue: u64,
        body: &str,
    ) -> Result<u64, ApiError> {
        let created = self
            .request(
                repo,
                installation,
                reqwest::Method::POST,
                &format!("/repos/{}/issues/{issue}/comments", repo_path(repo)),
                Some(&json!({"body": body})),
            )
            .await?;
        created["id"].as_u64().ok_or_else(|| ApiError::Refused {
            status: 200,
            message: "GitHub's answer to a new comment names no comment id".into(),
        })
    }

    /// Replaces the body of an issue or pull-request comment
    /// (`PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}`).
    pub async fn edit_comment(
        &self,
        repo: &str,
        installation: Option<u64>,
        comment: u64,
        body: &str,
    ) -> Result<(), ApiError> {
        self.request(
            repo,
            installation,
            reqwest::Method::PATCH,
            &format!("/repos/{}/issues/comments/{comment}", repo_path(repo)),
            Some(&json!({"body": body})),
        )
        .await
        .map(|_| ())
    }

    /// The comment on issue or pull request `issue` that carries `marker` (an HTML
    /// comment line of its own): a reply that an attempt whose outcome was lost may
    /// already have posted. Only a line equal to the marker counts, so a comment that
    /// merely quotes part of it does not. Reads every page of the issue's comments (100 a
    /// page, at most 3,000 comments).
    pub async fn find_comment(
        &self,
        repo: &str,
        installation: Option<u64>,
        issue: u64,
        marker: &str,
    ) -> Result<Option<u64>, ApiError> {
        for page in 1..=30 {
            let path = format!(
                "/repos/{}/issues/{issue}/comments?per_page=100&page={page}",
                repo_path(repo)
            );
            let listed = self.get(repo, installation, &path).await?;
            let comments = listed.as_array().map(Vec::as_slice).unwrap_or_default();
            let found = comments.iter().find(|c| {
                c["body"]
                    .as_str()
                    .is_some_and(|b| b.lines().any(|line| line.trim_end() == marker))
            });
            if let Some(id) = found.and_then(|c| c["id"].as_u64()) {
                return Ok(Some(id));
            }
            if comments.len() < 100 {
                break;
            }
        }
        Ok(None)
    }

    /// The user's role on the repository: admin, maintain, write, triage, read or none.
    /// (The legacy `permission` field says write for maintain and read for triage; the
    /// role is in `role_name`.)
    pub async fn permission(
        &self,
        repo: &str,
        installation: Option<u64>,
        user: &str,
    ) -> Result<String, ApiError> {
        let path = format!(
            "/repos/{}/collaborators/{}/permission",
            repo_path(repo),
            encode_path(user)
        );
        let answer = self.get(repo, installation, &path).await;
        match answer {
            Ok(v) => Ok(role_of(&v).to_string()),
            // Not a collaborator at all.
            Err(ApiError::Refused { status: 404, .. }) => Ok("none".into()),
            Err(e) => Err(e),
        }
    }

    /// Whether `user` is an active member of team `team` (its slug) of organization `org`.
    /// A pending invitation, or no membership at all, is not.
    pub async fn team_membership(
        &self,
        repo: &str,
        installation: Option<u64>,
        org: &str,
        team: &str,
        user: &str,
    ) -> Result<bool, ApiError> {
        let path = format!(
            "/orgs/{}/teams/{}/memberships/{}",
            encode_path(org),
            encode_path(team),
            encode_path(user)
        );
        match self.get(repo, installation, &path).await {
            Ok(v) => Ok(v["state"].as_str() == Some("active")),
            Err(ApiError::Refused { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A pull request's head, base, author and state.
    pub async fn pull(
        &self,
        repo: &str,
        installation: Option<u64>,
        number: u64,
    ) -> Result<PullRequest, ApiError> {
        let path = format!("/repos/{}/pulls/{number}", repo_path(repo));
        let pr = self.get(repo, installation, &path).await?;
        let head_repo = pr["head"]["repo"]["full_name"].as_str().unwrap_or_default();
        Ok(PullRequest {
            head_sha: pr["head"]["sha"].as_str().unwrap_or_default().to_string(),
            head_ref: pr["head"]["ref"].as_str().unwrap_or_default().to_string(),
            from_fork: pr["head"]["repo"]["fork"].as_bool().unwrap_or(false)
                || !head_repo.eq_ignore_ascii_case(repo),
            open: pr["state"].as_str() == Some("open"),
            base_ref: pr["base"]["ref"].as_str().unwrap_or_default().to_string(),
            base_sha: pr["base"]["sha"].as_str().unwrap_or_default().to_string(),
            author: pr["user"]["login"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Every item of a paginated list, 100 a page while the `Link` header names a next
    /// page, at most [`MAX_PAGES`] pages. `field` names the list in an object answer
    /// (`check_runs`, `statuses`); `None` when the answer is the list.
    async fn all_pages(
        &self,
        repo: &str,
        installation: Option<u64>,
        path: &str,
        field: Option<&str>,
    ) -> Result<Vec<Value>, ApiError> {
        let token = self.token_for(repo, installation).await?;
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let paged = format!("{path}{separator}per_page=100&page={page}");
            let (mut answer, headers) = self
                .call_with_headers(&token, reqwest::Method::GET, &paged, None)
                .await?;
            let listed = match field {
                Some(field) => answer[field].take(),
                None => answer,
            };
            let Value::Array(items) = listed else {
                return Err(ApiError::Refused {
                    status: 200,
                    message: format!("GitHub's answer to GET {path} holds no list"),
                });
            };
            let more = headers
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .is_some_and(has_next_page);
            let empty = items.is_empty();
            all.extend(items);
            if !more || empty {
                break;
            }
        }
        Ok(all)
    }

    /// The checks of commit `sha`: its check runs (the newest of each name) and the
    /// newest commit status of each context, each with its state and page. Reads every
    /// page of both, up to 1,000 of each.
    pub async fn commit_checks(
        &self,
        repo: &str,
        installation_id: Option<u64>,
        sha: &str,
    ) -> Result<Vec<CommitCheck>, ApiError> {
        let (repo_at, sha_at) = (repo_path(repo), encode_segment(sha));
        let runs_path = format!(
            "/repos/{}/commits/{}/check-runs?filter=latest",
            repo_at, sha_at
        );
        let runs = self
            .all_pages(repo, installation_id, &runs_path, Some("check_runs"))
            .await?;
        let status_path = format!("/repos/{}/commits/{}/status", repo_at, sha_at);
        let statuses = self
            .all_pages(repo, installation_id, &status_path, Some("statuses"))
            .await?;
        Ok(super::checks::commit_checks(&runs, &statuses))
    }

    /// Who approves pull request `pull` at `head_sha`: the lower-cased logins, sorted,
    /// whose latest verdict (comments and pending reviews aside) is an approval written at
    /// that head, the author `author` excepted. Reads every review, up to 1,000.
    pub async fn approving_reviewers(
        &self,
        repo: &str,
        installation_id: Option<u64>,
        pull: u64,
        head_sha: &str,
        author: &str,
    ) -> Result<Vec<String>, ApiError> {
        let path = format!("/repos/{}/pulls/{pull}/reviews", repo_path(repo));
        let reviews = self.all_pages(repo, installation_id, &path, None).await?;
        Ok(super::checks::approving_reviewers(
            &reviews, head_sha, author,
        ))
    }

    /// Whether commit `head_sha` contains the head of branch `base_ref` (it is up to date
    /// with its base): GitHub compares `base_ref...head_sha` as `ahead` or `identical`.
    pub async fn contains_base(
        &self,
        repo: &str,
        installation_id: Option<u64>,
        base_ref: &str,
        head_sha: &str,
    ) -> Result<bool, ApiError> {
        let path = format!(
            "/repos/{}/compare/{}...{}?per_page=1",
            repo_path(repo),
            encode_path(base_ref),
            encode_segment(head_sha)
        );
        let comparison = self.get(repo, installation_id, &path).await?;
        Ok(super::checks::contains_base(&comparison))
    }

    /// The commit a tag points to, dereferencing annotated tags.
    pub async fn tag_commit(
        &self,
        repo: &str,
        installation: Option<u64>,
        tag: &str,
    ) -> Result<String, ApiError> {
        let path = format!(
            "/repos/{}/git/ref/tags/{}",
            repo_path(repo),
            encode_path(tag)
        );
        let git_ref = self.get(repo, installation, &path).await?;
        let mut object = git_ref["object"].clone();
        // An annotated tag points to a tag object; follow it (tags of tags too, bounded).
        for _ in 0..5 {
            match object["type"].as_str() {
                Some("commit") => {
                    return object["sha"].as_str().map(str::to_string).ok_or_else(|| {
                        ApiError::Refused {
                            status: 200,
                            message: format!("tag {tag} names no commit"),
                        }
                    });
                }
                Some("tag") => {
                    let sha = object["sha"].as_str().unwrap_or_default();
                    let path = format!("/repos/{}/git/tags/{sha}", repo_path(repo));
                    let tag_object = self.get(repo, installation, &path).await?;
                    object = tag_object["object"].clone();
                }
                _ => break,
            }
        }
        Err(ApiError::Refused {
            status: 200,
            message: format!("tag {tag} does not point to a commit"),
        })
    }
}

/// Sorts a failed answer into retry-later or refused.
fn classify(
    status: u16,
    headers: Option<&reqwest::header::HeaderMap>,
    remaining: Option<&str>,
    message: &str,
) -> ApiError {
    let header = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok())
    };
    let retry_after = header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let reset = header("x-ratelimit-reset")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|at| Duration::from_secs((at - chrono::Utc::now().timestamp()).clamp(1, 3600) as u64));
    let secondary = message
        .to_ascii_lowercase()
        .contains("secondary rate limit");
    let exhausted = remaining == Some("0");
    let rate_limited =
        status == 429 || (status == 403 && (secondary || exhausted || retry_after.is_some()));
    if rate_limited {
        return ApiError::Retry {
            after: retry_after.or(reset).unwrap_or(Duration::from_secs(60)),
            message: format!("GitHub rate limit ({status}): {message}"),
        };
    }
    if status >= 500 || status == 0 {
        return ApiError::Retry {
            after: retry_after.unwrap_or(Duration::from_secs(5)),
            message: format!("GitHub answered {status}: {message}"),
        };
    }
    ApiError::Refused {
        status,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_role_counts_as_the_built_in_role_it_grants() {
        let answer = |role: &str, permission: &str, flags: serde_json::Value| {
            serde_json::json!({
                "permission": permission,
                "role_name": role,
                "user": {"login": "octocat", "permissions": flags},
            })
        };
        let all = |admin, maintain, push, triage| serde_json::json!({"admin": admin, "maintain": maintain, "push": push, "triage": triage, "pull": true});
        // Built-in roles are taken as they are named (the legacy field says write for maintain).
        assert_eq!(
            role_of(&answer("maintain", "write", all(false, true, true, true))),
            "maintain"
        );
        assert_eq!(
            role_of(&answer("read", "read", all(false, false, false, false))),
            "read"
        );
        // A custom role: the highest built-in role its flags grant.
        assert_eq!(
            role_of(&answer("deployer", "write", all(false, false, true, true))),
            "write"
        );
        assert_eq!(
            role_of(&answer(
                "release-manager",
                "write",
                all(false, true, true, true)
            )),
            "maintain"
        );
        // No flags: the legacy field; nothing at all: none.
        assert_eq!(
            role_of(&serde_json::json!({"permission": "admin", "role_name": "boss"})),
            "admin"
        );
        assert_eq!(role_of(&serde_json::json!({})), "none");
    }

    #[test]
    fn rate_limits_and_server_errors_are_retried_with_githubs_delay() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            classify(429, Some(&headers), None, "slow down"),
            ApiError::Retry {
                after: Duration::from_secs(7),
                message: "GitHub rate limit (429): slow down".into()
            }
        );
        let secondary = classify(403, None, None, "You have exceeded a secondary rate limit");
        assert!(
            matches!(secondary, ApiError::Retry { after, .. } if after == Duration::from_secs(60))
        );
        let mut reset = reqwest::header::HeaderMap::new();
        reset.insert(
            "x-ratelimit-reset",
            (chrono::Utc::now().timestamp() + 30)
                .to_string()
                .parse()
                .unwrap(),
        );
        match classify(403, Some(&reset), Some("0"), "API rate limit exceeded") {
            ApiError::Retry { after, .. } => {
                assert!((29..=31).contains(&after.as_secs()), "{after:?}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(502, None, None, "bad gateway"),
            ApiError::Retry { .. }
        ));
        assert_eq!(
            classify(422, None, Some("4999"), "Validation Failed"),
            ApiError::Refused {
                status: 422,
                message: "Validation Failed".into()
            }
        );
        assert!(matches!(
            classify(
                403,
                None,
                Some("4999"),
                "Resource not accessible by integration"
            ),
            ApiError::Refused { .. }
        ));
    }

    #[test]
    fn the_next_page_of_deliveries_is_named_by_the_link_header() {
        let link = "<https://api.github.com/app/hook/deliveries?per_page=2&cursor=v1_12077215967>; rel=\"next\", <https://api.github.com/app/hook/deliveries?per_page=2>; rel=\"first\"";
        assert_eq!(next_cursor(link).as_deref(), Some("v1_12077215967"));
        let first_only = "<https://api.github.com/app/hook/deliveries?per_page=2>; rel=\"first\"";
        assert_eq!(next_cursor(first_only), None);
        assert_eq!(next_cursor(""), None);
        let encoded =
            "<http://127.0.0.1:1/app/hook/deliveries?cursor=v1_a%2Fb&per_page=100>; rel=\"next\"";
        assert_eq!(next_cursor(encoded).as_deref(), Some("v1_a/b"));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_path("release/v1.2#x?y"), "release/v1.2%23x%3Fy");
        assert_eq!(repo_path("acme/web"), "acme/web");
    }
}
