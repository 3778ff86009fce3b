//! Group commit for webhook deliveries.
//!
//! Recording a delivery is a small write, and under a burst of webhooks most of its cost
//! is the commit (an fsync on PostgreSQL; on SQLite the WAL frames, the locks and the
//! wake-ups around them). So deliveries are handed to one writer thread, which takes
//! everything waiting when it is free and writes it in one transaction: each delivery is
//! still committed before its webhook is answered, and one commit serves them all.
//!
//! There is no timer for a lone delivery: it is written at once. Under load the writer
//! also waits for the deliveries that are *announced*: a handler announces its delivery
//! once the signature is checked ([`DeliveryTicket`]), and what is left before it is
//! queued is routing it, tens of microseconds. The writer waits for those announced when
//! it woke up (never for later ones, at most [`GATHER`]), so that one commit serves them
//! too instead of the next commit serving each alone.
//!
//! A batch is written as if its deliveries came one after another: a delivery id seen
//! earlier in the same batch is a duplicate, a trigger key deployed earlier in it is
//! "already deployed". If the batch's transaction fails for any reason other than the
//! database being unreachable, each delivery is written again on its own, so one bad
//! delivery cannot fail the others.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{DieselStore, insert_triggered_in, outbox};
use crate::deploy::{self, DeliveryRecord, Error, Store};

/// The most deliveries written in one transaction.
const MAX_BATCH: usize = 256;

/// The longest the writer waits for announced deliveries before committing what it has.
pub const GATHER: Duration = Duration::from_millis(2);

struct Job {
    delivery: deploy::Delivery,
    triggered: Vec<deploy::TriggeredDeployment>,
    items: Vec<deploy::NewOutboxItem>,
    reply: oneshot::Sender<Result<DeliveryRecord, Error>>,
}

/// What the writer is doing, so that a handler wakes it only when it waits for that.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Writing a batch, or about to look at the queue: no need to wake it.
    Busy,
    /// Waiting for a first delivery.
    Idle,
    /// Waiting until this many deliveries are queued or none is announced any more.
    Gathering { until: usize },
}

struct Queue {
    jobs: Vec<Job>,
    /// Deliveries announced and not yet queued (nor given up).
    announced: usize,
    writer: Writer,
    /// The store is gone (or the writer could not start): nothing more is accepted.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// [`GATHER`], longer in tests.
    gather: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The lock is never held across anything that can panic; if it were poisoned
        // anyway, the queue is still consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the job of an announced delivery.
    fn queue_job(&self, job: Job) -> Result<(), Error> {
        let mut queue = self.lock();
        queue.announced -= 1;
        if queue.closed {
            return Err(Error::Unavailable("the delivery writer has stopped".into()));
        }
        queue.jobs.push(job);
        self.nudge(queue);
        Ok(())
    }

    /// Wakes the writer if it waits for what `queue` now has.
    fn nudge(&self, mut queue: MutexGuard<'_, Queue>) {
        let wake = match queue.writer {
            Writer::Busy => false,
            Writer::Idle => !queue.jobs.is_empty() || queue.closed,
            Writer::Gathering { until } => {
                queue.announced == 0 || queue.jobs.len() >= until || queue.closed
            }
        };
        if wake {
            queue.writer = Writer::Busy;
            drop(queue);
            self.wake.notify_one();
        }
    }
}

/// Closes the queue when the last clone of the store is dropped; the writer then writes
/// what is queued and stops.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.closed = true;
        queue.writer = Writer::Busy;
        drop(queue);
        self.0.wake.notify_all();
    }
}

/// The handle a store keeps: the writer thread starts on first use.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    handle: Arc<OnceLock<Handle>>,
    gather: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        GroupCommit {
            handle: Arc::default(),
            gather: GATHER,
        }
    }
}

impl GroupCommit {
    fn shared(&self, store: &DieselStore) -> Arc<Shared> {
        if let Some(handle) = self.handle.get() {
            return Arc::clone(&handle.0);
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                announced: 0,
                writer: Writer::Busy,
                closed: false,
            }),
            wake: Condvar::new(),
            gather: self.gather,
        });
        if self.handle.set(Handle(Arc::clone(&shared))).is_ok() {
            // The writer gets a store of its own (same pool) without this handle, so that
            // it does not keep the queue open.
            let writer = DieselStore {
                pool: store.pool.clone(),
                backend: store.backend,
                group: GroupCommit::default(),
            };
            let queue = Arc::clone(&shared);
            let started = std::thread::Builder::new()
                .name("deploybot-ingest-writer".into())
                .spawn(move || run(&writer, &queue));
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start the delivery writer thread");
                shared.lock().closed = true;
            }
        }
        self.handle
            .get()
            .map_or(shared, |handle| Arc::clone(&handle.0))
    }
}

/// A delivery on its way to the writer: its signature is checked and it is being routed.
/// While a ticket is held the writer, if it is gathering a batch, waits for it (at most
/// [`GATHER`]). Dropping the ticket without recording (a refused delivery) withdraws it.
pub struct DeliveryTicket {
    shared: Option<Arc<Shared>>,
}

