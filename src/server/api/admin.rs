//! `POST /v1/admin/reload`: re-reads the server's configuration file, as `SIGHUP` does
//! (`deploybot reload` calls it). The answer names what changed for the caller's tenant;
//! an invalid file is refused whole and the configuration in force stays.

use actix_web::{HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ReloadReport;
use crate::server::AppState;
use crate::server::auth::{Authorized, need};
use crate::server::error::{ApiError, ErrorBody, ErrorCode};

/// What a reload changed, for the caller's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Reload)]
pub struct ReloadJson {
    /// The file read; null when the server runs on defaults and the environment.
    pub source: Option<String>,
    /// The tenant's instances configured now, by name.
    pub instances: Vec<String>,
    /// Instances the file added.
    pub added: Vec<String>,
    /// Instances the file removed; their deployments and releases stay readable.
    pub removed: Vec<String>,
    /// Queued deployments of the removed instances, now cancelled.
    pub cancelled: Vec<String>,
    /// Settings read only at start that changed: they take effect after a restart.
    pub restart_needed: Vec<String>,
}

impl ReloadJson {
    /// The report, keeping only what belongs to `tenant`.
    fn for_tenant(report: ReloadReport, tenant: &str) -> Self {
        let mine = |list: Vec<(String, String)>| -> Vec<String> {
            list.into_iter()
                .filter(|(t, _)| t.eq_ignore_ascii_case(tenant))
                .map(|(_, name)| name)
                .collect()
        };
        ReloadJson {
            source: report.source,
            instances: mine(report.instances),
            added: mine(report.added),
            removed: mine(report.removed),
            cancelled: mine(report.cancelled),
            restart_needed: report.restart_needed,
        }
    }
}

/// Re-reads the configuration file and puts it in force for new work: instances, tokens,
/// tenants' secrets, locks, freezes and gates. Running deployments finish under the
/// configuration they started with. An invalid file is refused whole (422): the
/// configuration in force stays, and `/readyz` names the refusal until a reload succeeds.
/// Only admin tokens covering every instance of their tenant may reload.
#[utoipa::path(
    tag = "admin",
    responses(
        (status = 200, description = "The file is in force; what changed for the token's tenant", body = ReloadJson),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is weaker than admin, or it covers only some instances", body = ErrorBody),
        (status = 409, description = "This server cannot reload (the sandbox): restart it", body = ErrorBody),
        (status = 422, description = "The file was refused (`invalid_config`); the configuration in force stays", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/admin/reload")]
pub(super) async fn reload(
    caller: Authorized<need::Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !caller.instances.is_empty() {
        return Err(ApiError::forbidden(format!(
            "POST /v1/admin/reload reloads every instance; token '{}' covers only the instances matching {}. Use an admin token without `instances` in [[api.tokens]]",
            caller.name,
            caller.instances.join(", ")
        )));
    }
    let Some(reloader) = state.reload.as_ref() else {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "this server cannot reload its configuration (the sandbox builds its own): restart it",
        ));
    };
    tracing::info!(by = %caller.name, tenant = %caller.tenant, "configuration reload requested");
    let sole_tenant = only_tenant(&state.config(), &caller.tenant);
    match reloader.reload().await {
        Ok(report) => Ok(HttpResponse::Ok().json(ReloadJson::for_tenant(report, &caller.tenant))),
        Err(reason) if sole_tenant => Err(ApiError::new(
            ErrorCode::InvalidConfig,
            format!(
                "the configuration file was refused; the configuration in force stays: {reason}"
            ),
        )),
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidConfig,
            "the configuration file was refused; the configuration in force stays. The file \
             is shared with other tenants, so its problems are not shown here: the server's \
             log names them, and `deploybot config check` on the server prints them",
        )),
    }
}

/// Whether `tenant` is the only tenant the configuration knows: its instances', its
/// secrets' and its tokens'. Only then may the file's problems be shown to its admin.
fn only_tenant(config: &crate::config::Config, tenant: &str) -> bool {
    let is = |t: &str| t.eq_ignore_ascii_case(tenant);
    config.instances.iter().all(|i| is(&i.tenant()))
        && config.tenants.iter().all(|t| is(&t.name))
        && config.api.tokens.iter().all(|t| is(&t.tenant))
}
