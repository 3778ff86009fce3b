//! The deploy engine end to end: Service → durable queue → worker → strategy → provider
//! (real child processes, a real HTTP health endpoint), on SQLite and PostgreSQL.

#[path = "../common/mod.rs"]
mod common;
mod fast_rollback;
mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Outage, TestDb};
use deploybot::deploy::{DeployRequest, DeployState, Deployment, Error, RollbackTarget};
use harness::{Engine, HealthServer, Script, command_spec, noop_spec};

fn request(engine: &Engine, instance: &str, image: &str) -> DeployRequest {
    DeployRequest {
        instance_id: engine.instance(instance).id,
        image: image.to_string(),
        env: BTreeMap::from([("FEATURE_FLAG".to_string(), "on".to_string())]),
        strategy: String::new(),
        notes: "test".into(),
        commit_sha: "a10867b14bb761a232cd80139fbd4c0d33264240".into(),
        params: Default::default(),
        noop: false,
    }
}

/// The deploy script sees the deployment, the release and its env — nothing else spliced in.
async fn command_provider_passes_the_deployment_in_the_environment(db: TestDb) {
    let script = Script::recording();
    let engine = Engine::start(db, vec![command_spec("web", "recreate", &script)]).await;
    let mut req = request(&engine, "web", "ghcr.io/acme/web:v1");
    req.env
        .insert("TRICKY".into(), "main;rm -rf ~ $(reboot) `id`".into());
    let d = engine.service.deploy("acme", req, "octocat").await.unwrap();
    let done = engine.wait_final(d.id).await;
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);

    let phases = script.phases();
    // recreate with nothing running yet: start, then the health gate (none configured).
    assert_eq!(phases.len(), 1, "{phases:?}");
    let env = &phases[0];
    assert_eq!(env["DEPLOY_ID"], d.id.to_string());
    assert_eq!(env["DEPLOY_INSTANCE"], "web");
    assert_eq!(env["DEPLOY_ENVIRONMENT"], "production");
    assert_eq!(env["DEPLOY_RELEASE_ID"], d.release_id.to_string());
    assert_eq!(env["DEPLOY_RELEASE_VERSION"], "1");
    assert_eq!(env["DEPLOY_IMAGE"], "ghcr.io/acme/web:v1");
    assert_eq!(
        env["DEPLOY_COMMIT_SHA"],
        "a10867b14bb761a232cd80139fbd4c0d33264240"
    );
    assert_eq!(env["DEPLOY_STRATEGY"], "recreate");
    assert_eq!(env["DEPLOY_PHASE"], "start");
    assert_eq!(env["DEPLOY_SLOT"], "primary");
    assert_eq!(env["FEATURE_FLAG"], "on");
    assert_eq!(env["TRICKY"], "main;rm -rf ~ $(reboot) `id`");

    // The script's output is the deployment's log.
    let log = engine.log(d.id).await;
    assert!(
        log.iter().any(|l| l.contains("phase=start slot=primary")),
        "{log:?}"
    );
    let active = engine.active_version("web").await;
    assert_eq!(active, Some(1));
}

/// A three-step canary drives the provider through every step, in order, and stores progress.
async fn canary_steps_traffic_in_order(db: TestDb) {
    let script = Script::recording();
    let engine = Engine::start(db, vec![command_spec("web", "canary", &script)]).await;
    let first = engine
        .service
        .deploy("acme", request(&engine, "web", "img:1"), "ci")
        .await
        .unwrap();
    assert_eq!(
        engine.wait_final(first.id).await.state,
        DeployState::Succeeded
    );
    script.clear();

    let second = engine
        .service
        .deploy("acme", request(&engine, "web", "img:2"), "ci")
        .await
        .unwrap();
    let done = engine.wait_final(second.id).await;
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);
    let steps: Vec<String> = script
        .phases()
        .iter()
        .map(|env| {
            format!(
                "{} {} {}",
                env["DEPLOY_PHASE"], env["DEPLOY_SLOT"], env["DEPLOY_TRAFFIC_PERCENT"]
            )
            .trim()
            .to_string()
        })
        .collect();
    assert_eq!(
        steps,
        [
            "start canary",
            "traffic canary 10",
            "traffic canary 50",
            "traffic canary 100",
            "start blue",
            "traffic blue 100",
            "retire canary",
        ]
    );
    assert_eq!(done.progress.percent, 100);
    assert_eq!(done.progress.phase, "done");
    let log = engine.log(second.id).await.join("\n");
    for step in ["canary 10%", "canary 50%", "canary 100%"] {
        assert!(
            log.contains(&format!("{step} — healthy")),
            "{step} missing from\n{log}"
        );
    }
    assert_eq!(engine.active_version("web").await, Some(2));
}

