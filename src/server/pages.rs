//! The HTML pages, rendered on the server (no front-end build):
//!
//! - `GET /` — every visible instance with its active release and latest deployments;
//! - `GET /deployments/{id}` — one deployment: release, strategy, progress, error and log,
//!   followed live by a small inline script. This is the `log_url` shown on GitHub;
//! - `GET /deployments/{id}/events?after=SEQ` — JSON for that script: log lines after SEQ,
//!   the state and the progress;
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
mod html;
mod views;

use std::sync::{Arc, OnceLock};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{AppState, ServerStore};
use crate::config::{Config, DEFAULT_GITHUB_API_URL};
use crate::deploy::service::blocking;
use crate::deploy::{Deployment, DeploymentId, Error, Instance, ListOptions, LogEntry, Release};
use access::Session;

pub use access::{LOG_TOKEN_TTL, LogTokenError, PageKeys, log_token, log_url, verify_log_token};

/// Deployments listed per instance on `/`.
const LATEST: u32 = 10;
/// Log lines rendered with the page; the script fetches the rest.
const PAGE_LOG_LINES: u32 = 10_000;
/// Log lines per `/events` answer.
const EVENT_LINES: u32 = 500;

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
        let config = &state.config;
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

/// The web address of the GitHub the API address belongs to (GitHub Enterprise:
/// `https://HOST/api/v3` → `https://HOST`).
fn github_web(config: &Config) -> String {
    let api = config.github.api_url.trim_end_matches('/');
    if api == DEFAULT_GITHUB_API_URL {
        return "https://github.com".to_string();
    }
    match api.strip_suffix("/api/v3") {
        Some(base) => base.to_string(),
        None => "https://github.com".to_string(),
    }
}

/// `/`, loaded.
struct IndexView {
    tenants: Vec<TenantView>,
    github: String,
}

struct TenantView {
    tenant: String,
    instances: Vec<InstanceView>,
}

/// One instance on `/`.
struct InstanceView {
    instance: Instance,
    active: Option<Release>,
    /// The deployment that made the active release live (its time and initiator).
    live_since: Option<Deployment>,
    deployments: Vec<DeploymentRow>,
    total: i64,
}

struct DeploymentRow {
    deployment: Deployment,
    version: Option<i64>,
}

/// `/deployments/{id}`, loaded.
struct DeploymentView {
    deployment: Deployment,
    release: Option<Release>,
    instance: Option<Instance>,
    log: Vec<LogEntry>,
    log_truncated: bool,
    github: String,
}

fn load_index(
    store: &dyn ServerStore,
    tenants: &[String],
    github: String,
) -> Result<IndexView, Error> {
    let mut views = Vec::new();
    for tenant in tenants {
        let mut instances = Vec::new();
        for instance in store.list_instances(tenant)? {
            let active = store.active_release(tenant, instance.id)?;
            let live_since = match &active {
                Some(release) => store
                    .last_succeeded(tenant, instance.id)?
                    .filter(|d| d.release_id == release.id),
                None => None,
            };
            let page = store.list_deployments(
                tenant,
                instance.id,
                &ListOptions {
                    cursor: None,
                    limit: Some(LATEST),
                },
            )?;
            // Most deployments are of recent releases: one query finds their versions.
            let recent = store.list_releases(
                tenant,
                instance.id,
                &ListOptions {
                    cursor: None,
                    limit: Some(ListOptions::MAX_LIMIT),
                },
            )?;
            let mut deployments = Vec::new();
            for deployment in page.items {
                let version = match recent.items.iter().find(|r| r.id == deployment.release_id) {
                    Some(release) => Some(release.version),
                    None => match store.get_release(tenant, deployment.release_id) {
                        Ok(release) => Some(release.version),
                        Err(Error::NotFound { .. }) => None,
                        Err(e) => return Err(e),
                    },
                };
                deployments.push(DeploymentRow {
                    deployment,
                    version,
                });
            }
            instances.push(InstanceView {
                instance,
                active,
                live_since,
                deployments,
                total: page.total,
            });
        }
        views.push(TenantView {
            tenant: tenant.clone(),
            instances,
        });
    }
    Ok(IndexView {
        tenants: views,
        github,
    })
}

