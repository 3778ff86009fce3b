//! `POST /webhooks/github`: verify the signature over the raw body before anything is
//! parsed, decide what the event does, and record the delivery — with the deployments
//! and jobs it causes — in one transaction before answering (group-committed with the
//! deliveries arriving meanwhile: `store::group`). GitHub is never called from here.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt;
use serde_json::json;
use tracing::Instrument;

use super::AppState;
use super::metrics::{self, WebhookOutcome};
use crate::deploy::{Delivery, DeployRequest, Error, TriggeredDeployment};
use crate::github::rules::{self, Routing};
use crate::github::{events, signature};

/// Webhook settings that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// Accept deliveries without a valid signature (`--insecure-no-signature`).
    pub insecure_no_signature: bool,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"code": code, "message": message.into()}}))
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads the body, refusing it as soon as it passes the limit.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, HttpResponse> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {limit} bytes (webhook_max_bytes)"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[post("/webhooks/github")]
async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    settings: Option<web::Data<WebhookSettings>>,
) -> HttpResponse {
    let insecure = settings.is_some_and(|s| s.insecure_no_signature);
    if let Some(length) = header(&req, "content-length").and_then(|l| l.parse::<usize>().ok())
        && length > state.config.webhook_max_bytes
    {
        metrics::global().webhook(header(&req, "x-github-event"), WebhookOutcome::TooLarge);
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {} bytes (webhook_max_bytes)",
                state.config.webhook_max_bytes
            ),
        );
    }
    let deadline = state.config.webhook_body_timeout;
    let read = tokio::time::timeout(deadline, read_body(payload, state.config.webhook_max_bytes));
    let body = match read.await {
        Ok(Ok(body)) => body,
        Err(_elapsed) => {
            tracing::warn!(
                delivery = header(&req, "x-github-delivery").unwrap_or("-"),
                "webhook body too slow"
            );
            metrics::global().webhook(header(&req, "x-github-event"), WebhookOutcome::BadRequest);
            let mut response = error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive within {} (webhook_body_timeout); nothing was stored",
                    humantime::format_duration(deadline)
                ),
            );
            // The rest of the body may still come: the connection cannot be reused.
            response
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            return response;
        }
        Ok(Err(response)) => {
            metrics::global().webhook_refused(header(&req, "x-github-event"), response.status());
            return response;
        }
    };
    if !insecure
        && let Err(e) = signature::verify(
            &state.config.webhook_secrets,
            header(&req, "x-hub-signature-256"),
            req.headers().contains_key("x-hub-signature"),
            &body,
        )
    {
        tracing::warn!(delivery = header(&req, "x-github-delivery").unwrap_or("-"), error = %e, "webhook refused");
        metrics::global().webhook(header(&req, "x-github-event"), WebhookOutcome::BadSignature);
        return error(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string());
    }
    let Some(event_name) = header(&req, "x-github-event").filter(|e| !e.is_empty()) else {
        metrics::global().webhook(None, WebhookOutcome::BadRequest);
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the X-GitHub-Event header is missing",
        );
    };
    let Some(delivery_id) =
        header(&req, "x-github-delivery").filter(|d| !d.is_empty() && d.len() <= 200)
    else {
        metrics::global().webhook(Some(event_name), WebhookOutcome::BadRequest);
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the X-GitHub-Delivery header is missing or longer than 200 characters",
        );
    };
    let span = tracing::info_span!("webhook", delivery = %delivery_id, event = %event_name);
    let _guard = span.enter();
    let event = match events::parse(event_name, &body) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "webhook payload refused");
            metrics::global().webhook(Some(event_name), WebhookOutcome::BadRequest);
            return error(StatusCode::BAD_REQUEST, "invalid_payload", e.to_string());
        }
    };
    drop(_guard);
    handle(&state, delivery_id, event_name, event)
        .instrument(span)
        .await
}

