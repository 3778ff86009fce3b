//! The durable queue, leases and cancellation: the domain's `QueueStore`. The claim is the one statement that
//! differs by backend: PostgreSQL adds `FOR UPDATE SKIP LOCKED` so that concurrent
//! workers skip each other's candidates; SQLite has a single writer (`BEGIN IMMEDIATE`).

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::outbox::{
    report_final, report_pending, report_progress, report_reply_refresh, report_state,
};
use super::rows::{DeploymentRow, ReleaseRow, from_db, to_db};
use super::schema::{deployments, instances, releases};
use super::{DbConn, DieselStore, db_error};
use crate::deploy::{
    self, AuditEvent, DeployKind, DeployState, Deployment, DeploymentId, Error, InstanceId,
    InvalidTransition, Lease, QueueStore, Release, WaitKind, WaitingFor,
};

pub use crate::deploy::WORKER_LOST;

/// The newest format of a queued deployment this version reads (the `d.format <= 1` in
/// `CANDIDATE`). An instance whose next deployment was written in a newer format is left to
/// a newer replica: during a rolling upgrade, the older replica neither runs nor fails it,
/// and the deployments queued after it wait their turn.
pub const QUEUE_FORMAT: i32 = 1;

/// The next deployment to run: the oldest among the instances' queue heads (each
/// instance's oldest pending deployment that waits for nothing), of instances with
/// nothing running. It walks the
/// instances, not the queue, and finds each head through `deployments_instance_pending`:
/// its cost grows neither with a long queue behind a running deployment nor with the
/// instance's history.
pub(super) const CANDIDATE: &str = "SELECT d.id FROM instances i \
    JOIN deployments d ON d.id = (SELECT h.id FROM deployments h \
        WHERE h.tenant_id = i.tenant_id AND h.instance_id = i.id AND h.state = 'pending' \
        AND h.waiting_for IS NULL \
        ORDER BY h.created_at, h.id LIMIT 1) \
    WHERE d.format <= 1 AND NOT EXISTS (SELECT 1 FROM deployments r WHERE r.tenant_id = i.tenant_id \
        AND r.instance_id = i.id AND r.state = 'running') \
    ORDER BY d.created_at, d.id LIMIT 1";

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

fn lease_lost(id: impl std::fmt::Display) -> Error {
    Error::Conflict(format!(
        "the lease on deployment {id} was lost: another worker recovered it"
    ))
}

fn expiry(lease: Duration) -> chrono::NaiveDateTime {
    to_db(
        deploy::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30)),
    )
}

fn load(conn: &mut DbConn, id: &str) -> Result<Deployment, Error> {
    deployments::table
        .filter(deployments::id.eq(id))
        .select(DeploymentRow::as_select())
        .first(conn)
        .map_err(db_error)?
        .into_domain()
}

pub(super) fn claim_next(
    conn: &mut DbConn,
    owner: &str,
    lease: Duration,
) -> Result<Option<Deployment>, Error> {
    let candidate: Option<IdRow> = match conn {
        DbConn::Pg(c) => diesel::sql_query(format!("{CANDIDATE} FOR UPDATE OF d SKIP LOCKED"))
            .get_result(c)
            .optional(),
        DbConn::Sqlite(c) => diesel::sql_query(CANDIDATE).get_result(c).optional(),
    }
    .map_err(db_error)?;
    let Some(IdRow { id }) = candidate else {
        return Ok(None);
    };
    let at = to_db(deploy::now());
    let claim = diesel::update(
        deployments::table
            .filter(deployments::id.eq(&id))
            .filter(deployments::state.eq(DeployState::Pending.as_str())),
    )
    .set((
        deployments::state.eq(DeployState::Running.as_str()),
        deployments::started_at.eq(at),
        deployments::updated_at.eq(at),
        deployments::lease_owner.eq(owner),
        deployments::lease_expires_at.eq(expiry(lease)),
    ));
    let claimed = match conn {
        DbConn::Pg(c) => claim.returning(DeploymentRow::as_select()).get_result(c),
        DbConn::Sqlite(c) => claim.returning(DeploymentRow::as_select()).get_result(c),
    }
    .optional()
    .map_err(db_error)?;
    let Some(claimed) = claimed else {
        return Ok(None);
    };
    let deployment = claimed.into_domain()?;
    report_state(conn, &deployment, DeployState::Running, "started")?;
    report_reply_refresh(conn, &deployment)?;
    Ok(Some(deployment))
}

