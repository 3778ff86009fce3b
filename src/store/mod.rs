//! The Diesel implementation of every store trait (the domain's and `github`'s), written
//! once for SQLite and PostgreSQL: one module per trait, and here the connection pool,
//! migrations, transactions and the mapping of database errors.
//! `DATABASE_URL` picks the backend: `sqlite://PATH` or `postgres://…`.

mod audit;
mod backup;
mod comments;
mod cursor;
mod deliveries;
mod deployments;
mod gates;
mod group;
mod instances;
mod keys;
mod locks;
mod logs;
mod outbox;
mod queue;
mod recording;
mod replies;
mod retention;
mod rows;
pub mod schema;
mod watch;

pub use keys::KeyStore;
pub use outbox::OUTBOX_FORMAT;
pub use queue::{QUEUE_FORMAT, WORKER_LOST};

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::{hide_url_passwords, pg_url_problem, redact_url};
use crate::deploy::{Error, InstanceId};
use deployments::insert_triggered_in;
use instances::load_instance;

/// For fuzzing only (`fuzz/fuzz_targets/cursor.rs`), not an API: decodes `cursor` as the list
/// routes do, as a deployments cursor (created_at µs, id) and as a releases cursor (version).
#[doc(hidden)]
pub fn fuzz_decode_cursor(
    cursor: &str,
    instance: InstanceId,
) -> (Result<(i64, String), Error>, Result<i64, Error>) {
    (
        cursor::decode_deployment(cursor, instance).map(|key| (key.created_at_micros, key.id)),
        cursor::decode_release(cursor, instance),
    )
}

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// The PostgreSQL advisory lock key that serializes migrations across servers
/// ("deploybot" in ASCII, as a 64-bit number).
const MIGRATION_LOCK: i64 = 0x6465_706c_6f79_626f;

/// A connection to either backend; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A parsed `DATABASE_URL`.
#[derive(Clone)]
pub struct DatabaseUrl {
    pub backend: Backend,
    /// What the driver is given: a file path for SQLite, the URL for PostgreSQL.
    target: String,
}

impl DatabaseUrl {
    /// Reads `sqlite://PATH` or `postgres://…` / `postgresql://…`.
    pub fn parse(url: &str) -> Result<Self, Error> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(Error::InvalidRequest(
                    "the database URL `sqlite://` names no file: write sqlite://PATH, e.g. sqlite://deploybot.db".into(),
                ));
            }
            Ok(Self {
                backend: Backend::Sqlite,
                target: path.to_string(),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if let Some(problem) = pg_url_problem(url) {
                return Err(Error::InvalidRequest(format!(
                    "the database URL {} is not one PostgreSQL can read ({}); write postgres://USER:PASSWORD@HOST:PORT/DB, percent-encoding special characters such as @ / : [ ] in the user and password",
                    redact_url(url),
                    hide_url_passwords(&problem, url)
                )));
            }
            Ok(Self {
                backend: Backend::Postgres,
                target: url.to_string(),
            })
        } else {
            Err(Error::InvalidRequest(
                "the database URL must start with sqlite:// (embedded) or postgres:// (server)"
                    .into(),
            ))
        }
    }
}

/// A connection held by the pool, with when it last answered.
pub(crate) struct PooledConn {
    conn: DbConn,
    /// When an operation on it last ended with the database answering (None after the
    /// connection was lost, and before its first use).
    answered_at: Option<Instant>,
}

impl std::ops::Deref for PooledConn {
    type Target = DbConn;
    fn deref(&self) -> &DbConn {
        &self.conn
    }
}

impl std::ops::DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut DbConn {
        &mut self.conn
    }
}

impl PooledConn {
    /// Records how an operation on the connection ended: after any error the connection
    /// is pinged before its next use (and replaced if it does not answer).
    fn ended<T>(&mut self, result: &Result<T, Error>) {
        self.answered_at = result.is_ok().then(Instant::now);
    }
}

/// How long after a connection last answered it is handed out without a ping. Under
/// load a connection is reused within milliseconds, and the ping (a round trip on
/// PostgreSQL, SQL to parse on SQLite) was a fifth of the statements a deployment made.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Opens connections for the pool, configuring SQLite for concurrent use.
pub(crate) struct Manager {
    url: DatabaseUrl,
    busy_timeout: Duration,
}

impl ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<PooledConn, r2d2::Error> {
        let conn = match self.url.backend {
            Backend::Postgres => PgConnection::establish(&self.url.target)
                .map(DbConn::Pg)
                .map_err(r2d2::Error::ConnectionError)?,
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.url.target)
                    .map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers run beside the writer; synchronous = FULL syncs the
                // WAL at every commit, so what was answered survives a power cut (NORMAL
                // only survives a crash of the process); busy_timeout makes writers wait
                // for each other instead of failing; foreign keys are off by default.
                conn.batch_execute(&format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON;",
                    self.busy_timeout.as_millis()
                ))
                .map_err(r2d2::Error::QueryError)?;
                DbConn::Sqlite(conn)
            }
        };
        Ok(PooledConn {
            conn,
            answered_at: Some(Instant::now()),
        })
    }

    /// Pings a connection before handing it out, unless it answered a moment ago.
    fn is_valid(&self, conn: &mut PooledConn) -> Result<(), r2d2::Error> {
        if conn
            .answered_at
            .is_some_and(|at| at.elapsed() < PING_AFTER_IDLE)
        {
            return Ok(());
        }
        conn.conn
            .batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)?;
        conn.answered_at = Some(Instant::now());
        Ok(())
    }

    /// A connection left in a failed transaction is not given back to the pool.
    fn has_broken(&self, conn: &mut PooledConn) -> bool {
        match &mut conn.conn {
            DbConn::Pg(c) => r2d2::R2D2Connection::is_broken(c),
            DbConn::Sqlite(c) => r2d2::R2D2Connection::is_broken(c),
        }
    }
}

