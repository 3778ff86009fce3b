//! The outbox: `github`'s `OutboxStore`. Reports to GitHub are written in the same
//! transaction as the change that causes them, and claimed by senders in order per key,
//! fairly between tenants and repositories.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

use super::rows::{from_db, to_db};
use super::schema::{deployments, instances, outbox};
use super::{DbConn, DieselStore, db_error};
use crate::deploy::{self, DeployState, Deployment, DeploymentId, Error};
use crate::github::outbox::{
    DEPLOYMENT_CREATED, DEPLOYMENT_STATUS, DeploymentCreated, DeploymentReaction, DeploymentReply,
    GithubAcceptance, NewOutboxItem, OutboxItem, OutboxResult, OutboxStore, SENDER_LOST,
    StatusReport, Work,
};

/// A running deployment reports progress to GitHub at most this often.
pub const PROGRESS_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(3);

// `None` is inserted as NULL (no nullable column has another default): without
// `DEFAULT` in it the INSERT's text is fixed, so diesel prepares it once per connection.
#[derive(Insertable)]
#[diesel(table_name = outbox, treat_none_as_default_value = false)]
struct NewRow<'a> {
    tenant_id: &'a str,
    lane: &'a str,
    ordering_key: &'a str,
    deployment_id: Option<String>,
    kind: &'a str,
    payload: String,
    state: &'a str,
    attempts: i32,
    next_attempt_at: NaiveDateTime,
    last_error: &'a str,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = outbox)]
struct Row {
    id: i64,
    tenant_id: String,
    ordering_key: String,
    deployment_id: Option<String>,
    kind: String,
    payload: String,
    state: String,
    attempts: i32,
    last_error: String,
    created_at: NaiveDateTime,
}

impl Row {
    /// The item as stored. Payload text that is not JSON is kept as a JSON string, which
    /// no kind reads, and a deployment id that is not one is kept as `corrupt`: the sender
    /// then parks the item as failed, naming why, instead of every claim failing on it.
    fn into_domain(self) -> Result<OutboxItem, Error> {
        let (deployment_id, corrupt) = match self.deployment_id.map(|d| d.parse()) {
            None => (None, None),
            Some(Ok(id)) => (Some(id), None),
            Some(Err(_)) => (
                None,
                Some("its deployment id is not a deployment id".to_string()),
            ),
        };
        Ok(OutboxItem {
            id: self.id,
            tenant_id: self.tenant_id,
            ordering_key: self.ordering_key,
            deployment_id,
            corrupt,
            payload: serde_json::from_str(&self.payload)
                .unwrap_or(serde_json::Value::String(self.payload)),
            kind: self.kind,
            attempts: self.attempts,
            last_error: self.last_error,
            state: self.state,
            created_at: from_db(self.created_at),
        })
    }
}

/// The lane an item is claimed in, round-robin with the others: its repository, from
/// the work or the deployment it reports on ("" when it has neither).
fn lane_of(conn: &mut DbConn, item: &NewOutboxItem) -> Result<String, Error> {
    if let Some(repo) = item.work.repo() {
        return Ok(repo.to_lowercase());
    }
    let Some(id) = item.deployment_id else {
        return Ok(String::new());
    };
    let repo: Option<String> = deployments::table
        .inner_join(instances::table.on(instances::id.eq(deployments::instance_id)))
        .filter(deployments::id.eq(id.to_string()))
        .select(instances::repo)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    Ok(repo.unwrap_or_default().to_lowercase())
}

pub(super) fn enqueue(conn: &mut DbConn, item: &NewOutboxItem) -> Result<(), Error> {
    let at = to_db(deploy::now());
    let lane = lane_of(conn, item)?;
    diesel::insert_into(outbox::table)
        .values(NewRow {
            tenant_id: &item.tenant_id,
            lane: &lane,
            ordering_key: &item.ordering_key,
            deployment_id: item.deployment_id.map(|d| d.to_string()),
            kind: item.work.kind(),
            payload: item.work.payload().to_string(),
            state: "pending",
            attempts: 0,
            next_attempt_at: at,
            last_error: "",
            created_at: at,
            updated_at: at,
        })
        .execute(conn)
        .map_err(db_error)?;
    Ok(())
}

