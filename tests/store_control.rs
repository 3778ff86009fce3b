//! The store's side of deploy control, on SQLite and on PostgreSQL: locks, the audit
//! trail, waiting deployments, dry runs and the refreshes of a command's one reply.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Barrier};
use std::time::Duration as StdDuration;

use chrono::Duration;
use common::{Sql, TestDb};
use deploybot::deploy::{
    self, AuditEvent, AuditStore, DeployKind, DeployRequest, DeployState, Deployment, Error,
    Instance, InstanceStore, ListOptions, Lock, LockStore, LockTarget, QueueStore, Release,
    ReleaseStore, Store, TriggeredDeployment, WaitKind, WaitingFor,
};
use deploybot::github::outbox::{DeploymentReply, OutboxItem, OutboxStore, StatusReport, Work};

const LEASE: StdDuration = StdDuration::from_secs(60);

fn instance(db: &TestDb, tenant: &str, name: &str, repo: &str) -> Instance {
    db.store
        .upsert_instance(tenant, name, repo, name)
        .expect("upsert instance")
}

fn request(inst: &Instance, image: &str) -> DeployRequest {
    DeployRequest {
        instance_id: inst.id,
        image: image.to_string(),
        env: BTreeMap::new(),
        strategy: "rolling".into(),
        notes: "push to main by @octocat (abc1234)".into(),
        commit_sha: "a10867b14bb761a232cd80139fbd4c0d33264240".into(),
        params: Default::default(),
        noop: false,
    }
}

/// A pending deployment of a new release, shaped by `shape` before it is stored.
fn deploy_with(
    db: &TestDb,
    inst: &Instance,
    image: &str,
    shape: impl FnOnce(&mut Deployment),
) -> Deployment {
    let release = Release::from_request(&inst.tenant_id, &request(inst, image));
    let mut deployment = Deployment::pending(&release, "rolling", "octocat");
    shape(&mut deployment);
    db.store
        .insert_release_and_deployment(&release, &deployment)
        .expect("deploy")
        .1
}

fn deploy(db: &TestDb, inst: &Instance, image: &str) -> Deployment {
    deploy_with(db, inst, image, |_| {})
}

/// The audit event a store call writes for each lock it removes.
fn lock_event(action: &'static str) -> impl Fn(&Lock) -> AuditEvent + Sync {
    move |lock: &Lock| AuditEvent::new(&lock.tenant_id, "deploybot", action, lock.describe())
}

fn waiting_for(kind: WaitKind, reason: &str) -> WaitingFor {
    WaitingFor::new(kind, reason, None)
}

fn lock_on(tenant: &str, target: LockTarget, repo: &str, holder: &str) -> Lock {
    Lock {
        tenant_id: tenant.to_string(),
        target,
        repo: repo.to_string(),
        holder: holder.to_string(),
        reason: "incident 42".into(),
        pull_request: None,
        created_at: deploy::now(),
        expires_at: None,
    }
}

fn instance_lock(inst: &Instance, holder: &str) -> Lock {
    lock_on(
        &inst.tenant_id,
        LockTarget::Instance {
            instance_id: inst.id,
        },
        &inst.repo.to_ascii_lowercase(),
        holder,
    )
}

fn repo_lock(tenant: &str, repo: &str, holder: &str) -> Lock {
    lock_on(
        tenant,
        LockTarget::Repo {
            repo: repo.to_ascii_lowercase(),
        },
        &repo.to_ascii_lowercase(),
        holder,
    )
}

/// Runs a claimed deployment to `state`.
fn finish(db: &TestDb, claimed: &Deployment, state: DeployState) {
    let mut done = claimed.clone();
    done.transition(state).unwrap();
    db.store.finish_deployment(&done, "w1").unwrap();
}

fn claim(db: &TestDb) -> Option<Deployment> {
    db.store.claim_next("w1", LEASE).unwrap()
}

fn items(db: &TestDb, d: &Deployment) -> Vec<OutboxItem> {
    db.store.outbox_items(&d.tenant_id, d.id).unwrap()
}

fn statuses(db: &TestDb, d: &Deployment) -> Vec<StatusReport> {
    items(db, d)
        .iter()
        .filter_map(|item| match item.work() {
            Ok(Work::DeploymentStatus(status)) => Some(status),
            _ => None,
        })
        .collect()
}

fn replies(db: &TestDb, d: &Deployment) -> Vec<DeploymentReply> {
    items(db, d)
        .iter()
        .filter_map(|item| match item.work() {
            Ok(Work::DeploymentReply(reply)) => Some(reply),
            _ => None,
        })
        .collect()
}

/// How many "refresh the reply from the deployment's state" items are queued for `d`.
fn refreshes(db: &TestDb, d: &Deployment) -> usize {
    replies(db, d)
        .iter()
        .filter(|reply| reply.state.is_none())
        .count()
}

// ----------------------------------------------------------------------------------------
// Locks

