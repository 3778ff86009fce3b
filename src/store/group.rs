//! Group commit for webhook deliveries.
//!
//! Recording a delivery is a small write, and under a burst of webhooks most of its cost
//! is the commit (an fsync on PostgreSQL) and, on SQLite, the wait for the one write
//! lock. So deliveries are handed to one writer thread, which takes everything waiting
//! when it is free and writes it in one transaction: each delivery is still committed
//! before its webhook is answered, and one commit serves them all. There is no timer:
//! a lone delivery is written at once, and batches grow only while a commit is under way.
//! On PostgreSQL a batch that causes nothing is a single statement, run without `BEGIN`
//! and `COMMIT` (it is atomic by itself): one round trip instead of three.
//!
//! A batch is written as if its deliveries came one after another: a delivery id seen
//! earlier in the same batch is a duplicate, a trigger key deployed earlier in it is
//! "already deployed". If the batch's transaction fails for any reason other than the
//! database being unreachable, each delivery is written again on its own, so one bad
//! delivery cannot fail the others.

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use tokio::sync::oneshot;

use super::{Backend, DbConn, DieselStore, insert_triggered_in, outbox};
use crate::deploy::{self, DeliveryRecord, Error, Store};

/// The most deliveries written in one transaction.
const MAX_BATCH: usize = 256;

struct Job {
    delivery: deploy::Delivery,
    triggered: Vec<deploy::TriggeredDeployment>,
    items: Vec<deploy::NewOutboxItem>,
    reply: oneshot::Sender<Result<DeliveryRecord, Error>>,
}

/// The handle a store keeps: the writer thread starts on first use and stops when the
/// last clone of the store is dropped (its channel closes).
#[derive(Clone, Default)]
pub(crate) struct GroupCommit {
    sender: Arc<OnceLock<mpsc::Sender<Job>>>,
}

impl GroupCommit {
    fn sender(&self, store: &DieselStore) -> Result<&mpsc::Sender<Job>, Error> {
        if let Some(sender) = self.sender.get() {
            return Ok(sender);
        }
        let (tx, rx) = mpsc::channel();
        // The writer gets a store of its own (same pool) without this handle, so that
        // it does not keep its own channel open.
        let writer = DieselStore {
            pool: store.pool.clone(),
            backend: store.backend,
            target: std::sync::Arc::clone(&store.target),
            group: GroupCommit::default(),
        };
        if self.sender.set(tx).is_ok() {
            std::thread::Builder::new()
                .name("deploybot-ingest-writer".into())
                .spawn(move || run(&writer, &rx))
                .map_err(|e| {
                    Error::Internal(format!("cannot start the delivery writer thread: {e}"))
                })?;
        }
        self.sender
            .get()
            .ok_or_else(|| Error::Internal("the delivery writer is not running".into()))
    }
}

impl DieselStore {
    /// `Store::record_delivery`, group-committed with the deliveries arriving meanwhile:
    /// the answer comes after the transaction that holds this delivery has committed.
    pub async fn record_delivery_grouped(
        &self,
        delivery: deploy::Delivery,
        triggered: Vec<deploy::TriggeredDeployment>,
        items: Vec<deploy::NewOutboxItem>,
    ) -> Result<DeliveryRecord, Error> {
        #[cfg(feature = "bench-floor")]
        if matches!(floor::get(), Some(floor::Floor::NothingStored)) {
            return Ok(DeliveryRecord {
                batch: 1,
                ..DeliveryRecord::default()
            });
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            delivery,
            triggered,
            items,
            reply,
        };
        self.group
            .sender(self)?
            .send(job)
            .map_err(|_| Error::Unavailable("the delivery writer has stopped".into()))?;
        answer.await.map_err(|_| {
            Error::Unavailable("the delivery writer stopped before answering".into())
        })?
    }
}

fn run(store: &DieselStore, jobs: &mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A panic here (a bug) must not stop ingest: the jobs of the batch are dropped,
        // so their webhooks get a 503 and GitHub's redelivery brings them back.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(store, &mut batch)))
            .is_err()
        {
            tracing::error!("the delivery writer panicked; its batch was not stored");
            batch.clear();
        }
    }
}

