//! A deployment's log, read page by page after a sequence number.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::deployments::visible_deployment;
use super::input::{integer, parse_id};
use crate::deploy::{DeploymentId, LogEntry};
use crate::server::AppState;
use crate::server::auth::{Authorized, need};
use crate::server::error::{ApiError, ErrorBody};

/// Log lines per page when `limit` is not given, and the most a page may hold.
pub const LOG_PAGE_LIMIT: u32 = 1000;

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = LogEntry)]
pub struct LogEntryJson {
    /// 1, 2, 3 … per deployment.
    #[schema(minimum = 1)]
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
    #[schema(minimum = 0)]
    pub next_after: i64,
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

/// A deployment's log lines after `after` (to follow a deployment, pass `next_after` back).
#[utoipa::path(
    tag = "deployments",
    params(("id" = super::schema::DeploymentIdSchema, Path, description = "A deployment id (`dep_…`)"), LogQuery),
    responses(
        (status = 200, description = "Log lines, oldest first", body = LogPageJson),
        (status = 400, description = "The id, after or limit is malformed, or a query parameter is unknown", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such deployment for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/deployments/{id}/logs")]
pub(super) async fn logs(
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