fn a_lock_is_renewed_by_its_holder_and_refused_to_others(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let mut first = instance_lock(&web, "@alice");
    first.created_at = deploy::now() - Duration::minutes(5);
    let taken = db.store.acquire_lock(&first).unwrap();
    assert_eq!(taken, first);

    // Another holder is refused, told who holds it and why.
    let refused = db
        .store
        .acquire_lock(&instance_lock(&web, "@bob"))
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Locked(m) if m.contains("@alice") && m.contains("incident 42")),
        "{refused:?}"
    );

    // Holders are compared exactly: logins arrive lower-cased, and token names, which
    // are configured, differ when their case does.
    let other_case = db.store.acquire_lock(&instance_lock(&web, "@ALICE"));
    assert!(
        matches!(&other_case, Err(Error::Locked(_))),
        "{other_case:?}"
    );

    // The holder renews it: reason, expiry and pull request are replaced, when it was
    // taken is kept.
    let mut renewal = instance_lock(&web, "@alice");
    renewal.reason = "release freeze for the demo".into();
    renewal.expires_at = Some(deploy::now() + Duration::hours(2));
    renewal.pull_request = Some(7);
    let renewed = db.store.acquire_lock(&renewal).unwrap();
    assert_eq!(renewed.created_at, first.created_at);
    assert_eq!(renewed.reason, "release freeze for the demo");
    assert_eq!(renewed.expires_at, renewal.expires_at);
    assert_eq!(renewed.pull_request, Some(7));
    assert_eq!(renewed.holder, "@alice");

    let target = LockTarget::Instance {
        instance_id: web.id,
    };
    assert_eq!(
        db.store.get_lock("acme", &target).unwrap(),
        Some(renewed.clone())
    );
    assert_eq!(db.store.list_locks("acme").unwrap(), vec![renewed.clone()]);

    // Released: the lock that was held, then nothing; then anyone may take it.
    assert_eq!(
        db.store.release_lock("acme", &target).unwrap(),
        Some(renewed)
    );
    assert_eq!(db.store.release_lock("acme", &target).unwrap(), None);
    assert_eq!(db.store.get_lock("acme", &target).unwrap(), None);
    db.store.acquire_lock(&instance_lock(&web, "@bob")).unwrap();
}

fn an_expired_lock_is_not_held_and_is_replaced(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let target = LockTarget::Instance {
        instance_id: web.id,
    };
    let mut old = instance_lock(&web, "@alice");
    old.created_at = deploy::now() - Duration::hours(2);
    old.expires_at = Some(deploy::now() - Duration::seconds(1));
    db.store.acquire_lock(&old).unwrap();

    assert_eq!(db.store.get_lock("acme", &target).unwrap(), None);
    assert_eq!(db.store.lock_covering("acme", web.id).unwrap(), None);
    assert!(db.store.list_locks("acme").unwrap().is_empty());
    // Releasing it releases nothing that was held.
    assert_eq!(db.store.release_lock("acme", &target).unwrap(), None);

    db.store.acquire_lock(&old).unwrap();
    let bob = instance_lock(&web, "@bob");
    let taken = db.store.acquire_lock(&bob).unwrap();
    assert_eq!(taken.holder, "@bob");
    // A new lock, not the old one renewed.
    assert_eq!(taken.created_at, bob.created_at);
    assert_eq!(db.store.get_lock("acme", &target).unwrap(), Some(taken));
}