pub(super) fn renew_lease(
    conn: &mut DbConn,
    id: DeploymentId,
    owner: &str,
    lease: Duration,
) -> Result<Lease, Error> {
    let renewed = diesel::update(
        deployments::table
            .filter(deployments::id.eq(id.to_string()))
            .filter(deployments::state.eq(DeployState::Running.as_str()))
            .filter(deployments::lease_owner.eq(owner)),
    )
    .set(deployments::lease_expires_at.eq(expiry(lease)))
    .execute(conn)
    .map_err(db_error)?;
    if renewed == 0 {
        return Err(lease_lost(id));
    }
    let cancel_requested = deployments::table
        .filter(deployments::id.eq(id.to_string()))
        .select(deployments::cancel_requested)
        .first(conn)
        .map_err(db_error)?;
    Ok(Lease { cancel_requested })
}

pub(super) fn record_progress(conn: &mut DbConn, d: &Deployment, owner: &str) -> Result<(), Error> {
    let updated = diesel::update(
        deployments::table
            .filter(deployments::tenant_id.eq(&d.tenant_id))
            .filter(deployments::id.eq(d.id.to_string()))
            .filter(deployments::state.eq(DeployState::Running.as_str()))
            .filter(deployments::lease_owner.eq(owner)),
    )
    .set((
        deployments::progress_phase.eq(&d.progress.phase),
        deployments::progress_percent.eq(d.progress.percent),
        deployments::progress_message.eq(&d.progress.message),
        deployments::updated_at.eq(to_db(deploy::now())),
    ))
    .execute(conn)
    .map_err(db_error)?;
    if updated == 0 {
        return Err(lease_lost(d.id));
    }
    report_progress(conn, d)
}

fn active_release_id(
    conn: &mut DbConn,
    tenant: &str,
    instance: &str,
) -> Result<Option<String>, Error> {
    releases::table
        .filter(releases::tenant_id.eq(tenant))
        .filter(releases::instance_id.eq(instance))
        .filter(releases::active.eq(true))
        .select(releases::id)
        .first(conn)
        .optional()
        .map_err(db_error)
}

pub(super) fn activate(
    conn: &mut DbConn,
    tenant: &str,
    instance: &str,
    release: &str,
) -> Result<(), Error> {
    let at = to_db(deploy::now());
    diesel::update(
        releases::table
            .filter(releases::tenant_id.eq(tenant))
            .filter(releases::instance_id.eq(instance))
            .filter(releases::active.eq(true)),
    )
    .set(releases::active.eq(false))
    .execute(conn)
    .map_err(db_error)?;
    diesel::update(
        releases::table
            .filter(releases::tenant_id.eq(tenant))
            .filter(releases::id.eq(release)),
    )
    .set((
        releases::active.eq(true),
        releases::last_active_at.eq(at),
        releases::updated_at.eq(at),
    ))
    .execute(conn)
    .map_err(db_error)?;
    Ok(())
}

/// A rollback that succeeded marks the deployment that put the replaced release in place
/// as rolled back by it.
fn mark_rolled_back(
    conn: &mut DbConn,
    rollback: &Deployment,
    replaced_release: &str,
    at: chrono::NaiveDateTime,
) -> Result<(), Error> {
    let replaced: Option<String> = deployments::table
        .filter(deployments::tenant_id.eq(&rollback.tenant_id))
        .filter(deployments::instance_id.eq(rollback.instance_id.to_string()))
        .filter(deployments::release_id.eq(replaced_release))
        .filter(deployments::state.eq(DeployState::Succeeded.as_str()))
        .filter(deployments::id.ne(rollback.id.to_string()))
        .order((deployments::finished_at.desc(), deployments::id.desc()))
        .select(deployments::id)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    if let Some(replaced) = replaced {
        diesel::update(deployments::table.filter(deployments::id.eq(&replaced)))
            .set((
                deployments::state.eq(DeployState::RolledBack.as_str()),
                deployments::error.eq(format!("rolled back by {}", rollback.id)),
                deployments::updated_at.eq(at),
            ))
            .execute(conn)
            .map_err(db_error)?;
    }
    Ok(())
}

