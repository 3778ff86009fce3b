//! Rollback time: "rollback asked → previous release serving" on a canary instance (steps
//! 10/50/100, a pause of `BENCH_ROLLBACK_PAUSE_MS` at each step, 2 s by default, a command
//! provider and a command health check that each append one line to a file and exit).
//!
//! Two ways back to the release that served before the last change, measured in turns:
//!
//! - **fast path**: `Service::rollback(Previous)`, which the worker runs as one start of
//!   the earlier release in the live slot and one health check;
//! - **full canary**: `Service::deploy` of the image that served before, which runs the
//!   instance's whole canary strategy again (start, three steps with their pauses, promote,
//!   retire).
//!
//! Each is timed from the call to the deployment being `succeeded` (polled every 2 ms), and
//! the provider and health commands it ran are counted. The Service and a Worker run in this
//! process as `deploybot serve` runs them (default worker settings).
//!
//! Run: `cargo bench --bench rollback`. Environment: `BENCH_BACKENDS` (`sqlite,postgres`),
//! `BENCH_ROLLBACK_RUNS` (5 of each kind per backend), `BENCH_ROLLBACK_PAUSE_MS` (2000),
//! `TEST_DATABASE_URL` (the PostgreSQL server, as for the tests), `BENCH_OUT`.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestDb;
use deploybot::deploy::{
    CanarySteps, DeployRequest, DeployState, Deployment, DeploymentId, Instance, InstanceSpec,
    InstanceStore, RollbackTarget, Service, ServiceStore,
};
use deploybot::provider::catalog::ConfigCatalog;
use deploybot::provider::command::CommandProvider;
use deploybot::provider::health::{CommandHealth, Probe};
use deploybot::worker::{Worker, WorkerSettings};
use support::{Results, ms, stats};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "acme";

/// Appends "$DEPLOY_PHASE $DEPLOY_SLOT" to the file named by its first argument.
const RECORD: &str = "#!/bin/sh\necho \"$DEPLOY_PHASE $DEPLOY_SLOT\" >> \"$1\"\n";

/// The script, and the files where provider calls and health checks are counted.
struct Counters {
    _dir: tempfile::TempDir,
    script: PathBuf,
    calls: PathBuf,
    checks: PathBuf,
}

impl Counters {
    fn new() -> Counters {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("record.sh");
        std::fs::write(&script, RECORD).expect("write the script");
        let mut perms = std::fs::metadata(&script).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).expect("chmod");
        Counters {
            calls: dir.path().join("calls"),
            checks: dir.path().join("checks"),
            script,
            _dir: dir,
        }
    }

    fn lines(file: &Path) -> usize {
        std::fs::read_to_string(file).map_or(0, |t| t.lines().count())
    }

    /// (provider calls, health checks) so far.
    fn counts(&self) -> (usize, usize) {
        (Self::lines(&self.calls), Self::lines(&self.checks))
    }
}

/// A Service over `db` with one canary instance, `web`.
fn engine(db: &TestDb, counters: &Counters, pause: Duration) -> (Service, Instance) {
    let instance = db
        .store
        .upsert_instance(TENANT, "web", "acme/web", "production")
        .expect("instance");
    let script = counters.script.display().to_string();
    let provider = CommandProvider {
        argv: vec![script.clone(), counters.calls.display().to_string()],
        noop_run: Vec::new(),
        timeout: Duration::from_secs(60),
        kill_grace: Duration::from_secs(2),
        pass_env: Vec::new(),
    };
    let health = CommandHealth::new(
        vec![script, counters.checks.display().to_string()],
        Probe {
            timeout: Duration::from_secs(10),
            interval: Duration::from_millis(100),
            deadline: Duration::from_secs(10),
        },
        Vec::new(),
    );
    let mut catalog = ConfigCatalog::default();
    catalog.insert(
        TENANT,
        InstanceSpec {
            name: "web".into(),
            environment: "production".into(),
            default_strategy: "canary".into(),
            supersede: false,
            provider: Arc::new(provider),
            health: Some(Arc::new(health)),
            gates: Vec::new(),
            watch: None,
            canary: CanarySteps {
                steps: vec![10, 50, 100],
                pause,
            },
            wait_for_github: false,
            env: Default::default(),
            control: Default::default(),
        },
    );
    let service = Service::new(
        Arc::clone(&db.store) as Arc<dyn ServiceStore>,
        Arc::new(catalog),
    );
    (service, instance)
}

fn request(instance: &Instance, image: &str) -> DeployRequest {
    DeployRequest {
        instance_id: instance.id,
        image: image.into(),
        env: Default::default(),
        strategy: String::new(),
        notes: "bench".into(),
        commit_sha: "a10867b14bb761a232cd80139fbd4c0d33264240".into(),
        params: Default::default(),
        noop: false,
    }
}

