//! A stateful fake of the GitHub REST API, served over real HTTP on 127.0.0.1, for tests.
//!
//! It holds repositories, collaborators, pull requests, tags, deployments with their
//! statuses, comments and reactions, answers the endpoints deploybot uses the way GitHub
//! does (status codes, error bodies, rate-limit headers), validates request bodies against
//! excerpts of GitHub's own OpenAPI description (`tests/fixtures/openapi/`, copied from the
//! npm package `@octokit/openapi`), and records every request so tests can assert what
//! deploybot sent, in order.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};

/// The login GitHub shows for requests made with the token given to [`FakeGithub::set_token`].
pub const TOKEN_LOGIN: &str = "deploybot";
/// The login GitHub shows for requests made with an installation token of the App.
pub const APP_BOT_LOGIN: &str = "deploybot[bot]";
/// `x-ratelimit-limit` of every answer; `x-ratelimit-remaining` counts down from it.
pub const RATE_LIMIT: u64 = 5000;

/// A 2048-bit RSA key pair for GitHub App tests (PKCS#1, the format GitHub hands out).
/// Test-only: it guards nothing.
pub const TEST_APP_PRIVATE_KEY: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEowIBAAKCAQEAtHfQJW/8S0hRgJnawckfcwZ25H2KRwW9SO/wIZdrdewdWehy\n\
wxP1CR734iSDpPiWLQqGQ337ono8BQP+mu9FQJXW+kYZMozR53mJ4bHlirRI8IKf\n\
RKU9xAAoX/kYc51k6FkBtWmCf11PlE+aPTJuFlLJGqhZPY8JfXl3fcpARQibUM+c\n\
oa59+wZvzZ/23jppsBSVC+G49nT6rP/FpR24/iEXt6X7knLf1HnasSFOrWuVaHXR\n\
WsmDZTxgro/tN0qW/UOpRUXeAWK3O+5QyWysBmDb1uqKBoeYTQM9ExFfvdkqwQrn\n\
uTSFzPgc9xScTXGpPHl8own2Is+eYYaILj88owIDAQABAoIBAEEsk+sxSjgV4flD\n\
lxEtBUKRLxbNj8aeeAGDRYGcIZ7wqpjxraBt8Kxelr8A2NoXPIT/rAVr1hiTdGGL\n\
U8O4bZYphv3Tmv36hUPHTNhJWtCA02aohcRQuMG0HOCsIPx/9xVCL6/Ibux4UmkJ\n\
ZnZ7Y+6D70TFT5U/tvmtiE3RYOyM1ypVZvUvDa4tAKC9vu96U5pvspJE+73Z8HOW\n\
07V2jebYr9wVNgt6O1gm3jC+WPtj8F2opiWp4I9L0G3l7o2gKP47V0/GPFoa2Q78\n\
IddFJghqDziKL9odUzp1QXCwWwfPTtDXmSDYaP1Cma38kh+UX5jlFCo6hyLLYq91\n\
lJK5IYECgYEA7SWiIVauv2v6lNkkT6DwZAJT1JrKycxtiJBp/OVMUKSNjEVOe7n9\n\
JVdevC6IEZVvzBlCq+QuuVfO/uc+ihDvrXcA6s4EWoXvvaax0MwEA2O9SlL84Eqz\n\
HEkJBxGdJI87iioo8Mc2M2pOIzi0fY0RacoGt+ZqdoyQH4sZtmybhFMCgYEAwtCp\n\
Kaq5Gsls3mW5vgbkJIS+wCkwDK8CDlNd2ZOIgz7lofq+yymqZRnJ14QmexLpW6h8\n\
9XUL/XtnPcNxGIWupS7RdYfEN2AHFKWqCdbTxOnwXjfPSWEA8k4KyFnINj+B0pow\n\
H5wYbyOAUpqdNZgGnH8pNM0T9BXwhUDawXxEXHECgYAxDXu/0aJLzhYC+/da0Tto\n\
NGMKswoHO9XcTaLewL9MXv04ao2VYh9OvgfGfQmAOZzqZr83tvdDNzqF12dEP8ST\n\
6O2zo/Gal+HDJNvbCJg760GYQho0er8ZtrG7WJVcnpP+PEJDq7E2aWLIPk53OdrE\n\
OxmwqGSVKPYW0Dr9VPHGKQKBgQCIHkFEErxZIgoGbm9Uff4kIfghzeV7x0AZgFhf\n\
sLy+b1EFV2y+CTO8hkNIaVZ1weX5HAWLf6fMCdA+EHPSHX3EfqztgNoxks//tizT\n\
yR2YRZikTDxyWevOYYcZK9o/RSpRW1hqjado6BY+ITfc/YcJC7Rf5zac4kN257Sx\n\
YkFlkQKBgDq0xKdd5F1Aj+9azy0PzMt1kOhBZXuW/t9WvWl6TXU6BWPnLFP8MiAE\n\
HMCgFDLXQ15MFj+BOJQKteDPYqLRKLNjHgEUp1quMvzKKZvDeiJvyUQDsdg5Gsdx\n\
DDdys9lqJELs+PRVurR1ok7Hc09KO4iPDnFXBxlGMXWUTqI1TDJg\n\
-----END RSA PRIVATE KEY-----\n\
";

/// The public half of [`TEST_APP_PRIVATE_KEY`], for [`FakeGithub::set_app`].
pub const TEST_APP_PUBLIC_KEY: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtHfQJW/8S0hRgJnawckf\n\
cwZ25H2KRwW9SO/wIZdrdewdWehywxP1CR734iSDpPiWLQqGQ337ono8BQP+mu9F\n\
QJXW+kYZMozR53mJ4bHlirRI8IKfRKU9xAAoX/kYc51k6FkBtWmCf11PlE+aPTJu\n\
FlLJGqhZPY8JfXl3fcpARQibUM+coa59+wZvzZ/23jppsBSVC+G49nT6rP/FpR24\n\
/iEXt6X7knLf1HnasSFOrWuVaHXRWsmDZTxgro/tN0qW/UOpRUXeAWK3O+5QyWys\n\
BmDb1uqKBoeYTQM9ExFfvdkqwQrnuTSFzPgc9xScTXGpPHl8own2Is+eYYaILj88\n\
owIDAQAB\n\
-----END PUBLIC KEY-----\n\
";

// ---------------------------------------------------------------------------------------
// GitHub's request schemas (excerpts of @octokit/openapi, see tests/fixtures/openapi/)
// ---------------------------------------------------------------------------------------

/// One operation's request body schema, as copied from GitHub's OpenAPI description.
pub struct OpenApiExcerpt {
    /// The resource name GitHub uses in `Validation Failed` errors for this operation.
    pub resource: &'static str,
    /// The fixture's text: `{source, operation, operationId, documentation_url, pointer, schema}`.
    pub text: &'static str,
}

impl OpenApiExcerpt {
    pub fn document(&self) -> Value {
        serde_json::from_str(self.text).expect("tests/fixtures/openapi holds valid JSON")
    }

    pub fn schema(&self) -> Value {
        self.document()["schema"].clone()
    }

    pub fn documentation_url(&self) -> String {
        self.document()["documentation_url"]
            .as_str()
            .unwrap_or(DOCS)
            .to_string()
    }
}

pub const CREATE_DEPLOYMENT: OpenApiExcerpt = OpenApiExcerpt {
    resource: "Deployment",
    text: include_str!("../fixtures/openapi/create-deployment.request.json"),
};
pub const CREATE_DEPLOYMENT_STATUS: OpenApiExcerpt = OpenApiExcerpt {
    resource: "DeploymentStatus",
    text: include_str!("../fixtures/openapi/create-deployment-status.request.json"),
};
pub const CREATE_ISSUE_COMMENT: OpenApiExcerpt = OpenApiExcerpt {
    resource: "IssueComment",
    text: include_str!("../fixtures/openapi/create-issue-comment.request.json"),
};
pub const CREATE_COMMENT_REACTION: OpenApiExcerpt = OpenApiExcerpt {
    resource: "Reaction",
    text: include_str!("../fixtures/openapi/create-reaction-for-issue-comment.request.json"),
};
pub const CREATE_ISSUE_REACTION: OpenApiExcerpt = OpenApiExcerpt {
    resource: "Reaction",
    text: include_str!("../fixtures/openapi/create-reaction-for-issue.request.json"),
};
pub const CREATE_INSTALLATION_TOKEN: OpenApiExcerpt = OpenApiExcerpt {
    resource: "InstallationAccessToken",
    text: include_str!("../fixtures/openapi/create-installation-access-token.request.json"),
};
/// The query parameters of `GET /app/hook/deliveries` (`per_page`, `cursor`, `status`).
pub const LIST_HOOK_DELIVERIES_PARAMETERS: OpenApiExcerpt = OpenApiExcerpt {
    resource: "HookDelivery",
    text: include_str!("../fixtures/openapi/list-webhook-deliveries.parameters.json"),
};
/// The answer of `GET /app/hook/deliveries`: a list of simple webhook deliveries.
pub const LIST_HOOK_DELIVERIES_RESPONSE: OpenApiExcerpt = OpenApiExcerpt {
    resource: "HookDelivery",
    text: include_str!("../fixtures/openapi/list-webhook-deliveries.response.json"),
};
/// The answer of `POST /app/hook/deliveries/{delivery_id}/attempts` (202).
pub const REDELIVER_HOOK_DELIVERY_RESPONSE: OpenApiExcerpt = OpenApiExcerpt {
    resource: "HookDelivery",
    text: include_str!("../fixtures/openapi/redeliver-webhook-delivery.response.json"),
};

/// One way a JSON value breaks a schema: the field (dotted path), GitHub's error code
/// (`missing_field` or `invalid`) and a sentence for people.
#[derive(Clone, Debug, PartialEq)]
pub struct SchemaError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

