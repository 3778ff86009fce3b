//! Deployments and releases: the domain's `Store` and `ReleaseStore`, and the inserts
//! that number a release and count a deployment on its instance.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::cursor::{self, DeploymentKey};
use super::rows::{DeploymentRow, InstanceRow, ReleaseRow, to_db};
use super::schema::{deployments, instances, releases};
use super::{DbConn, DieselStore, db_error, load_instance, locks, outbox, queue, recording};
use crate::deploy::{
    self, DeployListResult, Deployment, DeploymentId, Error, Instance, InstanceId, ListOptions,
    Release, ReleaseId, ReleaseListResult, ReleaseStore, TriggeredDeployment,
};

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(us: i64) -> Result<chrono::NaiveDateTime, Error> {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(to_db)
        .ok_or_else(|| Error::InvalidRequest("cursor is invalid: its time is out of range".into()))
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

/// Inserts a triggered deployment (release, deployment, key, superseding) in `conn`'s
/// transaction. A push's or a tag's deployment (`waits_for_locks`) waits for the lock
/// covering its instance as it is written, if one does.
pub(super) fn insert_triggered_in(
    conn: &mut DbConn,
    t: &TriggeredDeployment,
) -> Result<Deployment, Error> {
    let key = t.trigger_key.as_deref();
    let mut deployment = t.deployment.clone();
    if t.waits_for_locks
        && let Some(lock) = locks::covering(conn, &deployment.tenant_id, deployment.instance_id)?
    {
        deployment.waiting_for = Some(lock.waiting());
    }
    if let Some(holder) = &t.lock_holder
        && let Some(lock) =
            locks::covering_as_written(conn, &deployment.tenant_id, deployment.instance_id)?
        && lock.holder != *holder
    {
        return Err(Error::Locked(format!(
            "{}. Ask its holder to unlock, or unlock it yourself if the reason no longer holds.",
            lock.describe()
        )));
    }
    let deployment = if t.new_release {
        insert_both(conn, &t.release, &deployment, key)?.1
    } else {
        insert_deployment_in(conn, &deployment, key)?;
        deployment
    };
    if t.supersede {
        queue::supersede(conn, &deployment)?;
    }
    for event in &t.audit {
        super::audit::record_for(conn, event.clone(), &deployment)?;
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
}

impl ReleaseStore for DieselStore {
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

    fn insert_release_and_deployment(
        &self,
        release: &Release,
        deployment: &Deployment,
    ) -> Result<(Release, Deployment), Error> {
        self.write(|conn| insert_both(conn, release, deployment, None))
    }

    fn insert_triggered(
        &self,
        triggered: &TriggeredDeployment,
    ) -> Result<Option<Deployment>, Error> {
        let attempt = || {
            self.write(|conn| {
                recording::record_effects(
                    conn,
                    std::slice::from_ref(triggered),
                    &[],
                    insert_triggered_in,
                )
            })
        };
        // A concurrent request with the same trigger key won the race: the second
        // attempt sees its row.
        let record = match attempt() {
            Err(Error::Conflict(_)) => attempt(),
            other => other,
        }?;
        Ok(record.created.into_iter().next())
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

    fn request_cancel_audited(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        by: &str,
        audit: &(dyn Fn(&Deployment) -> deploy::AuditEvent + Sync),
    ) -> Result<Deployment, Error> {
        self.write(|conn| {
            let deployment = queue::request_cancel(conn, tenant_id, id, by)?;
            super::audit::record_for(conn, audit(&deployment), &deployment)?;
            Ok(deployment)
        })
    }
}
