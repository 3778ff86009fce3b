//! The gates' changes to pending deployments: moving one on to its next gate, ending one
//! whose gate can no longer open, approvals, and the promotion lookup. Each checks, in its
//! transaction, that the deployment still waits at the gate it resolves.

use diesel::prelude::*;

use super::rows::{DeploymentRow, to_db};
use super::schema::{deployments, instances, releases};
use super::{DbConn, DieselStore, audit, db_error, outbox, queue};
use crate::deploy::{
    self, AuditEvent, DeployKind, DeployState, Deployment, DeploymentId, Error, GateStore,
    ReleaseId, WaitKind, WaitingFor,
};

/// The pending deployment `id`, its row locked on PostgreSQL; None when it is not pending.
fn pending_for_update(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
) -> Result<Option<Deployment>, Error> {
    let key = id.to_string();
    let query = || {
        deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::id.eq(key.clone()))
            .filter(deployments::state.eq(DeployState::Pending.as_str()))
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

/// The pending deployment `id` when it waits at `gate`.
fn waiting_at(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    gate: WaitKind,
) -> Result<Option<Deployment>, Error> {
    Ok(pending_for_update(conn, tenant, id)?
        .filter(|d| d.waiting_for.as_ref().is_some_and(|w| w.kind == gate)))
}

fn end(
    conn: &mut DbConn,
    d: &Deployment,
    state: DeployState,
    reason: &str,
    event: &AuditEvent,
) -> Result<Deployment, Error> {
    let at = to_db(deploy::now());
    let update = diesel::update(
        deployments::table
            .filter(deployments::tenant_id.eq(&d.tenant_id))
            .filter(deployments::id.eq(d.id.to_string()))
            .filter(deployments::state.eq(DeployState::Pending.as_str())),
    )
    .set((
        deployments::state.eq(state.as_str()),
        deployments::error.eq(reason),
        deployments::waiting_for.eq(None::<String>),
        deployments::finished_at.eq(at),
        deployments::updated_at.eq(at),
    ));
    let row = match conn {
        DbConn::Pg(c) => update.returning(DeploymentRow::as_select()).get_result(c),
        DbConn::Sqlite(c) => update.returning(DeploymentRow::as_select()).get_result(c),
    }
    .map_err(db_error)?;
    let ended = row.into_domain()?;
    outbox::report_final(conn, &ended)?;
    audit::record_for(conn, event.clone(), &ended)?;
    Ok(ended)
}

fn approve(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    approver: &str,
    event: &AuditEvent,
) -> Result<Deployment, Error> {
    let Some(d) = pending_for_update(conn, tenant, id)? else {
        return Err(Error::NotApproved(format!(
            "deployment {id} is not pending: only a deployment waiting for approval can be approved"
        )));
    };
    let Some(mut waiting) = d
        .waiting_for
        .clone()
        .filter(|w| w.kind == WaitKind::Approval)
    else {
        return Err(Error::NotApproved(format!(
            "deployment {id} does not wait for approval{}",
            d.waiting_for
                .as_ref()
                .map(|w| format!(" (it is {})", w.describe()))
                .unwrap_or_default()
        )));
    };
    let Some(state) = waiting.approval.as_mut() else {
        return Err(Error::Internal(format!(
            "deployment {id} waits for approval without its state"
        )));
    };
    if state.requested_by == approver {
        return Err(Error::NotApproved(format!(
            "{approver} asked for deployment {id} and cannot approve it: another deployer must"
        )));
    }
    if !state.approved_by.iter().any(|a| a == approver) {
        state.approved_by.push(approver.to_string());
    }
    let next = (state.missing() > 0).then_some(&waiting);
    let updated = queue::set_waiting(conn, tenant, id, next)?;
    audit::record_for(conn, event.clone(), &updated)?;
    Ok(updated)
}

fn promoted(
    conn: &mut DbConn,
    tenant: &str,
    repo: &str,
    environment: &str,
    sha: &str,
) -> Result<bool, Error> {
    let repos: Vec<String> = instances::table
        .filter(instances::tenant_id.eq(tenant))
        .filter(instances::environment.eq(environment))
        .select(instances::repo)
        .distinct()
        .load(conn)
        .map_err(db_error)?;
    let repos: Vec<String> = repos
        .into_iter()
        .filter(|r| r.eq_ignore_ascii_case(repo))
        .collect();
    if repos.is_empty() {
        return Ok(false);
    }
    let ids: Vec<String> = instances::table
        .filter(instances::tenant_id.eq(tenant))
        .filter(instances::environment.eq(environment))
        .filter(instances::repo.eq_any(&repos))
        .select(instances::id)
        .load(conn)
        .map_err(db_error)?;
    let found: Option<String> = deployments::table
        .inner_join(releases::table.on(releases::id.eq(deployments::release_id)))
        .filter(deployments::tenant_id.eq(tenant))
        .filter(deployments::instance_id.eq_any(&ids))
        .filter(deployments::noop.eq(false))
        .filter(releases::commit_sha.eq(sha))
        .filter(
            deployments::state
                .eq(DeployState::Succeeded.as_str())
                .or(deployments::state
                    .eq(DeployState::RolledBack.as_str())
                    .and(deployments::error.eq(""))
                    .and(deployments::kind.eq(DeployKind::Deploy.as_str()))),
        )
        .select(deployments::id)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    Ok(found.is_some())
}

impl GateStore for DieselStore {
    fn release_was_live(&self, tenant_id: &str, id: ReleaseId) -> Result<bool, Error> {
        self.read(|conn| {
            let live: Option<(bool, Option<chrono::NaiveDateTime>)> = releases::table
                .filter(releases::tenant_id.eq(tenant_id))
                .filter(releases::id.eq(id.to_string()))
                .select((releases::active, releases::last_active_at))
                .first(conn)
                .optional()
                .map_err(db_error)?;
            Ok(live.is_some_and(|(active, last)| active || last.is_some()))
        })
    }

    fn waiting_at_gate(&self, gate: WaitKind, limit: u32) -> Result<Vec<Deployment>, Error> {
        let waiting = self.read(|conn| queue::waiting(conn, limit))?;
        Ok(waiting
            .into_iter()
            .filter(|d| d.waiting_for.as_ref().is_some_and(|w| w.kind == gate))
            .collect())
    }

    fn promoted(
        &self,
        tenant_id: &str,
        repo: &str,
        environment: &str,
        sha: &str,
    ) -> Result<bool, Error> {
        self.read(|conn| promoted(conn, tenant_id, repo, environment, sha))
    }

    fn advance_waiting(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        from: WaitKind,
        to: Option<&WaitingFor>,
    ) -> Result<Option<Deployment>, Error> {
        self.write(|conn| match waiting_at(conn, tenant_id, id, from)? {
            Some(_) => queue::set_waiting(conn, tenant_id, id, to).map(Some),
            None => Ok(None),
        })
    }

    fn end_waiting(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        from: WaitKind,
        state: DeployState,
        reason: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Deployment>, Error> {
        if !matches!(state, DeployState::Cancelled | DeployState::Failed) {
            return Err(Error::Internal(format!(
                "a waiting deployment cannot end {state}"
            )));
        }
        self.write(|conn| match waiting_at(conn, tenant_id, id, from)? {
            Some(d) => end(conn, &d, state, reason, audit).map(Some),
            None => Ok(None),
        })
    }

    fn approve(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        approver: &str,
        audit: &AuditEvent,
    ) -> Result<Deployment, Error> {
        self.write(|conn| approve(conn, tenant_id, id, approver, audit))
    }
}
