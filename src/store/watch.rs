//! The watch after a successful deployment: the domain's `WatchStore`. One replica at a
//! time holds a deployment's watch under a lease (`watch_owner`, `watch_lease_until`)
//! until `watch_until`; a watch ends when its window passes, when a newer deployment of
//! its instance starts, or when a gate fails (then, in the same transaction, the
//! deployment becomes `rolled_back` and the rollback to the previous release is queued).
//! Ending a watch sets `watch_until` to when it ended, so nothing claims it again.

use std::time::Duration;

use diesel::prelude::*;

use super::rows::{DeploymentRow, to_db};
use super::schema::{deployments, instances};
use super::{DbConn, DieselStore, audit, db_error, locks, outbox, queue};
use crate::deploy::{
    self, AuditEvent, DeployKind, DeployState, Deployment, DeploymentId, Error, Lock, Source,
    TriggeredDeployment, WatchFailure, WatchRollback, WatchStore,
};

/// Who the bot is in the audit trail and as a rollback's initiator.
const BOT: &str = "deploybot";

fn expiry(lease: Duration) -> chrono::NaiveDateTime {
    to_db(
        deploy::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30)),
    )
}

/// Whether a deployment of `d`'s instance other than a dry run has started since `d`
/// started: what runs is no longer `d`'s doing, so `d`'s watch is over. Deployments of an
/// instance start one at a time, so a later start is a newer deployment.
fn superseded(conn: &mut DbConn, d: &Deployment) -> Result<bool, Error> {
    let Some(started) = d.started_at else {
        return Ok(false);
    };
    let newer: i64 = deployments::table
        .filter(deployments::tenant_id.eq(&d.tenant_id))
        .filter(deployments::instance_id.eq(d.instance_id.to_string()))
        .filter(deployments::id.ne(d.id.to_string()))
        .filter(deployments::noop.eq(false))
        .filter(deployments::started_at.gt(to_db(started)))
        .count()
        .get_result(conn)
        .map_err(db_error)?;
    Ok(newer > 0)
}

/// The succeeded deployment `id` of the tenant whose watch `owner` holds, its row locked
/// on PostgreSQL.
fn watched_for_update(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    owner: &str,
) -> Result<Option<Deployment>, Error> {
    let key = id.to_string();
    let query = || {
        deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::id.eq(key.clone()))
            .filter(deployments::state.eq(DeployState::Succeeded.as_str()))
            .filter(deployments::watch_until.is_not_null())
            .filter(deployments::watch_owner.eq(owner))
    };
    let row = match conn {
        DbConn::Pg(c) => query()
            .select(DeploymentRow::as_select())
            .for_update()
            .first(c),
        DbConn::Sqlite(c) => query().select(DeploymentRow::as_select()).first(c),
    }
    .optional()
    .map_err(db_error)?;
    row.map(DeploymentRow::into_domain).transpose()
}

/// Ends `owner`'s watch of deployment `id`: its window closes now and its lease is let go.
fn end(conn: &mut DbConn, tenant: &str, id: DeploymentId, owner: &str) -> Result<(), Error> {
    let now = to_db(deploy::now());
    diesel::update(deployments::table)
        .filter(deployments::tenant_id.eq(tenant))
        .filter(deployments::id.eq(id.to_string()))
        .filter(deployments::watch_owner.eq(owner))
        .filter(deployments::watch_until.gt(now))
        .set(deployments::watch_until.eq(now))
        .execute(conn)
        .map_err(db_error)?;
    release(conn, tenant, id, owner)
}

/// Lets `owner`'s lease on deployment `id`'s watch go.
fn release(conn: &mut DbConn, tenant: &str, id: DeploymentId, owner: &str) -> Result<(), Error> {
    diesel::update(deployments::table)
        .filter(deployments::tenant_id.eq(tenant))
        .filter(deployments::id.eq(id.to_string()))
        .filter(deployments::watch_owner.eq(owner))
        .set((
            deployments::watch_owner.eq(None::<String>),
            deployments::watch_lease_until.eq(None::<chrono::NaiveDateTime>),
        ))
        .execute(conn)
        .map_err(db_error)?;
    Ok(())
}

