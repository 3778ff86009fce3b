//! Recording webhook deliveries with what they cause: each delivery once (a delivery id
//! seen before writes nothing), the deployments it triggers and the outbox items it
//! queues, in the caller's transaction. Used by single and group-committed deliveries
//! and by comment steps.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, Text, Timestamp};

use super::outbox::enqueue;
use super::rows::to_db;
use super::schema::{deliveries, deployments};
use super::{DbConn, db_error};
use crate::deploy::{self, Deployment, Error, TriggeredDeployment};
use crate::github::outbox::NewOutboxItem;
use crate::github::store::{Delivery, DeliveryRecord};

/// A delivery to record, with the deployments and outbox items it causes.
pub(super) struct DeliveryJob<'a> {
    pub delivery: &'a Delivery,
    pub triggered: &'a [TriggeredDeployment],
    pub items: &'a [NewOutboxItem],
}

#[derive(Insertable)]
#[diesel(table_name = deliveries)]
struct NewDelivery<'a> {
    id: &'a str,
    event: &'a str,
    action: &'a str,
    tenant_id: &'a str,
    repo: &'a str,
    outcome: &'a str,
    received_at: NaiveDateTime,
}

/// PostgreSQL: stores a batch of deliveries, given as one array per column, and returns
/// the ids that were new. The statement's text is the same whatever the batch size, so
/// PostgreSQL parses and plans it once per connection (diesel caches it, as its query id
/// is static; a multi-row `VALUES` list, or `sql_query`, would be parsed for every batch).
struct InsertDeliveriesPg<'a> {
    id: Vec<&'a str>,
    event: Vec<&'a str>,
    action: Vec<&'a str>,
    tenant_id: Vec<&'a str>,
    repo: Vec<&'a str>,
    outcome: &'a str,
    received_at: NaiveDateTime,
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for InsertDeliveriesPg<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO deliveries (id, event, action, tenant_id, repo, outcome, received_at) \
             SELECT d.id, d.event, d.action, d.tenant_id, d.repo, ",
        );
        out.push_bind_param::<Text, _>(&self.outcome)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.received_at)?;
        out.push_sql(" FROM unnest(");
        for (i, column) in [
            &self.id,
            &self.event,
            &self.action,
            &self.tenant_id,
            &self.repo,
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_bind_param::<Array<Text>, _>(column)?;
        }
        out.push_sql(
            ") AS d(id, event, action, tenant_id, repo) ON CONFLICT DO NOTHING RETURNING id",
        );
        Ok(())
    }
}

impl diesel::query_builder::QueryId for InsertDeliveriesPg<'_> {
    type QueryId = InsertDeliveriesPg<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for InsertDeliveriesPg<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<diesel::PgConnection> for InsertDeliveriesPg<'_> {}

#[derive(QueryableByName)]
struct InsertedId {
    #[diesel(sql_type = Text)]
    id: String,
}

/// The outcome stored with a delivery.
fn outcome(record: &DeliveryRecord, jobs: usize) -> String {
    format!(
        "created {} deployment(s), {} already deployed, {} job(s)",
        record.created.len(),
        record.already.len(),
        jobs
    )
}

