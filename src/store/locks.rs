//! Locks on instances and repositories: the domain's `LockStore`. One row per (tenant,
//! target); a row whose `expires_at` has passed is not held, whether or not it is gone yet.
//! Taking a lock is decided by the primary key: of two takers at once, one inserts or
//! updates the row and the other then finds it held.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::rows::{from_db, to_db};
use super::schema::{instances, locks};
use super::{DbConn, DieselStore, db_error};
use crate::deploy::{self, AuditEvent, Error, InstanceId, Lock, LockStore, LockTarget};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = locks, treat_none_as_default_value = false)]
struct LockRow {
    tenant_id: String,
    target: String,
    repo: String,
    instance_id: Option<String>,
    holder: String,
    reason: String,
    pull_request: Option<i64>,
    created_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
}

impl LockRow {
    fn from_domain(lock: &Lock) -> Result<Self, Error> {
        let instance_id = match &lock.target {
            LockTarget::Instance { instance_id } => Some(instance_id.to_string()),
            LockTarget::Repo { .. } => None,
        };
        let pull_request = lock
            .pull_request
            .map(i64::try_from)
            .transpose()
            .map_err(|_| Error::InvalidRequest("the pull request number is too large".into()))?;
        Ok(Self {
            tenant_id: lock.tenant_id.clone(),
            target: lock.target.key(),
            repo: lock.repo.to_ascii_lowercase(),
            instance_id,
            holder: lock.holder.clone(),
            reason: lock.reason.clone(),
            pull_request,
            created_at: to_db(lock.created_at),
            expires_at: lock.expires_at.map(to_db),
        })
    }

    fn into_domain(self) -> Result<Lock, Error> {
        let target = LockTarget::from_key(&self.target).ok_or_else(|| {
            Error::Internal(format!("stored lock target is corrupt: {}", self.target))
        })?;
        Ok(Lock {
            tenant_id: self.tenant_id,
            target,
            repo: self.repo,
            holder: self.holder,
            reason: self.reason,
            pull_request: self.pull_request.and_then(|n| u64::try_from(n).ok()),
            created_at: from_db(self.created_at),
            expires_at: self.expires_at.map(from_db),
        })
    }

    fn live_at(&self, now: NaiveDateTime) -> bool {
        self.expires_at.is_none_or(|until| until > now)
    }
}

/// The stored row of `target`, live or not; on PostgreSQL locked for this transaction, so
/// a concurrent taker waits for it and then reads what this one wrote.
fn stored_row(conn: &mut DbConn, tenant: &str, target: &str) -> Result<Option<LockRow>, Error> {
    let query = || {
        locks::table
            .filter(locks::tenant_id.eq(tenant))
            .filter(locks::target.eq(target))
    };
    match conn {
        DbConn::Pg(c) => query()
            .select(LockRow::as_select())
            .for_update()
            .first(c)
            .optional(),
        DbConn::Sqlite(c) => query().select(LockRow::as_select()).first(c).optional(),
    }
    .map_err(db_error)
}

/// On PostgreSQL, serialises the takers of locks on one repository for this transaction,
/// so an instance's lock and its repository's are never taken at once by two holders.
/// SQLite's writers are serialised already.
fn serialise_repo(conn: &mut DbConn, tenant: &str, repo: &str) -> Result<(), Error> {
    if let DbConn::Pg(c) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind::<diesel::sql_types::Text, _>(format!("deploybot-locks:{tenant}:{repo}"))
            .execute(c)
            .map_err(db_error)?;
    }
    Ok(())
}

/// A live lock another holder has on the same repository at the other level: the
/// repository's lock over an instance's, or an instance's lock under a repository's. One
/// holder at a time, so a lock never lets through what another's holds.
fn held_across(
    conn: &mut DbConn,
    row: &LockRow,
    now: NaiveDateTime,
) -> Result<Option<LockRow>, Error> {
    let repo_key = LockTarget::Repo {
        repo: row.repo.clone(),
    }
    .key();
    let others = locks::table
        .filter(locks::tenant_id.eq(&row.tenant_id))
        .filter(locks::repo.eq(&row.repo))
        .filter(locks::target.ne(&row.target))
        .filter(locks::holder.ne(&row.holder))
        .filter(locks::expires_at.is_null().or(locks::expires_at.gt(now)))
        .select(LockRow::as_select());
    let found = if row.target == repo_key {
        others.order(locks::created_at).first(conn)
    } else {
        others.filter(locks::target.eq(&repo_key)).first(conn)
    };
    found.optional().map_err(db_error)
}

