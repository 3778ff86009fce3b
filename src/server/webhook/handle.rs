//! What a verified event does: routed by the configuration, the deployments it triggers
//! prepared through the Service, then the delivery recorded with them and its jobs in one
//! transaction (group-committed with the deliveries arriving meanwhile: `store::group`),
//! and answered. GitHub is never called from here.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use super::claim::{Claim, pinnable};
use super::{Step, busy, error};
use crate::deploy::{DeployRequest, Error, TriggeredDeployment};
use crate::github::outbox::NewOutboxItem;
use crate::github::rules::{self, Routing};
use crate::github::store::{Delivery, DeliveryRecord, IngestError, RepositorySeen};
use crate::github::webhook::events;
use crate::metrics::{self, WebhookOutcome};
use crate::server::AppState;

/// What routing an event asks for: the answer so far, the instances that refused it, and
/// what to record with the delivery.
struct Plan {
    answer: Value,
    refused: Vec<Value>,
    triggered: Vec<TriggeredDeployment>,
    items: Vec<NewOutboxItem>,
}

/// What is written for one delivery, in one transaction.
struct Ingest {
    delivery: Delivery,
    seen: Option<RepositorySeen>,
    triggered: Vec<TriggeredDeployment>,
    items: Vec<NewOutboxItem>,
}

/// Routes a verified event and records it.
pub(super) async fn handle(
    state: &web::Data<AppState>,
    delivery_id: &str,
    event_name: &str,
    event: events::Event,
    claim: Claim,
) -> HttpResponse {
    // The database is waited for at most this long: GitHub gives up after 10 s, and a
    // 503 it receives lets the delivery be redelivered.
    let store_deadline = Instant::now() + state.config().webhook_store_timeout;
    let routing = rules::route(&state.config(), &event);
    let (repo, action) = repo_and_action(&event);
    let tenant = repo
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if let Err(response) = same_account(&repo, &tenant, &claim, delivery_id, event_name) {
        return *response;
    }
    if !tenant.is_empty() {
        tracing::Span::current().record("tenant", tenant.as_str());
    }
    let seen = pinnable(&state.config(), &repo, &claim);
    let delivery = Delivery {
        id: delivery_id.to_string(),
        event: event_name.to_string(),
        action,
        tenant_id: tenant,
        repo,
    };
    let plan = match plan(state, routing, store_deadline, delivery_id, event_name).await {
        Ok(plan) => plan,
        Err(response) => return *response,
    };
    let Plan {
        answer,
        refused,
        triggered,
        items,
    } = plan;
    let jobs = items.len();
    let ingest = Ingest {
        delivery,
        seen,
        triggered,
        items,
    };
    match record(state, ingest, store_deadline, delivery_id, event_name).await {
        Ok(record) => respond(
            state,
            &record,
            answer,
            refused,
            jobs,
            delivery_id,
            event_name,
        ),
        Err(response) => *response,
    }
}

/// The repository an event names (`owner/name` as sent, empty when none) and its action
/// in lower case (empty for events without one).
fn repo_and_action(event: &events::Event) -> (String, String) {
    match event {
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
    }
}

/// The secret was chosen by the claim read before verification; the event as parsed
/// must name the same account, or another tenant's secret could have verified it.
fn same_account(
    repo: &str,
    tenant: &str,
    claim: &Claim,
    delivery_id: &str,
    event_name: &str,
) -> Step<()> {
    if repo.is_empty() || claim.tenant.as_deref() == Some(tenant) {
        return Ok(());
    }
    tracing::warn!(delivery = %delivery_id, %repo, "webhook payload names two accounts");
    metrics::global().webhook(Some(event_name), WebhookOutcome::BadRequest);
    Err(Box::new(error(
        StatusCode::BAD_REQUEST,
        "invalid_payload",
        format!("the payload names {repo} in a way deploybot cannot read consistently"),
    )))
}

/// What the routing asks for, with each planned deployment prepared by `store_deadline`.
/// The database failing is an answer of its own (nothing is stored).
async fn plan(
    state: &web::Data<AppState>,
    routing: Routing,
    store_deadline: Instant,
    delivery_id: &str,
    event_name: &str,
) -> Step<Plan> {
    let mut plan = Plan {
        answer: json!({"status": "accepted"}),
        refused: Vec::new(),
        triggered: Vec::new(),
        items: Vec::new(),
    };
    match routing {
        Routing::Pong { zen } => plan.answer = json!({"status": "pong", "zen": zen}),
        Routing::Ignored { reason } => {
            // Every push to every branch lands here: debug, not info. The delivery is
            // stored and counted (deploybot_webhooks_total{outcome="ignored"}) anyway.
            tracing::debug!(delivery = %delivery_id, %reason, "webhook ignored");
            plan.answer = json!({"status": "ignored", "reason": reason});
        }
        Routing::Act {
            tenant,
            deploys,
            items,
            refused: unrendered,
        } => {
            plan.items = items;
            for (instance, reason) in unrendered {
                plan.refused
                    .push(json!({"instance": instance, "reason": reason}));
            }
            for planned in deploys {
                match prepare_by(state, &tenant, planned, store_deadline).await {
                    Ok(t) => plan.triggered.push(t),
                    // The database failing is not a refusal: storing the delivery would
                    // make GitHub's redelivery a duplicate and lose the deployment.
                    Err((_, e @ (Error::Unavailable(_) | Error::Internal(_)))) => {
                        return Err(Box::new(not_stored(delivery_id, event_name, &e)));
                    }
                    Err((instance, e)) => plan
                        .refused
                        .push(json!({"instance": instance, "reason": e.to_string()})),
                }
            }
        }
    }
    Ok(plan)
}

