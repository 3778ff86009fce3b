//! `POST /webhooks/github`: verify the signature over the raw body before anything is
//! parsed, decide what the event does, and record the delivery — with the deployments
//! and jobs it causes — in one transaction before answering (group-committed with the
//! deliveries arriving meanwhile: `store::group`). GitHub is never called from here.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::AppState;
use crate::config::Config;
use crate::deploy::{Delivery, DeployRequest, Error, TriggeredDeployment};
use crate::github::rules::{self, Routing};
use crate::github::{events, signature};
use crate::metrics::{self, WebhookOutcome};
use crate::store::{IngestError, RepositorySeen};

/// Webhook settings that are not configuration.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    /// Accept deliveries without a valid signature (`--insecure-no-signature`).
    pub insecure_no_signature: bool,
}

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

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// An unverified body read for longer than this may be cut off to make room for a new
/// one when every slot, or the byte budget, is taken: GitHub sends a whole delivery in
/// milliseconds, a sender that holds a slot for a second is the slowest of the lot.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// The bounds on webhook bodies read before their signature is checked: at most `max`
/// at once, holding at most `budget` bytes together. Bytes are counted as they arrive,
/// so a slow sender holds only what it has sent; a declared `Content-Length` that
/// cannot fit in what is left is refused at once.
#[derive(Debug)]
pub struct Unverified {
    max: usize,
    budget: usize,
    state: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    bytes: usize,
    next: u64,
    /// Every body being read, oldest first.
    reading: BTreeMap<u64, Reading>,
}

#[derive(Debug)]
struct Reading {
    started: Instant,
    bytes: usize,
    /// Cancelled when the body is cut off to make room.
    evict: CancellationToken,
}

