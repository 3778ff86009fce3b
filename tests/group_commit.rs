//! Group commit of webhook deliveries (`DieselStore::record_delivery_grouped`), on SQLite
//! and PostgreSQL: deliveries that arrive while a commit is under way share the next one,
//! each is stored exactly once, and one that cannot be written does not fail the others.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Sql, TestDb};
use deploybot::deploy::{
    DeployRequest, Deployment, Error, InstanceId, Release, TriggeredDeployment,
};
use deploybot::github::store::{Delivery, DeliveryRecord};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

/// Holds the database's write lock for deliveries from another connection until dropped
/// (SQLite: the database write lock; PostgreSQL: a lock on `deliveries` that lets reads
/// through and makes inserts wait), so that the writer is stuck and deliveries pile up.
enum Lock {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

impl Lock {
    fn hold(url: &str) -> Self {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let mut conn = SqliteConnection::establish(path).expect("open sqlite");
            conn.batch_execute("BEGIN IMMEDIATE")
                .expect("take the write lock");
            Lock::Sqlite(conn)
        } else {
            let mut conn = PgConnection::establish(url).expect("open postgres");
            conn.batch_execute("BEGIN; LOCK TABLE deliveries IN EXCLUSIVE MODE")
                .expect("lock deliveries");
            Lock::Pg(conn)
        }
    }

    fn release(self) {
        match self {
            Lock::Sqlite(mut c) => c.batch_execute("COMMIT").expect("commit"),
            Lock::Pg(mut c) => c.batch_execute("COMMIT").expect("commit"),
        }
    }
}

fn stored(db: &TestDb, id_prefix: &str) -> i64 {
    Sql::open(&db.url).count(&format!(
        "SELECT COUNT(*) AS n FROM deliveries WHERE id LIKE '{id_prefix}%'"
    ))
}

fn delivery(id: &str) -> Delivery {
    Delivery {
        id: id.to_string(),
        event: "push".into(),
        action: String::new(),
        tenant_id: "acme".into(),
        repo: "acme/web".into(),
    }
}

/// A delivery whose every column is its own, so that a column stored in the wrong place
/// or taken from another delivery of the batch shows.
fn distinct_delivery(i: usize) -> Delivery {
    Delivery {
        id: format!("burst-{i}"),
        event: ["push", "issue_comment", "create"][i % 3].into(),
        action: format!("action-{i}"),
        tenant_id: format!("tenant-{i}"),
        repo: format!("tenant-{i}/repo-{i}"),
    }
}

#[derive(QueryableByName, Debug, PartialEq)]
struct StoredDelivery {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    event: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    action: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    tenant_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    repo: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    outcome: String,
}

/// Sends every delivery at once while the write lock is held, releases it after the
/// sends are queued, and returns each delivery's answer.
async fn burst(
    db: &TestDb,
    jobs: Vec<(Delivery, Vec<TriggeredDeployment>)>,
) -> Vec<(String, Result<DeliveryRecord, Error>)> {
    let lock = Lock::hold(&db.url);
    let mut tasks = Vec::new();
    for (delivery, triggered) in jobs {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let id = delivery.id.clone();
            (
                id,
                store
                    .record_delivery_grouped(delivery, triggered, Vec::new())
                    .await,
            )
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    lock.release();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

async fn a_burst_shares_commits_and_is_stored_once(db: TestDb) {
    // 50 deliveries, and 10 of them sent a second time within the same burst.
    let mut jobs: Vec<_> = (0..50)
        .map(|i| (distinct_delivery(i), Vec::new()))
        .collect();
    jobs.extend((0..10).map(|i| (distinct_delivery(i), Vec::new())));
    let answers = burst(&db, jobs).await;

    let mut duplicates = BTreeMap::<String, usize>::new();
    let mut largest = 0;
    for (id, answer) in &answers {
        let record = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("delivery {id} was not stored: {e}"));
        if record.duplicate {
            *duplicates.entry(id.clone()).or_default() += 1;
        } else {
            largest = largest.max(record.batch);
        }
    }
    let resent: BTreeMap<String, usize> = (0..10).map(|i| (format!("burst-{i}"), 1)).collect();
    assert_eq!(
        duplicates, resent,
        "each resent delivery is answered as a duplicate exactly once"
    );
    assert_eq!(stored(&db, "burst-"), 50, "every delivery is stored once");
    let mut rows = Sql::open(&db.url).load::<StoredDelivery>(
        "SELECT id, event, action, tenant_id, repo, outcome FROM deliveries \
         WHERE id LIKE 'burst-%'",
    );
    rows.sort_by_key(|r| r.id[6..].parse::<usize>().expect("numbered id"));
    let expected: Vec<StoredDelivery> = (0..50)
        .map(|i| {
            let d = distinct_delivery(i);
            StoredDelivery {
                id: d.id,
                event: d.event,
                action: d.action,
                tenant_id: d.tenant_id,
                repo: d.repo,
                outcome: "created 0 deployment(s), 0 already deployed, 0 job(s)".into(),
            }
        })
        .collect();
    assert_eq!(
        rows, expected,
        "each delivery is stored with its own columns"
    );
    assert!(
        largest >= 30,
        "deliveries that waited for the database were committed together (largest commit: {largest})"
    );
}

/// A deployment of an instance that does not exist: its delivery cannot be written.
fn orphan() -> TriggeredDeployment {
    let request = DeployRequest {
        instance_id: InstanceId::new(),
        image: "ghcr.io/acme/web:1".into(),
        env: BTreeMap::new(),
        strategy: "recreate".into(),
        notes: String::new(),
        commit_sha: "a10867b14bb761a232cd80139fbd4c0d33264240".into(),
        params: Default::default(),
        noop: false,
    };
    let release = Release::from_request("acme", &request);
    let deployment = Deployment::pending(&release, "recreate", "octocat");
    TriggeredDeployment {
        release,
        deployment,
        trigger_key: Some("push:main:a10867b".into()),
        supersede: false,
        new_release: true,
        waits_for_locks: false,
        lock_holder: None,
        audit: Vec::new(),
    }
}

async fn one_unwritable_delivery_does_not_fail_the_others(db: TestDb) {
    let mut jobs: Vec<_> = (0..20)
        .map(|i| (delivery(&format!("good-{i}")), Vec::new()))
        .collect();
    jobs.insert(10, (delivery("bad-0"), vec![orphan()]));
    let answers = burst(&db, jobs).await;

    for (id, answer) in &answers {
        if id == "bad-0" {
            assert!(
                answer.is_err(),
                "the unwritable delivery is refused: {answer:?}"
            );
        } else {
            let record = answer
                .as_ref()
                .unwrap_or_else(|e| panic!("delivery {id} failed with the bad one: {e}"));
            assert!(!record.duplicate);
        }
    }
    assert_eq!(stored(&db, "good-"), 20, "every good delivery is stored");
    assert_eq!(
        stored(&db, "bad-"),
        0,
        "the refused delivery is not stored, so GitHub's redelivery can bring it back"
    );
}

both_backends_async!(
    a_burst_shares_commits_and_is_stored_once,
    one_unwritable_delivery_does_not_fail_the_others,
);
