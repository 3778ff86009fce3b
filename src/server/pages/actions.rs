//! The actions of the pages: lock, unlock, roll back, cancel and approve, as plain HTML forms that
//! POST (they work without JavaScript).
//!
//! Every action passes, in this order:
//! - a signed-in session (the API token's, see `access.rs`);
//! - the `Origin` check of the sign-in form (a form sent from another site is refused);
//! - the session's form token, a hidden field of every form: an HMAC of the session's
//!   cookie value under the session key, compared in constant time;
//! - the token's role, as the API checks it: `read` may not act, `deploy` may, and only an
//!   `admin` token passes a lock or a freeze with `force`;
//! - the token's tenant and instance globs (an instance outside them is not found);
//! - on a production instance (`production_environment = true`, or an environment named
//!   `production`), a `confirm` field equal to the environment's name, else the form is
//!   shown again asking for it.
//!
//! Then it goes through the `Service` like the API (`lock`, `unlock`, `rollback_as`,
//! `cancel_as`, `approve`), so locks, freezes and the audit trail treat it the same, with the actor
//! `token:NAME`. The answer is a 303 to the page with a one-line notice; a refusal is a page
//! that says why (403, 404, 409 …) and that nothing was changed.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::access::{self, Session};
use super::controls::{self, Resubmit};
use super::load::{confirmation, optional};
use super::signin::same_origin;
use super::{Viewer, html_page, see_other};
use crate::config::Role;
use crate::deploy::service::blocking;
use crate::deploy::{
    Actor, DeployState, Deployment, DeploymentId, Error, Instance, InstanceId, RollbackTarget,
};
use crate::server::AppState;

/// The fields an action form may send; each action reads the ones it needs.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    back: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    global: String,
    #[serde(default)]
    force: String,
}

impl ActionForm {
    fn global(&self) -> bool {
        !self.global.is_empty()
    }

    fn force(&self) -> bool {
        !self.force.is_empty()
    }
}

/// The form as sent, or why it could not be read.
type Sent = Result<web::Form<ActionForm>, actix_web::Error>;

/// A request that passed the checks every action shares.
struct Acting {
    viewer: Viewer,
    session: Session,
    form: ActionForm,
    /// Where the answer sends the viewer back to.
    back: String,
}

impl Acting {
    fn actor(&self) -> Actor {
        Actor::token(&self.session.name, self.session.role >= Role::Admin)
    }

    /// 303 back to the page, with the notice of `code` (see `notice_text`).
    fn done(&self, code: &str) -> HttpResponse {
        see_other(&with_notice(&self.back, code))
    }

    fn refuse(&self, status: StatusCode, title: &str, text: &str) -> HttpResponse {
        refused(status, title, text, &self.back, &self.viewer)
    }

    /// The answer for an error of the `Service`.
    fn failed(&self, error: &Error) -> HttpResponse {
        let text = error.to_string();
        match error {
            Error::Locked(_) => self.refuse(StatusCode::CONFLICT, "Refused: locked", &text),
            Error::Frozen(_) => self.refuse(StatusCode::CONFLICT, "Refused: frozen", &text),
            Error::PromotionOrder(_) => {
                self.refuse(StatusCode::CONFLICT, "Refused: promotion order", &text)
            }
            Error::NotApproved(_) => {
                self.refuse(StatusCode::FORBIDDEN, "Refused: not approved", &text)
            }
            Error::Forbidden(_) => {
                self.refuse(StatusCode::FORBIDDEN, "Refused: not allowed", &text)
            }
            Error::NotFound { .. } => self.refuse(StatusCode::NOT_FOUND, "Not found", &text),
            Error::InvalidRequest(_) => self.refuse(StatusCode::BAD_REQUEST, "Not done", &text),
            Error::Conflict(_) | Error::InvalidState(_) => {
                self.refuse(StatusCode::CONFLICT, "Not done", &text)
            }
            Error::Unavailable(_) => {
                tracing::warn!(%error, "a page action could not reach the database");
                self.refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "the database cannot be reached right now; try again in a moment",
                )
            }
            Error::Internal(_) => {
                tracing::error!(%error, "a page action failed");
                self.refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "the action failed; the details are in deploybot's log",
                )
            }
        }
    }

    /// The form again with a field for the confirmation it lacks, when `environment` must
    /// be typed and was not; `None` when the action may go on.
    fn unconfirmed(
        &self,
        environment: Option<&str>,
        action: String,
        what: &str,
    ) -> Option<HttpResponse> {
        let environment = environment?;
        if self.form.confirm.trim() == environment {
            return None;
        }
        let form = &self.form;
        let resubmit = Resubmit {
            action,
            what,
            environment,
            back: &self.back,
            fields: vec![
                ("reason", form.reason.as_str()),
                ("duration", form.duration.as_str()),
                ("global", form.global.as_str()),
                ("force", form.force.as_str()),
            ],
        };
        Some(html_page(
            StatusCode::OK,
            controls::confirm_page(&resubmit, &self.session, &self.viewer),
        ))
    }
}

