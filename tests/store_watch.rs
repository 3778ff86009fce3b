//! The store's side of the watch after a successful deployment, on SQLite and on
//! PostgreSQL: one replica at a time holds a watch, another takes it over once its lease
//! expires, a newer deployment ends it, and a failed gate rolls the deployment back in one
//! transaction, once.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Sql, TestDb};
use deploybot::deploy::{
    AuditEvent, AuditStore, DeployKind, DeployRequest, DeployState, Deployment, Error, Instance,
    InstanceStore, ListOptions, Lock, LockStore, LockTarget, QueueStore, Release, ReleaseStore,
    Store, WatchFailure, WatchStore,
};

const LEASE: Duration = Duration::from_secs(60);
const REASON: &str = "error rate 0.2 > 0.01 at watch";

fn instance(db: &TestDb) -> Instance {
    db.store
        .upsert_instance("acme", "web-production", "acme/web", "production")
        .expect("upsert instance")
}

fn queue(db: &TestDb, inst: &Instance, image: &str, noop: bool) -> Deployment {
    let request = DeployRequest {
        instance_id: inst.id,
        image: image.into(),
        env: BTreeMap::new(),
        strategy: "rolling".into(),
        notes: String::new(),
        commit_sha: String::new(),
        params: Default::default(),
        noop,
    };
    let release = Release::from_request(&inst.tenant_id, &request);
    let mut deployment = Deployment::pending(&release, "rolling", "alice");
    deployment.noop = noop;
    db.store
        .insert_release_and_deployment(&release, &deployment)
        .expect("queue")
        .1
}

/// Runs the next deployment to success, watched for `watch` when given.
fn succeed(db: &TestDb, watch: Option<Duration>) -> Deployment {
    let mut d = db
        .store
        .claim_next("worker", LEASE)
        .unwrap()
        .expect("a deployment to run");
    d.transition(DeployState::Succeeded).unwrap();
    d.provider_ref = "blue".into();
    d.watch_until =
        watch.map(|w| deploybot::deploy::now() + chrono::Duration::from_std(w).unwrap());
    db.store.finish_deployment(&d, "worker").unwrap();
    d
}

/// v1 live, then v2 live and watched for ten minutes.
fn watched(db: &TestDb) -> (Instance, Deployment) {
    let inst = instance(db);
    queue(db, &inst, "web:1", false);
    succeed(db, None);
    queue(db, &inst, "web:2", false);
    (inst, succeed(db, Some(Duration::from_secs(600))))
}

fn claimed(db: &TestDb, owner: &str, lease: Duration) -> Vec<deploybot::deploy::DeploymentId> {
    db.store
        .claim_watches(owner, lease, 10)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect()
}

fn no_lock(_: &Lock) -> AuditEvent {
    unreachable!("no lock is taken")
}

fn failure(reason: &str) -> WatchFailure<'_> {
    WatchFailure {
        reason,
        lock: None,
        lock_audit: &no_lock,
    }
}

fn actions(db: &TestDb) -> Vec<(String, String)> {
    db.store
        .list_audit("acme", None, &ListOptions::default())
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.action, e.detail))
        .collect()
}

fn one_replica_holds_a_watch_at_a_time(db: &TestDb) {
    let (_, d) = watched(db);
    assert_eq!(claimed(db, "replica-1", LEASE), [d.id]);
    assert!(
        claimed(db, "replica-2", LEASE).is_empty(),
        "replica-1 holds it"
    );
    assert!(
        !db.store
            .renew_watch("acme", d.id, "replica-2", LEASE)
            .unwrap()
    );
    assert!(
        db.store
            .renew_watch("acme", d.id, "replica-1", LEASE)
            .unwrap()
    );
    // Its holder finds it again; another tenant's name reaches nothing.
    assert_eq!(claimed(db, "replica-1", LEASE), [d.id]);
    assert!(
        !db.store
            .renew_watch("globex", d.id, "replica-1", LEASE)
            .unwrap()
    );
    assert_eq!(
        db.store
            .watch_failed("globex", d.id, "replica-1", &failure(REASON))
            .unwrap()
            .map(|r| r.watched.id),
        None
    );
    // Let go, it is anyone's at once.
    db.store.release_watch("acme", d.id, "replica-1").unwrap();
    assert_eq!(claimed(db, "replica-2", LEASE), [d.id]);
    // Ended, nobody claims it again.
    db.store.end_watch("acme", d.id, "replica-2").unwrap();
    assert!(claimed(db, "replica-1", LEASE).is_empty());
    assert!(claimed(db, "replica-2", LEASE).is_empty());
}