/// `prepare`, given up as unavailable when the database does not answer by `deadline`.
async fn prepare_by(
    state: &web::Data<AppState>,
    tenant: &str,
    planned: rules::PlannedDeploy,
    deadline: Instant,
) -> Result<TriggeredDeployment, (String, Error)> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, prepare(state, tenant, planned.clone()))
        .await
        .unwrap_or_else(|_| {
            Err((
                planned.instance.clone(),
                Error::Unavailable("the database did not answer in time".into()),
            ))
        })
}

/// Records the delivery with what it triggers, by `store_deadline`; a repository name
/// that now belongs to another repository id is a 409.
async fn record(
    state: &web::Data<AppState>,
    ingest: Ingest,
    store_deadline: Instant,
    delivery_id: &str,
    event_name: &str,
) -> Step<DeliveryRecord> {
    let Ingest {
        delivery,
        seen,
        triggered,
        items,
    } = ingest;
    let recorded = state
        .store
        .record_delivery_checked(delivery, triggered, items, seen, Some(store_deadline))
        .await;
    match recorded {
        Ok(record) => Ok(record),
        Err(IngestError::RepositoryReplaced {
            full_name,
            pinned,
            delivered,
        }) => {
            tracing::warn!(delivery = %delivery_id, repo = %full_name, pinned_repository_id = pinned, delivered_repository_id = delivered, "webhook refused: the repository name now belongs to another repository id");
            metrics::global().webhook(Some(event_name), WebhookOutcome::RepositoryReplaced);
            let message = IngestError::RepositoryReplaced {
                full_name,
                pinned,
                delivered,
            }
            .to_string();
            Err(Box::new(error(
                StatusCode::CONFLICT,
                "repository_replaced",
                message,
            )))
        }
        Err(IngestError::Store(e)) => Err(Box::new(not_stored(delivery_id, event_name, &e))),
    }
}

/// The answer to a recorded delivery; the worker is woken when there is work for it.
fn respond(
    state: &web::Data<AppState>,
    record: &DeliveryRecord,
    answer: Value,
    refused: Vec<Value>,
    jobs: usize,
    delivery_id: &str,
    event_name: &str,
) -> HttpResponse {
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
    let answer = if answer["status"] == "accepted" {
        accepted(record, refused, jobs, delivery_id)
    } else {
        answer
    };
    metrics::global().webhook(Some(event_name), WebhookOutcome::of_answer(&answer));
    HttpResponse::Accepted().json(answer)
}

/// The answer to an event that acted: the deployments created, those its trigger had
/// already deployed, the jobs queued and the instances that refused it.
fn accepted(record: &DeliveryRecord, refused: Vec<Value>, jobs: usize, delivery_id: &str) -> Value {
    let created: Vec<String> = record.created.iter().map(|d| d.id.to_string()).collect();
    let already: Vec<String> = record.already.iter().map(|d| d.to_string()).collect();
    tracing::info!(delivery = %delivery_id, deployments = ?created, already = ?already, jobs, "webhook accepted");
    json!({
        "status": if created.is_empty() && jobs == 0 && !already.is_empty() { "already deployed" } else { "accepted" },
        "deployments": created,
        "already_deployed": already,
        "jobs": jobs,
        "refused": refused,
    })
}

/// The answer when the delivery could not be stored: 503 only when the database is away
/// (a redelivery will succeed), 422 when it refused a value of the payload, else 500.
fn not_stored(delivery_id: &str, event_name: &str, e: &Error) -> HttpResponse {
    tracing::error!(delivery = %delivery_id, error = %e, "delivery not stored");
    match e {
        Error::Unavailable(_) => {
            metrics::global().webhook(Some(event_name), WebhookOutcome::Unavailable);
            unavailable()
        }
        Error::InvalidRequest(message) => {
            metrics::global().webhook(Some(event_name), WebhookOutcome::BadRequest);
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_payload",
                format!("the delivery was not stored: {message}"),
            )
        }
        _ => {
            metrics::global().webhook(Some(event_name), WebhookOutcome::Unavailable);
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the delivery was not stored because of an internal error; the server log has the details under this delivery id",
            )
        }
    }
}

/// 503: nothing was stored, so GitHub's redelivery (or the next push) is not a duplicate.
fn unavailable() -> HttpResponse {
    busy(
        "unavailable",
        "the database is unavailable; the delivery was not stored: redeliver it later",
        5,
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
        params: Default::default(),
        noop: false,
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
    state
        .service
        .hold_for_push(tenant, &instance, &mut triggered);
    triggered.trigger_key = Some(planned.trigger_key);
    Ok(triggered)
}
