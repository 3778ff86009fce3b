//! The store contract: every test runs on SQLite and on PostgreSQL.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::Duration;
use common::{Sql, TestDb};
use deploybot::deploy::{
    self, DeployRequest, DeployState, Deployment, Error, Instance, InstanceStore, ListOptions,
    QueueStore, Release, ReleaseStore, Store,
};
use deploybot::github::outbox::{
    CommentReply, NewOutboxItem, OutboxItem, OutboxResult, OutboxStore, Work,
};
use deploybot::store::SchemaStore;
use diesel::{Connection, RunQueryDsl};

fn instance(db: &TestDb, tenant: &str, name: &str) -> Instance {
    db.store
        .upsert_instance(tenant, name, &format!("{tenant}/web"), name)
        .expect("upsert instance")
}

fn request(inst: &Instance, image: &str) -> DeployRequest {
    DeployRequest {
        instance_id: inst.id,
        image: image.to_string(),
        env: BTreeMap::from([("LOG_LEVEL".to_string(), "info".to_string())]),
        strategy: "rolling".into(),
        notes: "push to main by @octocat (abc1234)".into(),
        commit_sha: "a10867b14bb761a232cd80139fbd4c0d33264240".into(),
        params: Default::default(),
        noop: false,
    }
}

/// A release and a pending deployment of it, created in one transaction.
fn deploy(db: &TestDb, inst: &Instance, image: &str) -> (Release, Deployment) {
    let release = Release::from_request(&inst.tenant_id, &request(inst, image));
    let deployment = Deployment::pending(&release, "rolling", "octocat");
    db.store
        .insert_release_and_deployment(&release, &deployment)
        .expect("deploy")
}

fn env_round_trips(db: &TestDb) {
    let inst = instance(db, "acme", "web-production");
    let mut req = request(&inst, "ghcr.io/acme/web:v1");
    req.env = BTreeMap::from([
        ("DATABASE_POOL".into(), "10".into()),
        ("QUOTED".into(), "a \"b\" 'c' $(d) ; e\nf".into()),
        ("UNICODE".into(), "déployé ✓".into()),
        ("EMPTY".into(), String::new()),
    ]);
    let release = Release::from_request("acme", &req);
    let deployment = Deployment::pending(&release, "canary", "octocat");
    let (release, deployment) = db
        .store
        .insert_release_and_deployment(&release, &deployment)
        .unwrap();

    let stored_release = db.store.get_release("acme", release.id).unwrap();
    assert_eq!(stored_release.env, req.env);
    assert_eq!(stored_release, release);
    let stored_deployment = db.store.get_deployment("acme", deployment.id).unwrap();
    assert_eq!(stored_deployment.env, req.env);
    assert_eq!(stored_deployment, deployment);
    assert_eq!(stored_deployment.image, "ghcr.io/acme/web:v1");
    assert_eq!(stored_deployment.state, DeployState::Pending);
}

fn fifty_concurrent_deploys_get_versions_one_to_fifty(db: &TestDb) {
    let inst = instance(db, "acme", "web-production");
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&db.store);
            let inst = inst.clone();
            std::thread::spawn(move || {
                let release = Release::from_request("acme", &request(&inst, &format!("img:{i}")));
                let deployment = Deployment::pending(&release, "rolling", "ci");
                store
                    .insert_release_and_deployment(&release, &deployment)
                    .map(|(r, _)| r.version)
            })
        })
        .collect();
    let mut versions: Vec<i64> = threads
        .into_iter()
        .map(|t| t.join().expect("thread").expect("deploy under contention"))
        .collect();
    versions.sort();
    assert_eq!(versions, (1..=50).collect::<Vec<i64>>());
    assert_eq!(db.store.next_release_version("acme", inst.id).unwrap(), 51);
    let page = db
        .store
        .list_releases("acme", inst.id, &ListOptions::default())
        .unwrap();
    assert_eq!(page.total, 50);
    let deployments = db
        .store
        .list_deployments("acme", inst.id, &ListOptions::default())
        .unwrap();
    assert_eq!(deployments.total, 50);
}