impl Pending {
    /// Cuts off the oldest body that has been arriving for at least `EVICT_AFTER` (not
    /// `keep`), giving back its slot and bytes at once; false when there is none.
    fn evict_oldest(&mut self, keep: Option<u64>) -> bool {
        let oldest = self
            .reading
            .iter()
            .find(|(id, _)| Some(**id) != keep)
            .filter(|(_, r)| r.started.elapsed() >= EVICT_AFTER)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.reading.remove(&id)) {
            Some(reading) => {
                self.bytes = self.bytes.saturating_sub(reading.bytes);
                reading.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// Why an unverified body was not admitted (or was stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Count,
    Bytes,
}

/// One admitted body: its bytes are charged as they arrive and given back when dropped.
struct Ticket {
    pool: &'static Unverified,
    id: u64,
    evicted: CancellationToken,
}

impl Unverified {
    pub fn new(max: usize, budget: usize) -> Self {
        Self {
            max,
            budget,
            state: Mutex::new(Pending::default()),
        }
    }

    fn from_config(config: &Config) -> Self {
        Self::new(config.webhook_max_pending, config.webhook_pending_bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits a body that says it is `declared` bytes long (if it says). When every slot
    /// is taken, or the declared length does not fit in what is left, the oldest slow
    /// bodies are cut off to make room; without any, the body is refused.
    fn admit(&'static self, declared: Option<usize>) -> Result<Ticket, Full> {
        let mut pending = self.lock();
        let need = declared.unwrap_or(0);
        if need > self.budget {
            return Err(Full::Bytes);
        }
        loop {
            let full = if pending.reading.len() >= self.max {
                Full::Count
            } else if need > self.budget - pending.bytes.min(self.budget) {
                Full::Bytes
            } else {
                break;
            };
            if !pending.evict_oldest(None) {
                return Err(full);
            }
        }
        let id = pending.next;
        pending.next += 1;
        let evicted = CancellationToken::new();
        pending.reading.insert(
            id,
            Reading {
                started: Instant::now(),
                bytes: 0,
                evict: evicted.clone(),
            },
        );
        metrics::global().webhook_unverified(pending.reading.len(), pending.bytes);
        Ok(Ticket {
            pool: self,
            id,
            evicted,
        })
    }
}

impl Ticket {
    /// Charges `n` more bytes, cutting off older slow bodies to make room; false when they
    /// do not fit in the budget (or this body was cut off).
    fn charge(&mut self, n: usize) -> bool {
        let mut pending = self.pool.lock();
        while pending.bytes + n > self.pool.budget {
            if !pending.evict_oldest(Some(self.id)) {
                return false;
            }
        }
        let Some(reading) = pending.reading.get_mut(&self.id) else {
            return false;
        };
        reading.bytes += n;
        pending.bytes += n;
        metrics::global().webhook_unverified(pending.reading.len(), pending.bytes);
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut pending = self.pool.lock();
        if let Some(reading) = pending.reading.remove(&self.id) {
            pending.bytes = pending.bytes.saturating_sub(reading.bytes);
        }
        metrics::global().webhook_unverified(pending.reading.len(), pending.bytes);
    }
}

/// The bounds of this process's server (the first configuration seen sets them: one
/// server runs per process).
fn unverified(config: &Config) -> &'static Unverified {
    static POOL: OnceLock<Unverified> = OnceLock::new();
    POOL.get_or_init(|| Unverified::from_config(config))
}

/// Why reading a body stopped.
enum ReadError {
    Invalid(String),
    TooLarge,
    OverBudget,
}

/// Reads the body, charging its bytes to `ticket` as they arrive and refusing it as soon
/// as it passes `limit`.
async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    ticket: &mut Ticket,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ReadError::Invalid(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        if !ticket.charge(chunk.len()) {
            return Err(ReadError::OverBudget);
        }
        // Grown by an eighth at a time (not doubled), so that what is held stays close to
        // what was counted: 64 MiB of bodies never hold 128 MiB of buffers.
        if body.capacity() - body.len() < chunk.len() {
            body.reserve_exact(chunk.len().max(body.capacity() / 8));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn overloaded(full: Full, config: &Config) -> HttpResponse {
    let message = match full {
        Full::Count => format!(
            "too many webhook bodies are being received at once (webhook_max_pending = {}); retry shortly",
            config.webhook_max_pending
        ),
        Full::Bytes => format!(
            "the bytes of webhook bodies being received at once would pass webhook_pending_bytes ({}); retry shortly",
            config.webhook_pending_bytes
        ),
    };
    busy("overloaded", message, 1)
}

/// Just enough of a payload to tell whose it is, read before the signature is checked
/// (to pick the tenant's secret). Everything else is skipped unread.
#[derive(Debug, Default, Deserialize)]
struct Probe {
    #[serde(default)]
    repository: Option<ProbeRepository>,
    #[serde(default)]
    organization: Option<ProbeAccount>,
    #[serde(default)]
    installation: Option<ProbeInstallation>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeRepository {
    #[serde(default)]
    id: Option<serde_json::Number>,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    owner: Option<ProbeAccount>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeAccount {
    #[serde(default)]
    login: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ProbeInstallation {
    #[serde(default)]
    id: Option<serde_json::Number>,
}

/// Whose delivery this is, as its payload claims (verified afterwards).
#[derive(Debug, Default, PartialEq, Eq)]
struct Claim {
    /// The account whose secret must have signed it (`None`: it names none).
    tenant: Option<String>,
    /// `owner/name` of the repository it names, lower-cased.
    repo: Option<String>,
    repository_id: Option<i64>,
    installation_id: Option<i64>,
}

/// Reads the claim of a raw body. A body that is not a JSON object names no account;
/// one whose repository owner and full name disagree is refused.
fn claim(body: &[u8]) -> Result<Claim, String> {
    let Ok(probe) = serde_json::from_slice::<Probe>(body) else {
        return Ok(Claim::default());
    };
    // Ids beyond i64 (GitHub's are far below) are kept out of the pin, not refused.
    let installation_id = probe
        .installation
        .and_then(|i| i.id)
        .and_then(|id| id.as_i64());
    let org = probe
        .organization
        .and_then(|o| o.login)
        .map(|l| l.to_ascii_lowercase());
    let Some(repository) = probe.repository else {
        return Ok(Claim {
            tenant: org,
            installation_id,
            ..Claim::default()
        });
    };
    let repo = repository.full_name.map(|n| n.to_ascii_lowercase());
    let by_name = repo
        .as_deref()
        .and_then(|r| r.split_once('/'))
        .map(|(owner, _)| owner.to_string());
    let by_owner = repository
        .owner
        .and_then(|o| o.login)
        .map(|l| l.to_ascii_lowercase());
    let tenant = match (by_owner, by_name) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "repository.owner.login ({a}) and repository.full_name ({b}/…) name different accounts"
            ));
        }
        (a, b) => a.or(b).or(org),
    };
    Ok(Claim {
        tenant,
        repo,
        repository_id: repository.id.and_then(|id| id.as_i64()),
        installation_id,
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

#[post("/webhooks/github")]
async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    settings: Option<web::Data<WebhookSettings>>,
) -> HttpResponse {
    let insecure = settings.as_ref().is_some_and(|s| s.insecure_no_signature);
    let config = &state.config;
    let event_header = header(&req, "x-github-event");
    let declared = header(&req, "content-length").and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|length| length > config.webhook_max_bytes) {
        metrics::global().webhook_unverified_refused(event_header, WebhookOutcome::TooLarge);
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is larger than {} bytes (webhook_max_bytes)",
                config.webhook_max_bytes
            ),
        );
    }
    let pool = unverified(config);
    let mut ticket = match pool.admit(declared) {
        Ok(ticket) => ticket,
        Err(full) => {
            metrics::global().webhook_unverified_refused(event_header, WebhookOutcome::Overloaded);
            return overloaded(full, config);
        }
    };
    let deadline = config.webhook_body_timeout;
    let evicted = ticket.evicted.clone();
    let read = tokio::time::timeout(
        deadline,
        read_body(payload, config.webhook_max_bytes, &mut ticket),
    );
    let read = tokio::select! {
        read = read => read,
        () = evicted.cancelled() => {
            metrics::global().webhook_unverified_refused(event_header, WebhookOutcome::Overloaded);
            return overloaded(Full::Count, config);
        }
    };
    let body = match read {
        Ok(Ok(body)) => body,
        Err(_elapsed) => {
            tracing::warn!(
                delivery = header(&req, "x-github-delivery").unwrap_or("-"),
                "webhook body too slow"
            );
            metrics::global().webhook_unverified_refused(event_header, WebhookOutcome::BadRequest);
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
        Ok(Err(ReadError::TooLarge)) => {
            metrics::global().webhook_unverified_refused(event_header, WebhookOutcome::TooLarge);
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is larger than {} bytes (webhook_max_bytes)",
                    config.webhook_max_bytes
                ),
            );
        }
        Ok(Err(ReadError::OverBudget)) => {
            metrics::global().webhook_unverified_refused(event_header, WebhookOutcome::Overloaded);
            return overloaded(Full::Bytes, config);
        }
        Ok(Err(ReadError::Invalid(e))) => {
            metrics::global().webhook_unverified_refused(event_header, WebhookOutcome::BadRequest);
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the request body could not be read: {e}"),
            );
        }
    };
    let claim = match claim(&body) {
        Ok(claim) => claim,
        Err(message) => {
            metrics::global().webhook_unverified_refused(event_header, WebhookOutcome::BadRequest);
            return error(StatusCode::BAD_REQUEST, "invalid_payload", message);
        }
    };
    if !insecure {
        let secrets = config.webhook_secrets_for(claim.tenant.as_deref());
        if let Err(e) = signature::verify(
            &secrets,
            header(&req, "x-hub-signature-256"),
            req.headers().contains_key("x-hub-signature"),
            &body,
        ) {
            let message = refusal(config, claim.tenant.as_deref(), &e);
            tracing::warn!(delivery = header(&req, "x-github-delivery").unwrap_or("-"), tenant = claim.tenant.as_deref().unwrap_or("-"), error = %message, "webhook refused");
            metrics::global()
                .webhook_unverified_refused(event_header, WebhookOutcome::BadSignature);
            return error(StatusCode::UNAUTHORIZED, "bad_signature", message);
        }
    }
    // Verified: the body no longer counts against the unverified bounds.
    drop(ticket);
    let Some(event_name) = event_header.filter(|e| !e.is_empty()) else {
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
    handle(&state, delivery_id, event_name, event, claim)
        .instrument(span)
        .await
}

/// Routes a verified event and records it.
async fn handle(
    state: &web::Data<AppState>,
    delivery_id: &str,
    event_name: &str,
    event: events::Event,
    claim: Claim,
) -> HttpResponse {
    // The database is waited for at most this long: GitHub gives up after 10 s, and a
    // 503 it receives lets the delivery be redelivered.
    let store_deadline = Instant::now() + state.config.webhook_store_timeout;
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
    // The secret was chosen by the claim read before verification; the event as parsed
    // must name the same account, or another tenant's secret could have verified it.
    if !repo.is_empty() && claim.tenant.as_deref() != Some(tenant.as_str()) {
        tracing::warn!(delivery = %delivery_id, %repo, "webhook payload names two accounts");
        metrics::global().webhook(Some(event_name), WebhookOutcome::BadRequest);
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_payload",
            format!("the payload names {repo} in a way deploybot cannot read consistently"),
        );
    }
    let seen = pinnable(&state.config, &repo, &claim);
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
                let left = store_deadline.saturating_duration_since(Instant::now());
                let prepared = tokio::time::timeout(left, prepare(state, &tenant, planned.clone()))
                    .await
                    .unwrap_or_else(|_| {
                        Err((
                            planned.instance.clone(),
                            Error::Unavailable("the database did not answer in time".into()),
                        ))
                    });
                match prepared {
                    Ok(t) => triggered.push(t),
                    // The database failing is not a refusal: storing the delivery would
                    // make GitHub's redelivery a duplicate and lose the deployment.
                    Err((_, e @ (Error::Unavailable(_) | Error::Internal(_)))) => {
                        return not_stored(delivery_id, event_name, &e);
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
        .record_delivery_checked(delivery, triggered, items, seen, Some(store_deadline))
        .await;
    let record = match recorded {
        Ok(record) => record,
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
            return error(StatusCode::CONFLICT, "repository_replaced", message);
        }
        Err(IngestError::Store(e)) => return not_stored(delivery_id, event_name, &e),
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

/// The repository a delivery names, when it is one an instance is configured for and
/// the payload carries its id: checked against (or recorded as) its pin.
fn pinnable(config: &Config, repo: &str, claim: &Claim) -> Option<RepositorySeen> {
    let id = claim.repository_id?;
    let configured = config
        .instances
        .iter()
        .any(|i| i.repo.eq_ignore_ascii_case(repo));
    configured.then(|| RepositorySeen {
        full_name: repo.to_ascii_lowercase(),
        tenant: repo
            .split('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase(),
        repository_id: id,
        installation_id: claim.installation_id,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_names_the_repository_owner_or_the_organization() {
        let body = br#"{"repository": {"id": 7, "full_name": "AcMe/Web", "owner": {"login": "ACME"}}, "installation": {"id": 9}}"#;
        assert_eq!(
            claim(body),
            Ok(Claim {
                tenant: Some("acme".into()),
                repo: Some("acme/web".into()),
                repository_id: Some(7),
                installation_id: Some(9),
            })
        );
        let org = br#"{"zen": "z", "organization": {"login": "Globex"}}"#;
        assert_eq!(claim(org).map(|c| c.tenant), Ok(Some("globex".into())));
        assert_eq!(claim(b"not json"), Ok(Claim::default()));
        // An id beyond i64 is left out, not refused.
        let huge = br#"{"repository": {"id": 18446744073709551615, "full_name": "acme/web", "owner": {"login": "acme"}}}"#;
        assert_eq!(claim(huge).map(|c| c.repository_id), Ok(None));
    }

    #[test]
    fn an_owner_and_full_name_that_disagree_are_refused() {
        let body = br#"{"repository": {"full_name": "acme/web", "owner": {"login": "globex"}}}"#;
        assert!(claim(body).unwrap_err().contains("different accounts"));
    }

    #[test]
    fn bytes_are_counted_as_they_arrive_within_the_budget() {
        let pool: &'static Unverified = Box::leak(Box::new(Unverified::new(2, 100)));
        // A declared length that cannot fit is refused before anything is read.
        assert_eq!(pool.admit(Some(101)).err(), Some(Full::Bytes));
        let mut first = pool.admit(Some(100)).unwrap();
        assert!(first.charge(60));
        let mut second = pool.admit(None).unwrap();
        assert!(!second.charge(41));
        assert!(second.charge(40));
        // Every slot taken, none old enough to be cut off.
        assert_eq!(pool.admit(None).err(), Some(Full::Count));
        drop(first);
        assert!(pool.admit(Some(60)).is_ok());
    }
}