fn expiring_locks_removes_only_those_past_their_time_in_every_tenant(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let api = instance(db, "acme", "api-production", "acme/api");
    let other = instance(db, "globex", "web-production", "globex/web");
    let now = deploy::now();
    let mut ended = instance_lock(&web, "@alice");
    ended.expires_at = Some(now - Duration::minutes(1));
    let mut lasting = instance_lock(&api, "@alice");
    lasting.expires_at = Some(now + Duration::hours(1));
    let forever = repo_lock("acme", "acme/web", "@carol");
    let mut theirs = instance_lock(&other, "@mallory");
    theirs.expires_at = Some(now - Duration::minutes(2));
    for lock in [&ended, &lasting, &forever, &theirs] {
        db.store.acquire_lock(lock).unwrap();
    }

    let expired = db
        .store
        .expire_locks(now, &lock_event("lock.expired"))
        .unwrap();
    let mut expired_targets: Vec<(String, String)> = expired
        .iter()
        .map(|l| (l.tenant_id.clone(), l.target.key()))
        .collect();
    expired_targets.sort();
    assert_eq!(
        expired_targets,
        vec![
            ("acme".to_string(), ended.target.key()),
            ("globex".to_string(), theirs.target.key()),
        ]
    );
    let mut sql = Sql::open(&db.url);
    assert_eq!(sql.count("SELECT COUNT(*) AS n FROM locks"), 2);
    // Each expiry is in the audit trail of its tenant, written with it.
    assert_eq!(
        sql.count("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'lock.expired'"),
        2
    );
    // Once removed, they are not reported again (another replica finds nothing).
    assert!(
        db.store
            .expire_locks(now, &lock_event("lock.expired"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        sql.count("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'lock.expired'"),
        2
    );
    let live: HashSet<String> = db
        .store
        .list_locks("acme")
        .unwrap()
        .iter()
        .map(|l| l.target.key())
        .collect();
    assert_eq!(
        live,
        HashSet::from([lasting.target.key(), forever.target.key()])
    );
}

fn a_repository_lock_covers_its_instances_and_an_instance_lock_comes_first(db: &TestDb) {
    let production = instance(db, "acme", "web-production", "Acme/Web");
    let staging = instance(db, "acme", "web-staging", "acme/web");
    let api = instance(db, "acme", "api-production", "acme/api");
    let theirs = instance(db, "globex", "web-production", "acme/web");

    let global = db
        .store
        .acquire_lock(&repo_lock("acme", "ACME/web", "@alice"))
        .unwrap();
    assert_eq!(global.target.key(), "repo:acme/web");
    for covered in [&production, &staging] {
        assert_eq!(
            db.store.lock_covering("acme", covered.id).unwrap(),
            Some(global.clone()),
            "{}",
            covered.name
        );
    }
    assert_eq!(db.store.lock_covering("acme", api.id).unwrap(), None);
    // Another tenant's instance of a repository with the same name is not covered.
    assert_eq!(db.store.lock_covering("globex", theirs.id).unwrap(), None);
    // Asked under another tenant, an instance is not found.
    assert!(matches!(
        db.store.lock_covering("globex", production.id),
        Err(Error::NotFound { .. })
    ));

    // Under another's repository lock, no one else locks an instance.
    let under = db.store.acquire_lock(&instance_lock(&staging, "@bob"));
    assert!(
        matches!(&under, Err(Error::Locked(m)) if m.contains("@alice")),
        "{under:?}"
    );
    // Its holder may, and the instance's own lock is the one shown there.
    let own = db
        .store
        .acquire_lock(&instance_lock(&staging, "@alice"))
        .unwrap();
    assert_eq!(
        db.store.lock_covering("acme", staging.id).unwrap(),
        Some(own)
    );
    assert_eq!(
        db.store.lock_covering("acme", production.id).unwrap(),
        Some(global)
    );
    // An instance's lock keeps another from taking its repository's.
    db.store
        .release_lock(
            "acme",
            &LockTarget::Repo {
                repo: "acme/web".into(),
            },
        )
        .unwrap();
    let over = db
        .store
        .acquire_lock(&repo_lock("acme", "acme/web", "@bob"));
    assert!(
        matches!(&over, Err(Error::Locked(m)) if m.contains("@alice")),
        "{over:?}"
    );
}

/// Eight takers of one free target at once: exactly one gets it, every other is told
/// it is locked.
fn of_concurrent_takers_exactly_one_wins(db: TestDb) {
    let web = instance(&db, "acme", "web-production", "acme/web");
    for round in 0..3 {
        let target = if round % 2 == 0 {
            LockTarget::Instance {
                instance_id: web.id,
            }
        } else {
            LockTarget::Repo {
                repo: "acme/web".into(),
            }
        };
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&db.store);
                let barrier = Arc::clone(&barrier);
                let lock = lock_on("acme", target.clone(), "acme/web", &format!("@user{i}"));
                std::thread::spawn(move || {
                    barrier.wait();
                    store.acquire_lock(&lock)
                })
            })
            .collect();
        let results: Vec<Result<Lock, Error>> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<&Lock> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for result in &results {
            if let Err(e) = result {
                assert!(
                    matches!(e, Error::Locked(m) if m.contains(&winners[0].holder)),
                    "round {round}: {e:?}"
                );
            }
        }
        assert_eq!(
            db.store.get_lock("acme", &target).unwrap().as_ref(),
            Some(winners[0])
        );
        db.store.release_lock("acme", &target).unwrap();
    }
}

fn a_merged_pull_request_releases_only_its_own_locks(db: &TestDb) {
    let production = instance(db, "acme", "web-production", "acme/web");
    let staging = instance(db, "acme", "web-staging", "acme/web");
    let api = instance(db, "acme", "api-production", "acme/api");
    let theirs = instance(db, "globex", "web-production", "acme/web");
    let from_pull = |mut lock: Lock, pull: u64| {
        lock.pull_request = Some(pull);
        lock
    };
    let released_ones = [
        from_pull(instance_lock(&production, "@alice"), 7),
        from_pull(repo_lock("acme", "acme/web", "@alice"), 7),
    ];
    let kept = [
        from_pull(instance_lock(&staging, "@alice"), 8),
        from_pull(instance_lock(&api, "@alice"), 7),
        from_pull(instance_lock(&theirs, "@alice"), 7),
    ];
    for lock in released_ones.iter().chain(&kept) {
        db.store.acquire_lock(lock).unwrap();
    }
    let released = db
        .store
        .release_pull_locks("acme", "ACME/Web", 7, &lock_event("lock.released_on_merge"))
        .unwrap();
    let keys: HashSet<String> = released.iter().map(|l| l.target.key()).collect();
    assert_eq!(keys, released_ones.iter().map(|l| l.target.key()).collect());
    assert!(released.iter().all(|l| l.tenant_id == "acme"));
    assert_eq!(db.store.list_locks("acme").unwrap().len(), 2);
    assert_eq!(db.store.list_locks("globex").unwrap().len(), 1);
    assert!(
        db.store
            .release_pull_locks("acme", "acme/web", 7, &lock_event("lock.released_on_merge"))
            .unwrap()
            .is_empty()
    );
}