/// The health endpoint turns unhealthy mid-canary: the deployment rolls back by itself
/// and the previous release is active again.
async fn unhealthy_canary_rolls_back_to_the_previous_release(db: TestDb) {
    let health = HealthServer::start();
    let script = Script::recording();
    let mut spec = command_spec("web", "canary", &script);
    spec.health = Some(health.check());
    let engine = Engine::start(db, vec![spec]).await;

    let v1 = engine
        .service
        .deploy("acme", request(&engine, "web", "img:1"), "ci")
        .await
        .unwrap();
    assert_eq!(engine.wait_final(v1.id).await.state, DeployState::Succeeded);
    script.clear();

    // Healthy for the canary start and its 10% step, unhealthy from then on.
    health.healthy_for(2);
    let v2 = engine
        .service
        .deploy("acme", request(&engine, "web", "img:2"), "ci")
        .await
        .unwrap();
    let done = engine.wait_final(v2.id).await;
    assert_eq!(done.state, DeployState::RolledBack, "{done:?}");
    assert!(done.error.contains("health check failed"), "{}", done.error);
    assert!(done.error.contains("503"), "{}", done.error);
    assert!(done.error.contains("restored v1"), "{}", done.error);
    assert_eq!(
        engine.active_version("web").await,
        Some(1),
        "v1 is active again"
    );
    let steps: Vec<String> = script
        .phases()
        .iter()
        .map(|env| {
            format!(
                "{} {} {}",
                env["DEPLOY_PHASE"], env["DEPLOY_SLOT"], env["DEPLOY_TRAFFIC_PERCENT"]
            )
            .trim()
            .to_string()
        })
        .collect();
    assert_eq!(steps.first().map(String::as_str), Some("start canary"));
    assert!(
        !steps.iter().any(|s| s.starts_with("traffic canary 100")),
        "{steps:?}"
    );
    assert_eq!(
        &steps[steps.len() - 2..],
        ["traffic blue 100", "retire canary"],
        "traffic back to v1, canary retired"
    );
    assert!(health.requests.load(Ordering::SeqCst) >= 3);
}

/// Cancelling a running `sleep 600` returns at once and leaves no process behind.
/// The `web` instance (recreate) running a deployment whose command sleeps: the engine,
/// the script (keep it: it owns the command's directory), the deployment and its process
/// group.
async fn a_sleeping_deployment(db: TestDb) -> (Engine, Script, Deployment, i32) {
    a_running_deployment(db, Script::sleeping()).await
}

/// The `web` instance (recreate) running a deployment of `script`, which writes its
/// process group id: the engine, the script, the deployment and its process group.
async fn a_running_deployment(db: TestDb, script: Script) -> (Engine, Script, Deployment, i32) {
    let engine = Engine::start(db, vec![command_spec("web", "recreate", &script)]).await;
    let d = engine
        .service
        .deploy("acme", request(&engine, "web", "img:1"), "ci")
        .await
        .unwrap();
    let pgid = script.wait_for_pgid().await;
    (engine, script, d, pgid)
}

