//! `GET /metrics`: the process's registry in the Prometheus text format, with the
//! database gauges read at scrape time.

use std::sync::Arc;

use actix_web::{HttpResponse, ResponseError, get, web};
use prometheus_client::encoding::prometheus_text;

use super::AppState;
use super::error::ApiError;
use crate::deploy::service::blocking;
use crate::metrics::global;

/// Whether the request may read `/metrics`: always when no `DEPLOYBOT_METRICS_TOKEN` is
/// set; otherwise only with that token as a bearer token (compared in constant time).
pub(super) fn may_scrape(req: &actix_web::HttpRequest, token: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let Some(expected) = token else {
        return true;
    };
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(super::auth::bearer_token)
        .unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

#[get("/metrics")]
async fn scrape(req: actix_web::HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !may_scrape(&req, state.config().metrics_token.as_deref()) {
        return ApiError::unauthenticated(
            "GET /metrics needs Authorization: Bearer <the DEPLOYBOT_METRICS_TOKEN of this server>",
        )
        .error_response();
    }
    let metrics = global();
    let store = Arc::clone(&state.store);
    match blocking(move || Ok((store.count_by_state()?, store.outbox_counts()?))).await {
        Ok((by_state, outbox)) => {
            metrics.set_database(&by_state, outbox);
            metrics.set_database_up(true);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the database; its gauges are stale");
            metrics.set_database_up(false);
        }
    }
    match metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type(prometheus_text::CONTENT_TYPE)
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "metrics: cannot encode");
            HttpResponse::InternalServerError().finish()
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(scrape);
}
