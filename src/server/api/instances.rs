//! `/v1/instances`: the caller's configured deploy targets, and how a route finds the
//! instance a path names within the token's reach.

use std::sync::Arc;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ReleaseJson;
use super::locks::LockJson;
use super::schema::is_instance_key;
use crate::deploy::service::blocking;
use crate::deploy::{ActiveFreeze, Error, Instance, InstanceId, Release};
use crate::server::AppState;
use crate::server::auth::{Authorized, Caller, need};
use crate::server::error::{ApiError, ErrorBody};

/// A deploy target with its active release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Instance)]
pub struct InstanceJson {
    #[schema(value_type = super::schema::InstanceIdSchema)]
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
    /// The lock holding the instance (its own, else its repository's); null when none.
    #[serde(default)]
    pub lock: Option<LockJson>,
    /// The freeze window in force now and the next one to start.
    #[serde(default)]
    pub freeze: FreezeStateJson,
}

/// A freeze window: why, and from when to when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Freeze)]
pub struct FreezeJson {
    #[schema(example = "end-of-year freeze")]
    pub reason: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl From<ActiveFreeze> for FreezeJson {
    fn from(f: ActiveFreeze) -> Self {
        Self {
            reason: f.reason,
            start: f.start,
            end: f.end,
        }
    }
}

/// The freeze in force now and the next to start; each null when there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = FreezeState)]
pub struct FreezeStateJson {
    pub current: Option<FreezeJson>,
    pub next: Option<FreezeJson>,
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
            lock: None,
            freeze: FreezeStateJson::default(),
        }
    }
}

/// The caller's instances, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = InstanceList)]
pub struct InstanceListJson {
    pub items: Vec<InstanceJson>,
}

/// The caller's instance named by `key` (an `inst_…` id or a name), or a 404. An instance
/// outside the token's `instances` globs is a 404 too, the same as one that does not exist.
pub(super) async fn resolve(
    state: &AppState,
    caller: &Caller,
    key: &str,
) -> Result<Instance, ApiError> {
    if !is_instance_key(key) {
        return Err(ApiError::invalid_request(format!(
            "path parameter `instance`: {:?} is neither an instance id (`inst_` followed by 26 base32 characters) nor an instance name (1-63 characters of a-z, 0-9 and -, not starting with -)",
            key.chars().take(80).collect::<String>()
        )));
    }
    let instance = state.service.resolve_instance(&caller.tenant, key).await?;
    if !caller.covers(&instance.name) {
        return Err(Error::not_found("instance", key).into());
    }
    Ok(instance)
}

/// Whether the instance `id` of the caller's tenant is within the token's globs.
pub(super) async fn covers_instance(
    state: &AppState,
    caller: &Caller,
    id: InstanceId,
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

/// List the caller's instances, each with its active release, its lock and its freezes.
#[utoipa::path(
    tag = "instances",
    responses(
        (status = 200, description = "The tenant's instances, by name", body = InstanceListJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/instances")]
pub(super) async fn list_instances(
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
    let now = crate::deploy::now();
    let mut items = Vec::with_capacity(with_active.len());
    for (i, active) in with_active {
        let configured = catalog.spec(&caller.tenant, &i.name).is_some();
        let lock = state.service.lock_covering(&caller.tenant, i.id).await?;
        let freeze = FreezeStateJson {
            current: state
                .service
                .freeze_now(&caller.tenant, &i.name, now)
                .map(Into::into),
            next: state
                .service
                .next_freeze(&caller.tenant, &i.name, now)
                .map(Into::into),
        };
        let mut json = InstanceJson::new(i, active, configured);
        json.lock = lock.map(Into::into);
        json.freeze = freeze;
        items.push(json);
    }
    Ok(HttpResponse::Ok().json(InstanceListJson { items }))
}