/// Writes `batch` (emptying it) and answers every job in it.
fn write(store: &DieselStore, batch: &mut Vec<Job>) {
    #[cfg(feature = "bench-floor")]
    if let Some(floor) = floor::get() {
        floor.answer_unstored(batch);
        return;
    }
    // Deliveries alone are one statement on PostgreSQL, atomic on its own: without BEGIN
    // and COMMIT around it, a batch (even of one) costs one round trip instead of three.
    let one_statement = store.backend == Backend::Postgres
        && batch
            .iter()
            .all(|job| job.triggered.is_empty() && job.items.is_empty());
    if batch.len() > 1 || one_statement {
        let jobs: Vec<outbox::DeliveryJob<'_>> = batch
            .iter()
            .map(|job| outbox::DeliveryJob {
                delivery: &job.delivery,
                triggered: &job.triggered,
                items: &job.items,
            })
            .collect();
        let record =
            |conn: &mut DbConn| outbox::record_deliveries(conn, &jobs, insert_triggered_in);
        let together = if one_statement {
            store.read(record)
        } else {
            store.write(record)
        };
        drop(jobs);
        match together {
            Ok(records) => {
                let size = batch.len();
                for (job, mut record) in batch.drain(..).zip(records) {
                    record.batch = size;
                    let _ = job.reply.send(Ok(record));
                }
                return;
            }
            Err(Error::Unavailable(e)) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(Error::Unavailable(e.clone())));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, deliveries = batch.len(), "a grouped write failed; writing its deliveries one by one");
            }
        }
    }
    for job in batch.drain(..) {
        let record = store.record_delivery(&job.delivery, &job.triggered, &job.items);
        let _ = job.reply.send(record);
    }
}

/// Bench-only floors of the ingest path (`cargo bench --features bench-floor --bench
/// ingest`, subjects `floor-*`): what a webhook costs when its delivery is not stored, so
/// that the cost of storing can be told from the cost of everything else. Chosen by
/// `DEPLOYBOT_BENCH_FLOOR`; a build without the feature has none of this.
#[cfg(feature = "bench-floor")]
mod floor {
    use std::os::unix::fs::FileExt;
    use std::sync::OnceLock;

    use super::Job;
    use crate::deploy::DeliveryRecord;

    #[derive(Debug)]
    pub(super) enum Floor {
        /// `nothing`: the handler answers as if stored; no writer thread, no hand-over.
        NothingStored,
        /// `handover`: deliveries go to the writer thread, which answers each batch at
        /// once, without any write.
        Handover,
        /// `fsync:PATH`: like `handover`, but each batch first writes 4 KiB to PATH and
        /// `fdatasync`s it: the least that any durable group commit does.
        Fsync(std::fs::File),
    }

    /// The floor named by `DEPLOYBOT_BENCH_FLOOR`, read once; an unknown name stops the
    /// process, so that a bench never measures the wrong build unknowingly.
    pub(super) fn get() -> Option<&'static Floor> {
        static FLOOR: OnceLock<Option<Floor>> = OnceLock::new();
        FLOOR
            .get_or_init(|| {
                let name = std::env::var("DEPLOYBOT_BENCH_FLOOR").ok()?;
                let floor = match name.as_str() {
                    "nothing" => Floor::NothingStored,
                    "handover" => Floor::Handover,
                    other => match other.strip_prefix("fsync:") {
                        Some(path) => Floor::Fsync(
                            std::fs::OpenOptions::new()
                                .create(true)
                                .truncate(false)
                                .write(true)
                                .open(path)
                                .unwrap_or_else(|e| {
                                    eprintln!("DEPLOYBOT_BENCH_FLOOR: cannot open {path}: {e}");
                                    std::process::exit(2)
                                }),
                        ),
                        None => {
                            eprintln!(
                                "DEPLOYBOT_BENCH_FLOOR={other:?}: use nothing, handover or fsync:PATH"
                            );
                            std::process::exit(2)
                        }
                    },
                };
                tracing::warn!(floor = ?floor, "bench floor: webhook deliveries are NOT stored");
                Some(floor)
            })
            .as_ref()
    }

    impl Floor {
        /// Answers every job of `batch` as if its delivery had been stored.
        pub(super) fn answer_unstored(&self, batch: &mut Vec<Job>) {
            if let Floor::Fsync(file) = self {
                let block = [0u8; 4096];
                if let Err(e) = file.write_all_at(&block, 0).and_then(|()| file.sync_data()) {
                    tracing::error!(error = %e, "bench floor: the sync failed");
                }
            }
            let size = batch.len();
            for job in batch.drain(..) {
                let _ = job.reply.send(Ok(DeliveryRecord {
                    batch: size,
                    ..DeliveryRecord::default()
                }));
            }
        }
    }
}