/// Checks `value` against the OpenAPI subset GitHub's schemas use: `type`, `nullable`,
/// `enum`, `required`, `properties`, `items`, `oneOf`/`anyOf`/`allOf`, `minLength`,
/// `maxLength`. Unknown properties are ignored, as GitHub ignores them.
pub fn validate(schema: &Value, value: &Value) -> Vec<SchemaError> {
    let mut errors = Vec::new();
    check(schema, value, "", &mut errors);
    errors
}

fn check(schema: &Value, value: &Value, field: &str, errors: &mut Vec<SchemaError>) {
    let invalid = |message: String| SchemaError {
        field: field.to_string(),
        code: "invalid",
        message,
    };
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    let branches = schema.get("oneOf").or_else(|| schema.get("anyOf"));
    if let Some(branches) = branches.and_then(Value::as_array) {
        if !branches.iter().any(|b| validate(b, value).is_empty()) {
            errors.push(invalid(format!(
                "{field} {value} matches none of the allowed shapes"
            )));
        }
        return;
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        check(part, value, field, errors);
    }
    if let Some(ty) = schema["type"].as_str() {
        let fits = match ty {
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            "null" => value.is_null(),
            _ => true,
        };
        if !fits {
            errors.push(invalid(format!("{field} {value} is not a {ty}")));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed
            .iter()
            .map(|a| a.as_str().unwrap_or("?").into())
            .collect();
        errors.push(invalid(format!(
            "{field} {value} is not one of: {}",
            list.join(", ")
        )));
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| length < min) {
            errors.push(invalid(format!("{field} is too short")));
        }
        if schema["maxLength"].as_u64().is_some_and(|max| length > max) {
            errors.push(invalid(format!("{field} is too long")));
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                errors.push(SchemaError {
                    field: join_field(field, name),
                    code: "missing_field",
                    message: format!("{} wasn't supplied", join_field(field, name)),
                });
            }
        }
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            if let Some(inner) = object.get(name) {
                check(property, inner, &join_field(field, name), errors);
            }
        }
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{field}[{index}]"), errors);
        }
    }
}

fn join_field(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

// ---------------------------------------------------------------------------------------
// What tests see
// ---------------------------------------------------------------------------------------

/// One request as the fake received it, with the status it answered.
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

/// One attempt of the fake's webhook sender to deliver an App webhook, as
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

/// Where the fake's webhook sender delivers: the receiver's URL and the App's secret.
struct HookTarget {
    url: String,
    secret: String,
}

/// An attempt the sender still has to make.
struct HookSend {
    guid: String,
    event: String,
    body: String,
    redelivery: bool,
}

/// GitHub waits this long for a webhook receiver's answer.
pub const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq)]
pub struct FakeComment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub user: String,
    pub html_url: String,
    pub created_at: String,
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

const DOCS: &str = "https://docs.github.com/rest";
const ROLES: [&str; 6] = ["admin", "maintain", "write", "triage", "read", "none"];

struct Pull {
    number: u64,
    head_sha: String,
    head_ref: String,
    from_fork: bool,
    state: String,
    author: String,
    created_at: String,
}

struct Tag {
    commit_sha: String,
    /// The SHA of the tag object, for annotated tags.
    object_sha: Option<String>,
}

struct Reaction {
    id: u64,
    subject: Subject,
    content: String,
    user: String,
    created_at: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Subject {
    Comment(u64),
    Issue(u64),
}

struct Repo {
    id: u64,
    full_name: String,
    /// Lower-cased login → (login, role).
    roles: HashMap<String, (String, String)>,
    /// Organization custom repository roles: lower-cased login → (role name, the base
    /// role it inherits).
    custom_roles: HashMap<String, (String, String)>,
    pulls: BTreeMap<u64, Pull>,
    issues: Vec<u64>,
    branches: BTreeMap<String, String>,
    tags: BTreeMap<String, Tag>,
    deployments: Vec<FakeDeployment>,
    comments: Vec<FakeComment>,
    reactions: Vec<Reaction>,
    /// Commit statuses, oldest first: (sha, context, state).
    commit_statuses: Vec<(String, String, String)>,
}

impl Repo {
    fn owner(&self) -> &str {
        self.full_name.split('/').next().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.full_name.split('/').nth(1).unwrap_or_default()
    }

    fn has_issue(&self, number: u64) -> bool {
        self.pulls.contains_key(&number) || self.issues.contains(&number)
    }
}

struct AppConfig {
    app_id: u64,
    key: jsonwebtoken::DecodingKey,
    installation_id: u64,
    installation_token: String,
}

struct Fault {
    method: String,
    path_prefix: String,
    remaining: usize,
    status: u16,
    headers: Vec<(String, String)>,
    /// The request is carried out, then its answer replaced: GitHub did the work but the
    /// client never heard (a 502 from GitHub's edge after the write, a dropped connection).
    after_applying: bool,
}

/// Everything the fake knows, behind one lock.
struct State {
    base_url: String,
    repos: BTreeMap<String, Repo>,
    token: Option<String>,
    app: Option<AppConfig>,
    /// Installation tokens minted and not expired.
    installation_tokens: Vec<String>,
    faults: Vec<Fault>,
    /// How long every answer waits (a slow GitHub).
    delay: std::time::Duration,
    /// Requests (method, path prefix) whose answer waits this long.
    slow_paths: Vec<(String, String, std::time::Duration)>,
    calls: Vec<Call>,
    rate_remaining: u64,
    rate_reset: u64,
    next_id: BTreeMap<&'static str, u64>,
    /// The App's webhook: where it is sent, every attempt, and redeliveries to make.
    hook_target: Option<HookTarget>,
    hook_attempts: Vec<HookAttempt>,
    hook_sends: Vec<HookSend>,
}

impl State {
    fn new() -> State {
        State {
            base_url: String::new(),
            repos: BTreeMap::new(),
            token: None,
            app: None,
            installation_tokens: Vec::new(),
            faults: Vec::new(),
            delay: std::time::Duration::ZERO,
            slow_paths: Vec::new(),
            calls: Vec::new(),
            rate_remaining: RATE_LIMIT,
            rate_reset: unix_now() + 3600,
            next_id: BTreeMap::new(),
            hook_target: None,
            hook_attempts: Vec::new(),
            hook_sends: Vec::new(),
        }
    }

    /// Ids count up per kind of object, from 1, like GitHub's (which are just larger).
    fn next_id(&mut self, kind: &'static str) -> u64 {
        let id = self.next_id.entry(kind).or_insert(0);
        *id += 1;
        *id
    }

    fn repo(&self, full_name: &str) -> &Repo {
        self.repos
            .get(&full_name.to_lowercase())
            .unwrap_or_else(|| panic!("fake GitHub: add_repo(\"{full_name}\") first"))
    }