fn versions_are_per_instance(db: &TestDb) {
    let a = instance(db, "acme", "web-staging");
    let b = instance(db, "acme", "web-production");
    assert_eq!(deploy(db, &a, "x").0.version, 1);
    assert_eq!(deploy(db, &a, "x").0.version, 2);
    assert_eq!(deploy(db, &b, "x").0.version, 1);
    let other_tenant = instance(db, "globex", "web-production");
    assert_eq!(deploy(db, &other_tenant, "x").0.version, 1);
}

fn walking_deployments_in_pages_loses_and_repeats_nothing(db: &TestDb) {
    let inst = instance(db, "acme", "web-production");
    let (release, seed) = deploy(db, &inst, "seed");
    let base = deploy::now() - Duration::hours(1);
    let mut expected = HashSet::from([seed.id]);
    // 999 more, three per timestamp so that ties are broken by id.
    for i in 0..999 {
        let mut d = Deployment::pending(&release, "rolling", "ci");
        d.created_at = base + Duration::milliseconds(i / 3);
        db.store.insert_deployment(&d).unwrap();
        expected.insert(d.id);
    }
    let first = db
        .store
        .list_deployments("acme", inst.id, &ListOptions::default())
        .unwrap();
    assert_eq!(expected.len(), 1000);
    assert_eq!(first.total, 1000);
    assert_eq!(first.items.len(), 20, "default limit is 20");

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = db
            .store
            .list_deployments(
                "acme",
                inst.id,
                &ListOptions {
                    cursor: cursor.clone(),
                    limit: Some(7),
                },
            )
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|d| (d.created_at, d.id)));
        // New deployments keep arriving while someone pages.
        if pages % 10 == 0 {
            deploy(db, &inst, "arrives-while-paging");
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 1000usize.div_ceil(7), "no extra page");
    let ids: Vec<_> = seen.iter().map(|(_, id)| *id).collect();
    let unique: HashSet<_> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a deployment was repeated");
    assert_eq!(unique, expected, "a deployment was lost");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "pages are newest first");
}

fn releases_page_by_version(db: &TestDb) {
    let inst = instance(db, "acme", "web-production");
    for i in 0..25 {
        deploy(db, &inst, &format!("img:{i}"));
    }
    let first = db
        .store
        .list_releases(
            "acme",
            inst.id,
            &ListOptions {
                cursor: None,
                limit: Some(10),
            },
        )
        .unwrap();
    assert_eq!(first.total, 25);
    assert_eq!(
        first.items.iter().map(|r| r.version).collect::<Vec<_>>(),
        (16..=25).rev().collect::<Vec<_>>()
    );
    let second = db
        .store
        .list_releases(
            "acme",
            inst.id,
            &ListOptions {
                cursor: first.next_cursor.clone(),
                limit: Some(10),
            },
        )
        .unwrap();
    assert_eq!(second.items.first().map(|r| r.version), Some(15));
    let third = db
        .store
        .list_releases(
            "acme",
            inst.id,
            &ListOptions {
                cursor: second.next_cursor.clone(),
                limit: Some(10),
            },
        )
        .unwrap();
    assert_eq!(
        third.items.iter().map(|r| r.version).collect::<Vec<_>>(),
        (1..=5).rev().collect::<Vec<_>>()
    );
    assert_eq!(third.next_cursor, None, "no cursor on the last page");
}

fn last_page_has_no_cursor_even_when_full(db: &TestDb) {
    let inst = instance(db, "acme", "web-production");
    for _ in 0..4 {
        deploy(db, &inst, "x");
    }
    let page = db
        .store
        .list_deployments(
            "acme",
            inst.id,
            &ListOptions {
                cursor: None,
                limit: Some(4),
            },
        )
        .unwrap();
    assert_eq!(page.items.len(), 4);
    assert_eq!(page.next_cursor, None);
    let empty = instance(db, "acme", "empty");
    let page = db
        .store
        .list_deployments("acme", empty.id, &ListOptions::default())
        .unwrap();
    assert!(page.items.is_empty());
    assert_eq!((page.total, page.next_cursor), (0, None));
}

