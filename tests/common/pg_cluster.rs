//! Throwaway PostgreSQL clusters made from the installed server binaries (`initdb`,
//! `pg_ctl`): listening on 127.0.0.1 only, on a free port, with their data and socket in a
//! directory of their own. Run as the `postgres` user when the tests run as root (initdb
//! refuses root). A detached reaper stops a cluster and removes its directory once no
//! process registered under `users/` is alive, so a killed test run leaves nothing behind.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

const NO_BINARIES: &str = "PostgreSQL's server binaries (initdb, pg_ctl) are needed for the \
     PostgreSQL tests: apt-get install postgresql, or set TEST_DATABASE_URL";

/// Settings for a server that only tests use: nothing it writes needs to survive a crash.
const SETTINGS: &str = "listen_addresses = '127.0.0.1'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
";

/// The installed server binaries and the user they run as.
#[derive(Clone)]
pub struct Binaries {
    bin: PathBuf,
    /// `postgres`'s uid and gid when the tests run as root, which initdb refuses.
    owner: Option<(u32, u32)>,
}

impl Binaries {
    /// The server binaries, or `None` when none are installed.
    pub fn find() -> Option<Binaries> {
        let bin = bin_dir()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let owner = root.then(|| (id("-u"), id("-g")));
        Some(Binaries { bin, owner })
    }

    /// The server binaries; panics with what to install when there are none.
    pub fn require() -> Binaries {
        Binaries::find().unwrap_or_else(|| panic!("{NO_BINARIES}"))
    }

    /// `program` from the server binaries, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = match self.owner {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        // The caller's directory may be closed to the postgres user.
        command.current_dir("/").stdin(Stdio::null());
        command
    }

    /// Makes `dir` (mode `mode`), owned by the user the server runs as.
    fn own_dir(&self, dir: &Path, mode: u32) {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir.display()));
        }
    }
}

/// The directory holding `initdb`: `pg_config --bindir` when it has one, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian), else the directory of `initdb` on the PATH.
fn bin_dir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| has_initdb(d)) {
        return Some(dir);
    }
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let entry = e.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_initdb(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())?
        .into_iter()
        .find(|dir| has_initdb(dir))
}

/// `id FLAG postgres`: the postgres user's uid or gid.
fn id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "the tests run as root, so PostgreSQL runs as the user postgres, which is missing"
            )
        })
}

/// One cluster: `dir/data` holds its data, `dir/run` its socket and log.
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bins: Binaries,
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

impl Cluster {
    /// The cluster in `dir` that was started on `port` (see `answers`).
    pub fn at(bins: &Binaries, dir: &Path, port: u16) -> Cluster {
        Cluster {
            dir: dir.to_path_buf(),
            port,
            bins: bins.clone(),
        }
    }

    /// Makes a new cluster in `dir` (which must hold no cluster) and starts it.
    pub fn create(bins: &Binaries, dir: &Path) -> Cluster {
        let mut cluster = Cluster::at(bins, dir, 0);
        cluster.init();
        cluster.start_on_free_port();
        cluster
    }