/// `back` with `?notice=code` (any query it had is dropped).
fn with_notice(back: &str, code: &str) -> String {
    let path = back.split(['?', '#']).next().unwrap_or("/");
    format!("{path}?notice={code}")
}

fn refused(
    status: StatusCode,
    title: &str,
    text: &str,
    back: &str,
    viewer: &Viewer,
) -> HttpResponse {
    html_page(status, controls::refusal(title, text, back, viewer))
}

/// The checks every action shares (see the module documentation), before anything is read.
fn gate(
    req: &HttpRequest,
    state: &AppState,
    sent: Sent,
    default_back: &str,
) -> Result<Acting, Box<HttpResponse>> {
    let viewer = Viewer::of(req, state);
    let form = match sent {
        Ok(form) => form.into_inner(),
        Err(e) => {
            return Err(Box::new(refused(
                StatusCode::BAD_REQUEST,
                "Not done",
                &format!("the form could not be read ({e}); reload the page and try again"),
                default_back,
                &viewer,
            )));
        }
    };
    let back = if form.back.is_empty() {
        default_back.to_string()
    } else {
        access::local_path(Some(&form.back))
    };
    let Some(session) = viewer.session().cloned() else {
        return Err(Box::new(refused(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "only a signed-in API token may act here: sign in, then try again",
            "/signin?reason=signin_to_act",
            &viewer,
        )));
    };
    if !same_origin(req, &state.config()) {
        tracing::info!(token = %session.name, "a page action sent from another site was refused");
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Refused: another site",
            "this form was sent from another site; open the page here and try again",
            &back,
            &viewer,
        )));
    }
    if !session.form_token_matches(&form.form_token) {
        tracing::info!(token = %session.name, "a page action without its form token was refused");
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Refused: stale form",
            "this form does not belong to your session (it may be from before you signed in again, or from another site); reload the page and try again",
            &back,
            &viewer,
        )));
    }
    if !session.may_act() {
        return Err(Box::new(refused(
            StatusCode::FORBIDDEN,
            "Refused: read-only token",
            &format!(
                "the token {} has the role {}: it may only read; actions need a token of role deploy or admin",
                session.name, session.role
            ),
            &back,
            &viewer,
        )));
    }
    Ok(Acting {
        viewer,
        session,
        form,
        back,
    })
}

/// The instance `raw_id` of the session's tenant, within its token's globs, and every
/// instance of the tenant (for actions on a whole repository).
async fn acting_instance(
    state: &AppState,
    acting: &Acting,
    raw_id: &str,
) -> Result<(Instance, Vec<Instance>), HttpResponse> {
    let not_found = || {
        acting.refuse(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("instance {raw_id} was not found"),
        )
    };
    let Ok(id) = InstanceId::parse(raw_id) else {
        return Err(not_found());
    };
    let store = Arc::clone(&state.store);
    let tenant = acting.session.tenant.clone();
    let loaded = blocking(move || {
        let Some(instance) = optional(store.get_instance(&tenant, id))? else {
            return Ok(None);
        };
        let all = store.list_instances(&tenant)?;
        Ok(Some((instance, all)))
    })
    .await;
    match loaded {
        Ok(Some((instance, all))) if acting.session.covers(&instance.name) => Ok((instance, all)),
        Ok(_) => Err(not_found()),
        Err(e) => Err(acting.failed(&e)),
    }
}

/// An action on `/instances/{raw_id}`: its gate, then the instance and its tenant's others.
async fn instance_action(
    req: &HttpRequest,
    state: &AppState,
    raw_id: &str,
    sent: Sent,
) -> Result<(Acting, Instance, Vec<Instance>), HttpResponse> {
    let acting =
        gate(req, state, sent, &format!("/instances/{raw_id}")).map_err(|answer| *answer)?;
    let (instance, all) = acting_instance(state, &acting, raw_id).await?;
    Ok((acting, instance, all))
}