fn another_tenants_locks_and_audit_are_invisible(db: &TestDb) {
    let ours = instance(db, "acme", "web-production", "acme/web");
    instance(db, "globex", "web-production", "acme/web");
    let target = LockTarget::Repo {
        repo: "acme/web".into(),
    };
    db.store
        .acquire_lock(&repo_lock("globex", "acme/web", "@mallory"))
        .unwrap();
    assert_eq!(db.store.get_lock("acme", &target).unwrap(), None);
    assert!(db.store.list_locks("acme").unwrap().is_empty());
    assert_eq!(db.store.lock_covering("acme", ours.id).unwrap(), None);
    // Their lock neither blocks ours nor is removed by our unlock.
    db.store
        .acquire_lock(&repo_lock("acme", "acme/web", "@alice"))
        .unwrap();
    assert!(db.store.release_lock("acme", &target).unwrap().is_some());
    assert_eq!(
        db.store
            .get_lock("globex", &target)
            .unwrap()
            .map(|l| l.holder),
        Some("@mallory".to_string())
    );

    let mut theirs = AuditEvent::new("globex", "@mallory", "lock", "every environment locked");
    theirs.instance_id = Some(ours.id);
    db.store.record_audit(&theirs).unwrap();
    db.store
        .record_audit(&AuditEvent::new("acme", "@alice", "unlock", "unlocked"))
        .unwrap();
    let page = db
        .store
        .list_audit("acme", None, &ListOptions::default())
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].actor, "@alice");
    // Not even under an instance id of ours.
    let page = db
        .store
        .list_audit("acme", Some(ours.id), &ListOptions::default())
        .unwrap();
    assert!(page.items.is_empty());
}

// ----------------------------------------------------------------------------------------
// The audit trail

fn the_audit_trail_pages_newest_first_and_loses_nothing(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let api = instance(db, "acme", "api-production", "acme/api");
    let dep = deploy(db, &web, "img:1");
    for i in 0..45 {
        let mut event = AuditEvent::new("acme", "token:ci", "deploy", format!("event {i}"));
        event.instance_id = Some(if i % 3 == 0 { api.id } else { web.id });
        event.deployment_id = (i == 44).then_some(dep.id);
        db.store.record_audit(&event).unwrap();
    }
    let walk = |instance| {
        let mut seen = Vec::new();
        let mut options = ListOptions {
            cursor: None,
            limit: Some(20),
        };
        loop {
            let page = db.store.list_audit("acme", instance, &options).unwrap();
            assert!(page.items.len() <= 20);
            seen.extend(page.items);
            match page.next_cursor {
                Some(cursor) => options.cursor = Some(cursor),
                None => break,
            }
        }
        seen
    };
    let all = walk(None);
    let details: Vec<String> = all.iter().map(|e| e.detail.clone()).collect();
    let expected: Vec<String> = (0..45).rev().map(|i| format!("event {i}")).collect();
    assert_eq!(details, expected);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all[0].deployment_id, Some(dep.id));
    assert_eq!(all[0].instance_id, Some(web.id));
    assert_eq!(all[0].actor, "token:ci");
    assert_eq!(all[0].action, "deploy");

    let of_api = walk(Some(api.id));
    assert_eq!(of_api.len(), 15);
    assert!(of_api.iter().all(|e| e.instance_id == Some(api.id)));

    // A cursor of one list is refused by another; page sizes outside 1..=100 are refused.
    let first = db
        .store
        .list_audit(
            "acme",
            Some(api.id),
            &ListOptions {
                cursor: None,
                limit: Some(5),
            },
        )
        .unwrap();
    let cursor = first.next_cursor.expect("more than one page");
    for instance in [None, Some(web.id)] {
        let refused = db.store.list_audit(
            "acme",
            instance,
            &ListOptions {
                cursor: Some(cursor.clone()),
                limit: None,
            },
        );
        assert!(
            matches!(refused, Err(Error::InvalidRequest(_))),
            "{refused:?}"
        );
    }
    for limit in [0, 101] {
        let refused = db.store.list_audit(
            "acme",
            None,
            &ListOptions {
                cursor: None,
                limit: Some(limit),
            },
        );
        assert!(matches!(refused, Err(Error::InvalidRequest(_))));
    }
}

// ----------------------------------------------------------------------------------------
// Waiting deployments

fn the_worker_claims_no_waiting_deployment(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let held = deploy_with(db, &web, "img:held", |d| {
        d.waiting_for = Some(waiting_for(WaitKind::Lock, "locked by @alice"));
    });
    assert_eq!(claim(db), None, "a waiting deployment was claimed");
    // One queued behind it runs: the waiting one does not hold up the queue.
    let free = deploy(db, &web, "img:free");
    assert_eq!(claim(db).map(|d| d.id), Some(free.id));
    // Released while another runs on its instance: it waits for that one.
    db.store.set_waiting("acme", held.id, None).unwrap();
    assert_eq!(claim(db), None);
    finish(
        db,
        &db.store.get_deployment("acme", free.id).unwrap(),
        DeployState::Succeeded,
    );
    assert_eq!(claim(db).map(|d| d.id), Some(held.id));
}

