//! `deploybot prune`, the real binary, on SQLite and on PostgreSQL: it removes what passed
//! its `[retention]` period, says how much of each kind and how large the tables are now,
//! keeps releases and deployments, and stands aside while a server prunes.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::cli_run::Run;
use common::{Sql, TestDb};
use deploybot::deploy::{AuditEvent, AuditStore, Deployment, LogStore, RetentionStore};

fn days_ago(n: i64) -> DateTime<Utc> {
    Utc::now() - TimeDelta::days(n)
}

fn sql_time(at: DateTime<Utc>) -> String {
    at.format("'%Y-%m-%d %H:%M:%S'").to_string()
}

/// `deploybot ARGS` in `dir`, with the developer's variables out of the way.
fn deploybot(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("DEPLOYBOT_CONFIG")
        .env("DEPLOYBOT_LOG", "warn")
        .output()
        .unwrap();
    Run {
        args: args.join(" "),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn deployment(db: &TestDb, image: &str) -> Deployment {
    common::queue_web_production(db, image)
}

/// An old deployment with 1204 log lines from four months ago and 3 from today; outbox
/// items, deliveries and audit events, old and recent. Each deployment also queues two
/// pending reports to GitHub, which stay.
fn seed(db: &TestDb) {
    let old = deployment(db, "web:1");
    let new = deployment(db, "web:2");
    let lines: Vec<(String, String)> = (0..1204)
        .map(|i| ("stdout".to_string(), format!("line {i}")))
        .collect();
    for chunk in 0..7 {
        let first = chunk * 200;
        let end = (first + 200).min(1204);
        let part = &lines[first as usize..end as usize];
        db.store.append_logs("acme", old.id, first, part).unwrap();
    }
    let mut sql = Sql::open(&db.url);
    sql.execute(&format!(
        "UPDATE deployment_logs SET at = {}",
        sql_time(days_ago(120))
    ));
    let today: Vec<(String, String)> = (0..3)
        .map(|i| ("stdout".to_string(), format!("today {i}")))
        .collect();
    db.store.append_logs("acme", new.id, 0, &today).unwrap();
    for (state, age) in [("sent", 45), ("failed", 40), ("pending", 90), ("sent", 1)] {
        sql.execute(&format!(
            "INSERT INTO outbox (tenant_id, ordering_key, kind, payload, state, attempts, \
             next_attempt_at, last_error, created_at, updated_at, lane) VALUES \
             ('acme', 'acme/web', 'seeded', '{{}}', '{state}', 1, {t}, '', {t}, {t}, 'acme/web')",
            t = sql_time(days_ago(age))
        ));
    }
    for (id, age) in [("old-1", 35), ("old-2", 31), ("old-3", 60), ("new", 2)] {
        sql.execute(&format!(
            "INSERT INTO deliveries (id, event, action, tenant_id, repo, outcome, received_at) \
             VALUES ('{id}', 'push', '', 'acme', 'acme/web', 'accepted', {})",
            sql_time(days_ago(age))
        ));
    }
    for age in [800, 10] {
        let mut event = AuditEvent::new("acme", "@alice", "lock", "held");
        event.at = days_ago(age);
        db.store.record_audit(&event).unwrap();
    }
}

fn prune_removes_what_passed_its_retention_and_says_so(db: TestDb) {
    seed(&db);
    let dir = tempfile::tempdir().unwrap();
    let run = deploybot(dir.path(), &["prune", "--database-url", &db.url]);
    run.expect(0).stdout_has(&[
        "removed 1204 deployment log lines older than 90 days (before ",
        "removed 2 outbox items (sent or failed) older than 30 days (before ",
        "removed 3 webhook deliveries older than 30 days (before ",
        "removed 1 audit events older than 400 days (before ",
        "rows now: deployments 2, releases 2, deployment_logs 3, deliveries 1, outbox 6, audit_events 1",
    ]);
    let mut sql = Sql::open(&db.url);
    assert_eq!(sql.count("SELECT COUNT(*) AS n FROM deployments"), 2);
    assert_eq!(sql.count("SELECT COUNT(*) AS n FROM releases"), 2);
    assert_eq!(
        sql.count("SELECT COUNT(*) AS n FROM deployment_logs WHERE line LIKE 'today %'"),
        3
    );
    assert_eq!(
        sql.count("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending' AND kind = 'seeded'"),
        1
    );
    assert_eq!(
        sql.count("SELECT COUNT(*) AS n FROM deliveries WHERE id = 'new'"),
        1
    );

    // Run again at once: nothing is left to remove, and it says so.
    deploybot(dir.path(), &["prune", "--database-url", &db.url])
        .expect(0)
        .stdout_has(&[
            "removed 0 deployment log lines",
            "removed 0 webhook deliveries",
        ]);
}

fn the_configured_periods_are_used(db: TestDb) {
    seed(&db);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("deploybot.toml");
    std::fs::write(
        &config,
        "[retention]\nlogs = \"180d\"\ndeliveries = \"45d\"\noutbox = \"42d\"\nbatch = 7\n",
    )
    .unwrap();
    let run = deploybot(
        dir.path(),
        &[
            "prune",
            "--config",
            config.to_str().unwrap(),
            "--database-url",
            &db.url,
        ],
    );
    run.expect(0).stdout_has(&[
        "removed 0 deployment log lines older than 180 days",
        "removed 1 outbox items (sent or failed) older than 42 days",
        "removed 1 webhook deliveries older than 45 days",
    ]);
}

fn prune_stands_aside_while_a_server_prunes(db: TestDb) {
    seed(&db);
    assert!(
        db.store
            .claim_maintenance(
                "prune",
                "replica-a",
                Duration::from_secs(3600),
                Duration::from_secs(600),
                false
            )
            .unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    deploybot(dir.path(), &["prune", "--database-url", &db.url])
        .expect(1)
        .stderr_has(&["pruning this database now", "nothing was removed"]);
    let mut sql = Sql::open(&db.url);
    assert_eq!(sql.count("SELECT COUNT(*) AS n FROM deliveries"), 4);
    // Once that run finished, a prune runs at once, whatever the interval.
    db.store.finish_maintenance("prune", "replica-a").unwrap();
    deploybot(dir.path(), &["prune", "--database-url", &db.url])
        .expect(0)
        .stdout_has(&["removed 3 webhook deliveries"]);
}

both_backends_owned!(
    prune_removes_what_passed_its_retention_and_says_so,
    the_configured_periods_are_used,
    prune_stands_aside_while_a_server_prunes,
);

#[test]
fn an_unreachable_database_exits_3_and_a_bad_retention_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{closed}/deploybot");
    deploybot(dir.path(), &["prune", "--database-url", &url])
        .expect(3)
        .stderr_has(&["database"]);
    let config = dir.path().join("deploybot.toml");
    std::fs::write(&config, "[retention]\ndeliveries = \"2d\"\n").unwrap();
    deploybot(dir.path(), &["prune", "--config", config.to_str().unwrap()])
        .expect(2)
        .stderr_has(&["retention.deliveries", "github.redeliver_lookback"]);
}
