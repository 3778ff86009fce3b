//! `/audit`: the signed-in token's audit trail, newest first, one page at a time
//! (`?cursor=` of the "Older" link), optionally of one instance (`?instance=NAME`). It reads
//! the trail exactly as `GET /v1/audit` does for the same token (`api::readable_audit`): the
//! token's tenant only; for a token limited to some instances, only their events and none
//! of the repository-wide ones. The page only reads: nothing edits or removes an event.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::access::Session;
use super::html::Html;
use super::views::{page, timestamp};
use super::{Viewer, encode_query_value, html_page, store_error_page, to_signin, views};
use crate::deploy::{AuditEvent, AuditPage, Error, Instance, ListOptions};
use crate::server::AppState;
use crate::server::api::readable_audit;
use crate::server::auth::{Caller, Need, need};
use crate::server::error::{ApiError, ErrorCode};

/// Events on one page of `/audit`.
const PAGE_EVENTS: u32 = 50;

/// `?instance&cursor` of `/audit`; an empty value is the same as none.
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    instance: Option<String>,
    cursor: Option<String>,
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// The API caller a session stands for: the token it signed in with, as configured now.
fn caller_of(session: &Session) -> Caller {
    Caller {
        name: session.name.clone(),
        tenant: session.tenant.clone(),
        role: session.role,
        instances: session.instances.clone(),
    }
}

/// `/audit`: only for a signed-in viewer, also on public pages (the trail holds people's
/// words and names).
pub(super) async fn audit_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> HttpResponse {
    let viewer = Viewer::of(&req, &state);
    let Some(session) = viewer.session() else {
        let here = req.uri().path_and_query().map_or("/audit", |p| p.as_str());
        return to_signin(here, "signin_required");
    };
    let caller = caller_of(session);
    if caller.role < need::Read::ROLE {
        return html_page(
            StatusCode::FORBIDDEN,
            views::message(
                "Not allowed",
                "Your token may not read the audit trail.",
                &viewer,
            ),
        );
    }
    let instance = non_empty(query.instance.as_deref());
    let options = ListOptions {
        cursor: non_empty(query.cursor.as_deref()).map(str::to_string),
        limit: Some(PAGE_EVENTS),
    };
    let trail = match readable_audit(&state, &caller, instance, options).await {
        Ok(trail) => trail,
        Err(e) => return audit_error(&e, instance, &viewer),
    };
    let instances: Vec<Instance> = match state.service.list_instances(&caller.tenant).await {
        Ok(all) => all.into_iter().filter(|i| caller.covers(&i.name)).collect(),
        Err(e) => return store_error_page(&e, &viewer),
    };
    let view = AuditView {
        tenant: &caller.tenant,
        instance,
        instances: &instances,
        trail: &trail,
        first_page: non_empty(query.cursor.as_deref()).is_none(),
    };
    html_page(StatusCode::OK, render(&view, &viewer))
}

/// The page for a request the trail could not be read for.
fn audit_error(error: &ApiError, instance: Option<&str>, viewer: &Viewer) -> HttpResponse {
    match (error.code(), instance) {
        (ErrorCode::NotFound, Some(key)) => html_page(
            StatusCode::NOT_FOUND,
            views::message(
                "Instance not found",
                &format!(
                    "There is no instance {key} you can see. Check the link, or read the whole audit trail."
                ),
                viewer,
            ),
        ),
        (ErrorCode::InvalidRequest, _) => html_page(
            StatusCode::BAD_REQUEST,
            views::message(
                "Not a page of the audit trail",
                "This address names no page of the audit trail: its instance or its position (cursor) is not valid. Start again from the audit trail's first page.",
                viewer,
            ),
        ),
        (ErrorCode::Unavailable, _) => {
            store_error_page(&Error::Unavailable(error.message().into()), viewer)
        }
        _ => store_error_page(&Error::Internal(error.message().into()), viewer),
    }
}

/// One page of `/audit`, loaded.
struct AuditView<'a> {
    tenant: &'a str,
    /// The instance key the page is filtered by, as given.
    instance: Option<&'a str>,
    /// The tenant's instances the viewer covers, by name.
    instances: &'a [Instance],
    trail: &'a AuditPage,
    first_page: bool,
}