/// The deployment and its tenant, trying each of `tenants` (see the module documentation).
fn find_deployment(
    store: &dyn ServerStore,
    tenants: &[String],
    id: DeploymentId,
) -> Result<Option<(String, Deployment)>, Error> {
    for tenant in tenants {
        match store.get_deployment(tenant, id) {
            Ok(deployment) => return Ok(Some((tenant.clone(), deployment))),
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn optional<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn load_deployment(
    store: &dyn ServerStore,
    tenant: &str,
    deployment: Deployment,
    github: String,
) -> Result<DeploymentView, Error> {
    let release = optional(store.get_release(tenant, deployment.release_id))?;
    let instance = optional(store.get_instance(tenant, deployment.instance_id))?;
    let log = store.read_logs(tenant, deployment.id, 0, PAGE_LOG_LINES)?;
    let log_truncated = log.len() >= PAGE_LOG_LINES as usize;
    Ok(DeploymentView {
        deployment,
        release,
        instance,
        log,
        log_truncated,
        github,
    })
}

/// What a request for one deployment may see.
enum Lookup {
    /// Visible; `via_token` when only the log token allowed it.
    Found {
        tenant: String,
        deployment: Box<Deployment>,
        via_token: bool,
    },
    /// No such deployment for this viewer.
    NotFound,
    /// The viewer must sign in first (the reason is shown on the sign-in page).
    Denied(&'static str),
}

async fn lookup(
    state: &AppState,
    viewer: &Viewer,
    id: DeploymentId,
    token: Option<&str>,
) -> Result<Lookup, Error> {
    let config = &state.config;
    let store = Arc::clone(&state.store);
    let tenants = viewer.tenants(config);
    let found = blocking(move || {
        let Some((tenant, deployment)) = find_deployment(store.as_ref(), &tenants, id)? else {
            return Ok(None);
        };
        let instance = optional(store.get_instance(&tenant, deployment.instance_id))?;
        Ok(Some((tenant, deployment, instance)))
    })
    .await?;
    // A deployment of an instance outside a signed-in token's globs is not found for it
    // (a log token may still open it).
    let found = found.filter(|(_, _, instance)| match (viewer, instance) {
        (Viewer::Public(_), _) => true,
        (_, Some(instance)) => viewer.covers(&instance.name),
        (_, None) => false,
    });
    if let Some((tenant, deployment, _)) = found {
        return Ok(Lookup::Found {
            tenant,
            deployment: Box::new(deployment),
            via_token: false,
        });
    }
    let Some(token) = token else {
        return Ok(match viewer {
            Viewer::Anonymous => Lookup::Denied("signin_required"),
            _ => Lookup::NotFound,
        });
    };
    match verify_log_token(&state.keys, id, token, Utc::now()) {
        Ok(()) => {}
        Err(LogTokenError::Expired) => return Ok(Lookup::Denied("link_expired")),
        Err(LogTokenError::Invalid | LogTokenError::Malformed) => {
            return Ok(Lookup::Denied("link_invalid"));
        }
    }
    let store = Arc::clone(&state.store);
    let tenants = configured_tenants(config);
    Ok(
        match blocking(move || find_deployment(store.as_ref(), &tenants, id)).await? {
            Some((tenant, deployment)) => Lookup::Found {
                tenant,
                deployment: Box::new(deployment),
                via_token: true,
            },
            None => Lookup::NotFound,
        },
    )
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
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
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

/// The message for a `reason` of the sign-in page; unknown reasons show nothing, so a
/// link cannot put words on the page.
fn reason_text(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "signin_required" => "Sign in to see deployments.",
        "link_expired" => "This deployment link has expired. Sign in to see the deployment.",
        "link_invalid" => {
            "This deployment link is not valid (it may have been cut off or changed). Sign in to see the deployment."
        }
        "signed_out" => "You are signed out.",
        _ => return None,
    })
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

async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let viewer = Viewer::of(&req, &state);
    if !viewer.sees_index() {
        return to_signin("/", "signin_required");
    }
    let tenants = viewer.tenants(&state.config);
    let github = github_web(&state.config);
    let store = Arc::clone(&state.store);
    match blocking(move || load_index(store.as_ref(), &tenants, github)).await {
        Ok(mut view) => {
            for tenant in &mut view.tenants {
                tenant.instances.retain(|i| viewer.covers(&i.instance.name));
            }
            html_page(StatusCode::OK, views::index(&view, &viewer, Utc::now()))
        }
        Err(e) => store_error_page(&e, &viewer),
    }
}

/// `?token=` of a deployment page and its events.
#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn deployment_page(
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
    let github = github_web(&state.config);
    let store = Arc::clone(&state.store);
    match blocking(move || load_deployment(store.as_ref(), &tenant, deployment, github)).await {
        Ok(view) => html_page(
            StatusCode::OK,
            views::deployment(&view, &viewer, token.filter(|_| via_token), Utc::now()),
        ),
        Err(e) => store_error_page(&e, &viewer),
    }
}

/// `?after=SEQ&token=…` of `/deployments/{id}/events`.
#[derive(Debug, Deserialize)]
struct EventsQuery {
    after: Option<String>,
    token: Option<String>,
}

fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"error": {"code": code, "message": message}}))
}