fn an_expired_watch_lease_is_taken_over(db: &TestDb) {
    let (_, d) = watched(db);
    assert_eq!(claimed(db, "replica-1", Duration::ZERO), [d.id]);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        claimed(db, "replica-2", LEASE),
        [d.id],
        "replica-1's lease expired"
    );
    assert!(
        !db.store
            .renew_watch("acme", d.id, "replica-1", LEASE)
            .unwrap()
    );
    let late = db
        .store
        .watch_failed("acme", d.id, "replica-1", &failure(REASON))
        .unwrap();
    assert!(late.is_none(), "the watch is replica-2's now");
    let stored = db.store.get_deployment("acme", d.id).unwrap();
    assert_eq!(stored.state, DeployState::Succeeded);
}

fn a_window_that_passed_is_not_watched(db: &TestDb) {
    let inst = instance(db);
    queue(db, &inst, "web:1", false);
    succeed(db, None);
    queue(db, &inst, "web:2", false);
    succeed(db, Some(Duration::ZERO));
    std::thread::sleep(Duration::from_millis(20));
    assert!(claimed(db, "replica-1", LEASE).is_empty());
}

fn a_newer_deployment_ends_the_watch(db: &TestDb) {
    let (inst, d) = watched(db);
    assert_eq!(claimed(db, "replica-1", LEASE), [d.id]);
    // A dry run changes nothing: the watch goes on.
    queue(db, &inst, "web:3", true);
    succeed(db, None);
    assert!(
        db.store
            .renew_watch("acme", d.id, "replica-1", LEASE)
            .unwrap()
    );
    // A newer deploy starts: the watch is over, for its holder and for everyone.
    queue(db, &inst, "web:4", false);
    let newer = db.store.claim_next("worker", LEASE).unwrap().unwrap();
    assert!(
        !db.store
            .renew_watch("acme", d.id, "replica-1", LEASE)
            .unwrap()
    );
    assert!(claimed(db, "replica-2", LEASE).is_empty());
    let stored = db.store.get_deployment("acme", d.id).unwrap();
    assert!(
        stored
            .watch_until
            .is_some_and(|u| u <= deploybot::deploy::now())
    );
    let failed = db
        .store
        .watch_failed("acme", d.id, "replica-1", &failure(REASON))
        .unwrap();
    assert!(
        failed.is_none(),
        "nothing rolls back what a newer deployment replaced"
    );
    assert_eq!(
        db.store.get_deployment("acme", d.id).unwrap().state,
        DeployState::Succeeded
    );
    assert_eq!(
        db.store.get_deployment("acme", newer.id).unwrap().state,
        DeployState::Running
    );
}

fn a_newer_deployment_ends_an_unheld_watch(db: &TestDb) {
    let (inst, d) = watched(db);
    queue(db, &inst, "web:3", false);
    succeed(db, None);
    assert!(claimed(db, "replica-1", LEASE).is_empty());
    let stored = db.store.get_deployment("acme", d.id).unwrap();
    assert!(
        stored
            .watch_until
            .is_some_and(|u| u <= deploybot::deploy::now())
    );
}

/// The rollback deployments of the instance.
fn rollbacks(db: &TestDb, inst: &Instance) -> Vec<Deployment> {
    db.store
        .list_deployments("acme", inst.id, &ListOptions::default())
        .unwrap()
        .items
        .into_iter()
        .filter(|d| d.kind == DeployKind::Rollback)
        .collect()
}

