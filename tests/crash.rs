//! Crash recovery with the real binary: kill -9 `deploybot serve` while a deployment runs,
//! start it again, and the deployment ends failed ("worker lost; outcome unknown") within
//! the lease, while a deployment that was still queued runs after the restart.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestDb;
use deploybot::config::Config;
use deploybot::deploy::{DeployRequest, DeployState, InstanceStore, Service, ServiceStore, Store};
use deploybot::provider::catalog::ConfigCatalog;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, database_url: &str, port: u16) -> std::path::PathBuf {
    let script = dir.join("ship.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\n# The first deployment hangs, deaf to SIGTERM; later ones succeed.\n\
             if [ \"$DEPLOY_IMAGE\" = img:hang ]; then trap '' TERM; echo $$ > '{dir}/hung.pgid'; sleep 600 & wait; fi\n\
             echo \"$DEPLOY_ID\" >> '{dir}/started'\n\
             if [ \"$DEPLOY_IMAGE\" = img:slow ]; then sleep 2; fi\n\
             echo \"$DEPLOY_ID\" >> '{dir}/ran'\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    let path = dir.join("deploybot.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    write!(
        file,
        r#"database_url = "{database_url}"
listen = "127.0.0.1:{port}"
webhook_secrets = ["test-secret"]

[worker]
concurrency = 2
lease = "2s"

[[instances]]
name = "web"
repo = "acme/web"
environment = "production"
image = "ghcr.io/acme/web:{{sha}}"
strategy = "recreate"

[instances.provider]
kind = "command"
run = ["{script}"]
timeout = "10m"
"#,
        script = script.display()
    )
    .unwrap();
    path
}

struct Server(Child);

/// Whether the server on `port` answers `GET /healthz` with 200.
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head.ends_with(b" 200")
}

impl Server {
    fn start(config: &Path, port: u16) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_deploybot"))
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("DATABASE_URL")
            .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
            .env("DEPLOYBOT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // The port is bound before the database is ready: wait for an HTTP answer, which
        // comes only once the instances are stored.
        let started = Instant::now();
        while !answers_http(port) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server(child)
    }

    fn kill9(mut self) {
        // Child::kill sends SIGKILL: no chance to clean up, as in a crash.
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process of the group named in `pgid_file` is alive (zombies do not count).
fn group_alive(pgid_file: &Path) -> bool {
    let pgid = std::fs::read_to_string(pgid_file)
        .unwrap()
        .trim()
        .to_string();
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[2] == pgid && fields[0] != "Z" && fields[0] != "X"
    })
}

struct KillGroupOnDrop(std::path::PathBuf);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if group_alive(&self.0) {
            kill_group(&self.0);
        }
    }
}

/// Kills the orphaned deploy script of the crashed server. (Not with the `kill` command:
/// procps-ng 4.0.2 sends `kill -KILL -PGID` to every process.)
fn kill_group(pgid_file: &Path) {
    let pgid: i32 = std::fs::read_to_string(pgid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    // SAFETY: killpg only sends a signal; the group is the script's own.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
}

/// A server started on the test's config, and a way to queue deployments of `web` through
/// the library, as the webhook or API would.
struct Setup {
    dir: tempfile::TempDir,
    config_path: std::path::PathBuf,
    port: u16,
    server: Server,
    service: Service,
    instance: deploybot::deploy::InstanceId,
    rt: tokio::runtime::Runtime,
}

impl Setup {
    fn start(db: &TestDb) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config_path = write_config(dir.path(), &db.url, port);
        let config = Config::load(Some(&config_path)).unwrap();
        let server = Server::start(&config_path, port);
        let service = Service::new(
            Arc::clone(&db.store) as Arc<dyn ServiceStore>,
            Arc::new(ConfigCatalog::from_config(&config).unwrap()),
        );
        let instance = db.store.find_instance("acme", "web").unwrap().id;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Setup {
            dir,
            config_path,
            port,
            server,
            service,
            instance,
            rt,
        }
    }

    fn deploy(&self, image: &str) -> deploybot::deploy::Deployment {
        let req = DeployRequest {
            instance_id: self.instance,
            image: image.into(),
            env: BTreeMap::new(),
            strategy: String::new(),
            notes: String::new(),
            commit_sha: String::new(),
            params: Default::default(),
            noop: false,
        };
        self.rt
            .block_on(self.service.deploy("acme", req, "test"))
            .unwrap()
    }
}