/// For an action on every environment of `instance`'s repository: refused unless the
/// token covers each of them.
fn covers_repo(acting: &Acting, instance: &Instance, all: &[Instance]) -> Option<HttpResponse> {
    let outside: Vec<&str> = all
        .iter()
        .filter(|i| i.repo.eq_ignore_ascii_case(&instance.repo))
        .filter(|i| !acting.session.covers(&i.name))
        .map(|i| i.name.as_str())
        .collect();
    (!outside.is_empty()).then(|| {
        acting.refuse(
            StatusCode::FORBIDDEN,
            "Refused: not allowed",
            &format!(
                "the token {} does not cover every environment of {} ({} is outside its instances); act on {} alone",
                acting.session.name,
                instance.repo,
                outside.join(", "),
                instance.name
            ),
        )
    })
}

/// A lock's duration as typed: empty for "until unlocked", else `30m`, `2h`, `1d` …
fn duration(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    humantime::parse_duration(text).map(Some).map_err(|_| {
        format!("the duration {text:?} is not one: write it like 30m, 2h or 1d, or leave it empty to lock until unlocked")
    })
}

/// `POST /instances/{id}/lock`: lock the instance (or with `global` every environment of
/// its repository) with a reason, for a duration or until unlocked.
pub(super) async fn lock(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    sent: Sent,
) -> HttpResponse {
    let (acting, instance, all) = match instance_action(&req, &state, &path, sent).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let global = acting.form.global();
    if global && let Some(answer) = covers_repo(&acting, &instance, &all) {
        return answer;
    }
    let ttl = match duration(&acting.form.duration) {
        Ok(ttl) => ttl,
        Err(text) => return acting.refuse(StatusCode::BAD_REQUEST, "Not done", &text),
    };
    let tenant = acting.session.tenant.clone();
    let what = if global {
        format!("lock every environment of {}", instance.repo)
    } else {
        format!("lock {}", instance.name)
    };
    let confirm = confirmation(&state.config(), &tenant, &instance, &all, global);
    if let Some(answer) = acting.unconfirmed(
        confirm.as_deref(),
        format!("/instances/{}/lock", instance.id),
        &what,
    ) {
        return answer;
    }
    let locked = state
        .service
        .lock(
            &tenant,
            &instance,
            global,
            &acting.actor(),
            &acting.form.reason,
            ttl,
            None,
        )
        .await;
    match locked {
        Ok(_) => acting.done("locked"),
        Err(e) => acting.failed(&e),
    }
}

/// `POST /instances/{id}/unlock`: release the instance's lock (or with `global` its
/// repository's), whoever holds it.
pub(super) async fn unlock(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    sent: Sent,
) -> HttpResponse {
    let (acting, instance, all) = match instance_action(&req, &state, &path, sent).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let global = acting.form.global();
    if global && let Some(answer) = covers_repo(&acting, &instance, &all) {
        return answer;
    }
    let tenant = acting.session.tenant.clone();
    let what = if global {
        format!("unlock every environment of {}", instance.repo)
    } else {
        format!("unlock {}", instance.name)
    };
    let confirm = confirmation(&state.config(), &tenant, &instance, &all, global);
    if let Some(answer) = acting.unconfirmed(
        confirm.as_deref(),
        format!("/instances/{}/unlock", instance.id),
        &what,
    ) {
        return answer;
    }
    match state
        .service
        .unlock(&tenant, &instance, global, &acting.actor())
        .await
    {
        Ok(Some(_)) => acting.done("unlocked"),
        Ok(None) => acting.done("not_locked"),
        Err(e) => acting.failed(&e),
    }
}

