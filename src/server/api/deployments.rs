//! Deployments: queueing a deploy or a rollback of an instance, listing an instance's
//! deployments, reading and cancelling one.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::ToSchema;

use super::input::{ApiJson, ListQuery, parse_id, present, present_integer};
use super::instances::{covers_instance, resolve};
use super::schema::{
    DeploymentIdSchema, InstanceIdSchema, InstanceKeySchema, ParamsSchema, ReleaseEnvSchema,
    ReleaseIdSchema, RequestedStrategySchema, RollbackBodySchema, StrategySchema,
};
use crate::config::Role;
use crate::deploy::provider::GateReading;
use crate::deploy::{
    Actor, DeployKind, DeployListResult, DeployRequest, DeployState, Deployment, DeploymentId,
    Error, Instance, Progress, ReleaseId, RollbackTarget, Source, WaitKind, WaitingFor,
};
use crate::server::AppState;
use crate::server::auth::{Authorized, Caller, need};
use crate::server::error::{ApiError, ErrorBody};

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
    #[schema(value_type = DeploymentIdSchema)]
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[schema(example = "acme")]
    pub tenant_id: String,
    #[schema(value_type = InstanceIdSchema)]
    pub instance_id: String,
    #[schema(value_type = ReleaseIdSchema)]
    pub release_id: String,
    pub state: DeployStateJson,
    #[schema(value_type = StrategySchema)]
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
    /// Why it failed, rolled back or was cancelled, in one sentence ("error rate 0.042 >
    /// 0.01 at canary 50%; restored v12"); absent when empty.
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
    /// A dry run: the provider only plans; its release never becomes active.
    #[serde(default)]
    pub noop: bool,
    /// The parameters it was asked with (passed to the provider as `DEPLOY_PARAM_<KEY>`).
    #[serde(default)]
    #[schema(value_type = ParamsSchema)]
    pub params: BTreeMap<String, String>,
    /// What a pending deployment waits for before it may run; null when nothing.
    #[serde(default)]
    pub waiting_for: Option<WaitingForJson>,
    /// Each metric gate's last measurement (empty when the instance has no metric gates
    /// or none has measured yet).
    #[serde(default)]
    pub gates: Vec<GateReadingJson>,
    /// While the metric gates keep watching a succeeded deployment: until when (a failure
    /// before then rolls back to the previous release); absent when it is not watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_until: Option<DateTime<Utc>>,
}

/// A metric gate's last measurement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = GateReading)]
pub struct GateReadingJson {
    /// The gate's configured name.
    #[schema(example = "error rate")]
    pub gate: String,
    /// The value measured, as shown; "no data" when the query returned none.
    #[schema(example = "0.042")]
    pub value: String,
    /// The bound it is judged by.
    #[schema(example = "≤ 0.01")]
    pub bound: String,
    /// Whether the measurement kept within the bound.
    pub passed: bool,
    /// Where it was measured.
    #[schema(example = "canary 50%")]
    pub at: String,
}

impl From<GateReading> for GateReadingJson {
    fn from(r: GateReading) -> Self {
        Self {
            gate: r.gate,
            value: r.value,
            bound: r.bound,
            passed: r.passed,
            at: r.at,
        }
    }
}

/// What a pending deployment waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WaitKind)]
pub enum WaitKindJson {
    Lock,
    Freeze,
    Checks,
    Promotion,
    Approval,
}

impl From<WaitKind> for WaitKindJson {
    fn from(kind: WaitKind) -> Self {
        match kind {
            WaitKind::Lock => Self::Lock,
            WaitKind::Freeze => Self::Freeze,
            WaitKind::Checks => Self::Checks,
            WaitKind::Promotion => Self::Promotion,
            WaitKind::Approval => Self::Approval,
        }
    }
}

