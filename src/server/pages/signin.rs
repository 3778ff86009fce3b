//! Signing in to the pages with an API token, and out again.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;

use super::{Viewer, access, html_page, see_other, views};
use crate::config::Config;
use crate::server::AppState;

/// The message for a `reason` of the sign-in page; unknown reasons show nothing, so a
/// link cannot put words on the page.
pub(super) fn reason_text(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "signin_required" => "Sign in to see deployments.",
        "link_expired" => "This deployment link has expired. Sign in to see the deployment.",
        "link_invalid" => {
            "This deployment link is not valid (it may have been cut off or changed). Sign in to see the deployment."
        }
        "signed_out" => "You are signed out.",
        "signin_to_act" => {
            "Sign in with an API token of role deploy or admin to lock, unlock, cancel or roll back."
        }
        _ => return None,
    })
}
/// `?next=…&reason=…` of the sign-in page.
#[derive(Debug, Deserialize)]
pub(super) struct SigninQuery {
    next: Option<String>,
    reason: Option<String>,
}

/// `GET /signin`: the form, with a notice for the reason the viewer was sent here.
pub(super) async fn signin_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<SigninQuery>,
) -> HttpResponse {
    let next = access::local_path(query.next.as_deref());
    let viewer = Viewer::of(&req, &state);
    if state.config().pages.public && query.reason.is_none() {
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
            !state.config().api.tokens.is_empty(),
        ),
    )
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct SigninForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// A cross-site form post is refused: its `Origin` must be this server (as configured in
/// `public_url`, or the `Host` the browser reached). Proxy headers (`Forwarded`,
/// `X-Forwarded-*`) are not trusted for this: behind a proxy, set `public_url`.
pub(super) fn same_origin(req: &HttpRequest, config: &Config) -> bool {
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
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let Some(host) = host else {
        return false;
    };
    ["http", "https"]
        .iter()
        .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}://{host}")))
}

/// `POST /signin`: a configured API token starts a signed session cookie.
pub(super) async fn signin(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SigninForm>,
) -> HttpResponse {
    let config = &state.config();
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

/// `POST /signout`: the session cookie is cleared.
pub(super) async fn signout(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/signin?reason=signed_out"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::SET_COOKIE,
            access::clear_session_cookie(&state.config()),
        ))
        .finish()
}
