//! Rollbacks and cancels as the provider and the health command see them: a rollback is
//! one start of the earlier release in the live slot and one health check, whatever the
//! instance's strategy; a cancel after traffic moved puts the previous release back, a
//! cancel before anything changed only stops; the health command is told which release,
//! slot, phase and traffic share it checks.

use std::time::{Duration, Instant};

use deploybot::deploy::{DeployState, Deployment, RollbackTarget};

use super::harness::{Engine, HealthLog, Script, SpecDef, command_spec};
use super::request;
use crate::common::TestDb;

/// What the provider was asked, one entry per invocation: "PHASE SLOT [TRAFFIC]".
fn steps(script: &Script) -> Vec<String> {
    script
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
        .collect()
}

/// Deploys `image` to `instance` and waits for it to succeed.
async fn deployed(engine: &Engine, instance: &str, image: &str) -> Deployment {
    let d = engine
        .service
        .deploy("acme", request(engine, instance, image), "ci")
        .await
        .unwrap();
    let done = engine.wait_final(d.id).await;
    assert_eq!(
        done.state,
        DeployState::Succeeded,
        "{image}: {}",
        done.error
    );
    done
}

/// Waits until the provider has been asked for `step`.
async fn wait_for_step(script: &Script, step: &str) {
    let started = Instant::now();
    while !steps(script).iter().any(|s| s == step) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the provider was never asked for {step:?}: {:?}",
            steps(script)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A rollback of a canary instance (steps 10/50/100, a pause at each) is one start of v1
/// in the live slot and one run of the health command, and v1 is active again.
async fn a_canary_rollback_is_one_start_and_one_health_check(db: TestDb) {
    let script = Script::recording();
    let health = HealthLog::in_temp_dir();
    let mut spec = command_spec("web", "canary", &script);
    spec.health = Some(health.check());
    spec.pause = Duration::from_secs(1);
    let engine = Engine::start(db, vec![spec]).await;
    let v1 = deployed(&engine, "web", "img:1").await;
    deployed(&engine, "web", "img:2").await;
    script.clear();
    health.clear();

    let back = engine
        .service
        .rollback(
            "acme",
            engine.instance("web").id,
            RollbackTarget::Previous,
            "octocat",
        )
        .await
        .unwrap();
    assert_eq!(back.release_id, v1.release_id);
    let done = engine.wait_final(back.id).await;
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);
    assert_eq!(engine.active_version("web").await, Some(1));

    let calls = script.phases();
    assert_eq!(steps(&script), ["start blue"], "one provider call");
    assert_eq!(calls[0]["DEPLOY_IMAGE"], "img:1");
    assert_eq!(calls[0]["DEPLOY_RELEASE_VERSION"], "1");
    assert_eq!(
        health.runs(),
        ["rollback blue 100 img:1 v1"],
        "one health check, of v1 in the live slot with all traffic"
    );
}

/// A canary cancelled while it watches its 10% step: traffic goes back to the live slot,
/// the canary is retired, and the deployment ends cancelled saying it restored v1.
async fn a_canary_cancelled_at_ten_percent_restores_the_previous_release(db: TestDb) {
    let script = Script::recording();
    let spec = command_spec("web", "canary", &script);
    let engine = Engine::start(db, vec![spec.clone()]).await;
    deployed(&engine, "web", "img:1").await;
    // From here on each canary step is watched for ten minutes: long enough to cancel in.
    engine.stop_pool().await;
    let watching = SpecDef {
        pause: Duration::from_secs(600),
        ..spec
    };
    let _pool = engine.pool_with(&[watching]);
    script.clear();

    let v2 = engine
        .service
        .deploy("acme", request(&engine, "web", "img:2"), "ci")
        .await
        .unwrap();
    wait_for_step(&script, "traffic canary 10").await;
    engine
        .service
        .cancel("acme", v2.id, "octocat")
        .await
        .unwrap();
    let done = engine.wait_final(v2.id).await;

    assert_eq!(done.state, DeployState::Cancelled, "{}", done.error);
    assert!(done.error.contains("restored v1"), "{}", done.error);
    assert_eq!(
        steps(&script),
        [
            "start canary",
            "traffic canary 10",
            "traffic blue 100",
            "retire canary"
        ],
        "all traffic back on the live slot, the canary retired"
    );
    let restore = &script.phases()[2];
    assert_eq!(restore["DEPLOY_IMAGE"], "img:1", "the restore runs as v1");
    assert_eq!(engine.active_version("web").await, Some(1));
}

/// A blue-green deployment cancelled while its start command runs in the idle slot
/// changed nothing that serves: it ends cancelled, restores nothing, and v1 stays active.
async fn a_cancel_before_the_switch_restores_nothing(db: TestDb) {
    let script = Script::recording_and_sleeping_on("img:2");
    let engine = Engine::start(db, vec![command_spec("web", "blue-green", &script)]).await;
    deployed(&engine, "web", "img:1").await;
    script.clear();

    let v2 = engine
        .service
        .deploy("acme", request(&engine, "web", "img:2"), "ci")
        .await
        .unwrap();
    script.wait_for_pgid().await;
    engine
        .service
        .cancel("acme", v2.id, "octocat")
        .await
        .unwrap();
    let done = engine.wait_final(v2.id).await;

    assert_eq!(done.state, DeployState::Cancelled, "{}", done.error);
    assert!(!done.error.contains("restored"), "{}", done.error);
    assert_eq!(
        steps(&script),
        ["start blue"],
        "nothing after the interrupted start"
    );
    assert_eq!(engine.active_version("web").await, Some(1));
}

/// The health command is told the image, slot, phase and traffic share of what it checks:
/// `test "$DEPLOY_IMAGE" != x:bad` passes every gate of `x:good` and fails `x:bad`'s
/// first, which rolls back to `x:good`.
async fn the_health_command_checks_the_release_being_deployed(db: TestDb) {
    let script = Script::recording();
    let health = HealthLog::in_temp_dir();
    let mut spec = command_spec("web", "canary", &script);
    spec.health = Some(health.check());
    let engine = Engine::start(db, vec![spec]).await;

    deployed(&engine, "web", "x:good").await;
    assert_eq!(
        health.runs(),
        [
            "start canary 0 x:good v1",
            "canary canary 10 x:good v1",
            "canary canary 50 x:good v1",
            "canary canary 100 x:good v1",
            "promote blue 100 x:good v1",
        ]
    );
    health.clear();

    let bad = engine
        .service
        .deploy("acme", request(&engine, "web", "x:bad"), "ci")
        .await
        .unwrap();
    let done = engine.wait_final(bad.id).await;
    assert_eq!(done.state, DeployState::RolledBack, "{}", done.error);
    assert!(done.error.contains("health check failed"), "{}", done.error);
    assert!(done.error.contains("restored v1"), "{}", done.error);
    assert_eq!(engine.active_version("web").await, Some(1));
    let runs = health.runs();
    assert!(!runs.is_empty());
    assert!(
        runs.iter().all(|r| r == "start canary 0 x:bad v2"),
        "only the canary's start of x:bad was checked: {runs:?}"
    );
}

crate::both_backends_async!(
    a_canary_rollback_is_one_start_and_one_health_check,
    a_canary_cancelled_at_ten_percent_restores_the_previous_release,
    a_cancel_before_the_switch_restores_nothing,
    the_health_command_checks_the_release_being_deployed,
);
