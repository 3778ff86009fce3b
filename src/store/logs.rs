//! Deployment logs: the domain's `LogStore`. Lines are numbered per deployment, so a
//! reader follows a log by asking for the lines after the last one it has.

use diesel::prelude::*;

use super::rows::{LogRow, from_db, to_db};
use super::schema::deployment_logs;
use super::{DbConn, DieselStore, db_error};
use crate::deploy::{self, DeploymentId, Error, LogEntry, LogStore};

fn append_logs(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    first_seq: i64,
    lines: &[(String, String)],
) -> Result<(), Error> {
    let at = to_db(deploy::now());
    let rows: Vec<LogRow> = lines
        .iter()
        .enumerate()
        .map(|(i, (stream, line))| LogRow {
            deployment_id: id.to_string(),
            seq: first_seq + i as i64,
            tenant_id: tenant.to_string(),
            stream: stream.clone(),
            line: line.clone(),
            at,
        })
        .collect();
    // Diesel's multi-backend connection has no multi-row INSERT: it is written per backend.
    match conn {
        // One statement (one round trip) for the batch: at most 201 rows of 6 values, far
        // below PostgreSQL's 65,535 bind parameters.
        DbConn::Pg(c) => {
            diesel::insert_into(deployment_logs::table)
                .values(&rows)
                .execute(c)
                .map_err(db_error)?;
        }
        // In-process: one cached single-row statement per line costs less than parsing a
        // statement whose text changes with the batch size.
        DbConn::Sqlite(c) => {
            for row in &rows {
                diesel::insert_into(deployment_logs::table)
                    .values(row)
                    .execute(c)
                    .map_err(db_error)?;
            }
        }
    }
    Ok(())
}

fn read_logs(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<LogEntry>, Error> {
    let rows: Vec<LogRow> = deployment_logs::table
        .filter(deployment_logs::tenant_id.eq(tenant))
        .filter(deployment_logs::deployment_id.eq(id.to_string()))
        .filter(deployment_logs::seq.gt(after_seq))
        .order(deployment_logs::seq.asc())
        .limit(i64::from(limit))
        .select(LogRow::as_select())
        .load(conn)
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|r| LogEntry {
            seq: r.seq,
            stream: r.stream,
            line: r.line,
            at: from_db(r.at),
        })
        .collect())
}

impl LogStore for DieselStore {
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
        self.write(|conn| append_logs(conn, tenant_id, id, first_seq, lines))
    }

    fn read_logs(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>, Error> {
        self.read(|conn| read_logs(conn, tenant_id, id, after_seq, limit))
    }
}
