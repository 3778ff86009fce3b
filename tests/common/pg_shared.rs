//! The throwaway PostgreSQL server that every test process of a run shares, used when
//! `TEST_DATABASE_URL` is unset. Its directory (under the temp dir) holds the cluster, the
//! `port`, a `lock`, the registered test processes (`users/PID`) and the reaper's
//! heartbeat. The first process to need it starts it under the lock; later ones reuse it.
//! The reaper stops it and removes the directory once no registered process has been alive
//! for a few seconds; a process that waited for the lock meanwhile starts a new one. Each
//! test's database is cloned from one template, migrated once per set of migrations.

use std::fs::{self, File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use deploybot::store::DieselStore;
use diesel::sql_types::BigInt;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

use super::pg_cluster::{Binaries, Cluster, register};

/// How long the server outlives the last test process using it.
const IDLE: Duration = Duration::from_secs(10);
/// A reaper whose heartbeat is older than this is gone (it beats each second, and waits
/// for the lock at most as long as a start takes).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The shared server of this run, as this process joined it.
pub struct Shared {
    pub admin_url: String,
    /// The migrated database each test's database is cloned from.
    pub template: String,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// The shared server, started by this call if no live one exists; this process stays
/// registered as one of its users until it exits.
pub fn shared() -> &'static Shared {
    SHARED.get_or_init(join)
}

fn join() -> Shared {
    let bins = Binaries::require();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("deploybot-test-postgres-{euid}"));
    for _ in 0..100 {
        // None: the reaper removed the directory while this process waited for the lock.
        let Some(_lock) = lock(&dir) else { continue };
        register(&dir);
        let (cluster, started) = match running(&bins, &dir) {
            Some(cluster) => (cluster, false),
            None => (start(&bins, &dir), true),
        };
        // A second reaper, when the first is only slow, does no harm.
        if started || !reaper_alive(&dir) {
            cluster.spawn_reaper(IDLE);
            fs::write(dir.join("reaper"), b"").unwrap();
        }
        let template = template(&cluster);
        return Shared {
            admin_url: cluster.admin_url(),
            template,
        };
    }
    panic!("could not take the lock in {}", dir.display());
}

/// Takes `dir/lock`; `None` when the file locked is no longer the directory's lock.
fn lock(dir: &Path) -> Option<File> {
    fs::create_dir_all(dir).ok()?;
    // The server runs as postgres when the tests run as root: it must reach its files.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).ok()?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    file.lock().expect("lock the shared PostgreSQL's directory");
    let held = file.metadata().ok()?;
    let current = fs::metadata(&path).ok()?;
    (held.dev() == current.dev() && held.ino() == current.ino()).then_some(file)
}

/// The cluster in `dir` when its server is up.
fn running(bins: &Binaries, dir: &Path) -> Option<Cluster> {
    let port = fs::read_to_string(dir.join("port"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cluster = Cluster::at(bins, dir, port);
    cluster.answers().then_some(cluster)
}

/// Starts a new cluster in `dir`, after stopping and removing what a killed run left.
fn start(bins: &Binaries, dir: &Path) -> Cluster {
    Cluster::at(bins, dir, 0).stop();
    for stale in ["data", "run"] {
        let _ = fs::remove_dir_all(dir.join(stale));
    }
    let cluster = Cluster::create(bins, dir);
    fs::write(dir.join("port"), cluster.port.to_string()).unwrap();
    cluster
}

fn reaper_alive(dir: &Path) -> bool {
    fs::metadata(dir.join("reaper"))
        .and_then(|m| m.modified())
        .is_ok_and(|at| at.elapsed().is_ok_and(|age| age < HEARTBEAT))
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The template for the current migrations, migrated by this call if it is missing (or
/// was left half-made by a killed process).
fn template(cluster: &Cluster) -> String {
    let name = format!("deploybot_template_{:016x}", migrations_fingerprint());
    let admin = cluster.admin_url();
    let mut conn = PgConnection::establish(&admin)
        .unwrap_or_else(|e| panic!("connect to the test PostgreSQL ({admin}): {e}"));
    let ready: Count = diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM pg_database WHERE datname = '{name}' AND NOT datallowconn"
    ))
    .get_result(&mut conn)
    .expect("look for the template");
    if ready.n == 0 {
        build_template(&mut conn, &admin, &name);
    }
    name
}

/// Creates and migrates `name`, then closes it to connections: `CREATE DATABASE ...
/// TEMPLATE` needs a template nobody is connected to.
fn build_template(conn: &mut PgConnection, admin: &str, name: &str) {
    let mut run = |query: String| {
        diesel::sql_query(&query)
            .execute(conn)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
    };
    run(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    run(format!("CREATE DATABASE {name}"));
    let url = super::with_database(admin, name);
    let store = DieselStore::connect(&url).expect("open the template");
    store.migrate().expect("migrate the template");
    drop(store);
    run(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    run(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
}

/// A hash of `migrations/postgres`, so a server still up from a run before a migration
/// changed gets a new template.
fn migrations_fingerprint() -> u64 {
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut paths = Vec::new();
    files(&root, &mut paths);
    paths.sort();
    let mut hasher = DefaultHasher::new();
    for path in paths {
        path.strip_prefix(&root).unwrap_or(&path).hash(&mut hasher);
        fs::read(&path).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}
