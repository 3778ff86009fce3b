//! A running engine for tests: a store, a catalog of test instances, a worker pool, and
//! deploy scripts that record what they were asked to do.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deploybot::deploy::provider::{HealthCheck, Provider, ProviderError, ReleaseSpec, RunContext};
use deploybot::deploy::{
    CanarySteps, DeployState, Deployment, DeploymentId, Instance, InstanceSpec, InstanceStore,
    ReleaseStore, Service, ServiceStore,
};
use deploybot::provider::catalog::ConfigCatalog;
use deploybot::provider::command::CommandProvider;
use deploybot::provider::health::{CommandHealth, HttpHealth, Probe};
use deploybot::provider::noop::NoopProvider;
use deploybot::worker::{Worker, WorkerSettings};
use tokio_util::sync::CancellationToken;

use crate::common::TestDb;

/// How a test instance deploys.
#[derive(Clone)]
pub enum ProviderDef {
    Noop,
    Script(PathBuf),
    RecreateOnly,
}

/// A test instance, turned into an `InstanceSpec` per worker pool.
#[derive(Clone)]
pub struct SpecDef {
    pub name: String,
    pub strategy: String,
    pub provider: ProviderDef,
    pub health: Option<Arc<dyn HealthCheck>>,
    pub supersede: bool,
    /// How long each canary step is watched before its health gate.
    pub pause: Duration,
}

pub fn noop_spec(name: &str, strategy: &str) -> SpecDef {
    SpecDef {
        name: name.into(),
        strategy: strategy.into(),
        provider: ProviderDef::Noop,
        health: None,
        supersede: false,
        pause: Duration::from_millis(100),
    }
}

pub fn command_spec(name: &str, strategy: &str, script: &Script) -> SpecDef {
    SpecDef {
        provider: ProviderDef::Script(script.path.clone()),
        ..noop_spec(name, strategy)
    }
}

pub fn recreate_only_spec(name: &str) -> SpecDef {
    SpecDef {
        provider: ProviderDef::RecreateOnly,
        ..noop_spec(name, "recreate")
    }
}

/// A provider that can only recreate (to test capability checks).
struct RecreateOnly;

#[async_trait]
impl Provider for RecreateOnly {
    fn kind(&self) -> &'static str {
        "recreate-only"
    }
    fn supports(&self, strategy: &str) -> bool {
        strategy == "recreate"
    }
    async fn start(&self, _: &RunContext, _: &str, _: &ReleaseSpec) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn shift_traffic(&self, _: &RunContext, _: &str, _: u8) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn retire(&self, _: &RunContext, _: &str) -> Result<(), ProviderError> {
        Ok(())
    }
}

fn build(def: &SpecDef, pool: &str) -> InstanceSpec {
    let provider: Arc<dyn Provider> = match &def.provider {
        ProviderDef::Noop => Arc::new(NoopProvider),
        ProviderDef::RecreateOnly => Arc::new(RecreateOnly),
        ProviderDef::Script(path) => Arc::new(CommandProvider {
            argv: vec![path.display().to_string(), pool.to_string()],
            noop_run: Vec::new(),
            timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(2),
            pass_env: Vec::new(),
        }),
    };
    InstanceSpec {
        name: def.name.clone(),
        environment: "production".into(),
        default_strategy: def.strategy.clone(),
        supersede: def.supersede,
        provider,
        health: def.health.clone(),
        gates: Vec::new(),
        watch: None,
        canary: CanarySteps {
            steps: vec![10, 50, 100],
            pause: def.pause,
        },
        wait_for_github: false,
        env: Default::default(),
        control: Default::default(),
    }
}

fn settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: 4,
        lease: Duration::from_secs(3),
        poll: Duration::from_millis(100),
        grace: Duration::from_secs(5),
        ..WorkerSettings::default()
    }
}

fn service(db: &TestDb, defs: &[SpecDef], name: &str) -> Service {
    let mut catalog = ConfigCatalog::default();
    for def in defs {
        catalog.insert("acme", build(def, name));
    }
    Service::new(
        Arc::clone(&db.store) as Arc<dyn ServiceStore>,
        Arc::new(catalog),
    )
}