fn waiting_deployments_are_listed_oldest_first_across_tenants(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let theirs = instance(db, "globex", "web-production", "globex/web");
    let wait = |d: &mut Deployment| d.waiting_for = Some(waiting_for(WaitKind::Freeze, "freeze"));
    let first = deploy_with(db, &web, "img:1", wait);
    deploy(db, &web, "img:free");
    let second = deploy_with(db, &theirs, "img:2", wait);
    let third = deploy_with(db, &web, "img:3", wait);
    db.store.request_cancel("acme", third.id, "@alice").unwrap();
    let listed: Vec<_> = db
        .store
        .waiting_deployments(10)
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, vec![first.id, second.id]);
    assert_eq!(db.store.waiting_deployments(1).unwrap().len(), 1);
}

fn setting_what_a_deployment_waits_for_reports_it(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let d = deploy(db, &web, "img:1");
    let freeze = WaitingFor::new(
        WaitKind::Freeze,
        "end-of-year freeze",
        Some(deploy::now() + Duration::hours(3)),
    );
    let changed = db.store.set_waiting("acme", d.id, Some(&freeze)).unwrap();
    assert_eq!(changed.waiting_for, Some(freeze.clone()));
    assert_eq!(
        db.store.get_deployment("acme", d.id).unwrap().waiting_for,
        Some(freeze.clone())
    );
    let last = statuses(db, &d).pop().unwrap();
    assert_eq!(last.state, DeployState::Pending);
    assert_eq!(last.message, freeze.describe());

    // Asked again (another process's gatekeeper): reported once.
    let reported = statuses(db, &d).len();
    db.store.set_waiting("acme", d.id, Some(&freeze)).unwrap();
    assert_eq!(statuses(db, &d).len(), reported);

    let cleared = db.store.set_waiting("acme", d.id, None).unwrap();
    assert_eq!(cleared.waiting_for, None);
    assert_eq!(statuses(db, &d).pop().unwrap().message, "queued");

    // Another tenant cannot touch it; a deployment no longer pending is not changed.
    assert!(matches!(
        db.store.set_waiting("globex", d.id, Some(&freeze)),
        Err(Error::NotFound { .. })
    ));
    let running = claim(db).unwrap();
    let refused = db.store.set_waiting("acme", running.id, Some(&freeze));
    assert!(
        matches!(refused, Err(Error::InvalidState(_))),
        "{refused:?}"
    );
    assert_eq!(
        db.store.get_deployment("acme", d.id).unwrap().waiting_for,
        None
    );
}

fn releasing_lets_the_newest_run_and_supersedes_the_older(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let other = instance(db, "acme", "api-production", "acme/api");
    let by_lock = |d: &mut Deployment| {
        d.waiting_for = Some(waiting_for(WaitKind::Lock, "locked by @alice"));
    };
    let oldest = deploy_with(db, &web, "img:1", by_lock);
    let older = deploy_with(db, &web, "img:2", by_lock);
    let newest = deploy_with(db, &web, "img:3", by_lock);
    let frozen = deploy_with(db, &web, "img:4", |d| {
        d.waiting_for = Some(waiting_for(WaitKind::Approval, "approval"));
    });
    let elsewhere = deploy_with(db, &other, "img:5", by_lock);

    let released = db
        .store
        .release_waiting("acme", web.id, &[WaitKind::Lock, WaitKind::Freeze])
        .unwrap()
        .expect("one released");
    assert_eq!(released.id, newest.id);
    assert_eq!(released.waiting_for, None);
    assert_eq!(released.state, DeployState::Pending);
    let get = |id| db.store.get_deployment("acme", id).unwrap();
    for superseded in [&oldest, &older] {
        let d = get(superseded.id);
        assert_eq!(d.state, DeployState::Cancelled);
        assert_eq!(d.error, format!("superseded by {}", newest.id));
        let last = statuses(db, &d).pop().unwrap();
        assert_eq!(last.state, DeployState::Cancelled);
    }
    assert_eq!(statuses(db, &newest).pop().unwrap().message, "queued");
    // What waits for something else, or on another instance, stays.
    assert!(get(frozen.id).waiting_for.is_some());
    assert_eq!(get(frozen.id).state, DeployState::Pending);
    assert!(get(elsewhere.id).waiting_for.is_some());
    // The released one runs; nothing is left to release.
    assert_eq!(claim(db).map(|d| d.id), Some(newest.id));
    assert_eq!(
        db.store
            .release_waiting("acme", web.id, &[WaitKind::Lock, WaitKind::Freeze])
            .unwrap(),
        None
    );
    // Under another tenant nothing is released.
    assert_eq!(
        db.store
            .release_waiting("globex", other.id, &[WaitKind::Lock])
            .unwrap(),
        None
    );
    assert!(get(elsewhere.id).waiting_for.is_some());
}