/// A report about a deployment, ordered with the deployment's other reports.
pub(super) fn report(conn: &mut DbConn, d: &Deployment, work: Work) -> Result<(), Error> {
    enqueue(
        conn,
        &NewOutboxItem {
            tenant_id: d.tenant_id.clone(),
            ordering_key: d.id.to_string(),
            deployment_id: Some(d.id),
            work,
        },
    )
}

/// The status report of a state change.
pub(super) fn report_state(
    conn: &mut DbConn,
    d: &Deployment,
    state: DeployState,
    message: &str,
) -> Result<(), Error> {
    let status = StatusReport {
        state,
        message: message.to_string(),
    };
    report(conn, d, Work::DeploymentStatus(status))
}

/// A new deployment: its GitHub Deployment, then `queued` (or what it waits for), and
/// for a comment command its reply.
pub(super) fn report_created(conn: &mut DbConn, d: &Deployment) -> Result<(), Error> {
    report(conn, d, Work::DeploymentCreated(DeploymentCreated {}))?;
    report_pending(conn, d)
}

/// The status of a pending deployment: what it waits for, or `queued`; and for a comment
/// command its reply's refresh.
pub(super) fn report_pending(conn: &mut DbConn, d: &Deployment) -> Result<(), Error> {
    let message = d
        .waiting_for
        .as_ref()
        .map_or_else(|| "queued".to_string(), |w| w.describe());
    report_state(conn, d, DeployState::Pending, &message)?;
    report_reply_refresh(conn, d)
}

/// For a comment command's deployment: its one reply is brought up to date with the
/// deployment's state when this item is sent.
pub(super) fn report_reply_refresh(conn: &mut DbConn, d: &Deployment) -> Result<(), Error> {
    if d.source.comment_id.is_none() {
        return Ok(());
    }
    let refresh = DeploymentReply {
        state: None,
        error: String::new(),
    };
    report(conn, d, Work::DeploymentReply(refresh))
}

/// The final reports: the status, and for a comment command a reaction and one reply.
pub(super) fn report_final(conn: &mut DbConn, d: &Deployment) -> Result<(), Error> {
    report_state(conn, d, d.state, &d.error)?;
    if d.source.comment_id.is_some() {
        let content = if d.state == DeployState::Succeeded {
            "rocket"
        } else {
            "confused"
        };
        let reaction = DeploymentReaction {
            content: content.into(),
        };
        report(conn, d, Work::DeploymentReaction(reaction))?;
        // The reply tells the outcome it is queued with: by the time it is sent, a later
        // rollback may have marked this deployment rolled back.
        let reply = DeploymentReply {
            state: Some(d.state),
            error: d.error.clone(),
        };
        report(conn, d, Work::DeploymentReply(reply))?;
    }
    Ok(())
}

/// Progress of a running deployment (and its reply's refresh), at most every few seconds.
pub(super) fn report_progress(conn: &mut DbConn, d: &Deployment) -> Result<(), Error> {
    let last: Option<NaiveDateTime> = outbox::table
        .filter(outbox::deployment_id.eq(d.id.to_string()))
        .filter(outbox::kind.eq(DEPLOYMENT_STATUS))
        .select(outbox::created_at)
        .order(outbox::id.desc())
        .first(conn)
        .optional()
        .map_err(db_error)?;
    let now = deploy::now();
    if last.is_some_and(|at| from_db(at) + PROGRESS_EVERY > now) {
        return Ok(());
    }
    let message = if d.progress.message.is_empty() {
        format!("{} {}%", d.progress.phase, d.progress.percent)
    } else {
        d.progress.message.clone()
    };
    report_state(conn, d, DeployState::Running, &message)?;
    report_reply_refresh(conn, d)
}

/// The newest format of an outbox item this version reads (the `o.format <= 1` in `LANES`
/// and `CLAIM`). An item written in a newer format is never claimed here: during a rolling
/// upgrade the older replica leaves it to the newer one instead of failing it, and the
/// items after it on its ordering key wait behind it.
pub const OUTBOX_FORMAT: i32 = 1;