fn bad_cursors_and_limits_are_invalid_requests(db: &TestDb) {
    let a = instance(db, "acme", "web-production");
    let b = instance(db, "acme", "web-staging");
    for _ in 0..3 {
        deploy(db, &a, "x");
        deploy(db, &b, "x");
    }
    let opts = ListOptions {
        cursor: None,
        limit: Some(1),
    };
    let a_cursor = db
        .store
        .list_deployments("acme", a.id, &opts)
        .unwrap()
        .next_cursor
        .unwrap();
    let a_release_cursor = db
        .store
        .list_releases("acme", a.id, &opts)
        .unwrap()
        .next_cursor
        .unwrap();

    let cases = [
        ("garbage", Some("%%%not-a-cursor".to_string()), None),
        ("another instance's cursor", Some(a_cursor.clone()), None),
        ("a releases cursor", Some(a_release_cursor), None),
        ("limit 0", None, Some(0)),
        ("limit 101", None, Some(101)),
    ];
    for (what, cursor, limit) in cases {
        let list_instance = if what == "another instance's cursor" {
            b.id
        } else {
            a.id
        };
        let err = db
            .store
            .list_deployments("acme", list_instance, &ListOptions { cursor, limit })
            .unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{what}: {err:?}");
    }
    let limit_err = db
        .store
        .list_releases(
            "acme",
            a.id,
            &ListOptions {
                cursor: None,
                limit: Some(500),
            },
        )
        .unwrap_err();
    assert!(limit_err.to_string().contains("1 to 100"), "{limit_err}");
    // 100 is allowed.
    db.store
        .list_deployments(
            "acme",
            a.id,
            &ListOptions {
                cursor: Some(a_cursor),
                limit: Some(100),
            },
        )
        .unwrap();
}

fn tenants_never_see_each_other(db: &TestDb) {
    let acme = instance(db, "acme", "web-production");
    let (release, deployment) = deploy(db, &acme, "x");

    let not_found = |r: Result<_, Error>| matches!(r, Err(Error::NotFound { .. }));
    assert!(not_found(
        db.store.get_deployment("globex", deployment.id).map(|_| ())
    ));
    assert!(not_found(
        db.store.get_release("globex", release.id).map(|_| ())
    ));
    assert!(not_found(
        db.store.get_instance("globex", acme.id).map(|_| ())
    ));
    assert!(not_found(
        db.store
            .find_instance("globex", "web-production")
            .map(|_| ())
    ));
    assert!(not_found(
        db.store
            .list_deployments("globex", acme.id, &ListOptions::default())
            .map(|_| ())
    ));
    assert!(not_found(
        db.store
            .list_releases("globex", acme.id, &ListOptions::default())
            .map(|_| ())
    ));
    assert!(not_found(
        db.store.next_release_version("globex", acme.id).map(|_| ())
    ));
    assert!(not_found(db.store.activate_release("globex", release.id)));
    assert!(db.store.list_instances("globex").unwrap().is_empty());

    // Writes of a foreign tenant are refused and change nothing.
    let mut forged = deployment.clone();
    forged.tenant_id = "globex".into();
    forged.transition(DeployState::Running).unwrap();
    assert!(not_found(db.store.update_deployment(&forged)));
    let mut foreign_release = Release::from_request("globex", &request(&acme, "evil"));
    foreign_release.tenant_id = "globex".into();
    assert!(not_found(
        db.store.insert_release(&foreign_release).map(|_| ())
    ));
    assert_eq!(
        db.store
            .get_deployment("acme", deployment.id)
            .unwrap()
            .state,
        DeployState::Pending
    );
    assert_eq!(db.store.next_release_version("acme", acme.id).unwrap(), 2);
}

