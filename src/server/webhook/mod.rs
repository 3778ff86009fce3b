//! `POST /webhooks/github`: the body is read within the bounds on unverified input, its
//! signature verified over the raw bytes before anything is parsed (with the secret of
//! the tenant the body claims), and the event handed to `handle`, which decides what it
//! does and records the delivery before answering. GitHub is never called from here.

mod claim;
mod handle;
mod unverified;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde_json::json;
use tracing::Instrument;

use super::AppState;
use crate::config::Config;
use crate::github::webhook::{events, signature};
use crate::metrics::{self, WebhookOutcome};
use claim::{Claim, claim};
use handle::handle;
use unverified::{read_unverified, refused};

/// One step of answering a delivery: go on with `T`, or the answer that ends it there
/// (boxed: a response is large).
type Step<T> = Result<T, Box<HttpResponse>>;

/// Webhook settings that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// Accept deliveries without a valid signature (`--insecure-no-signature`).
    pub insecure_no_signature: bool,
}

/// An error answer in the API's shape: `{"error": {"code", "message"}}`.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"code": code, "message": message.into()}}))
}

/// A 503 that asks the sender to come back after `seconds`, on a connection that is
/// closed (the rest of an unread body may still be on its way).
fn busy(code: &str, message: impl Into<String>, seconds: u32) -> HttpResponse {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&seconds.to_string()) {
        response
            .headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, value);
    }
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    response
}

/// The header `name` of `req`, when it is present and visible ASCII.
fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads, verifies and parses a delivery, then hands it to `handle`.
#[post("/webhooks/github")]
async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    settings: Option<web::Data<WebhookSettings>>,
) -> HttpResponse {
    let insecure = settings.as_ref().is_some_and(|s| s.insecure_no_signature);
    let config = &state.config();
    let (body, ticket) = match read_unverified(&req, payload, config).await {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let claim = match verified_claim(&req, config, insecure, &body) {
        Ok(claim) => claim,
        Err(response) => return *response,
    };
    // Verified: the body no longer counts against the unverified bounds.
    drop(ticket);
    let (event_name, delivery_id) = match named(&req) {
        Ok(named) => named,
        Err(response) => return *response,
    };
    // The tenant is recorded once the event is routed (`handle`).
    let span = tracing::info_span!(
        "webhook",
        delivery = %delivery_id,
        event = %event_name,
        tenant = tracing::field::Empty
    );
    let event = match span.in_scope(|| parse_event(event_name, &body)) {
        Ok(event) => event,
        Err(response) => return *response,
    };
    handle(&state, delivery_id, event_name, event, claim)
        .instrument(span)
        .await
}

/// The claim of the body, once its signature is verified with the secret of the tenant
/// it names (skipped when `insecure`); a refusal is counted and answered.
fn verified_claim(req: &HttpRequest, config: &Config, insecure: bool, body: &[u8]) -> Step<Claim> {
    let event_header = header(req, "x-github-event");
    let claim = claim(body).map_err(|message| {
        Box::new(refused(
            event_header,
            WebhookOutcome::BadRequest,
            error(StatusCode::BAD_REQUEST, "invalid_payload", message),
        ))
    })?;
    if insecure {
        return Ok(claim);
    }
    let secrets = config.webhook_secrets_for(claim.tenant.as_deref());
    if let Err(e) = signature::verify(
        &secrets,
        header(req, "x-hub-signature-256"),
        req.headers().contains_key("x-hub-signature"),
        body,
    ) {
        let message = refusal(config, claim.tenant.as_deref(), &e);
        tracing::warn!(delivery = header(req, "x-github-delivery"), tenant = claim.tenant.as_deref(), error = %message, "webhook refused");
        return Err(Box::new(refused(
            event_header,
            WebhookOutcome::BadSignature,
            error(StatusCode::UNAUTHORIZED, "bad_signature", message),
        )));
    }
    Ok(claim)
}

/// The event name and delivery id a verified delivery's headers give; a 400 without them.
fn named(req: &HttpRequest) -> Step<(&str, &str)> {
    let Some(event_name) = header(req, "x-github-event").filter(|e| !e.is_empty()) else {
        metrics::global().webhook(None, WebhookOutcome::BadRequest);
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the X-GitHub-Event header is missing",
        )));
    };
    let Some(delivery_id) =
        header(req, "x-github-delivery").filter(|d| !d.is_empty() && d.len() <= 200)
    else {
        metrics::global().webhook(Some(event_name), WebhookOutcome::BadRequest);
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the X-GitHub-Delivery header is missing or longer than 200 characters",
        )));
    };
    Ok((event_name, delivery_id))
}

/// The event of a verified body; a payload that does not read as its event is a 400.
fn parse_event(event_name: &str, body: &[u8]) -> Step<events::Event> {
    events::parse(event_name, body).map_err(|e| {
        tracing::warn!(error = %e, "webhook payload refused");
        metrics::global().webhook(Some(event_name), WebhookOutcome::BadRequest);
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            e.to_string(),
        ))
    })
}

/// Why a signature was refused, naming the tenant whose secret was expected.
fn refusal(config: &Config, tenant: Option<&str>, e: &signature::SignatureError) -> String {
    let (signature::SignatureError::Mismatch, Some(tenant)) = (e, tenant) else {
        return e.to_string();
    };
    match config.tenants.iter().find(|t| t.name == tenant) {
        Some(entry) => format!(
            "X-Hub-Signature-256 does not match the secret of tenant \"{tenant}\", which owns the repository this delivery names: sign {tenant}'s webhooks with the secret in {}{}",
            entry.secret_env,
            if config.github.app_id.is_some() {
                " (or the GitHub App's secret)"
            } else {
                ""
            }
        ),
        None if !config.tenants.is_empty() => format!(
            "X-Hub-Signature-256 does not match the secret for tenant \"{tenant}\": it has no [[tenants]] entry, so its webhooks must be signed with DEPLOYBOT_WEBHOOK_SECRET"
        ),
        None => e.to_string(),
    }
}

/// Mounts `POST /webhooks/github`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(receive);
}