fn pool(
    db: &TestDb,
    defs: &[SpecDef],
    name: &str,
) -> (Service, CancellationToken, tokio::task::JoinHandle<()>) {
    let service = service(db, defs, name);
    let shutdown = CancellationToken::new();
    let worker = Arc::new(Worker::new(db.store.clone(), &service, settings()));
    let running = tokio::spawn(worker.run(shutdown.clone()));
    (service, shutdown, running)
}

/// A second worker pool on the same database; stops when dropped.
pub struct Pool(CancellationToken);

impl Drop for Pool {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

pub struct Engine {
    pub db: TestDb,
    pub service: Service,
    defs: Vec<SpecDef>,
    instances: HashMap<String, Instance>,
    shutdown: CancellationToken,
    running: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Engine {
    pub async fn start(db: TestDb, defs: Vec<SpecDef>) -> Engine {
        let mut instances = HashMap::new();
        for def in &defs {
            let inst = db
                .store
                .upsert_instance("acme", &def.name, "acme/web", "production")
                .unwrap();
            instances.insert(def.name.clone(), inst);
        }
        let (service, shutdown, running) = pool(&db, &defs, "pool1");
        Engine {
            db,
            service,
            defs,
            instances,
            shutdown,
            running: std::sync::Mutex::new(Some(running)),
        }
    }

    /// A worker pool whose shutdown began before it started, run until it returns.
    pub async fn run_a_stopped_pool(&self) {
        let service = service(&self.db, &self.defs, "stopped");
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        Arc::new(Worker::new(self.db.store.clone(), &service, settings()))
            .run(shutdown)
            .await;
    }

    /// Stops the engine's own worker pool and waits until its run has returned (a claim
    /// it had begun is over).
    pub async fn stop_pool(&self) {
        self.shutdown.cancel();
        let running = self.running.lock().unwrap().take();
        if let Some(running) = running {
            running.await.unwrap();
        }
    }

    pub fn second_pool(&self) -> Pool {
        Pool(pool(&self.db, &self.defs, "pool2").1)
    }

    /// Another worker pool on the same database whose instances are `defs` (the same
    /// names, other settings), e.g. to run later deployments after `stop_pool`.
    pub fn pool_with(&self, defs: &[SpecDef]) -> Pool {
        Pool(pool(&self.db, defs, "pool3").1)
    }

    pub fn instance(&self, name: &str) -> &Instance {
        &self.instances[name]
    }

    /// Waits until the deployment is in a final state (pending and running are not).
    pub async fn wait_final(&self, id: DeploymentId) -> Deployment {
        let started = Instant::now();
        loop {
            let d = self.service.get_deployment("acme", id).await.unwrap();
            if !matches!(d.state, DeployState::Pending | DeployState::Running) {
                return d;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "deployment {id} still {} after 90 s: {:?}",
                d.state,
                d.progress
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The whole stored log, page by page.
    pub async fn full_log(&self, id: DeploymentId) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .service
                .read_logs("acme", id, after, 1000)
                .await
                .unwrap();
            let Some(last) = page.last() else {
                return lines;
            };
            after = last.seq;
            lines.extend(page.into_iter().map(|l| (l.stream, l.line)));
        }
    }

    /// The stored log, once the writer has flushed it.
    pub async fn log(&self, id: DeploymentId) -> Vec<String> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.service
            .read_logs("acme", id, 0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|l| format!("{} {}", l.stream, l.line))
            .collect()
    }

    pub async fn active_version(&self, instance: &str) -> Option<i64> {
        let id = self.instance(instance).id;
        self.db
            .store
            .active_release("acme", id)
            .unwrap()
            .map(|r| r.version)
    }

    /// How many distinct worker pools ran the recorded intervals.
    pub fn lease_owners_seen(&self, intervals: &[Interval]) -> usize {
        let mut pools: Vec<&str> = intervals.iter().map(|i| i.pool.as_str()).collect();
        pools.sort();
        pools.dedup();
        pools.len()
    }
}

/// A deploy script in a temporary directory, and what it recorded.
pub struct Script {
    pub path: PathBuf,
    dir: tempfile::TempDir,
}

impl Script {
    fn write(body: &str) -> Script {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.sh");
        let text = format!(
            "#!/bin/bash\nset -u\nDIR='{}'\n{body}\n",
            dir.path().display()
        );
        std::fs::write(&path, text).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
        std::fs::create_dir_all(dir.path().join("phases")).unwrap();
        Script { path, dir }
    }