fn updates_follow_the_state_machine(db: &TestDb) {
    let inst = instance(db, "acme", "web-production");
    let (_, mut d) = deploy(db, &inst, "x");

    // pending -> succeeded is not an arrow of the diagram.
    let mut skipped = d.clone();
    skipped.state = DeployState::Succeeded;
    assert!(matches!(
        db.store.update_deployment(&skipped),
        Err(Error::InvalidState(_))
    ));

    d.transition(DeployState::Running).unwrap();
    d.progress = deploy::Progress {
        phase: "canary".into(),
        percent: 50,
        message: "healthy".into(),
    };
    db.store.update_deployment(&d).unwrap();
    let stored = db.store.get_deployment("acme", d.id).unwrap();
    assert_eq!(stored.progress, d.progress);
    assert!(stored.started_at.is_some());

    d.transition(DeployState::Succeeded).unwrap();
    db.store.update_deployment(&d).unwrap();
    // Someone holding an old copy cannot move it back to running.
    let mut stale = d.clone();
    stale.state = DeployState::Running;
    assert!(matches!(
        db.store.update_deployment(&stale),
        Err(Error::InvalidState(_))
    ));
    let stored = db.store.get_deployment("acme", d.id).unwrap();
    assert_eq!(stored.state, DeployState::Succeeded);
    assert!(stored.finished_at.is_some());
}

fn exactly_one_active_release(db: &TestDb) {
    let inst = instance(db, "acme", "web-production");
    let (r1, _) = deploy(db, &inst, "v1");
    let (r2, _) = deploy(db, &inst, "v2");
    db.store.activate_release("acme", r1.id).unwrap();
    db.store.activate_release("acme", r2.id).unwrap();
    let active: Vec<i64> = db
        .store
        .list_releases("acme", inst.id, &ListOptions::default())
        .unwrap()
        .items
        .iter()
        .filter(|r| r.active)
        .map(|r| r.version)
        .collect();
    assert_eq!(active, vec![2]);
    db.store.activate_release("acme", r1.id).unwrap();
    assert!(db.store.get_release("acme", r1.id).unwrap().active);
    assert!(!db.store.get_release("acme", r2.id).unwrap().active);
}

fn instance_ids_are_stable(db: &TestDb) {
    let first = db
        .store
        .upsert_instance("acme", "web-production", "acme/web", "production")
        .unwrap();
    let again = db
        .store
        .upsert_instance("acme", "web-production", "acme/web", "production")
        .unwrap();
    assert_eq!(first.id, again.id);
    let moved = db
        .store
        .upsert_instance("acme", "web-production", "acme/web2", "prod")
        .unwrap();
    assert_eq!(moved.id, first.id);
    assert_eq!(
        (moved.repo.as_str(), moved.environment.as_str()),
        ("acme/web2", "prod")
    );
    assert_eq!(
        db.store.find_instance("acme", "web-production").unwrap().id,
        first.id
    );
    let names: Vec<String> = db
        .store
        .list_instances("acme")
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec!["web-production".to_string()]);
}

fn a_deployment_of_another_instances_release_is_refused(db: &TestDb) {
    let a = instance(db, "acme", "web-production");
    let b = instance(db, "acme", "web-staging");
    let (release_of_a, _) = deploy(db, &a, "x");
    let mut d = Deployment::pending(&release_of_a, "rolling", "ci");
    d.instance_id = b.id;
    assert!(matches!(
        db.store.insert_deployment(&d),
        Err(Error::InvalidRequest(_))
    ));
    assert_eq!(
        db.store
            .list_deployments("acme", b.id, &ListOptions::default())
            .unwrap()
            .total,
        0
    );
}

fn a_deployment_is_read_with_its_release_and_instance(db: &TestDb) {
    let web = instance(db, "acme", "web-production");
    let api = instance(db, "acme", "api-production");
    let (release, deployment) = deploy(db, &web, "ghcr.io/acme/web:abc1234");
    deploy(db, &api, "ghcr.io/acme/api:abc1234");
    let (d, r, i) = db
        .store
        .get_deployment_context("acme", deployment.id)
        .expect("context");
    assert_eq!(d, db.store.get_deployment("acme", deployment.id).unwrap());
    assert_eq!(r, release);
    assert_eq!((i.id, i.name.as_str()), (web.id, "web-production"));
    assert!(matches!(
        db.store.get_deployment_context("other", deployment.id),
        Err(Error::NotFound { .. })
    ));
}

fn migrations_are_idempotent(db: &TestDb) {
    assert!(
        db.store.migrate().unwrap().is_empty(),
        "second run applies nothing"
    );
    assert!(db.store.is_migrated().unwrap());
}

