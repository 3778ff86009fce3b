//! Retention: removing stored records past their `[retention]` period. Every replica's
//! worker wakes shortly after start and then every `interval`; the one that takes the
//! `prune` lease (free, and not run within the interval) removes old deployment log lines,
//! finished outbox items, webhook delivery records and audit events, `batch` rows per
//! transaction with a pause between batches, until a batch comes back short. Releases and
//! deployments are never removed. `deploybot prune` runs the same, at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::config::RetentionConfig;
use crate::deploy::service::blocking;
use crate::deploy::{Error, RetentionStore};
use crate::metrics::Metrics;

/// How long after start the first pruning runs.
const FIRST_PRUNE_AFTER: Duration = Duration::from_secs(60);

/// The maintenance task whose lease a pruning run holds.
pub const PRUNE_TASK: &str = "prune";

/// How long a pruning run holds its lease: past it (a replica died while pruning),
/// another replica may prune.
const PRUNE_LEASE: Duration = Duration::from_secs(600);

/// The pause between two batches, so that webhooks and deployments write in between.
const BETWEEN_BATCHES: Duration = Duration::from_millis(5);

/// What pruning removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneKind {
    Logs,
    Outbox,
    Deliveries,
    Audit,
}

impl PruneKind {
    pub const ALL: [PruneKind; 4] = [
        PruneKind::Logs,
        PruneKind::Outbox,
        PruneKind::Deliveries,
        PruneKind::Audit,
    ];

    /// The table its rows are removed from (the `table` label).
    pub fn table(self) -> &'static str {
        match self {
            PruneKind::Logs => "deployment_logs",
            PruneKind::Outbox => "outbox",
            PruneKind::Deliveries => "deliveries",
            PruneKind::Audit => "audit_events",
        }
    }

    /// Its rows, in a person's words.
    pub fn rows(self) -> &'static str {
        match self {
            PruneKind::Logs => "deployment log lines",
            PruneKind::Outbox => "outbox items (sent or failed)",
            PruneKind::Deliveries => "webhook deliveries",
            PruneKind::Audit => "audit events",
        }
    }

    /// How long its rows are kept.
    pub fn retention(self, retention: &RetentionConfig) -> Duration {
        match self {
            PruneKind::Logs => retention.logs,
            PruneKind::Outbox => retention.outbox,
            PruneKind::Deliveries => retention.deliveries,
            PruneKind::Audit => retention.audit,
        }
    }

    fn prune(
        self,
        store: &dyn RetentionStore,
        before: DateTime<Utc>,
        batch: u32,
    ) -> Result<u64, Error> {
        match self {
            PruneKind::Logs => store.prune_logs(before, batch),
            PruneKind::Outbox => store.prune_outbox(before, batch),
            PruneKind::Deliveries => store.prune_deliveries(before, batch),
            PruneKind::Audit => store.prune_audit(before, batch),
        }
    }
}

/// What one pruning run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub logs: u64,
    pub outbox: u64,
    pub deliveries: u64,
    pub audit: u64,
}

impl PruneReport {
    /// How many rows of `kind` were removed.
    pub fn removed(&self, kind: PruneKind) -> u64 {
        match kind {
            PruneKind::Logs => self.logs,
            PruneKind::Outbox => self.outbox,
            PruneKind::Deliveries => self.deliveries,
            PruneKind::Audit => self.audit,
        }
    }

    fn add(&mut self, kind: PruneKind, removed: u64) {
        let slot = match kind {
            PruneKind::Logs => &mut self.logs,
            PruneKind::Outbox => &mut self.outbox,
            PruneKind::Deliveries => &mut self.deliveries,
            PruneKind::Audit => &mut self.audit,
        };
        *slot += removed;
    }
}

