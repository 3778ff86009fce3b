//! Group commit for webhook deliveries.
//!
//! Recording a delivery is a small write, and under a burst of webhooks most of its cost
//! is the commit (an fsync on PostgreSQL) and, on SQLite, the wait for the one write
//! lock. So deliveries are handed to one writer thread, which takes everything waiting
//! when it is free and writes it in one transaction: each delivery is still committed
//! before its webhook is answered, and one commit serves them all. There is no timer:
//! a lone delivery is written at once, and batches grow only while a commit is under way.
//! On PostgreSQL a batch without a deadline that causes nothing is a single statement, run
//! without `BEGIN` and `COMMIT` (it is atomic by itself): one round trip instead of three.
//! A batch with a deadline runs in a transaction whose lock waits end at the deadline.
//!
//! A batch is written as if its deliveries came one after another: a delivery id seen
//! earlier in the same batch is a duplicate, a trigger key deployed earlier in it is
//! "already deployed". If the batch's transaction fails for any reason other than the
//! database being unreachable, each delivery is written again on its own, so one bad
//! delivery cannot fail the others.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use tokio::sync::oneshot;

use super::rows::to_db;
use super::schema::repositories;
use super::{Backend, DbConn, DieselStore, db_error, insert_triggered_in, recording};
use crate::deploy::{self, Error};
use crate::github::store::{Delivery, DeliveryRecord, IngestError, RepositorySeen};

/// The most deliveries written in one transaction.
const MAX_BATCH: usize = 256;

/// SQLite's lock wait outside a delivery's deadline (the pool's own setting).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(15);

struct Job {
    delivery: Delivery,
    triggered: Vec<deploy::TriggeredDeployment>,
    items: Vec<crate::github::outbox::NewOutboxItem>,
    seen: Option<RepositorySeen>,
    /// Past it the delivery is answered "unavailable" instead of waiting longer.
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<DeliveryRecord, IngestError>>,
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
    /// `DeliveryStore::record_delivery`, group-committed with the deliveries arriving
    /// meanwhile: the answer comes after the transaction that holds this delivery has committed.
    pub async fn record_delivery_grouped(
        &self,
        delivery: Delivery,
        triggered: Vec<deploy::TriggeredDeployment>,
        items: Vec<crate::github::outbox::NewOutboxItem>,
    ) -> Result<DeliveryRecord, Error> {
        self.submit_delivery(delivery, triggered, items, None, None)
            .await
            .map_err(|e| match e {
                IngestError::Store(e) => e,
                other => Error::Conflict(other.to_string()),
            })
    }

    /// Hands a delivery to the writer thread (`DeliveryStore::record_delivery_checked`).
    pub(super) async fn submit_delivery(
        &self,
        delivery: Delivery,
        triggered: Vec<deploy::TriggeredDeployment>,
        items: Vec<crate::github::outbox::NewOutboxItem>,
        seen: Option<RepositorySeen>,
        deadline: Option<Instant>,
    ) -> Result<DeliveryRecord, IngestError> {
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
            seen,
            deadline,
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

    /// Forgets the repository id pinned for `full_name`, so that the next delivery for
    /// that name pins the id it carries. Returns the id that was pinned, if any.
    pub fn forget_repository(&self, full_name: &str) -> Result<Option<i64>, Error> {
        let name = full_name.to_ascii_lowercase();
        self.write(|conn| {
            let pinned: Option<i64> = repositories::table
                .filter(repositories::full_name.eq(&name))
                .select(repositories::repository_id)
                .first(conn)
                .optional()
                .map_err(db_error)?;
            diesel::delete(repositories::table.filter(repositories::full_name.eq(&name)))
                .execute(conn)
                .map_err(db_error)?;
            Ok(pinned)
        })
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

fn too_late() -> Error {
    Error::Unavailable("the database did not answer in time".into())
}

/// Writes `batch` (emptying it) and answers every job in it.
fn write(store: &DieselStore, batch: &mut Vec<Job>) {
    #[cfg(feature = "bench-floor")]
    if let Some(floor) = floor::get() {
        floor.answer_unstored(batch);
        return;
    }
    // Deliveries whose webhook has already waited its time are not written at all.
    let now = Instant::now();
    for job in batch.extract_if(.., |job| job.deadline.is_some_and(|d| d <= now)) {
        let _ = job.reply.send(Err(too_late().into()));
    }
    if batch.is_empty() {
        return;
    }
    let deadline = batch.iter().filter_map(|job| job.deadline).min();
    // Deliveries alone are one statement on PostgreSQL, atomic on its own: without BEGIN
    // and COMMIT around it, a batch (even of one) costs one round trip instead of three.
    // Webhooks' deliveries carry a deadline, so this is for callers without one.
    // A delivery with a deadline needs the transaction's statement timeout, and one with
    // a repository to check needs the transaction.
    let one_statement = store.backend == Backend::Postgres
        && deadline.is_none()
        && batch
            .iter()
            .all(|job| job.triggered.is_empty() && job.items.is_empty() && job.seen.is_none());
    if batch.len() > 1 || one_statement {
        let together = write_batch(store, batch, deadline, one_statement);
        match together {
            Ok(results) => {
                let size = results.iter().filter(|r| r.is_ok()).count();
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result.map(|mut record| {
                        record.batch = size;
                        record
                    }));
                }
                return;
            }
            Err(Error::Unavailable(e)) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(Error::Unavailable(e.clone()).into()));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, deliveries = batch.len(), "a grouped write failed; writing its deliveries one by one");
            }
        }
    }
    for job in batch.drain(..) {
        let one = std::slice::from_ref(&job);
        // A concurrent copy of the same delivery, or the same trigger, won the race: the
        // second attempt sees its rows.
        let result = match write_batch(store, one, job.deadline, false) {
            Err(Error::Conflict(_)) => write_batch(store, one, job.deadline, false),
            other => other,
        };
        let result = result
            .map_err(IngestError::from)
            .and_then(|mut results| results.pop().unwrap_or_else(|| Err(too_late().into())))
            .map(|mut record| {
                record.batch = 1;
                record
            });
        let _ = job.reply.send(result);
    }
}

