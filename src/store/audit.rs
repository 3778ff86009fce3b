//! The audit trail: the domain's `AuditStore`. Events are appended and read newest first,
//! a page at a time, always within one tenant; events past their retention are removed in
//! batches, first-recorded first, across tenants.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::cursor;
use super::rows::{from_db, to_db};
use super::schema::audit_events;
use super::{DbConn, DieselStore, db_error};
use crate::deploy::{AuditEvent, AuditPage, AuditStore, Error, InstanceId, ListOptions};

#[derive(Insertable)]
#[diesel(table_name = audit_events, treat_none_as_default_value = false)]
struct NewEvent<'a> {
    tenant_id: &'a str,
    at: NaiveDateTime,
    actor: &'a str,
    action: &'a str,
    instance_id: Option<String>,
    deployment_id: Option<String>,
    detail: &'a str,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_events)]
struct EventRow {
    id: i64,
    tenant_id: String,
    at: NaiveDateTime,
    actor: String,
    action: String,
    instance_id: Option<String>,
    deployment_id: Option<String>,
    detail: String,
}

impl EventRow {
    fn into_domain(self) -> Result<AuditEvent, Error> {
        let corrupt = |what: &str, value: &str| {
            Error::Internal(format!("stored audit event {what} is corrupt: {value}"))
        };
        Ok(AuditEvent {
            id: self.id,
            instance_id: self
                .instance_id
                .as_deref()
                .map(|i| i.parse().map_err(|_| corrupt("instance id", i)))
                .transpose()?,
            deployment_id: self
                .deployment_id
                .as_deref()
                .map(|d| d.parse().map_err(|_| corrupt("deployment id", d)))
                .transpose()?,
            tenant_id: self.tenant_id,
            at: from_db(self.at),
            actor: self.actor,
            action: self.action,
            detail: self.detail,
        })
    }
}

/// Appends `event` in the caller's transaction.
/// Records `event` about deployment `d` (its instance and id set on the event).
pub(super) fn record_for(
    conn: &mut DbConn,
    mut event: AuditEvent,
    d: &crate::deploy::Deployment,
) -> Result<(), Error> {
    event.instance_id = Some(d.instance_id);
    event.deployment_id = Some(d.id);
    record(conn, &event)
}

pub(super) fn record(conn: &mut DbConn, event: &AuditEvent) -> Result<(), Error> {
    diesel::insert_into(audit_events::table)
        .values(NewEvent {
            tenant_id: &event.tenant_id,
            at: to_db(event.at),
            actor: &event.actor,
            action: &event.action,
            instance_id: event.instance_id.map(|i| i.to_string()),
            deployment_id: event.deployment_id.map(|d| d.to_string()),
            detail: &event.detail,
        })
        .execute(conn)
        .map_err(db_error)?;
    Ok(())
}

fn list(
    conn: &mut DbConn,
    tenant: &str,
    instance: Option<InstanceId>,
    limit: u32,
    before: Option<i64>,
) -> Result<AuditPage, Error> {
    let mut query = audit_events::table
        .filter(audit_events::tenant_id.eq(tenant))
        .order(audit_events::id.desc())
        .limit(i64::from(limit) + 1)
        .select(EventRow::as_select())
        .into_boxed();
    if let Some(instance) = instance {
        query = query.filter(audit_events::instance_id.eq(instance.to_string()));
    }
    if let Some(before) = before {
        query = query.filter(audit_events::id.lt(before));
    }
    let mut rows: Vec<EventRow> = query.load(conn).map_err(db_error)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let items = rows
        .into_iter()
        .map(EventRow::into_domain)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = match items.last() {
        Some(last) if more => Some(cursor::encode_audit(instance, last.id)),
        _ => None,
    };
    Ok(AuditPage { items, next_cursor })
}

/// Removes at most `batch` events stamped before `before`, lowest ids first.
fn prune(conn: &mut DbConn, before: DateTime<Utc>, batch: u32) -> Result<u64, Error> {
    let ids: Vec<i64> = audit_events::table
        .filter(audit_events::at.lt(to_db(before)))
        .order(audit_events::id.asc())
        .limit(i64::from(batch))
        .select(audit_events::id)
        .load(conn)
        .map_err(db_error)?;
    if ids.is_empty() {
        return Ok(0);
    }
    let removed = diesel::delete(audit_events::table.filter(audit_events::id.eq_any(&ids)))
        .execute(conn)
        .map_err(db_error)?;
    Ok(removed as u64)
}

impl AuditStore for DieselStore {
    fn record_audit(&self, event: &AuditEvent) -> Result<(), Error> {
        self.write(|conn| record(conn, event))
    }

    fn list_audit(
        &self,
        tenant_id: &str,
        instance_id: Option<InstanceId>,
        options: &ListOptions,
    ) -> Result<AuditPage, Error> {
        let limit = options.effective_limit()?;
        let before = options
            .cursor
            .as_deref()
            .map(|c| cursor::decode_audit(c, instance_id))
            .transpose()?;
        self.read(|conn| list(conn, tenant_id, instance_id, limit, before))
    }

    fn prune_audit(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error> {
        if batch == 0 {
            return Ok(0);
        }
        self.write(|conn| prune(conn, before, batch))
    }
}