    fn repo_mut(&mut self, full_name: &str) -> &mut Repo {
        self.repos
            .get_mut(&full_name.to_lowercase())
            .unwrap_or_else(|| panic!("fake GitHub: add_repo(\"{full_name}\") first"))
    }
}

// ---------------------------------------------------------------------------------------
// The public handle
// ---------------------------------------------------------------------------------------

/// A running fake GitHub. Its server stops when this is dropped.
pub struct FakeGithub {
    /// `http://127.0.0.1:PORT`: use as `DEPLOYBOT_GITHUB_API_URL`.
    pub url: String,
    state: Arc<Mutex<State>>,
    server: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl FakeGithub {
    /// Starts the server on a free port of 127.0.0.1, in its own thread and runtime.
    pub fn start() -> FakeGithub {
        let state = Arc::new(Mutex::new(State::new()));
        let shared = web::Data::from(state.clone());
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fake-github".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(shared.clone())
                            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                            .default_service(web::to(serve))
                    })
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(0)
                    .bind(("127.0.0.1", 0))
                    .expect("fake GitHub binds 127.0.0.1");
                    let port = server.addrs()[0].port();
                    let server = server.run();
                    sender
                        .send((port, server.handle()))
                        .expect("FakeGithub::start waits for the port");
                    let _ = server.await;
                })
            })
            .expect("spawn the fake GitHub thread");
        let (port, server) = receiver.recv().expect("fake GitHub server started");
        let url = format!("http://127.0.0.1:{port}");
        lock(&state).base_url = url.clone();
        FakeGithub {
            url,
            state,
            server,
            thread: Some(thread),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    // --- state setup -------------------------------------------------------------------

    /// Adds a repository, e.g. `"acme/web"`. Owner and name match case-insensitively.
    pub fn add_repo(&self, full_name: &str) {
        assert!(
            full_name.split('/').count() == 2,
            "fake GitHub: a repository is owner/name, not {full_name:?}"
        );
        let mut state = self.state();
        let id = state.next_id("repo");
        state.repos.insert(
            full_name.to_lowercase(),
            Repo {
                id,
                full_name: full_name.to_string(),
                roles: HashMap::new(),
                custom_roles: HashMap::new(),
                pulls: BTreeMap::new(),
                issues: Vec::new(),
                branches: BTreeMap::new(),
                tags: BTreeMap::new(),
                deployments: Vec::new(),
                comments: Vec::new(),
                reactions: Vec::new(),
                commit_statuses: Vec::new(),
            },
        );
    }

    /// Records a commit status (as CI would): `state` is error, failure, pending or
    /// success. A Deployment with `required_contexts` is created only when the newest
    /// status of each of those contexts on its commit is success.
    pub fn set_commit_status(&self, repo: &str, sha: &str, context: &str, state: &str) {
        assert!(
            ["error", "failure", "pending", "success"].contains(&state),
            "fake GitHub: commit status state {state:?} is not error, failure, pending or success"
        );
        self.state().repo_mut(repo).commit_statuses.push((
            sha.to_lowercase(),
            context.to_string(),
            state.to_string(),
        ));
    }

    /// Gives `user` a role on `repo`: admin, maintain, write, triage, read or none.
    /// Users never given a role do not exist (the permission endpoint answers 404).
    pub fn set_permission(&self, repo: &str, user: &str, permission: &str) {
        assert!(
            ROLES.contains(&permission),
            "fake GitHub: permission {permission:?} is not one of {ROLES:?}"
        );
        self.state().repo_mut(repo).roles.insert(
            user.to_lowercase(),
            (user.to_string(), permission.to_string()),
        );
    }

    /// Gives `user` an organization's custom repository role `name` that inherits `base`
    /// (one of the five built-in roles): GitHub then answers the permission request with
    /// `role_name` = `name`, and `permission` and `user.permissions` from `base`.
    pub fn set_custom_role(&self, repo: &str, user: &str, name: &str, base: &str) {
        self.set_permission(repo, user, base);
        self.state()
            .repo_mut(repo)
            .custom_roles
            .insert(user.to_lowercase(), (name.to_string(), base.to_string()));
    }

    /// Adds a pull request (also an issue, as on GitHub). Its head branch is
    /// `feature-{number}`; a fork's head lives in `contributor/{name}`.
    pub fn add_pull(&self, repo: &str, number: u64, head_sha: &str, from_fork: bool, state: &str) {
        assert!(
            state == "open" || state == "closed",
            "fake GitHub: a pull request is open or closed, not {state:?}"
        );
        let mut guard = self.state();
        let repo = guard.repo_mut(repo);
        let head_ref = format!("feature-{number}");
        if !from_fork {
            repo.branches.insert(head_ref.clone(), head_sha.to_string());
        }
        let author = if from_fork { "contributor" } else { "octocat" };
        repo.pulls.insert(
            number,
            Pull {
                number,
                head_sha: head_sha.to_string(),
                head_ref,
                from_fork,
                state: state.to_string(),
                author: author.to_string(),
                created_at: now(),
            },
        );
    }

    /// Someone pushes `head_sha` to pull request #`number`'s branch: GitHub moves its head
    /// (and sends `pull_request` `synchronize`, which the test sends to the bot).
    pub fn push_to_pull(&self, repo: &str, number: u64, head_sha: &str) {
        let mut guard = self.state();
        let repo = guard.repo_mut(repo);
        let pull = repo
            .pulls
            .get_mut(&number)
            .unwrap_or_else(|| panic!("fake GitHub: add_pull #{number} first"));
        pull.head_sha = head_sha.to_string();
        let (head_ref, from_fork) = (pull.head_ref.clone(), pull.from_fork);
        if !from_fork {
            repo.branches.insert(head_ref, head_sha.to_string());
        }
    }

    /// Adds a plain issue (not a pull request), so comments can be posted on it.
    pub fn add_issue(&self, repo: &str, number: u64) {
        self.state().repo_mut(repo).issues.push(number);
    }

    /// Adds a branch pointing at `commit_sha`, so deployments can name it as `ref`.
    pub fn add_branch(&self, repo: &str, branch: &str, commit_sha: &str) {
        self.state()
            .repo_mut(repo)
            .branches
            .insert(branch.to_string(), commit_sha.to_string());
    }

    /// Adds a tag. `annotated`: the ref points at a tag object that points at the commit.
    pub fn add_tag(&self, repo: &str, tag: &str, commit_sha: &str, annotated: bool) {
        let object_sha = annotated.then(|| fake_sha(&[repo, tag, commit_sha]));
        self.state().repo_mut(repo).tags.insert(
            tag.to_string(),
            Tag {
                commit_sha: commit_sha.to_string(),
                object_sha,
            },
        );
    }

    /// Seeds a comment written by someone else (e.g. the `/deploy` a webhook reports) and
    /// returns its id, so reactions on it can be created.
    pub fn add_comment(&self, repo: &str, issue: u64, user: &str, body: &str) -> u64 {
        let mut state = self.state();
        let id = state.next_id("comment");
        let repo = state.repo_mut(repo);
        assert!(
            repo.has_issue(issue),
            "fake GitHub: add_pull or add_issue #{issue} first"
        );
        let html_url = format!(
            "https://github.com/{}/pull/{issue}#issuecomment-{id}",
            repo.full_name
        );
        repo.comments.push(FakeComment {
            id,
            issue,
            body: body.to_string(),
            user: user.to_string(),
            html_url,
            created_at: now(),
        });
        id
    }

    /// The only accepted `Authorization: Bearer|token <t>` (besides installation tokens).
    pub fn set_token(&self, token: &str) {
        self.state().token = Some(token.to_string());
    }

    /// Registers a GitHub App: JWTs (RS256, `iss` = app id) verify with `public_key_pem`,
    /// and `POST /app/installations/{installation_id}/access_tokens` mints `installation_token`.
    pub fn set_app(
        &self,
        app_id: u64,
        public_key_pem: &str,
        installation_id: u64,
        installation_token: &str,
    ) {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .expect("fake GitHub: set_app needs an RSA public key in PEM");
        self.state().app = Some(AppConfig {
            app_id,
            key,
            installation_id,
            installation_token: installation_token.to_string(),
        });
    }

    /// Expires every minted installation token: requests with one answer 401 until a
    /// new one is minted.
    pub fn expire_installation_tokens(&self) {
        self.state().installation_tokens.clear();
    }

    // --- fault injection ---------------------------------------------------------------

    /// The next `times` requests whose method is `method` (or `*`) and whose path starts
    /// with `path_prefix` answer `status` with a GitHub-shaped JSON error body and these
    /// headers (e.g. `Retry-After`, `x-ratelimit-remaining`), changing no state.
    pub fn fail_next(
        &self,
        method: &str,
        path_prefix: &str,
        times: usize,
        status: u16,
        headers: &[(&str, &str)],
    ) {
        self.state().faults.push(Fault {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            remaining: times,
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            after_applying: false,
        });
    }

    /// Like `fail_next`, but each matching request is carried out first (its state change
    /// is kept) and only its answer is replaced by `status`.
    pub fn fail_after_applying_next(
        &self,
        method: &str,
        path_prefix: &str,
        times: usize,
        status: u16,
    ) {
        self.state().faults.push(Fault {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            remaining: times,
            status,
            headers: Vec::new(),
            after_applying: true,
        });
    }

    /// Ends every injected fault: GitHub is healthy again.
    pub fn clear_faults(&self) {
        let mut state = self.state();
        state.faults.clear();
        state.delay = std::time::Duration::ZERO;
    }

    /// Every request waits this long before it is handled: GitHub is slow.
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.state().delay = delay;
    }

    /// Requests whose method is `method` and whose path starts with `path_prefix` wait
    /// this long before they are handled: GitHub is slow to answer those.
    pub fn delay_path(&self, method: &str, path_prefix: &str, delay: std::time::Duration) {
        self.state()
            .slow_paths
            .push((method.to_string(), path_prefix.to_string(), delay));
    }

    // --- the App's webhook sender --------------------------------------------------------

    /// Where the App's webhooks go (`http://HOST:PORT/PATH`), signed with `secret`.
    pub fn set_webhook_target(&self, url: &str, secret: &str) {
        self.state().hook_target = Some(HookTarget {
            url: url.to_string(),
            secret: secret.to_string(),
        });
    }

    /// Delivers an App webhook as GitHub does (a new GUID, GitHub's headers, signed),
    /// waits for the answer (at most [`HOOK_TIMEOUT`]) and records the attempt.
    pub fn send_webhook(&self, event: &str, payload: &Value) -> HookAttempt {
        deliver_hook(
            &self.state,
            HookSend {
                guid: uuid::Uuid::now_v7().to_string(),
                event: event.to_string(),
                body: payload.to_string(),
                redelivery: false,
            },
        )
    }

    /// Records an attempt without sending anything: GitHub tried `guid` and got
    /// `status_code` (e.g. the receiver stored it but its answer was lost).
    pub fn add_hook_attempt(&self, guid: &str, event: &str, payload: &Value, status_code: u16) {
        let mut state = self.state();
        let attempt = state.hook_attempt(
            HookSend {
                guid: guid.to_string(),
                event: event.to_string(),
                body: payload.to_string(),
                redelivery: false,
            },
            hook_status(status_code),
            0.01,
        );
        state.hook_attempts.push(attempt);
    }

    /// Every attempt of the App's webhook sender, oldest first.
    pub fn hook_attempts(&self) -> Vec<HookAttempt> {
        self.state().hook_attempts.clone()
    }

    // --- inspection --------------------------------------------------------------------

    /// Every request in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The deployments of `repo`, oldest first, each with its statuses oldest first.
    pub fn deployments(&self, repo: &str) -> Vec<FakeDeployment> {
        self.state().repo(repo).deployments.clone()
    }

    /// The comments on issue or pull request `issue`, oldest first (seeded ones included).
    pub fn comments(&self, repo: &str, issue: u64) -> Vec<FakeComment> {
        let state = self.state();
        let comments = &state.repo(repo).comments;
        comments
            .iter()
            .filter(|c| c.issue == issue)
            .cloned()
            .collect()
    }

    /// The reactions on a comment, oldest first, e.g. `["eyes", "rocket"]`.
    pub fn reactions(&self, repo: &str, comment_id: u64) -> Vec<String> {
        self.reactions_on(repo, Subject::Comment(comment_id))
    }

    /// The reactions on an issue or pull request itself, oldest first.
    pub fn issue_reactions(&self, repo: &str, issue: u64) -> Vec<String> {
        self.reactions_on(repo, Subject::Issue(issue))
    }

    fn reactions_on(&self, repo: &str, subject: Subject) -> Vec<String> {
        let state = self.state();
        let reactions = &state.repo(repo).reactions;
        let on_subject = reactions.iter().filter(|r| r.subject == subject);
        on_subject.map(|r| r.content.clone()).collect()
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        // `stop` sends the command at once; the returned future only waits for it.
        drop(self.server.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide later assertions.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// HTTP: one entry point that records, authenticates and routes
// ---------------------------------------------------------------------------------------

/// An answer before it becomes an HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
    /// Plain text instead of JSON (GitHub's answer to a missing User-Agent).
    text: Option<String>,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            text: None,
            headers: Vec::new(),
        }
    }

    /// GitHub's basic error: `{message, documentation_url, status}`.
    fn error(status: u16, message: &str, documentation_url: &str) -> Reply {
        Reply::json(
            status,
            json!({
                "message": message,
                "documentation_url": documentation_url,
                "status": status.to_string(),
            }),
        )
    }

    fn not_found(documentation_url: &str) -> Reply {
        Reply::error(404, "Not Found", documentation_url)
    }

    /// `422 Validation Failed` with one `{resource, field, code}` per problem.
    fn validation_failed(excerpt: &OpenApiExcerpt, errors: Vec<SchemaError>) -> Reply {
        let errors: Vec<Value> = errors
            .into_iter()
            .map(|e| {
                json!({
                    "resource": excerpt.resource,
                    "field": e.field,
                    "code": e.code,
                    "message": e.message,
                })
            })
            .collect();
        Reply::json(
            422,
            json!({
                "message": "Validation Failed",
                "errors": errors,
                "documentation_url": excerpt.documentation_url(),
                "status": "422",
            }),
        )
    }
}