/// The lanes (tenant, repository) with items that may be claimable now, each with its
/// oldest such item.
const LANES: &str = "SELECT o.tenant_id, o.lane, MIN(o.id) AS oldest FROM outbox o \
    WHERE o.state = 'pending' AND o.format <= 1 AND o.next_attempt_at <= {NOW} \
    AND (o.locked_until IS NULL OR o.locked_until < {NOW}) \
    GROUP BY o.tenant_id, o.lane";

/// One lane's claimable items, oldest first: only the oldest pending item of each
/// ordering key, so a deployment's reports go out in order.
pub(super) const CLAIM: &str = "SELECT o.id FROM outbox o \
    WHERE o.tenant_id = {TENANT} AND o.lane = {LANE} \
    AND o.state = 'pending' AND o.format <= 1 AND o.next_attempt_at <= {NOW} \
    AND (o.locked_until IS NULL OR o.locked_until < {NOW}) \
    AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.ordering_key = o.ordering_key \
        AND p.state = 'pending' AND p.id < o.id) \
    ORDER BY o.id LIMIT {LIMIT}";

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct LaneRow {
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    lane: String,
    #[diesel(sql_type = BigInt)]
    oldest: i64,
}

/// Takes the front of each group in turn until `limit` are taken or all are empty:
/// `[[a1, a2, a3], [b1]]` gives `[a1, b1, a2, a3]`.
fn round_robin<T>(groups: Vec<Vec<T>>, limit: usize) -> Vec<T> {
    let mut groups: VecDeque<std::vec::IntoIter<T>> =
        groups.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(mut group) = groups.pop_front() else {
            break;
        };
        if let Some(next) = group.next() {
            out.push(next);
            groups.push_back(group);
        }
    }
    out
}

/// A tenant's lanes, each with its oldest item's id and its items.
type TenantLanes<T> = Vec<(i64, Vec<T>)>;

/// Groups lanes by tenant, both in order of their oldest item, and takes them
/// round-robin: a tenant's turn goes to its lanes in turn. Returns the items in claim
/// order, given each lane's items oldest first.
fn fair_order<T>(lanes: Vec<((String, i64), Vec<T>)>, limit: usize) -> Vec<T> {
    let mut tenants: BTreeMap<String, (i64, TenantLanes<T>)> = BTreeMap::new();
    for ((tenant, oldest), items) in lanes {
        let entry = tenants.entry(tenant).or_insert((oldest, Vec::new()));
        entry.0 = entry.0.min(oldest);
        entry.1.push((oldest, items));
    }
    let mut tenants: Vec<(i64, TenantLanes<T>)> = tenants.into_values().collect();
    tenants.sort_by_key(|(oldest, _)| *oldest);
    let per_tenant = tenants
        .into_iter()
        .map(|(_, mut lanes)| {
            lanes.sort_by_key(|(oldest, _)| *oldest);
            round_robin(lanes.into_iter().map(|(_, items)| items).collect(), limit)
        })
        .collect();
    round_robin(per_tenant, limit)
}

/// Fills a claim query for one backend: PostgreSQL numbers its parameters, SQLite takes
/// them in order of appearance.
fn claim_sql(template: &str, pg: bool, limit: u32) -> String {
    let mut sql = template.replace("{LIMIT}", &limit.to_string());
    let mut n = 0;
    for name in ["{TENANT}", "{LANE}", "{NOW}"] {
        if sql.contains(name) {
            n += 1;
            sql = sql.replace(name, &if pg { format!("${n}") } else { "?".into() });
        }
    }
    sql
}