/// Records `jobs` in the caller's transaction, as if one after another: a delivery id
/// seen before (or earlier in `jobs`) is a duplicate and writes nothing; otherwise the
/// delivery is stored, the triggered deployments whose trigger key has not deployed yet
/// are created and the items enqueued. `INSERT … ON CONFLICT DO NOTHING` stores the
/// deliveries and tells which ids were new: on PostgreSQL one statement for them all
/// (when no job causes anything, that is the only statement, and the caller may run it
/// without a transaction), on SQLite one per delivery.
pub(super) fn record_deliveries(
    conn: &mut DbConn,
    jobs: &[DeliveryJob<'_>],
    insert: impl Fn(&mut DbConn, &TriggeredDeployment) -> Result<Deployment, Error>,
) -> Result<Vec<DeliveryRecord>, Error> {
    let received_at = to_db(deploy::now());
    let nothing = outcome(&DeliveryRecord::default(), 0);
    let mut first = HashSet::new();
    let rows: Vec<NewDelivery<'_>> = jobs
        .iter()
        .filter(|job| first.insert(job.delivery.id.as_str()))
        .map(|job| NewDelivery {
            id: &job.delivery.id,
            event: &job.delivery.event,
            action: &job.delivery.action,
            tenant_id: &job.delivery.tenant_id,
            repo: &job.delivery.repo,
            outcome: &nothing,
            received_at,
        })
        .collect();
    let mut new = insert_new_deliveries(conn, &rows, (&nothing, received_at))?;
    let mut records = Vec::with_capacity(jobs.len());
    for job in jobs {
        if !new.remove(&job.delivery.id) {
            records.push(DeliveryRecord {
                duplicate: true,
                batch: 1,
                ..DeliveryRecord::default()
            });
            continue;
        }
        let mut record = record_delivery_effects(conn, job, &insert)?;
        record.batch = 1;
        records.push(record);
    }
    Ok(records)
}

/// Stores the deliveries whose id is not stored yet, each with the outcome and time
/// given; returns those ids. Diesel's MultiConnection has no multi-row INSERT: it is
/// written per backend.
fn insert_new_deliveries(
    conn: &mut DbConn,
    rows: &[NewDelivery<'_>],
    (outcome, received_at): (&str, NaiveDateTime),
) -> Result<HashSet<String>, Error> {
    match conn {
        DbConn::Pg(c) => insert_new_deliveries_pg(c, rows, outcome, received_at),
        // One cached single-row statement per delivery (under the write lock, BEGIN
        // IMMEDIATE): the unique key skips a delivery seen before, and the row count says
        // which it was.
        DbConn::Sqlite(c) => {
            let mut new = HashSet::with_capacity(rows.len());
            for row in rows {
                let inserted = diesel::insert_into(deliveries::table)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c)
                    .map_err(db_error)?;
                if inserted == 1 {
                    new.insert(row.id.to_string());
                }
            }
            Ok(new)
        }
    }
}

/// PostgreSQL: the unique key decides what is new, also against a concurrent copy of the
/// delivery in another server (the insert waits for its transaction). The rows travel as
/// one array per column, so the statement's text is the same whatever the batch size:
/// PostgreSQL parses and plans it once per connection (a multi-row VALUES list would be
/// parsed and planned for every batch).
fn insert_new_deliveries_pg(
    c: &mut diesel::PgConnection,
    rows: &[NewDelivery<'_>],
    outcome: &str,
    received_at: NaiveDateTime,
) -> Result<HashSet<String>, Error> {
    let column = |f: for<'r> fn(&'r NewDelivery<'_>) -> &'r str| -> Vec<&str> {
        rows.iter().map(f).collect()
    };
    Ok(InsertDeliveriesPg {
        id: column(|r| r.id),
        event: column(|r| r.event),
        action: column(|r| r.action),
        tenant_id: column(|r| r.tenant_id),
        repo: column(|r| r.repo),
        outcome,
        received_at,
    }
    .load::<InsertedId>(c)
    .map_err(db_error)?
    .into_iter()
    .map(|row| row.id)
    .collect())
}

/// A new delivery's deployments and items, and its outcome stored with it.
fn record_delivery_effects(
    conn: &mut DbConn,
    job: &DeliveryJob<'_>,
    insert: &impl Fn(&mut DbConn, &TriggeredDeployment) -> Result<Deployment, Error>,
) -> Result<DeliveryRecord, Error> {
    if job.triggered.is_empty() && job.items.is_empty() {
        return Ok(DeliveryRecord::default());
    }
    let record = record_effects(conn, job.triggered, job.items, insert)?;
    diesel::update(deliveries::table.filter(deliveries::id.eq(&job.delivery.id)))
        .set(deliveries::outcome.eq(outcome(&record, job.items.len())))
        .execute(conn)
        .map_err(db_error)?;
    Ok(record)
}

/// Creates the triggered deployments whose trigger key has not deployed yet and
/// enqueues `items`, in the caller's transaction.
pub(super) fn record_effects(
    conn: &mut DbConn,
    triggered: &[TriggeredDeployment],
    items: &[NewOutboxItem],
    insert: impl Fn(&mut DbConn, &TriggeredDeployment) -> Result<Deployment, Error>,
) -> Result<DeliveryRecord, Error> {
    let mut record = DeliveryRecord::default();
    for t in triggered {
        if let Some(key) = &t.trigger_key {
            let existing: Option<String> = deployments::table
                .filter(deployments::tenant_id.eq(&t.deployment.tenant_id))
                .filter(deployments::instance_id.eq(t.deployment.instance_id.to_string()))
                .filter(deployments::trigger_key.eq(key))
                .select(deployments::id)
                .first(conn)
                .optional()
                .map_err(db_error)?;
            if let Some(existing) = existing {
                record.already.push(
                    existing
                        .parse()
                        .map_err(|e: crate::id::IdError| Error::Internal(e.to_string()))?,
                );
                continue;
            }
        }
        record.created.push(insert(conn, t)?);
    }
    for item in items {
        enqueue(conn, item)?;
    }
    Ok(record)
}
