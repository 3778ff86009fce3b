//! `/healthz` (the process answers) and `/readyz` (database reachable and migrated,
//! worker running).

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use super::AppState;
use crate::deploy::service::blocking;

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
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
    });
    if database.is_ok() && worker.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz);
}