impl DeliveryTicket {
    /// Records the delivery (`Store::record_delivery`) in the next group commit; the answer
    /// comes after the transaction that holds it has committed.
    pub async fn record(
        mut self,
        delivery: deploy::Delivery,
        triggered: Vec<deploy::TriggeredDeployment>,
        items: Vec<deploy::NewOutboxItem>,
    ) -> Result<DeliveryRecord, Error> {
        let Some(shared) = self.shared.take() else {
            return Err(Error::Internal("a delivery ticket was used twice".into()));
        };
        let (reply, answer) = oneshot::channel();
        shared.queue_job(Job {
            delivery,
            triggered,
            items,
            reply,
        })?;
        answer.await.map_err(|_| {
            Error::Unavailable("the delivery writer stopped before answering".into())
        })?
    }
}

impl Drop for DeliveryTicket {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let mut queue = shared.lock();
            queue.announced -= 1;
            shared.nudge(queue);
        }
    }
}

impl DieselStore {
    /// Announces a delivery that will be recorded soon (see [`DeliveryTicket`]).
    pub fn announce_delivery(&self) -> DeliveryTicket {
        let shared = self.group.shared(self);
        shared.lock().announced += 1;
        DeliveryTicket {
            shared: Some(shared),
        }
    }

    /// `Store::record_delivery`, group-committed with the deliveries arriving meanwhile:
    /// the answer comes after the transaction that holds this delivery has committed.
    pub async fn record_delivery_grouped(
        &self,
        delivery: deploy::Delivery,
        triggered: Vec<deploy::TriggeredDeployment>,
        items: Vec<deploy::NewOutboxItem>,
    ) -> Result<DeliveryRecord, Error> {
        self.announce_delivery()
            .record(delivery, triggered, items)
            .await
    }
}

/// Takes the next batch: waits for a first delivery, then (bounded by [`GATHER`]) for the
/// deliveries announced at that moment. None when the store is gone and nothing is queued.
fn next_batch(shared: &Shared, batch: &mut Vec<Job>) -> Option<()> {
    let mut queue = shared.lock();
    while queue.jobs.is_empty() {
        if queue.closed {
            return None;
        }
        queue.writer = Writer::Idle;
        queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
    }
    if queue.announced > 0 && queue.jobs.len() < MAX_BATCH {
        let until = (queue.jobs.len() + queue.announced).min(MAX_BATCH);
        let deadline = Instant::now() + shared.gather;
        while queue.announced > 0 && queue.jobs.len() < until && !queue.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue.writer = Writer::Gathering { until };
            queue = shared
                .wake
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
    queue.writer = Writer::Busy;
    let take = queue.jobs.len().min(MAX_BATCH);
    batch.extend(queue.jobs.drain(..take));
    Some(())
}

/// Closes the queue when the writer stops, however it stops: deliveries still queued are
/// dropped (their webhooks get a 503) and no new one is accepted.
struct Stopped<'a>(&'a Shared);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.closed = true;
        queue.jobs.clear();
    }
}

fn run(store: &DieselStore, shared: &Shared) {
    let _stopped = Stopped(shared);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while next_batch(shared, &mut batch).is_some() {
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
    if batch.len() > 1 {
        let jobs: Vec<outbox::DeliveryJob<'_>> = batch
            .iter()
            .map(|job| outbox::DeliveryJob {
                delivery: &job.delivery,
                triggered: &job.triggered,
                items: &job.items,
            })
            .collect();
        let together =
            store.write(|conn| outbox::record_deliveries(conn, &jobs, insert_triggered_in));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store(gather: Duration) -> (DieselStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("group.db").display());
        let mut store = DieselStore::connect(&url).expect("open sqlite");
        store.migrate().expect("migrate");
        store.group = GroupCommit {
            handle: Arc::default(),
            gather,
        };
        (store, dir)
    }

    fn delivery(id: &str) -> deploy::Delivery {
        deploy::Delivery {
            id: id.into(),
            event: "push".into(),
            action: String::new(),
            tenant_id: "acme".into(),
            repo: "acme/web".into(),
        }
    }

    /// Waits until the writer is gathering a batch (it has a delivery and waits for an
    /// announced one).
    fn wait_for_gathering(store: &DieselStore) {
        let shared = store.group.shared(store);
        for _ in 0..2000 {
            if matches!(shared.lock().writer, Writer::Gathering { .. }) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the writer never waited for the announced delivery");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_announced_delivery_shares_the_commit_under_way() {
        let (store, _dir) = store(Duration::from_secs(30));
        let announced = store.announce_delivery();
        let first = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_delivery_grouped(delivery("first"), Vec::new(), Vec::new())
                    .await
            })
        };
        tokio::task::spawn_blocking({
            let store = store.clone();
            move || wait_for_gathering(&store)
        })
        .await
        .expect("wait");
        let second = announced
            .record(delivery("second"), Vec::new(), Vec::new())
            .await
            .expect("second stored");
        let first = first.await.expect("task").expect("first stored");
        assert_eq!(
            (first.batch, second.batch),
            (2, 2),
            "the delivery announced while the first was queued is committed with it"
        );
        assert!(!first.duplicate && !second.duplicate);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_withdrawn_announcement_does_not_hold_the_commit() {
        // With 30 s to gather, only the withdrawal can let the first delivery through.
        let (store, _dir) = store(Duration::from_secs(30));
        let announced = store.announce_delivery();
        let first = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .record_delivery_grouped(delivery("alone"), Vec::new(), Vec::new())
                    .await
            })
        };
        tokio::task::spawn_blocking({
            let store = store.clone();
            move || wait_for_gathering(&store)
        })
        .await
        .expect("wait");
        drop(announced);
        let first = tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .expect("the commit went ahead once the announced delivery was withdrawn")
            .expect("task")
            .expect("stored");
        assert_eq!(first.batch, 1);
    }
}