/// The parts of a request the fake looks at.
struct Incoming {
    method: String,
    path: String,
    query: HashMap<String, String>,
    raw_query: String,
    body: Vec<u8>,
    user_agent: Option<String>,
    authorization: Option<String>,
}

async fn serve(req: HttpRequest, body: web::Bytes, state: web::Data<Mutex<State>>) -> HttpResponse {
    let delay = {
        let state = lock(&state);
        let path = percent_decode(req.path());
        state
            .slow_paths
            .iter()
            .filter(|(method, prefix, _)| {
                method == req.method().as_str() && path.starts_with(prefix)
            })
            .map(|(_, _, delay)| *delay)
            .fold(state.delay, std::time::Duration::max)
    };
    if !delay.is_zero() {
        actix_web::rt::time::sleep(delay).await;
    }
    let header = |name: &str| {
        let value = req.headers().get(name)?;
        Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    let incoming = Incoming {
        method: req.method().as_str().to_string(),
        path: percent_decode(req.path()),
        query: web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default(),
        raw_query: req.query_string().to_string(),
        body: body.to_vec(),
        user_agent: header("user-agent").filter(|ua| !ua.trim().is_empty()),
        authorization: header("authorization"),
    };
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let mut call = Call {
        method: incoming.method.clone(),
        path: incoming.path.clone(),
        query: incoming.raw_query.clone(),
        body: serde_json::from_slice(&body).ok(),
        raw_body,
        status: 0,
        accept: header("accept"),
        api_version: header("x-github-api-version"),
        user_agent: incoming.user_agent.clone(),
        auth: CallAuth::None,
    };

    let shared = state.clone().into_inner();
    let mut state = lock(&state);
    state.rate_remaining = state.rate_remaining.saturating_sub(1);
    let reply = state.answer(&incoming, &mut call);
    // Redeliveries go out after the answer, as GitHub's do, each on its own thread.
    for send in std::mem::take(&mut state.hook_sends) {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || deliver_hook(&shared, send));
    }
    call.status = reply.status;
    state.calls.push(call);
    let request_id = format!("FAKE:{:08X}", state.calls.len());

    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response
        .insert_header(("x-ratelimit-limit", RATE_LIMIT.to_string()))
        .insert_header(("x-ratelimit-remaining", state.rate_remaining.to_string()))
        .insert_header((
            "x-ratelimit-used",
            (RATE_LIMIT - state.rate_remaining).to_string(),
        ))
        .insert_header(("x-ratelimit-reset", state.rate_reset.to_string()))
        .insert_header(("x-ratelimit-resource", "core"))
        .insert_header(("x-github-request-id", request_id))
        .insert_header(("x-github-media-type", "github.v3; format=json"));
    for (name, value) in &reply.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    match reply.text {
        Some(text) => response
            .content_type("text/plain; charset=utf-8")
            .body(text),
        None => response
            .content_type("application/json; charset=utf-8")
            .body(reply.body.to_string()),
    }
}

impl State {
    /// User-Agent, then injected faults, then credentials, then the endpoint.
    fn answer(&mut self, req: &Incoming, call: &mut Call) -> Reply {
        if req.user_agent.is_none() {
            return Reply {
                text: Some(
                    "Request forbidden by administrative rules. Please make sure your request \
                     has a User-Agent header (https://docs.github.com/en/rest/overview/\
                     resources-in-the-rest-api#user-agent-required). Check \
                     https://developer.github.com for other possible causes.\n"
                        .to_string(),
                ),
                ..Reply::json(403, Value::Null)
            };
        }
        let fault = self.take_fault(req);
        let fault = match fault {
            Some((reply, false)) => return reply,
            Some((reply, true)) => Some(reply),
            None => None,
        };
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let app_route = matches!(
            segments.as_slice(),
            ["app", ..] | ["repos", _, _, "installation"]
        );
        let actor = match self.authenticate(req.authorization.as_deref(), app_route) {
            Ok((actor, auth)) => {
                call.auth = auth;
                actor
            }
            Err(reply) => {
                call.auth = match req.authorization {
                    Some(_) => CallAuth::Refused,
                    None => CallAuth::None,
                };
                return reply;
            }
        };
        let reply = self.route(req, &segments, &actor);
        fault.unwrap_or(reply)
    }

    fn route(&mut self, req: &Incoming, segments: &[&str], actor: &str) -> Reply {
        let id = |text: &str| text.parse::<u64>().ok();
        match (req.method.as_str(), segments) {
            ("POST", ["app", "installations", installation, "access_tokens"]) => {
                self.create_installation_token(req, installation)
            }
            ("GET", ["app", "hook", "deliveries"]) => self.list_hook_deliveries(req),
            ("POST", ["app", "hook", "deliveries", delivery, "attempts"]) => {
                self.redeliver_hook_delivery(delivery)
            }
            ("GET", ["repos", owner, name, "installation"]) => {
                self.get_repo_installation(owner, name)
            }
            ("GET", ["repos", owner, name, "collaborators", user, "permission"]) => {
                self.get_permission(owner, name, user)
            }
            ("GET", ["repos", owner, name, "pulls", number]) => match id(number) {
                Some(number) => self.get_pull(owner, name, number),
                None => Reply::not_found(DOCS),
            },
            ("GET", ["repos", owner, name, "git", "ref", git_ref @ ..]) if !git_ref.is_empty() => {
                self.get_git_ref(owner, name, &git_ref.join("/"))
            }
            ("GET", ["repos", owner, name, "git", "tags", sha]) => {
                self.get_git_tag(owner, name, sha)
            }
            ("GET", ["repos", owner, name, "deployments"]) => {
                self.list_deployments(req, owner, name)
            }
            ("POST", ["repos", owner, name, "deployments"]) => {
                self.create_deployment(req, owner, name, actor)
            }
            ("GET", ["repos", owner, name, "deployments", deployment]) => match id(deployment) {
                Some(deployment) => self.get_deployment(owner, name, deployment),
                None => Reply::not_found(DOCS),
            },
            ("GET", ["repos", owner, name, "deployments", deployment, "statuses"]) => {
                match id(deployment) {
                    Some(deployment) => self.list_statuses(req, owner, name, deployment),
                    None => Reply::not_found(DOCS),
                }
            }
            ("POST", ["repos", owner, name, "deployments", deployment, "statuses"]) => {
                match id(deployment) {
                    Some(deployment) => self.create_status(req, owner, name, deployment, actor),
                    None => Reply::not_found(DOCS),
                }
            }
            ("GET", ["repos", owner, name, "issues", issue, "comments"]) => match id(issue) {
                Some(issue) => self.list_comments(req, owner, name, issue),
                None => Reply::not_found(DOCS),
            },
            ("POST", ["repos", owner, name, "issues", issue, "comments"]) => match id(issue) {
                Some(issue) => self.create_comment(req, owner, name, issue, actor),
                None => Reply::not_found(DOCS),
            },
            (
                "POST",
                [
                    "repos",
                    owner,
                    name,
                    "issues",
                    "comments",
                    comment,
                    "reactions",
                ],
            ) => match id(comment) {
                Some(comment) => {
                    self.create_reaction(req, owner, name, Subject::Comment(comment), actor)
                }
                None => Reply::not_found(DOCS),
            },
            ("POST", ["repos", owner, name, "issues", issue, "reactions"]) => match id(issue) {
                Some(issue) => self.create_reaction(req, owner, name, Subject::Issue(issue), actor),
                None => Reply::not_found(DOCS),
            },
            _ => Reply::not_found(DOCS),
        }
    }

