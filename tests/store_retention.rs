//! Retention in the store, on SQLite and on PostgreSQL: old deployment log lines, finished
//! outbox items, delivery records and audit events go a batch at a time; recent rows,
//! pending outbox items, releases and deployments stay; the `prune` lease runs one
//! replica at a time, once per interval; and after a run the metrics show what went.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{Sql, TestDb};
use deploybot::config::RetentionConfig;
use deploybot::deploy::{AuditEvent, AuditStore, Deployment, LogStore, RetentionStore, TableRows};
use deploybot::metrics::Metrics;
use deploybot::worker::{PRUNE_TASK, prune_and_measure, prune_now};

const HOUR: Duration = Duration::from_secs(3600);
const LEASE: Duration = Duration::from_secs(600);

fn days_ago(n: i64) -> DateTime<Utc> {
    Utc::now() - TimeDelta::days(n)
}

/// A timestamp as SQL text, the same on both backends.
fn sql_time(at: DateTime<Utc>) -> String {
    at.format("'%Y-%m-%d %H:%M:%S'").to_string()
}

fn deployment(db: &TestDb, image: &str) -> Deployment {
    common::queue_web_production(db, image)
}

/// `n` log lines of `d`, from `first`, stamped `at`.
fn log_lines(db: &TestDb, d: &Deployment, first: i64, n: i64, at: DateTime<Utc>) {
    let lines: Vec<(String, String)> = (first..first + n)
        .map(|i| ("stdout".to_string(), format!("line {i}")))
        .collect();
    db.store.append_logs("acme", d.id, first, &lines).unwrap();
    Sql::open(&db.url).execute(&format!(
        "UPDATE deployment_logs SET at = {} WHERE deployment_id = '{}' AND seq >= {first}",
        sql_time(at),
        d.id
    ));
}

fn outbox_item(db: &TestDb, state: &str, updated: DateTime<Utc>) {
    Sql::open(&db.url).execute(&format!(
        "INSERT INTO outbox (tenant_id, ordering_key, kind, payload, state, attempts, \
         next_attempt_at, last_error, created_at, updated_at, lane) VALUES \
         ('acme', 'seeded', 'deployment_status', '{{}}', '{state}', 1, {t}, '', {t}, {t}, 'acme/web')",
        t = sql_time(updated)
    ));
}

fn delivery(db: &TestDb, id: &str, received: DateTime<Utc>) {
    Sql::open(&db.url).execute(&format!(
        "INSERT INTO deliveries (id, event, action, tenant_id, repo, outcome, received_at) \
         VALUES ('{id}', 'push', '', 'acme', 'acme/web', 'accepted', {})",
        sql_time(received)
    ));
}

fn audit(db: &TestDb, at: DateTime<Utc>) {
    let mut event = AuditEvent::new("acme", "@alice", "lock", "held");
    event.at = at;
    db.store.record_audit(&event).unwrap();
}

fn count(db: &TestDb, query: &str) -> i64 {
    Sql::open(&db.url).count(query)
}

/// Two deployments (one with old log lines), old and recent rows of every kind. Each
/// deployment queues two reports to GitHub of its own (pending: never pruned).
fn seeded(db: &TestDb) {
    let old = deployment(db, "web:1");
    let new = deployment(db, "web:2");
    log_lines(db, &old, 0, 7, days_ago(120));
    log_lines(db, &old, 7, 2, days_ago(10));
    log_lines(db, &new, 0, 3, days_ago(1));
    for state in ["sent", "failed", "sent"] {
        outbox_item(db, state, days_ago(45));
    }
    outbox_item(db, "pending", days_ago(300));
    outbox_item(db, "skipped", days_ago(45));
    outbox_item(db, "sent", days_ago(2));
    delivery(db, "old-1", days_ago(40));
    delivery(db, "old-2", days_ago(31));
    delivery(db, "new-1", days_ago(5));
    audit(db, days_ago(500));
    audit(db, days_ago(20));
}

