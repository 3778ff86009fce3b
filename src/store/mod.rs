//! The one `Store` implementation, written once with Diesel for SQLite and PostgreSQL.
//! `DATABASE_URL` picks the backend: `sqlite://PATH` or `postgres://…`.

mod comments;
mod cursor;
mod group;
mod keys;
mod outbox;
mod queue;
mod rows;
pub mod schema;

pub use group::{IngestError, RepositorySeen};
pub use outbox::{
    DEPLOYMENT_CREATED, DEPLOYMENT_REACTION, DEPLOYMENT_REPLY, DEPLOYMENT_STATUS, SENDER_LOST,
};
pub use queue::WORKER_LOST;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::deploy::{
    self, DeployListResult, Deployment, DeploymentId, Error, Instance, InstanceId, Lease,
    ListOptions, LogEntry, Release, ReleaseId, ReleaseListResult,
};
use cursor::DeploymentKey;
use rows::{DeploymentRow, InstanceRow, ReleaseRow, to_db};
use schema::{deployments, instances, releases};

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
                    "DATABASE_URL `sqlite://` names no file: write sqlite://PATH, e.g. sqlite://deploybot.db".into(),
                ));
            }
            Ok(Self {
                backend: Backend::Sqlite,
                target: path.to_string(),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self {
                backend: Backend::Postgres,
                target: url.to_string(),
            })
        } else {
            Err(Error::InvalidRequest(
                "DATABASE_URL must start with sqlite:// (embedded) or postgres:// (server)".into(),
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
                    "cannot connect to the {backend:?} database named by DATABASE_URL: {e}"
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
                let mut c = PgConnection::establish(&self.target)
                    .map_err(|e| Error::Unavailable(format!("the database is unavailable: {e}")))?;
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

    /// True when the database answers and no migration is pending (for `/readyz`).
    pub fn is_migrated(&self) -> Result<bool, Error> {
        let mut conn = self.conn()?;
        let pending = match &mut **conn {
            DbConn::Pg(c) => c.has_pending_migration(PG_MIGRATIONS),
            DbConn::Sqlite(c) => c.has_pending_migration(SQLITE_MIGRATIONS),
        }
        .map_err(|e| Error::Unavailable(format!("cannot read the migration state: {e}")))?;
        Ok(!pending)
    }

    pub(crate) fn conn(&self) -> Result<Conn, Error> {
        self.pool
            .get()
            .map_err(|e| Error::Unavailable(format!("the database is unavailable: {e}")))
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

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(us: i64) -> Result<chrono::NaiveDateTime, Error> {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(to_db)
        .ok_or_else(|| Error::InvalidRequest("cursor is invalid: its time is out of range".into()))
}

fn load_instance(conn: &mut DbConn, tenant: &str, id: InstanceId) -> Result<InstanceRow, Error> {
    instances::table
        .filter(instances::tenant_id.eq(tenant))
        .filter(instances::id.eq(id.to_string()))
        .select(InstanceRow::as_select())
        .first(conn)
        .optional()
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("instance", id))
}

/// Takes the next version of the instance, and counts a deployment created with the
/// release in the same statement: the counter row is updated first, so the row lock
/// (PostgreSQL) or the write lock (SQLite) serialises concurrent allocations.
fn allocate_version(
    conn: &mut DbConn,
    tenant: &str,
    instance: InstanceId,
    deployments: i64,
) -> Result<i64, Error> {
    let update = diesel::update(
        instances::table
            .filter(instances::tenant_id.eq(tenant))
            .filter(instances::id.eq(instance.to_string())),
    )
    .set((
        instances::last_release_version.eq(instances::last_release_version + 1),
        instances::deployment_count.eq(instances::deployment_count + deployments),
    ))
    .returning(instances::last_release_version);
    let version: Option<i64> = match conn {
        DbConn::Pg(c) => update.get_result(c).optional(),
        DbConn::Sqlite(c) => update.get_result(c).optional(),
    }
    .map_err(db_error)?;
    version.ok_or_else(|| Error::not_found("instance", instance))
}

/// Inserts a release; `deployments` is 1 when a deployment of it is inserted next (by
/// `insert_deployment_row`), which is then counted on the instance here.
fn insert_release_in(
    conn: &mut DbConn,
    release: &Release,
    deployments: i64,
) -> Result<Release, Error> {
    let mut release = release.clone();
    release.version = allocate_version(conn, &release.tenant_id, release.instance_id, deployments)?;
    if release.active {
        deactivate_all(conn, &release.tenant_id, release.instance_id)?;
    }
    diesel::insert_into(releases::table)
        .values(ReleaseRow::from_domain(&release)?)
        .execute(conn)
        .map_err(db_error)?;
    Ok(release)
}

fn deactivate_all(conn: &mut DbConn, tenant: &str, instance: InstanceId) -> Result<(), Error> {
    diesel::update(
        releases::table
            .filter(releases::tenant_id.eq(tenant))
            .filter(releases::instance_id.eq(instance.to_string()))
            .filter(releases::active.eq(true)),
    )
    .set(releases::active.eq(false))
    .execute(conn)
    .map_err(db_error)?;
    Ok(())
}

/// Inserts a deployment of an existing release: counted on its instance, its release
/// checked to belong to that instance.
fn insert_deployment_in(
    conn: &mut DbConn,
    deployment: &Deployment,
    trigger_key: Option<&str>,
) -> Result<(), Error> {
    let counted = diesel::update(
        instances::table
            .filter(instances::tenant_id.eq(&deployment.tenant_id))
            .filter(instances::id.eq(deployment.instance_id.to_string())),
    )
    .set(instances::deployment_count.eq(instances::deployment_count + 1))
    .execute(conn)
    .map_err(db_error)?;
    if counted == 0 {
        return Err(Error::not_found("instance", deployment.instance_id));
    }
    let release_instance: Option<String> = releases::table
        .filter(releases::tenant_id.eq(&deployment.tenant_id))
        .filter(releases::id.eq(deployment.release_id.to_string()))
        .select(releases::instance_id)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    match release_instance {
        None => return Err(Error::not_found("release", deployment.release_id)),
        Some(inst) if inst != deployment.instance_id.to_string() => {
            return Err(Error::InvalidRequest(format!(
                "release {} belongs to another instance than {}",
                deployment.release_id, deployment.instance_id
            )));
        }
        Some(_) => {}
    }
    insert_deployment_row(conn, deployment, trigger_key)
}

/// Inserts the deployment row, with the trigger key that deploys it once, and its first
/// reports. The caller has counted it on its instance and knows its release.
fn insert_deployment_row(
    conn: &mut DbConn,
    deployment: &Deployment,
    trigger_key: Option<&str>,
) -> Result<(), Error> {
    let mut row = DeploymentRow::from_domain(deployment)?;
    row.trigger_key = trigger_key.map(str::to_owned);
    diesel::insert_into(deployments::table)
        .values(row)
        .execute(conn)
        .map_err(db_error)?;
    outbox::report_created(conn, deployment)
}

/// Inserts a triggered deployment (release, deployment, key, superseding) in `conn`'s transaction.
fn insert_triggered_in(
    conn: &mut DbConn,
    t: &deploy::TriggeredDeployment,
) -> Result<Deployment, Error> {
    let key = t.trigger_key.as_deref();
    let deployment = if t.new_release {
        insert_both(conn, &t.release, &t.deployment, key)?.1
    } else {
        insert_deployment_in(conn, &t.deployment, key)?;
        t.deployment.clone()
    };
    if t.supersede {
        queue::supersede(conn, &deployment)?;
    }
    Ok(deployment)
}

/// Inserts a release and a deployment of it: one statement allocates the version and
/// counts the deployment, and the release needs no check (it was just made for it).
fn insert_both(
    conn: &mut DbConn,
    release: &Release,
    deployment: &Deployment,
    trigger_key: Option<&str>,
) -> Result<(Release, Deployment), Error> {
    let release = insert_release_in(conn, release, 1)?;
    let mut deployment = deployment.clone();
    deployment.release_id = release.id;
    deployment.instance_id = release.instance_id;
    deployment.tenant_id = release.tenant_id.clone();
    insert_deployment_row(conn, &deployment, trigger_key)?;
    Ok((release, deployment))
}

impl deploy::Store for DieselStore {
    fn insert_deployment(&self, deployment: &Deployment) -> Result<(), Error> {
        self.write(|conn| insert_deployment_in(conn, deployment, None))
    }

    fn get_deployment(&self, tenant_id: &str, id: DeploymentId) -> Result<Deployment, Error> {
        self.read(|conn| {
            deployments::table
                .filter(deployments::tenant_id.eq(tenant_id))
                .filter(deployments::id.eq(id.to_string()))
                .select(DeploymentRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("deployment", id))?
                .into_domain()
        })
    }

    fn get_deployment_context(
        &self,
        tenant_id: &str,
        id: DeploymentId,
    ) -> Result<(Deployment, Release, Instance), Error> {
        self.read(|conn| {
            let (d, r, i) = deployments::table
                .inner_join(
                    releases::table.on(releases::id
                        .eq(deployments::release_id)
                        .and(releases::tenant_id.eq(deployments::tenant_id))),
                )
                .inner_join(
                    instances::table.on(instances::id
                        .eq(deployments::instance_id)
                        .and(instances::tenant_id.eq(deployments::tenant_id))),
                )
                .filter(deployments::tenant_id.eq(tenant_id))
                .filter(deployments::id.eq(id.to_string()))
                .select((
                    DeploymentRow::as_select(),
                    ReleaseRow::as_select(),
                    InstanceRow::as_select(),
                ))
                .first::<(DeploymentRow, ReleaseRow, InstanceRow)>(conn)
                .optional()
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("deployment", id))?;
            Ok((d.into_domain()?, r.into_domain()?, i.into_domain()?))
        })
    }

    fn update_deployment(&self, deployment: &Deployment) -> Result<(), Error> {
        let row = DeploymentRow::from_domain(deployment)?;
        self.write(|conn| {
            let stored: Option<String> = deployments::table
                .filter(deployments::tenant_id.eq(&row.tenant_id))
                .filter(deployments::id.eq(&row.id))
                .select(deployments::state)
                .first(conn)
                .optional()
                .map_err(db_error)?;
            let stored = stored.ok_or_else(|| Error::not_found("deployment", deployment.id))?;
            let stored: deploy::DeployState = stored.parse().map_err(|e: String| {
                Error::Internal(format!("stored deployment state is corrupt: {e}"))
            })?;
            if stored != deployment.state {
                stored.check_transition(deployment.state)?;
            }
            diesel::update(
                deployments::table
                    .filter(deployments::tenant_id.eq(&row.tenant_id))
                    .filter(deployments::id.eq(&row.id)),
            )
            .set((
                deployments::state.eq(&row.state),
                deployments::strategy.eq(&row.strategy),
                deployments::provider_ref.eq(&row.provider_ref),
                deployments::started_at.eq(row.started_at),
                deployments::finished_at.eq(row.finished_at),
                deployments::error.eq(&row.error),
                deployments::progress_phase.eq(&row.progress_phase),
                deployments::progress_percent.eq(row.progress_percent),
                deployments::progress_message.eq(&row.progress_message),
                deployments::updated_at.eq(row.updated_at),
            ))
            .execute(conn)
            .map_err(db_error)?;
            Ok(())
        })
    }

    fn list_deployments(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
        options: &ListOptions,
    ) -> Result<DeployListResult, Error> {
        let limit = options.effective_limit()?;
        let after = options
            .cursor
            .as_deref()
            .map(|c| cursor::decode_deployment(c, instance_id))
            .transpose()?;
        self.read(|conn| {
            let total = load_instance(conn, tenant_id, instance_id)?.deployment_count;
            let mut query = deployments::table
                .filter(deployments::tenant_id.eq(tenant_id))
                .filter(deployments::instance_id.eq(instance_id.to_string()))
                .select(DeploymentRow::as_select())
                .order((deployments::created_at.desc(), deployments::id.desc()))
                .limit(i64::from(limit) + 1)
                .into_boxed();
            if let Some(key) = &after {
                let at = from_micros(key.created_at_micros)?;
                // A row-value comparison, so both databases seek straight to the cursor
                // in `deployments_instance_page` instead of scanning the newer rows (the
                // equivalent `a < x OR (a = x AND b < y)` is only filtered).
                query = query.filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>(
                        "(deployments.created_at, deployments.id) < (",
                    )
                    .bind::<diesel::sql_types::Timestamp, _>(at)
                    .sql(", ")
                    .bind::<diesel::sql_types::Text, _>(key.id.clone())
                    .sql(")"),
                );
            }
            let mut rows: Vec<DeploymentRow> = query.load(conn).map_err(db_error)?;
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            let items = rows
                .into_iter()
                .map(DeploymentRow::into_domain)
                .collect::<Result<Vec<_>, _>>()?;
            let next_cursor = match items.last() {
                Some(last) if more => Some(cursor::encode_deployment(
                    instance_id,
                    &DeploymentKey {
                        created_at_micros: micros(last.created_at),
                        id: last.id.to_string(),
                    },
                )),
                _ => None,
            };
            Ok(DeployListResult {
                items,
                next_cursor,
                total,
            })
        })
    }

    fn insert_release(&self, release: &Release) -> Result<Release, Error> {
        self.write(|conn| insert_release_in(conn, release, 0))
    }

    fn get_release(&self, tenant_id: &str, id: ReleaseId) -> Result<Release, Error> {
        self.read(|conn| {
            releases::table
                .filter(releases::tenant_id.eq(tenant_id))
                .filter(releases::id.eq(id.to_string()))
                .select(ReleaseRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("release", id))?
                .into_domain()
        })
    }

    fn list_releases(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
        options: &ListOptions,
    ) -> Result<ReleaseListResult, Error> {
        let limit = options.effective_limit()?;
        let after = options
            .cursor
            .as_deref()
            .map(|c| cursor::decode_release(c, instance_id))
            .transpose()?;
        self.read(|conn| {
            // Versions have no gaps and releases are never deleted: the counter is the total.
            let total = load_instance(conn, tenant_id, instance_id)?.last_release_version;
            let mut query = releases::table
                .filter(releases::tenant_id.eq(tenant_id))
                .filter(releases::instance_id.eq(instance_id.to_string()))
                .select(ReleaseRow::as_select())
                .order(releases::version.desc())
                .limit(i64::from(limit) + 1)
                .into_boxed();
            if let Some(version) = after {
                query = query.filter(releases::version.lt(version));
            }
            let mut rows: Vec<ReleaseRow> = query.load(conn).map_err(db_error)?;
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            let items = rows
                .into_iter()
                .map(ReleaseRow::into_domain)
                .collect::<Result<Vec<_>, _>>()?;
            let next_cursor = match items.last() {
                Some(last) if more => Some(cursor::encode_release(instance_id, last.version)),
                _ => None,
            };
            Ok(ReleaseListResult {
                items,
                next_cursor,
                total,
            })
        })
    }

    fn next_release_version(&self, tenant_id: &str, instance_id: InstanceId) -> Result<i64, Error> {
        self.read(|conn| Ok(load_instance(conn, tenant_id, instance_id)?.last_release_version + 1))
    }

    fn insert_release_and_deployment(
        &self,
        release: &Release,
        deployment: &Deployment,
    ) -> Result<(Release, Deployment), Error> {
        self.write(|conn| insert_both(conn, release, deployment, None))
    }

    fn activate_release(&self, tenant_id: &str, release_id: ReleaseId) -> Result<(), Error> {
        self.write(|conn| {
            let instance: String = releases::table
                .filter(releases::tenant_id.eq(tenant_id))
                .filter(releases::id.eq(release_id.to_string()))
                .select(releases::instance_id)
                .first(conn)
                .optional()
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("release", release_id))?;
            queue::activate(conn, tenant_id, &instance, &release_id.to_string())
        })
    }

    fn active_release(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Option<Release>, Error> {
        self.read(|conn| queue::active_release(conn, tenant_id, instance_id))
    }

    fn previous_release(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Option<Release>, Error> {
        self.read(|conn| queue::previous_release(conn, tenant_id, instance_id))
    }

    fn release_by_version(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
        version: i64,
    ) -> Result<Release, Error> {
        self.read(|conn| {
            releases::table
                .filter(releases::tenant_id.eq(tenant_id))
                .filter(releases::instance_id.eq(instance_id.to_string()))
                .filter(releases::version.eq(version))
                .select(ReleaseRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("release version", version))?
                .into_domain()
        })
    }

    fn last_succeeded(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Option<Deployment>, Error> {
        self.read(|conn| queue::last_succeeded(conn, tenant_id, instance_id))
    }

    fn request_cancel(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        by: &str,
    ) -> Result<Deployment, Error> {
        self.write(|conn| queue::request_cancel(conn, tenant_id, id, by))
    }

    fn claim_next(&self, owner: &str, lease: Duration) -> Result<Option<Deployment>, Error> {
        // A unique-index violation means another worker won the race for that instance.
        match self.write(|conn| queue::claim_next(conn, owner, lease)) {
            Err(Error::Conflict(_)) => Ok(None),
            other => other,
        }
    }

    fn renew_lease(&self, id: DeploymentId, owner: &str, lease: Duration) -> Result<Lease, Error> {
        self.write(|conn| queue::renew_lease(conn, id, owner, lease))
    }

    fn record_progress(&self, deployment: &Deployment, owner: &str) -> Result<(), Error> {
        self.write(|conn| queue::record_progress(conn, deployment, owner))
    }

    fn finish_deployment(&self, deployment: &Deployment, owner: &str) -> Result<(), Error> {
        self.write(|conn| queue::finish(conn, deployment, owner))
    }

    fn expired_leases(&self) -> Result<Vec<deploy::ExpiredLease>, Error> {
        self.read(queue::expired_leases)
    }

    fn recover_expired(&self, ids: &[DeploymentId]) -> Result<Vec<Deployment>, Error> {
        self.write(|conn| queue::recover_expired(conn, ids))
    }

    fn append_logs(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        first_seq: i64,
        lines: &[(String, String)],
    ) -> Result<(), Error> {
        if lines.is_empty() {
            return Ok(());
        }
        self.write(|conn| queue::append_logs(conn, tenant_id, id, first_seq, lines))
    }

    fn read_logs(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, Error> {
        self.read(|conn| queue::read_logs(conn, tenant_id, id, after_seq, limit))
    }

    fn record_delivery(
        &self,
        delivery: &deploy::Delivery,
        triggered: &[deploy::TriggeredDeployment],
        items: &[deploy::NewOutboxItem],
    ) -> Result<deploy::DeliveryRecord, Error> {
        let job = outbox::DeliveryJob {
            delivery,
            triggered,
            items,
        };
        let attempt = || {
            self.write(|conn| {
                outbox::record_deliveries(conn, std::slice::from_ref(&job), insert_triggered_in)
            })
            .map(|mut records| records.pop().unwrap_or_default())
        };
        // A concurrent copy of the same delivery, or the same trigger, won the race: the
        // second attempt sees its rows.
        match attempt() {
            Err(Error::Conflict(_)) => attempt(),
            other => other,
        }
    }

    fn stored_deliveries(&self, ids: &[String]) -> Result<Vec<String>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|conn| {
            let mut stored = Vec::with_capacity(ids.len());
            // Bounded IN lists: SQLite caps the number of bound parameters.
            for chunk in ids.chunks(500) {
                let found: Vec<String> = schema::deliveries::table
                    .filter(schema::deliveries::id.eq_any(chunk))
                    .select(schema::deliveries::id)
                    .load(conn)
                    .map_err(db_error)?;
                stored.extend(found);
            }
            Ok(stored)
        })
    }

    fn insert_triggered(
        &self,
        triggered: &deploy::TriggeredDeployment,
        items: &[deploy::NewOutboxItem],
    ) -> Result<deploy::DeliveryRecord, Error> {
        let attempt = || {
            self.write(|conn| {
                outbox::record_effects(
                    conn,
                    std::slice::from_ref(triggered),
                    items,
                    insert_triggered_in,
                )
            })
        };
        match attempt() {
            Err(Error::Conflict(_)) => attempt(),
            other => other,
        }
    }

    fn enqueue(&self, items: &[deploy::NewOutboxItem]) -> Result<(), Error> {
        self.write(|conn| {
            items
                .iter()
                .try_for_each(|item| outbox::enqueue(conn, item))
        })
    }

    fn claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<deploy::OutboxItem>, Error> {
        self.write(|conn| outbox::claim(conn, owner, lease, limit))
    }

    fn renew_outbox(&self, owner: &str, lease: Duration) -> Result<(), Error> {
        self.write(|conn| outbox::renew(conn, owner, lease))
    }

    fn complete_outbox(
        &self,
        id: i64,
        owner: &str,
        result: &deploy::OutboxResult,
    ) -> Result<(), Error> {
        self.write(|conn| outbox::complete(conn, id, owner, result))
    }

    fn github_acceptance(
        &self,
        tenant_id: &str,
        id: DeploymentId,
    ) -> Result<deploy::GithubAcceptance, Error> {
        self.read(|conn| outbox::github_acceptance(conn, tenant_id, id))
    }

    fn newer_status_pending(&self, item: &deploy::OutboxItem) -> Result<bool, Error> {
        self.read(|conn| outbox::newer_status_pending(conn, item))
    }

    fn outbox_items(
        &self,
        tenant_id: &str,
        id: DeploymentId,
    ) -> Result<Vec<deploy::OutboxItem>, Error> {
        self.read(|conn| outbox::items_of(conn, tenant_id, id))
    }

    fn outbox_counts(&self) -> Result<(i64, i64), Error> {
        self.read(outbox::counts)
    }

    fn count_by_state(&self) -> Result<Vec<(deploy::DeployState, i64)>, Error> {
        self.read(|conn| {
            let rows: Vec<(String, i64)> = deployments::table
                .group_by(deployments::state)
                .select((deployments::state, diesel::dsl::count_star()))
                .load(conn)
                .map_err(db_error)?;
            rows.into_iter()
                .map(|(state, n)| Ok((state.parse().map_err(Error::Internal)?, n)))
                .collect()
        })
    }

    fn set_github_deployment_id(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        github_id: i64,
    ) -> Result<(), Error> {
        self.write(|conn| outbox::set_github_id(conn, tenant_id, id, github_id))
    }

    fn upsert_instance(
        &self,
        tenant_id: &str,
        name: &str,
        repo: &str,
        environment: &str,
    ) -> Result<Instance, Error> {
        let attempt = || {
            self.write(|conn| {
                let existing: Option<InstanceRow> = instances::table
                    .filter(instances::tenant_id.eq(tenant_id))
                    .filter(instances::name.eq(name))
                    .select(InstanceRow::as_select())
                    .first(conn)
                    .optional()
                    .map_err(db_error)?;
                let at = to_db(deploy::now());
                match existing {
                    Some(row) if row.repo == repo && row.environment == environment => {
                        row.into_domain()
                    }
                    Some(row) => {
                        diesel::update(instances::table.filter(instances::id.eq(&row.id)))
                            .set((
                                instances::repo.eq(repo),
                                instances::environment.eq(environment),
                                instances::updated_at.eq(at),
                            ))
                            .execute(conn)
                            .map_err(db_error)?;
                        InstanceRow {
                            repo: repo.to_string(),
                            environment: environment.to_string(),
                            updated_at: at,
                            ..row
                        }
                        .into_domain()
                    }
                    None => {
                        let row = InstanceRow {
                            id: InstanceId::new().to_string(),
                            tenant_id: tenant_id.to_string(),
                            name: name.to_string(),
                            repo: repo.to_string(),
                            environment: environment.to_string(),
                            last_release_version: 0,
                            deployment_count: 0,
                            created_at: at,
                            updated_at: at,
                        };
                        diesel::insert_into(instances::table)
                            .values(&row)
                            .execute(conn)
                            .map_err(db_error)?;
                        row.into_domain()
                    }
                }
            })
        };
        // Two processes starting at once may both try to create it: the unique index
        // lets one win, and the other then finds the winner's row.
        match attempt() {
            Err(Error::Conflict(_)) => attempt(),
            other => other,
        }
    }

    fn get_instance(&self, tenant_id: &str, id: InstanceId) -> Result<Instance, Error> {
        self.read(|conn| load_instance(conn, tenant_id, id)?.into_domain())
    }

    fn find_instance(&self, tenant_id: &str, name: &str) -> Result<Instance, Error> {
        self.read(|conn| {
            instances::table
                .filter(instances::tenant_id.eq(tenant_id))
                .filter(instances::name.eq(name))
                .select(InstanceRow::as_select())
                .first(conn)
                .optional()
                .map_err(db_error)?
                .ok_or_else(|| Error::not_found("instance", name))?
                .into_domain()
        })
    }

    fn act_on_comment(
        &self,
        step: &deploy::CommentStep,
        effect: &deploy::CommentEffect,
        items: deploy::CommentItems<'_>,
    ) -> Result<Option<deploy::CommentActed>, Error> {
        self.write(|conn| comments::act(conn, step, effect, items))
    }

    fn comment_steps(
        &self,
        _tenant_id: &str,
        repo: &str,
        comment_id: u64,
    ) -> Result<Vec<i32>, Error> {
        self.read(|conn| comments::steps(conn, repo, comment_id))
    }

    fn record_pull_head(
        &self,
        tenant_id: &str,
        repo: &str,
        pull_request: u64,
        head: &deploy::PullHead,
    ) -> Result<(), Error> {
        self.write(|conn| comments::record_head(conn, tenant_id, repo, pull_request, head))
    }

    fn pull_heads(
        &self,
        tenant_id: &str,
        repo: &str,
        pull_request: u64,
    ) -> Result<Vec<deploy::PullHead>, Error> {
        self.read(|conn| comments::heads(conn, tenant_id, repo, pull_request))
    }

    fn list_instances(&self, tenant_id: &str) -> Result<Vec<Instance>, Error> {
        self.read(|conn| {
            instances::table
                .filter(instances::tenant_id.eq(tenant_id))
                .order(instances::name.asc())
                .select(InstanceRow::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(InstanceRow::into_domain)
                .collect()
        })
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