/// `POST /instances/{id}/rollback`: roll back to the previous release, with a reason;
/// `force` (an admin token) passes a lock or a freeze, and that is recorded.
pub(super) async fn rollback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    sent: Sent,
) -> HttpResponse {
    let (acting, instance, all) = match instance_action(&req, &state, &path, sent).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let tenant = acting.session.tenant.clone();
    let confirm = confirmation(&state.config(), &tenant, &instance, &all, false);
    if let Some(answer) = acting.unconfirmed(
        confirm.as_deref(),
        format!("/instances/{}/rollback", instance.id),
        &format!("roll back {} to the previous release", instance.name),
    ) {
        return answer;
    }
    let rolled = state
        .service
        .rollback_as(
            &tenant,
            instance.id,
            RollbackTarget::Previous,
            &acting.actor(),
            acting.form.force(),
            &acting.form.reason,
        )
        .await;
    match rolled {
        Ok(d) => see_other(&with_notice(
            &format!("/deployments/{}", d.id),
            "rollback_queued",
        )),
        Err(e) => acting.failed(&e),
    }
}

/// `POST /deployments/{id}/cancel`: cancel a pending deployment at once, or ask the
/// worker of a running one to stop it.
pub(super) async fn cancel(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    sent: Sent,
) -> HttpResponse {
    let (acting, deployment, instance) = match deployment_action(&req, &state, path, sent).await {
        Ok(loaded) => loaded,
        Err(answer) => return answer,
    };
    let tenant = acting.session.tenant.clone();
    let confirm = confirmation(&state.config(), &tenant, &instance, &[], false);
    let what = format!("cancel deployment {} of {}", deployment.id, instance.name);
    if !deployment.state.is_final()
        && let Some(answer) = acting.unconfirmed(
            confirm.as_deref(),
            format!("/deployments/{}/cancel", deployment.id),
            &what,
        )
    {
        return answer;
    }
    match state
        .service
        .cancel_as(&tenant, deployment.id, &acting.actor())
        .await
    {
        Ok(d) if d.state == DeployState::Running => acting.done("cancel_requested"),
        Ok(_) => acting.done("cancelled"),
        Err(e) => acting.failed(&e),
    }
}

/// `POST /deployments/{id}/approve`: approve a deployment that waits for approval, as the
/// signed-in token (not the one that asked for it).
pub(super) async fn approve(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    sent: Sent,
) -> HttpResponse {
    let (acting, deployment, _) = match deployment_action(&req, &state, path, sent).await {
        Ok(loaded) => loaded,
        Err(answer) => return answer,
    };
    let tenant = acting.session.tenant.clone();
    match state
        .service
        .approve(&tenant, deployment.id, &acting.actor())
        .await
    {
        Ok(d) if d.waiting_for.is_none() => acting.done("approved"),
        Ok(_) => acting.done("approved_more_needed"),
        Err(e) => acting.failed(&e),
    }
}

/// An action on `/deployments/{id}`: its gate, then the deployment of the session's tenant
/// and its instance, within the token's globs (else 404).
async fn deployment_action(
    req: &HttpRequest,
    state: &AppState,
    path: web::Path<String>,
    sent: Sent,
) -> Result<(Acting, Deployment, Instance), HttpResponse> {
    let raw_id = path.into_inner();
    let acting =
        gate(req, state, sent, &format!("/deployments/{raw_id}")).map_err(|answer| *answer)?;
    let not_found = |acting: &Acting| {
        acting.refuse(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("deployment {raw_id} was not found"),
        )
    };
    let Ok(id) = DeploymentId::parse(&raw_id) else {
        return Err(not_found(&acting));
    };
    let store = Arc::clone(&state.store);
    let tenant = acting.session.tenant.clone();
    let loaded = blocking(move || {
        let Some(deployment) = optional(store.get_deployment(&tenant, id))? else {
            return Ok(None);
        };
        let instance = optional(store.get_instance(&tenant, deployment.instance_id))?;
        Ok(Some((deployment, instance)))
    })
    .await;
    match loaded {
        Ok(Some((d, Some(instance)))) if acting.session.covers(&instance.name) => {
            Ok((acting, d, instance))
        }
        Ok(_) => Err(not_found(&acting)),
        Err(e) => Err(acting.failed(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_typed_and_empty_is_until_unlocked() {
        assert_eq!(duration(""), Ok(None));
        assert_eq!(duration(" 2h "), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(duration("1d"), Ok(Some(Duration::from_secs(86_400))));
        assert!(duration("soon").unwrap_err().contains("30m"));
    }

    #[test]
    fn the_notice_replaces_any_query_of_the_page() {
        assert_eq!(
            with_notice("/instances/x?notice=evil", "locked"),
            "/instances/x?notice=locked"
        );
        assert_eq!(with_notice("/locks", "unlocked"), "/locks?notice=unlocked");
    }
}
