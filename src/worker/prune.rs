//! The worker's retention: every hour (the first time shortly after start), it removes the
//! audit events older than `[retention] audit`, in batches, until a batch comes back short.
//! Every replica runs it; each batch is one transaction, so replicas may overlap safely.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::deploy::service::blocking;
use crate::deploy::{AuditStore, Error};

/// How long after start the first pruning runs.
const FIRST_PRUNE_AFTER: Duration = Duration::from_secs(60);

/// How often the audit trail is pruned after that.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The most events one transaction removes.
const PRUNE_BATCH: u32 = 1000;

/// Removes the events stamped before `before`, `batch` at a time, until a batch removes
/// fewer than `batch` or `stop` says so; returns how many it removed.
fn prune_in_batches(
    store: &dyn AuditStore,
    before: DateTime<Utc>,
    batch: u32,
    stop: &dyn Fn() -> bool,
) -> Result<u64, Error> {
    let mut removed = 0;
    loop {
        let now_removed = store.prune_audit(before, batch)?;
        removed += now_removed;
        if now_removed < u64::from(batch) || stop() {
            return Ok(removed);
        }
    }
}

/// The oldest time an event may be stamped with and still be kept.
fn cutoff(now: DateTime<Utc>, retention: Duration) -> Option<DateTime<Utc>> {
    now.checked_sub_signed(chrono::TimeDelta::from_std(retention).ok()?)
}

impl Worker {
    /// Prunes the audit trail shortly after start, then every hour, until `shutdown`.
    pub(super) async fn prune_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut wait = FIRST_PRUNE_AFTER;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = PRUNE_EVERY;
            let retention = self.settings.audit_retention;
            let Some(before) = cutoff(Utc::now(), retention) else {
                continue;
            };
            let store = Arc::clone(&self.store);
            let stopping = shutdown.clone();
            let pruned = blocking(move || {
                let store: &dyn AuditStore = store.as_ref();
                prune_in_batches(store, before, PRUNE_BATCH, &|| stopping.is_cancelled())
            })
            .await;
            match pruned {
                Ok(0) => {
                    tracing::debug!(?retention, "no audit events past their retention");
                }
                Ok(removed) => {
                    tracing::info!(removed, %before, ?retention, "removed audit events past their retention");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot remove audit events past their retention; retrying in an hour");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::deploy::{AuditEvent, AuditPage, InstanceId, ListOptions};

    /// An audit trail of event times, which records each batch it was asked for.
    struct Trail {
        at: Mutex<Vec<DateTime<Utc>>>,
        batches: Mutex<Vec<u64>>,
    }

    impl AuditStore for Trail {
        fn record_audit(&self, event: &AuditEvent) -> Result<(), Error> {
            self.at.lock().unwrap().push(event.at);
            Ok(())
        }

        fn list_audit(
            &self,
            _: &str,
            _: Option<InstanceId>,
            _: &ListOptions,
        ) -> Result<AuditPage, Error> {
            unreachable!("pruning lists nothing")
        }

        fn prune_audit(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error> {
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
        let trail = Trail {
            at: Mutex::new(at),
            batches: Mutex::new(Vec::new()),
        };
        let before = cutoff(now, Duration::from_secs(400 * 86_400)).unwrap();
        assert_eq!(prune_in_batches(&trail, before, 10, &|| false).unwrap(), 25);
        assert_eq!(*trail.batches.lock().unwrap(), vec![10, 10, 5]);
        assert_eq!(*trail.at.lock().unwrap(), vec![now; 3]);
        // Nothing left to remove: one look, nothing removed.
        assert_eq!(prune_in_batches(&trail, before, 10, &|| false).unwrap(), 0);
    }

    #[test]
    fn a_stop_ends_pruning_after_the_batch_in_hand() {
        let old = Utc::now() - chrono::TimeDelta::days(500);
        let trail = Trail {
            at: Mutex::new(vec![old; 25]),
            batches: Mutex::new(Vec::new()),
        };
        let removed = prune_in_batches(&trail, Utc::now(), 10, &|| true).unwrap();
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