pub(super) fn acquire(conn: &mut DbConn, lock: &Lock) -> Result<Lock, Error> {
    let mut row = LockRow::from_domain(lock)?;
    let now = to_db(deploy::now());
    serialise_repo(conn, &row.tenant_id, &row.repo)?;
    if let Some(other) = held_across(conn, &row, now)? {
        return Err(Error::Locked(other.into_domain()?.describe()));
    }
    match stored_row(conn, &row.tenant_id, &row.target)? {
        Some(held) if held.live_at(now) && held.holder != row.holder => {
            Err(Error::Locked(held.into_domain()?.describe()))
        }
        Some(held) => {
            // Renewed by its holder (keeping when it was taken), or an expired lock replaced.
            if held.live_at(now) {
                row.created_at = held.created_at;
                row.holder = held.holder;
            }
            diesel::update(
                locks::table
                    .filter(locks::tenant_id.eq(&row.tenant_id))
                    .filter(locks::target.eq(&row.target)),
            )
            .set((
                locks::repo.eq(&row.repo),
                locks::instance_id.eq(&row.instance_id),
                locks::holder.eq(&row.holder),
                locks::reason.eq(&row.reason),
                locks::pull_request.eq(row.pull_request),
                locks::created_at.eq(row.created_at),
                locks::expires_at.eq(row.expires_at),
            ))
            .execute(conn)
            .map_err(db_error)?;
            row.into_domain()
        }
        None => {
            diesel::insert_into(locks::table)
                .values(&row)
                .execute(conn)
                .map_err(db_error)?;
            row.into_domain()
        }
    }
}

fn release(conn: &mut DbConn, tenant: &str, target: &LockTarget) -> Result<Option<Lock>, Error> {
    let now = to_db(deploy::now());
    let delete = diesel::delete(
        locks::table
            .filter(locks::tenant_id.eq(tenant))
            .filter(locks::target.eq(target.key())),
    );
    let removed: Option<LockRow> = match conn {
        DbConn::Pg(c) => delete.returning(LockRow::as_select()).get_result(c),
        DbConn::Sqlite(c) => delete.returning(LockRow::as_select()).get_result(c),
    }
    .optional()
    .map_err(db_error)?;
    removed
        .filter(|row| row.live_at(now))
        .map(LockRow::into_domain)
        .transpose()
}

/// The live locks of the tenant on `targets`.
fn live_on(conn: &mut DbConn, tenant: &str, targets: &[String]) -> Result<Vec<LockRow>, Error> {
    let now = to_db(deploy::now());
    locks::table
        .filter(locks::tenant_id.eq(tenant))
        .filter(locks::target.eq_any(targets))
        .filter(locks::expires_at.is_null().or(locks::expires_at.gt(now)))
        .select(LockRow::as_select())
        .load(conn)
        .map_err(db_error)
}

/// The repository of the tenant's instance, as locks store it (lower-cased).
fn instance_repo(conn: &mut DbConn, tenant: &str, instance: InstanceId) -> Result<String, Error> {
    let repo: Option<String> = instances::table
        .filter(instances::tenant_id.eq(tenant))
        .filter(instances::id.eq(instance.to_string()))
        .select(instances::repo)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    repo.map(|repo| repo.to_ascii_lowercase())
        .ok_or_else(|| Error::not_found("instance", instance))
}

/// [`covering`] for a writer that acts on what it reads: on PostgreSQL it first waits for
/// whoever is taking a lock on the instance's repository, so a lock committed just before
/// is seen and none is taken until this transaction ends.
pub(super) fn covering_as_written(
    conn: &mut DbConn,
    tenant: &str,
    instance: InstanceId,
) -> Result<Option<Lock>, Error> {
    let repo = instance_repo(conn, tenant, instance)?;
    serialise_repo(conn, tenant, &repo)?;
    covering(conn, tenant, instance)
}

/// The live lock covering the instance: its own, else its repository's.
pub(super) fn covering(
    conn: &mut DbConn,
    tenant: &str,
    instance: InstanceId,
) -> Result<Option<Lock>, Error> {
    let repo = instance_repo(conn, tenant, instance)?;
    let own = LockTarget::Instance {
        instance_id: instance,
    }
    .key();
    let repo = LockTarget::Repo { repo }.key();
    // Both are held by one holder (taking refuses otherwise); the instance's own lock,
    // nearer, is the one shown. Were they ever held by two, the repository's would win.
    let mut rows = live_on(conn, tenant, &[own.clone(), repo])?;
    let one_holder = rows.windows(2).all(|pair| pair[0].holder == pair[1].holder);
    rows.sort_by_key(|row| (row.target != own) == one_holder);
    rows.into_iter()
        .next()
        .map(LockRow::into_domain)
        .transpose()
}

fn expire(conn: &mut DbConn, now: DateTime<Utc>) -> Result<Vec<Lock>, Error> {
    let delete = diesel::delete(locks::table.filter(locks::expires_at.le(to_db(now))));
    let mut rows: Vec<LockRow> = match conn {
        DbConn::Pg(c) => delete.returning(LockRow::as_select()).get_results(c),
        DbConn::Sqlite(c) => delete.returning(LockRow::as_select()).get_results(c),
    }
    .map_err(db_error)?;
    rows.sort_by(|a, b| (&a.tenant_id, a.expires_at).cmp(&(&b.tenant_id, b.expires_at)));
    rows.into_iter().map(LockRow::into_domain).collect()
}

