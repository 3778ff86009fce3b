//! `deploybot backup` with the real binary: a copy of the SQLite database taken while a
//! real `deploybot serve` takes deployments is sound, and restoring it (stop, put the copy
//! in the database's place, start) brings back every deployment and release it held. A
//! PostgreSQL URL is refused with the pg_dump command and without its password; a target
//! that exists, or whose directory does not, is refused and left as it was.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Sql;
use common::serve::{LIMIT, Served, free_port, run_in};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOKEN: &str = "backup-test-token-5e1d7c";
const SECRET: &str = "backup-test-webhook-secret";

/// A configuration with two noop instances: `web` (acme/web) and `api` (acme/api), both
/// deployed by pushes to main, on an SQLite database in `dir`.
fn write_config(dir: &Path, port: u16) -> PathBuf {
    let hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let path = dir.join("deploybot.toml");
    let mut instances = String::new();
    for (name, repo) in [("web", "acme/web"), ("api", "acme/api")] {
        instances.push_str(&format!(
            r#"
[[instances]]
name = "{name}"
repo = "{repo}"
environment = "production"
image = "ghcr.io/{repo}:{{short_sha}}"
strategy = "recreate"
on_push = ["main"]

[instances.provider]
kind = "noop"
"#
        ));
    }
    std::fs::write(
        &path,
        format!(
            r#"database_url = "sqlite://{db}"
listen = "127.0.0.1:{port}"
webhook_secrets = ["{SECRET}"]

[worker]
concurrency = 2
lease = "5s"

[[api.tokens]]
name = "backup-test"
tenant = "acme"
sha256 = "{hash}"
{instances}"#,
            db = dir.join("deploybot.db").display()
        ),
    )
    .unwrap();
    path
}

/// What restoring must bring back of a deployment or a release.
fn key(item: &Value) -> (String, String, String) {
    (
        item["id"].to_string(),
        item["state"].to_string(),
        format!("v{} active={}", item["version"], item["active"]),
    )
}

fn keys(items: &[Value]) -> Vec<(String, String, String)> {
    items.iter().map(key).collect()
}

fn integrity(copy: &Path) -> String {
    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = Text)]
        integrity_check: String,
    }
    let mut sql = Sql::open(&format!("sqlite://{}", copy.display()));
    let rows: Vec<Check> = sql.load("PRAGMA integrity_check");
    rows.into_iter()
        .map(|r| r.integrity_check)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A copy taken while the server takes deployments is sound; stopping the server,
/// putting the copy in the database's place and starting it again lists every deployment
/// and release the copy was taken with, under the same ids and states.
#[test]
fn a_backup_taken_while_serving_restores_every_deployment_and_release() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let server = Served::start(dir.path(), &config, port, TOKEN, &[]);
    for _ in 0..3 {
        server.push("acme/web", None);
    }
    server.settle("web");
    let deployments = server.list("web", "deployments");
    let releases = server.list("web", "releases");
    assert_eq!(deployments.len(), 3, "{deployments:?}");
    assert!(deployments.iter().all(|d| d["state"] == "succeeded"));
    assert_eq!(releases.len(), 3, "{releases:?}");

    // Pushes to api go on while the copy is taken.
    let stop = AtomicBool::new(false);
    let pushed = AtomicUsize::new(0);
    let before_backup = server.push("acme/api", None);
    let config_arg = config.display().to_string();
    let (backup, during) = std::thread::scope(|scope| {
        let pushing = scope.spawn(|| {
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                ids.push(server.push("acme/api", None));
                pushed.fetch_add(1, Ordering::SeqCst);
            }
            ids
        });
        let started = Instant::now();
        while pushed.load(Ordering::SeqCst) == 0 {
            assert!(started.elapsed() < LIMIT, "no push while backing up");
            std::thread::sleep(Duration::from_millis(10));
        }
        let backup = run_in(
            dir.path(),
            &["backup", "--to", "copy.db", "--config", &config_arg],
            &[],
        );
        stop.store(true, Ordering::SeqCst);
        (backup, pushing.join().unwrap())
    });
    let copy = dir.path().join("copy.db");
    let size = std::fs::metadata(&copy).unwrap().len();
    backup.expect(0).stdout_has(&[&format!(
        "backed up sqlite://{} to copy.db ({size} bytes)",
        dir.path().join("deploybot.db").display()
    )]);
    assert_eq!(integrity(&copy), "ok");
    let api_at_end = server.list("api", "deployments");
    assert!(!during.is_empty());
    server.stop();

    // The documented restore: the copy in the database's place, then start.
    let db = dir.path().join("deploybot.db");
    std::fs::copy(&copy, &db).unwrap();
    for leftover in ["deploybot.db-wal", "deploybot.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(leftover));
    }
    let port = free_port();
    let config = write_config(dir.path(), port);
    let restored = Served::start(dir.path(), &config, port, TOKEN, &[]);
    assert_eq!(
        keys(&restored.list("web", "deployments")),
        keys(&deployments)
    );
    assert_eq!(keys(&restored.list("web", "releases")), keys(&releases));
    let api = restored.list("api", "deployments");
    let ids: Vec<&str> = api.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&before_backup.as_str()),
        "{before_backup} was accepted before the backup: {ids:?}"
    );
    let known: Vec<&str> = api_at_end
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| known.contains(id)),
        "the copy holds only what the server had: {ids:?} vs {known:?}"
    );
}

