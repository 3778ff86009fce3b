//! The REST API under `/v1`: the deploy Service over HTTP for scripts, CI and the CLI.
//! Every route but `/v1/openapi.json` needs a bearer token, and the tenant comes from it.
//! Routes are registered through `utoipa_actix_web`, so registering a route is what puts
//! it in the OpenAPI document served at `/v1/openapi.json`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use actix_web::dev::{Payload, ServiceFactory, ServiceRequest};
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, get, post};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, OpenApi as OpenApiDocument};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_actix_web::OpenApiFactory;

use super::AppState;
use super::auth::{Authorized, Caller, HOW_TO_AUTHENTICATE, need};
use super::error::{self, ApiError, ErrorBody};
use crate::deploy::service::blocking;
use crate::deploy::{
    DeployKind, DeployListResult, DeployRequest, DeployState, Deployment, DeploymentId, Error,
    Instance, ListOptions, LogEntry, Progress, Release, ReleaseId, ReleaseListResult,
    RollbackTarget, Source, Store,
};
use crate::id::IdError;

/// The largest request body the API reads.
pub const BODY_LIMIT: usize = 256 * 1024;
/// Log lines per page when `limit` is not given, and the most a page may hold.
pub const LOG_PAGE_LIMIT: u32 = 1000;

// ---------------------------------------------------------------------------------------------
// What the API answers. These mirror the domain types field for field (same JSON names),
// so that the OpenAPI document describes exactly what is sent.
// ---------------------------------------------------------------------------------------------