fn release_pull(
    conn: &mut DbConn,
    tenant: &str,
    repo: &str,
    pull_request: u64,
) -> Result<Vec<Lock>, Error> {
    let Ok(pull_request) = i64::try_from(pull_request) else {
        return Ok(Vec::new());
    };
    let now = to_db(deploy::now());
    let delete = diesel::delete(
        locks::table
            .filter(locks::tenant_id.eq(tenant))
            .filter(locks::repo.eq(repo.to_ascii_lowercase()))
            .filter(locks::pull_request.eq(pull_request)),
    );
    let rows: Vec<LockRow> = match conn {
        DbConn::Pg(c) => delete.returning(LockRow::as_select()).get_results(c),
        DbConn::Sqlite(c) => delete.returning(LockRow::as_select()).get_results(c),
    }
    .map_err(db_error)?;
    let mut live: Vec<LockRow> = rows.into_iter().filter(|row| row.live_at(now)).collect();
    live.sort_by(|a, b| (a.created_at, &a.target).cmp(&(b.created_at, &b.target)));
    live.into_iter().map(LockRow::into_domain).collect()
}

impl LockStore for DieselStore {
    fn acquire_lock(&self, lock: &Lock) -> Result<Lock, Error> {
        // Two first takers at once (no row yet): the second insert fails on the primary
        // key after the first commits, and the next attempt finds the first's lock (or,
        // released meanwhile, takes it).
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.write(|conn| acquire(conn, lock)) {
                Err(Error::Conflict(_)) if attempt < 3 => continue,
                other => return other,
            }
        }
    }

    fn release_lock(&self, tenant_id: &str, target: &LockTarget) -> Result<Option<Lock>, Error> {
        self.write(|conn| release(conn, tenant_id, target))
    }

    fn acquire_lock_audited(
        &self,
        lock: &Lock,
        audit: &(dyn Fn(&Lock) -> AuditEvent + Sync),
    ) -> Result<Lock, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let taken = self.write(|conn| {
                let taken = acquire(conn, lock)?;
                super::audit::record(conn, &audit(&taken))?;
                Ok(taken)
            });
            match taken {
                Err(Error::Conflict(_)) if attempt < 3 => continue,
                other => return other,
            }
        }
    }

    fn release_lock_audited(
        &self,
        tenant_id: &str,
        target: &LockTarget,
        audit: &(dyn Fn(&Lock) -> AuditEvent + Sync),
    ) -> Result<Option<Lock>, Error> {
        self.write(|conn| {
            let released = release(conn, tenant_id, target)?;
            if let Some(lock) = &released {
                super::audit::record(conn, &audit(lock))?;
            }
            Ok(released)
        })
    }

    fn get_lock(&self, tenant_id: &str, target: &LockTarget) -> Result<Option<Lock>, Error> {
        self.read(|conn| {
            live_on(conn, tenant_id, &[target.key()])?
                .into_iter()
                .next()
                .map(LockRow::into_domain)
                .transpose()
        })
    }

    fn lock_covering(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Option<Lock>, Error> {
        self.read(|conn| covering(conn, tenant_id, instance_id))
    }

    fn list_locks(&self, tenant_id: &str) -> Result<Vec<Lock>, Error> {
        let now = to_db(deploy::now());
        self.read(|conn| {
            locks::table
                .filter(locks::tenant_id.eq(tenant_id))
                .filter(locks::expires_at.is_null().or(locks::expires_at.gt(now)))
                .order((locks::created_at.asc(), locks::target.asc()))
                .select(LockRow::as_select())
                .load(conn)
                .map_err(db_error)?
                .into_iter()
                .map(LockRow::into_domain)
                .collect()
        })
    }

    fn expire_locks(
        &self,
        now: DateTime<Utc>,
        audit: &(dyn Fn(&Lock) -> AuditEvent + Sync),
    ) -> Result<Vec<Lock>, Error> {
        // Asked every second by every worker: the write (SQLite's one writer) only when
        // a lock has expired.
        let due = to_db(now);
        let any: Option<String> = self.read(|conn| {
            locks::table
                .filter(locks::expires_at.le(due))
                .select(locks::target)
                .first(conn)
                .optional()
                .map_err(db_error)
        })?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        self.write(|conn| {
            let expired = expire(conn, now)?;
            for lock in &expired {
                super::audit::record(conn, &audit(lock))?;
            }
            Ok(expired)
        })
    }

    fn release_pull_locks(
        &self,
        tenant_id: &str,
        repo: &str,
        pull_request: u64,
        audit: &(dyn Fn(&Lock) -> AuditEvent + Sync),
    ) -> Result<Vec<Lock>, Error> {
        self.write(|conn| {
            let released = release_pull(conn, tenant_id, repo, pull_request)?;
            for lock in &released {
                super::audit::record(conn, &audit(lock))?;
            }
            Ok(released)
        })
    }
}