async fn cancel_stops_the_running_process_group(db: TestDb) {
    let (engine, _script, d, pgid) = a_sleeping_deployment(db).await;
    assert_eq!(
        engine
            .service
            .get_deployment("acme", d.id)
            .await
            .unwrap()
            .state,
        DeployState::Running
    );

    let asked = Instant::now();
    let after = engine
        .service
        .cancel("acme", d.id, "octocat")
        .await
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "cancel returned in {:?}",
        asked.elapsed()
    );
    assert_eq!(
        after.state,
        DeployState::Running,
        "cancel of a running deployment is a request"
    );
    let done = engine.wait_final(d.id).await;
    assert_eq!(done.state, DeployState::Cancelled);
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "stopped in {:?}",
        asked.elapsed()
    );
    assert!(
        harness::group_is_gone(pgid),
        "process group {pgid} still has members"
    );
    // A finished deployment cannot be cancelled again.
    assert!(matches!(
        engine.service.cancel("acme", d.id, "octocat").await,
        Err(Error::InvalidState(_))
    ));
}

/// A worker that cannot renew its lease stops the deployment's command once the lease has
/// expired by its own clock, without waiting for the database to come back: another server
/// may already count the deployment as lost and start the instance's next one.
async fn a_worker_that_cannot_renew_its_lease_stops_its_command(db: TestDb) {
    let (engine, _script, d, pgid) = a_sleeping_deployment(db).await;
    let outage = Outage::begin(&engine.db);
    let cut = Instant::now();
    let mut gone = false;
    // Lease 3 s, a renewal every second, then SIGTERM (SIGKILL 2 s later).
    for _ in 0..3 {
        gone = tokio::task::spawn_blocking(move || harness::group_is_gone(pgid))
            .await
            .unwrap();
        if gone {
            break;
        }
    }
    let stopped_after = cut.elapsed();
    assert!(
        gone,
        "the command still ran {stopped_after:?} after the database went out of reach"
    );
    assert!(
        stopped_after < Duration::from_secs(10),
        "stopped only after {stopped_after:?}"
    );
    outage.end();
    // Back in reach: lease recovery settles the deployment.
    let done = engine.wait_final(d.id).await;
    assert_eq!(done.state, DeployState::Failed, "{}", done.error);
}

/// A deployment whose command finishes while the database is away for 11 s (far longer
/// than the 3 s lease) is recorded as succeeded once the database is back, not as failed
/// "worker lost", and its release is the active one.
async fn a_deployment_that_finishes_while_the_database_is_away_succeeds_when_it_returns(
    db: TestDb,
) {
    let (engine, script, d, pgid) = a_running_deployment(db, Script::finishing_on_cue()).await;
    let outage = Outage::begin(&engine.db);
    script.finish();
    let ended = tokio::task::spawn_blocking(move || harness::group_is_gone(pgid))
        .await
        .unwrap();
    assert!(ended, "the deploy command did not finish");
    // Longer than the lease (3 s). On SQLite each write waits up to the busy timeout (15 s)
    // for the lock, and the last progress report is written before the outcome: the outage
    // outlasts both, so the final write fails at least once and must be retried.
    let away = if engine.db.url.starts_with("sqlite://") {
        35
    } else {
        17
    };
    tokio::time::sleep(Duration::from_secs(away)).await;
    outage.end();
    let done = engine.wait_final(d.id).await;
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);
    assert_eq!(engine.active_version("web").await, Some(1));
}