pub(super) fn finish(conn: &mut DbConn, d: &Deployment, owner: &str) -> Result<(), Error> {
    let id = d.id.to_string();
    DeployState::Running.check_transition(d.state)?;
    let at = to_db(deploy::now());
    // Ours only while still running under our lease: recovery may have settled it (on
    // PostgreSQL the UPDATE re-checks these conditions after taking the row lock).
    let settle = diesel::update(
        deployments::table
            .filter(deployments::tenant_id.eq(&d.tenant_id))
            .filter(deployments::id.eq(&id))
            .filter(deployments::state.eq(DeployState::Running.as_str()))
            .filter(deployments::lease_owner.eq(owner)),
    )
    .set((
        deployments::state.eq(d.state.as_str()),
        deployments::error.eq(&d.error),
        deployments::provider_ref.eq(&d.provider_ref),
        deployments::progress_phase.eq(&d.progress.phase),
        deployments::progress_percent.eq(d.progress.percent),
        deployments::progress_message.eq(&d.progress.message),
        deployments::finished_at.eq(d.finished_at.map(to_db).unwrap_or(at)),
        deployments::updated_at.eq(at),
        deployments::gate_readings.eq(super::rows::readings_to_db(&d.gates)?),
        deployments::watch_until.eq(d.watch_until.map(to_db)),
        deployments::lease_owner.eq(None::<String>),
        deployments::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
    ));
    let settled = match &mut *conn {
        DbConn::Pg(c) => settle.returning(DeploymentRow::as_select()).get_result(c),
        DbConn::Sqlite(c) => settle.returning(DeploymentRow::as_select()).get_result(c),
    }
    .optional()
    .map_err(db_error)?;
    let Some(finished) = settled else {
        // Not settled: gone, or no longer running under our lease.
        let exists = deployments::table
            .filter(deployments::tenant_id.eq(&d.tenant_id))
            .filter(deployments::id.eq(&id))
            .select(deployments::id)
            .first::<String>(conn)
            .optional()
            .map_err(db_error)?;
        return Err(match exists {
            None => Error::not_found("deployment", d.id),
            Some(_) => lease_lost(d.id),
        });
    };
    let finished = finished.into_domain()?;
    report_final(conn, &finished)?;
    if finished.state == DeployState::RolledBack && !finished.noop {
        // The worker restored the previous release by itself: in the audit trail with it.
        let event = deploy::AuditEvent::new(
            &finished.tenant_id,
            "deploybot",
            "rollback.automatic",
            format!(
                "deployment {} failed and the previous release was restored: {}",
                finished.id, finished.error
            ),
        );
        super::audit::record_for(conn, event, &finished)?;
    }
    // A dry run changes nothing: its release never becomes active, and it replaces nothing.
    if finished.state != DeployState::Succeeded || finished.noop {
        return Ok(());
    }
    let instance = d.instance_id.to_string();
    let previous = active_release_id(conn, &d.tenant_id, &instance)?;
    if d.kind == DeployKind::Rollback
        && let Some(previous) = previous.filter(|p| *p != d.release_id.to_string())
    {
        mark_rolled_back(conn, d, &previous, at)?;
    }
    activate(conn, &d.tenant_id, &instance, &d.release_id.to_string())
}

/// Running deployments whose lease has expired.
pub(super) fn expired_leases(conn: &mut DbConn) -> Result<Vec<deploy::ExpiredLease>, Error> {
    let now = to_db(deploy::now());
    let rows: Vec<(String, Option<String>, Option<chrono::NaiveDateTime>)> = deployments::table
        .filter(deployments::state.eq(DeployState::Running.as_str()))
        .filter(deployments::lease_expires_at.lt(now))
        .select((
            deployments::id,
            deployments::lease_owner,
            deployments::lease_expires_at,
        ))
        .load(conn)
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(id, owner, expired_at)| {
            Ok(deploy::ExpiredLease {
                id: id.parse().map_err(|_| {
                    Error::Internal(format!("a stored deployment id is invalid: {id}"))
                })?,
                owner: owner.unwrap_or_default(),
                expired_at: from_db(expired_at.unwrap_or(now)),
            })
        })
        .collect()
}

