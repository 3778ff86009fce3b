//! The store's side of the gates before a deployment starts, on SQLite and on PostgreSQL:
//! the promotion lookup, moving a deployment on from one gate, ending one whose gate can
//! no longer open, and approvals (the two-person rule), each with its audit event in the
//! same transaction.

mod common;

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use common::TestDb;
use deploybot::deploy::{
    ApprovalState, AuditEvent, AuditStore, DeployRequest, DeployState, Deployment, Error,
    GateStore, Instance, InstanceStore, ListOptions, QueueStore, Release, ReleaseStore, Store,
    WaitKind, WaitingFor,
};

const SHA: &str = "a10867b14bb761a232cd80139fbd4c0d33264240";

fn instance(db: &TestDb, name: &str, repo: &str, environment: &str) -> Instance {
    db.store
        .upsert_instance("acme", name, repo, environment)
        .expect("upsert instance")
}

fn deploy_at(db: &TestDb, inst: &Instance, sha: &str, waiting: Option<WaitingFor>) -> Deployment {
    let request = DeployRequest {
        instance_id: inst.id,
        image: format!("img:{sha}"),
        env: BTreeMap::new(),
        strategy: "rolling".into(),
        notes: String::new(),
        commit_sha: sha.to_string(),
        params: Default::default(),
        noop: false,
    };
    let release = Release::from_request(&inst.tenant_id, &request);
    let mut deployment = Deployment::pending(&release, "rolling", "alice");
    deployment.waiting_for = waiting;
    db.store
        .insert_release_and_deployment(&release, &deployment)
        .expect("deploy")
        .1
}

/// Claims the next deployment and ends it as `state`.
fn run_to(db: &TestDb, state: DeployState) -> Deployment {
    let mut claimed = db
        .store
        .claim_next("w1", StdDuration::from_secs(60))
        .unwrap()
        .expect("a deployment to claim");
    claimed.transition(state).unwrap();
    db.store.finish_deployment(&claimed, "w1").unwrap();
    claimed
}

fn approval(needed: u32) -> WaitingFor {
    let mut w = WaitingFor::new(WaitKind::Approval, "1 approval by a deployer", None);
    w.approval = Some(ApprovalState {
        requested_by: "@alice".into(),
        approved_by: Vec::new(),
        needed,
    });
    w
}

fn audit_actions(db: &TestDb) -> Vec<(String, String)> {
    let page = db
        .store
        .list_audit("acme", None, &ListOptions::default())
        .unwrap();
    page.items
        .into_iter()
        .map(|e| (e.actor, e.action))
        .collect()
}

fn a_commit_is_promoted_once_it_succeeded_on_the_environment_of_the_same_repository(db: &TestDb) {
    let staging = instance(db, "web-staging", "acme/web", "staging");
    let other_repo = instance(db, "api-staging", "acme/api", "staging");
    let promoted = |sha: &str| {
        db.store
            .promoted("acme", "Acme/Web", "staging", sha)
            .unwrap()
    };
    assert!(!promoted(SHA));
    // A success in another repository's staging does not count.
    deploy_at(db, &other_repo, SHA, None);
    run_to(db, DeployState::Succeeded);
    assert!(!promoted(SHA));
    // Nor does a failure, nor a dry run.
    deploy_at(db, &staging, SHA, None);
    run_to(db, DeployState::Failed);
    assert!(!promoted(SHA));
    deploy_at(db, &staging, SHA, None);
    run_to(db, DeployState::Succeeded);
    assert!(promoted(SHA));
    assert!(!promoted("0000000000000000000000000000000000000000"));
    // Under another tenant, nothing is promoted.
    assert!(
        !db.store
            .promoted("globex", "acme/web", "staging", SHA)
            .unwrap()
    );
}

fn a_deployment_moves_on_only_from_the_gate_it_waits_at(db: &TestDb) {
    let prod = instance(db, "web-production", "acme/web", "production");
    let promotion = WaitingFor::new(
        WaitKind::Promotion,
        "a10867b to succeed on staging first",
        None,
    );
    let d = deploy_at(db, &prod, SHA, Some(promotion));
    // Someone resolving another gate changes nothing.
    let checks = WaitingFor::new(WaitKind::Checks, "required checks: ci/test", None);
    assert_eq!(
        db.store
            .advance_waiting("acme", d.id, WaitKind::Approval, Some(&checks))
            .unwrap(),
        None
    );
    let moved = db
        .store
        .advance_waiting("acme", d.id, WaitKind::Promotion, Some(&checks))
        .unwrap()
        .expect("moved on to checks");
    assert_eq!(moved.waiting_for.map(|w| w.kind), Some(WaitKind::Checks));
    // Nothing is claimed while it waits at a gate.
    assert!(
        db.store
            .claim_next("w1", StdDuration::from_secs(60))
            .unwrap()
            .is_none()
    );
    let runs = db
        .store
        .advance_waiting("acme", d.id, WaitKind::Checks, None)
        .unwrap()
        .expect("released");
    assert_eq!(runs.waiting_for, None);
    assert_eq!(run_to(db, DeployState::Succeeded).id, d.id);
    // Once it ran, no gate moves it.
    assert_eq!(
        db.store
            .advance_waiting("acme", d.id, WaitKind::Checks, None)
            .unwrap(),
        None
    );
}