/// The lifecycle state of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DeployState)]
pub enum DeployStateJson {
    Pending,
    Running,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

impl From<DeployState> for DeployStateJson {
    fn from(state: DeployState) -> Self {
        match state {
            DeployState::Pending => Self::Pending,
            DeployState::Running => Self::Running,
            DeployState::Succeeded => Self::Succeeded,
            DeployState::Failed => Self::Failed,
            DeployState::RolledBack => Self::RolledBack,
            DeployState::Cancelled => Self::Cancelled,
        }
    }
}

/// Why a deployment exists: a new release, or the return to an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = DeployKind)]
pub enum DeployKindJson {
    Deploy,
    Rollback,
}

impl From<DeployKind> for DeployKindJson {
    fn from(kind: DeployKind) -> Self {
        match kind {
            DeployKind::Deploy => Self::Deploy,
            DeployKind::Rollback => Self::Rollback,
        }
    }
}

/// Where a running deployment is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Progress)]
pub struct ProgressJson {
    #[schema(example = "shift traffic")]
    pub phase: String,
    /// 0 to 100.
    #[schema(minimum = 0, maximum = 100)]
    pub percent: i32,
    pub message: String,
}

impl From<Progress> for ProgressJson {
    fn from(p: Progress) -> Self {
        Self {
            phase: p.phase,
            percent: p.percent,
            message: p.message,
        }
    }
}

/// One attempt to make a release run on an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Deployment)]
pub struct DeploymentJson {
    #[schema(example = "dep_01h455vb4pex5vsknk084sn02q")]
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[schema(example = "acme")]
    pub tenant_id: String,
    #[schema(example = "inst_01h455vb4pex5vsknk084sn02q")]
    pub instance_id: String,
    #[schema(example = "rel_01h455vb4pex5vsknk084sn02q")]
    pub release_id: String,
    pub state: DeployStateJson,
    #[schema(example = "canary")]
    pub strategy: String,
    #[schema(example = "ghcr.io/acme/web:v1.2.3")]
    pub image: String,
    pub env: BTreeMap<String, String>,
    /// What the provider calls the deployed thing (e.g. the live slot); absent when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed; absent when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Who started it: an API token's name, or a GitHub login.
    #[schema(example = "ci")]
    pub initiator: String,
    pub progress: ProgressJson,
    pub kind: DeployKindJson,
    /// Where the deployment came from (the trigger in words, and GitHub objects).
    pub source: SourceJson,
    /// The id of the GitHub Deployment that mirrors this one, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_deployment_id: Option<i64>,
}

/// Where a deployment came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Source)]
pub struct SourceJson {
    /// "push to main by @octocat (abc1234)", "/deploy on #42 by @octocat", "API (ci)".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger: String,
    /// The pull request of a comment command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    /// The comment that carried the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<u64>,
    /// The GitHub App installation that delivered the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
}

impl From<Source> for SourceJson {
    fn from(s: Source) -> Self {
        Self {
            trigger: s.trigger,
            pull_request: s.pull_request,
            comment_id: s.comment_id,
            installation_id: s.installation_id,
        }
    }
}

impl From<Deployment> for DeploymentJson {
    fn from(d: Deployment) -> Self {
        Self {
            id: d.id.to_string(),
            created_at: d.created_at,
            updated_at: d.updated_at,
            tenant_id: d.tenant_id,
            instance_id: d.instance_id.to_string(),
            release_id: d.release_id.to_string(),
            state: d.state.into(),
            strategy: d.strategy,
            image: d.image,
            env: d.env,
            provider_ref: d.provider_ref,
            started_at: d.started_at,
            finished_at: d.finished_at,
            error: d.error,
            initiator: d.initiator,
            progress: d.progress.into(),
            kind: d.kind.into(),
            source: d.source.into(),
            github_deployment_id: d.github_deployment_id,
        }
    }
}

/// An immutable snapshot of what runs, numbered per instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Release)]
pub struct ReleaseJson {
    #[schema(example = "rel_01h455vb4pex5vsknk084sn02q")]
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub tenant_id: String,
    #[schema(example = "inst_01h455vb4pex5vsknk084sn02q")]
    pub instance_id: String,
    /// 1, 2, 3 … per instance.
    #[schema(example = 3)]
    pub version: i64,
    pub image: String,
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit_sha: String,
    /// The one release of the instance that is running now.
    pub active: bool,
}

impl From<Release> for ReleaseJson {
    fn from(r: Release) -> Self {
        Self {
            id: r.id.to_string(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            tenant_id: r.tenant_id,
            instance_id: r.instance_id.to_string(),
            version: r.version,
            image: r.image,
            env: r.env,
            notes: r.notes,
            commit_sha: r.commit_sha,
            active: r.active,
        }
    }
}

/// A deploy target with its active release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Instance)]
pub struct InstanceJson {
    #[schema(example = "inst_01h455vb4pex5vsknk084sn02q")]
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub tenant_id: String,
    #[schema(example = "web-production")]
    pub name: String,
    #[schema(example = "acme/web")]
    pub repo: String,
    #[schema(example = "production")]
    pub environment: String,
    /// False when the instance left the configuration: its history stays, it cannot deploy.
    pub configured: bool,
    /// The release running now; null before the first successful deployment.
    pub active_release: Option<ReleaseJson>,
}

impl InstanceJson {
    fn new(i: Instance, active: Option<Release>, configured: bool) -> Self {
        Self {
            id: i.id.to_string(),
            created_at: i.created_at,
            updated_at: i.updated_at,
            tenant_id: i.tenant_id,
            name: i.name,
            repo: i.repo,
            environment: i.environment,
            configured,
            active_release: active.map(Into::into),
        }
    }
}

/// The caller's instances, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = InstanceList)]
pub struct InstanceListJson {
    pub items: Vec<InstanceJson>,
}

/// One page of deployments, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = DeployListResult)]
pub struct DeployListJson {
    pub items: Vec<DeploymentJson>,
    /// Pass as `cursor` to read the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// How many deployments the instance has in all.
    pub total: i64,
}

impl From<DeployListResult> for DeployListJson {
    fn from(page: DeployListResult) -> Self {
        Self {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
            total: page.total,
        }
    }
}

/// One page of releases, highest version first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ReleaseListResult)]
pub struct ReleaseListJson {
    pub items: Vec<ReleaseJson>,
    /// Pass as `cursor` to read the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// How many releases the instance has in all.
    pub total: i64,
}

impl From<ReleaseListResult> for ReleaseListJson {
    fn from(page: ReleaseListResult) -> Self {
        Self {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
            total: page.total,
        }
    }
}

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = LogEntry)]
pub struct LogEntryJson {
    /// 1, 2, 3 … per deployment.
    pub seq: i64,
    /// `stdout`, `stderr` or `deploybot`.
    pub stream: String,
    pub line: String,
    pub at: DateTime<Utc>,
}

