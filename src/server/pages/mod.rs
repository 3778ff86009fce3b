//! The HTML pages, rendered on the server (no front-end build):
//!
//! - `GET /` — every visible instance with its active release and latest deployments;
//! - `GET /deployments/{id}` — one deployment: release, strategy, progress, error and log,
//!   followed live by a small inline script. This is the `log_url` shown on GitHub;
//! - `GET /deployments/{id}/events?after=SEQ` — JSON for that script: log lines after SEQ,
//!   the state and the progress;
//! - `GET /instances/{id}` — one instance: its lock, freezes, live release, latest
//!   deployments, audit trail, and the actions a signed-in token may take on it;
//! - `GET /locks` — the live locks of the tenants the viewer sees;
//! - `GET /audit` — the signed-in token's audit trail, newest first, a page at a time
//!   (see `pages/audit.rs`);
//! - `POST /instances/{id}/lock`, `…/unlock`, `…/rollback`, `POST /deployments/{id}/cancel`,
//!   `POST /deployments/{id}/approve`
//!   — the actions, as plain HTML forms (see `pages/actions.rs`);
//! - `GET /signin`, `POST /signin`, `POST /signout` — sign-in with an API token.
//!
//! Access: with `[pages] public = true` everything is visible. Otherwise a viewer signs in
//! with an API token and sees only that token's tenant, or opens one deployment with the
//! signed `?token=` of its `log_url` (see [`log_token`]; the key design is in `pages/access.rs`).
//!
//! The store is scoped by tenant and has no cross-tenant lookup on purpose. When the tenant
//! of a deployment is not known yet (public pages, a log token), the pages try each
//! configured tenant in turn (`config.instances[].tenant()`, deduplicated) rather than
//! adding a query that ignores tenants: a handful of indexed lookups, and the store keeps
//! its rule that every query names its tenant. A tenant that is no longer configured is not
//! shown.
//!
//! Nothing secret reaches a page: env values are never rendered (only their keys), nor are
//! tokens or secrets; every value from the database or GitHub is HTML-escaped.

mod access;
mod actions;
mod audit;
mod controls;
mod deployment;
mod gates;
mod html;
mod instance;
mod load;
mod signin;
mod views;

use std::sync::{Arc, OnceLock};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::config::Config;
use crate::deploy::Error;
use crate::deploy::service::blocking;
use access::Session;
use load::load_index;

pub use access::{LOG_TOKEN_TTL, LogTokenError, PageKeys, log_token, log_url, verify_log_token};
pub(crate) use html::escape_into;

/// Who is looking at a page.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Viewer {
    /// `[pages] public = true`: everything is visible (signed in or not).
    Public(Option<Session>),
    /// Signed in: only this tenant is visible.
    Signed(Session),
    /// Private pages, not signed in.
    Anonymous,
}

impl Viewer {
    fn of(req: &HttpRequest, state: &AppState) -> Viewer {
        let config = &state.config();
        let session = req
            .headers()
            .get_all(header::COOKIE)
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| access::cookie(h, access::SESSION_COOKIE))
            .and_then(|value| access::verify_session(config, &state.keys, value, Utc::now()));
        match (config.pages.public, session) {
            (true, session) => Viewer::Public(session),
            (false, Some(session)) => Viewer::Signed(session),
            (false, None) => Viewer::Anonymous,
        }
    }

    /// The tenants whose rows this viewer may see.
    fn tenants(&self, config: &Config) -> Vec<String> {
        match self {
            Viewer::Public(_) => configured_tenants(config),
            Viewer::Signed(session) => vec![session.tenant.clone()],
            Viewer::Anonymous => Vec::new(),
        }
    }

    /// Whether this viewer may see the instance `name` (a signed-in token's `instances`
    /// globs; public pages show every instance).
    fn covers(&self, name: &str) -> bool {
        match self {
            Viewer::Public(_) => true,
            Viewer::Signed(session) => session.covers(name),
            Viewer::Anonymous => false,
        }
    }

    /// The signed-in session, on private or public pages.
    fn session(&self) -> Option<&Session> {
        match self {
            Viewer::Signed(session) | Viewer::Public(Some(session)) => Some(session),
            Viewer::Public(None) | Viewer::Anonymous => None,
        }
    }

    /// The session that may act on the instance `name` of `tenant`: signed in with a token
    /// of that tenant, of role `deploy` or `admin`, whose globs cover the instance.
    fn actor(&self, tenant: &str, name: &str) -> Option<&Session> {
        self.session()
            .filter(|s| s.tenant == tenant && s.may_act() && s.covers(name))
    }

    /// Whether `/` shows this viewer anything (a log-token visitor may see no more than
    /// their one deployment).
    fn sees_index(&self) -> bool {
        !matches!(self, Viewer::Anonymous)
    }
}

/// The tenants of the configured instances, sorted and deduplicated.
fn configured_tenants(config: &Config) -> Vec<String> {
    let mut tenants: Vec<String> = config.instances.iter().map(|i| i.tenant()).collect();
    tenants.sort();
    tenants.dedup();
    tenants
}

