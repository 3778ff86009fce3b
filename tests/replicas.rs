//! Replicas started together, as a Kubernetes Deployment starts them: any number of
//! `deploybot migrate` (and `serve`, which migrates the same way) processes on one
//! PostgreSQL database, empty or at an older version, all succeed and apply each
//! migration once; and a failure is told once, not twice.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use diesel::{Connection, PgConnection, RunQueryDsl};
use diesel_migrations::{FileBasedMigrations, MigrationHarness};

const BIN: &str = env!("CARGO_BIN_EXE_deploybot");

/// Replicas started at once in each round; rounds on fresh databases.
const REPLICAS: usize = 8;
const ROUNDS: usize = 3;

/// An empty database, dropped when the value is.
struct EmptyDb {
    admin: String,
    name: String,
    url: String,
}

impl EmptyDb {
    fn new() -> EmptyDb {
        let admin = common::admin_database_url();
        let name = format!("deploybot_replicas_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::establish(&admin)
            .unwrap_or_else(|e| panic!("PostgreSQL is needed for this test ({admin}): {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        let (base, _) = admin.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        EmptyDb { admin, name, url }
    }
}

impl Drop for EmptyDb {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

fn migrate_command(url: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("migrate")
        .arg("--config")
        .arg("/dev/null")
        .env("DATABASE_URL", url)
        .env_remove("DEPLOYBOT_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Starts `REPLICAS` migrations at once and waits for them all.
fn migrate_together(url: &str) -> Vec<Output> {
    let children: Vec<_> = (0..REPLICAS)
        .map(|_| migrate_command(url).spawn().unwrap())
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

fn migrations_dir() -> FileBasedMigrations {
    FileBasedMigrations::from_path(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"),
    )
    .unwrap()
}

fn migration_count() -> usize {
    std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count()
}

/// Checks that every replica succeeded and that, together, they applied each of the
/// `expected` migrations exactly once.
fn assert_all_succeeded_once(outputs: &[Output], expected: usize) {
    let mut applied = Vec::new();
    for output in outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "a replica failed: {}\nstdout: {stdout}\nstderr: {stderr}",
            output.status
        );
        applied.extend(
            stdout
                .lines()
                .filter_map(|l| l.strip_prefix("applied "))
                .map(str::to_string),
        );
    }
    let mut unique = applied.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        applied.len(),
        unique.len(),
        "a migration was applied twice: {applied:?}"
    );
    assert_eq!(unique.len(), expected, "applied: {applied:?}");
}

#[test]
fn replicas_started_together_on_an_empty_database_all_migrate() {
    for _ in 0..ROUNDS {
        let db = EmptyDb::new();
        let outputs = migrate_together(&db.url);
        assert_all_succeeded_once(&outputs, migration_count());
    }
}

#[test]
fn replicas_started_together_on_an_older_database_all_upgrade() {
    for _ in 0..ROUNDS {
        let db = EmptyDb::new();
        // The database as the first release left it: only the first migration applied.
        let mut conn = PgConnection::establish(&db.url).unwrap();
        conn.run_next_migration(migrations_dir()).unwrap();
        drop(conn);
        let outputs = migrate_together(&db.url);
        assert_all_succeeded_once(&outputs, migration_count() - 1);
    }
}

/// `migrate` and `serve` against a database that refuses connections: the reason is told
/// once, not once per layer of the error.
#[test]
fn an_unreachable_database_is_told_once() {
    // Nothing listens on port 1.
    let url = "postgres://postgres@127.0.0.1:1/deploybot";
    let mut serve = Command::new(BIN);
    serve
        .args(["serve", "--config", "/dev/null"])
        .env("DATABASE_URL", url)
        .env("DEPLOYBOT_WEBHOOK_SECRET", "replica-secret")
        .env("DEPLOYBOT_LISTEN", "127.0.0.1:0")
        .env_remove("DEPLOYBOT_CONFIG")
        .stdin(Stdio::null());
    for mut command in [migrate_command(url), serve] {
        let output = command.output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("DATABASE_URL"), "{stderr}");
        assert_eq!(
            stderr.matches("Connection refused").count(),
            1,
            "the reason is repeated: {stderr}"
        );
    }
}
