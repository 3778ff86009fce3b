//! Retention: the domain's `RetentionStore`. Old log lines, finished outbox items and
//! delivery records are removed a batch per transaction, oldest first, across tenants; the
//! `maintenance` table leases a periodic task to one replica at a time and remembers when
//! it last ran.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamp};

use super::rows::to_db;
use super::schema::{
    audit_events, deliveries, deployment_logs, deployments, maintenance, outbox, releases,
};
use super::{DbConn, DieselStore, db_error};
use crate::deploy::{self, Error, RetentionStore, TableRows};

/// The log lines to remove: a row-value `IN` over the oldest lines (SQLite ≥ 3.15 and
/// PostgreSQL both read it), so the composite key needs no second round trip.
const PRUNE_LOGS: &str = "DELETE FROM deployment_logs WHERE (deployment_id, seq) IN \
     (SELECT deployment_id, seq FROM deployment_logs WHERE at < {AT} ORDER BY at LIMIT {LIMIT})";

fn prune_logs(conn: &mut DbConn, before: NaiveDateTime, batch: u32) -> Result<u64, Error> {
    let limit = i64::from(batch);
    let removed = match conn {
        DbConn::Pg(c) => {
            diesel::sql_query(PRUNE_LOGS.replace("{AT}", "$1").replace("{LIMIT}", "$2"))
                .bind::<Timestamp, _>(before)
                .bind::<BigInt, _>(limit)
                .execute(c)
        }
        DbConn::Sqlite(c) => {
            diesel::sql_query(PRUNE_LOGS.replace("{AT}", "?").replace("{LIMIT}", "?"))
                .bind::<Timestamp, _>(before)
                .bind::<BigInt, _>(limit)
                .execute(c)
        }
    }
    .map_err(db_error)?;
    Ok(removed as u64)
}

fn prune_outbox(conn: &mut DbConn, before: NaiveDateTime, batch: u32) -> Result<u64, Error> {
    let ids: Vec<i64> = outbox::table
        .filter(outbox::state.eq_any(["sent", "failed"]))
        .filter(outbox::updated_at.lt(before))
        .order(outbox::updated_at.asc())
        .limit(i64::from(batch))
        .select(outbox::id)
        .load(conn)
        .map_err(db_error)?;
    if ids.is_empty() {
        return Ok(0);
    }
    // The state again: an item is never removed unless it is finished.
    let removed = diesel::delete(
        outbox::table
            .filter(outbox::id.eq_any(&ids))
            .filter(outbox::state.eq_any(["sent", "failed"])),
    )
    .execute(conn)
    .map_err(db_error)?;
    Ok(removed as u64)
}

fn prune_deliveries(conn: &mut DbConn, before: NaiveDateTime, batch: u32) -> Result<u64, Error> {
    let ids: Vec<String> = deliveries::table
        .filter(deliveries::received_at.lt(before))
        .order(deliveries::received_at.asc())
        .limit(i64::from(batch))
        .select(deliveries::id)
        .load(conn)
        .map_err(db_error)?;
    if ids.is_empty() {
        return Ok(0);
    }
    let removed = diesel::delete(deliveries::table.filter(deliveries::id.eq_any(&ids)))
        .execute(conn)
        .map_err(db_error)?;
    Ok(removed as u64)
}

fn table_rows(conn: &mut DbConn) -> Result<TableRows, Error> {
    Ok(TableRows {
        deployments: deployments::table
            .count()
            .get_result(conn)
            .map_err(db_error)?,
        releases: releases::table.count().get_result(conn).map_err(db_error)?,
        deployment_logs: deployment_logs::table
            .count()
            .get_result(conn)
            .map_err(db_error)?,
        deliveries: deliveries::table
            .count()
            .get_result(conn)
            .map_err(db_error)?,
        outbox: outbox::table.count().get_result(conn).map_err(db_error)?,
        audit_events: audit_events::table
            .count()
            .get_result(conn)
            .map_err(db_error)?,
    })
}