/// The outbox sender and the worker claim through indexes of pending rows: their claims do
/// not read the history (sent reports, finished deployments), so they do not slow down
/// as it grows. Checked on the database's own plan, with 5,000 sent reports stored.
fn claims_read_only_pending_rows(db: &TestDb) {
    let history = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
        INSERT INTO outbox (tenant_id, ordering_key, kind, payload, state, next_attempt_at, created_at, updated_at) \
        SELECT 'acme', 'key-' || i, 'deployment.status', '{}', 'sent', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM n";
    let mut sql = Sql::open(&db.url);
    sql.execute(history);
    sql.execute("ANALYZE");
    let [outbox, deployments] = db.store.explain_claims().unwrap();
    assert!(outbox.contains("outbox_claim"), "{outbox}");
    assert!(
        deployments.contains("deployments_instance_pending"),
        "{deployments}"
    );
}

/// Stores an outbox row as it is, whatever its kind and payload: pending, due, in the
/// lane of items that name no repository.
fn store_outbox_row(
    sql: &mut Sql,
    tenant: &str,
    key: &str,
    kind: &str,
    payload: &serde_json::Value,
) {
    let at = "2000-01-01 00:00:00";
    sql.execute(&format!(
        "INSERT INTO outbox (tenant_id, lane, ordering_key, kind, payload, state, attempts, \
         next_attempt_at, last_error, created_at, updated_at) \
         VALUES ('{tenant}', '', '{key}', '{kind}', '{payload}', 'pending', 0, '{at}', '', '{at}', '{at}')"
    ));
}

/// The outbox sender claims, oldest first, only the oldest pending report of each ordering
/// key, at most `limit` at a time, and no report is claimed by two senders at once.
fn the_outbox_is_claimed_in_order_per_key_and_once(db: &TestDb) {
    let mut sql = Sql::open(&db.url);
    let mut item = |key: usize, n: usize| {
        let payload = serde_json::json!({"n": n});
        store_outbox_row(
            &mut sql,
            "acme",
            &format!("key-{key}"),
            "deployment.status",
            &payload,
        )
    };
    (0..20).for_each(|key| item(key, 0));
    item(0, 1);
    let lease = std::time::Duration::from_secs(60);
    let keys = |claimed: &[OutboxItem]| -> Vec<String> {
        claimed.iter().map(|i| i.ordering_key.clone()).collect()
    };
    let numbered = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|key| format!("key-{key}")).collect()
    };

    let first = db.store.claim_outbox("sender-a", lease, 16).unwrap();
    assert_eq!(
        keys(&first),
        numbered(0..16),
        "the 16 oldest heads, oldest first"
    );
    assert!(first.iter().all(|i| i.payload["n"] == 0));
    let second = db.store.claim_outbox("sender-b", lease, 16).unwrap();
    assert_eq!(
        keys(&second),
        numbered(16..20),
        "the other sender gets the rest"
    );
    assert!(
        db.store
            .claim_outbox("sender-b", lease, 16)
            .unwrap()
            .is_empty(),
        "key-0's second report waits behind its first, which sender-a holds"
    );

    db.store
        .complete_outbox(first[0].id, "sender-a", &OutboxResult::Sent)
        .unwrap();
    let next = db.store.claim_outbox("sender-b", lease, 16).unwrap();
    assert_eq!(keys(&next), numbered(0..1));
    assert_eq!(next[0].payload["n"], 1, "then key-0's second report");
}