/// Two gatekeepers (replicas) releasing one instance at once: one lets it run, the
/// other releases nothing, and each deployment is reported once.
fn concurrent_releases_release_once(db: TestDb) {
    let web = instance(&db, "acme", "web-production", "acme/web");
    for _ in 0..5 {
        let ids: Vec<_> = (0..3)
            .map(|i| {
                deploy_with(&db, &web, &format!("img:{i}"), |d| {
                    d.waiting_for = Some(waiting_for(WaitKind::Lock, "locked by @alice"));
                })
                .id
            })
            .collect();
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let store = Arc::clone(&db.store);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    store.release_waiting("acme", web.id, &[WaitKind::Lock])
                })
            })
            .collect();
        let released: Vec<_> = threads
            .into_iter()
            .filter_map(|t| t.join().unwrap().unwrap())
            .collect();
        assert_eq!(released.len(), 1, "{released:?}");
        assert_eq!(released[0].id, ids[2]);
        for id in &ids[..2] {
            let d = db.store.get_deployment("acme", *id).unwrap();
            assert_eq!(d.state, DeployState::Cancelled);
            let finals = statuses(&db, &d)
                .iter()
                .filter(|s| s.state == DeployState::Cancelled)
                .count();
            assert_eq!(finals, 1);
        }
        let running = claim(&db).unwrap();
        finish(&db, &running, DeployState::Succeeded);
    }
}

fn triggered(inst: &Instance, image: &str, waits_for_locks: bool) -> TriggeredDeployment {
    let release = Release::from_request(&inst.tenant_id, &request(inst, image));
    let deployment = Deployment::pending(&release, "rolling", "octocat");
    TriggeredDeployment {
        release,
        deployment,
        trigger_key: None,
        supersede: false,
        new_release: true,
        waits_for_locks,
        lock_holder: None,
        audit: Vec::new(),
    }
}

fn a_push_stored_under_a_lock_waits_for_it(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let mut lock = repo_lock("acme", "acme/web", "@alice");
    lock.expires_at = Some(deploy::now() + Duration::hours(1));
    db.store.acquire_lock(&lock).unwrap();

    let push = db
        .store
        .insert_triggered(&triggered(&web, "img:push", true))
        .unwrap()
        .unwrap();
    let waiting = push.waiting_for.clone().expect("the push waits");
    assert_eq!(waiting, lock.waiting());
    assert_eq!(
        db.store
            .get_deployment("acme", push.id)
            .unwrap()
            .waiting_for,
        Some(waiting.clone())
    );
    // Its first report already says what it waits for.
    let first = statuses(db, &push).remove(0);
    assert_eq!(first.state, DeployState::Pending);
    assert_eq!(first.message, waiting.describe());
    assert!(first.message.contains("@alice"), "{}", first.message);

    // A lock comes before a freeze the push was already held for.
    let mut frozen = triggered(&web, "img:frozen", true);
    frozen.deployment.waiting_for = Some(waiting_for(WaitKind::Freeze, "freeze"));
    let frozen = db.store.insert_triggered(&frozen).unwrap().unwrap();
    assert_eq!(frozen.waiting_for.map(|w| w.kind), Some(WaitKind::Lock));

    // A person's deployment (admitted before it is stored) does not wait.
    let person = db
        .store
        .insert_triggered(&triggered(&web, "img:person", false))
        .unwrap()
        .unwrap();
    assert_eq!(person.waiting_for, None);
    assert_eq!(statuses(db, &person).remove(0).message, "queued");

    // Unlocked: the next push does not wait.
    db.store
        .release_lock(
            "acme",
            &LockTarget::Repo {
                repo: "acme/web".into(),
            },
        )
        .unwrap();
    let after = db
        .store
        .insert_triggered(&triggered(&web, "img:after", true))
        .unwrap()
        .unwrap();
    assert_eq!(after.waiting_for, None);
}

/// A person's deployment admitted before another took the lock is refused as it is
/// written; its holder's, and a push's, are not.
fn a_lock_taken_after_admission_refuses_the_write(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let mut lock = repo_lock("acme", "acme/web", "@alice");
    lock.reason = "incident 7".into();
    db.store.acquire_lock(&lock).unwrap();
    let as_person = |image: &str, holder: &str| {
        let mut t = triggered(&web, image, false);
        t.lock_holder = Some(holder.into());
        db.store.insert_triggered(&t)
    };
    let refused = as_person("img:bob", "@bob");
    assert!(
        matches!(&refused, Err(Error::Locked(m)) if m.contains("@alice") && m.contains("incident 7")),
        "{refused:?}"
    );
    assert!(
        db.store
            .list_deployments("acme", web.id, &Default::default())
            .unwrap()
            .items
            .is_empty()
    );
    as_person("img:alice", "@alice").unwrap().unwrap();
    db.store
        .insert_triggered(&triggered(&web, "img:push", true))
        .unwrap()
        .unwrap();
}