type Pool = r2d2::Pool<Manager>;
type Conn = r2d2::PooledConnection<Manager>;

/// The Diesel store over a connection pool.
#[derive(Clone)]
pub struct DieselStore {
    pool: Pool,
    backend: Backend,
    /// What the backend connects to (a PostgreSQL URL or an SQLite path); never logged.
    target: Arc<str>,
    group: group::GroupCommit,
}

impl std::fmt::Debug for DieselStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselStore")
            .field("backend", &self.backend)
            .finish()
    }
}

/// Maps a Diesel error to the domain's: unique violations are conflicts, lost
/// connections are "unavailable", the rest is internal.
pub(crate) fn db_error(err: DieselError) -> Error {
    match err {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            Error::Conflict(format!("already exists: {}", info.message()))
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
            Error::Unavailable(format!(
                "the database connection was lost: {}",
                info.message()
            ))
        }
        DieselError::DatabaseError(_, info)
            if info.message().contains("database is locked")
                || info.message().contains("terminating connection") =>
        {
            Error::Unavailable(format!("the database is busy: {}", info.message()))
        }
        // A value the database cannot hold (PostgreSQL: a NUL in text, a value too long):
        // the request is at fault, and sending it again will not help.
        DieselError::DatabaseError(_, info)
            if info.message().contains("invalid byte sequence")
                || info.message().contains("value too long") =>
        {
            Error::InvalidRequest(format!(
                "the database cannot store a value of this request: {}",
                info.message()
            ))
        }
        DieselError::NotFound => Error::Internal("a row the store expected is missing".into()),
        other => Error::Internal(format!("database error: {other}")),
    }
}