fn render(view: &AuditView<'_>, viewer: &Viewer) -> String {
    page("Audit trail", viewer, &[], |html| {
        html.raw("<p class=\"crumbs\"><a href=\"/\">← All deployments</a></p>\n<h1>Audit trail</h1>\n<p class=\"lede\">Who did what in <strong>")
            .text(view.tenant)
            .raw("</strong>");
        if let Some(key) = view.instance {
            html.raw(" on <strong id=\"audit-instance\">")
                .text(key)
                .raw("</strong> · <a href=\"/audit\">every instance</a>");
        }
        html.raw(", newest first. Times are UTC.</p>\n");
        filter_form(html, view);
        if view.trail.items.is_empty() {
            html.raw("<p class=\"empty\" id=\"audit-empty\">")
                .raw(if view.first_page {
                    "Nothing recorded yet."
                } else {
                    "No events you can see on this page."
                })
                .raw("</p>\n");
        } else {
            events_table(html, view);
        }
        pager(html, view);
    })
}

/// The choice of one instance, or all of them (a plain GET form).
fn filter_form(html: &mut Html, view: &AuditView<'_>) {
    if view.instances.is_empty() {
        return;
    }
    html.raw("<form class=\"action filter\" method=\"get\" action=\"/audit\"><label>Instance <select name=\"instance\"><option value=\"\">all you can see</option>");
    for i in view.instances {
        let chosen = view
            .instance
            .is_some_and(|key| key == i.name || key == i.id.to_string());
        html.raw("<option value=\"").text(&i.name).raw("\"");
        if chosen {
            html.raw(" selected");
        }
        html.raw(">").text(&i.name).raw("</option>");
    }
    html.raw("</select></label><button type=\"submit\">Show</button></form>\n");
}

fn events_table(html: &mut Html, view: &AuditView<'_>) {
    html.raw("<table class=\"deployments audit\" id=\"audit\"><thead><tr><th>When (UTC)</th><th>Who</th><th>What</th><th>Instance</th><th>Deployment</th><th>Detail</th></tr></thead><tbody>\n");
    for event in &view.trail.items {
        event_row(html, event, view.instances);
    }
    html.raw("</tbody></table>\n");
}

fn event_row(html: &mut Html, event: &AuditEvent, instances: &[Instance]) {
    html.raw("<tr><td class=\"when\"><time datetime=\"")
        .text(event.at.to_rfc3339())
        .raw("\">")
        .text(timestamp(event.at))
        .raw("</time></td><td class=\"who\">")
        .text(&event.actor)
        .raw("</td><td class=\"what\"><code>")
        .text(&event.action)
        .raw("</code></td><td class=\"instance\">");
    match event.instance_id {
        Some(id) => match instances.iter().find(|i| i.id == id) {
            Some(i) => {
                html.raw("<a href=\"/instances/")
                    .text(i.id)
                    .raw("\">")
                    .text(&i.name)
                    .raw("</a>");
            }
            None => {
                html.raw("<code>").text(id).raw("</code>");
            }
        },
        None => {
            html.raw("<span class=\"muted\">every instance</span>");
        }
    }
    html.raw("</td><td class=\"deployment\">");
    if let Some(id) = event.deployment_id {
        html.raw("<a href=\"/deployments/")
            .text(id)
            .raw("\"><code>")
            .text(id)
            .raw("</code></a>");
    }
    html.raw("</td><td class=\"detail\">")
        .text(&event.detail)
        .raw("</td></tr>\n");
}

/// "Newest" back to the first page, and "Older" to the next one.
fn pager(html: &mut Html, view: &AuditView<'_>) {
    let instance = view
        .instance
        .map(|key| format!("instance={}", encode_query_value(key)));
    if view.first_page && view.trail.next_cursor.is_none() {
        return;
    }
    html.raw("<p class=\"more pager\">");
    if !view.first_page {
        let newest = match &instance {
            Some(q) => format!("/audit?{q}"),
            None => "/audit".to_string(),
        };
        html.raw("<a id=\"newest\" href=\"")
            .text(newest)
            .raw("\">← Newest</a> ");
    }
    if let Some(cursor) = &view.trail.next_cursor {
        let mut older = format!("/audit?cursor={}", encode_query_value(cursor));
        if let Some(q) = &instance {
            older.push('&');
            older.push_str(q);
        }
        html.raw("<a id=\"older\" rel=\"next\" href=\"")
            .text(older)
            .raw("\">Older →</a>");
    }
    html.raw("</p>\n");
}