    /// The answer of the first matching fault, and whether the request is carried out
    /// before it is given.
    fn take_fault(&mut self, req: &Incoming) -> Option<(Reply, bool)> {
        let index = self.faults.iter().position(|f| {
            f.remaining > 0
                && (f.method == "*" || f.method.eq_ignore_ascii_case(&req.method))
                && req.path.starts_with(&f.path_prefix)
        })?;
        let fault = &mut self.faults[index];
        fault.remaining -= 1;
        let (status, headers, after_applying) =
            (fault.status, fault.headers.clone(), fault.after_applying);
        if fault.remaining == 0 {
            self.faults.remove(index);
        }
        let header = |name: &str| {
            let found = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
            found.map(|(_, v)| v.as_str())
        };
        let (message, docs) = match status {
            403 | 429 if header("x-ratelimit-remaining") == Some("0") => (
                "API rate limit exceeded for user ID 1. If you reach out to GitHub Support \
                 for help, please include the request ID FAKE."
                    .to_string(),
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            ),
            403 | 429 => (
                "You have exceeded a secondary rate limit. Please wait a few minutes before \
                 you try again. If you reach out to GitHub Support for help, please include \
                 the request ID FAKE."
                    .to_string(),
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            ),
            401 => ("Bad credentials".to_string(), DOCS),
            404 => ("Not Found".to_string(), DOCS),
            409 => ("Conflict".to_string(), DOCS),
            422 => ("Validation Failed".to_string(), DOCS),
            500 | 502 => ("Server Error".to_string(), DOCS),
            other => {
                let reason = StatusCode::from_u16(other)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Error");
                (reason.to_string(), DOCS)
            }
        };
        let mut reply = Reply::error(status, &message, docs);
        reply.headers = headers;
        Some((reply, after_applying))
    }

    /// App routes take a JWT signed by the App; every other route takes the token from
    /// `set_token` or a minted installation token. Answers the login acting.
    fn authenticate(
        &self,
        header: Option<&str>,
        app_route: bool,
    ) -> Result<(String, CallAuth), Reply> {
        let Some(header) = header else {
            return Err(Reply::error(401, "Requires authentication", DOCS));
        };
        let credential = match header.split_once(' ') {
            Some((scheme, value))
                if scheme.eq_ignore_ascii_case("bearer")
                    || scheme.eq_ignore_ascii_case("token") =>
            {
                value.trim()
            }
            _ => return Err(Reply::error(401, "Bad credentials", DOCS)),
        };
        if app_route {
            let app_id = self.verify_app_jwt(credential)?;
            return Ok((format!("app-{app_id}"), CallAuth::AppJwt));
        }
        if self.token.as_deref() == Some(credential) {
            return Ok((TOKEN_LOGIN.to_string(), CallAuth::Token));
        }
        if self.installation_tokens.iter().any(|t| t == credential) {
            return Ok((APP_BOT_LOGIN.to_string(), CallAuth::InstallationToken));
        }
        Err(Reply::error(401, "Bad credentials", DOCS))
    }

    /// GitHub's rules: RS256 signed by the App's key, `iss` = the App id (number or
    /// string), `exp` in the future and at most 10 minutes after `iat`.
    fn verify_app_jwt(&self, jwt: &str) -> Result<u64, Reply> {
        let undecodable = || Reply::error(401, "A JSON web token could not be decoded", DOCS);
        let Some(app) = &self.app else {
            return Err(undecodable());
        };
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        // `iss` is checked below: jsonwebtoken only reads it as a string, GitHub takes both.
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = 60;
        let claims = jsonwebtoken::decode::<Value>(jwt, &app.key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Reply::error(
                    401,
                    "'Expiration time' claim ('exp') must be a numeric value representing the \
                     future time at which the assertion expires",
                    DOCS,
                ),
                _ => undecodable(),
            })?
            .claims;
        let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
            return Err(undecodable());
        };
        if exp - iat > 600 {
            return Err(Reply::error(
                401,
                "'Expiration time' claim ('exp') is too far in the future",
                DOCS,
            ));
        }
        if iat > unix_now() as i64 + 60 {
            return Err(Reply::error(
                401,
                "'Issued at' claim ('iat') must be an Integer representing a time in the past",
                DOCS,
            ));
        }
        let issuer = match &claims["iss"] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        if issuer != Some(app.app_id) {
            return Err(undecodable());
        }
        Ok(app.app_id)
    }
}

// ---------------------------------------------------------------------------------------
// Endpoints: one handler each
// ---------------------------------------------------------------------------------------

fn find_repo<'a>(
    repos: &'a BTreeMap<String, Repo>,
    owner: &str,
    name: &str,
) -> Result<&'a Repo, Reply> {
    let key = format!("{owner}/{name}").to_lowercase();
    repos.get(&key).ok_or_else(|| Reply::not_found(DOCS))
}

fn find_repo_mut<'a>(
    repos: &'a mut BTreeMap<String, Repo>,
    owner: &str,
    name: &str,
) -> Result<&'a mut Repo, Reply> {
    let key = format!("{owner}/{name}").to_lowercase();
    repos.get_mut(&key).ok_or_else(|| Reply::not_found(DOCS))
}

/// A request body as GitHub reads it: empty means `{}`, invalid JSON is 400, and the
/// object must satisfy the operation's schema or the answer is 422.
fn parse_body(req: &Incoming, excerpt: &OpenApiExcerpt) -> Result<Map<String, Value>, Reply> {
    let problems = || Reply::error(400, "Problems parsing JSON", &excerpt.documentation_url());
    let value = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice::<Value>(&req.body).map_err(|_| problems())?
    };
    let Value::Object(object) = value else {
        return Err(problems());
    };
    let errors = validate(&excerpt.schema(), &Value::Object(object.clone()));
    if !errors.is_empty() {
        return Err(Reply::validation_failed(excerpt, errors));
    }
    Ok(object)
}

fn custom_error(excerpt: &OpenApiExcerpt, field: &str, code: &'static str, message: &str) -> Reply {
    Reply::validation_failed(
        excerpt,
        vec![SchemaError {
            field: field.to_string(),
            code,
            message: message.to_string(),
        }],
    )
}

/// GitHub's list answers: `?per_page` (default 30, at most 100) and `?page`, with a
/// `Link` header naming the next and last pages.
fn paginate(base_url: &str, req: &Incoming, items: Vec<Value>) -> Reply {
    let per_page = req
        .query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30usize);
    let per_page = per_page.clamp(1, 100);
    let page = req
        .query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut reply = Reply::json(200, Value::Array(slice));
    if page < last {
        let others: Vec<&str> = req
            .raw_query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("page=") && !p.starts_with("per_page="))
            .collect();
        let link = |to: usize| {
            let mut query = others.clone();
            let per_page = format!("per_page={per_page}");
            let page = format!("page={to}");
            query.push(&per_page);
            query.push(&page);
            format!("<{base_url}{}?{}>", req.path, query.join("&"))
        };
        let value = format!(
            "{}; rel=\"next\", {}; rel=\"last\"",
            link(page + 1),
            link(last)
        );
        reply.headers.push(("link".to_string(), value));
    }
    reply
}

