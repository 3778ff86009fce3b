//! Locks: `GET|PUT|DELETE /v1/instances/{instance}/lock` and `GET /v1/locks`. A lock holds
//! an instance (or with `global` every instance of its repository) for its holder: others'
//! deploys are refused, pushes wait until it ends. A token holds locks as `token:<name>`.

use std::collections::HashSet;
use std::time::Duration;

use actix_web::{HttpResponse, delete, get, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::deployments::actor;
use super::input::ApiJson;
use super::instances::resolve;
use super::schema::{InstanceKeySchema, LockBodySchema};
use crate::deploy::{Instance, Lock, LockTarget};
use crate::server::AppState;
use crate::server::auth::{Authorized, Caller, need};
use crate::server::error::{ApiError, ErrorBody};

/// What a lock covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = LockScope)]
pub enum LockScopeJson {
    /// One instance.
    Instance,
    /// Every instance of a repository (`global`).
    Repo,
}

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Lock)]
pub struct LockJson {
    pub scope: LockScopeJson,
    /// The instance locked (absent for a repository's lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::schema::InstanceIdSchema>)]
    pub instance_id: Option<String>,
    /// `owner/name` of the repository, lower-cased.
    #[schema(example = "acme/web")]
    pub repo: String,
    /// `@login` for a GitHub user, `token:<name>` for an API token.
    #[schema(example = "token:ci")]
    pub holder: String,
    #[schema(example = "incident 42")]
    pub reason: String,
    /// The pull request a `/lock` came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    pub created_at: DateTime<Utc>,
    /// When it ends by itself; absent: held until unlocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The lock in one line: holder, since, until, reason.
    #[schema(
        example = "locked by token:ci since 2026-12-07 09:12 UTC until unlocked: incident 42"
    )]
    pub description: String,
}

impl From<Lock> for LockJson {
    fn from(lock: Lock) -> Self {
        let description = lock.describe();
        let (scope, instance_id) = match &lock.target {
            LockTarget::Instance { instance_id } => {
                (LockScopeJson::Instance, Some(instance_id.to_string()))
            }
            LockTarget::Repo { .. } => (LockScopeJson::Repo, None),
        };
        Self {
            scope,
            instance_id,
            repo: lock.repo,
            holder: lock.holder,
            reason: lock.reason,
            pull_request: lock.pull_request,
            created_at: lock.created_at,
            expires_at: lock.expires_at,
            description,
        }
    }
}

/// The tenant's live locks, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = LockList)]
pub struct LockListJson {
    pub items: Vec<LockJson>,
}

/// Taking a lock: why, for how long, and whether on every instance of the repository.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockBody {
    #[serde(default)]
    pub reason: String,
    /// `30m`, `2h`, `1d`; empty: until unlocked.
    #[serde(default)]
    pub ttl: String,
    #[serde(default)]
    pub global: bool,
}

/// `?global` of the lock routes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LockQuery {
    /// The lock on every instance of the instance's repository instead of the instance's own.
    pub global: Option<bool>,
}

/// The most digits a lock's duration has (9999 days at most).
const MAX_TTL_DIGITS: usize = 4;

/// A lock's duration: a whole number and a unit, `s`, `m`, `h` or `d` (`30m`, `2h`); empty
/// is none (held until unlocked). What the document's pattern allows, and nothing else.
pub fn parse_ttl(text: &str) -> Result<Option<Duration>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let refused = || {
        format!(
            "ttl {:?} is not a duration: use a whole number and a unit, s, m, h or d (such as 30m or 2h), up to {MAX_TTL_DIGITS} digits",
            text.chars().take(40).collect::<String>()
        )
    };
    let (digits, unit) = text.split_at(text.len() - text.chars().last().map_or(0, char::len_utf8));
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(refused()),
    };
    if digits.is_empty()
        || digits.len() > MAX_TTL_DIGITS
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(refused());
    }
    let n: u64 = digits.parse().map_err(|_| refused())?;
    Ok(Some(Duration::from_secs(n * seconds_per)))
}

/// The pattern of `ttl`, as `parse_ttl` reads it.
pub const TTL_PATTERN: &str = "^(?:[1-9][0-9]{0,3}[smhd])?$";

/// Whether the caller's token reaches `lock`: every lock for a token over all instances;
/// else a lock on an instance it covers, or on a repository one of whose instances it covers.
fn visible(lock: &Lock, covered_ids: &HashSet<String>, covered_repos: &HashSet<String>) -> bool {
    match &lock.target {
        LockTarget::Instance { instance_id } => covered_ids.contains(&instance_id.to_string()),
        LockTarget::Repo { repo } => covered_repos.contains(&repo.to_ascii_lowercase()),
    }
}

/// A global lock holds every instance of the repository: only a token that covers all of
/// them may take or release one.
async fn check_global(
    state: &AppState,
    caller: &Caller,
    instance: &Instance,
) -> Result<(), ApiError> {
    if caller.instances.is_empty() {
        return Ok(());
    }
    let instances = state.service.list_instances(&caller.tenant).await?;
    let outside = instances
        .iter()
        .filter(|i| i.repo.eq_ignore_ascii_case(&instance.repo) && !caller.covers(&i.name))
        .count();
    if outside == 0 {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "a global lock holds every instance of {}, and token '{}' does not cover {outside} of them: lock the instance itself, or use a token whose instances cover the repository",
        instance.repo, caller.name
    )))
}