/// Marks failed those of `ids` that are still running with an expired lease.
pub(super) fn recover_expired(
    conn: &mut DbConn,
    ids: &[DeploymentId],
) -> Result<Vec<Deployment>, Error> {
    let now = to_db(deploy::now());
    let expired: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let mut recovered = Vec::with_capacity(expired.len());
    for id in expired {
        // Another process's recovery (or the late worker itself) may have settled it
        // since the read above: report only what this call changed.
        let updated = diesel::update(
            deployments::table
                .filter(deployments::id.eq(&id))
                .filter(deployments::state.eq(DeployState::Running.as_str()))
                .filter(deployments::lease_expires_at.lt(now)),
        )
        .set((
            deployments::state.eq(DeployState::Failed.as_str()),
            deployments::error.eq(WORKER_LOST),
            deployments::finished_at.eq(now),
            deployments::updated_at.eq(now),
            deployments::lease_owner.eq(None::<String>),
            deployments::lease_expires_at.eq(None::<chrono::NaiveDateTime>),
        ))
        .execute(conn)
        .map_err(db_error)?;
        if updated == 0 {
            continue;
        }
        let deployment = load(conn, &id)?;
        report_final(conn, &deployment)?;
        recovered.push(deployment);
    }
    Ok(recovered)
}

pub(super) fn request_cancel(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    by: &str,
) -> Result<Deployment, Error> {
    let key = id.to_string();
    let target = || {
        deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::id.eq(&key))
    };
    // Each change is conditional on the state just read. On PostgreSQL (read committed) a
    // worker's claim or finish, or another cancel, can commit in between: the change then
    // touches no row, and the state is read again. Only the call that changed the row
    // reports it, so a lost race can neither report a running deployment as cancelled
    // nor report one cancellation twice. A state changes at most twice
    // (pending → running → final), so three rounds always decide.
    for _ in 0..3 {
        let stored: Option<String> = target()
            .select(deployments::state)
            .first(conn)
            .optional()
            .map_err(db_error)?;
        let state: DeployState = stored
            .ok_or_else(|| Error::not_found("deployment", id))?
            .parse()
            .map_err(Error::Internal)?;
        let at = to_db(deploy::now());
        let changed = match state {
            DeployState::Pending => {
                let changed = diesel::update(
                    target().filter(deployments::state.eq(DeployState::Pending.as_str())),
                )
                .set((
                    deployments::state.eq(DeployState::Cancelled.as_str()),
                    deployments::error.eq(format!("cancelled by {by}")),
                    deployments::finished_at.eq(at),
                    deployments::updated_at.eq(at),
                ))
                .execute(conn)
                .map_err(db_error)?;
                if changed == 1 {
                    let cancelled = load(conn, &key)?;
                    report_final(conn, &cancelled)?;
                    return Ok(cancelled);
                }
                changed
            }
            DeployState::Running => diesel::update(
                target().filter(deployments::state.eq(DeployState::Running.as_str())),
            )
            .set((
                deployments::cancel_requested.eq(true),
                deployments::updated_at.eq(at),
            ))
            .execute(conn)
            .map_err(db_error)?,
            other => {
                return Err(Error::InvalidState(InvalidTransition {
                    from: other,
                    to: DeployState::Cancelled,
                }));
            }
        };
        if changed == 1 {
            return load(conn, &key);
        }
    }
    Err(Error::Unavailable(format!(
        "deployment {id} kept changing state while it was being cancelled; try again"
    )))
}

/// Cancels the instance's queued deployments that are older (in queue order: created_at,
/// then id) than `newer`. Two deployments can commit in the other order than they were
/// made (two servers, or two writers waiting for SQLite's lock): when a newer one is
/// already queued, `newer` itself is the one superseded. A deployment that waits (for a
/// lock or a freeze) supersedes only others that wait: a push held by a lock never
/// cancels what the lock's holder queued.
pub(super) fn supersede(conn: &mut DbConn, newer: &Deployment) -> Result<Vec<DeploymentId>, Error> {
    let instance = newer.instance_id.to_string();
    let newer_id = newer.id.to_string();
    let created = to_db(newer.created_at);
    let newer_waits = newer.waiting_for.is_some();
    let queued = || {
        deployments::table
            .filter(deployments::tenant_id.eq(&newer.tenant_id))
            .filter(deployments::instance_id.eq(&instance))
            .filter(deployments::state.eq(DeployState::Pending.as_str()))
            .into_boxed()
    };
    let mut older_query = queued();
    if newer_waits {
        older_query = older_query.filter(deployments::waiting_for.is_not_null());
    }
    let older: Vec<String> = older_query
        .filter(
            deployments::created_at
                .lt(created)
                .or(deployments::created_at
                    .eq(created)
                    .and(deployments::id.lt(&newer_id))),
        )
        .select(deployments::id)
        .load(conn)
        .map_err(db_error)?;
    let mut later_query = queued();
    if !newer_waits {
        later_query = later_query.filter(deployments::waiting_for.is_null());
    }
    let later: Option<String> = later_query
        .filter(
            deployments::created_at
                .gt(created)
                .or(deployments::created_at
                    .eq(created)
                    .and(deployments::id.gt(&newer_id))),
        )
        .order((deployments::created_at.desc(), deployments::id.desc()))
        .select(deployments::id)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    let mut superseded = cancel_queued(
        conn,
        &newer.tenant_id,
        &older,
        &format!("superseded by {newer_id}"),
    )?;
    if let Some(later) = later {
        superseded.extend(cancel_queued(
            conn,
            &newer.tenant_id,
            std::slice::from_ref(&newer_id),
            &format!("superseded by {later}"),
        )?);
    }
    // Oldest first, as they were queued.
    superseded.sort_by_key(|d| (d.created_at, d.id));
    for d in &superseded {
        report_final(conn, d)?;
    }
    Ok(superseded.iter().map(|d| d.id).collect())
}