fn old_rows_of_each_kind_go_and_the_rest_stays(db: &TestDb) {
    seeded(db);
    let retention = RetentionConfig::default();
    let report = prune_now(db.store.as_ref(), &retention, "replica-a", false, &|| false)
        .unwrap()
        .expect("the lease is free");
    assert_eq!(
        (report.logs, report.outbox, report.deliveries, report.audit),
        (7, 3, 2, 1)
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM deployment_logs WHERE line LIKE 'line %'"
        ),
        5
    );
    // The pending item, however old, and the one not sent or failed stay, with the recent one.
    for state in ["pending", "skipped", "sent"] {
        let query = format!(
            "SELECT COUNT(*) AS n FROM outbox WHERE ordering_key = 'seeded' AND state = '{state}'"
        );
        assert_eq!(count(db, &query), 1, "{state}");
    }
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM deliveries WHERE id = 'new-1'"
        ),
        1
    );
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM deliveries"), 1);
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM audit_events"), 1);
    // Releases and deployments are never removed.
    assert_eq!(
        db.store.table_rows().unwrap(),
        TableRows {
            deployments: 2,
            releases: 2,
            deployment_logs: 5,
            deliveries: 1,
            outbox: 3 + 4,
            audit_events: 1,
        }
    );
}

fn each_prune_removes_at_most_a_batch_oldest_first(db: &TestDb) {
    let d = deployment(db, "web:1");
    log_lines(db, &d, 0, 5, days_ago(200));
    log_lines(db, &d, 5, 5, days_ago(60));
    for n in 0..5 {
        delivery(db, &format!("d-{n}"), days_ago(60 - n));
        outbox_item(db, "sent", days_ago(60 - n));
    }
    let before = days_ago(90);
    assert_eq!(db.store.prune_logs(before, 3).unwrap(), 3);
    // The oldest went first: the 200-day-old lines 0..3.
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM deployment_logs WHERE seq < 3"
        ),
        0
    );
    assert_eq!(db.store.prune_logs(before, 3).unwrap(), 2);
    assert_eq!(db.store.prune_logs(before, 3).unwrap(), 0);
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM deployment_logs WHERE seq >= 5"
        ),
        5
    );
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM deployment_logs"), 5);
    let before = days_ago(30);
    assert_eq!(db.store.prune_deliveries(before, 2).unwrap(), 2);
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM deliveries WHERE id IN ('d-0', 'd-1')"
        ),
        0
    );
    assert_eq!(db.store.prune_deliveries(before, 10).unwrap(), 3);
    assert_eq!(db.store.prune_outbox(before, 4).unwrap(), 4);
    assert_eq!(db.store.prune_outbox(before, 4).unwrap(), 1);
    assert_eq!(db.store.prune_outbox(before, 4).unwrap(), 0);
    // A batch of none removes none.
    log_lines(db, &d, 10, 1, days_ago(200));
    assert_eq!(db.store.prune_logs(Utc::now(), 0).unwrap(), 0);
}

fn a_run_in_small_batches_removes_everything_old(db: &TestDb) {
    seeded(db);
    let retention = RetentionConfig {
        batch: 1,
        ..RetentionConfig::default()
    };
    let report = prune_now(db.store.as_ref(), &retention, "a", false, &|| false)
        .unwrap()
        .unwrap();
    assert_eq!(
        (report.logs, report.outbox, report.deliveries, report.audit),
        (7, 3, 2, 1)
    );
}

fn the_lease_is_one_owners_and_the_interval_is_kept(db: &TestDb) {
    let s = db.store.as_ref();
    assert!(
        s.claim_maintenance(PRUNE_TASK, "a", HOUR, LEASE, false)
            .unwrap()
    );
    // While a holds it, b takes it neither by waiting nor by force.
    assert!(
        !s.claim_maintenance(PRUNE_TASK, "b", HOUR, LEASE, false)
            .unwrap()
    );
    assert!(
        !s.claim_maintenance(PRUNE_TASK, "b", HOUR, LEASE, true)
            .unwrap()
    );
    // Another task is another lease.
    assert!(
        s.claim_maintenance("other", "b", HOUR, LEASE, false)
            .unwrap()
    );
    // b's finish does not end a's run.
    s.finish_maintenance(PRUNE_TASK, "b").unwrap();
    assert!(
        !s.claim_maintenance(PRUNE_TASK, "b", HOUR, LEASE, true)
            .unwrap()
    );
    s.finish_maintenance(PRUNE_TASK, "a").unwrap();
    // It ran just now: not again within the interval, by anyone…
    assert!(
        !s.claim_maintenance(PRUNE_TASK, "b", HOUR, LEASE, false)
            .unwrap()
    );
    assert!(
        !s.claim_maintenance(PRUNE_TASK, "a", HOUR, LEASE, false)
            .unwrap()
    );
    // …unless forced, and a forced run holds the lease against the others.
    assert!(
        s.claim_maintenance(PRUNE_TASK, "cli", HOUR, LEASE, true)
            .unwrap()
    );
    assert!(
        !s.claim_maintenance(PRUNE_TASK, "a", Duration::ZERO, LEASE, false)
            .unwrap()
    );
    s.finish_maintenance(PRUNE_TASK, "cli").unwrap();
    // Once the interval passed, it is due again.
    assert!(
        s.claim_maintenance(PRUNE_TASK, "b", Duration::ZERO, LEASE, false)
            .unwrap()
    );
}