/// Writes the deliveries of `jobs` whose repository is not pinned to another id, in one
/// transaction that waits for the database at most until `deadline`; one result per job.
fn write_batch(
    store: &DieselStore,
    jobs: &[Job],
    deadline: Option<Instant>,
    one_statement: bool,
) -> Result<Vec<Result<DeliveryRecord, IngestError>>, Error> {
    let mut pooled = match deadline {
        Some(deadline) => store
            .pool
            .get_timeout(remaining(deadline)?)
            .map_err(|e| Error::Unavailable(format!("the database is unavailable: {e}")))?,
        None => store.conn()?,
    };
    let result = if one_statement {
        let rows: Vec<recording::DeliveryJob<'_>> = jobs.iter().map(delivery_job).collect();
        recording::record_deliveries(&mut pooled, &rows, insert_triggered_in)
            .map(|records| records.into_iter().map(Ok).collect())
    } else {
        within(&mut pooled, deadline, |conn| {
            let refused = check_pins(conn, jobs)?;
            let rows: Vec<recording::DeliveryJob<'_>> = jobs
                .iter()
                .zip(&refused)
                .filter(|(_, refusal)| refusal.is_none())
                .map(|(job, _)| delivery_job(job))
                .collect();
            let mut records =
                recording::record_deliveries(conn, &rows, insert_triggered_in)?.into_iter();
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err(too_late());
            }
            Ok(refused
                .into_iter()
                .map(|refusal| match refusal {
                    Some(refusal) => Err(refusal),
                    None => records.next().ok_or_else(|| {
                        Error::Internal("a delivery was not recorded".into()).into()
                    }),
                })
                .collect())
        })
    };
    pooled.ended(&result);
    result
}

fn delivery_job(job: &Job) -> recording::DeliveryJob<'_> {
    recording::DeliveryJob {
        delivery: &job.delivery,
        triggered: &job.triggered,
        items: &job.items,
    }
}

fn remaining(deadline: Instant) -> Result<Duration, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(too_late())
    } else {
        Ok(left)
    }
}