/// Cancels those of `ids` still queued, each ending with `error`; returns them.
fn cancel_queued(
    conn: &mut DbConn,
    tenant: &str,
    ids: &[String],
    error: &str,
) -> Result<Vec<Deployment>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let at = to_db(deploy::now());
    let update = diesel::update(
        deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::id.eq_any(ids))
            .filter(deployments::state.eq(DeployState::Pending.as_str())),
    )
    .set((
        deployments::state.eq(DeployState::Cancelled.as_str()),
        deployments::error.eq(error),
        deployments::finished_at.eq(at),
        deployments::updated_at.eq(at),
    ));
    let rows = match conn {
        DbConn::Pg(c) => update.returning(DeploymentRow::as_select()).get_results(c),
        DbConn::Sqlite(c) => update.returning(DeploymentRow::as_select()).get_results(c),
    }
    .map_err(db_error)?;
    rows.into_iter()
        .map(DeploymentRow::into_domain)
        .collect::<Result<Vec<_>, _>>()
}

/// Cancels every queued deployment of an instance, each ending with `reason`, reported to
/// GitHub and recorded in the audit trail as `actor`'s; returns them, oldest first.
fn cancel_instance_queue(
    conn: &mut DbConn,
    tenant: &str,
    instance: InstanceId,
    actor: &str,
    reason: &str,
) -> Result<Vec<Deployment>, Error> {
    let ids: Vec<String> = deployments::table
        .filter(deployments::tenant_id.eq(tenant))
        .filter(deployments::instance_id.eq(instance.to_string()))
        .filter(deployments::state.eq(DeployState::Pending.as_str()))
        .select(deployments::id)
        .load(conn)
        .map_err(db_error)?;
    let mut cancelled = cancel_queued(conn, tenant, &ids, reason)?;
    cancelled.sort_by_key(|d| (d.created_at, d.id));
    for d in &cancelled {
        report_final(conn, d)?;
        let event = AuditEvent::new(
            tenant,
            actor,
            "cancel",
            format!("deployment {} cancelled: {reason}", d.id),
        );
        super::audit::record_for(conn, event, d)?;
    }
    Ok(cancelled)
}

/// Pending deployments of every tenant that wait for something, oldest first.
pub(super) fn waiting(conn: &mut DbConn, limit: u32) -> Result<Vec<Deployment>, Error> {
    deployments::table
        .filter(deployments::state.eq(DeployState::Pending.as_str()))
        .filter(deployments::waiting_for.is_not_null())
        .order((deployments::created_at.asc(), deployments::id.asc()))
        .limit(i64::from(limit))
        .select(DeploymentRow::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(DeploymentRow::into_domain)
        .collect()
}

fn encode_waiting(waiting: Option<&WaitingFor>) -> Result<Option<String>, Error> {
    waiting
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::Internal(format!("waiting_for cannot be encoded: {e}")))
}

