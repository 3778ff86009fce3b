//! The reply comments of commands: one record per reply (its GitHub comment once created,
//! and the random marker that finds it again), and the queue a reply describes.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::rows::{from_db, to_db};
use super::schema::{deployments, releases, replies};
use super::{DbConn, DieselStore, db_error};
use crate::deploy::{DeployState, Error, InstanceId};
use crate::github::store::{QueueEntry, ReplyRecord, ReplyStore};

/// GitHub's ids are u64; BIGINT holds them bit for bit.
fn to_bigint(id: u64) -> i64 {
    i64::from_ne_bytes(id.to_ne_bytes())
}

fn from_bigint(id: i64) -> u64 {
    u64::from_ne_bytes(id.to_ne_bytes())
}

/// 128 bits from the operating system's random source, as 32 hex digits.
fn fresh_marker() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no random bytes for a reply marker: {e}")))?;
    Ok(hex::encode(bytes))
}

type ReplyRow = (
    String,
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<NaiveDateTime>,
);

fn load_reply(conn: &mut DbConn, tenant: &str, key: &str) -> Result<Option<ReplyRecord>, Error> {
    let row: Option<ReplyRow> = replies::table
        .filter(replies::tenant_id.eq(tenant))
        .filter(replies::reply_key.eq(key))
        .select((
            replies::tenant_id,
            replies::reply_key,
            replies::repo,
            replies::issue,
            replies::marker,
            replies::comment_id,
            replies::edited_at,
        ))
        .first(conn)
        .optional()
        .map_err(db_error)?;
    Ok(row.map(
        |(tenant_id, reply_key, repo, issue, marker, comment_id, edited_at)| ReplyRecord {
            tenant_id,
            reply_key,
            repo,
            issue: from_bigint(issue),
            marker,
            comment_id: comment_id.map(from_bigint),
            edited_at: edited_at.map(from_db),
            created: false,
        },
    ))
}

fn reply_record(
    conn: &mut DbConn,
    tenant: &str,
    key: &str,
    repo: &str,
    issue: u64,
) -> Result<ReplyRecord, Error> {
    if let Some(found) = load_reply(conn, tenant, key)? {
        return Ok(found);
    }
    let marker = fresh_marker()?;
    let values = (
        replies::tenant_id.eq(tenant),
        replies::reply_key.eq(key),
        replies::repo.eq(repo),
        replies::issue.eq(to_bigint(issue)),
        replies::marker.eq(&marker),
        replies::comment_id.eq(None::<i64>),
        replies::edited_at.eq(None::<NaiveDateTime>),
    );
    // Two senders creating the record at once: the first one's marker is kept.
    let inserted = match conn {
        DbConn::Pg(c) => diesel::insert_into(replies::table)
            .values(values)
            .on_conflict_do_nothing()
            .execute(c),
        DbConn::Sqlite(c) => diesel::insert_into(replies::table)
            .values(values)
            .on_conflict_do_nothing()
            .execute(c),
    }
    .map_err(db_error)?;
    let mut record = load_reply(conn, tenant, key)?
        .ok_or_else(|| Error::Internal(format!("the reply record {key} was not stored")))?;
    record.created = inserted == 1;
    Ok(record)
}

fn instance_queue(
    conn: &mut DbConn,
    tenant: &str,
    instance: InstanceId,
) -> Result<Vec<QueueEntry>, Error> {
    let rows: Vec<(String, String, Option<String>, i64)> = deployments::table
        .inner_join(releases::table.on(releases::id.eq(deployments::release_id)))
        .filter(deployments::tenant_id.eq(tenant))
        .filter(deployments::instance_id.eq(instance.to_string()))
        .filter(
            deployments::state
                .eq_any([DeployState::Pending.as_str(), DeployState::Running.as_str()]),
        )
        .order((deployments::created_at.asc(), deployments::id.asc()))
        .limit(1000)
        .select((
            deployments::id,
            deployments::state,
            deployments::waiting_for,
            releases::version,
        ))
        .load(conn)
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(id, state, waiting_for, version)| {
            Ok(QueueEntry {
                id: id
                    .parse()
                    .map_err(|e| Error::Internal(format!("stored deployment id: {e}")))?,
                state: state
                    .parse()
                    .map_err(|e: String| Error::Internal(format!("stored state: {e}")))?,
                version,
                waiting: waiting_for.is_some(),
            })
        })
        .collect()
}

impl ReplyStore for DieselStore {
    fn reply_record(
        &self,
        tenant_id: &str,
        reply_key: &str,
        repo: &str,
        issue: u64,
    ) -> Result<ReplyRecord, Error> {
        self.write(|conn| reply_record(conn, tenant_id, reply_key, repo, issue))
    }

    fn set_reply_comment(
        &self,
        tenant_id: &str,
        reply_key: &str,
        comment_id: u64,
        at: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.write(|conn| {
            diesel::update(
                replies::table
                    .filter(replies::tenant_id.eq(tenant_id))
                    .filter(replies::reply_key.eq(reply_key)),
            )
            .set((
                replies::comment_id.eq(Some(to_bigint(comment_id))),
                replies::edited_at.eq(Some(to_db(at))),
            ))
            .execute(conn)
            .map_err(db_error)?;
            Ok(())
        })
    }

    fn instance_queue(
        &self,
        tenant_id: &str,
        instance_id: InstanceId,
    ) -> Result<Vec<QueueEntry>, Error> {
        self.read(|conn| instance_queue(conn, tenant_id, instance_id))
    }
}