    /// Records its whole environment per invocation (NUL-separated), and logs the phase.
    pub fn recording() -> Script {
        Script::write(
            r#"n=$(ls "$DIR/phases" | wc -l)
env -0 > "$DIR/phases/$(printf %06d "$n")"
echo "phase=$DEPLOY_PHASE slot=$DEPLOY_SLOT traffic=$DEPLOY_TRAFFIC_PERCENT"
echo "to stderr" >&2"#,
        )
    }

    /// Writes its process group id, then waits on a `sleep 600` child.
    pub fn sleeping() -> Script {
        Script::write(
            r#"if [ ! -e "$DIR/pgid" ]; then
  echo $$ > "$DIR/pgid.tmp" && mv "$DIR/pgid.tmp" "$DIR/pgid"
  sleep 600 &
  wait
fi"#,
        )
    }

    /// Records like `recording`; the start of `image` also writes its process group id
    /// and then waits on a `sleep 600` child.
    pub fn recording_and_sleeping_on(image: &str) -> Script {
        let body = r#"n=$(ls "$DIR/phases" | wc -l)
env -0 > "$DIR/phases/$(printf %06d "$n")"
if [ "$DEPLOY_PHASE" = start ] && [ "$DEPLOY_IMAGE" = "$SLEEP_ON" ]; then
  echo $$ > "$DIR/pgid.tmp" && mv "$DIR/pgid.tmp" "$DIR/pgid"
  sleep 600 &
  wait
fi"#;
        // A test's constant, written into the script as one single-quoted word.
        let quoted = image.replace('\'', "");
        Script::write(&format!("SLEEP_ON='{quoted}'\n{body}"))
    }

    /// Writes its process group id, then waits until `finish` is called, and succeeds.
    pub fn finishing_on_cue() -> Script {
        Script::write(
            r#"echo $$ > "$DIR/pgid.tmp" && mv "$DIR/pgid.tmp" "$DIR/pgid"
while [ ! -e "$DIR/go" ]; do sleep 0.05; done
echo "finished on cue""#,
        )
    }

    /// Prints 100,000 empty lines, then `DONE-MARKER` after a moment.
    pub fn flooding() -> Script {
        Script::write(
            r#"yes '' | head -n 100000
sleep 0.5
echo DONE-MARKER"#,
        )
    }

    /// Lets a `finishing_on_cue` script end.
    pub fn finish(&self) {
        std::fs::write(self.dir.path().join("go"), "").unwrap();
    }

    /// On the start phase: records (deployment, instance, image, pool, start ns, end ns).
    pub fn interval_recording() -> Script {
        Script::write(
            r#"if [ "$DEPLOY_PHASE" = start ]; then
  start=$(date +%s%N)
  sleep 0.1
  end=$(date +%s%N)
  echo "$DEPLOY_ID $DEPLOY_INSTANCE $DEPLOY_IMAGE $1 $start $end" >> "$DIR/intervals"
fi"#,
        )
    }

    pub fn phases(&self) -> Vec<BTreeMap<String, String>> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path().join("phases"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| {
                std::fs::read(f)
                    .unwrap()
                    .split(|b| *b == 0)
                    .filter_map(|kv| {
                        let kv = String::from_utf8_lossy(kv);
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                    })
                    .collect()
            })
            .collect()
    }

    pub fn clear(&self) {
        let phases = self.dir.path().join("phases");
        std::fs::remove_dir_all(&phases).unwrap();
        std::fs::create_dir_all(&phases).unwrap();
    }