/// Changes what a pending deployment waits for, and reports it. Unchanged, nothing is
/// written: gatekeepers of several processes may ask the same at once (on PostgreSQL the
/// row is locked as it is read, so the second one finds it changed), and it is reported
/// once.
pub(super) fn set_waiting(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    waiting: Option<&WaitingFor>,
) -> Result<Deployment, Error> {
    let key = id.to_string();
    let pending = || {
        deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::id.eq(&key))
            .filter(deployments::state.eq(DeployState::Pending.as_str()))
    };
    let current: Option<DeploymentRow> = match conn {
        DbConn::Pg(c) => pending()
            .select(DeploymentRow::as_select())
            .for_update()
            .first(c),
        DbConn::Sqlite(c) => pending().select(DeploymentRow::as_select()).first(c),
    }
    .optional()
    .map_err(db_error)?;
    if let Some(current) = current {
        let current = current.into_domain()?;
        if current.waiting_for.as_ref() == waiting {
            return Ok(current);
        }
    }
    let update = diesel::update(
        deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::id.eq(&key))
            .filter(deployments::state.eq(DeployState::Pending.as_str())),
    )
    .set((
        deployments::waiting_for.eq(encode_waiting(waiting)?),
        deployments::updated_at.eq(to_db(deploy::now())),
    ));
    let updated = match conn {
        DbConn::Pg(c) => update.returning(DeploymentRow::as_select()).get_result(c),
        DbConn::Sqlite(c) => update.returning(DeploymentRow::as_select()).get_result(c),
    }
    .optional()
    .map_err(db_error)?;
    let Some(updated) = updated else {
        let state: Option<String> = deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::id.eq(&key))
            .select(deployments::state)
            .first(conn)
            .optional()
            .map_err(db_error)?;
        let state: DeployState = state
            .ok_or_else(|| Error::not_found("deployment", id))?
            .parse()
            .map_err(Error::Internal)?;
        return Err(Error::InvalidState(InvalidTransition {
            from: state,
            to: DeployState::Pending,
        }));
    };
    let deployment = updated.into_domain()?;
    report_pending(conn, &deployment)?;
    Ok(deployment)
}

/// Lets the newest of the instance's deployments waiting for one of `kinds` run; the
/// older ones are superseded by it.
fn release_waiting(
    conn: &mut DbConn,
    tenant: &str,
    instance: InstanceId,
    kinds: &[WaitKind],
    next: &(dyn Fn(&Deployment) -> Option<WaitingFor> + Sync),
) -> Result<Option<Deployment>, Error> {
    let instance_key = instance.to_string();
    // PostgreSQL: the instance's row first, as every insert of a deployment takes it
    // first, so that this and an insert superseding the same rows take turns instead of
    // locking them in different orders; another process releasing the same instance
    // waits here, then finds these rows no longer waiting.
    if let DbConn::Pg(c) = conn {
        instances::table
            .filter(instances::tenant_id.eq(tenant))
            .filter(instances::id.eq(&instance_key))
            .select(instances::id)
            .for_update()
            .first::<String>(c)
            .optional()
            .map_err(db_error)?;
    }
    let query = || {
        deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::instance_id.eq(&instance_key))
            .filter(deployments::state.eq(DeployState::Pending.as_str()))
            .filter(deployments::waiting_for.is_not_null())
            .order((deployments::created_at.desc(), deployments::id.desc()))
    };
    let rows: Vec<DeploymentRow> = match conn {
        DbConn::Pg(c) => query()
            .select(DeploymentRow::as_select())
            .for_update()
            .load(c),
        DbConn::Sqlite(c) => query().select(DeploymentRow::as_select()).load(c),
    }
    .map_err(db_error)?;
    let mut held = Vec::with_capacity(rows.len());
    for row in rows {
        let d = row.into_domain()?;
        if d.waiting_for
            .as_ref()
            .is_some_and(|w| kinds.contains(&w.kind))
        {
            held.push(d);
        }
    }
    let mut held = held.into_iter();
    let Some(newest) = held.next() else {
        return Ok(None);
    };
    let then = next(&newest);
    let released = set_waiting(conn, tenant, newest.id, then.as_ref())?;
    let older: Vec<String> = held.map(|d| d.id.to_string()).collect();
    let mut superseded = cancel_queued(
        conn,
        tenant,
        &older,
        &format!("superseded by {}", released.id),
    )?;
    superseded.sort_by_key(|d| (d.created_at, d.id));
    for d in &superseded {
        report_final(conn, d)?;
    }
    Ok(Some(released))
}

pub(super) fn active_release(
    conn: &mut DbConn,
    tenant: &str,
    instance: InstanceId,
) -> Result<Option<Release>, Error> {
    releases::table
        .filter(releases::tenant_id.eq(tenant))
        .filter(releases::instance_id.eq(instance.to_string()))
        .filter(releases::active.eq(true))
        .select(ReleaseRow::as_select())
        .first(conn)
        .optional()
        .map_err(db_error)?
        .map(ReleaseRow::into_domain)
        .transpose()
}