impl From<LogEntry> for LogEntryJson {
    fn from(l: LogEntry) -> Self {
        Self {
            seq: l.seq,
            stream: l.stream,
            line: l.line,
            at: l.at,
        }
    }
}

/// Log lines after `after`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = LogPage)]
pub struct LogPageJson {
    pub items: Vec<LogEntryJson>,
    /// Pass as `after` to read the lines that follow (the last `seq`, or `after` when empty).
    pub next_after: i64,
}

// ---------------------------------------------------------------------------------------------
// What the API reads.
// ---------------------------------------------------------------------------------------------

/// A deploy: run this image with this env on the instance of the path.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// The image reference to run.
    #[schema(example = "ghcr.io/acme/web:v1.2.3")]
    pub image: String,
    /// Environment variables of the release.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `rolling`, `recreate`, `blue-green` or `canary`; empty: the instance's strategy.
    #[serde(default)]
    pub strategy: String,
    #[serde(default)]
    pub notes: String,
    /// The commit the image was built from (7 to 64 hex characters).
    #[serde(default)]
    #[schema(example = "9fceb02d0ae598e95dc970b74767f19372d61af8")]
    pub commit_sha: String,
}

/// A rollback: at most one of `release_id`, `version` and `to`; none means the previous
/// release (the one that was active before the active one).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// Return to this release (`rel_…`) of the instance.
    #[serde(default)]
    #[schema(example = "rel_01h455vb4pex5vsknk084sn02q")]
    pub release_id: Option<String>,
    /// Return to this version of the instance.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub version: Option<i64>,
    /// `previous` (the default).
    #[serde(default)]
    #[schema(example = "previous")]
    pub to: Option<String>,
}

impl RollbackBody {
    fn target(self) -> Result<RollbackTarget, ApiError> {
        let given = [
            self.release_id.is_some(),
            self.version.is_some(),
            self.to.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(ApiError::invalid_request(
                "give at most one of release_id, version and to",
            ));
        }
        if let Some(text) = self.release_id {
            return parse_id::<ReleaseId>("field `release_id`", &text).map(RollbackTarget::Release);
        }
        if let Some(version) = self.version {
            if version < 1 {
                return Err(ApiError::invalid_request(format!(
                    "version {version} is not a release version: versions start at 1"
                )));
            }
            return Ok(RollbackTarget::Version(version));
        }
        match self.to.as_deref() {
            None | Some("previous") => Ok(RollbackTarget::Previous),
            Some(other) => Err(ApiError::invalid_request(format!(
                "to {other:?} is not a rollback target: use \"previous\", or give release_id or version"
            ))),
        }
    }
}

/// `?cursor&limit` of the list routes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The `next_cursor` of the previous page; omit it for the first page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

impl ListQuery {
    fn options(self) -> Result<ListOptions, ApiError> {
        let max = i64::from(ListOptions::MAX_LIMIT);
        let limit = self
            .limit
            .map(|text| integer("limit", &text, 1, max))
            .transpose()?
            .map(|n| u32::try_from(n).unwrap_or(ListOptions::MAX_LIMIT));
        Ok(ListOptions {
            cursor: self.cursor,
            limit,
        })
    }
}

/// `?after&limit` of the log route.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only lines with a larger `seq` (default 0: from the start).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub after: Option<String>,
    /// Lines per page, 1 to 1000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// An integer query parameter in `min..=max`, or a 400 naming the parameter and the range.
fn integer(name: &str, text: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    let value: i64 = text.trim().parse().map_err(|_| {
        ApiError::invalid_request(format!(
            "query parameter `{name}` is {text:?}, not an integer: use {min} to {max}"
        ))
    })?;
    if !(min..=max).contains(&value) {
        return Err(ApiError::invalid_request(format!(
            "query parameter `{name}` is {value}, out of range: use {min} to {max}"
        )));
    }
    Ok(value)
}

/// A TypeID, or a 400 naming where it came from (`path parameter `id``).
fn parse_id<T: FromStr<Err = IdError>>(what: &str, text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|e: IdError| ApiError::invalid_request(format!("{what}: {e}")))
}