/// `at` moved by `by` (forwards when `later`), or None past what a timestamp holds.
fn shifted(at: DateTime<Utc>, by: Duration, later: bool) -> Option<NaiveDateTime> {
    let by = TimeDelta::from_std(by).ok()?;
    let at = if later {
        at.checked_add_signed(by)
    } else {
        at.checked_sub_signed(by)
    };
    at.map(to_db)
}

/// What `claim_maintenance` asks of the row.
struct Claim<'a> {
    name: &'a str,
    owner: &'a str,
    every: Duration,
    lease: Duration,
    force: bool,
}

fn claim(conn: &mut DbConn, c: &Claim<'_>) -> Result<bool, Error> {
    // Diesel's multi-backend connection has no ON CONFLICT: it is written per backend.
    let row = maintenance::name.eq(c.name);
    match conn {
        DbConn::Pg(c) => diesel::insert_into(maintenance::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c),
        DbConn::Sqlite(c) => diesel::insert_into(maintenance::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(c),
    }
    .map_err(db_error)?;
    let now = deploy::now();
    let Some(until) = shifted(now, c.lease, true) else {
        return Err(Error::InvalidRequest(format!(
            "a lease of {:?} is too long",
            c.lease
        )));
    };
    let now = to_db(now);
    let free = maintenance::owner
        .is_null()
        .or(maintenance::owner.assume_not_null().eq(c.owner))
        .or(maintenance::lease_until.is_null())
        .or(maintenance::lease_until.assume_not_null().le(now));
    let target = maintenance::table
        .filter(maintenance::name.eq(c.name))
        .filter(free);
    let set = (
        maintenance::owner.eq(c.owner),
        maintenance::lease_until.eq(until),
    );
    let claimed = if c.force {
        diesel::update(target).set(set).execute(conn)
    } else {
        // Due when it never ran, or last ran `every` ago (an `every` beyond what a
        // timestamp holds: only when it never ran).
        let due_before = shifted(deploy::now(), c.every, false).unwrap_or(NaiveDateTime::MIN);
        diesel::update(
            target.filter(
                maintenance::last_run_at
                    .is_null()
                    .or(maintenance::last_run_at.assume_not_null().le(due_before)),
            ),
        )
        .set(set)
        .execute(conn)
    }
    .map_err(db_error)?;
    Ok(claimed == 1)
}

fn finish(conn: &mut DbConn, name: &str, owner: &str) -> Result<(), Error> {
    diesel::update(
        maintenance::table
            .filter(maintenance::name.eq(name))
            .filter(maintenance::owner.eq(owner)),
    )
    .set((
        maintenance::owner.eq(None::<String>),
        maintenance::lease_until.eq(None::<NaiveDateTime>),
        maintenance::last_run_at.eq(Some(to_db(deploy::now()))),
    ))
    .execute(conn)
    .map_err(db_error)?;
    Ok(())
}

impl RetentionStore for DieselStore {
    fn prune_logs(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error> {
        if batch == 0 {
            return Ok(0);
        }
        self.write(|conn| prune_logs(conn, to_db(before), batch))
    }

    fn prune_outbox(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error> {
        if batch == 0 {
            return Ok(0);
        }
        self.write(|conn| prune_outbox(conn, to_db(before), batch))
    }

    fn prune_deliveries(&self, before: DateTime<Utc>, batch: u32) -> Result<u64, Error> {
        if batch == 0 {
            return Ok(0);
        }
        self.write(|conn| prune_deliveries(conn, to_db(before), batch))
    }

    fn table_rows(&self) -> Result<TableRows, Error> {
        self.read(table_rows)
    }

    fn claim_maintenance(
        &self,
        name: &str,
        owner: &str,
        every: Duration,
        lease: Duration,
        force: bool,
    ) -> Result<bool, Error> {
        let c = Claim {
            name,
            owner,
            every,
            lease,
            force,
        };
        self.write(|conn| claim(conn, &c))
    }

    fn finish_maintenance(&self, name: &str, owner: &str) -> Result<(), Error> {
        self.write(|conn| finish(conn, name, owner))
    }
}