    /// The URL of its `postgres` database, as user postgres (trust auth).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn init(&self) {
        self.bins.own_dir(&self.data(), 0o700);
        self.bins.own_dir(&self.run(), 0o755);
        let data = self.data();
        let out = self
            .bins
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg("--no-sync")
            .output()
            .unwrap_or_else(|e| panic!("run initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb {} failed: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let socket = format!("unix_socket_directories = '{}'\n", self.run().display());
        let mut conf = fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(SETTINGS);
        conf.push_str(&socket);
        fs::write(data.join("postgresql.conf"), conf).unwrap();
    }

    /// Starts the server on a free port; another process may take the port between the
    /// probe and the start, so a few ports are tried.
    fn start_on_free_port(&mut self) {
        for _ in 0..5 {
            self.port = free_port();
            if self.pg_ctl_start() {
                return;
            }
        }
        let log = fs::read_to_string(self.run().join("log")).unwrap_or_default();
        panic!("PostgreSQL in {} did not start:\n{log}", self.dir.display());
    }

    fn pg_ctl_start(&self) -> bool {
        self.bins
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.run().join("log"))
            .args([
                "-w",
                "-t",
                "60",
                "-o",
                &format!("-p {}", self.port),
                "start",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `pg_ctl` on this cluster's data directory.
    fn pg_ctl(&self) -> Command {
        let mut command = self.bins.command("pg_ctl");
        command.arg("-D").arg(self.data());
        command
    }

    /// `pg_ctl -w ACTION` (`restart` keeps the port): whether it succeeded.
    pub fn ctl(&self, action: &str) -> bool {
        self.pg_ctl()
            .args(["-w", "-t", "60", action])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The command that stops the server at once (nothing in it needs a clean shutdown).
    fn stop_command(&self) -> Command {
        let mut command = self.pg_ctl();
        command.args(["-w", "-m", "immediate", "stop"]);
        command
    }

    /// Stops the server, if one runs on this cluster's data.
    pub fn stop(&self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self
                .stop_command()
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Whether this cluster's server answers on its port (and not some other server that
    /// took the port since).
    pub fn answers(&self) -> bool {
        let url = format!("{}?connect_timeout=5", self.admin_url());
        let Ok(mut conn) = PgConnection::establish(&url) else {
            return false;
        };
        diesel::sql_query("SELECT current_setting('data_directory') AS value")
            .get_result::<Setting>(&mut conn)
            .is_ok_and(|s| Path::new(&s.value) == self.data())
    }

    /// Starts the detached reaper: it stops this cluster and removes `dir` once no process
    /// listed in `dir/users` has been alive for `idle` (checked under `dir/lock`).
    pub fn spawn_reaper(&self, idle: Duration) {
        let stop = self.stop_command();
        let mut reaper = Command::new("setsid");
        reaper
            .args(["-f", "sh", "-c", REAPER, "reaper"])
            .arg(&self.dir)
            .arg(idle.as_secs().max(1).to_string())
            .arg(stop.get_program())
            .args(stop.get_args())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = reaper.status().is_ok_and(|s| s.success());
        assert!(started, "start the reaper of {}", self.dir.display());
    }
}

/// The reaper (`sh -c`, detached with `setsid -f`): `$1` the cluster's directory, `$2` the
/// idle seconds, then the command that stops the server. Each second, under the lock, it
/// touches `$1/reaper` (its heartbeat) and forgets registered processes that are gone; once
/// none is left for `$2` checks in a row, it stops the server and removes the directory
/// (renamed first, so a process making the directory anew never meets it half-removed).
/// A lock taken on a file that was removed meanwhile (`-ef` fails) belongs to a directory
/// that is gone: it is let go.
const REAPER: &str = r#"
dir=$1; limit=$2; shift 2
idle=0
while sleep 1; do
    exec 9<"$dir/lock" || exit 0
    flock 9
    if [ "$dir/lock" -ef "/proc/$$/fd/9" ]; then
        touch "$dir/reaper"
        live=
        for user in "$dir"/users/*; do
            [ -e "$user" ] || continue
            if kill -0 "${user##*/}" 2>/dev/null; then live=1; else rm -f "$user"; fi
        done
        if [ -n "$live" ]; then idle=0; else idle=$((idle + 1)); fi
        if [ "$idle" -ge "$limit" ]; then
            "$@" >/dev/null 2>&1
            mv "$dir" "$dir.gone.$$" && rm -rf "$dir.gone.$$"
            exit 0
        fi
    fi
    exec 9<&-
done
"#;

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Registers this process as a user of the cluster in `dir` (the reaper keeps the cluster
/// while a registered process lives).
pub fn register(dir: &Path) {
    let users = dir.join("users");
    fs::create_dir_all(&users).unwrap();
    fs::write(users.join(std::process::id().to_string()), b"").unwrap();
}

/// A cluster of one test's own, stopped and removed when dropped (or by its reaper once
/// the test process is gone, if it is killed).
pub struct OwnCluster {
    pub cluster: Cluster,
}

impl OwnCluster {
    /// Starts a new cluster in a new temporary directory.
    pub fn start(bins: &Binaries) -> OwnCluster {
        let dir = tempfile::Builder::new()
            .prefix("deploybot-test-postgres-")
            .tempdir()
            .expect("temp dir")
            .keep();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("lock"), b"").unwrap();
        register(&dir);
        let cluster = Cluster::create(bins, &dir);
        cluster.spawn_reaper(Duration::from_secs(1));
        OwnCluster { cluster }
    }
}

impl Drop for OwnCluster {
    /// Stops and removes the cluster under its lock, so the reaper does not write into the
    /// directory while it goes.
    fn drop(&mut self) {
        let lock = File::open(self.cluster.dir.join("lock"));
        if let Ok(lock) = &lock {
            let _ = lock.lock();
        }
        self.cluster.stop();
        let _ = fs::remove_dir_all(&self.cluster.dir);
    }
}