/// Claims up to `limit` items, fairly: round-robin by tenant, then by repository within
/// a tenant, oldest first within a repository, so one repository's flood of items does
/// not hold up another's reports.
fn claim(
    conn: &mut DbConn,
    owner: &str,
    lease: Duration,
    limit: u32,
) -> Result<Vec<OutboxItem>, Error> {
    let now = to_db(deploy::now());
    let mut ids = claim_order(conn, now, limit)?;
    // PostgreSQL: another sender may claim the same items meanwhile; lock them, skipping
    // those it holds, and keep the ones still unclaimed. (SQLite: this transaction holds
    // the write lock.)
    if let DbConn::Pg(c) = conn {
        let locked = lock_unclaimed(c, &ids, now)?;
        ids.retain(|id| locked.contains(id));
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = take_claims(conn, &ids, owner, lease)?;
    // In claim order: the sender starts them in this order.
    ids.into_iter()
        .filter_map(|id| rows.remove(&id))
        .map(Row::into_domain)
        .collect()
}

/// The ids of up to `limit` claimable items, in the order they are claimed.
fn claim_order(conn: &mut DbConn, now: NaiveDateTime, limit: u32) -> Result<Vec<i64>, Error> {
    // At most `limit` lanes can have an item in this claim: the first ones in turn.
    let turns = fair_order(
        claimable_lanes(conn, now, limit)?
            .into_iter()
            .map(|l| ((l.tenant_id.clone(), l.oldest), vec![l]))
            .collect(),
        limit as usize,
    );
    let mut lanes = Vec::with_capacity(turns.len());
    for lane in turns {
        let ids = lane_items(conn, &lane, now, limit)?;
        lanes.push(((lane.tenant_id, lane.oldest), ids));
    }
    Ok(fair_order(lanes, limit as usize))
}

/// The lanes with items that may be claimable now.
fn claimable_lanes(
    conn: &mut DbConn,
    now: NaiveDateTime,
    limit: u32,
) -> Result<Vec<LaneRow>, Error> {
    match conn {
        DbConn::Pg(c) => diesel::sql_query(claim_sql(LANES, true, limit))
            .bind::<Timestamp, _>(now)
            .load(c),
        DbConn::Sqlite(c) => diesel::sql_query(claim_sql(LANES, false, limit))
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(now)
            .load(c),
    }
    .map_err(db_error)
}

/// One lane's claimable items, oldest first.
fn lane_items(
    conn: &mut DbConn,
    lane: &LaneRow,
    now: NaiveDateTime,
    limit: u32,
) -> Result<Vec<i64>, Error> {
    let ids: Vec<IdRow> = match conn {
        DbConn::Pg(c) => diesel::sql_query(claim_sql(CLAIM, true, limit))
            .bind::<Text, _>(&lane.tenant_id)
            .bind::<Text, _>(&lane.lane)
            .bind::<Timestamp, _>(now)
            .load(c),
        DbConn::Sqlite(c) => diesel::sql_query(claim_sql(CLAIM, false, limit))
            .bind::<Text, _>(&lane.tenant_id)
            .bind::<Text, _>(&lane.lane)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(now)
            .load(c),
    }
    .map_err(db_error)?;
    Ok(ids.into_iter().map(|IdRow { id }| id).collect())
}

/// PostgreSQL: locks those of `ids` still pending and unclaimed, skipping the rows
/// another sender's transaction holds; returns the ids locked.
fn lock_unclaimed(
    c: &mut diesel::PgConnection,
    ids: &[i64],
    now: NaiveDateTime,
) -> Result<HashSet<i64>, Error> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    Ok(outbox::table
        .filter(outbox::id.eq_any(ids))
        .filter(outbox::state.eq("pending"))
        .filter(
            outbox::locked_until
                .is_null()
                .or(outbox::locked_until.lt(now)),
        )
        .select(outbox::id)
        .for_update()
        .skip_locked()
        .load::<i64>(c)
        .map_err(db_error)?
        .into_iter()
        .collect())
}

/// Claims `ids` for `owner` in one statement; returns the claimed rows by id.
fn take_claims(
    conn: &mut DbConn,
    ids: &[i64],
    owner: &str,
    lease: Duration,
) -> Result<HashMap<i64, Row>, Error> {
    let until = to_db(
        deploy::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30)),
    );
    // Completing an item releases its lock, so a lock still held (and expired) marks an
    // attempt whose outcome is unknown: SET sees the row as it was before the update.
    let claimed = diesel::update(outbox::table.filter(outbox::id.eq_any(ids))).set((
        outbox::locked_by.eq(owner),
        outbox::locked_until.eq(until),
        outbox::last_error.eq(diesel::dsl::case_when(
            outbox::locked_by.is_null(),
            outbox::last_error,
        )
        .otherwise(SENDER_LOST)),
    ));
    let rows: Vec<Row> = match conn {
        DbConn::Pg(c) => claimed.returning(Row::as_select()).get_results(c),
        DbConn::Sqlite(c) => claimed.returning(Row::as_select()).get_results(c),
    }
    .map_err(db_error)?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

