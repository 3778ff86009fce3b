//! Queue overhead: the deploy Service and a Worker in this process, with the
//! `noop` provider, on SQLite (a temp file) and PostgreSQL (a fresh database), both
//! created like the tests do (`tests/common`).
//!
//! 1. Throughput: 500 deployments over 10 instances are queued through `Service::deploy`
//!    while no worker runs; then a worker with concurrency 4 (and 8) drains them. Reported:
//!    deployments completed per second, end to end (claim → strategy → succeeded, with
//!    progress and log lines stored), from the worker's start to the last `finished_at`.
//! 2. Claim delay: with an idle worker, 200 deployments one after another; for each the
//!    time from `Service::deploy()` returning to the worker's claim (`started_at`), and
//!    from `created_at` to `started_at`. Median and 99th percentile.
//!
//! Run: `cargo bench --bench queue`. Environment: `BENCH_BACKENDS` (`sqlite,postgres`),
//! `BENCH_QUEUE_DEPLOYMENTS` (500), `BENCH_QUEUE_SAMPLES` (200), `TEST_DATABASE_URL`
//! (the PostgreSQL server, as for the tests), `BENCH_OUT`.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::TestDb;
use deploybot::deploy::{
    CanarySteps, DeployRequest, DeployState, Deployment, DeploymentId, Instance, InstanceSpec,
    InstanceStore, ListOptions, Service, ServiceStore,
};
use deploybot::provider::catalog::ConfigCatalog;
use deploybot::provider::noop::NoopProvider;
use deploybot::worker::{Worker, WorkerSettings};
use support::{Results, ms, stats};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "acme";
const INSTANCES: usize = 10;
/// The configuration's default strategy: start the new slot, health gate, retire the old.
const STRATEGY: &str = "rolling";

/// A Service over a fresh database with `INSTANCES` noop instances.
fn engine(db: &TestDb) -> (Service, Vec<Instance>) {
    let mut catalog = ConfigCatalog::default();
    let mut instances = Vec::new();
    for i in 0..INSTANCES {
        let name = format!("web-{i:02}");
        instances.push(
            db.store
                .upsert_instance(TENANT, &name, &format!("acme/web-{i:02}"), "production")
                .expect("instance"),
        );
        catalog.insert(
            TENANT,
            InstanceSpec {
                name,
                environment: "production".into(),
                default_strategy: STRATEGY.into(),
                supersede: false,
                provider: Arc::new(NoopProvider),
                health: None,
                gates: Vec::new(),
                watch: None,
                canary: CanarySteps {
                    steps: vec![10, 50, 100],
                    pause: Duration::ZERO,
                },
                wait_for_github: false,
                env: Default::default(),
                control: Default::default(),
            },
        );
    }
    let service = Service::new(
        Arc::clone(&db.store) as Arc<dyn ServiceStore>,
        Arc::new(catalog),
    );
    (service, instances)
}

/// The worker as `deploybot serve` runs it (default lease, poll and grace).
fn start_worker(db: &TestDb, service: &Service, concurrency: usize) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let worker = Arc::new(Worker::new(
        db.store.clone(),
        service,
        WorkerSettings {
            concurrency,
            ..WorkerSettings::default()
        },
    ));
    tokio::spawn(worker.run(shutdown.clone()));
    shutdown
}

fn request(instance: &Instance, n: usize) -> DeployRequest {
    DeployRequest {
        instance_id: instance.id,
        image: format!("ghcr.io/acme/web:{n}"),
        env: Default::default(),
        strategy: String::new(),
        notes: format!("bench {n}"),
        commit_sha: format!("{n:040x}"),
        params: Default::default(),
        noop: false,
    }
}

async fn wait_final(service: &Service, id: DeploymentId, poll: Duration) -> Deployment {
    let started = Instant::now();
    loop {
        let d = service.get_deployment(TENANT, id).await.expect("get");
        if !matches!(d.state, DeployState::Pending | DeployState::Running) {
            return d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "deployment {id} still {} after 300 s",
            d.state
        );
        tokio::time::sleep(poll).await;
    }
}

fn micros(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().expect("a short interval") as f64 / 1000.0
}