/// A JSON request body read with the field path in every error (`env.PORT: invalid type…`),
/// limited to `BODY_LIMIT`. An empty body reads as `{}`.
pub struct ApiJson<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn decode_json<T: DeserializeOwned>(req: &HttpRequest, bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else if is_json(req) {
        bytes
    } else {
        return Err(error::not_json());
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(ApiError::from_json)?;
    de.end().map_err(|e| {
        ApiError::invalid_request(format!("the request body is not valid JSON: {e}"))
    })?;
    // JSON can carry U+0000 only as the escape `\u0000`; most bodies skip the second read.
    if bytes.windows(6).any(|w| w == b"\\u0000")
        && let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(field) = nul_field(&parsed, String::new())
    {
        return Err(ApiError::invalid_request(format!(
            "{field} contains a NUL character (U+0000), which deploybot cannot store: remove it"
        )));
    }
    Ok(value)
}

/// The path (`env.KEY`, `items[2]`) of the first key or string in `value` holding a NUL.
fn nul_field(value: &serde_json::Value, path: String) -> Option<String> {
    let name = |path: &str| {
        if path.is_empty() {
            "the request body".to_string()
        } else {
            format!("field `{path}`")
        }
    };
    match value {
        serde_json::Value::String(s) => s.contains('\0').then(|| name(&path)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_field(item, format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let inner = if path.is_empty() {
                key.escape_debug().to_string()
            } else {
                format!("{path}.{}", key.escape_debug())
            };
            if key.contains('\0') {
                Some(format!("the name of {}", name(&inner)))
            } else {
                nul_field(item, inner)
            }
        }),
        _ => None,
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = Bytes::from_request(&req, payload);
        Box::pin(async move {
            let bytes = body
                .await
                .map_err(|e| ApiError::from_payload(&e, BODY_LIMIT))?;
            decode_json(&req, &bytes).map(ApiJson)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// The caller's instance named by `key` (an `inst_…` id or a name), or a 404. An instance
/// outside the token's `instances` globs is a 404 too, the same as one that does not exist.
async fn resolve(state: &AppState, caller: &Caller, key: &str) -> Result<Instance, ApiError> {
    let instance = state.service.resolve_instance(&caller.tenant, key).await?;
    if !caller.covers(&instance.name) {
        return Err(Error::not_found("instance", key).into());
    }
    Ok(instance)
}

/// Whether the instance `id` of the caller's tenant is within the token's globs.
async fn covers_instance(
    state: &AppState,
    caller: &Caller,
    id: crate::deploy::InstanceId,
) -> Result<bool, ApiError> {
    if caller.instances.is_empty() {
        return Ok(true);
    }
    let instance = state
        .service
        .resolve_instance(&caller.tenant, &id.to_string())
        .await?;
    Ok(caller.covers(&instance.name))
}

/// The caller's deployment `id`, or a 404 (also when its instance is outside the token's
/// globs).
async fn visible_deployment(
    state: &AppState,
    caller: &Caller,
    id: DeploymentId,
) -> Result<Deployment, ApiError> {
    let deployment = state.service.get_deployment(&caller.tenant, id).await?;
    if !covers_instance(state, caller, deployment.instance_id).await? {
        return Err(Error::not_found("deployment", id).into());
    }
    Ok(deployment)
}

/// A deploy's `env` may name only what may reach a child process at all
/// (`deploy::env`) and what the instance's `api_env` lists: anything else is a 422 naming it.
fn check_api_env(
    state: &AppState,
    tenant: &str,
    instance: &Instance,
    env: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let allowed = state
        .config
        .instance(tenant, &instance.name)
        .map(|i| i.api_env.as_slice())
        .unwrap_or_default();
    for name in env.keys() {
        crate::deploy::env::check_release_name(name)
            .map_err(|e| ApiError::invalid_env(format!("env: {e}")))?;
        if !allowed.contains(name) {
            return Err(ApiError::invalid_env(format!(
                "env: {name} cannot be set through the API for instance {}: ask an operator to add \"{name}\" to the instance's api_env in the configuration",
                instance.name
            )));
        }
    }
    Ok(())
}

fn created(deployment: Deployment) -> HttpResponse {
    let location = format!("/v1/deployments/{}", deployment.id);
    HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(DeploymentJson::from(deployment))
}

/// List the caller's instances, each with its active release.
#[utoipa::path(
    tag = "instances",
    responses(
        (status = 200, description = "The tenant's instances, by name", body = InstanceListJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/instances")]
async fn list_instances(
    caller: Authorized<need::Read>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut instances = state.service.list_instances(&caller.tenant).await?;
    instances.retain(|i| caller.covers(&i.name));
    let store = Arc::clone(&state.store);
    let tenant = caller.tenant.clone();
    let with_active = blocking(move || {
        instances
            .into_iter()
            .map(|i| {
                let active = store.active_release(&tenant, i.id)?;
                Ok((i, active))
            })
            .collect::<Result<Vec<_>, Error>>()
    })
    .await?;
    let catalog = state.service.catalog();
    let items = with_active
        .into_iter()
        .map(|(i, active)| {
            let configured = catalog.spec(&caller.tenant, &i.name).is_some();
            InstanceJson::new(i, active, configured)
        })
        .collect();
    Ok(HttpResponse::Ok().json(InstanceListJson { items }))
}

/// Queue a deployment of a new release of the instance; it runs later, in a worker.
#[utoipa::path(
    tag = "deployments",
    params(("instance" = String, Path, description = "An instance id (`inst_…`) or name")),
    request_body(content = DeployBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Queued (pending)", body = DeploymentJson,
            headers(("Location" = String, description = "The deployment's URL"))),
        (status = 400, description = "The body or a value in it is wrong", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than deploy", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "An env name is refused, or not in the instance's api_env", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/instances/{instance}/deploy")]
async fn deploy(
    caller: Authorized<need::Deploy>,
    state: web::Data<AppState>,
    instance: web::Path<String>,
    body: ApiJson<DeployBody>,
) -> Result<HttpResponse, ApiError> {
    let instance = resolve(&state, &caller, &instance).await?;
    let ApiJson(body) = body;
    check_api_env(&state, &caller.tenant, &instance, &body.env)?;
    let request = DeployRequest {
        instance_id: instance.id,
        image: body.image,
        env: body.env,
        strategy: body.strategy,
        notes: body.notes,
        commit_sha: body.commit_sha,
    };
    let deployment = state
        .service
        .deploy(&caller.tenant, request, &caller.name)
        .await?;
    Ok(created(deployment))
}

/// Queue a deployment of an existing release of the instance (no new release).
#[utoipa::path(
    tag = "deployments",
    params(("instance" = String, Path, description = "An instance id (`inst_…`) or name")),
    request_body(content = RollbackBody, content_type = "application/json",
        description = "`{\"release_id\": …}`, `{\"version\": …}`, or `{}` / `{\"to\": \"previous\"}`"),
    responses(
        (status = 201, description = "Queued (pending)", body = DeploymentJson,
            headers(("Location" = String, description = "The deployment's URL"))),
        (status = 400, description = "The body is wrong, or there is no previous release", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than deploy", body = ErrorBody),
        (status = 404, description = "No such instance, release or version for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/instances/{instance}/rollback")]
async fn rollback(
    caller: Authorized<need::Deploy>,
    state: web::Data<AppState>,
    instance: web::Path<String>,
    body: ApiJson<RollbackBody>,
) -> Result<HttpResponse, ApiError> {
    let target = body.0.target()?;
    let instance = resolve(&state, &caller, &instance).await?;
    let deployment = state
        .service
        .rollback(&caller.tenant, instance.id, target, &caller.name)
        .await?;
    Ok(created(deployment))
}

/// The instance's deployments, newest first, one page at a time.
#[utoipa::path(
    tag = "deployments",
    params(("instance" = String, Path, description = "An instance id (`inst_…`) or name"), ListQuery),
    responses(
        (status = 200, description = "One page", body = DeployListJson),
        (status = 400, description = "A bad cursor or limit", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/instances/{instance}/deployments")]
async fn list_deployments(
    caller: Authorized<need::Read>,
    state: web::Data<AppState>,
    instance: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let options = query.into_inner().options()?;
    let instance = resolve(&state, &caller, &instance).await?;
    let page = state
        .service
        .list_deployments(&caller.tenant, instance.id, options)
        .await?;
    Ok(HttpResponse::Ok().json(DeployListJson::from(page)))
}

/// The instance's releases, highest version first, one page at a time.
#[utoipa::path(
    tag = "releases",
    params(("instance" = String, Path, description = "An instance id (`inst_…`) or name"), ListQuery),
    responses(
        (status = 200, description = "One page", body = ReleaseListJson),
        (status = 400, description = "A bad cursor or limit", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/instances/{instance}/releases")]
async fn list_releases(
    caller: Authorized<need::Read>,
    state: web::Data<AppState>,
    instance: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let options = query.into_inner().options()?;
    let instance = resolve(&state, &caller, &instance).await?;
    let page = state
        .service
        .list_releases(&caller.tenant, instance.id, options)
        .await?;
    Ok(HttpResponse::Ok().json(ReleaseListJson::from(page)))
}

/// One deployment.
#[utoipa::path(
    tag = "deployments",
    params(("id" = String, Path, description = "A deployment id (`dep_…`)")),
    responses(
        (status = 200, description = "The deployment", body = DeploymentJson),
        (status = 400, description = "The id is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such deployment for the tenant (or outside the token's instances)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/deployments/{id}")]
async fn get_deployment(
    caller: Authorized<need::Read>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: DeploymentId = parse_id("path parameter `id`", &id)?;
    let deployment = visible_deployment(&state, &caller, id).await?;
    Ok(HttpResponse::Ok().json(DeploymentJson::from(deployment)))
}

/// Cancel a deployment: a pending one at once, a running one is stopped by its worker.
#[utoipa::path(
    tag = "deployments",
    params(("id" = String, Path, description = "A deployment id (`dep_…`)")),
    responses(
        (status = 204, description = "Cancelled, or cancellation requested"),
        (status = 400, description = "The id is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than deploy", body = ErrorBody),
        (status = 404, description = "No such deployment for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 409, description = "The deployment has already finished", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/deployments/{id}/cancel")]
async fn cancel(
    caller: Authorized<need::Deploy>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: DeploymentId = parse_id("path parameter `id`", &id)?;
    visible_deployment(&state, &caller, id).await?;
    state
        .service
        .cancel(&caller.tenant, id, &caller.name)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A deployment's log lines after `after` (to follow a deployment, pass `next_after` back).
#[utoipa::path(
    tag = "deployments",
    params(("id" = String, Path, description = "A deployment id (`dep_…`)"), LogQuery),
    responses(
        (status = 200, description = "Log lines, oldest first", body = LogPageJson),
        (status = 400, description = "The id, after or limit is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such deployment for the tenant (or outside the token's instances)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/deployments/{id}/logs")]
async fn logs(
    caller: Authorized<need::Read>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let id: DeploymentId = parse_id("path parameter `id`", &id)?;
    let LogQuery { after, limit } = query.into_inner();
    let after = match after {
        None => 0,
        Some(text) => integer("after", &text, 0, i64::MAX)?,
    };
    let limit = match limit {
        None => LOG_PAGE_LIMIT,
        Some(text) => {
            let n = integer("limit", &text, 1, i64::from(LOG_PAGE_LIMIT))?;
            u32::try_from(n).unwrap_or(LOG_PAGE_LIMIT)
        }
    };
    // A deployment of another tenant (or instance) is a 404, not an empty log.
    visible_deployment(&state, &caller, id).await?;
    let lines = state
        .service
        .read_logs(&caller.tenant, id, after, limit)
        .await?;
    let next_after = lines.last().map_or(after, |l| l.seq);
    Ok(HttpResponse::Ok().json(LogPageJson {
        items: lines.into_iter().map(Into::into).collect(),
        next_after,
    }))
}

/// One release.
#[utoipa::path(
    tag = "releases",
    params(("id" = String, Path, description = "A release id (`rel_…`)")),
    responses(
        (status = 200, description = "The release", body = ReleaseJson),
        (status = 400, description = "The id is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such release for the tenant (or outside the token's instances)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/releases/{id}")]
async fn get_release(
    caller: Authorized<need::Read>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ReleaseId = parse_id("path parameter `id`", &id)?;
    let release = state.service.get_release(&caller.tenant, id).await?;
    if !covers_instance(&state, &caller, release.instance_id).await? {
        return Err(Error::not_found("release", id).into());
    }
    Ok(HttpResponse::Ok().json(ReleaseJson::from(release)))
}

/// The OpenAPI document built from the registered routes.
struct ApiDocument(OpenApiDocument);

/// This document (no token needed).
#[utoipa::path(
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document of /v1", body = Object, content_type = "application/json"))
)]
#[get("/openapi.json")]
async fn openapi_json(doc: web::Data<ApiDocument>) -> HttpResponse {
    HttpResponse::Ok().json(&doc.0)
}

/// Anything else under /v1: a 405 when the path exists with other methods, else a 404.
async fn unknown_route(req: HttpRequest, doc: Option<web::Data<ApiDocument>>) -> HttpResponse {
    let method = req.method().as_str().to_string();
    let path = req.path().to_string();
    let allowed = req
        .resource_map()
        .match_pattern(&path)
        .zip(doc)
        .and_then(|(pattern, doc)| doc.0.paths.paths.get(&pattern).map(methods_of))
        .unwrap_or_default();
    let err = if allowed.is_empty() {
        ApiError::not_found(format!(
            "there is no route {method} {path}: the routes are listed in /v1/openapi.json"
        ))
    } else {
        ApiError::method_not_allowed(
            format!(
                "{path} does not accept {method}: use {}",
                allowed.join(" or ")
            ),
            &allowed,
        )
    };
    err.error_response()
}

/// The methods a path item of the document has.
pub fn methods_of(item: &utoipa::openapi::PathItem) -> Vec<String> {
    [
        ("GET", &item.get),
        ("PUT", &item.put),
        ("POST", &item.post),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("HEAD", &item.head),
        ("PATCH", &item.patch),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter(|(_, op)| op.is_some())
    .map(|(m, _)| m.to_string())
    .collect()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "deploybot REST API",
        description = "The deploy Service over HTTP. Authenticate with `Authorization: Bearer <token>`; the tenant comes from the token. Errors are `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "instances", description = "Configured deploy targets"),
        (name = "deployments", description = "Attempts to run a release on an instance"),
        (name = "releases", description = "Immutable, numbered snapshots of what runs"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` security scheme the operations require.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        openapi
            .components
            .get_or_insert_with(Components::new)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(HOW_TO_AUTHENTICATE))
                        .build(),
                ),
            );
    }
}

/// Registers every route of /v1 on `scope`; each lands in the OpenAPI document too.
fn register<T>(scope: utoipa_actix_web::scope::Scope<T>) -> utoipa_actix_web::scope::Scope<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    scope
        .service(list_instances)
        .service(deploy)
        .service(rollback)
        .service(list_deployments)
        .service(list_releases)
        .service(get_deployment)
        .service(cancel)
        .service(logs)
        .service(get_release)
        .service(openapi_json)
}

/// The document: the fixed parts of `ApiDoc` plus the paths and schemas of `scope`.
fn document(scope: &impl OpenApiFactory) -> OpenApiDocument {
    let mut doc = ApiDoc::openapi();
    doc.paths.merge(scope.paths());
    let mut schemas = Vec::new();
    scope.schemas(&mut schemas);
    doc.components
        .get_or_insert_with(Components::new)
        .schemas
        .extend(schemas);
    doc
}

/// The OpenAPI document of /v1, as served at `/v1/openapi.json`.
pub fn openapi() -> OpenApiDocument {
    document(&register(utoipa_actix_web::scope("/v1")))
}

/// Mounts /v1: the routes, their OpenAPI document, and error answers in the API's shape
/// for bad input and unknown routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let scope = register(utoipa_actix_web::scope("/v1"));
    let doc = document(&scope);
    cfg.service(
        scope
            .app_data(web::Data::new(ApiDocument(doc)))
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .app_data(error::json_config(BODY_LIMIT))
            .app_data(error::path_config())
            .app_data(error::query_config())
            .default_service(web::to(unknown_route)),
    );
}