impl State {
    fn create_installation_token(&mut self, req: &Incoming, installation: &str) -> Reply {
        let docs = CREATE_INSTALLATION_TOKEN.documentation_url();
        let Some(app) = &self.app else {
            return Reply::not_found(&docs);
        };
        if installation.parse::<u64>().ok() != Some(app.installation_id) {
            return Reply::not_found(&docs);
        }
        if let Err(reply) = parse_body(req, &CREATE_INSTALLATION_TOKEN) {
            return reply;
        }
        let token = app.installation_token.clone();
        if !self.installation_tokens.contains(&token) {
            self.installation_tokens.push(token.clone());
        }
        let expires_at = chrono::Utc::now() + chrono::Duration::hours(1);
        Reply::json(
            201,
            json!({
                "token": token,
                "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "permissions": {
                    "deployments": "write",
                    "issues": "write",
                    "pull_requests": "write",
                    "metadata": "read",
                    "contents": "read",
                },
                "repository_selection": "all",
            }),
        )
    }

    fn get_repo_installation(&self, owner: &str, name: &str) -> Reply {
        let docs = "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app";
        let (Some(app), Ok(repo)) = (&self.app, find_repo(&self.repos, owner, name)) else {
            return Reply::not_found(docs);
        };
        let id = app.installation_id;
        Reply::json(
            200,
            json!({
                "id": id,
                "app_id": app.app_id,
                "account": user_json(repo.owner(), "Organization"),
                "target_type": "Organization",
                "repository_selection": "all",
                "access_tokens_url": format!("{}/app/installations/{id}/access_tokens", self.base_url),
                "repositories_url": format!("{}/installation/repositories", self.base_url),
                "html_url": format!("https://github.com/organizations/{}/settings/installations/{id}", repo.owner()),
                "permissions": {"deployments": "write", "issues": "write", "pull_requests": "write", "metadata": "read"},
                "events": ["push", "create", "issue_comment"],
                "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z",
                "single_file_name": null,
                "app_slug": "deploybot",
            }),
        )
    }

    fn get_permission(&self, owner: &str, name: &str, user: &str) -> Reply {
        let docs = "https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user";
        let repo = match find_repo(&self.repos, owner, name) {
            Ok(repo) => repo,
            Err(_) => return Reply::not_found(docs),
        };
        let user_key = user.to_lowercase();
        let Some((login, role)) = repo.roles.get(&user_key) else {
            return Reply::not_found(docs);
        };
        // GitHub's legacy `permission`: maintain shows as write, triage as read.
        let permission = match role.as_str() {
            "maintain" => "write",
            "triage" => "read",
            other => other,
        };
        let rank = ROLES.iter().position(|r| r == role).unwrap_or(ROLES.len());
        let at_least = |r: &str| rank <= ROLES.iter().position(|x| *x == r).unwrap_or(0);
        let mut user = user_json(login, "User");
        user["permissions"] = json!({
            "admin": at_least("admin"),
            "maintain": at_least("maintain"),
            "push": at_least("write"),
            "triage": at_least("triage"),
            "pull": at_least("read"),
        });
        let role = repo
            .custom_roles
            .get(&user_key)
            .map_or(role.as_str(), |(name, _)| name.as_str());
        user["role_name"] = json!(role);
        Reply::json(
            200,
            json!({"permission": permission, "role_name": role, "user": user}),
        )
    }

    fn get_pull(&self, owner: &str, name: &str, number: u64) -> Reply {
        let docs = "https://docs.github.com/rest/pulls/pulls#get-a-pull-request";
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(docs);
        };
        let Some(pull) = repo.pulls.get(&number) else {
            return Reply::not_found(docs);
        };
        let base = &self.base_url;
        let full = &repo.full_name;
        let repo_json = |full_name: &str, id: u64, fork: bool| {
            let owner = full_name.split('/').next().unwrap_or_default();
            json!({
                "id": id,
                "name": full_name.split('/').nth(1).unwrap_or_default(),
                "full_name": full_name,
                "owner": user_json(owner, "Organization"),
                "private": false,
                "fork": fork,
                "html_url": format!("https://github.com/{full_name}"),
                "url": format!("{base}/repos/{full_name}"),
                "default_branch": "main",
            })
        };
        let head_repo_name = if pull.from_fork {
            format!("{}/{}", pull.author, repo.name())
        } else {
            full.clone()
        };
        let head_owner = if pull.from_fork {
            pull.author.as_str()
        } else {
            repo.owner()
        };
        let closed = pull.state == "closed";
        Reply::json(
            200,
            json!({
                "url": format!("{base}/repos/{full}/pulls/{number}"),
                "id": 1000 + number,
                "node_id": format!("PR_fake{number}"),
                "html_url": format!("https://github.com/{full}/pull/{number}"),
                "diff_url": format!("https://github.com/{full}/pull/{number}.diff"),
                "patch_url": format!("https://github.com/{full}/pull/{number}.patch"),
                "issue_url": format!("{base}/repos/{full}/issues/{number}"),
                "number": number,
                "state": pull.state,
                "locked": false,
                "title": format!("Pull request #{number}"),
                "user": user_json(&pull.author, "User"),
                "body": null,
                "labels": [],
                "created_at": pull.created_at,
                "updated_at": pull.created_at,
                "closed_at": if closed { json!(pull.created_at) } else { Value::Null },
                "merged_at": null,
                "merge_commit_sha": null,
                "draft": false,
                "head": {
                    "label": format!("{head_owner}:{}", pull.head_ref),
                    "ref": pull.head_ref,
                    "sha": pull.head_sha,
                    "user": user_json(head_owner, "User"),
                    "repo": repo_json(&head_repo_name, repo.id + 100_000, pull.from_fork),
                },
                "base": {
                    "label": format!("{}:main", repo.owner()),
                    "ref": "main",
                    "sha": fake_sha(&[full, "main"]),
                    "user": user_json(repo.owner(), "Organization"),
                    "repo": repo_json(full, repo.id, false),
                },
                "author_association": if pull.from_fork { "CONTRIBUTOR" } else { "MEMBER" },
                "merged": false,
                "mergeable": true,
                "mergeable_state": "clean",
                "comments": repo.comments.iter().filter(|c| c.issue == number).count(),
            }),
        )
    }

    fn get_git_ref(&self, owner: &str, name: &str, git_ref: &str) -> Reply {
        let docs = "https://docs.github.com/rest/git/refs#get-a-reference";
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(docs);
        };
        let base = format!("{}/repos/{}", self.base_url, repo.full_name);
        let object = if let Some(tag) = git_ref.strip_prefix("tags/") {
            repo.tags.get(tag).map(|t| match &t.object_sha {
                Some(object) => json!({"sha": object, "type": "tag", "url": format!("{base}/git/tags/{object}")}),
                None => json!({"sha": t.commit_sha, "type": "commit", "url": format!("{base}/git/commits/{}", t.commit_sha)}),
            })
        } else if let Some(branch) = git_ref.strip_prefix("heads/") {
            repo.branches.get(branch).map(|sha| {
                json!({"sha": sha, "type": "commit", "url": format!("{base}/git/commits/{sha}")})
            })
        } else {
            None
        };
        match object {
            Some(object) => Reply::json(
                200,
                json!({
                    "ref": format!("refs/{git_ref}"),
                    "node_id": format!("REF_{}", fake_sha(&[&base, git_ref])),
                    "url": format!("{base}/git/refs/{git_ref}"),
                    "object": object,
                }),
            ),
            None => Reply::not_found(docs),
        }
    }

    fn get_git_tag(&self, owner: &str, name: &str, sha: &str) -> Reply {
        let docs = "https://docs.github.com/rest/git/tags#get-a-tag";
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(docs);
        };
        let found = repo
            .tags
            .iter()
            .find(|(_, t)| t.object_sha.as_deref() == Some(sha));
        let Some((tag, t)) = found else {
            return Reply::not_found(docs);
        };
        let base = format!("{}/repos/{}", self.base_url, repo.full_name);
        Reply::json(
            200,
            json!({
                "node_id": format!("TAG_{sha}"),
                "tag": tag,
                "sha": sha,
                "url": format!("{base}/git/tags/{sha}"),
                "message": format!("Release {tag}\n"),
                "tagger": {"name": "Octo Cat", "email": "octocat@example.com", "date": "2024-01-01T00:00:00Z"},
                "object": {"sha": t.commit_sha, "type": "commit", "url": format!("{base}/git/commits/{}", t.commit_sha)},
                "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
            }),
        )
    }

    fn list_deployments(&self, req: &Incoming, owner: &str, name: &str) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(DOCS);
        };
        let matches = |d: &&FakeDeployment| {
            let filter = |key: &str, value: &str| req.query.get(key).is_none_or(|v| v == value);
            filter("sha", &d.sha)
                && filter("ref", &d.git_ref)
                && filter("task", &d.task)
                && filter("environment", &d.environment)
        };
        let newest_first = repo.deployments.iter().rev().filter(matches);
        let items = newest_first
            .map(|d| deployment_json(&self.base_url, repo, d))
            .collect();
        paginate(&self.base_url, req, items)
    }

    fn get_deployment(&self, owner: &str, name: &str, id: u64) -> Reply {
        let docs = "https://docs.github.com/rest/deployments/deployments#get-a-deployment";
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(docs);
        };
        match repo.deployments.iter().find(|d| d.id == id) {
            Some(d) => Reply::json(200, deployment_json(&self.base_url, repo, d)),
            None => Reply::not_found(docs),
        }
    }

    fn create_deployment(&mut self, req: &Incoming, owner: &str, name: &str, actor: &str) -> Reply {
        let excerpt = &CREATE_DEPLOYMENT;
        let docs = excerpt.documentation_url();
        if find_repo(&self.repos, owner, name).is_err() {
            return Reply::not_found(&docs);
        }
        let body = match parse_body(req, excerpt) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        let git_ref = text("ref").unwrap_or_default();
        let environment = text("environment").unwrap_or_else(|| "production".to_string());
        let required_contexts: Option<Vec<String>> = body.get("required_contexts").map(|c| {
            let items = c.as_array().into_iter().flatten();
            items
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        });
        let payload = match body.get("payload") {
            None => json!({}),
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
            Some(other) => other.clone(),
        };
        let repo = find_repo(&self.repos, owner, name).expect("checked above");
        let Some(sha) = resolve_ref(repo, &git_ref) else {
            return Reply::error(422, &format!("No ref found for: {git_ref}"), &docs);
        };
        // GitHub checks the newest status of each required context on the commit; a
        // context without one is "missing".
        let failing: Vec<Value> = required_contexts
            .iter()
            .flatten()
            .filter_map(|context| {
                let state = repo
                    .commit_statuses
                    .iter()
                    .rev()
                    .find(|(s, c, _)| *s == sha && c == context)
                    .map_or("missing", |(_, _, state)| state.as_str());
                (state != "success").then(|| json!({"context": context, "state": state}))
            })
            .collect();
        if !failing.is_empty() {
            return Reply::json(
                409,
                json!({
                    "message": format!("Conflict: Commit status checks failed for {git_ref}."),
                    "errors": [{"contexts": failing, "resource": "Deployment", "field": "required_contexts", "code": "invalid"}],
                    "documentation_url": docs,
                    "status": "409",
                }),
            );
        }
        let id = self.next_id("deployment");
        let deployment = FakeDeployment {
            id,
            git_ref,
            sha,
            task: text("task").unwrap_or_else(|| "deploy".to_string()),
            production_environment: body
                .get("production_environment")
                .and_then(Value::as_bool)
                .unwrap_or(environment == "production"),
            transient_environment: body
                .get("transient_environment")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            original_environment: environment.clone(),
            environment,
            description: match body.get("description") {
                None => Some(String::new()),
                Some(d) => d.as_str().map(str::to_string),
            },
            payload,
            auto_merge: body
                .get("auto_merge")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            required_contexts,
            creator: actor.to_string(),
            created_at: now(),
            statuses: Vec::new(),
        };
        let repo = find_repo_mut(&mut self.repos, owner, name).expect("checked above");
        let answer = deployment_json(&self.base_url, repo, &deployment);
        repo.deployments.push(deployment);
        Reply::json(201, answer)
    }

    fn list_statuses(&self, req: &Incoming, owner: &str, name: &str, id: u64) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(DOCS);
        };
        let Some(deployment) = repo.deployments.iter().find(|d| d.id == id) else {
            return Reply::not_found(DOCS);
        };
        // GitHub lists the newest status first.
        let statuses = deployment.statuses.iter().rev();
        let items = statuses
            .map(|s| status_json(&self.base_url, repo, deployment, s))
            .collect();
        paginate(&self.base_url, req, items)
    }

    fn create_status(
        &mut self,
        req: &Incoming,
        owner: &str,
        name: &str,
        id: u64,
        actor: &str,
    ) -> Reply {
        let excerpt = &CREATE_DEPLOYMENT_STATUS;
        let docs = excerpt.documentation_url();
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(&docs);
        };
        if !repo.deployments.iter().any(|d| d.id == id) {
            return Reply::not_found(&docs);
        }
        let body = match parse_body(req, excerpt) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        let description = text("description").unwrap_or_default();
        if description.chars().count() > 140 {
            let message = "description is too long (maximum is 140 characters)";
            return custom_error(excerpt, "description", "custom", message);
        }
        let state = text("state").unwrap_or_default();
        let auto_inactive = body.get("auto_inactive").and_then(Value::as_bool);
        let status_id = self.next_id("status");
        let repo = find_repo_mut(&mut self.repos, owner, name).expect("checked above");
        let deployment = repo
            .deployments
            .iter_mut()
            .find(|d| d.id == id)
            .expect("checked above");
        // No environment: the previous status's, else the deployment's. One given moves the deployment.
        let environment = match text("environment") {
            Some(environment) => {
                deployment.environment = environment.clone();
                environment
            }
            None => deployment
                .statuses
                .last()
                .map(|s| s.environment.clone())
                .unwrap_or_else(|| deployment.environment.clone()),
        };
        let log_url = text("log_url")
            .or_else(|| text("target_url"))
            .unwrap_or_default();
        let status = FakeDeploymentStatus {
            id: status_id,
            state: state.clone(),
            description,
            environment: environment.clone(),
            target_url: log_url.clone(),
            log_url,
            environment_url: text("environment_url").unwrap_or_default(),
            auto_inactive,
            creator: actor.to_string(),
            created_at: now(),
        };
        deployment.statuses.push(status.clone());
        let deployment = deployment.clone();
        let answer = status_json(&self.base_url, repo, &deployment, &status);
        if state == "success" && auto_inactive.unwrap_or(true) {
            self.mark_earlier_inactive(owner, name, id, &environment, actor);
        }
        Reply::json(201, answer)
    }

    /// `auto_inactive` (GitHub's default: true): every earlier deployment of the same
    /// environment whose latest status is `success` gets a new `inactive` status.
    /// GitHub's text says "non-transient, non-production", but it marks production
    /// deployments too; the fake does not model transient environments specially.
    fn mark_earlier_inactive(
        &mut self,
        owner: &str,
        name: &str,
        id: u64,
        environment: &str,
        actor: &str,
    ) {
        let repo = find_repo(&self.repos, owner, name).expect("checked by the caller");
        let earlier: Vec<u64> = repo
            .deployments
            .iter()
            .filter(|d| d.id < id && d.environment == environment)
            .filter(|d| d.statuses.last().is_some_and(|s| s.state == "success"))
            .map(|d| d.id)
            .collect();
        for earlier_id in earlier {
            let status_id = self.next_id("status");
            let repo = find_repo_mut(&mut self.repos, owner, name).expect("checked by the caller");
            let deployment = repo.deployments.iter_mut().find(|d| d.id == earlier_id);
            let deployment = deployment.expect("listed above");
            let previous = deployment
                .statuses
                .last()
                .cloned()
                .expect("has a success status");
            deployment.statuses.push(FakeDeploymentStatus {
                id: status_id,
                state: "inactive".to_string(),
                description: String::new(),
                auto_inactive: None,
                creator: actor.to_string(),
                created_at: now(),
                ..previous
            });
        }
    }

    fn list_comments(&self, req: &Incoming, owner: &str, name: &str, issue: u64) -> Reply {
        let Ok(repo) = find_repo(&self.repos, owner, name) else {
            return Reply::not_found(DOCS);
        };
        if !repo.has_issue(issue) {
            return Reply::not_found(DOCS);
        }
        let comments = repo.comments.iter().filter(|c| c.issue == issue);
        let items = comments
            .map(|c| comment_json(&self.base_url, repo, c))
            .collect();
        paginate(&self.base_url, req, items)
    }

    fn create_comment(
        &mut self,
        req: &Incoming,
        owner: &str,
        name: &str,
        issue: u64,
        actor: &str,
    ) -> Reply {
        let excerpt = &CREATE_ISSUE_COMMENT;
        let docs = excerpt.documentation_url();
        match find_repo(&self.repos, owner, name) {
            Ok(repo) if repo.has_issue(issue) => {}
            _ => return Reply::not_found(&docs),
        }
        let body = match parse_body(req, excerpt) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let text = body.get("body").and_then(Value::as_str).unwrap_or_default();
        if text.trim().is_empty() {
            return custom_error(excerpt, "body", "missing_field", "body wasn't supplied");
        }
        if text.chars().count() > 65536 {
            let message = "Body is too long (maximum is 65536 characters)";
            return custom_error(excerpt, "body", "custom", message);
        }
        let id = self.next_id("comment");
        let repo = find_repo_mut(&mut self.repos, owner, name).expect("checked above");
        let kind = if repo.pulls.contains_key(&issue) {
            "pull"
        } else {
            "issues"
        };
        let comment = FakeComment {
            id,
            issue,
            body: text.to_string(),
            user: actor.to_string(),
            html_url: format!(
                "https://github.com/{}/{kind}/{issue}#issuecomment-{id}",
                repo.full_name
            ),
            created_at: now(),
        };
        let answer = comment_json(&self.base_url, repo, &comment);
        repo.comments.push(comment);
        Reply::json(201, answer)
    }

    /// 201 for a new reaction; 200 with the existing one when this user already reacted
    /// with the same content.
    fn create_reaction(
        &mut self,
        req: &Incoming,
        owner: &str,
        name: &str,
        subject: Subject,
        actor: &str,
    ) -> Reply {
        let excerpt = match subject {
            Subject::Comment(_) => &CREATE_COMMENT_REACTION,
            Subject::Issue(_) => &CREATE_ISSUE_REACTION,
        };
        let docs = excerpt.documentation_url();
        let exists = find_repo(&self.repos, owner, name).is_ok_and(|repo| match subject {
            Subject::Comment(id) => repo.comments.iter().any(|c| c.id == id),
            Subject::Issue(number) => repo.has_issue(number),
        });
        if !exists {
            return Reply::not_found(&docs);
        }
        let body = match parse_body(req, excerpt) {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let content = body
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let repo = find_repo(&self.repos, owner, name).expect("checked above");
        let same = repo
            .reactions
            .iter()
            .find(|r| r.subject == subject && r.content == content && r.user == actor);
        if let Some(reaction) = same {
            return Reply::json(200, reaction_json(reaction));
        }
        let reaction = Reaction {
            id: self.next_id("reaction"),
            subject,
            content,
            user: actor.to_string(),
            created_at: now(),
        };
        let answer = reaction_json(&reaction);
        let repo = find_repo_mut(&mut self.repos, owner, name).expect("checked above");
        repo.reactions.push(reaction);
        Reply::json(201, answer)
    }
}