fn a_deployment_whose_gate_cannot_open_ends_with_its_reason_and_audit_event(db: &TestDb) {
    let prod = instance(db, "web-production", "acme/web", "production");
    let d = deploy_at(db, &prod, SHA, Some(approval(1)));
    let event = AuditEvent::new("acme", "deploybot", "gate.expired", "approval expired");
    // Not waiting at checks: nothing ends, nothing is recorded.
    let none = db
        .store
        .end_waiting(
            "acme",
            d.id,
            WaitKind::Checks,
            DeployState::Failed,
            "checks failed",
            &event,
        )
        .unwrap();
    assert_eq!(none, None);
    assert!(audit_actions(db).is_empty());
    let ended = db
        .store
        .end_waiting(
            "acme",
            d.id,
            WaitKind::Approval,
            DeployState::Cancelled,
            "approval expired: not approved within 1h",
            &event,
        )
        .unwrap()
        .expect("ended");
    assert_eq!(ended.state, DeployState::Cancelled);
    assert_eq!(ended.error, "approval expired: not approved within 1h");
    assert_eq!(ended.waiting_for, None);
    assert!(ended.finished_at.is_some());
    let trail = db
        .store
        .list_audit("acme", None, &ListOptions::default())
        .unwrap();
    assert_eq!(trail.items.len(), 1);
    assert_eq!(trail.items[0].deployment_id, Some(d.id));
    assert_eq!(trail.items[0].instance_id, Some(prod.id));
    // Ended once: a second replica ending it too changes nothing.
    assert_eq!(
        db.store
            .end_waiting(
                "acme",
                d.id,
                WaitKind::Approval,
                DeployState::Cancelled,
                "again",
                &event
            )
            .unwrap(),
        None
    );
    assert_eq!(audit_actions(db).len(), 1);
}

fn the_requester_cannot_approve_and_other_deployers_release_it(db: &TestDb) {
    let prod = instance(db, "web-production", "acme/web", "production");
    let d = deploy_at(db, &prod, SHA, Some(approval(2)));
    let event = |actor: &str| AuditEvent::new("acme", actor, "approve", "approved");
    let own = db.store.approve("acme", d.id, "@alice", &event("@alice"));
    assert!(
        matches!(own, Err(Error::NotApproved(ref m)) if m.contains("@alice")),
        "{own:?}"
    );
    assert!(
        audit_actions(db).is_empty(),
        "a refused approval writes no approve event"
    );
    let first = db
        .store
        .approve("acme", d.id, "@bob", &event("@bob"))
        .unwrap();
    let state = first.waiting_for.clone().and_then(|w| w.approval).unwrap();
    assert_eq!(state.approved_by, ["@bob"]);
    assert_eq!(state.missing(), 1);
    // The same approver twice counts once.
    let again = db
        .store
        .approve("acme", d.id, "@bob", &event("@bob"))
        .unwrap();
    assert_eq!(
        again
            .waiting_for
            .and_then(|w| w.approval)
            .unwrap()
            .missing(),
        1
    );
    assert!(
        db.store
            .claim_next("w1", StdDuration::from_secs(60))
            .unwrap()
            .is_none()
    );
    let second = db
        .store
        .approve("acme", d.id, "token:ops", &event("token:ops"))
        .unwrap();
    assert_eq!(second.waiting_for, None, "two approvals: it runs");
    assert_eq!(run_to(db, DeployState::Succeeded).id, d.id);
    let late = db.store.approve("acme", d.id, "@carol", &event("@carol"));
    assert!(matches!(late, Err(Error::NotApproved(_))), "{late:?}");
    // Another tenant's approval does not reach it.
    let prod2 = deploy_at(db, &prod, SHA, Some(approval(1)));
    let foreign = db.store.approve("globex", prod2.id, "@bob", &event("@bob"));
    assert!(foreign.is_err());
    assert_eq!(
        db.store
            .get_deployment("acme", prod2.id)
            .unwrap()
            .waiting_for
            .map(|w| w.kind),
        Some(WaitKind::Approval)
    );
    let approvals: Vec<_> = audit_actions(db)
        .into_iter()
        .filter(|(_, action)| action == "approve")
        .collect();
    assert_eq!(approvals.len(), 3, "{approvals:?}");
}

fn waiting_at_a_gate_lists_only_that_gate(db: &TestDb) {
    let prod = instance(db, "web-production", "acme/web", "production");
    let checks = WaitingFor::new(WaitKind::Checks, "required checks: ci/test", None);
    let a = deploy_at(db, &prod, SHA, Some(checks));
    deploy_at(db, &prod, SHA, Some(approval(1)));
    deploy_at(db, &prod, SHA, None);
    let at_checks = db.store.waiting_at_gate(WaitKind::Checks, 100).unwrap();
    assert_eq!(at_checks.iter().map(|d| d.id).collect::<Vec<_>>(), [a.id]);
}

both_backends!(
    a_commit_is_promoted_once_it_succeeded_on_the_environment_of_the_same_repository,
    a_deployment_moves_on_only_from_the_gate_it_waits_at,
    a_deployment_whose_gate_cannot_open_ends_with_its_reason_and_audit_event,
    the_requester_cannot_approve_and_other_deployers_release_it,
    waiting_at_a_gate_lists_only_that_gate,
);