/// What a pending deployment waits for, why, and until when (when known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = WaitingFor)]
pub struct WaitingForJson {
    pub kind: WaitKindJson,
    /// "locked by @alice: incident 42", "end-of-year freeze".
    #[schema(example = "locked by @alice: incident 42")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The whole of it in one line, as statuses and replies show it.
    #[schema(example = "waiting for the lock to end (locked by @alice: incident 42)")]
    pub description: String,
    /// For `approval`: who asked, who approved so far, and how many approvals it needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalJson>,
}

/// The approvals of a deployment that waits for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Approval)]
pub struct ApprovalJson {
    /// `@alice` or `token:ci`: who asked for the deployment (they may not approve it).
    #[schema(example = "@alice")]
    pub requested_by: String,
    /// Who approved it so far.
    pub approved_by: Vec<String>,
    /// How many approvals it needs in all.
    pub needed: u32,
}

impl From<WaitingFor> for WaitingForJson {
    fn from(w: WaitingFor) -> Self {
        Self {
            kind: w.kind.into(),
            description: w.describe(),
            reason: w.reason,
            until: w.until,
            approval: w.approval.map(|a| ApprovalJson {
                requested_by: a.requested_by,
                approved_by: a.approved_by,
                needed: a.needed,
            }),
        }
    }
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
    /// `@alice` or `token:ci`: who asked for it (they may not approve it themselves).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(example = "@octocat")]
    pub requested_by: String,
}

impl From<Source> for SourceJson {
    fn from(s: Source) -> Self {
        Self {
            trigger: s.trigger,
            pull_request: s.pull_request,
            comment_id: s.comment_id,
            installation_id: s.installation_id,
            requested_by: s.requested_by,
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
            noop: d.noop,
            params: d.params,
            waiting_for: d.waiting_for.map(Into::into),
            gates: d.gates.into_iter().map(Into::into).collect(),
            watch_until: d.watch_until,
        }
    }
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

/// A deploy: run this image with this env on the instance of the path.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    /// The image reference to run: printable ASCII without spaces, at most 1024 characters.
    #[schema(
        example = "ghcr.io/acme/web:v1.2.3",
        pattern = "^[!-~]+$",
        min_length = 1,
        max_length = 1024
    )]
    pub image: String,
    #[serde(default)]
    #[schema(value_type = ReleaseEnvSchema)]
    pub env: BTreeMap<String, String>,
    /// `rolling`, `recreate`, `blue-green` or `canary`; empty: the instance's strategy.
    #[serde(default)]
    #[schema(value_type = RequestedStrategySchema)]
    pub strategy: String,
    /// Free text kept with the release: at most 4096 characters.
    #[serde(default)]
    #[schema(example = "hotfix for the login page", max_length = 4096)]
    pub notes: String,
    /// The commit the image was built from: 7 to 64 hexadecimal characters, or empty.
    #[serde(default)]
    #[schema(
        example = "9fceb02d0ae598e95dc970b74767f19372d61af8",
        pattern = "^(?:[0-9a-fA-F]{7,64})?$",
        max_length = 64
    )]
    pub commit_sha: String,
    /// Parameters: only names the instance lists in its `params`.
    #[serde(default)]
    #[schema(value_type = ParamsSchema)]
    pub params: BTreeMap<String, String>,
    /// A dry run: the provider plans and changes nothing; a freeze does not refuse it.
    #[serde(default)]
    pub noop: bool,
    /// Pass a freeze in force (an admin token only).
    #[serde(default)]
    pub force: bool,
}

/// A rollback: at most one of `release_id`, `version` and `to`, none of them null; none
/// means the previous release (the one that was active before the active one). Its
/// schema in the document is `RollbackBodySchema`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// Return to this release (`rel_…`) of the instance.
    #[serde(default, deserialize_with = "present")]
    pub release_id: Option<String>,
    /// Return to this version of the instance.
    #[serde(default, deserialize_with = "present_integer")]
    pub version: Option<i64>,
    /// `previous` (the default).
    #[serde(default, deserialize_with = "present")]
    pub to: Option<String>,
    /// Pass another's lock or a freeze in force (an admin token only).
    #[serde(default)]
    pub force: bool,
    /// Why: kept in the deployment's trigger and the audit trail.
    #[serde(default)]
    pub reason: String,
}

