//! `GET /v1/audit`: who did what, newest first: deploys, dry runs, rollbacks, cancels,
//! locks and unlocks, what `force` passed, and what was refused.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::input::ListQuery;
use super::instances::resolve;
use super::schema::{DeploymentIdSchema, InstanceIdSchema, InstanceKeySchema};
use crate::deploy::{AuditEvent, AuditPage, InstanceId, ListOptions};
use crate::server::AppState;
use crate::server::auth::{Authorized, Caller, need};
use crate::server::error::{ApiError, ErrorBody};

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = AuditEvent)]
pub struct AuditEventJson {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `@login`, `token:<name>`, or `deploybot` for what the bot does by itself.
    #[schema(example = "token:ci")]
    pub actor: String,
    /// `deploy`, `noop`, `rollback`, `rollback.automatic`, `cancel`, `approve`, `lock`,
    /// `unlock`, `lock.expired`, `lock.released_on_merge`, `lock.on_rollback`,
    /// `gate.expired`, `force` or `refused`.
    #[schema(example = "lock")]
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<InstanceIdSchema>)]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<DeploymentIdSchema>)]
    pub deployment_id: Option<String>,
    /// What happened, in one sentence.
    pub detail: String,
}

impl From<AuditEvent> for AuditEventJson {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            instance_id: e.instance_id.map(|i| i.to_string()),
            deployment_id: e.deployment_id.map(|d| d.to_string()),
            detail: e.detail,
        }
    }
}

/// One page of the audit trail, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = AuditPage)]
pub struct AuditPageJson {
    pub items: Vec<AuditEventJson>,
    /// Pass as `cursor` to read the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl From<AuditPage> for AuditPageJson {
    fn from(page: AuditPage) -> Self {
        Self {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

/// `?cursor&limit&instance` of the audit trail.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The `next_cursor` of the previous page; omit it for the first page.
    #[param(value_type = Option<super::schema::CursorSchema>)]
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Only this instance's events (an id `inst_…` or a name).
    #[param(value_type = Option<InstanceKeySchema>)]
    pub instance: Option<String>,
}

/// The tenant's audit trail, newest first, one page at a time. A token limited to some
/// instances reads only their events, and none of the repository-wide ones.
#[utoipa::path(
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page", body = AuditPageJson),
        (status = 400, description = "A bad cursor, limit or instance key, or an unknown query parameter", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/audit")]
pub(super) async fn list_audit(
    caller: Authorized<need::Read>,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let AuditQuery {
        cursor,
        limit,
        instance,
    } = query.into_inner();
    let options = ListQuery { cursor, limit }.options()?;
    let page = readable_audit(&state, &caller, instance.as_deref(), options).await?;
    Ok(HttpResponse::Ok().json(AuditPageJson::from(page)))
}

/// The page of the audit trail of `caller`'s tenant that `caller` may read: only the
/// events of `instance` (an id or a name, which the caller must cover) when it is given;
/// otherwise, for a caller limited to some instances, only their events and none of the
/// repository-wide ones. `GET /v1/audit` and the `/audit` page both read through it.
pub(crate) async fn readable_audit(
    state: &AppState,
    caller: &Caller,
    instance: Option<&str>,
    options: ListOptions,
) -> Result<AuditPage, ApiError> {
    let instance_id: Option<InstanceId> = match instance {
        Some(key) => Some(resolve(state, caller, key).await?.id),
        None => None,
    };
    let mut page = state
        .service
        .list_audit(&caller.tenant, instance_id, options)
        .await?;
    if instance_id.is_none() && !caller.instances.is_empty() {
        let covered: Vec<InstanceId> = state
            .service
            .list_instances(&caller.tenant)
            .await?
            .into_iter()
            .filter(|i| caller.covers(&i.name))
            .map(|i| i.id)
            .collect();
        page.items
            .retain(|e| e.instance_id.is_some_and(|id| covered.contains(&id)));
    }
    Ok(page)
}