async fn visible_locks(state: &AppState, caller: &Caller) -> Result<Vec<Lock>, ApiError> {
    let locks = state.service.locks(&caller.tenant).await?;
    if caller.instances.is_empty() {
        return Ok(locks);
    }
    let instances = state.service.list_instances(&caller.tenant).await?;
    let covered: Vec<_> = instances
        .into_iter()
        .filter(|i| caller.covers(&i.name))
        .collect();
    let ids = covered.iter().map(|i| i.id.to_string()).collect();
    let repos = covered
        .iter()
        .map(|i| i.repo.to_ascii_lowercase())
        .collect();
    Ok(locks
        .into_iter()
        .filter(|l| visible(l, &ids, &repos))
        .collect())
}

/// The tenant's live locks (within the token's instances), oldest first.
#[utoipa::path(
    tag = "locks",
    responses(
        (status = 200, description = "The live locks", body = LockListJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/locks")]
pub(super) async fn list_locks(
    caller: Authorized<need::Read>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let items = visible_locks(&state, &caller)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(LockListJson { items }))
}

/// The lock that holds the instance: its own, else its repository's; with `global=true`
/// the repository's.
#[utoipa::path(
    tag = "locks",
    params(("instance" = InstanceKeySchema, Path, description = "An instance id (`inst_…`) or name"), LockQuery),
    responses(
        (status = 200, description = "The lock", body = LockJson),
        (status = 400, description = "The instance key or `global` is malformed, or an unknown query parameter", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances), or no lock holds it", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/instances/{instance}/lock")]
pub(super) async fn get_lock(
    caller: Authorized<need::Read>,
    state: web::Data<AppState>,
    instance: web::Path<String>,
    query: web::Query<LockQuery>,
) -> Result<HttpResponse, ApiError> {
    let global = query.global.unwrap_or(false);
    let instance = resolve(&state, &caller, &instance).await?;
    let lock = if global {
        state
            .service
            .get_lock(&caller.tenant, &instance, true)
            .await?
    } else {
        state
            .service
            .lock_covering(&caller.tenant, instance.id)
            .await?
    };
    match lock {
        Some(lock) => Ok(HttpResponse::Ok().json(LockJson::from(lock))),
        None => Err(ApiError::not_found(not_locked(&instance.name, global))),
    }
}

fn not_locked(name: &str, global: bool) -> String {
    if global {
        format!("no lock holds every instance of the repository of {name}")
    } else {
        format!("instance {name} is not locked")
    }
}

/// Take the lock on the instance (with `global`, on every instance of its repository), or
/// renew the caller's own: others' deploys are refused and pushes wait until it ends.
#[utoipa::path(
    tag = "locks",
    params(("instance" = InstanceKeySchema, Path, description = "An instance id (`inst_…`) or name")),
    request_body(content = Option<LockBodySchema>, content_type = "application/json"),
    responses(
        (status = 200, description = "Locked (or the caller's lock renewed)", body = LockJson),
        (status = 400, description = "The body or the instance key is malformed", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than deploy, or `global` and the token does not cover every instance of the repository", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances)", body = ErrorBody),
        (status = 409, description = "`locked`: another holds the lock (the message names holder, reason and expiry)", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[put("/instances/{instance}/lock")]
pub(super) async fn put_lock(
    caller: Authorized<need::Deploy>,
    state: web::Data<AppState>,
    instance: web::Path<String>,
    body: ApiJson<LockBody>,
) -> Result<HttpResponse, ApiError> {
    let ApiJson(body) = body;
    let ttl = parse_ttl(&body.ttl).map_err(ApiError::invalid_request)?;
    let instance = resolve(&state, &caller, &instance).await?;
    if body.global {
        check_global(&state, &caller, &instance).await?;
    }
    let lock = state
        .service
        .lock(
            &caller.tenant,
            &instance,
            body.global,
            &actor(&caller),
            &body.reason,
            ttl,
            None,
        )
        .await?;
    Ok(HttpResponse::Ok().json(LockJson::from(lock)))
}

/// Release the lock on the instance (with `global=true`, its repository's), whoever holds
/// it; the newest push waiting for it then runs.
#[utoipa::path(
    tag = "locks",
    params(("instance" = InstanceKeySchema, Path, description = "An instance id (`inst_…`) or name"), LockQuery),
    responses(
        (status = 204, description = "Unlocked"),
        (status = 400, description = "The instance key or `global` is malformed, or an unknown query parameter", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than deploy, or `global` and the token does not cover every instance of the repository", body = ErrorBody),
        (status = 404, description = "No such instance for the tenant (or outside the token's instances), or it was not locked", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[delete("/instances/{instance}/lock")]
pub(super) async fn delete_lock(
    caller: Authorized<need::Deploy>,
    state: web::Data<AppState>,
    instance: web::Path<String>,
    query: web::Query<LockQuery>,
) -> Result<HttpResponse, ApiError> {
    let global = query.global.unwrap_or(false);
    let instance = resolve(&state, &caller, &instance).await?;
    if global {
        check_global(&state, &caller, &instance).await?;
    }
    let released = state
        .service
        .unlock(&caller.tenant, &instance, global, &actor(&caller))
        .await?;
    match released {
        Some(_) => Ok(HttpResponse::NoContent().finish()),
        None => Err(ApiError::not_found(not_locked(&instance.name, global))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_a_number_and_a_unit() {
        assert_eq!(parse_ttl(""), Ok(None));
        assert_eq!(parse_ttl("30m"), Ok(Some(Duration::from_secs(1800))));
        assert_eq!(parse_ttl("2h"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(parse_ttl("1d"), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(parse_ttl("45s"), Ok(Some(Duration::from_secs(45))));
        for bad in [
            "0m", "30", "m", "30 m", "1h30m", "30M", "99999d", "-1h", "ü", "3ü",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