/// Runs `prune` (which removes at most `batch` rows) until a batch removes fewer than
/// `batch` or `stop` says so, pausing between batches; returns how many it removed.
fn prune_in_batches(
    prune: &dyn Fn(u32) -> Result<u64, Error>,
    batch: u32,
    pause: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<u64, Error> {
    let mut removed = 0;
    loop {
        let now_removed = prune(batch)?;
        removed += now_removed;
        if now_removed < u64::from(batch) || stop() {
            return Ok(removed);
        }
        std::thread::sleep(pause);
    }
}

/// The oldest time a row may be stamped with and still be kept (None: kept forever).
pub fn cutoff(now: DateTime<Utc>, retention: Duration) -> Option<DateTime<Utc>> {
    now.checked_sub_signed(chrono::TimeDelta::from_std(retention).ok()?)
}

/// Prunes every kind past its retention now, as `owner`, under the `prune` lease (blocking:
/// call from a blocking thread). Without `force` only when it did not run within
/// `retention.interval`; with it, whenever no other owner holds the lease. None when the
/// lease was not taken. Each batch is a transaction of its own.
pub fn prune_now(
    store: &dyn RetentionStore,
    retention: &RetentionConfig,
    owner: &str,
    force: bool,
    stop: &dyn Fn() -> bool,
) -> Result<Option<PruneReport>, Error> {
    if !store.claim_maintenance(PRUNE_TASK, owner, retention.interval, PRUNE_LEASE, force)? {
        return Ok(None);
    }
    let now = Utc::now();
    let mut report = PruneReport::default();
    for kind in PruneKind::ALL {
        if stop() {
            return Ok(Some(report));
        }
        let Some(before) = cutoff(now, kind.retention(retention)) else {
            continue;
        };
        let prune = |batch| kind.prune(store, before, batch);
        report.add(
            kind,
            prune_in_batches(&prune, retention.batch, BETWEEN_BATCHES, stop)?,
        );
    }
    store.finish_maintenance(PRUNE_TASK, owner)?;
    Ok(Some(report))
}

/// [`prune_now`], then counts what it removed in `metrics` and sets their table sizes.
pub fn prune_and_measure(
    store: &dyn RetentionStore,
    retention: &RetentionConfig,
    owner: &str,
    metrics: &Metrics,
    stop: &dyn Fn() -> bool,
) -> Result<Option<PruneReport>, Error> {
    let Some(report) = prune_now(store, retention, owner, false, stop)? else {
        return Ok(None);
    };
    for kind in PruneKind::ALL {
        metrics.pruned(kind.table(), report.removed(kind));
    }
    match store.table_rows() {
        Ok(rows) => metrics.set_table_rows(&rows),
        Err(e) => tracing::warn!(error = %e, "cannot count the tables' rows after pruning"),
    }
    Ok(Some(report))
}

impl Worker {
    /// Prunes shortly after start, then every `[retention] interval`, until `shutdown`.
    pub(super) async fn prune_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut wait = FIRST_PRUNE_AFTER;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let retention = self.settings.retention;
            wait = retention.interval;
            let store = Arc::clone(&self.store);
            let owner = self.owner.clone();
            let stopping = shutdown.clone();
            let pruned = blocking(move || {
                let store: &dyn RetentionStore = store.as_ref();
                let stop = || stopping.is_cancelled();
                prune_and_measure(store, &retention, &owner, crate::metrics::global(), &stop)
            })
            .await;
            match pruned {
                Ok(None) => {
                    tracing::debug!(
                        "pruning ran on another replica within the interval, or runs there now"
                    );
                }
                Ok(Some(r)) => tracing::info!(
                    deployment_logs = r.logs,
                    outbox = r.outbox,
                    deliveries = r.deliveries,
                    audit_events = r.audit,
                    "removed stored records past their retention"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    retry_in = ?wait,
                    "cannot remove stored records past their retention; retrying after the interval"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Rows stamped with times, which records each batch it was asked for.
    struct Trail {
        at: Mutex<Vec<DateTime<Utc>>>,
        batches: Mutex<Vec<u64>>,
    }

    impl Trail {
        fn new(at: Vec<DateTime<Utc>>) -> Self {
            Trail {
                at: Mutex::new(at),
                batches: Mutex::new(Vec::new()),
            }
        }

        fn prune(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error> {
            let mut at = self.at.lock().unwrap();
            let mut removed = 0;
            at.retain(|t| {
                let remove = *t < before && removed < u64::from(batch);
                removed += u64::from(remove);
                !remove
            });
            self.batches.lock().unwrap().push(removed);
            Ok(removed)
        }
    }

    #[test]
    fn batches_run_until_one_comes_back_short() {
        let now = Utc::now();
        let old = now - chrono::TimeDelta::days(500);
        let mut at = vec![old; 25];
        at.extend([now; 3]);
        let trail = Trail::new(at);
        let before = cutoff(now, Duration::from_secs(400 * 86_400)).unwrap();
        let prune = |batch| trail.prune(before, batch);
        assert_eq!(
            prune_in_batches(&prune, 10, Duration::ZERO, &|| false).unwrap(),
            25
        );
        assert_eq!(*trail.batches.lock().unwrap(), vec![10, 10, 5]);
        assert_eq!(*trail.at.lock().unwrap(), vec![now; 3]);
        // Nothing left to remove: one look, nothing removed.
        assert_eq!(
            prune_in_batches(&prune, 10, Duration::ZERO, &|| false).unwrap(),
            0
        );
    }

    #[test]
    fn a_stop_ends_pruning_after_the_batch_in_hand() {
        let old = Utc::now() - chrono::TimeDelta::days(500);
        let trail = Trail::new(vec![old; 25]);
        let prune = |batch| trail.prune(Utc::now(), batch);
        let removed = prune_in_batches(&prune, 10, Duration::ZERO, &|| true).unwrap();
        assert_eq!(removed, 10);
        assert_eq!(trail.at.lock().unwrap().len(), 15);
    }

    #[test]
    fn the_cutoff_is_the_retention_before_now() {
        let now = Utc::now();
        assert_eq!(
            cutoff(now, Duration::from_secs(400 * 86_400)),
            Some(now - chrono::TimeDelta::days(400))
        );
        assert_eq!(cutoff(now, Duration::MAX), None);
    }
}