impl DieselStore {
    /// Connects (creating an SQLite file on first use). Does not migrate: see `migrate`.
    pub fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, 16)
    }

    /// Connects with a pool of at most `max_size` connections.
    pub fn connect_with(url: &str, max_size: u32) -> Result<Self, Error> {
        let shown = url.to_string();
        let url = DatabaseUrl::parse(url)?;
        let backend = url.backend;
        let target: Arc<str> = url.target.as_str().into();
        let manager = Manager {
            url,
            busy_timeout: Duration::from_secs(15),
        };
        let pool = r2d2::Pool::builder()
            .max_size(max_size)
            .min_idle(Some(1))
            // GitHub waits 10 s for a webhook's answer: a 503 must come before that.
            .connection_timeout(Duration::from_secs(5))
            .build(manager)
            .map_err(|e| {
                Error::Unavailable(format!(
                    "cannot connect to the {backend:?} database at {}: {}",
                    redact_url(&shown),
                    hide_url_passwords(&e.to_string(), &shown)
                ))
            })?;
        Ok(Self {
            pool,
            backend,
            target,
            group: group::GroupCommit::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the embedded migrations that have not run yet; returns their names.
    ///
    /// Any number of servers may start at once on one database (a Kubernetes Deployment
    /// starts its replicas together): on PostgreSQL the migrations run under a session
    /// advisory lock, so one server migrates while the others wait and then find nothing
    /// left to do. SQLite's write lock already serializes them.
    pub fn migrate(&self) -> Result<Vec<String>, Error> {
        let failed = |e| Error::Internal(format!("migration failed: {e}"));
        let applied = match self.backend {
            Backend::Postgres => {
                // A connection of its own, closed afterwards: closing it releases the lock
                // whatever happened in between.
                let mut c = PgConnection::establish(&self.target).map_err(|e| {
                    Error::Unavailable(format!(
                        "the database is unavailable: {}",
                        hide_url_passwords(&e.to_string(), &self.target)
                    ))
                })?;
                diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                    .execute(&mut c)
                    .map_err(|e| {
                        Error::Unavailable(format!("cannot take the migration lock: {e}"))
                    })?;
                let applied = c.run_pending_migrations(PG_MIGRATIONS).map_err(failed)?;
                applied.iter().map(|v| v.to_string()).collect()
            }
            Backend::Sqlite => {
                let mut conn = self.conn()?;
                let applied = match &mut **conn {
                    DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
                    DbConn::Pg(c) => c.run_pending_migrations(PG_MIGRATIONS),
                }
                .map_err(failed)?;
                applied.iter().map(|v| v.to_string()).collect()
            }
        };
        Ok(applied)
    }

    pub(crate) fn conn(&self) -> Result<Conn, Error> {
        self.pool.get().map_err(|e| {
            Error::Unavailable(format!(
                "the database is unavailable: {}",
                hide_url_passwords(&e.to_string(), &self.target)
            ))
        })
    }

    /// The database's plans for the two claim queries (the outbox sender's, then the
    /// worker's), as `EXPLAIN` prints them: for tests that check they read only pending
    /// rows. PostgreSQL plans as for large tables (sequential scans off): on the small
    /// tables of a test it rightly prefers to read them whole.
    #[doc(hidden)]
    pub fn explain_claims(&self) -> Result<[String; 2], Error> {
        #[derive(QueryableByName)]
        struct SqlitePlan {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }
        #[derive(QueryableByName)]
        struct PgPlan {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
            line: String,
        }
        let mut conn = self.conn()?;
        if let DbConn::Pg(c) = &mut **conn {
            c.batch_execute("SET enable_seqscan = off")
                .map_err(db_error)?;
        }
        let mut plan = |sql: String| -> Result<String, Error> {
            let lines: Vec<String> = match &mut **conn {
                DbConn::Sqlite(c) => diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                    .load::<SqlitePlan>(c)
                    .map(|rows| rows.into_iter().map(|p| p.detail).collect()),
                DbConn::Pg(c) => diesel::sql_query(format!("EXPLAIN {sql}"))
                    .load::<PgPlan>(c)
                    .map(|rows| rows.into_iter().map(|p| p.line).collect()),
            }
            .map_err(db_error)?;
            Ok(lines.join("\n"))
        };
        let now = "'2026-01-01 00:00:00'";
        let plans = [
            plan(
                outbox::CLAIM
                    .replace("{TENANT}", "'acme'")
                    .replace("{LANE}", "'acme/web'")
                    .replace("{NOW}", now)
                    .replace("{LIMIT}", "16"),
            ),
            plan(queue::CANDIDATE.to_string()),
        ];
        if let DbConn::Pg(c) = &mut **conn {
            c.batch_execute("RESET enable_seqscan").map_err(db_error)?;
        }
        let [outbox, deployments] = plans;
        Ok([outbox?, deployments?])
    }

    /// Runs `f` in a write transaction. On SQLite it is `BEGIN IMMEDIATE`, so the write
    /// lock is taken up front and concurrent writers wait (busy_timeout) instead of
    /// failing when a read lock cannot be upgraded.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut DbConn) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut pooled = self.conn()?;
        let result = Self::in_transaction(&mut pooled, f);
        pooled.ended(&result);
        result
    }

    fn in_transaction<T>(
        conn: &mut DbConn,
        f: impl FnOnce(&mut DbConn) -> Result<T, Error>,
    ) -> Result<T, Error> {
        match conn {
            DbConn::Sqlite(c) => {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")
            }
            DbConn::Pg(c) => AnsiTransactionManager::begin_transaction(c),
        }
        .map_err(db_error)?;
        match f(conn) {
            Ok(value) => {
                <DbConn as Connection>::TransactionManager::commit_transaction(conn)
                    .map_err(db_error)?;
                Ok(value)
            }
            Err(err) => {
                if let Err(rollback) =
                    <DbConn as Connection>::TransactionManager::rollback_transaction(conn)
                {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(err)
            }
        }
    }

    /// Runs `f` on a pooled connection without a transaction (single reads).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut DbConn) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut pooled = self.conn()?;
        let result = f(&mut pooled);
        pooled.ended(&result);
        result
    }
}

/// The schema's state, for the readiness check.
pub trait SchemaStore: Send + Sync + 'static {
    /// True when the database answers and no migration is pending (for `/readyz`).
    fn is_migrated(&self) -> Result<bool, Error>;
}

impl SchemaStore for DieselStore {
    /// True when the database answers and no migration is pending (for `/readyz`).
    fn is_migrated(&self) -> Result<bool, Error> {
        let mut conn = self.conn()?;
        let pending = match &mut **conn {
            DbConn::Pg(c) => c.has_pending_migration(PG_MIGRATIONS),
            DbConn::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
        }
        .map_err(|e| Error::Unavailable(format!("cannot read the migration state: {e}")))?;
        Ok(!pending)
    }
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::Integer;

    use super::*;

    #[derive(QueryableByName)]
    struct Synchronous {
        #[diesel(sql_type = Integer)]
        synchronous: i32,
    }

    /// Every SQLite connection of the pool syncs the WAL at each commit (FULL = 2): an
    /// answered webhook is on the disk, not only in the operating system's cache.
    #[test]
    fn sqlite_commits_are_synced_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let store = DieselStore::connect_with(&url, 2).unwrap();
        // Two connections held at once: the pool opened both.
        let held = [store.conn().unwrap(), store.conn().unwrap()];
        for mut conn in held {
            let DbConn::Sqlite(c) = &mut **conn else {
                unreachable!("an SQLite URL opens SQLite connections")
            };
            let mode: Synchronous = diesel::sql_query("PRAGMA synchronous")
                .get_result(c)
                .unwrap();
            assert_eq!(mode.synchronous, 2, "PRAGMA synchronous is not FULL");
        }
    }
}
