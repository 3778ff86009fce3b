//! A rolling upgrade's older replica, on SQLite and on PostgreSQL: what a newer release
//! wrote in a format this one cannot read — a queued deployment, an outbox item — is left
//! for the newer replica. It is neither claimed nor failed, and what waits behind it keeps
//! its order.

mod common;

use std::time::Duration;

use common::{Sql, TestDb};
use deploybot::deploy::{DeployState, Deployment, Instance, InstanceStore, QueueStore, Store};
use deploybot::github::outbox::{CommentReply, NewOutboxItem, OutboxStore, Work};
use deploybot::store::{OUTBOX_FORMAT, QUEUE_FORMAT};

const LEASE: Duration = Duration::from_secs(60);

fn instance(db: &TestDb, name: &str) -> Instance {
    db.store
        .upsert_instance("acme", name, "acme/web", name)
        .expect("upsert instance")
}

fn queue(db: &TestDb, inst: &Instance, image: &str) -> Deployment {
    common::queue_deployment(db, inst, image)
}

/// Marks a stored deployment as written by a newer release.
fn newer_deployment(db: &TestDb, d: &Deployment) {
    let mut sql = Sql::open(&db.url);
    let changed = sql.execute(&format!(
        "UPDATE deployments SET format = {} WHERE id = '{}'",
        QUEUE_FORMAT + 1,
        d.id
    ));
    assert_eq!(changed, 1);
}

fn reply(key: &str) -> NewOutboxItem {
    NewOutboxItem {
        tenant_id: "acme".into(),
        ordering_key: key.into(),
        deployment_id: None,
        work: Work::CommentReply(CommentReply {
            repo: "acme/web".into(),
            issue: 1,
            body: format!("reply on {key}"),
            installation_id: None,
        }),
    }
}

/// The deployment queued first on `web` was written by a newer release: this replica
/// leaves it pending, does not run the one queued behind it, and still runs `api`'s.
fn a_queued_deployment_of_a_newer_format_is_left_for_a_newer_replica(db: &TestDb) {
    let web = instance(db, "web");
    let api = instance(db, "api");
    let newer = queue(db, &web, "x:newer");
    let behind = queue(db, &web, "x:behind");
    newer_deployment(db, &newer);
    let other = queue(db, &api, "x:api");

    let claimed = db.store.claim_next("old-replica", LEASE).unwrap();
    assert_eq!(claimed.map(|d| d.id), Some(other.id));
    assert!(db.store.claim_next("old-replica", LEASE).unwrap().is_none());
    for id in [newer.id, behind.id] {
        let d = db.store.get_deployment("acme", id).unwrap();
        assert_eq!(d.state, DeployState::Pending, "{d:?}");
        assert!(d.error.is_empty(), "{d:?}");
    }

    // The newer replica (here: the row back in this format) runs them in their order.
    let mut sql = Sql::open(&db.url);
    sql.execute(&format!(
        "UPDATE deployments SET format = {QUEUE_FORMAT} WHERE id = '{}'",
        newer.id
    ));
    let mut running = db.store.claim_next("new-replica", LEASE).unwrap().unwrap();
    assert_eq!(running.id, newer.id);
    running.transition(DeployState::Succeeded).unwrap();
    db.store.finish_deployment(&running, "new-replica").unwrap();
    let next = db.store.claim_next("new-replica", LEASE).unwrap().unwrap();
    assert_eq!(next.id, behind.id);
}

/// An outbox item written by a newer release is never claimed here, so it is never
/// failed; the items after it on its ordering key wait, the others go out.
fn an_outbox_item_of_a_newer_format_is_left_for_a_newer_replica(db: &TestDb) {
    db.store
        .enqueue(&[reply("comment:1"), reply("comment:1"), reply("comment:2")])
        .unwrap();
    let mut sql = Sql::open(&db.url);
    let changed = sql.execute(&format!(
        "UPDATE outbox SET format = {} WHERE id = (SELECT MIN(id) FROM outbox)",
        OUTBOX_FORMAT + 1
    ));
    assert_eq!(changed, 1);

    for _ in 0..3 {
        let claimed = db.store.claim_outbox("old-replica", LEASE, 16).unwrap();
        let keys: Vec<&str> = claimed.iter().map(|i| i.ordering_key.as_str()).collect();
        assert_eq!(keys, ["comment:2"], "only the other key's item is claimed");
        let (pending, failed) = db.store.outbox_counts().unwrap();
        assert_eq!((pending, failed), (3, 0));
        sql.execute("UPDATE outbox SET locked_by = NULL, locked_until = NULL");
    }
    assert_eq!(
        sql.count("SELECT COUNT(*) AS n FROM outbox WHERE attempts > 0 OR last_error <> ''"),
        0,
        "nothing was tried, nothing recorded against them"
    );

    sql.execute(&format!("UPDATE outbox SET format = {OUTBOX_FORMAT}"));
    let claimed = db.store.claim_outbox("new-replica", LEASE, 16).unwrap();
    let bodies: Vec<&str> = claimed
        .iter()
        .map(|i| i.payload["body"].as_str().unwrap_or_default())
        .collect();
    assert!(bodies.contains(&"reply on comment:1"), "{bodies:?}");
}

both_backends!(
    a_queued_deployment_of_a_newer_format_is_left_for_a_newer_replica,
    an_outbox_item_of_a_newer_format_is_left_for_a_newer_replica,
);

/// Statements an older replica cannot live beside: it still reads and writes what they
/// remove or change.
const CONTRACTING: [&str; 5] = [
    "DROP TABLE",
    "DROP COLUMN",
    "RENAME",
    "ALTER COLUMN",
    "DELETE FROM",
];

/// Every migration only adds (expands): a replica of the release before it runs on the
/// migrated database. A removal waits a release and is listed here, with the release
/// whose replicas no longer read what it removes.
const CONTRACTIONS: [&str; 0] = [];

#[test]
fn migrations_only_expand_so_the_previous_release_runs_beside_them() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut checked = 0;
    for backend in ["postgres", "sqlite"] {
        for entry in std::fs::read_dir(root.join(backend)).unwrap() {
            let dir = entry.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let up = std::fs::read_to_string(dir.join("up.sql")).unwrap();
            let code: String = up
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .to_uppercase();
            for statement in CONTRACTING {
                assert!(
                    !code.contains(statement) || CONTRACTIONS.contains(&name.as_str()),
                    "{backend}/{name} contracts the schema ({statement}): an older replica \
                     still uses what it removes. Add what replaces it now, and remove the \
                     old part a release later"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} migrations checked");
}