/// What a deployment `ref` names: a full SHA, a known short SHA, a branch or a tag
/// (with or without `refs/heads/` / `refs/tags/`); tags resolve to their commit.
fn resolve_ref(repo: &Repo, git_ref: &str) -> Option<String> {
    let is_hex = !git_ref.is_empty() && git_ref.chars().all(|c| c.is_ascii_hexdigit());
    if is_hex && git_ref.len() == 40 {
        return Some(git_ref.to_lowercase());
    }
    let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
    if let Some(sha) = repo.branches.get(branch) {
        return Some(sha.clone());
    }
    let tag = git_ref.strip_prefix("refs/tags/").unwrap_or(git_ref);
    if let Some(tag) = repo.tags.get(tag) {
        return Some(tag.commit_sha.clone());
    }
    if is_hex && git_ref.len() >= 7 {
        let known = repo
            .branches
            .values()
            .chain(repo.tags.values().map(|t| &t.commit_sha));
        let known = known.chain(repo.pulls.values().map(|p| &p.head_sha));
        return known
            .into_iter()
            .find(|sha| sha.starts_with(git_ref))
            .cloned();
    }
    None
}

// ---------------------------------------------------------------------------------------
// JSON shapes, as GitHub answers them
// ---------------------------------------------------------------------------------------

fn user_json(login: &str, kind: &str) -> Value {
    let id = stable_number(login) % 100_000_000;
    let url = format!("https://api.github.com/users/{login}");
    json!({
        "login": login,
        "id": id,
        "node_id": format!("U_fake{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": url,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{url}/followers"),
        "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"),
        "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"),
        "organizations_url": format!("{url}/orgs"),
        "repos_url": format!("{url}/repos"),
        "events_url": format!("{url}/events{{/privacy}}"),
        "received_events_url": format!("{url}/received_events"),
        "type": kind,
        "site_admin": false,
        "user_view_type": "public",
    })
}

fn actor_kind(login: &str) -> &'static str {
    if login.ends_with("[bot]") {
        "Bot"
    } else {
        "User"
    }
}

fn deployment_json(base_url: &str, repo: &Repo, d: &FakeDeployment) -> Value {
    let repo_url = format!("{base_url}/repos/{}", repo.full_name);
    let url = format!("{repo_url}/deployments/{}", d.id);
    json!({
        "url": url,
        "id": d.id,
        "node_id": format!("DE_fake{}", d.id),
        "sha": d.sha,
        "ref": d.git_ref,
        "task": d.task,
        "payload": d.payload,
        "original_environment": d.original_environment,
        "environment": d.environment,
        "description": d.description,
        "creator": user_json(&d.creator, actor_kind(&d.creator)),
        "created_at": d.created_at,
        "updated_at": d.statuses.last().map_or(&d.created_at, |s| &s.created_at),
        "statuses_url": format!("{url}/statuses"),
        "repository_url": repo_url,
        "transient_environment": d.transient_environment,
        "production_environment": d.production_environment,
        "performed_via_github_app": null,
    })
}

