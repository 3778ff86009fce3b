//! One deployment's page and the JSON its script follows it with (`/events`).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::load::{Lookup, is_production, load_deployment, lookup, optional};
use super::signin::reason_text;
use super::{
    Viewer, github_web, html, html_page, not_found_page, notice_text, store_error_page, to_signin,
    views,
};
use crate::deploy::service::blocking;
use crate::deploy::{DeployState, Deployment, DeploymentId, Error, Instance, LogEntry, Release};
use crate::server::AppState;

/// Log lines per `/events` answer.
const EVENT_LINES: u32 = 500;

/// `?token=` of a deployment page and its events.
#[derive(Debug, Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
    notice: Option<String>,
}

/// `/deployments/{id}`: one deployment, followed live by the page script.
pub(super) async fn deployment_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> HttpResponse {
    let viewer = Viewer::of(&req, &state);
    let raw_id = path.into_inner();
    let Ok(id) = DeploymentId::parse(&raw_id) else {
        return not_found_page(&raw_id, &viewer);
    };
    let token = query.token.as_deref().filter(|t| !t.is_empty());
    let (tenant, deployment, via_token) = match lookup(&state, &viewer, id, token).await {
        Ok(Lookup::Found {
            tenant,
            deployment,
            via_token,
        }) => (tenant, *deployment, via_token),
        Ok(Lookup::NotFound) => return not_found_page(&raw_id, &viewer),
        Ok(Lookup::Denied(reason)) => {
            if let Viewer::Signed(_) = viewer {
                let text = reason_text(reason).unwrap_or("You cannot see this deployment.");
                return html_page(
                    StatusCode::NOT_FOUND,
                    views::message("Deployment not found", text, &viewer),
                );
            }
            return to_signin(&format!("/deployments/{id}"), reason);
        }
        Err(e) => return store_error_page(&e, &viewer),
    };
    let github = github_web(&state.config());
    let store = Arc::clone(&state.store);
    let tenant_owned = tenant.clone();
    match blocking(move || load_deployment(store.as_ref(), &tenant_owned, deployment, github)).await
    {
        Ok(mut view) => {
            view.production = view
                .instance
                .as_ref()
                .is_some_and(|i| is_production(&state.config(), &tenant, i));
            html_page(
                StatusCode::OK,
                views::deployment(
                    &view,
                    &viewer,
                    token.filter(|_| via_token),
                    notice_text(query.notice.as_deref()),
                    Utc::now(),
                ),
            )
        }
        Err(e) => store_error_page(&e, &viewer),
    }
}

/// `?after=SEQ&token=…` of `/deployments/{id}/events`.
#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    after: Option<String>,
    token: Option<String>,
}

/// An error answer of `/events`, never cached.
fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"error": {"code": code, "message": message}}))
}

/// `/deployments/{id}/events`: the log lines after `after`, the state and the progress,
/// as JSON for the page script.
pub(super) async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
) -> HttpResponse {
    let viewer = Viewer::of(&req, &state);
    let raw_id = path.into_inner();
    let Ok(id) = DeploymentId::parse(&raw_id) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("deployment {raw_id} was not found"),
        );
    };
    let Some(after) = after_seq(query.after.as_deref()) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "after must be a log sequence number (0 or more)",
        );
    };
    let token = query.token.as_deref().filter(|t| !t.is_empty());
    let (tenant, deployment) = match lookup(&state, &viewer, id, token).await {
        Ok(Lookup::Found {
            tenant, deployment, ..
        }) => (tenant, *deployment),
        Ok(Lookup::NotFound) => {
            return json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("deployment {id} was not found"),
            );
        }
        Ok(Lookup::Denied(reason)) => {
            let message = reason_text(reason).unwrap_or("sign in first");
            return json_error(StatusCode::UNAUTHORIZED, "unauthenticated", message);
        }
        Err(e) => return events_unavailable(&e, id),
    };
    let store = Arc::clone(&state.store);
    let loaded = blocking(move || {
        let lines = store.read_logs(&tenant, id, after, EVENT_LINES)?;
        let release = optional(store.get_release(&tenant, deployment.release_id))?;
        let instance = optional(store.get_instance(&tenant, deployment.instance_id))?;
        Ok(Events {
            deployment,
            lines,
            release,
            instance,
        })
    })
    .await;
    match loaded {
        Ok(events) => events_json(events, after),
        Err(e) => events_unavailable(&e, id),
    }
}

/// `?after=` as a log sequence number: 0 when absent, `None` when it is not one.
fn after_seq(after: Option<&str>) -> Option<i64> {
    match after.map(str::parse::<i64>) {
        None => Some(0),
        Some(Ok(n)) if n >= 0 => Some(n),
        Some(_) => None,
    }
}

/// What `/events` reads for one deployment.
struct Events {
    deployment: Deployment,
    lines: Vec<LogEntry>,
    release: Option<Release>,
    instance: Option<Instance>,
}

/// The answer of `/events`: the deployment as the page shows it, and its log lines after
/// `after`.
fn events_json(events: Events, after: i64) -> HttpResponse {
    let Events {
        deployment: d,
        lines,
        release,
        instance,
    } = events;
    let now = Utc::now();
    let name = instance.map_or_else(|| d.instance_id.to_string(), |i| i.name);
    let not_yet = || "not yet".to_string();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "id": d.id,
            "state": d.state,
            "final": d.state.is_final(),
            "label": views::state_label(&d),
            "title": views::headline(&name, release.map(|r| r.version), &d),
            "progress": d.progress,
            "error": html::clean_line(&d.error),
            "error_label": super::gates::reason_label(&d),
            "started": d.started_at.map(views::timestamp).unwrap_or_else(not_yet),
            "finished": d.finished_at.map(views::timestamp).unwrap_or_else(not_yet),
            "took": views::run_time(&d, now).unwrap_or_else(|| "—".to_string()),
            "waiting": d.waiting_for.as_ref().filter(|_| d.state == DeployState::Pending).map(|w| views::capitalized(&w.describe())),
            "next_after": lines.last().map_or(after, |l| l.seq),
            "more": lines.len() >= EVENT_LINES as usize,
            "lines": lines.iter().map(views::line_json).collect::<Vec<_>>(),
        }))
}

/// 503 when the deployment cannot be read now (the script tries again).
fn events_unavailable(e: &Error, id: DeploymentId) -> HttpResponse {
    tracing::warn!(error = %e, deployment = %id, "cannot load deployment events");
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the deployment cannot be read now; try again",
    )
}