impl RollbackBody {
    fn target(&self) -> Result<RollbackTarget, ApiError> {
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
        if let Some(text) = &self.release_id {
            return parse_id::<ReleaseId>("field `release_id`", text).map(RollbackTarget::Release);
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

/// The caller's deployment `id`, or a 404 (also when its instance is outside the token's
/// globs).
pub(super) async fn visible_deployment(
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
    let config = state.config();
    let allowed = config
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

/// An image reference is printable ASCII without spaces, as the document's pattern says
/// (the service refuses an empty or over-long one, naming which).
fn check_image(image: &str) -> Result<(), ApiError> {
    if image.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    Err(ApiError::invalid_request(format!(
        "image {:?} is not an image reference: use printable ASCII without spaces, such as ghcr.io/acme/web:v1.2.3",
        image.chars().take(80).collect::<String>()
    )))
}

/// How locks and the audit trail name the caller: `token:<name>`; an admin token may force.
pub(super) fn actor(caller: &Caller) -> Actor {
    Actor::token(&caller.name, caller.role == Role::Admin)
}

fn created(deployment: Deployment) -> HttpResponse {
    let location = format!("/v1/deployments/{}", deployment.id);
    HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(DeploymentJson::from(deployment))
}

/// Queue a deployment of a new release of the instance; it runs later, in a worker.
#[utoipa::path(
    tag = "deployments",
    params(("instance" = InstanceKeySchema, Path, description = "An instance id (`inst_…`) or name")),
    request_body(content = DeployBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Queued (pending)", body = DeploymentJson,
            headers(("Location" = String, description = "The deployment's URL"))),
        (status = 400, description = "The body or a value in it is wrong, the instance key is malformed, or the strategy is one the instance's provider cannot run", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than deploy", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 409, description = "`locked`: another holds a lock on the instance (the message names holder, reason and expiry); `frozen`: a freeze is in force and the request is neither a dry run nor forced by an admin token", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "An env name is refused, or not in the instance's api_env", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/instances/{instance}/deploy")]
pub(super) async fn deploy(
    caller: Authorized<need::Deploy>,
    state: web::Data<AppState>,
    instance: web::Path<String>,
    body: ApiJson<DeployBody>,
) -> Result<HttpResponse, ApiError> {
    let instance = resolve(&state, &caller, &instance).await?;
    let ApiJson(body) = body;
    check_image(&body.image)?;
    check_api_env(&state, &caller.tenant, &instance, &body.env)?;
    let request = DeployRequest {
        instance_id: instance.id,
        image: body.image,
        env: body.env,
        strategy: body.strategy,
        notes: body.notes,
        commit_sha: body.commit_sha,
        params: body.params,
        noop: body.noop,
    };
    let source = Source {
        trigger: format!("API ({})", caller.name),
        ..Source::default()
    };
    let deployment = state
        .service
        .deploy_as(&caller.tenant, request, &actor(&caller), body.force, source)
        .instrument(on_instance(&caller, &instance.name))
        .await?;
    Ok(created(deployment))
}

/// The span of an API request acting on an instance: its log lines name the instance
/// and the tenant.
fn on_instance(caller: &Caller, instance: &str) -> tracing::Span {
    tracing::info_span!("api", tenant = %caller.tenant, instance = %instance)
}

/// The span of an API request acting on a deployment.
fn on_deployment(caller: &Caller, id: DeploymentId) -> tracing::Span {
    tracing::info_span!("api", tenant = %caller.tenant, deployment = %id)
}

/// Queue a deployment of an existing release of the instance (no new release).
#[utoipa::path(
    tag = "deployments",
    params(("instance" = InstanceKeySchema, Path, description = "An instance id (`inst_…`) or name")),
    request_body(content = Option<RollbackBodySchema>, content_type = "application/json",
        description = "`{\"release_id\": …}`, `{\"version\": …}`, or `{}` / `{\"to\": \"previous\"}`"),
    responses(
        (status = 201, description = "Queued (pending)", body = DeploymentJson,
            headers(("Location" = String, description = "The deployment's URL"))),
        (status = 400, description = "The body or the instance key is malformed, or there is no previous release", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than deploy", body = ErrorBody),
        (status = 404, description = "No such instance, release or version for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 409, description = "`locked`: another holds a lock on the instance and the rollback is not forced by an admin token; `frozen`: a freeze is in force and the rollback is not forced by an admin token; `conflict`: the release was never live on the instance (its deploy did not succeed, or it was a dry run)", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/instances/{instance}/rollback")]
pub(super) async fn rollback(
    caller: Authorized<need::Deploy>,
    state: web::Data<AppState>,
    instance: web::Path<String>,
    body: ApiJson<RollbackBody>,
) -> Result<HttpResponse, ApiError> {
    let ApiJson(body) = body;
    let target = body.target()?;
    let instance = resolve(&state, &caller, &instance).await?;
    let deployment = state
        .service
        .rollback_as(
            &caller.tenant,
            instance.id,
            target,
            &actor(&caller),
            body.force,
            &body.reason,
        )
        .instrument(on_instance(&caller, &instance.name))
        .await?;
    Ok(created(deployment))
}

/// The instance's deployments, newest first, one page at a time.
#[utoipa::path(
    tag = "deployments",
    params(("instance" = InstanceKeySchema, Path, description = "An instance id (`inst_…`) or name"), ListQuery),
    responses(
        (status = 200, description = "One page", body = DeployListJson),
        (status = 400, description = "A bad cursor, limit or instance key, or an unknown query parameter", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/instances/{instance}/deployments")]
pub(super) async fn list_deployments(
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

/// One deployment.
#[utoipa::path(
    tag = "deployments",
    params(("id" = DeploymentIdSchema, Path, description = "A deployment id (`dep_…`)")),
    responses(
        (status = 200, description = "The deployment", body = DeploymentJson),
        (status = 400, description = "The id is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such deployment for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/deployments/{id}")]
pub(super) async fn get_deployment(
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
    params(("id" = DeploymentIdSchema, Path, description = "A deployment id (`dep_…`)")),
    responses(
        (status = 204, description = "Cancelled, or cancellation requested"),
        (status = 400, description = "The id is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than deploy", body = ErrorBody),
        (status = 404, description = "No such deployment for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 409, description = "The deployment has already finished", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/deployments/{id}/cancel")]
pub(super) async fn cancel(
    caller: Authorized<need::Deploy>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: DeploymentId = parse_id("path parameter `id`", &id)?;
    visible_deployment(&state, &caller, id).await?;
    state
        .service
        .cancel_as(&caller.tenant, id, &actor(&caller))
        .instrument(on_deployment(&caller, id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Approve a deployment that waits for approval (the two-person rule): once the instance's
/// `approvals` deployers other than its requester approved it, it runs.
#[utoipa::path(
    tag = "deployments",
    params(("id" = DeploymentIdSchema, Path, description = "A deployment id (`dep_…`)")),
    responses(
        (status = 200, description = "Approved: the deployment, with `waiting_for` null once it may run", body = DeploymentJson),
        (status = 400, description = "The id is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than deploy (`forbidden`), or the token asked for the deployment itself or it does not wait for approval (`not_approved`)", body = ErrorBody),
        (status = 404, description = "No such deployment for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/deployments/{id}/approve")]
pub(super) async fn approve(
    caller: Authorized<need::Deploy>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: DeploymentId = parse_id("path parameter `id`", &id)?;
    visible_deployment(&state, &caller, id).await?;
    let approved = state
        .service
        .approve(&caller.tenant, id, &actor(&caller))
        .instrument(on_deployment(&caller, id))
        .await?;
    Ok(HttpResponse::Ok().json(DeploymentJson::from(approved)))
}