/// Deployments per second with `concurrency` runners draining `total` queued deployments.
async fn throughput(db: TestDb, total: usize, concurrency: usize) -> (f64, f64) {
    let (service, instances) = engine(&db);
    let mut last = vec![None; INSTANCES];
    let queued = Instant::now();
    for n in 0..total {
        let i = n % INSTANCES;
        let d = service
            .deploy(TENANT, request(&instances[i], n), "bench")
            .await
            .expect("deploy");
        last[i] = Some(d.id);
    }
    let queue_rate = total as f64 / queued.elapsed().as_secs_f64();
    let started_at = Utc::now();
    let shutdown = start_worker(&db, &service, concurrency);
    // FIFO per instance: when each instance's last deployment is final, all are.
    let mut finished = started_at;
    for id in last.into_iter().flatten() {
        let d = wait_final(&service, id, Duration::from_millis(20)).await;
        finished = finished.max(d.finished_at.expect("finished_at"));
    }
    shutdown.cancel();
    let mut succeeded = 0;
    for instance in &instances {
        let mut cursor = None;
        loop {
            let page = service
                .list_deployments(
                    TENANT,
                    instance.id,
                    ListOptions {
                        cursor,
                        limit: Some(100),
                    },
                )
                .await
                .expect("list");
            succeeded += page
                .items
                .iter()
                .filter(|d| d.state == DeployState::Succeeded)
                .count();
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    assert_eq!(succeeded, total, "every deployment succeeded");
    let seconds = micros(started_at, finished) / 1000.0;
    (total as f64 / seconds, queue_rate)
}

/// Claim delays with an idle worker: (deploy() returned → started_at, created_at → started_at).
async fn claim_delays(db: TestDb, samples: usize) -> (Vec<f64>, Vec<f64>) {
    let (service, instances) = engine(&db);
    let shutdown = start_worker(&db, &service, 4);
    let (mut after_return, mut after_create) = (Vec::new(), Vec::new());
    for n in 0..samples + 10 {
        let d = service
            .deploy(TENANT, request(&instances[n % INSTANCES], n), "bench")
            .await
            .expect("deploy");
        let returned = Utc::now();
        let done = wait_final(&service, d.id, Duration::from_millis(2)).await;
        assert_eq!(done.state, DeployState::Succeeded);
        let started = done.started_at.expect("started_at");
        // The first few warm the connection pool and the code paths.
        if n >= 10 {
            after_return.push(micros(returned, started));
            after_create.push(micros(d.created_at, started));
        }
    }
    shutdown.cancel();
    (after_return, after_create)
}

fn main() {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let total = support::env_number("BENCH_QUEUE_DEPLOYMENTS", 500);
    let samples = support::env_number("BENCH_QUEUE_SAMPLES", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut results = Results::create("queue");
    results.detail(&format!(
        "Queue: {total} noop `{STRATEGY}` deployments over {INSTANCES} instances, queued first, \
         then drained by one in-process worker (default lease and poll); claim delay over \
         {samples} sequential deployments with an idle worker (10 more warm up first). \
         Tokio runtime with {} worker threads.",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    results.detail("");
    results.detail(
        "| backend | concurrency | deployments/s (end to end) | Service::deploy() calls/s while queueing | load before → after |",
    );
    results.detail("| --- | --- | --- | --- | --- |");
    let mut delays = Vec::new();
    for backend in backends.split(',').map(str::trim) {
        let (subject, fresh): (&str, fn() -> TestDb) = match backend {
            "sqlite" => (support::SQLITE, TestDb::sqlite),
            "postgres" => (support::POSTGRES, TestDb::postgres),
            other => panic!("BENCH_BACKENDS: unknown backend {other:?} (sqlite, postgres)"),
        };
        for concurrency in [4, 8] {
            let load_before = support::load();
            let (rate, queue_rate) = runtime.block_on(throughput(fresh(), total, concurrency));
            results.detail(&format!(
                "| {backend} | {concurrency} | {rate:.0} | {queue_rate:.0} | {load_before} → {} |",
                support::load()
            ));
            results.row(
                "Queue",
                &format!("noop deployments/s, concurrency {concurrency} ({total} over {INSTANCES} instances)"),
                subject,
                &format!("{rate:.0}"),
            );
        }
        let (after_return, after_create) = runtime.block_on(claim_delays(fresh(), samples));
        let (r, c) = (stats(after_return), stats(after_create));
        results.row(
            "Queue",
            "deploy() returned → claimed, p50 / p99 ms (idle worker)",
            subject,
            &format!("{} / {}", ms(r.p50), ms(r.p99)),
        );
        delays.push((backend, r, c));
    }
    results.detail("");
    results.detail("| backend | samples | deploy() returned → claimed p50 / p99 / max (ms) | created_at → claimed p50 / p99 / max (ms) |");
    results.detail("| --- | --- | --- | --- |");
    for (backend, r, c) in delays {
        results.detail(&format!(
            "| {backend} | {} | {} / {} / {} | {} / {} / {} |",
            r.n,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            ms(c.p50),
            ms(c.p99),
            ms(c.max)
        ));
    }
}