/// A deploy command that prints 100,000 empty lines and then a marker stores at most the
/// cap's 20,000 lines: the first ones, the marker at the end, and one line between them
/// saying how many were dropped.
async fn a_flood_of_empty_log_lines_keeps_the_first_and_last_lines(db: TestDb) {
    let script = Script::flooding();
    let engine = Engine::start(db, vec![command_spec("web", "recreate", &script)]).await;
    let d = engine
        .service
        .deploy("acme", request(&engine, "web", "img:1"), "ci")
        .await
        .unwrap();
    let done = engine.wait_final(d.id).await;
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);
    let mut log = engine.full_log(d.id).await;
    // The log ends when the deployment has; its last lines are written just after.
    for _ in 0..50 {
        if log.iter().any(|(_, l)| l == "DONE-MARKER") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        log = engine.full_log(d.id).await;
    }
    assert!(log.len() <= 20_000, "{} lines stored", log.len());
    assert!(log[0].1.starts_with("deploying v1"), "{:?}", log[0]);
    // The first lines of the command are kept: the first half of the cap.
    let first = log.iter().position(|(s, _)| s == "stdout").unwrap();
    assert!(first < 5, "the command's first line is line {first}");
    assert!(
        log[first..first + 9_000]
            .iter()
            .all(|l| *l == ("stdout".to_string(), String::new())),
        "the first 9,000 lines of the command are stored in order"
    );
    let marker = log.iter().position(|(_, l)| l == "DONE-MARKER");
    let marker = marker.expect("the last line of the command is kept");
    assert!(
        marker + 10 > log.len(),
        "the marker is among the last lines"
    );
    let notes: Vec<&String> = log
        .iter()
        .filter(|(s, l)| s == "deploybot" && l.starts_with("log truncated: "))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(notes.len(), 1, "one line says what was dropped");
    let dropped: u64 = notes[0]["log truncated: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Lines the sink could not pass on (the writer fell behind) are counted on their own.
    let behind: u64 = log
        .iter()
        .find_map(|(_, l)| {
            l.strip_suffix(" log lines were dropped because the log writer fell behind")
        })
        .map_or(0, |n| n.parse().unwrap());
    let stored = log.iter().filter(|(s, _)| s == "stdout").count() as u64;
    assert_eq!(
        stored + dropped + behind,
        100_001,
        "every line is stored or counted"
    );
}

/// Pending deployments are cancelled at once, without running.
async fn cancel_of_a_pending_deployment_is_immediate(db: TestDb) {
    let script = Script::sleeping();
    let engine = Engine::start(db, vec![command_spec("web", "recreate", &script)]).await;
    let running = engine
        .service
        .deploy("acme", request(&engine, "web", "img:1"), "ci")
        .await
        .unwrap();
    script.wait_for_pgid().await;
    let queued = engine
        .service
        .deploy("acme", request(&engine, "web", "img:2"), "ci")
        .await
        .unwrap();
    let after = engine
        .service
        .cancel("acme", queued.id, "octocat")
        .await
        .unwrap();
    assert_eq!(after.state, DeployState::Cancelled);
    assert_eq!(after.error, "cancelled by octocat");
    engine
        .service
        .cancel("acme", running.id, "octocat")
        .await
        .unwrap();
    assert_eq!(
        engine.wait_final(running.id).await.state,
        DeployState::Cancelled
    );
}

/// Rollback deploys an existing release; on success the deployment it replaced is rolled_back.
async fn rollback_restores_an_earlier_release(db: TestDb) {
    let engine = Engine::start(
        db,
        vec![noop_spec("web", "rolling"), noop_spec("api", "rolling")],
    )
    .await;
    let v1 = engine
        .service
        .deploy("acme", request(&engine, "web", "img:1"), "ci")
        .await
        .unwrap();
    engine.wait_final(v1.id).await;
    let v2 = engine
        .service
        .deploy("acme", request(&engine, "web", "img:2"), "ci")
        .await
        .unwrap();
    engine.wait_final(v2.id).await;
    let inst = engine.instance("web").id;

    let back = engine
        .service
        .rollback("acme", inst, RollbackTarget::Previous, "octocat")
        .await
        .unwrap();
    assert_eq!(
        back.release_id, v1.release_id,
        "no new release for a rollback"
    );
    let done = engine.wait_final(back.id).await;
    assert_eq!(done.state, DeployState::Succeeded);
    assert_eq!(engine.active_version("web").await, Some(1));
    let replaced = engine.service.get_deployment("acme", v2.id).await.unwrap();
    assert_eq!(replaced.state, DeployState::RolledBack);
    assert_eq!(
        engine
            .service
            .list_releases("acme", inst, Default::default())
            .await
            .unwrap()
            .total,
        2
    );

    // By version, forward again.
    let again = engine
        .service
        .rollback("acme", inst, RollbackTarget::Version(2), "octocat")
        .await
        .unwrap();
    engine.wait_final(again.id).await;
    assert_eq!(engine.active_version("web").await, Some(2));

    // A release of another instance, or of nothing, is not found.
    let other = engine.instance("api").id;
    let foreign = engine
        .service
        .rollback("acme", other, RollbackTarget::Release(v1.release_id), "x")
        .await;
    assert!(
        matches!(foreign, Err(Error::NotFound { .. })),
        "{foreign:?}"
    );
    let missing = engine
        .service
        .rollback("acme", inst, RollbackTarget::Version(99), "x")
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    let other_tenant = engine
        .service
        .rollback("globex", inst, RollbackTarget::Previous, "x")
        .await;
    assert!(
        matches!(other_tenant, Err(Error::NotFound { .. })),
        "{other_tenant:?}"
    );
}