/// Routes a verified event and records it.
async fn handle(
    state: &web::Data<AppState>,
    delivery_id: &str,
    event_name: &str,
    event: events::Event,
) -> HttpResponse {
    let routing = rules::route(&state.config, &event);
    let (repo, action) = match &event {
        events::Event::Push(p) => (p.repository.full_name.clone(), String::new()),
        events::Event::Create(c) => (c.repository.full_name.clone(), String::new()),
        events::Event::IssueComment(c) => (
            c.repository.full_name.clone(),
            format!("{:?}", c.action).to_lowercase(),
        ),
        events::Event::PullRequest(p) => (
            p.repository.full_name.clone(),
            format!("{:?}", p.action).to_lowercase(),
        ),
        events::Event::Ping(p) => (
            p.repository
                .as_ref()
                .map(|r| r.full_name.clone())
                .unwrap_or_default(),
            String::new(),
        ),
        events::Event::Other(_) => (String::new(), String::new()),
    };
    let tenant = repo
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let delivery = Delivery {
        id: delivery_id.to_string(),
        event: event_name.to_string(),
        action,
        tenant_id: tenant,
        repo,
    };
    let mut triggered = Vec::new();
    let mut refused = Vec::new();
    let mut items = Vec::new();
    let mut answer = json!({"status": "accepted"});
    match routing {
        Routing::Pong { zen } => answer = json!({"status": "pong", "zen": zen}),
        Routing::Ignored { reason } => {
            // Every push to every branch lands here: debug, not info. The delivery is
            // stored and counted (deploybot_webhooks_total{outcome="ignored"}) anyway.
            tracing::debug!(delivery = %delivery_id, %reason, "webhook ignored");
            answer = json!({"status": "ignored", "reason": reason});
        }
        Routing::Act {
            tenant,
            deploys,
            items: jobs,
            refused: unrendered,
        } => {
            items = jobs;
            for (instance, reason) in unrendered {
                refused.push(json!({"instance": instance, "reason": reason}));
            }
            for planned in deploys {
                match prepare(state, &tenant, planned).await {
                    Ok(t) => triggered.push(t),
                    // The database failing is not a refusal: storing the delivery would
                    // make GitHub's redelivery a duplicate and lose the deployment.
                    Err((_, e @ (Error::Unavailable(_) | Error::Internal(_)))) => {
                        tracing::error!(delivery = %delivery_id, error = %e, "delivery not stored");
                        metrics::global().webhook(Some(event_name), WebhookOutcome::Unavailable);
                        return unavailable();
                    }
                    Err((instance, e)) => {
                        refused.push(json!({"instance": instance, "reason": e.to_string()}))
                    }
                }
            }
        }
    }
    let jobs = items.len();
    let recorded = state
        .store
        .record_delivery_grouped(delivery, triggered, items)
        .await;
    let record = match recorded {
        Ok(record) => record,
        Err(e) => {
            tracing::error!(delivery = %delivery_id, error = %e, "delivery not stored");
            metrics::global().webhook(Some(event_name), WebhookOutcome::Unavailable);
            return unavailable();
        }
    };
    if record.duplicate {
        tracing::info!(delivery = %delivery_id, "duplicate delivery");
        metrics::global().webhook(Some(event_name), WebhookOutcome::Duplicate);
        return HttpResponse::Ok().json(json!({"status": "duplicate"}));
    }
    metrics::global().webhook_committed(record.batch);
    if !record.created.is_empty() || jobs > 0 {
        state.service.wake().notify_waiters();
    }
    if answer["status"] == "pong" {
        metrics::global().webhook(Some(event_name), WebhookOutcome::Pong);
        return HttpResponse::Ok().json(answer);
    }
    if answer["status"] == "accepted" {
        let created: Vec<String> = record.created.iter().map(|d| d.id.to_string()).collect();
        let already: Vec<String> = record.already.iter().map(|d| d.to_string()).collect();
        tracing::info!(delivery = %delivery_id, deployments = ?created, already = ?already, jobs, "webhook accepted");
        answer = json!({
            "status": if created.is_empty() && jobs == 0 && !already.is_empty() { "already deployed" } else { "accepted" },
            "deployments": created,
            "already_deployed": already,
            "jobs": jobs,
            "refused": refused,
        });
    }
    metrics::global().webhook(Some(event_name), WebhookOutcome::of_answer(&answer));
    HttpResponse::Accepted().json(answer)
}

/// 503: nothing was stored, so GitHub's redelivery (or the next push) is not a duplicate.
fn unavailable() -> HttpResponse {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the database is unavailable; the delivery was not stored: redeliver it later",
    )
}

/// Validates a planned deployment through the Service (instance, image, strategy).
async fn prepare(
    state: &web::Data<AppState>,
    tenant: &str,
    planned: rules::PlannedDeploy,
) -> Result<TriggeredDeployment, (String, Error)> {
    let instance = state
        .service
        .resolve_instance(tenant, &planned.instance)
        .await
        .map_err(|e| (planned.instance.clone(), e))?;
    let request = DeployRequest {
        instance_id: instance.id,
        image: planned.image,
        env: Default::default(),
        strategy: String::new(),
        notes: planned.notes,
        commit_sha: planned.commit_sha,
    };
    let mut triggered = state
        .service
        .prepare_for(
            tenant,
            &instance,
            request,
            &planned.initiator,
            planned.source,
        )
        .map_err(|e| (planned.instance.clone(), e))?;
    triggered.trigger_key = Some(planned.trigger_key);
    Ok(triggered)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(receive);
}