fn an_expired_lease_is_taken_over(db: &TestDb) {
    let s = db.store.as_ref();
    assert!(
        s.claim_maintenance(PRUNE_TASK, "a", HOUR, Duration::ZERO, false)
            .unwrap()
    );
    // a's lease ended (a died while pruning): it never finished, so the task is due.
    assert!(
        s.claim_maintenance(PRUNE_TASK, "b", HOUR, LEASE, false)
            .unwrap()
    );
    assert!(
        !s.claim_maintenance(PRUNE_TASK, "a", HOUR, LEASE, true)
            .unwrap()
    );
}

fn pruning_under_anothers_lease_removes_nothing(db: &TestDb) {
    seeded(db);
    let s = db.store.as_ref();
    assert!(
        s.claim_maintenance(PRUNE_TASK, "replica-a", HOUR, LEASE, false)
            .unwrap()
    );
    let retention = RetentionConfig::default();
    assert_eq!(
        prune_now(s, &retention, "cli", true, &|| false).unwrap(),
        None
    );
    assert_eq!(count(db, "SELECT COUNT(*) AS n FROM deliveries"), 3);
    s.finish_maintenance(PRUNE_TASK, "replica-a").unwrap();
    // Ran just now: the loop skips it, a forced run does not.
    assert_eq!(
        prune_now(s, &retention, "replica-b", false, &|| false).unwrap(),
        None
    );
    let forced = prune_now(s, &retention, "cli", true, &|| false).unwrap();
    assert_eq!(forced.map(|r| r.deliveries), Some(2));
}

fn table_rows_counts_each_table(db: &TestDb) {
    assert_eq!(db.store.table_rows().unwrap(), TableRows::default());
    seeded(db);
    assert_eq!(
        db.store.table_rows().unwrap(),
        TableRows {
            deployments: 2,
            releases: 2,
            deployment_logs: 12,
            deliveries: 3,
            outbox: 6 + 4,
            audit_events: 2,
        }
    );
}

/// The metric line `name{table="TABLE"} VALUE` of `text`.
fn metric(text: &str, name: &str, table: &str) -> Option<String> {
    let prefix = format!("{name}{{table=\"{table}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

fn a_pruning_run_shows_in_the_metrics(db: &TestDb) {
    seeded(db);
    let metrics = Metrics::new();
    let retention = RetentionConfig::default();
    prune_and_measure(db.store.as_ref(), &retention, "a", &metrics, &|| false)
        .unwrap()
        .expect("the lease is free");
    let text = metrics.encode().unwrap();
    for (table, removed) in [
        ("deployment_logs", "7"),
        ("outbox", "3"),
        ("deliveries", "2"),
        ("audit_events", "1"),
    ] {
        assert_eq!(
            metric(&text, "deploybot_pruned_rows_total", table).as_deref(),
            Some(removed),
            "{text}"
        );
    }
    for (table, rows) in [
        ("deployments", "2"),
        ("releases", "2"),
        ("deployment_logs", "5"),
        ("deliveries", "1"),
        ("outbox", "7"),
        ("audit_events", "1"),
    ] {
        assert_eq!(
            metric(&text, "deploybot_table_rows", table).as_deref(),
            Some(rows),
            "{text}"
        );
    }
    // Within the interval the next wake-up prunes nothing and counts nothing more.
    assert_eq!(
        prune_and_measure(db.store.as_ref(), &retention, "b", &metrics, &|| false).unwrap(),
        None
    );
    let again = metrics.encode().unwrap();
    assert_eq!(
        metric(&again, "deploybot_pruned_rows_total", "deployment_logs").as_deref(),
        Some("7")
    );
}

both_backends!(
    old_rows_of_each_kind_go_and_the_rest_stays,
    each_prune_removes_at_most_a_batch_oldest_first,
    a_run_in_small_batches_removes_everything_old,
    the_lease_is_one_owners_and_the_interval_is_kept,
    an_expired_lease_is_taken_over,
    pruning_under_anothers_lease_removes_nothing,
    table_rows_counts_each_table,
    a_pruning_run_shows_in_the_metrics,
);
