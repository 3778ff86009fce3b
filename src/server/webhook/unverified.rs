//! The bounds on webhook bodies read before their signature is checked: how many at
//! once, how many bytes together, how large and how slow each may be. A body that
//! passes them is handed on for verification; one that does not is answered here.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Step, busy, error, header};
use crate::config::Config;
use crate::metrics::{self, WebhookOutcome};

/// An unverified body read for longer than this may be cut off to make room for a new
/// one when every slot, or the byte budget, is taken: GitHub sends a whole delivery in
/// milliseconds, a sender that holds a slot for a second is the slowest of the lot.
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// The bounds on webhook bodies read before their signature is checked: at most `max`
/// at once, holding at most `budget` bytes together. Bytes are counted as they arrive,
/// so a slow sender holds only what it has sent; a declared `Content-Length` that
/// cannot fit in what is left is refused at once.
#[derive(Debug)]
pub(super) struct Unverified {
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
pub(super) struct Ticket {
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

/// Reads the body of `req` within the bounds: the declared length, the pool's slots and
/// bytes, `webhook_max_bytes` and `webhook_body_timeout`. The ticket keeps the body
/// counted until it is dropped (once verified); a refusal is recorded and answered.
pub(super) async fn read_unverified(
    req: &HttpRequest,
    payload: web::Payload,
    config: &Config,
) -> Step<(Vec<u8>, Ticket)> {
    let event = header(req, "x-github-event");
    let declared = header(req, "content-length").and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|length| length > config.webhook_max_bytes) {
        return Err(Box::new(refused(
            event,
            WebhookOutcome::TooLarge,
            too_large(config),
        )));
    }
    let mut ticket = unverified(config).admit(declared).map_err(|full| {
        Box::new(refused(
            event,
            WebhookOutcome::Overloaded,
            overloaded(full, config),
        ))
    })?;
    let evicted = ticket.evicted.clone();
    let read = tokio::time::timeout(
        config.webhook_body_timeout,
        read_body(payload, config.webhook_max_bytes, &mut ticket),
    );
    let read = tokio::select! {
        read = read => read,
        () = evicted.cancelled() => {
            return Err(Box::new(refused(event, WebhookOutcome::Overloaded, overloaded(Full::Count, config))));
        }
    };
    match read {
        Ok(Ok(body)) => Ok((body, ticket)),
        Err(_elapsed) => {
            tracing::warn!(
                delivery = header(req, "x-github-delivery"),
                "webhook body too slow"
            );
            Err(Box::new(refused(
                event,
                WebhookOutcome::BadRequest,
                too_slow(config),
            )))
        }
        Ok(Err(e)) => Err(Box::new(read_refused(event, e, config))),
    }
}

/// Counts a body refused before its signature was checked, and passes its answer on.
pub(super) fn refused(
    event: Option<&str>,
    outcome: WebhookOutcome,
    response: HttpResponse,
) -> HttpResponse {
    metrics::global().webhook_unverified_refused(event, outcome);
    response
}

/// The answer to a body that stopped arriving part way (too large, over the byte
/// budget, or unreadable).
fn read_refused(event: Option<&str>, e: ReadError, config: &Config) -> HttpResponse {
    match e {
        ReadError::TooLarge => refused(event, WebhookOutcome::TooLarge, too_large(config)),
        ReadError::OverBudget => refused(
            event,
            WebhookOutcome::Overloaded,
            overloaded(Full::Bytes, config),
        ),
        ReadError::Invalid(e) => refused(
            event,
            WebhookOutcome::BadRequest,
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the request body could not be read: {e}"),
            ),
        ),
    }
}

/// 413: the body passes `webhook_max_bytes` (declared or counted).
fn too_large(config: &Config) -> HttpResponse {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the body is larger than {} bytes (webhook_max_bytes)",
            config.webhook_max_bytes
        ),
    )
}

/// 408: the body did not arrive within `webhook_body_timeout`, on a connection that is
/// closed (the rest of the body may still come).
fn too_slow(config: &Config) -> HttpResponse {
    let mut response = error(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the body did not arrive within {} (webhook_body_timeout); nothing was stored",
            humantime::format_duration(config.webhook_body_timeout)
        ),
    );
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
