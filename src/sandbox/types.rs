//! What the GitHub stand-in records and shows: requests, deployments with their statuses,
//! comments and webhook attempts.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub method: String,
    /// Percent-decoded path, e.g. `/repos/acme/web/deployments`.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The body parsed as JSON; `None` when empty or not JSON (see `raw_body`).
    pub body: Option<Value>,
    pub raw_body: String,
    pub status: u16,
    pub accept: Option<String>,
    pub api_version: Option<String>,
    pub user_agent: Option<String>,
    pub auth: CallAuth,
}

/// How a request authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallAuth {
    /// No `Authorization` header, or the request was answered before authentication.
    None,
    /// The token given to `set_token`.
    Token,
    /// An installation token minted by `POST /app/installations/{id}/access_tokens`.
    InstallationToken,
    /// A GitHub App JWT that verified.
    AppJwt,
    /// Credentials were sent and refused (401).
    Refused,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FakeDeployment {
    pub id: u64,
    pub git_ref: String,
    pub sha: String,
    pub task: String,
    pub environment: String,
    pub original_environment: String,
    pub description: Option<String>,
    pub payload: Value,
    pub auto_merge: bool,
    pub required_contexts: Option<Vec<String>>,
    pub production_environment: bool,
    pub transient_environment: bool,
    pub creator: String,
    pub created_at: String,
    /// Oldest first.
    pub statuses: Vec<FakeDeploymentStatus>,
}

impl FakeDeployment {
    /// The states of its statuses, oldest first, e.g. `["queued", "in_progress", "success"]`.
    pub fn states(&self) -> Vec<String> {
        self.statuses.iter().map(|s| s.state.clone()).collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FakeDeploymentStatus {
    pub id: u64,
    pub state: String,
    pub description: String,
    pub environment: String,
    pub log_url: String,
    pub target_url: String,
    pub environment_url: String,
    /// As sent; `None` when the request left it out (GitHub then treats it as `true`).
    pub auto_inactive: Option<bool>,
    pub creator: String,
    pub created_at: String,
}

/// One attempt of the stand-in's webhook sender to deliver an App webhook, as
/// `GET /app/hook/deliveries` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct HookAttempt {
    pub id: u64,
    /// `X-GitHub-Delivery`: the same for every attempt of one event.
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub redelivery: bool,
    /// `OK`, `Invalid HTTP Response: 503`, `timed out` or `failed to connect`.
    pub status: String,
    /// The receiver's HTTP status; 504 when it timed out, 502 when it could not be reached.
    pub status_code: u16,
    pub delivered_at: String,
    pub duration: f64,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    /// The body sent, byte for byte (a redelivery sends it again).
    pub body: String,
}

impl HookAttempt {
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

/// Where the stand-in's webhook sender delivers: the receiver's URL and the App's secret.
pub(super) struct HookTarget {
    pub(super) url: String,
    pub(super) secret: String,
    /// Lower-cased owner → the secret its repositories' webhooks are signed with instead.
    pub(super) owner_secrets: std::collections::HashMap<String, String>,
}

/// An attempt the sender still has to make.
pub(super) struct HookSend {
    pub(super) guid: String,
    pub(super) event: String,
    pub(super) body: String,
    pub(super) redelivery: bool,
}

/// GitHub waits this long for a webhook receiver's answer.
pub const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq)]
pub struct FakeComment {
    pub id: u64,
    pub issue: u64,
    /// The body as it reads now.
    pub body: String,
    pub user: String,
    pub html_url: String,
    pub created_at: String,
    /// When it was created or last edited.
    pub updated_at: String,
    /// The bodies it had before each edit, oldest first (empty: never edited).
    pub history: Vec<String>,
}

impl FakeComment {
    /// A comment as it is created.
    pub fn new(id: u64, issue: u64, body: &str, user: &str, html_url: String) -> FakeComment {
        let at = super::state::now();
        FakeComment {
            id,
            issue,
            body: body.to_string(),
            user: user.to_string(),
            html_url,
            created_at: at.clone(),
            updated_at: at,
            history: Vec::new(),
        }
    }

    /// How many times it was edited.
    pub fn edits(&self) -> usize {
        self.history.len()
    }
}
