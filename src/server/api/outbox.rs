//! `/v1/outbox/failed`: the tenant's outbox items that will never be sent (refused by
//! GitHub for good, or stored in a form this version cannot read), each with its reason.
//! The payload is left out: it may hold comment text.

use std::sync::Arc;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::input::integer;
use crate::deploy::service::blocking;
use crate::github::outbox::OutboxItem;
use crate::server::AppState;
use crate::server::auth::{Authorized, need};
use crate::server::error::{ApiError, ErrorBody};

/// Failed items per answer when `limit` is not given.
const DEFAULT_LIMIT: u32 = 50;
/// The most failed items one answer holds.
const MAX_LIMIT: u32 = 100;

/// A stored report to GitHub, or job, that failed for good, without its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = OutboxItem)]
pub struct OutboxItemJson {
    pub id: i64,
    /// The stored kind, such as `deployment.status` or `job.comment`.
    #[schema(example = "deployment.status")]
    pub kind: String,
    #[schema(example = "failed")]
    pub state: String,
    /// How many times sending it was tried.
    pub attempts: i32,
    /// Why it failed: GitHub's answer, or what this version cannot read in it.
    pub last_error: String,
    /// The deployment it reports on; null for comment replies and jobs.
    #[schema(value_type = Option<super::schema::DeploymentIdSchema>)]
    pub deployment_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<OutboxItem> for OutboxItemJson {
    fn from(i: OutboxItem) -> Self {
        Self {
            id: i.id,
            kind: i.kind,
            state: i.state,
            attempts: i.attempts,
            last_error: i.last_error,
            deployment_id: i.deployment_id.map(|d| d.to_string()),
            created_at: i.created_at,
        }
    }
}

/// The tenant's failed outbox items, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = FailedOutboxList)]
pub struct FailedOutboxJson {
    pub items: Vec<OutboxItemJson>,
}

/// `?limit` of the failed outbox route.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FailedOutboxQuery {
    /// Items to list, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
}

/// The tenant's failed outbox items, newest first, each with why it failed. Only admin
/// tokens covering every instance may read them: an item is not scoped to an instance.
#[utoipa::path(
    tag = "outbox",
    params(FailedOutboxQuery),
    responses(
        (status = 200, description = "The newest failed items", body = FailedOutboxJson),
        (status = 400, description = "A bad limit, or an unknown query parameter", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than admin, or it covers only some instances", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/outbox/failed")]
pub(super) async fn failed_outbox(
    caller: Authorized<need::Admin>,
    state: web::Data<AppState>,
    query: web::Query<FailedOutboxQuery>,
) -> Result<HttpResponse, ApiError> {
    if !caller.instances.is_empty() {
        return Err(ApiError::forbidden(format!(
            "GET /v1/outbox/failed lists the failed items of every instance; token '{}' covers only the instances matching {}. Use an admin token without `instances` in [[api.tokens]]",
            caller.name,
            caller.instances.join(", ")
        )));
    }
    let limit = match query.into_inner().limit {
        None => DEFAULT_LIMIT,
        Some(text) => {
            let n = integer("limit", &text, 1, i64::from(MAX_LIMIT))?;
            u32::try_from(n).unwrap_or(MAX_LIMIT)
        }
    };
    let store = Arc::clone(&state.store);
    let tenant = caller.tenant.clone();
    let items = blocking(move || store.failed_outbox(&tenant, limit)).await?;
    Ok(HttpResponse::Ok().json(FailedOutboxJson {
        items: items.into_iter().map(Into::into).collect(),
    }))
}
