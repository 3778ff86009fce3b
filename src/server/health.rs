//! `/healthz` (the process answers) and `/readyz` (database reachable and migrated,
//! worker running; and whether the last configuration reload was refused).

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use super::AppState;
use crate::config::ReloadStatus;
use crate::deploy::service::blocking;

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[get("/readyz")]
async fn readyz(req: actix_web::HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let store = std::sync::Arc::clone(&state.store);
    let database = match blocking(move || store.is_migrated()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("migrations are pending: run `deploybot migrate`".to_string()),
        Err(e) => Err(e.to_string()),
    };
    let worker = if state.worker_alive.is_cancelled() {
        Err("the worker has stopped".to_string())
    } else {
        Ok(())
    };
    let body = json!({
        "status": if database.is_ok() && worker.is_ok() { "ready" } else { "not ready" },
        "database": database.as_ref().err().map(String::as_str).unwrap_or("ok"),
        "worker": worker.as_ref().err().map(String::as_str).unwrap_or("ok"),
        "config": config_detail(&req, &state),
    });
    if database.is_ok() && worker.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// "ok", or that the last reload was refused: the server still runs, on the configuration
/// loaded before it, so readiness does not change. The file's problems name instances of
/// every tenant: they are shown to whoever may read `/metrics`, and to others only counted.
fn config_detail(req: &actix_web::HttpRequest, state: &AppState) -> String {
    let Some(ReloadStatus {
        loaded_at,
        refused: Some((at, why)),
    }) = state.reload.as_ref().map(|r| r.status())
    else {
        return "ok".to_string();
    };
    let why = if super::scrape::may_scrape(req, state.config().metrics_token.as_deref()) {
        why
    } else {
        "the server's log names the problems (and /readyz with the metrics token)".to_string()
    };
    format!(
        "the reload at {} was refused: {why}; the configuration loaded at {} stays in force",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        loaded_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz);
}