/// One public repository floods the outbox with 1,000 comment replies; another
/// repository of the same tenant, and another tenant, queue three reports each after it.
/// The first claim already holds all six of theirs: the outbox is claimed round-robin by
/// tenant and repository, not oldest first.
fn a_flood_from_one_repository_does_not_hold_up_another_repositorys_reports(db: &TestDb) {
    let item = |tenant: &str, repo: &str, key: String| NewOutboxItem {
        tenant_id: tenant.into(),
        ordering_key: key,
        deployment_id: None,
        work: Work::CommentReply(CommentReply {
            repo: repo.into(),
            issue: 1,
            body: "hi".into(),
            installation_id: None,
        }),
    };
    let flood: Vec<_> = (0..1000)
        .map(|n| item("acme", "acme/public", format!("comment:{n}")))
        .collect();
    db.store.enqueue(&flood).unwrap();
    let others: Vec<_> = (0..3)
        .flat_map(|n| {
            [
                item("acme", "acme/web", format!("deployment:web-{n}")),
                item("globex", "globex/api", format!("deployment:api-{n}")),
            ]
        })
        .collect();
    db.store.enqueue(&others).unwrap();

    let lease = std::time::Duration::from_secs(60);
    let first = db.store.claim_outbox("sender-a", lease, 16).unwrap();
    assert_eq!(first.len(), 16);
    let repos: Vec<&str> = first
        .iter()
        .map(|i| i.payload["repo"].as_str().unwrap())
        .collect();
    for repo in ["acme/web", "globex/api"] {
        assert_eq!(
            repos.iter().filter(|r| **r == repo).count(),
            3,
            "{repo}'s reports wait behind the flood: {repos:?}"
        );
    }
    // Tenants take turns; within acme, its repositories take turns.
    assert_eq!(
        &repos[..6],
        [
            "acme/public",
            "globex/api",
            "acme/web",
            "globex/api",
            "acme/public",
            "globex/api"
        ]
    );
    // The flood's own items still go out oldest first.
    let flood_keys: Vec<&str> = first
        .iter()
        .filter(|i| i.payload["repo"] == "acme/public")
        .map(|i| i.ordering_key.as_str())
        .collect();
    assert_eq!(flood_keys[..3], ["comment:0", "comment:1", "comment:2"]);
}

/// Expired leases are listed with their owners and when they expired; recovery settles
/// the ones it is given that are still running with an expired lease, and only those
/// (which ones, and when, is the worker's choice: `worker::to_settle`).
fn expired_leases_are_listed_and_settled_when_named(db: &TestDb) {
    let here_owner = "build-1:4242:0190a1b2c3d4";
    let there_owner = "build-2:4242:0190a1b2c3d5";
    deploy(db, &instance(db, "acme", "web-a"), "img:a");
    deploy(db, &instance(db, "acme", "web-b"), "img:b");
    deploy(db, &instance(db, "acme", "web-c"), "img:c");
    let lease = std::time::Duration::from_millis(1);
    let before = deploy::now();
    let here = db.store.claim_next(here_owner, lease).unwrap().unwrap();
    let there = db.store.claim_next(there_owner, lease).unwrap().unwrap();
    let alive = db
        .store
        .claim_next("build-1:1:live", std::time::Duration::from_secs(60))
        .unwrap()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    let mut expired = db.store.expired_leases().unwrap();
    expired.sort_by_key(|lease| lease.owner.clone());
    assert_eq!(
        expired
            .iter()
            .map(|lease| (lease.id, lease.owner.as_str()))
            .collect::<Vec<_>>(),
        vec![(here.id, here_owner), (there.id, there_owner)]
    );
    assert!(
        expired
            .iter()
            .all(|lease| lease.expired_at >= before && lease.expired_at <= deploy::now())
    );

    let recovered = db.store.recover_expired(&[here.id, alive.id]).unwrap();
    assert_eq!(
        recovered.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![here.id],
        "a lease that has not expired is not settled"
    );
    assert_eq!(recovered[0].state, DeployState::Failed);
    assert_eq!(recovered[0].error, deploybot::store::WORKER_LOST);
    let state = |id| db.store.get_deployment("acme", id).unwrap().state;
    assert_eq!(
        state(there.id),
        DeployState::Running,
        "its machine may still stop its command"
    );
    assert_eq!(state(alive.id), DeployState::Running);
    assert!(db.store.recover_expired(&[]).unwrap().is_empty());
    assert!(
        db.store.recover_expired(&[here.id]).unwrap().is_empty(),
        "settled once"
    );
    assert_eq!(db.store.expired_leases().unwrap().len(), 1);

    let recovered = db.store.recover_expired(&[there.id]).unwrap();
    assert_eq!(
        recovered.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![there.id]
    );
    assert_eq!(state(there.id), DeployState::Failed);
    assert!(db.store.expired_leases().unwrap().is_empty());
}