/// Runs `f` in a write transaction whose waits for locks end at `deadline`: SQLite's
/// busy timeout and PostgreSQL's statement timeout are set to the time left.
fn within<T>(
    conn: &mut DbConn,
    deadline: Option<Instant>,
    f: impl FnOnce(&mut DbConn) -> Result<T, Error>,
) -> Result<T, Error> {
    let wait = deadline.map(remaining).transpose()?;
    let millis = wait.map(|w| w.as_millis().max(1));
    let begun = match (&mut *conn, millis) {
        (DbConn::Sqlite(c), Some(ms)) => c
            .batch_execute(&format!("PRAGMA busy_timeout = {ms}"))
            .and_then(|()| AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")),
        (DbConn::Sqlite(c), None) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
        }
        (DbConn::Pg(c), Some(ms)) => AnsiTransactionManager::begin_transaction(c)
            .and_then(|()| c.batch_execute(&format!("SET LOCAL statement_timeout = {ms}"))),
        (DbConn::Pg(c), None) => AnsiTransactionManager::begin_transaction(c),
    };
    let result = begun.map_err(wait_error).and_then(|()| match f(conn) {
        Ok(value) => <DbConn as Connection>::TransactionManager::commit_transaction(conn)
            .map_err(wait_error)
            .map(|()| value),
        Err(err) => {
            if let Err(rollback) =
                <DbConn as Connection>::TransactionManager::rollback_transaction(conn)
            {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(timed_out(err, deadline))
        }
    });
    if let (DbConn::Sqlite(c), Some(_)) = (&mut *conn, millis) {
        let restore = format!("PRAGMA busy_timeout = {}", SQLITE_BUSY_TIMEOUT.as_millis());
        if let Err(e) = c.batch_execute(&restore) {
            tracing::warn!(error = %e, "cannot restore the SQLite busy timeout");
        }
    }
    result
}

/// A statement that failed because the delivery's time ran out (PostgreSQL cancels it
/// with "canceling statement due to statement timeout") is the database being
/// unavailable, not an internal error: nothing was stored and a redelivery will do.
fn timed_out(err: Error, deadline: Option<Instant>) -> Error {
    match err {
        Error::Internal(message)
            if message.contains("statement timeout")
                || deadline.is_some_and(|d| Instant::now() >= d) =>
        {
            Error::Unavailable(format!("the database did not answer in time: {message}"))
        }
        other => other,
    }
}

/// A lock wait that ran out (PostgreSQL's statement timeout) is the database being
/// unavailable, like SQLite's "database is locked".
fn wait_error(e: diesel::result::Error) -> Error {
    match e {
        diesel::result::Error::DatabaseError(_, ref info)
            if info.message().contains("statement timeout") =>
        {
            Error::Unavailable(format!("the database is busy: {}", info.message()))
        }
        other => db_error(other),
    }
}

/// For each job, `Some(refusal)` when its repository is pinned to another id; pins the
/// repositories seen for the first time.
fn check_pins(conn: &mut DbConn, jobs: &[Job]) -> Result<Vec<Option<IngestError>>, Error> {
    let names: Vec<&str> = jobs
        .iter()
        .filter_map(|job| job.seen.as_ref().map(|s| s.full_name.as_str()))
        .collect();
    if names.is_empty() {
        return Ok(jobs.iter().map(|_| None).collect());
    }
    let mut pinned: HashMap<String, i64> = repositories::table
        .filter(repositories::full_name.eq_any(&names))
        .select((repositories::full_name, repositories::repository_id))
        .load::<(String, i64)>(conn)
        .map_err(wait_error)?
        .into_iter()
        .collect();
    let mut refusals = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some(seen) = &job.seen else {
            refusals.push(None);
            continue;
        };
        match pinned.get(&seen.full_name) {
            Some(&id) if id != seen.repository_id => {
                refusals.push(Some(IngestError::RepositoryReplaced {
                    full_name: seen.full_name.clone(),
                    pinned: id,
                    delivered: seen.repository_id,
                }));
            }
            Some(_) => refusals.push(None),
            None => {
                pin(conn, seen)?;
                pinned.insert(seen.full_name.clone(), seen.repository_id);
                refusals.push(None);
            }
        }
    }
    Ok(refusals)
}

fn pin(conn: &mut DbConn, seen: &RepositorySeen) -> Result<(), Error> {
    let row = (
        repositories::full_name.eq(&seen.full_name),
        repositories::tenant_id.eq(&seen.tenant),
        repositories::repository_id.eq(seen.repository_id),
        repositories::installation_id.eq(seen.installation_id),
        repositories::first_seen_at.eq(to_db(Utc::now())),
    );
    match conn {
        DbConn::Pg(c) => diesel::insert_into(repositories::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c),
        DbConn::Sqlite(c) => diesel::insert_into(repositories::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c),
    }
    .map_err(wait_error)?;
    tracing::info!(repo = %seen.full_name, repository_id = seen.repository_id, installation_id = ?seen.installation_id, "repository pinned: first delivery for it");
    Ok(())
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
    use crate::github::store::DeliveryRecord;

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
