//! The outbox: typed reports and jobs ([`Work`]), where they are kept ([`OutboxStore`]),
//! and their sender, which claims items in order per key (a deployment, a comment), hands
//! each to a [`WorkHandler`], and records the outcome with retries and backoff. Several
//! processes can send from one database: each item is claimed by exactly one. What each
//! kind of work does is the handler's, not the outbox's.

mod item;
mod store;
mod work;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::deploy::service::blocking;
use crate::metrics::SendResult;

pub use item::{GithubAcceptance, NewOutboxItem, OutboxItem, OutboxResult, SENDER_LOST};
pub use store::OutboxStore;
pub use work::{
    COMMENT_REACTION, COMMENT_REPLY, CommentCommand, CommentJob, CommentReaction, CommentReply,
    DEPLOYMENT_CREATED, DEPLOYMENT_REACTION, DEPLOYMENT_REPLY, DEPLOYMENT_STATUS, DecodeError,
    DeploymentCreated, DeploymentReaction, DeploymentReply, JOB_COMMAND, JOB_PULL_CLOSED,
    JOB_PULL_HEAD, JOB_RESOLVE_TAG, PullClosedJob, PullHeadJob, ResolveTagJob, StatusReport, Work,
};

/// An item that keeps failing is given up after this many attempts.
pub const MAX_ATTEMPTS: i32 = 25;

/// How long a claim on an item lasts; renewed while sending, so that the items of a
/// sender that died are taken over this soon.
const CLAIM_LEASE: Duration = Duration::from_secs(15);

/// How many items are sent at once.
const IN_FLIGHT: usize = 16;

/// Does what one item asks: sends a report or runs a job. The sender records the outcome.
#[async_trait::async_trait]
pub trait WorkHandler: Send + Sync + 'static {
    /// Sends one report or runs one job, read from `item` as `work`.
    async fn handle(&self, item: &OutboxItem, work: &Work) -> OutboxResult;
}

/// Sends the outbox: claims items, hands each to the handler, records how it ended.
pub struct Sender {
    store: Arc<dyn OutboxStore>,
    handler: Arc<dyn WorkHandler>,
    owner: String,
    wake: Arc<Notify>,
}

/// The delay before the next attempt: GitHub's own when it gave one, otherwise
/// exponential (1 s, 2 s, 4 s … up to 10 minutes).
fn backoff(attempts: i32, suggested: Duration) -> Duration {
    let exponential = Duration::from_secs(2u64.saturating_pow((attempts - 1).clamp(0, 20) as u32));
    suggested.max(exponential.min(Duration::from_secs(600)))
}

impl Sender {
    /// A sender reading `store`, handing items to `handler`, and looking again at once
    /// when `wake` is notified (new items were written).
    pub fn new(
        store: Arc<dyn OutboxStore>,
        handler: Arc<dyn WorkHandler>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            handler,
            owner: format!(
                "sender:{}:{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            wake,
        }
    }

    /// Sends until `stop`: what is being sent is finished, and what is still queued stays
    /// in the outbox for the next start (or another server). It does not drain a backlog
    /// first, which could take minutes against a slow or rate-limiting GitHub.
    ///
    /// Up to `IN_FLIGHT` items are sent at once, and more are claimed whenever a quarter
    /// of the places are free: an item that GitHub is slow to answer holds up only its own
    /// key (the claim never hands out an item while an older one of its key is pending),
    /// not the items claimed with it.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut sending = tokio::task::JoinSet::new();
        let mut renew_at = tokio::time::Instant::now() + CLAIM_LEASE / 3;
        while !stop.is_cancelled() {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Claims are made for a quarter of the places at least (or when nothing is in
            // flight): each claim reads every lane, so not one per finished item.
            let free = IN_FLIGHT.saturating_sub(sending.len());
            if (free >= IN_FLIGHT / 4 || sending.is_empty())
                && self.claim_into(&mut sending, free).await
            {
                // More may be waiting: look again at once while places are free.
                continue;
            }
            tokio::select! {
                Some(_) = sending.join_next(), if !sending.is_empty() => {
                    while sending.try_join_next().is_some() {}
                }
                _ = &mut notified => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = tokio::time::sleep_until(renew_at), if !sending.is_empty() => {}
                _ = stop.cancelled() => {}
            }
            if sending.is_empty() || tokio::time::Instant::now() >= renew_at {
                if !sending.is_empty() {
                    self.renew_claims().await;
                }
                renew_at = tokio::time::Instant::now() + CLAIM_LEASE / 3;
            }
        }
        // Finish what is being sent, keeping its claims meanwhile.
        loop {
            tokio::select! {
                next = sending.join_next() => if next.is_none() { break },
                _ = tokio::time::sleep_until(renew_at) => {
                    self.renew_claims().await;
                    renew_at = tokio::time::Instant::now() + CLAIM_LEASE / 3;
                }
            }
        }
        tracing::info!("outbox sender stopped; reports not sent yet stay queued");
    }