/// A cancel that reads `pending` while a worker's claim is committing: the cancel must see
/// that the deployment now runs and ask it to stop, not report it cancelled (PostgreSQL
/// runs the two at once; SQLite makes the cancel wait for the claim).
fn a_cancel_racing_a_claim_asks_the_running_deployment_to_stop(db: &TestDb) {
    let (_, d) = deploy(db, &instance(db, "acme", "web"), "img:1");
    let mut sql = Sql::open(&db.url);
    let outbox_rows = |sql: &mut Sql| {
        sql.count(&format!(
            "SELECT count(*) AS n FROM outbox WHERE deployment_id = '{}'",
            d.id
        ))
    };
    let reports_before = outbox_rows(&mut sql);
    // The claim, held open: the row is `running` for everyone once it commits.
    sql.execute(if db.url.starts_with("sqlite://") {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    });
    let claimed = sql.execute(&format!(
        "UPDATE deployments SET state = 'running', lease_owner = 'racer:1:1' WHERE id = '{}'",
        d.id
    ));
    assert_eq!(claimed, 1);
    let store = Arc::clone(&db.store);
    let cancel = std::thread::spawn(move || store.request_cancel("acme", d.id, "tester"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    sql.execute("COMMIT");
    let after = cancel
        .join()
        .unwrap()
        .expect("the cancel of a running deployment");
    assert_eq!(after.state, DeployState::Running);
    assert_eq!(
        sql.count(&format!(
            "SELECT count(*) AS n FROM deployments WHERE id = '{}' AND cancel_requested",
            d.id
        )),
        1,
        "the running deployment was not asked to stop"
    );
    assert_eq!(
        outbox_rows(&mut sql),
        reports_before,
        "a deployment that is still running was reported as finished"
    );
    // A second cancel of the same deployment reports nothing either.
    db.store.request_cancel("acme", d.id, "tester").unwrap();
    assert_eq!(outbox_rows(&mut sql), reports_before);
}

/// With `supersede`, the newest deployment (in queue order) stays queued even when an
/// older one commits after it (two servers; writers waiting for SQLite's lock).
fn an_older_deployment_committed_late_does_not_supersede_a_newer_one(db: &TestDb) {
    let inst = instance(db, "acme", "web");
    let triggered = |image: &str| {
        let release = Release::from_request("acme", &request(&inst, image));
        let deployment = Deployment::pending(&release, "rolling", "octocat");
        deploy::TriggeredDeployment {
            release,
            deployment,
            trigger_key: None,
            supersede: true,
            new_release: true,
            waits_for_locks: false,
            lock_holder: None,
            audit: Vec::new(),
        }
    };
    let older = triggered("img:older");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let newer = triggered("img:newer");
    assert!(older.deployment.created_at < newer.deployment.created_at);
    db.store.insert_triggered(&newer).unwrap();
    db.store.insert_triggered(&older).unwrap();
    let state = |id| db.store.get_deployment("acme", id).unwrap();
    let (older, newer) = (state(older.deployment.id), state(newer.deployment.id));
    assert_eq!(newer.state, DeployState::Pending, "{}", newer.error);
    assert_eq!(older.state, DeployState::Cancelled);
    assert_eq!(older.error, format!("superseded by {}", newer.id));
    // In the usual order, the newer one cancels the older one.
    let third = triggered("img:third");
    db.store.insert_triggered(&third).unwrap();
    assert_eq!(state(newer.id).state, DeployState::Cancelled);
    assert_eq!(state(third.deployment.id).state, DeployState::Pending);
}

/// A stored report whose deployment id is not one is claimed like any other, so the
/// sender parks it as failed, naming why, while the reports behind it still go out; a
/// long error is stored cut short.
fn a_corrupt_outbox_row_is_parked_and_does_not_stop_the_others(db: &TestDb) {
    let mut sql = Sql::open(&db.url);
    let status = serde_json::json!({"state": "running", "message": "m"});
    store_outbox_row(&mut sql, "acme", "key-bad", "deployment.status", &status);
    store_outbox_row(&mut sql, "globex", "key-good", "deployment.status", &status);
    sql.execute("UPDATE outbox SET deployment_id = 'dep_bogus' WHERE ordering_key = 'key-bad'");
    let lease = std::time::Duration::from_secs(60);
    let claimed = db.store.claim_outbox("sender-a", lease, 16).unwrap();
    assert_eq!(claimed.len(), 2, "both rows are claimed: {claimed:?}");
    let bad = claimed
        .iter()
        .find(|i| i.ordering_key == "key-bad")
        .unwrap();
    let good = claimed
        .iter()
        .find(|i| i.ordering_key == "key-good")
        .unwrap();
    let why = bad.work().unwrap_err().to_string();
    assert!(why.contains("deployment id"), "{why}");
    assert!(good.work().is_ok());
    let long = "x".repeat(5000);
    db.store
        .complete_outbox(bad.id, "sender-a", &OutboxResult::Failed { error: long })
        .unwrap();
    let failed = db.store.failed_outbox("acme", 10).unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].last_error.chars().count() <= 1001, "stored whole");
}