/// On an instance whose newer deployments supersede older queued ones: a push held by a
/// lock cancels only older pushes held too, never what the lock's holder queued; one that
/// runs cancels them all.
fn a_held_push_supersedes_only_held_ones(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    db.store
        .acquire_lock(&instance_lock(&web, "@alice"))
        .unwrap();
    let superseding = |image: &str, waits_for_locks: bool| {
        let mut t = triggered(&web, image, waits_for_locks);
        t.supersede = true;
        db.store.insert_triggered(&t).unwrap().unwrap()
    };
    let get = |d: &Deployment| db.store.get_deployment("acme", d.id).unwrap();
    // The holder's deployment supersedes the push held before it.
    let first_push = superseding("img:push1", true);
    let holders = superseding("img:hotfix", false);
    let first = get(&first_push);
    assert_eq!(first.state, DeployState::Cancelled);
    assert_eq!(first.error, format!("superseded by {}", holders.id));
    // Pushes held after it supersede each other, and leave it queued.
    let second_push = superseding("img:push2", true);
    let third_push = superseding("img:push3", true);
    assert_eq!(
        get(&holders).state,
        DeployState::Pending,
        "{}",
        get(&holders).error
    );
    let second = get(&second_push);
    assert_eq!(second.state, DeployState::Cancelled);
    assert_eq!(second.error, format!("superseded by {}", third_push.id));
    assert!(get(&third_push).waiting_for.is_some());

    // Unlocked, a push runs and supersedes the held one and the queued ones before it.
    db.store
        .release_lock(
            "acme",
            &LockTarget::Instance {
                instance_id: web.id,
            },
        )
        .unwrap();
    let fourth = superseding("img:push4", true);
    assert_eq!(fourth.waiting_for, None);
    for older in [&holders, &third_push] {
        let d = get(older);
        assert_eq!(d.state, DeployState::Cancelled, "{}", d.error);
        assert_eq!(d.error, format!("superseded by {}", fourth.id));
    }
}

fn a_push_through_the_webhook_waits_for_an_instance_lock(db: &TestDb) {
    use deploybot::github::store::{Delivery, DeliveryStore};
    let web = instance(db, "acme", "web-production", "acme/web");
    let api = instance(db, "acme", "api-production", "acme/web");
    db.store
        .acquire_lock(&instance_lock(&web, "token:ops"))
        .unwrap();
    let delivery = Delivery {
        id: "delivery-1".into(),
        event: "push".into(),
        action: String::new(),
        tenant_id: "acme".into(),
        repo: "acme/web".into(),
    };
    let record = db
        .store
        .record_delivery(
            &delivery,
            &[
                triggered(&web, "img:web", true),
                triggered(&api, "img:api", true),
            ],
            &[],
        )
        .unwrap();
    assert_eq!(record.created.len(), 2);
    let get = |d: &Deployment| db.store.get_deployment("acme", d.id).unwrap();
    let web_push = get(&record.created[0]);
    let api_push = get(&record.created[1]);
    assert_eq!(web_push.waiting_for.map(|w| w.kind), Some(WaitKind::Lock));
    assert_eq!(api_push.waiting_for, None);
}

// ----------------------------------------------------------------------------------------
// Dry runs

fn a_dry_run_never_changes_the_active_release(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let first = deploy(db, &web, "img:1");
    finish(db, &claim(db).unwrap(), DeployState::Succeeded);
    let second = deploy(db, &web, "img:2");
    finish(db, &claim(db).unwrap(), DeployState::Succeeded);
    let active = db.store.active_release("acme", web.id).unwrap().unwrap();
    assert_eq!(active.id, second.release_id);

    // A dry run of a new release succeeds without activating it.
    let noop = deploy_with(db, &web, "img:3", |d| d.noop = true);
    let claimed = claim(db).unwrap();
    assert_eq!(claimed.id, noop.id);
    assert!(claimed.noop);
    finish(db, &claimed, DeployState::Succeeded);
    assert_eq!(
        db.store.get_deployment("acme", noop.id).unwrap().state,
        DeployState::Succeeded
    );
    let active = db.store.active_release("acme", web.id).unwrap().unwrap();
    assert_eq!(active.id, second.release_id);
    assert!(
        !db.store
            .get_release("acme", noop.release_id)
            .unwrap()
            .active
    );

    // A dry run of a rollback to the first release marks nothing rolled back.
    let first_release = db.store.get_release("acme", first.release_id).unwrap();
    let mut rollback = Deployment::pending(&first_release, "rolling", "@alice");
    rollback.kind = DeployKind::Rollback;
    rollback.noop = true;
    db.store.insert_deployment(&rollback).unwrap();
    let claimed = claim(db).unwrap();
    assert_eq!(claimed.id, rollback.id);
    finish(db, &claimed, DeployState::Succeeded);
    let active = db.store.active_release("acme", web.id).unwrap().unwrap();
    assert_eq!(active.id, second.release_id);
    assert_eq!(
        db.store.get_deployment("acme", second.id).unwrap().state,
        DeployState::Succeeded
    );
    // The previous release is still the first one: nothing was activated in between.
    assert_eq!(
        db.store
            .previous_release("acme", web.id)
            .unwrap()
            .map(|r| r.id),
        Some(first.release_id)
    );
}