    /// Claims up to `free` items and starts sending them; true when it filled some but not
    /// all of the places, so that more may be waiting.
    async fn claim_into(
        self: &Arc<Self>,
        sending: &mut tokio::task::JoinSet<()>,
        free: usize,
    ) -> bool {
        let store = Arc::clone(&self.store);
        let owner = self.owner.clone();
        let limit = u32::try_from(free).unwrap_or(u32::MAX);
        match blocking(move || store.claim_outbox(&owner, CLAIM_LEASE, limit)).await {
            Ok(items) => {
                let claimed = items.len();
                for item in items {
                    let me = Arc::clone(self);
                    sending.spawn(async move { me.process(item).await });
                }
                claimed > 0 && claimed < free
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox; retrying");
                false
            }
        }
    }

    /// Keeps the claims on the items being sent, however slow GitHub is.
    async fn renew_claims(&self) {
        let store = Arc::clone(&self.store);
        let owner = self.owner.clone();
        if let Err(e) = blocking(move || store.renew_outbox(&owner, CLAIM_LEASE)).await {
            tracing::warn!(error = %e, "cannot renew the claims on reports being sent");
        }
    }

    /// Reads one item, sends it and records the outcome. An item this version cannot read
    /// is recorded as failed, with the reason, and nothing else is done with it.
    pub async fn process(&self, item: OutboxItem) {
        let span = tracing::info_span!(
            "outbox",
            tenant = %item.tenant_id,
            deployment = tracing::field::Empty
        );
        if let Some(id) = item.deployment_id {
            span.record("deployment", tracing::field::display(id));
        }
        self.send_and_record(item).instrument(span).await;
    }

    async fn send_and_record(&self, item: OutboxItem) {
        let result = match item.work() {
            Ok(work) => {
                let result = give_up_or_back_off(&item, self.handler.handle(&item, &work).await);
                log_outcome(&item, &result);
                result
            }
            Err(e) => {
                tracing::error!(item = item.id, kind = %item.kind, error = %e, "a stored report this version cannot read is parked as failed");
                OutboxResult::Failed {
                    error: format!("cannot read this stored report: {e}"),
                }
            }
        };
        let label = match &result {
            OutboxResult::Sent => SendResult::Sent,
            OutboxResult::Retry { .. } => SendResult::Retry,
            OutboxResult::Failed { .. } => SendResult::Failed,
            OutboxResult::Skipped { .. } => SendResult::Skipped,
        };
        crate::metrics::global().outbox_result(Work::label(&item.kind), label);
        let store = Arc::clone(&self.store);
        let owner = self.owner.clone();
        let id = item.id;
        if let Err(e) = blocking(move || store.complete_outbox(id, &owner, &result)).await {
            tracing::warn!(item = id, error = %e, "cannot record the outcome of a report; it will be retried");
        }
    }
}

/// A retry past `MAX_ATTEMPTS` becomes a failure; another waits for its backoff.
fn give_up_or_back_off(item: &OutboxItem, result: OutboxResult) -> OutboxResult {
    let OutboxResult::Retry { after, error } = result else {
        return result;
    };
    if item.attempts + 1 >= MAX_ATTEMPTS {
        OutboxResult::Failed {
            error: format!("gave up after {MAX_ATTEMPTS} attempts: {error}"),
        }
    } else {
        OutboxResult::Retry {
            after: backoff(item.attempts + 1, after),
            error,
        }
    }
}

fn log_outcome(item: &OutboxItem, result: &OutboxResult) {
    match result {
        OutboxResult::Sent => tracing::debug!(item = item.id, kind = %item.kind, "sent"),
        OutboxResult::Retry { after, error } => {
            tracing::warn!(item = item.id, kind = %item.kind, %error, ?after, "GitHub report delayed")
        }
        OutboxResult::Failed { error } => {
            tracing::error!(item = item.id, kind = %item.kind, %error, "GitHub refused a report")
        }
        OutboxResult::Skipped { reason } => {
            tracing::info!(item = item.id, kind = %item.kind, %reason, "report not sent")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_honours_github() {
        assert_eq!(backoff(1, Duration::ZERO), Duration::from_secs(1));
        assert_eq!(backoff(4, Duration::ZERO), Duration::from_secs(8));
        assert_eq!(backoff(30, Duration::ZERO), Duration::from_secs(600));
        assert_eq!(backoff(1, Duration::from_secs(42)), Duration::from_secs(42));
    }
}