/// GitHub's web address for links (`[github]`'s `web_url`, without a trailing slash).
fn github_web(config: &Config) -> String {
    config.github.web_url.trim_end_matches('/').to_string()
}

/// The one Content-Security-Policy of the pages: only our inline script and style (by
/// hash), requests only to this server, no framing.
fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = |text: &str| STANDARD.encode(Sha256::digest(text.as_bytes()));
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
             img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            hash(views::SCRIPT),
            hash(views::STYLE)
        )
    })
}

fn html_page(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, content_security_policy()))
        // `same-origin`: a page's address (a log link's token) never reaches another site,
        // and this site's own form posts carry their Origin for the cross-site check
        // (under `no-referrer` browsers send `Origin: null`).
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(body)
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Percent-encodes a path for a query value (unreserved characters and `/` stay).
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn to_signin(next: &str, reason: &str) -> HttpResponse {
    see_other(&format!(
        "/signin?next={}&reason={reason}",
        encode_query_value(next)
    ))
}

fn store_error_page(error: &Error, viewer: &Viewer) -> HttpResponse {
    match error {
        Error::Unavailable(_) => {
            tracing::warn!(%error, "a page could not be loaded");
            html_page(
                StatusCode::SERVICE_UNAVAILABLE,
                views::message(
                    "Temporarily unavailable",
                    "The database cannot be reached right now. Try again in a moment.",
                    viewer,
                ),
            )
        }
        _ => {
            tracing::error!(%error, "a page could not be loaded");
            html_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                views::message(
                    "Something went wrong",
                    "This page could not be shown; the details are in deploybot's log.",
                    viewer,
                ),
            )
        }
    }
}

fn not_found_page(id: &str, viewer: &Viewer) -> HttpResponse {
    let text = format!(
        "There is no deployment {id}{}. Check the link, or go to the list of deployments.",
        match viewer {
            Viewer::Signed(s) => format!(" in {}", s.tenant),
            _ => String::new(),
        }
    );
    html_page(
        StatusCode::NOT_FOUND,
        views::message("Deployment not found", &text, viewer),
    )
}

/// `?notice=…` of a page an action sent the viewer to.
#[derive(Debug, Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

/// The one-line notice for a `notice` code an action redirects with; unknown codes show
/// nothing, so a link cannot put words on a page.
fn notice_text(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "locked" => "Locked: only the holder deploys here; pushes wait until it is unlocked.",
        "unlocked" => "Unlocked: the newest push that waited deploys now.",
        "not_locked" => "There was no lock to release.",
        "cancelled" => "Cancelled.",
        "cancel_requested" => {
            "Cancellation requested: its worker stops the deployment and restores the previous release."
        }
        "rollback_queued" => "Rollback queued.",
        "approved" => "Approved: the deployment runs now.",
        "approved_more_needed" => {
            "Approved: the deployment still waits for another deployer's approval."
        }
        _ => return None,
    })
}

/// `/`: every instance the viewer may see, with its active release and latest deployments.
async fn index(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NoticeQuery>,
) -> HttpResponse {
    let viewer = Viewer::of(&req, &state);
    if !viewer.sees_index() {
        return to_signin("/", "signin_required");
    }
    let tenants = viewer.tenants(&state.config());
    let github = github_web(&state.config());
    let store = Arc::clone(&state.store);
    let mut view = match blocking(move || load_index(store.as_ref(), &tenants, github)).await {
        Ok(view) => view,
        Err(e) => return store_error_page(&e, &viewer),
    };
    for tenant in &mut view.tenants {
        tenant.instances.retain(|i| viewer.covers(&i.instance.name));
    }
    if let Err(e) = load::add_control(&state, &mut view).await {
        return store_error_page(&e, &viewer);
    }
    let notice = notice_text(query.notice.as_deref());
    html_page(
        StatusCode::OK,
        views::index(&view, &viewer, notice, Utc::now()),
    )
}

/// The routes of the pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route(
            "/deployments/{id}",
            web::get().to(deployment::deployment_page),
        )
        .route(
            "/deployments/{id}/events",
            web::get().to(deployment::events),
        )
        .route("/deployments/{id}/cancel", web::post().to(actions::cancel))
        .route(
            "/deployments/{id}/approve",
            web::post().to(actions::approve),
        )
        .route("/instances/{id}", web::get().to(instance::instance_page))
        .route("/instances/{id}/lock", web::post().to(actions::lock))
        .route("/instances/{id}/unlock", web::post().to(actions::unlock))
        .route(
            "/instances/{id}/rollback",
            web::post().to(actions::rollback),
        )
        .route("/locks", web::get().to(instance::locks_page))
        .route("/audit", web::get().to(audit::audit_page))
        .route("/signin", web::get().to(signin::signin_form))
        .route("/signin", web::post().to(signin::signin))
        .route("/signout", web::post().to(signin::signout));
}