fn dry_runs_and_params_are_stored(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let params = BTreeMap::from([
        ("REGION".to_string(), "eu-west-1".to_string()),
        ("VERBOSE".to_string(), "1".to_string()),
    ]);
    let d = deploy_with(db, &web, "img:1", |d| {
        d.noop = true;
        d.params = params.clone();
    });
    let stored = db.store.get_deployment("acme", d.id).unwrap();
    assert!(stored.noop);
    assert_eq!(stored.params, params);
    assert_eq!(claim(db).unwrap().params, params);
}

// ----------------------------------------------------------------------------------------
// The live reply of a command

fn a_commands_deployment_refreshes_its_reply_at_each_step(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let from_comment = |d: &mut Deployment| {
        d.source.comment_id = Some(4242);
        d.source.pull_request = Some(7);
    };
    let d = deploy_with(db, &web, "img:1", from_comment);
    assert_eq!(refreshes(db, &d), 1, "queued");
    let lock = waiting_for(WaitKind::Lock, "locked by @alice");
    db.store.set_waiting("acme", d.id, Some(&lock)).unwrap();
    assert_eq!(refreshes(db, &d), 2, "waiting");
    db.store
        .release_waiting("acme", web.id, &[WaitKind::Lock])
        .unwrap()
        .unwrap();
    assert_eq!(refreshes(db, &d), 3, "released");
    let mut running = claim(db).unwrap();
    assert_eq!(refreshes(db, &d), 4, "running");

    // Progress refreshes it no more often than progress is reported.
    running.progress.phase = "rollout".into();
    running.progress.percent = 50;
    db.store.record_progress(&running, "w1").unwrap();
    assert_eq!(
        refreshes(db, &d),
        4,
        "progress within seconds of the last report"
    );
    let mut sql = Sql::open(&db.url);
    sql.execute(&format!(
        "UPDATE outbox SET created_at = '2000-01-01 00:00:00' WHERE deployment_id = '{}'",
        d.id
    ));
    db.store.record_progress(&running, "w1").unwrap();
    assert_eq!(refreshes(db, &d), 5, "progress");

    // Every refresh is ordered with the deployment's other reports.
    assert!(
        items(db, &d)
            .iter()
            .all(|i| i.ordering_key == d.id.to_string())
    );

    finish(db, &running, DeployState::Succeeded);
    let last = replies(db, &d).pop().unwrap();
    assert_eq!(last.state, Some(DeployState::Succeeded));
    assert_eq!(refreshes(db, &d), 5);

    // A deployment that no comment asked for has no reply at all.
    let quiet = deploy(db, &web, "img:2");
    db.store.set_waiting("acme", quiet.id, Some(&lock)).unwrap();
    db.store.set_waiting("acme", quiet.id, None).unwrap();
    let running = claim(db).unwrap();
    finish(db, &running, DeployState::Failed);
    assert!(replies(db, &quiet).is_empty());
}

fn a_commands_waiting_deployment_superseded_gets_its_final_reply(db: &TestDb) {
    let web = instance(db, "acme", "web-production", "acme/web");
    let by_lock = |d: &mut Deployment| {
        d.source.comment_id = Some(1);
        d.waiting_for = Some(waiting_for(WaitKind::Lock, "locked by @alice"));
    };
    let older = deploy_with(db, &web, "img:1", by_lock);
    deploy_with(db, &web, "img:2", by_lock);
    db.store
        .release_waiting("acme", web.id, &[WaitKind::Lock])
        .unwrap();
    let last = replies(db, &older).pop().unwrap();
    assert_eq!(last.state, Some(DeployState::Cancelled));
    assert!(
        last.error.starts_with("superseded by dep_"),
        "{}",
        last.error
    );
}

both_backends!(
    a_lock_is_renewed_by_its_holder_and_refused_to_others,
    an_expired_lock_is_not_held_and_is_replaced,
    expiring_locks_removes_only_those_past_their_time_in_every_tenant,
    a_repository_lock_covers_its_instances_and_an_instance_lock_comes_first,
    a_merged_pull_request_releases_only_its_own_locks,
    another_tenants_locks_and_audit_are_invisible,
    the_audit_trail_pages_newest_first_and_loses_nothing,
    the_worker_claims_no_waiting_deployment,
    waiting_deployments_are_listed_oldest_first_across_tenants,
    setting_what_a_deployment_waits_for_reports_it,
    releasing_lets_the_newest_run_and_supersedes_the_older,
    a_push_stored_under_a_lock_waits_for_it,
    a_push_through_the_webhook_waits_for_an_instance_lock,
    a_held_push_supersedes_only_held_ones,
    a_lock_taken_after_admission_refuses_the_write,
    a_dry_run_never_changes_the_active_release,
    dry_runs_and_params_are_stored,
    a_commands_deployment_refreshes_its_reply_at_each_step,
    a_commands_waiting_deployment_superseded_gets_its_final_reply,
);

mod owned {
    use super::*;

    both_backends_owned!(
        of_concurrent_takers_exactly_one_wins,
        concurrent_releases_release_once,
    );
}