/// Claims at most `limit` open watches for `owner` (see [`WatchStore::claim_watches`]).
fn claim(
    conn: &mut DbConn,
    owner: &str,
    lease: Duration,
    limit: u32,
) -> Result<Vec<Deployment>, Error> {
    let now = to_db(deploy::now());
    let claimable = || {
        deployments::table
            .filter(deployments::state.eq(DeployState::Succeeded.as_str()))
            .filter(deployments::watch_until.gt(now))
            .filter(
                deployments::watch_owner
                    .is_null()
                    .or(deployments::watch_owner.eq(owner))
                    .or(deployments::watch_lease_until.lt(now)),
            )
    };
    // PostgreSQL: replicas claiming at once skip each other's candidates; the UPDATE below
    // re-checks the lease once it holds the row.
    let rows = match conn {
        DbConn::Pg(c) => claimable()
            .order(deployments::watch_until.asc())
            .limit(i64::from(limit))
            .select(DeploymentRow::as_select())
            .for_update()
            .skip_locked()
            .load(c),
        DbConn::Sqlite(c) => claimable()
            .order(deployments::watch_until.asc())
            .limit(i64::from(limit))
            .select(DeploymentRow::as_select())
            .load(c),
    }
    .map_err(db_error)?;
    let mut claimed = Vec::new();
    for row in rows {
        let d = row.into_domain()?;
        if superseded(conn, &d)? {
            diesel::update(claimable().filter(deployments::id.eq(d.id.to_string())))
                .set((
                    deployments::watch_until.eq(now),
                    deployments::watch_owner.eq(None::<String>),
                    deployments::watch_lease_until.eq(None::<chrono::NaiveDateTime>),
                ))
                .execute(conn)
                .map_err(db_error)?;
            continue;
        }
        let take = diesel::update(claimable().filter(deployments::id.eq(d.id.to_string()))).set((
            deployments::watch_owner.eq(owner),
            deployments::watch_lease_until.eq(expiry(lease)),
        ));
        let taken = match conn {
            DbConn::Pg(c) => take.returning(DeploymentRow::as_select()).get_result(c),
            DbConn::Sqlite(c) => take.returning(DeploymentRow::as_select()).get_result(c),
        }
        .optional()
        .map_err(db_error)?;
        if let Some(taken) = taken {
            claimed.push(taken.into_domain()?);
        }
    }
    Ok(claimed)
}

/// Whether a watch may be claimable by `owner` now.
fn claimable_exists(conn: &mut DbConn, owner: &str) -> Result<bool, Error> {
    let now = to_db(deploy::now());
    let found: Option<String> = deployments::table
        .filter(deployments::state.eq(DeployState::Succeeded.as_str()))
        .filter(deployments::watch_until.gt(now))
        .filter(
            deployments::watch_owner
                .is_null()
                .or(deployments::watch_owner.eq(owner))
                .or(deployments::watch_lease_until.lt(now)),
        )
        .select(deployments::id)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    Ok(found.is_some())
}

/// Extends `owner`'s lease (see [`WatchStore::renew_watch`]).
fn renew(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    owner: &str,
    lease: Duration,
) -> Result<bool, Error> {
    let Some(d) = watched_for_update(conn, tenant, id, owner)? else {
        return Ok(false);
    };
    if d.watch_until.is_none_or(|until| until <= deploy::now()) {
        return Ok(false);
    }
    if superseded(conn, &d)? {
        end(conn, tenant, id, owner)?;
        return Ok(false);
    }
    let renewed = diesel::update(deployments::table)
        .filter(deployments::tenant_id.eq(tenant))
        .filter(deployments::id.eq(id.to_string()))
        .filter(deployments::watch_owner.eq(owner))
        .set(deployments::watch_lease_until.eq(expiry(lease)))
        .execute(conn)
        .map_err(db_error)?;
    Ok(renewed == 1)
}

/// The instance of deployment `id`, its row locked on PostgreSQL first, as every insert
/// of a deployment takes it first.
fn lock_instance_of(conn: &mut DbConn, tenant: &str, id: DeploymentId) -> Result<(), Error> {
    let instance: Option<String> = deployments::table
        .filter(deployments::tenant_id.eq(tenant))
        .filter(deployments::id.eq(id.to_string()))
        .select(deployments::instance_id)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    if let (DbConn::Pg(c), Some(instance)) = (conn, instance) {
        instances::table
            .filter(instances::tenant_id.eq(tenant))
            .filter(instances::id.eq(instance))
            .select(instances::id)
            .for_update()
            .first::<String>(c)
            .optional()
            .map_err(db_error)?;
    }
    Ok(())
}

/// Moves the watched deployment `d` to `rolled_back` with `error`, its watch ended, and
/// reports its final state.
fn roll_back_watched(
    conn: &mut DbConn,
    d: &Deployment,
    owner: &str,
    error: &str,
) -> Result<Deployment, Error> {
    let now = to_db(deploy::now());
    let update = diesel::update(deployments::table)
        .filter(deployments::tenant_id.eq(&d.tenant_id))
        .filter(deployments::id.eq(d.id.to_string()))
        .filter(deployments::state.eq(DeployState::Succeeded.as_str()))
        .filter(deployments::watch_owner.eq(owner))
        .set((
            deployments::state.eq(DeployState::RolledBack.as_str()),
            deployments::error.eq(error),
            deployments::progress_message.eq(error),
            deployments::updated_at.eq(now),
            deployments::watch_until.eq(d.watch_until.map(to_db).map(|u| u.min(now))),
            deployments::watch_owner.eq(None::<String>),
            deployments::watch_lease_until.eq(None::<chrono::NaiveDateTime>),
        ));
    let row = match conn {
        DbConn::Pg(c) => update.returning(DeploymentRow::as_select()).get_result(c),
        DbConn::Sqlite(c) => update.returning(DeploymentRow::as_select()).get_result(c),
    }
    .map_err(db_error)?;
    let watched = row.into_domain()?;
    outbox::report_final(conn, &watched)?;
    Ok(watched)
}