/// Extends the claims `owner` still holds, while it is sending them.
fn renew(conn: &mut DbConn, owner: &str, lease: Duration) -> Result<(), Error> {
    let until = to_db(
        deploy::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(30)),
    );
    diesel::update(
        outbox::table
            .filter(outbox::locked_by.eq(owner))
            .filter(outbox::state.eq("pending")),
    )
    .set(outbox::locked_until.eq(until))
    .execute(conn)
    .map_err(db_error)?;
    Ok(())
}

/// The longest `last_error` stored, in characters: an error quoting what it could not
/// read stays short in the API and the logs.
const LAST_ERROR_MAX: usize = 1000;

/// `text` cut to `LAST_ERROR_MAX` characters, with `…` where it was cut.
fn capped(text: String) -> String {
    match text.char_indices().nth(LAST_ERROR_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

fn complete(conn: &mut DbConn, id: i64, owner: &str, result: &OutboxResult) -> Result<(), Error> {
    let now = deploy::now();
    let (state, error, next) = match result {
        OutboxResult::Sent => ("sent", String::new(), now),
        OutboxResult::Retry { after, error } => (
            "pending",
            error.clone(),
            now + chrono::Duration::from_std(*after).unwrap_or(chrono::Duration::seconds(60)),
        ),
        OutboxResult::Failed { error } => ("failed", error.clone(), now),
        OutboxResult::Skipped { reason } => ("skipped", reason.clone(), now),
    };
    diesel::update(
        outbox::table
            .filter(outbox::id.eq(id))
            .filter(outbox::locked_by.eq(owner)),
    )
    .set((
        outbox::state.eq(state),
        outbox::last_error.eq(capped(error)),
        outbox::attempts.eq(outbox::attempts + 1),
        outbox::next_attempt_at.eq(to_db(next)),
        outbox::locked_by.eq(None::<String>),
        outbox::locked_until.eq(None::<NaiveDateTime>),
        outbox::updated_at.eq(to_db(now)),
    ))
    .execute(conn)
    .map_err(db_error)?;
    Ok(())
}

fn github_acceptance(
    conn: &mut DbConn,
    tenant_id: &str,
    id: DeploymentId,
) -> Result<GithubAcceptance, Error> {
    let created: Option<(String, String)> = outbox::table
        .filter(outbox::tenant_id.eq(tenant_id))
        .filter(outbox::deployment_id.eq(id.to_string()))
        .filter(outbox::kind.eq(DEPLOYMENT_CREATED))
        .select((outbox::state, outbox::last_error))
        .first(conn)
        .optional()
        .map_err(db_error)?;
    Ok(match created {
        None => GithubAcceptance::NotAsked,
        Some((state, error)) => match state.as_str() {
            "sent" => GithubAcceptance::Accepted,
            "skipped" => GithubAcceptance::NotAsked,
            "failed" => GithubAcceptance::Refused(error),
            _ => GithubAcceptance::Waiting,
        },
    })
}

fn newer_status_pending(conn: &mut DbConn, item: &OutboxItem) -> Result<bool, Error> {
    let newer: Option<i64> = outbox::table
        .filter(outbox::ordering_key.eq(&item.ordering_key))
        .filter(outbox::kind.eq(DEPLOYMENT_STATUS))
        .filter(outbox::state.eq("pending"))
        .filter(outbox::id.gt(item.id))
        .select(outbox::id)
        .first(conn)
        .optional()
        .map_err(db_error)?;
    Ok(newer.is_some())
}

fn items_of(conn: &mut DbConn, tenant: &str, id: DeploymentId) -> Result<Vec<OutboxItem>, Error> {
    outbox::table
        .filter(outbox::tenant_id.eq(tenant))
        .filter(outbox::deployment_id.eq(id.to_string()))
        .order(outbox::id.asc())
        .select(Row::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(Row::into_domain)
        .collect()
}

fn failed_of(conn: &mut DbConn, tenant: &str, limit: u32) -> Result<Vec<OutboxItem>, Error> {
    outbox::table
        .filter(outbox::tenant_id.eq(tenant))
        .filter(outbox::state.eq("failed"))
        .order(outbox::id.desc())
        .limit(i64::from(limit))
        .select(Row::as_select())
        .load(conn)
        .map_err(db_error)?
        .into_iter()
        .map(Row::into_domain)
        .collect()
}

fn counts(conn: &mut DbConn) -> Result<(i64, i64), Error> {
    let pending = outbox::table
        .filter(outbox::state.eq("pending"))
        .count()
        .get_result(conn)
        .map_err(db_error)?;
    let failed = outbox::table
        .filter(outbox::state.eq("failed"))
        .count()
        .get_result(conn)
        .map_err(db_error)?;
    Ok((pending, failed))
}

fn set_github_id(
    conn: &mut DbConn,
    tenant: &str,
    id: DeploymentId,
    github_id: i64,
) -> Result<(), Error> {
    diesel::update(
        deployments::table
            .filter(deployments::tenant_id.eq(tenant))
            .filter(deployments::id.eq(id.to_string())),
    )
    .set(deployments::github_deployment_id.eq(github_id))
    .execute(conn)
    .map_err(db_error)?;
    Ok(())
}

impl OutboxStore for DieselStore {
    fn enqueue(&self, items: &[NewOutboxItem]) -> Result<(), Error> {
        self.write(|conn| items.iter().try_for_each(|item| enqueue(conn, item)))
    }

    fn claim_outbox(
        &self,
        owner: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, Error> {
        self.write(|conn| claim(conn, owner, lease, limit))
    }

    fn renew_outbox(&self, owner: &str, lease: Duration) -> Result<(), Error> {
        self.write(|conn| renew(conn, owner, lease))
    }

    fn complete_outbox(&self, id: i64, owner: &str, result: &OutboxResult) -> Result<(), Error> {
        self.write(|conn| complete(conn, id, owner, result))
    }

    fn github_acceptance(
        &self,
        tenant_id: &str,
        id: DeploymentId,
    ) -> Result<GithubAcceptance, Error> {
        self.read(|conn| github_acceptance(conn, tenant_id, id))
    }

    fn newer_status_pending(&self, item: &OutboxItem) -> Result<bool, Error> {
        self.read(|conn| newer_status_pending(conn, item))
    }

    fn outbox_items(&self, tenant_id: &str, id: DeploymentId) -> Result<Vec<OutboxItem>, Error> {
        self.read(|conn| items_of(conn, tenant_id, id))
    }

    fn failed_outbox(&self, tenant_id: &str, limit: u32) -> Result<Vec<OutboxItem>, Error> {
        self.read(|conn| failed_of(conn, tenant_id, limit))
    }

    fn outbox_counts(&self) -> Result<(i64, i64), Error> {
        self.read(counts)
    }

    fn set_github_deployment_id(
        &self,
        tenant_id: &str,
        id: DeploymentId,
        github_id: i64,
    ) -> Result<(), Error> {
        self.write(|conn| set_github_id(conn, tenant_id, id, github_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_reads_only_the_formats_this_version_reads() {
        let filter = format!("o.format <= {OUTBOX_FORMAT} ");
        assert!(LANES.contains(&filter), "{LANES}");
        assert!(CLAIM.contains(&filter), "{CLAIM}");
        assert!(super::super::queue::CANDIDATE.contains(&format!(
            "d.format <= {} ",
            super::super::queue::QUEUE_FORMAT
        )));
    }

    #[test]
    fn groups_take_turns() {
        let groups = vec![vec!["a1", "a2", "a3"], vec!["b1"], vec![]];
        assert_eq!(round_robin(groups.clone(), 10), ["a1", "b1", "a2", "a3"]);
        assert_eq!(round_robin(groups, 2), ["a1", "b1"]);
    }

    /// Tenants take turns, in order of their oldest item; within a tenant its lanes do.
    #[test]
    fn tenants_then_their_repositories_take_turns() {
        let lane =
            |tenant: &str, oldest: i64, items: Vec<i64>| ((tenant.to_string(), oldest), items);
        let lanes = vec![
            lane("b", 5, vec![5, 6]),
            lane("a", 1, vec![1, 2, 3, 4]),
            lane("a", 7, vec![7, 8]),
        ];
        assert_eq!(fair_order(lanes, 16), [1, 5, 7, 6, 2, 8, 3, 4]);
    }
}
