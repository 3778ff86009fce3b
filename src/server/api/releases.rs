//! Releases: an instance's immutable, numbered snapshots of what runs.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::input::{ListQuery, parse_id};
use super::instances::{covers_instance, resolve};
use super::schema::{InstanceIdSchema, ReleaseIdSchema};
use crate::deploy::{Error, Release, ReleaseId, ReleaseListResult};
use crate::server::AppState;
use crate::server::auth::{Authorized, need};
use crate::server::error::{ApiError, ErrorBody};

/// An immutable snapshot of what runs, numbered per instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Release)]
pub struct ReleaseJson {
    #[schema(value_type = ReleaseIdSchema)]
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub tenant_id: String,
    #[schema(value_type = InstanceIdSchema)]
    pub instance_id: String,
    /// 1, 2, 3 … per instance.
    #[schema(example = 3, minimum = 1)]
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

/// The instance's releases, highest version first, one page at a time.
#[utoipa::path(
    tag = "releases",
    params(("instance" = super::schema::InstanceKeySchema, Path, description = "An instance id (`inst_…`) or name"), ListQuery),
    responses(
        (status = 200, description = "One page", body = ReleaseListJson),
        (status = 400, description = "A bad cursor, limit or instance key, or an unknown query parameter", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/instances/{instance}/releases")]
pub(super) async fn list_releases(
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

/// One release.
#[utoipa::path(
    tag = "releases",
    params(("id" = ReleaseIdSchema, Path, description = "A release id (`rel_…`)")),
    responses(
        (status = 200, description = "The release", body = ReleaseJson),
        (status = 400, description = "The id is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such release for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/releases/{id}")]
pub(super) async fn get_release(
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