/// The automatic rollback of `watched` to `previous`: queued as it is, held by nothing.
fn queue_rollback(
    conn: &mut DbConn,
    watched: &Deployment,
    previous: &deploy::Release,
    reason: &str,
) -> Result<Deployment, Error> {
    let mut rollback = Deployment::pending(previous, &watched.strategy, BOT);
    rollback.kind = DeployKind::Rollback;
    rollback.source = Source {
        trigger: format!(
            "automatic rollback: a gate failed while {} was watched: {reason}",
            watched.id
        ),
        installation_id: watched.source.installation_id,
        ..Source::default()
    };
    let triggered = TriggeredDeployment {
        release: previous.clone(),
        deployment: rollback,
        trigger_key: None,
        supersede: false,
        new_release: false,
        waits_for_locks: false,
        lock_holder: None,
        audit: Vec::new(),
    };
    let rollback = super::deployments::insert_triggered_in(conn, &triggered)?;
    let event = AuditEvent::new(
        &watched.tenant_id,
        BOT,
        "rollback.automatic",
        format!(
            "deployment {} failed a gate during its watch and the previous release v{} is being restored by {}: {reason}",
            watched.id, previous.version, rollback.id
        ),
    );
    audit::record_for(conn, event, watched)?;
    Ok(rollback)
}

/// Takes `failure`'s lock for the rolled-back deployment unless a lock covers its
/// instance; returns it when taken.
fn lock_after(
    conn: &mut DbConn,
    watched: &Deployment,
    failure: &WatchFailure<'_>,
) -> Result<Option<Lock>, Error> {
    let Some(make) = failure.lock else {
        return Ok(None);
    };
    if locks::covering_as_written(conn, &watched.tenant_id, watched.instance_id)?.is_some() {
        return Ok(None);
    }
    match locks::acquire(conn, &make(watched)) {
        Ok(taken) => {
            audit::record(conn, &(failure.lock_audit)(&taken))?;
            Ok(Some(taken))
        }
        // Someone else's lock on the repository holds pushes already.
        Err(Error::Locked(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// See [`WatchStore::watch_failed`].
fn failed(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    owner: &str,
    failure: &WatchFailure<'_>,
) -> Result<Option<WatchRollback>, Error> {
    lock_instance_of(conn, tenant, id)?;
    let Some(d) = watched_for_update(conn, tenant, id, owner)? else {
        return Ok(None);
    };
    if superseded(conn, &d)? {
        end(conn, tenant, id, owner)?;
        return Ok(None);
    }
    let previous = queue::previous_release(conn, tenant, d.instance_id)?
        .filter(|p| p.id != d.release_id)
        .ok_or_else(|| {
            Error::Conflict(format!(
                "deployment {id} failed a gate during its watch ({}), but its instance has no previous release to roll back to",
                failure.reason
            ))
        })?;
    let error = format!("{}; rolling back to v{}", failure.reason, previous.version);
    let watched = roll_back_watched(conn, &d, owner, &error)?;
    let rollback = queue_rollback(conn, &watched, &previous, failure.reason)?;
    let lock = lock_after(conn, &watched, failure)?;
    Ok(Some(WatchRollback {
        watched,
        rollback,
        lock,
    }))
}

impl WatchStore for DieselStore {
    fn claim_watches(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Deployment>, Error> {
        // Most looks find nothing: they read, and write only when there is a watch to take.
        if !self.read(|conn| claimable_exists(conn, owner))? {
            return Ok(Vec::new());
        }
        self.write(|conn| claim(conn, owner, lease, limit))
    }

    fn renew_watch(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, Error> {
        self.write(|conn| renew(conn, tenant_id, id, owner, lease))
    }

    fn release_watch(&self, tenant_id: &str, id: DeploymentId, owner: &str) -> Result<(), Error> {
        self.write(|conn| release(conn, tenant_id, id, owner))
    }

    fn end_watch(&self, tenant_id: &str, id: DeploymentId, owner: &str) -> Result<(), Error> {
        self.write(|conn| end(conn, tenant_id, id, owner))
    }

    fn watch_failed(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        owner: &str,
        failure: &WatchFailure<'_>,
    ) -> Result<Option<WatchRollback>, Error> {
        self.write(|conn| failed(conn, tenant_id, id, owner, failure))
    }
}