async fn succeeded(service: &Service, id: DeploymentId) -> Deployment {
    let started = Instant::now();
    loop {
        let d = service.get_deployment(TENANT, id).await.expect("get");
        if !matches!(d.state, DeployState::Pending | DeployState::Running) {
            assert_eq!(d.state, DeployState::Succeeded, "{}", d.error);
            return d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "deployment {id} still {} after 120 s",
            d.state
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One way back, as measured: wall-clock ms, provider calls, health checks.
#[derive(Default)]
struct Samples {
    ms: Vec<f64>,
    calls: Vec<usize>,
    checks: Vec<usize>,
}

/// `runs` rounds of: a fast rollback to the release before, then a deploy of the image
/// that served before it (the full canary). Each leaves the other's starting point.
async fn measure(db: TestDb, runs: usize, pause: Duration) -> (Samples, Samples) {
    let counters = Counters::new();
    let (service, instance) = engine(&db, &counters, pause);
    let shutdown = CancellationToken::new();
    let worker = Arc::new(Worker::new(
        db.store.clone(),
        &service,
        WorkerSettings::default(),
    ));
    tokio::spawn(worker.run(shutdown.clone()));
    for image in ["ghcr.io/acme/web:a", "ghcr.io/acme/web:b"] {
        let d = service
            .deploy(TENANT, request(&instance, image), "bench")
            .await
            .expect("deploy");
        succeeded(&service, d.id).await;
    }
    let (mut fast, mut full) = (Samples::default(), Samples::default());
    for _ in 0..runs {
        // web:b serves, web:a served before it.
        let (calls, checks) = counters.counts();
        let asked = Instant::now();
        let d = service
            .rollback(TENANT, instance.id, RollbackTarget::Previous, "bench")
            .await
            .expect("rollback");
        succeeded(&service, d.id).await;
        fast.ms.push(asked.elapsed().as_secs_f64() * 1000.0);
        let (c, h) = counters.counts();
        fast.calls.push(c - calls);
        fast.checks.push(h - checks);

        // web:a serves again; going back to web:b the long way is a new deploy of it.
        let (calls, checks) = counters.counts();
        let asked = Instant::now();
        let d = service
            .deploy(TENANT, request(&instance, "ghcr.io/acme/web:b"), "bench")
            .await
            .expect("deploy");
        succeeded(&service, d.id).await;
        full.ms.push(asked.elapsed().as_secs_f64() * 1000.0);
        let (c, h) = counters.counts();
        full.calls.push(c - calls);
        full.checks.push(h - checks);
    }
    shutdown.cancel();
    (fast, full)
}

/// "n" when every sample is n, else "min–max".
fn span(values: &[usize]) -> String {
    let (lo, hi) = (values.iter().min(), values.iter().max());
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo == hi => lo.to_string(),
        (Some(lo), Some(hi)) => format!("{lo}–{hi}"),
        _ => "—".into(),
    }
}

fn main() {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let runs = support::env_number("BENCH_ROLLBACK_RUNS", 5usize);
    let pause = Duration::from_millis(support::env_number("BENCH_ROLLBACK_PAUSE_MS", 2000u64));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut results = Results::create("rollback");
    results.detail(&format!(
        "Rollback: a canary instance (steps 10/50/100, {} pause), command provider and \
         command health check; {runs} runs of each way back per backend, in turns.",
        humantime::format_duration(pause)
    ));
    results.detail("");
    results.detail("| backend | way back | asked → serving, median / min / max ms | provider calls | health checks | load before → after |");
    results.detail("| --- | --- | --- | --- | --- | --- |");
    for backend in backends.split(',').map(str::trim) {
        let (subject, fresh): (&str, fn() -> TestDb) = match backend {
            "sqlite" => (support::SQLITE, TestDb::sqlite),
            "postgres" => (support::POSTGRES, TestDb::postgres),
            other => panic!("BENCH_BACKENDS: unknown backend {other:?} (sqlite, postgres)"),
        };
        let load_before = support::load();
        let (fast, full) = runtime.block_on(measure(fresh(), runs, pause));
        for (way, samples) in [("fast path", fast), ("full canary", full)] {
            let s = stats(samples.ms.clone());
            results.detail(&format!(
                "| {backend} | {way} | {} / {} / {} | {} | {} | {load_before} → {} |",
                ms(s.p50),
                ms(s.min),
                ms(s.max),
                span(&samples.calls),
                span(&samples.checks),
                support::load()
            ));
            results.row(
                "Rollback",
                &format!("{way}: asked → previous release serving, median ms"),
                subject,
                &ms(s.p50),
            );
        }
    }
}