fn crash_and_recover(db: TestDb) {
    let setup = Setup::start(&db);
    let (dir, config_path, port) = (&setup.dir, &setup.config_path, setup.port);
    let hung = setup.deploy("img:hang");
    let queued = setup.deploy("img:next");
    let state = |id| db.store.get_deployment("acme", id).unwrap().state;

    wait_until(
        "the first deployment to run",
        Duration::from_secs(30),
        || dir.path().join("hung.pgid").exists(),
    );
    assert_eq!(state(hung.id), DeployState::Running);
    assert_eq!(
        state(queued.id),
        DeployState::Pending,
        "one running per instance"
    );
    setup.server.kill9();
    let pgid_file = dir.path().join("hung.pgid");
    // Whatever happens below, the test leaves no `sleep 600` behind.
    let _cleanup = KillGroupOnDrop(pgid_file.clone());
    assert!(
        group_alive(&pgid_file),
        "the deploy command outlives the killed server"
    );

    let killed_at = Instant::now();
    let _server = Server::start(config_path, port);
    // The restarted server stops the command the killed one left running (SIGTERM, which
    // it ignores, then SIGKILL 5 s later) before it settles the deployment: the queued
    // deployment of the same instance never starts beside it.
    let started = dir.path().join("started");
    wait_until(
        "the lost deployment's command to be stopped",
        Duration::from_secs(30),
        || {
            // Read before the group: what was seen here happened before it was alive.
            let queued_started = std::fs::read_to_string(&started)
                .is_ok_and(|ids| ids.contains(&queued.id.to_string()));
            let settled = state(hung.id) != DeployState::Running;
            let alive = group_alive(&pgid_file);
            assert!(
                !(queued_started && alive),
                "the queued deployment started while the lost one's command still ran"
            );
            assert!(
                !(settled && alive),
                "the lost deployment was settled while its command still ran"
            );
            !alive
        },
    );
    wait_until(
        "the lost deployment to be recovered",
        Duration::from_secs(15),
        || state(hung.id) != DeployState::Running,
    );
    let recovered = db.store.get_deployment("acme", hung.id).unwrap();
    assert_eq!(recovered.state, DeployState::Failed);
    assert_eq!(recovered.error, "worker lost; outcome unknown");
    assert!(recovered.finished_at.is_some());
    // Lease 2 s, checked every 0.5 s, then the 5 s between SIGTERM and SIGKILL: settled
    // within seconds of the crash.
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed_at.elapsed()
    );
    wait_until(
        "the queued deployment to run after the restart",
        Duration::from_secs(30),
        || state(queued.id) == DeployState::Succeeded,
    );
    let ran = std::fs::read_to_string(dir.path().join("ran")).unwrap();
    assert_eq!(
        ran.lines().filter(|l| *l == queued.id.to_string()).count(),
        1,
        "{ran}"
    );
    assert!(
        !ran.contains(&hung.id.to_string()),
        "the lost deployment was not run again"
    );
}

#[test]
fn sqlite_crash_and_recover() {
    crash_and_recover(TestDb::sqlite());
}

#[test]
fn postgres_crash_and_recover() {
    crash_and_recover(TestDb::postgres());
}

/// SIGTERM: no new claims, the running deployment finishes within the grace period, the
/// queued one stays queued for the next start, and the process exits cleanly.
fn graceful_shutdown(db: TestDb) {
    let mut setup = Setup::start(&db);
    // img:slow takes two seconds (the script sleeps 2 for it).
    let slow = setup.deploy("img:slow");
    let queued = setup.deploy("img:next");
    let state = |id| db.store.get_deployment("acme", id).unwrap().state;
    wait_until(
        "the slow deployment to run",
        Duration::from_secs(30),
        || state(slow.id) == DeployState::Running,
    );
    // SAFETY: kill only sends SIGTERM to our own child.
    unsafe { libc::kill(setup.server.0.id() as i32, libc::SIGTERM) };
    let status = setup.server.0.wait().unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(
        state(slow.id),
        DeployState::Succeeded,
        "the running deployment finished"
    );
    assert_eq!(
        state(queued.id),
        DeployState::Pending,
        "nothing new was claimed"
    );
}

#[test]
fn sqlite_graceful_shutdown() {
    graceful_shutdown(TestDb::sqlite());
}

#[test]
fn postgres_graceful_shutdown() {
    graceful_shutdown(TestDb::postgres());
}