both_backends!(
    an_older_deployment_committed_late_does_not_supersede_a_newer_one,
    a_cancel_racing_a_claim_asks_the_running_deployment_to_stop,
    claims_read_only_pending_rows,
    the_outbox_is_claimed_in_order_per_key_and_once,
    a_corrupt_outbox_row_is_parked_and_does_not_stop_the_others,
    a_flood_from_one_repository_does_not_hold_up_another_repositorys_reports,
    env_round_trips,
    fifty_concurrent_deploys_get_versions_one_to_fifty,
    versions_are_per_instance,
    walking_deployments_in_pages_loses_and_repeats_nothing,
    releases_page_by_version,
    last_page_has_no_cursor_even_when_full,
    bad_cursors_and_limits_are_invalid_requests,
    tenants_never_see_each_other,
    updates_follow_the_state_machine,
    exactly_one_active_release,
    instance_ids_are_stable,
    a_deployment_of_another_instances_release_is_refused,
    a_deployment_is_read_with_its_release_and_instance,
    migrations_are_idempotent,
    expired_leases_are_listed_and_settled_when_named,
);

#[test]
fn sqlite_file_is_created_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let store =
        deploybot::store::DieselStore::connect(&format!("sqlite://{}", path.display())).unwrap();
    assert!(!store.is_migrated().unwrap());
    assert!(!store.migrate().unwrap().is_empty());
    assert!(path.exists());
}

#[test]
fn database_urls_are_checked() {
    for bad in ["mysql://x", "sqlite://", "deploybot.db"] {
        let err = deploybot::store::DieselStore::connect(bad).unwrap_err();
        assert!(err.to_string().contains("sqlite://"), "{bad}: {err}");
    }
}

/// A pooled connection that answered a moment ago is handed out without a ping (on
/// PostgreSQL the ping is a round trip, and it was a fifth of the statements a
/// deployment made); a connection whose last use failed is pinged before it is used
/// again, so a connection the server dropped costs one failed operation, not more.
#[test]
fn a_dropped_postgres_connection_costs_one_failed_operation() {
    let db = TestDb::postgres();
    let store = deploybot::store::DieselStore::connect_with(&db.url, 1).expect("connect");
    let inst = store
        .upsert_instance("acme", "web", "acme/web", "web")
        .expect("upsert instance");
    let name = db
        .url
        .rsplit_once('/')
        .expect("a database name")
        .1
        .to_string();
    let mut admin =
        diesel::PgConnection::establish(&common::admin_database_url()).expect("admin connection");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(format!(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .get_result::<Count>(&mut admin)
    .expect("terminate the store's connections");
    for _ in 0..100 {
        let left: Count = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .get_result(&mut admin)
        .expect("count connections");
        if left.n == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let first = store.get_instance("acme", inst.id);
    assert!(
        matches!(first, Err(Error::Unavailable(_))),
        "the connection answered a moment ago, so it is used without a ping and its loss \
         is reported as the database being unavailable: {first:?}"
    );
    let again = store
        .get_instance("acme", inst.id)
        .expect("after a failure the connection is pinged, found dead and replaced");
    assert_eq!(again.id, inst.id);
}