/// Bad requests are refused before anything is written.
async fn bad_requests_write_nothing(db: TestDb) {
    let engine = Engine::start(
        db,
        vec![
            noop_spec("web", "rolling"),
            harness::recreate_only_spec("legacy"),
        ],
    )
    .await;
    let inst = engine.instance("web").id;
    let cases = [
        (
            "empty image",
            DeployRequest {
                image: "  ".into(),
                ..request(&engine, "web", "x")
            },
        ),
        (
            "unknown strategy",
            DeployRequest {
                strategy: "yolo".into(),
                ..request(&engine, "web", "x")
            },
        ),
        (
            "bad sha",
            DeployRequest {
                commit_sha: "not-a-sha".into(),
                ..request(&engine, "web", "x")
            },
        ),
        (
            "unsupported strategy",
            DeployRequest {
                strategy: "canary".into(),
                ..request(&engine, "legacy", "x")
            },
        ),
    ];
    for (what, req) in cases {
        let err = engine.service.deploy("acme", req, "ci").await.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{what}: {err:?}");
    }
    let err = engine
        .service
        .deploy(
            "acme",
            DeployRequest {
                strategy: "canary".into(),
                ..request(&engine, "legacy", "x")
            },
            "ci",
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot run the canary strategy"),
        "{err}"
    );
    let err = engine
        .service
        .deploy("globex", request(&engine, "web", "x"), "ci")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(
        engine
            .service
            .list_releases("acme", inst, Default::default())
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        engine
            .service
            .list_deployments("acme", inst, Default::default())
            .await
            .unwrap()
            .total,
        0
    );
}

/// With `supersede`, a newer queued deployment cancels older queued ones.
async fn newer_queued_deployments_supersede_older_ones(db: TestDb) {
    let script = Script::sleeping();
    let mut spec = command_spec("staging", "recreate", &script);
    spec.supersede = true;
    let engine = Engine::start(db, vec![spec]).await;
    let running = engine
        .service
        .deploy("acme", request(&engine, "staging", "img:1"), "ci")
        .await
        .unwrap();
    script.wait_for_pgid().await;
    let a = engine
        .service
        .deploy("acme", request(&engine, "staging", "img:2"), "ci")
        .await
        .unwrap();
    let b = engine
        .service
        .deploy("acme", request(&engine, "staging", "img:3"), "ci")
        .await
        .unwrap();
    let a = engine.service.get_deployment("acme", a.id).await.unwrap();
    assert_eq!(a.state, DeployState::Cancelled);
    assert_eq!(a.error, format!("superseded by {}", b.id));
    assert_eq!(
        engine
            .service
            .get_deployment("acme", b.id)
            .await
            .unwrap()
            .state,
        DeployState::Pending
    );
    let still = engine
        .service
        .get_deployment("acme", running.id)
        .await
        .unwrap();
    assert_eq!(
        still.state,
        DeployState::Running,
        "running deployments are not superseded"
    );
    engine
        .service
        .cancel("acme", running.id, "test")
        .await
        .unwrap();
    engine.wait_final(running.id).await;
}

