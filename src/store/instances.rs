//! Instances: the configured deploy targets as kept in the database, with their stable
//! ids and the counters their releases and deployments are numbered by.

use diesel::prelude::*;

use super::rows::{InstanceRow, to_db};
use super::schema::instances;
use super::{DbConn, DieselStore, db_error};
use crate::deploy::{self, Error, Instance, InstanceId, InstanceStore};

pub(super) fn load_instance(
    conn: &mut DbConn,
    tenant: &str,
    id: InstanceId,
) -> Result<InstanceRow, Error> {
    instances::table
        .filter(instances::tenant_id.eq(tenant))
        .filter(instances::id.eq(id.to_string()))
        .select(InstanceRow::as_select())
        .first(conn)
        .optional()
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found("instance", id))
}

impl InstanceStore for DieselStore {
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