pub(super) fn previous_release(
    conn: &mut DbConn,
    tenant: &str,
    instance: InstanceId,
) -> Result<Option<Release>, Error> {
    let candidates: Vec<ReleaseRow> = releases::table
        .filter(releases::tenant_id.eq(tenant))
        .filter(releases::instance_id.eq(instance.to_string()))
        .filter(releases::active.eq(false))
        .filter(releases::last_active_at.is_not_null())
        .order((releases::last_active_at.desc(), releases::version.desc()))
        .limit(PREVIOUS_CANDIDATES)
        .select(ReleaseRow::as_select())
        .load(conn)
        .map_err(db_error)?;
    // A release a rollback (or a failed watch) replaced is not where `previous` goes back
    // to: a second `/rollback` would ship the release the first one removed.
    for candidate in candidates {
        let last_state: Option<String> = deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::release_id.eq(&candidate.id))
            .filter(deployments::noop.eq(false))
            .filter(deployments::finished_at.is_not_null())
            .order((deployments::finished_at.desc(), deployments::id.desc()))
            .select(deployments::state)
            .first(conn)
            .optional()
            .map_err(db_error)?;
        if last_state.as_deref() != Some(DeployState::RolledBack.as_str()) {
            return candidate.into_domain().map(Some);
        }
    }
    Ok(None)
}

/// How many earlier releases `previous_release` looks through.
const PREVIOUS_CANDIDATES: i64 = 50;

pub(super) fn last_succeeded(
    conn: &mut DbConn,
    tenant: &str,
    instance: InstanceId,
) -> Result<Option<Deployment>, Error> {
    deployments::table
        .filter(deployments::tenant_id.eq(tenant))
        .filter(deployments::instance_id.eq(instance.to_string()))
        .filter(deployments::state.eq(DeployState::Succeeded.as_str()))
        .order((deployments::finished_at.desc(), deployments::id.desc()))
        .select(DeploymentRow::as_select())
        .first(conn)
        .optional()
        .map_err(db_error)?
        .map(DeploymentRow::into_domain)
        .transpose()
}

impl QueueStore for DieselStore {
    fn claim_next(&self, owner: &str, lease: Duration) -> Result<Option<Deployment>, Error> {
        // A unique-index violation means another worker won the race for that instance.
        match self.write(|conn| claim_next(conn, owner, lease)) {
            Err(Error::Conflict(_)) => Ok(None),
            other => other,
        }
    }

    fn cancel_instance_queue(
        &self,
        tenant_id: &str,
        instance: InstanceId,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<Deployment>, Error> {
        self.write(|conn| cancel_instance_queue(conn, tenant_id, instance, actor, reason))
    }

    fn renew_lease(&self, id: DeploymentId, owner: &str, lease: Duration) -> Result<Lease, Error> {
        self.write(|conn| renew_lease(conn, id, owner, lease))
    }

    fn record_progress(&self, deployment: &Deployment, owner: &str) -> Result<(), Error> {
        self.write(|conn| record_progress(conn, deployment, owner))
    }

    fn finish_deployment(&self, deployment: &Deployment, owner: &str) -> Result<(), Error> {
        self.write(|conn| finish(conn, deployment, owner))
    }

    fn expired_leases(&self) -> Result<Vec<deploy::ExpiredLease>, Error> {
        self.read(expired_leases)
    }

    fn recover_expired(&self, ids: &[DeploymentId]) -> Result<Vec<Deployment>, Error> {
        self.write(|conn| recover_expired(conn, ids))
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

    fn waiting_deployments(&self, limit: u32) -> Result<Vec<Deployment>, Error> {
        self.read(|conn| waiting(conn, limit))
    }

    fn set_waiting(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        waiting: Option<&WaitingFor>,
    ) -> Result<Deployment, Error> {
        self.write(|conn| set_waiting(conn, tenant_id, id, waiting))
    }

    fn release_waiting_to(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
        kinds: &[WaitKind],
        next: &(dyn Fn(&Deployment) -> Option<WaitingFor> + Sync),
    ) -> Result<Option<Deployment>, Error> {
        self.write(|conn| release_waiting(conn, tenant_id, instance_id, kinds, next))
    }
}
