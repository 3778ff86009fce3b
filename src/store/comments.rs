//! Pull-request comments: the record that each step of a comment acted (written with its
//! effect), the heads a pull request had and when, and the hourly limit on replies to
//! commenters without permission.

use diesel::prelude::*;

use super::rows::{from_db, to_db};
use super::schema::{comment_commands, pull_heads, stranger_replies};
use super::{DbConn, db_error, insert_triggered_in, outbox, queue, recording};
use crate::deploy::{self, Error};
use crate::github::store::{CommentActed, CommentEffect, CommentItems, CommentStep, PullHead};

/// GitHub's ids and numbers are u64; BIGINT holds them bit for bit (ids past i64::MAX are
/// stored negative), which keeps them unique and equal to themselves.
fn comment_id(id: u64) -> Result<i64, Error> {
    Ok(i64::from_ne_bytes(id.to_ne_bytes()))
}

/// Records the step, makes its effect and enqueues its items, in the caller's transaction.
pub(super) fn act(
    conn: &mut DbConn,
    step: &CommentStep,
    effect: &CommentEffect,
    items: CommentItems<'_>,
) -> Result<Option<CommentActed>, Error> {
    let id = comment_id(step.comment_id)?;
    let acted: Option<i32> = comment_commands::table
        .filter(comment_commands::repo.eq(&step.repo))
        .filter(comment_commands::comment_id.eq(id))
        .filter(comment_commands::step.eq(step.step))
        .select(comment_commands::step)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    if acted.is_some() {
        return Ok(None);
    }
    // A concurrent run of the same step fails here on the primary key, and its whole
    // transaction (effect included) is rolled back.
    diesel::insert_into(comment_commands::table)
        .values((
            comment_commands::repo.eq(&step.repo),
            comment_commands::comment_id.eq(id),
            comment_commands::step.eq(step.step),
            comment_commands::tenant_id.eq(&step.tenant_id),
            comment_commands::acted_at.eq(to_db(deploy::now())),
        ))
        .execute(conn)
        .map_err(db_error)?;
    let mut acted = CommentActed::default();
    match effect {
        CommentEffect::Reply => {}
        CommentEffect::Stranger {
            pull_request,
            login,
            within,
        } => acted.may_reply = stranger_may_reply(conn, step, *pull_request, login, *within)?,
        CommentEffect::Deploy(triggered) => {
            let record = recording::record_effects(
                conn,
                std::slice::from_ref(triggered.as_ref()),
                &[],
                insert_triggered_in,
            )?;
            acted.already = !record.already.is_empty();
            acted.created = record.created.into_iter().next();
        }
        CommentEffect::Cancel { ids, by, audit } => {
            for id in ids {
                match queue::request_cancel(conn, &step.tenant_id, *id, by) {
                    Ok(d) => {
                        let mut event = audit.clone();
                        event.detail = format!("{} of deployment {}", audit.detail, d.id);
                        super::audit::record_for(conn, event, &d)?;
                        acted.cancelled.push(d);
                    }
                    Err(Error::InvalidState(_)) => acted.finished.push(*id),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for item in items(&acted) {
        outbox::enqueue(conn, &item)?;
    }
    Ok(Some(acted))
}

/// Whether a reply to this commenter on this pull request is allowed now (none in the last
/// `within`); when it is, the reply is counted.
fn stranger_may_reply(
    conn: &mut DbConn,
    step: &CommentStep,
    pull_request: u64,
    login: &str,
    within: std::time::Duration,
) -> Result<bool, Error> {
    let pr = comment_id(pull_request)?;
    let login = login.to_lowercase();
    let now = deploy::now();
    let key = || {
        stranger_replies::table
            .filter(stranger_replies::tenant_id.eq(&step.tenant_id))
            .filter(stranger_replies::repo.eq(&step.repo))
            .filter(stranger_replies::pull_request.eq(pr))
            .filter(stranger_replies::login.eq(&login))
    };
    let last: Option<chrono::NaiveDateTime> = key()
        .select(stranger_replies::replied_at)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    let window = chrono::Duration::from_std(within).unwrap_or(chrono::Duration::hours(1));
    match last {
        Some(at) if from_db(at) + window > now => Ok(false),
        Some(_) => {
            diesel::update(key())
                .set(stranger_replies::replied_at.eq(to_db(now)))
                .execute(conn)
                .map_err(db_error)?;
            Ok(true)
        }
        None => {
            diesel::insert_into(stranger_replies::table)
                .values((
                    stranger_replies::tenant_id.eq(&step.tenant_id),
                    stranger_replies::repo.eq(&step.repo),
                    stranger_replies::pull_request.eq(pr),
                    stranger_replies::login.eq(&login),
                    stranger_replies::replied_at.eq(to_db(now)),
                ))
                .execute(conn)
                .map_err(db_error)?;
            Ok(true)
        }
    }
}

pub(super) fn steps(conn: &mut DbConn, repo: &str, comment: u64) -> Result<Vec<i32>, Error> {
    comment_commands::table
        .filter(comment_commands::repo.eq(repo))
        .filter(comment_commands::comment_id.eq(comment_id(comment)?))
        .select(comment_commands::step)
        .order(comment_commands::step.asc())
        .load(conn)
        .map_err(db_error)
}

pub(super) fn record_head(
    conn: &mut DbConn,
    tenant: &str,
    repo: &str,
    pull_request: u64,
    head: &PullHead,
) -> Result<(), Error> {
    let pr = comment_id(pull_request)?;
    let at = to_db(head.at);
    // A redelivered event records nothing new.
    let known: Option<i64> = pull_heads::table
        .filter(pull_heads::tenant_id.eq(tenant))
        .filter(pull_heads::repo.eq(repo))
        .filter(pull_heads::pull_request.eq(pr))
        .filter(pull_heads::head_sha.eq(&head.head_sha))
        .filter(pull_heads::at.eq(at))
        .select(pull_heads::id)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    if known.is_some() {
        return Ok(());
    }
    diesel::insert_into(pull_heads::table)
        .values((
            pull_heads::tenant_id.eq(tenant),
            pull_heads::repo.eq(repo),
            pull_heads::pull_request.eq(pr),
            pull_heads::head_sha.eq(&head.head_sha),
            pull_heads::at.eq(at),
        ))
        .execute(conn)
        .map_err(db_error)?;
    Ok(())
}

pub(super) fn heads(
    conn: &mut DbConn,
    tenant: &str,
    repo: &str,
    pull_request: u64,
) -> Result<Vec<PullHead>, Error> {
    let rows: Vec<(String, chrono::NaiveDateTime)> = pull_heads::table
        .filter(pull_heads::tenant_id.eq(tenant))
        .filter(pull_heads::repo.eq(repo))
        .filter(pull_heads::pull_request.eq(comment_id(pull_request)?))
        .order((pull_heads::at.asc(), pull_heads::id.asc()))
        .select((pull_heads::head_sha, pull_heads::at))
        .load(conn)
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|(head_sha, at)| PullHead {
            head_sha,
            at: from_db(at),
        })
        .collect())
}
