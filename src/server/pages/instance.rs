//! One instance's page and the page of locks.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;

use super::load::{find_instance, load_instance_page, load_locks};
use super::{
    NoticeQuery, Viewer, controls, html_page, notice_text, store_error_page, to_signin, views,
};
use crate::deploy::InstanceId;
use crate::deploy::service::blocking;
use crate::server::AppState;

fn instance_not_found(raw_id: &str, viewer: &Viewer) -> HttpResponse {
    html_page(
        StatusCode::NOT_FOUND,
        views::message(
            "Instance not found",
            &format!(
                "There is no instance {raw_id} you can see. Check the link, or go to the list of deployments."
            ),
            viewer,
        ),
    )
}

/// `/instances/{id}`: the instance's lock and freezes, its live release, the actions the
/// viewer may take, its latest deployments and its audit trail.
pub(super) async fn instance_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<NoticeQuery>,
) -> HttpResponse {
    let viewer = Viewer::of(&req, &state);
    let raw_id = path.into_inner();
    if !viewer.sees_index() {
        return to_signin(&format!("/instances/{raw_id}"), "signin_required");
    }
    let Ok(id) = InstanceId::parse(&raw_id) else {
        return instance_not_found(&raw_id, &viewer);
    };
    let tenants = viewer.tenants(&state.config());
    let store = Arc::clone(&state.store);
    let found = match blocking(move || find_instance(store.as_ref(), &tenants, id)).await {
        Ok(found) => found,
        Err(e) => return store_error_page(&e, &viewer),
    };
    let Some((tenant, instance)) = found.filter(|(_, i)| viewer.covers(&i.name)) else {
        return instance_not_found(&raw_id, &viewer);
    };
    match load_instance_page(&state, tenant, instance).await {
        Ok(page) => html_page(
            StatusCode::OK,
            controls::instance_page(
                &page,
                &viewer,
                notice_text(query.notice.as_deref()),
                Utc::now(),
            ),
        ),
        Err(e) => store_error_page(&e, &viewer),
    }
}

/// `/locks`: who holds which lock, why, since when and until when.
pub(super) async fn locks_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NoticeQuery>,
) -> HttpResponse {
    let viewer = Viewer::of(&req, &state);
    if !viewer.sees_index() {
        return to_signin("/locks", "signin_required");
    }
    match load_locks(&state, &viewer).await {
        Ok(view) => html_page(
            StatusCode::OK,
            controls::locks_page(
                &view,
                &viewer,
                notice_text(query.notice.as_deref()),
                Utc::now(),
            ),
        ),
        Err(e) => store_error_page(&e, &viewer),
    }
}