/// A PostgreSQL database is not copied: exit 2, the pg_dump command to use, and the URL
/// without its password, whether it came from the flag or the environment.
#[test]
fn a_postgresql_url_is_refused_with_the_pg_dump_command_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://deploy:hunter2-secret@127.0.0.1:1/deploybot";
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let config = empty.display().to_string();
    let by_flag = run_in(
        dir.path(),
        &[
            "backup",
            "--to",
            "pg.dump",
            "--config",
            &config,
            "--database-url",
            url,
        ],
        &[],
    );
    let by_env = run_in(
        dir.path(),
        &["backup", "--to", "pg.dump", "--config", &config],
        &[("DATABASE_URL", url)],
    );
    for refused in [by_flag, by_env] {
        refused.expect(2).stderr_has(&[
            "postgres://deploy:***@127.0.0.1:1/deploybot",
            "pg_dump --format=custom --file=pg.dump \"$DATABASE_URL\"",
        ]);
        assert!(
            !refused.stderr.contains("hunter2") && !refused.stdout.contains("hunter2"),
            "the password was printed:\n{}\n{}",
            refused.stdout,
            refused.stderr
        );
    }
    assert!(!dir.path().join("pg.dump").exists());
}

/// A database with one migration's worth of tables, made by `deploybot migrate`.
fn migrated(dir: &Path) -> String {
    let url = format!("sqlite://{}", dir.join("deploybot.db").display());
    run_in(
        dir,
        &["migrate", "--config", "/dev/null", "--database-url", &url],
        &[],
    )
    .expect(0);
    url
}

/// A file that exists is never overwritten: exit 2, a message that says so and what to
/// do, and the file as it was.
#[test]
fn an_existing_target_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let url = migrated(dir.path());
    let target = dir.path().join("keep.db");
    std::fs::write(&target, "precious").unwrap();
    run_in(
        dir.path(),
        &[
            "backup",
            "--to",
            "keep.db",
            "--config",
            "/dev/null",
            "--database-url",
            &url,
        ],
        &[],
    )
    .expect(2)
    .stderr_has(&[
        "keep.db already exists",
        "choose another name, or remove it first",
    ]);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
}

/// A `file:` name is a file of that name, never an SQLite URI that reaches another file:
/// an empty file named in it is left alone, and the copy is readable by its owner only
/// (it holds the session key).
#[test]
fn a_uri_looking_target_is_a_plain_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let url = migrated(dir.path());
    let bystander = dir.path().join("empty.txt");
    std::fs::write(&bystander, "").unwrap();
    let args = [
        "backup",
        "--to",
        "file:empty.txt",
        "--config",
        "/dev/null",
        "--database-url",
    ];
    let mut args: Vec<&str> = args.to_vec();
    args.push(&url);
    run_in(dir.path(), &args, &[]).expect(0);
    assert_eq!(std::fs::read(&bystander).unwrap(), b"");
    let copy = dir.path().join("file:empty.txt");
    assert_eq!(integrity(&copy), "ok");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

/// A target in a directory that does not exist, or a database file that does not exist,
/// is refused without creating anything; a file name with a quote is written as named.
#[test]
fn missing_directories_and_databases_are_refused_and_quotes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let url = migrated(dir.path());
    let flags = ["--config", "/dev/null", "--database-url", url.as_str()];
    let backup = |to: &str, flags: &[&str]| {
        let mut args = vec!["backup", "--to", to];
        args.extend_from_slice(flags);
        run_in(dir.path(), &args, &[])
    };
    backup("no/such/dir/copy.db", &flags)
        .expect(2)
        .stderr_has(&["no/such/dir", "create it first"]);
    assert!(!dir.path().join("no").exists());

    let missing = format!("sqlite://{}", dir.path().join("typo.db").display());
    backup(
        "copy.db",
        &["--config", "/dev/null", "--database-url", &missing],
    )
    .expect(2)
    .stderr_has(&["there is no SQLite database at", "typo.db"]);
    assert!(!dir.path().join("typo.db").exists());
    assert!(!dir.path().join("copy.db").exists());

    let quoted = "it's a copy.db";
    backup(quoted, &flags).expect(0).stdout_has(&[quoted]);
    assert_eq!(integrity(&dir.path().join(quoted)), "ok");
}