    pub async fn wait_for_pgid(&self) -> i32 {
        let file = self.dir.path().join("pgid");
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&file)
                && let Ok(pgid) = text.trim().parse()
            {
                // Let bash start its `sleep` child.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return pgid;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the script never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn intervals(&self) -> Vec<Interval> {
        std::fs::read_to_string(self.dir.path().join("intervals"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                Interval {
                    deployment: f[0].into(),
                    instance: f[1].into(),
                    image: f[2].into(),
                    pool: f[3].into(),
                    start: f[4].parse().unwrap(),
                    end: f[5].parse().unwrap(),
                }
            })
            .collect()
    }
}

/// One recorded start phase.
#[derive(Debug, Clone)]
pub struct Interval {
    pub deployment: String,
    pub instance: String,
    pub image: String,
    pub pool: String,
    pub start: u128,
    pub end: u128,
}

/// No two start phases of one instance overlap in time.
pub fn assert_no_overlap(intervals: &[Interval]) {
    let mut by_instance: HashMap<&str, Vec<&Interval>> = HashMap::new();
    for i in intervals {
        by_instance.entry(i.instance.as_str()).or_default().push(i);
    }
    for (instance, mut list) in by_instance {
        list.sort_by_key(|i| i.start);
        for pair in list.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "{instance}: {} and {} ran at the same time",
                pair[0].deployment,
                pair[1].deployment
            );
        }
    }
}

/// Some deployment of `a` ran while one of `b` did.
pub fn instances_overlapped(intervals: &[Interval], a: &str, b: &str) -> bool {
    intervals.iter().filter(|i| i.instance == a).any(|x| {
        intervals
            .iter()
            .filter(|i| i.instance == b)
            .any(|y| x.start < y.end && y.start < x.end)
    })
}

/// True when no live (non-zombie) process is in the process group.
pub fn group_is_gone(pgid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .any(|stat| {
                // pid (comm) state ppid pgrp …; comm may contain spaces and parentheses.
                let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                    return false;
                };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
            });
        if !alive {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real HTTP health endpoint on 127.0.0.1 that answers 200 for a budget of requests,
/// then 503.
pub struct HealthServer {
    pub url: String,
    pub requests: Arc<AtomicU64>,
    budget: Arc<AtomicU64>,
}

impl HealthServer {
    pub fn start() -> HealthServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicU64::new(0));
        let budget = Arc::new(AtomicU64::new(u64::MAX));
        let (r, b) = (Arc::clone(&requests), Arc::clone(&budget));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                r.fetch_add(1, Ordering::SeqCst);
                let healthy = b
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let status = if healthy {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
            }
        });
        HealthServer {
            url,
            requests,
            budget,
        }
    }

    /// Healthy for the next `n` requests, unhealthy after.
    pub fn healthy_for(&self, n: u64) {
        self.budget.store(n, Ordering::SeqCst);
    }

    pub fn check(&self) -> Arc<dyn HealthCheck> {
        Arc::new(
            HttpHealth::new(
                &self.url,
                Probe {
                    timeout: Duration::from_secs(1),
                    interval: Duration::from_millis(100),
                    deadline: Duration::from_millis(800),
                },
            )
            .unwrap(),
        )
    }
}

/// A health command that appends what it was told (phase, slot, traffic, image) to a file
/// on every run, and passes unless the image is `x:bad`.
pub struct HealthLog {
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl HealthLog {
    pub fn in_temp_dir() -> HealthLog {
        let dir = tempfile::tempdir().unwrap();
        HealthLog {
            file: dir.path().join("checks"),
            _dir: dir,
        }
    }

    pub fn check(&self) -> Arc<dyn HealthCheck> {
        let script = r#"echo "$DEPLOY_PHASE $DEPLOY_SLOT $DEPLOY_TRAFFIC_PERCENT $DEPLOY_IMAGE v$DEPLOY_RELEASE_VERSION" >> "$1"
test "$DEPLOY_IMAGE" != x:bad"#;
        Arc::new(CommandHealth::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                script.into(),
                "sh".into(),
                self.file.display().to_string(),
            ],
            Probe {
                timeout: Duration::from_secs(10),
                interval: Duration::from_millis(100),
                deadline: Duration::from_millis(500),
            },
            Vec::new(),
        ))
    }

    /// One line per run of the health command: "PHASE SLOT TRAFFIC IMAGE vVERSION".
    pub fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}