/// One running deployment per instance, FIFO; different instances run in parallel.
async fn one_running_per_instance_fifo(db: TestDb) {
    let script = Script::interval_recording();
    let engine = Engine::start(
        db,
        vec![
            command_spec("a", "recreate", &script),
            command_spec("b", "recreate", &script),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        for inst in ["a", "b"] {
            ids.push(
                engine
                    .service
                    .deploy("acme", request(&engine, inst, &format!("img:{i}")), "ci")
                    .await
                    .unwrap(),
            );
        }
    }
    for d in &ids {
        assert_eq!(engine.wait_final(d.id).await.state, DeployState::Succeeded);
    }
    let intervals = script.intervals();
    harness::assert_no_overlap(&intervals);
    for inst in ["a", "b"] {
        let order: Vec<String> = intervals
            .iter()
            .filter(|i| i.instance == inst)
            .map(|i| i.image.clone())
            .collect();
        assert_eq!(
            order,
            ["img:0", "img:1", "img:2", "img:3"],
            "FIFO for {inst}"
        );
    }
    assert!(
        harness::instances_overlapped(&intervals, "a", "b"),
        "a and b should run in parallel"
    );
}

/// A worker whose shutdown has begun claims nothing, even with a slot free and a deployment
/// waiting (each claim it made would be killed when the grace period ends).
async fn a_worker_whose_shutdown_has_begun_claims_nothing(db: TestDb) {
    let engine = Engine::start(db, vec![noop_spec("web", "rolling")]).await;
    engine.stop_pool().await;
    let queued = engine
        .service
        .deploy(
            "acme",
            request(&engine, "web", "ghcr.io/acme/web:1"),
            "tester",
        )
        .await
        .unwrap();
    // An unbiased select would pick the claim half of the time: twenty stopped pools
    // in a row would all have to miss it.
    for _ in 0..20 {
        engine.run_a_stopped_pool().await;
        let d = engine
            .service
            .get_deployment("acme", queued.id)
            .await
            .unwrap();
        assert_eq!(d.state, DeployState::Pending, "a stopped worker claimed it");
    }
}

both_backends_async!(
    a_worker_whose_shutdown_has_begun_claims_nothing,
    a_worker_that_cannot_renew_its_lease_stops_its_command,
    a_deployment_that_finishes_while_the_database_is_away_succeeds_when_it_returns,
    a_flood_of_empty_log_lines_keeps_the_first_and_last_lines,
    command_provider_passes_the_deployment_in_the_environment,
    canary_steps_traffic_in_order,
    unhealthy_canary_rolls_back_to_the_previous_release,
    cancel_stops_the_running_process_group,
    cancel_of_a_pending_deployment_is_immediate,
    rollback_restores_an_earlier_release,
    bad_requests_write_nothing,
    newer_queued_deployments_supersede_older_ones,
    one_running_per_instance_fifo,
);

/// Two worker pools on one PostgreSQL database: every deployment runs exactly once and no
/// instance ever runs two at a time.
#[test]
fn two_worker_pools_share_one_postgres_queue() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = TestDb::postgres();
        let script = Script::interval_recording();
        let specs: Vec<_> = (0..5)
            .map(|i| command_spec(&format!("svc{i}"), "recreate", &script))
            .collect();
        let engine = Engine::start(db, specs).await;
        let second_pool = engine.second_pool();
        let mut ids = Vec::new();
        for round in 0..20 {
            for i in 0..5 {
                let req = request(&engine, &format!("svc{i}"), &format!("img:{round}"));
                ids.push(engine.service.deploy("acme", req, "ci").await.unwrap().id);
            }
        }
        for id in &ids {
            assert_eq!(engine.wait_final(*id).await.state, DeployState::Succeeded);
        }
        let intervals = script.intervals();
        let mut per_deployment: BTreeMap<String, usize> = BTreeMap::new();
        for i in &intervals {
            *per_deployment.entry(i.deployment.clone()).or_default() += 1;
        }
        assert_eq!(per_deployment.len(), 100, "every deployment ran");
        assert!(
            per_deployment.values().all(|n| *n == 1),
            "a deployment ran twice"
        );
        harness::assert_no_overlap(&intervals);
        let owners = engine.lease_owners_seen(&intervals);
        assert_eq!(owners, 2, "both pools took work");
        drop(second_pool);
    });
}