async fn events(
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
    let after = match query.after.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(n)) if n >= 0 => n,
        Some(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "after must be a log sequence number (0 or more)",
            );
        }
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
        Err(e) => {
            tracing::warn!(error = %e, deployment = %id, "cannot load deployment events");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the deployment cannot be read now; try again",
            );
        }
    };
    let store = Arc::clone(&state.store);
    let loaded = blocking(move || {
        let lines = store.read_logs(&tenant, id, after, EVENT_LINES)?;
        let release = optional(store.get_release(&tenant, deployment.release_id))?;
        let instance = optional(store.get_instance(&tenant, deployment.instance_id))?;
        Ok((deployment, lines, release, instance))
    })
    .await;
    let (d, lines, release, instance) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::warn!(error = %e, deployment = %id, "cannot load deployment events");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the deployment cannot be read now; try again",
            );
        }
    };
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
            "started": d.started_at.map(views::timestamp).unwrap_or_else(not_yet),
            "finished": d.finished_at.map(views::timestamp).unwrap_or_else(not_yet),
            "took": views::run_time(&d, now).unwrap_or_else(|| "—".to_string()),
            "next_after": lines.last().map_or(after, |l| l.seq),
            "more": lines.len() >= EVENT_LINES as usize,
            "lines": lines.iter().map(views::line_json).collect::<Vec<_>>(),
        }))
}

/// `?next=…&reason=…` of the sign-in page.
#[derive(Debug, Deserialize)]
struct SigninQuery {
    next: Option<String>,
    reason: Option<String>,
}

async fn signin_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<SigninQuery>,
) -> HttpResponse {
    let next = access::local_path(query.next.as_deref());
    let viewer = Viewer::of(&req, &state);
    if state.config.pages.public && query.reason.is_none() {
        return see_other(&next);
    }
    let notice = match (&viewer, query.reason.as_deref().and_then(reason_text)) {
        (Viewer::Signed(s), None) => {
            Some(format!("You are signed in as {} ({}).", s.name, s.tenant))
        }
        (_, reason) => reason.map(str::to_string),
    };
    html_page(
        StatusCode::OK,
        views::signin(
            &next,
            notice.as_deref(),
            None,
            !state.config.api.tokens.is_empty(),
        ),
    )
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
struct SigninForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// A cross-site form post is refused: its `Origin` must be this server (as configured in
/// `public_url`, or as the browser reached it).
fn same_origin(req: &HttpRequest, config: &Config) -> bool {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return true;
    };
    let public = config.public_url.trim_end_matches('/');
    let public_origin = public
        .find("://")
        .and_then(|i| public[i + 3..].find('/').map(|j| &public[..i + 3 + j]))
        .unwrap_or(public);
    if origin.eq_ignore_ascii_case(public_origin) {
        return true;
    }
    let info = req.connection_info();
    origin.eq_ignore_ascii_case(&format!("{}://{}", info.scheme(), info.host()))
}

async fn signin(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SigninForm>,
) -> HttpResponse {
    let config = &state.config;
    let next = access::local_path(form.next.as_deref());
    if !same_origin(&req, config) {
        return html_page(
            StatusCode::FORBIDDEN,
            views::signin(
                &next,
                None,
                Some(
                    "This form was sent from another site; open the sign-in page here and try again.",
                ),
                true,
            ),
        );
    }
    match access::check_api_token(config, &form.token) {
        Some(token) => {
            tracing::info!(token = %token.name, tenant = %token.tenant, role = %token.role, "signed in to the pages");
            let value = access::session_value(&state.keys, token, Utc::now());
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, next))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::SET_COOKIE, access::session_cookie(config, &value)))
                .finish()
        }
        None => {
            tracing::info!("a page sign-in was refused: the token matches no configured API token");
            html_page(
                StatusCode::UNAUTHORIZED,
                views::signin(
                    &next,
                    None,
                    Some(
                        "That token does not match any configured API token. Check that you pasted all of it.",
                    ),
                    !config.api.tokens.is_empty(),
                ),
            )
        }
    }
}

async fn signout(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/signin?reason=signed_out"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::SET_COOKIE,
            access::clear_session_cookie(&state.config),
        ))
        .finish()
}

/// The routes of the pages.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/deployments/{id}", web::get().to(deployment_page))
        .route("/deployments/{id}/events", web::get().to(events))
        .route("/signin", web::get().to(signin_form))
        .route("/signin", web::post().to(signin))
        .route("/signout", web::post().to(signout));
}