fn a_failed_watch_rolls_back_once(db: &TestDb) {
    let (inst, d) = watched(db);
    // Someone's lock holds pushes: it does not hold the safety action.
    let lock = Lock {
        tenant_id: "acme".into(),
        target: LockTarget::Instance {
            instance_id: inst.id,
        },
        repo: "acme/web".into(),
        holder: "@alice".into(),
        reason: "release train".into(),
        pull_request: None,
        created_at: deploybot::deploy::now(),
        expires_at: None,
    };
    db.store.acquire_lock(&lock).unwrap();
    assert_eq!(claimed(db, "replica-1", LEASE), [d.id]);
    let not_ours = db
        .store
        .watch_failed("acme", d.id, "replica-2", &failure(REASON))
        .unwrap();
    assert!(not_ours.is_none());
    assert!(rollbacks(db, &inst).is_empty());

    let done = db
        .store
        .watch_failed("acme", d.id, "replica-1", &failure(REASON))
        .unwrap()
        .expect("rolled back");
    let expected = format!("{REASON}; rolling back to v1");
    assert_eq!(done.watched.state, DeployState::RolledBack);
    assert_eq!(done.watched.error, expected);
    assert!(
        done.lock.is_none(),
        "alice's lock covers the instance already"
    );
    let stored = db.store.get_deployment("acme", d.id).unwrap();
    assert_eq!(stored.state, DeployState::RolledBack);
    assert_eq!(stored.error, expected);
    let rollbacks = rollbacks(db, &inst);
    assert_eq!(rollbacks.len(), 1);
    let rollback = &rollbacks[0];
    assert_eq!(rollback.id, done.rollback.id);
    assert_eq!(rollback.state, DeployState::Pending);
    assert_eq!(rollback.waiting_for, None, "no lock holds the rollback");
    assert_eq!(rollback.initiator, "deploybot");
    let target = db.store.get_release("acme", rollback.release_id).unwrap();
    assert_eq!(target.version, 1);
    let automatic: Vec<_> = actions(db)
        .into_iter()
        .filter(|(action, _)| action == "rollback.automatic")
        .collect();
    assert_eq!(automatic.len(), 1, "{automatic:?}");
    assert!(automatic[0].1.contains(REASON), "{automatic:?}");
    // GitHub hears of the new state, with the gate's reason.
    let mut sql = Sql::open(&db.url);
    let reported = sql.count(&format!(
        "SELECT COUNT(*) AS n FROM outbox WHERE deployment_id = '{}' AND payload LIKE '%rolled_back%' AND payload LIKE '%error rate 0.2%'",
        d.id
    ));
    assert_eq!(reported, 1);

    // A second call changes nothing.
    let again = db
        .store
        .watch_failed("acme", d.id, "replica-1", &failure(REASON))
        .unwrap();
    assert!(again.is_none());
    assert_eq!(self::rollbacks(db, &inst).len(), 1);
    assert!(
        claimed(db, "replica-2", LEASE).is_empty(),
        "the watch ended"
    );
    // The rollback runs, and v1 is live again.
    let mut running = db.store.claim_next("worker", LEASE).unwrap().unwrap();
    assert_eq!(running.id, rollback.id);
    running.transition(DeployState::Succeeded).unwrap();
    db.store.finish_deployment(&running, "worker").unwrap();
    assert_eq!(
        db.store
            .active_release("acme", inst.id)
            .unwrap()
            .unwrap()
            .version,
        1
    );
}

fn a_failed_watch_locks_the_instance_when_asked(db: &TestDb) {
    let (inst, d) = watched(db);
    assert_eq!(claimed(db, "replica-1", LEASE), [d.id]);
    let make = |rolled_back: &Deployment| Lock {
        tenant_id: "acme".into(),
        target: LockTarget::Instance {
            instance_id: inst.id,
        },
        repo: "acme/web".into(),
        holder: "deploybot".into(),
        reason: format!("v2 failed and was rolled back: {}", rolled_back.error),
        pull_request: None,
        created_at: deploybot::deploy::now(),
        expires_at: None,
    };
    let audit = |taken: &Lock| {
        let mut event = AuditEvent::new("acme", "deploybot", "lock.on_rollback", taken.describe());
        event.instance_id = Some(inst.id);
        event
    };
    let asked = WatchFailure {
        reason: REASON,
        lock: Some(&make),
        lock_audit: &audit,
    };
    let done = db
        .store
        .watch_failed("acme", d.id, "replica-1", &asked)
        .unwrap()
        .expect("rolled back");
    let lock = done.lock.expect("locked");
    assert!(lock.reason.contains(REASON), "{}", lock.reason);
    let covering = db.store.lock_covering("acme", inst.id).unwrap().unwrap();
    assert_eq!(covering.holder, "deploybot");
    assert!(
        actions(db)
            .iter()
            .any(|(action, _)| action == "lock.on_rollback")
    );
    // The rollback itself is not held by the lock it came with.
    let rollback = db.store.claim_next("worker", LEASE).unwrap().unwrap();
    assert_eq!(rollback.id, done.rollback.id);
}

fn a_failed_watch_without_a_previous_release_changes_nothing(db: &TestDb) {
    let inst = instance(db);
    queue(db, &inst, "web:1", false);
    let d = succeed(db, Some(Duration::from_secs(600)));
    assert_eq!(claimed(db, "replica-1", LEASE), [d.id]);
    let result = db
        .store
        .watch_failed("acme", d.id, "replica-1", &failure(REASON));
    assert!(matches!(result, Err(Error::Conflict(_))), "{result:?}");
    assert_eq!(
        db.store.get_deployment("acme", d.id).unwrap().state,
        DeployState::Succeeded
    );
    assert!(rollbacks(db, &inst).is_empty());
}

both_backends!(
    one_replica_holds_a_watch_at_a_time,
    an_expired_watch_lease_is_taken_over,
    a_window_that_passed_is_not_watched,
    a_newer_deployment_ends_the_watch,
    a_newer_deployment_ends_an_unheld_watch,
    a_failed_watch_rolls_back_once,
    a_failed_watch_locks_the_instance_when_asked,
    a_failed_watch_without_a_previous_release_changes_nothing,
);