fn status_json(base_url: &str, repo: &Repo, d: &FakeDeployment, s: &FakeDeploymentStatus) -> Value {
    let repo_url = format!("{base_url}/repos/{}", repo.full_name);
    let deployment_url = format!("{repo_url}/deployments/{}", d.id);
    json!({
        "url": format!("{deployment_url}/statuses/{}", s.id),
        "id": s.id,
        "node_id": format!("DES_fake{}", s.id),
        "state": s.state,
        "creator": user_json(&s.creator, actor_kind(&s.creator)),
        "description": s.description,
        "environment": s.environment,
        "target_url": s.target_url,
        "created_at": s.created_at,
        "updated_at": s.created_at,
        "deployment_url": deployment_url,
        "repository_url": repo_url,
        "environment_url": s.environment_url,
        "log_url": s.log_url,
        "performed_via_github_app": null,
    })
}

fn comment_json(base_url: &str, repo: &Repo, c: &FakeComment) -> Value {
    let repo_url = format!("{base_url}/repos/{}", repo.full_name);
    json!({
        "id": c.id,
        "node_id": format!("IC_fake{}", c.id),
        "url": format!("{repo_url}/issues/comments/{}", c.id),
        "html_url": c.html_url,
        "body": c.body,
        "user": user_json(&c.user, actor_kind(&c.user)),
        "created_at": c.created_at,
        "updated_at": c.created_at,
        "issue_url": format!("{repo_url}/issues/{}", c.issue),
        "author_association": "NONE",
        "performed_via_github_app": null,
    })
}

// ---------------------------------------------------------------------------------------
// The App's webhook: deliveries, their listing and redelivery
// ---------------------------------------------------------------------------------------

/// GitHub's summary of an answer: (status, status_code).
fn hook_status(status_code: u16) -> (String, u16) {
    let status = match status_code {
        200..=299 => "OK".to_string(),
        502 => "failed to connect".to_string(),
        504 => "timed out".to_string(),
        code => format!("Invalid HTTP Response: {code}"),
    };
    (status, status_code)
}

/// Sends one attempt to the target (blocking, at most [`HOOK_TIMEOUT`]) and records it.
fn deliver_hook(shared: &Arc<Mutex<State>>, send: HookSend) -> HookAttempt {
    let target = {
        let state = lock(shared);
        let installation = state.app.as_ref().map(|a| (a.app_id, a.installation_id));
        state.hook_target.as_ref().map(|t| {
            let signature = deploybot::github::webhook::signature::sign(
                t.secret.as_bytes(),
                send.body.as_bytes(),
            );
            (t.url.clone(), signature, installation)
        })
    };
    let started = std::time::Instant::now();
    let status_code = match target {
        Some((url, signature, installation)) => post_hook(&url, &signature, installation, &send)
            .unwrap_or_else(|timed_out| if timed_out { 504 } else { 502 }),
        None => 502,
    };
    let mut state = lock(shared);
    let attempt = state.hook_attempt(
        send,
        hook_status(status_code),
        started.elapsed().as_secs_f64(),
    );
    state.hook_attempts.push(attempt.clone());
    attempt
}

/// One HTTP/1.1 POST with GitHub's webhook headers; the answer's status, or whether
/// it failed by timing out.
fn post_hook(
    url: &str,
    signature: &str,
    installation: Option<(u64, u64)>,
    send: &HookSend,
) -> Result<u16, bool> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or(false)?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let address = std::net::ToSocketAddrs::to_socket_addrs(host)
        .map_err(|_| false)?
        .next()
        .ok_or(false)?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, HOOK_TIMEOUT).map_err(|_| false)?;
    stream
        .set_read_timeout(Some(HOOK_TIMEOUT))
        .map_err(|_| false)?;
    stream
        .set_write_timeout(Some(HOOK_TIMEOUT))
        .map_err(|_| false)?;
    let (app_id, _) = installation.unwrap_or_default();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: GitHub-Hookshot/fake\r\n\
         Accept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         X-GitHub-Event: {}\r\nX-GitHub-Delivery: {}\r\nX-GitHub-Hook-ID: 1\r\n\
         X-GitHub-Hook-Installation-Target-Type: integration\r\n\
         X-GitHub-Hook-Installation-Target-ID: {app_id}\r\n\
         X-Hub-Signature-256: {signature}\r\nConnection: close\r\n\r\n",
        send.body.len(),
        send.event,
        send.guid,
    );
    let timed_out = |e: std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(send.body.as_bytes()))
        .map_err(timed_out)?;
    // The status line is all GitHub records.
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) => return Err(timed_out(e)),
        }
    }
    let line = String::from_utf8_lossy(&answer);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(false)
}

impl State {
    fn hook_attempt(
        &mut self,
        send: HookSend,
        status: (String, u16),
        duration: f64,
    ) -> HookAttempt {
        let payload: Value = serde_json::from_str(&send.body).unwrap_or(Value::Null);
        HookAttempt {
            id: self.next_id("hook_delivery"),
            guid: send.guid,
            event: send.event,
            action: payload["action"].as_str().map(str::to_string),
            redelivery: send.redelivery,
            status: status.0,
            status_code: status.1,
            delivered_at: now(),
            duration,
            installation_id: self.app.as_ref().map(|a| a.installation_id),
            repository_id: payload["repository"]["id"].as_u64(),
            body: send.body,
        }
    }

    /// `GET /app/hook/deliveries`: newest first, `per_page` (default 30, at most 100),
    /// `status` (success: 200-399, failure: 400-599) and an opaque `cursor` that the
    /// `Link` header's `rel="next"` names.
    fn list_hook_deliveries(&self, req: &Incoming) -> Reply {
        let docs = LIST_HOOK_DELIVERIES_PARAMETERS.documentation_url();
        for parameter in LIST_HOOK_DELIVERIES_PARAMETERS
            .schema()
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(name) = parameter["name"].as_str() else {
                continue;
            };
            let Some(raw) = req.query.get(name) else {
                continue;
            };
            let value = match parameter["schema"]["type"].as_str() {
                Some("integer") => match raw.parse::<i64>() {
                    Ok(n) => json!(n),
                    Err(_) => return Reply::error(400, "Bad Request", &docs),
                },
                _ => json!(raw),
            };
            if !validate(&parameter["schema"], &value).is_empty() {
                return Reply::json(
                    422,
                    json!({
                        "message": "Validation Failed",
                        "errors": [{"resource": "HookDelivery", "field": name, "code": "invalid", "value": raw}],
                        "documentation_url": docs,
                        "status": "422",
                    }),
                );
            }
        }
        let per_page = req
            .query
            .get("per_page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(30)
            .clamp(1, 100);
        let start = match req.query.get("cursor") {
            None => u64::MAX,
            Some(cursor) => match cursor.strip_prefix("v1_").and_then(|id| id.parse().ok()) {
                Some(id) => id,
                None => return Reply::error(400, "Bad Request", &docs),
            },
        };
        let status = req.query.get("status").map(String::as_str);
        let mut matching: Vec<&HookAttempt> = self
            .hook_attempts
            .iter()
            .filter(|a| a.id <= start)
            .filter(|a| match status {
                Some("success") => (200..400).contains(&a.status_code),
                Some("failure") => (400..600).contains(&a.status_code),
                _ => true,
            })
            .collect();
        matching.sort_by_key(|a| std::cmp::Reverse(a.id));
        let page: Vec<Value> = matching
            .iter()
            .take(per_page)
            .map(|a| hook_json(a))
            .collect();
        let mut reply = Reply::json(200, Value::Array(page));
        if let Some(next) = matching.get(per_page) {
            let status = status.map(|s| format!("&status={s}")).unwrap_or_default();
            reply.headers.push((
                "link".to_string(),
                format!(
                    "<{}/app/hook/deliveries?per_page={per_page}&cursor=v1_{}{status}>; rel=\"next\"",
                    self.base_url, next.id
                ),
            ));
        }
        reply
    }

    /// `POST /app/hook/deliveries/{delivery_id}/attempts`: 202, then the delivery is
    /// sent again (same GUID, headers and body) as a new attempt marked `redelivery`.
    fn redeliver_hook_delivery(&mut self, delivery: &str) -> Reply {
        let docs = REDELIVER_HOOK_DELIVERY_RESPONSE.documentation_url();
        let Some(attempt) = delivery
            .parse::<u64>()
            .ok()
            .and_then(|id| self.hook_attempts.iter().find(|a| a.id == id))
        else {
            return Reply::not_found(&docs);
        };
        self.hook_sends.push(HookSend {
            guid: attempt.guid.clone(),
            event: attempt.event.clone(),
            body: attempt.body.clone(),
            redelivery: true,
        });
        Reply::json(202, json!({}))
    }
}

/// A simple webhook delivery, as GitHub lists it.
fn hook_json(a: &HookAttempt) -> Value {
    json!({
        "id": a.id,
        "guid": a.guid,
        "delivered_at": a.delivered_at,
        "redelivery": a.redelivery,
        "duration": a.duration,
        "status": a.status,
        "status_code": a.status_code,
        "event": a.event,
        "action": a.action,
        "installation_id": a.installation_id,
        "repository_id": a.repository_id,
        "throttled_at": null,
    })
}

fn reaction_json(r: &Reaction) -> Value {
    json!({
        "id": r.id,
        "node_id": format!("REA_fake{}", r.id),
        "user": user_json(&r.user, actor_kind(&r.user)),
        "content": r.content,
        "created_at": r.created_at,
    })
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn stable_number(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// A 40-hex-digit SHA-like name, stable for the same parts.
fn fake_sha(parts: &[&str]) -> String {
    let joined = parts.join("\u{0}");
    let first = stable_number(&joined);
    let second = stable_number(&format!("{joined}\u{1}"));
    let third = stable_number(&format!("{joined}\u{2}"));
    format!("{first:016x}{second:016x}{:08x}", third as u32)
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
