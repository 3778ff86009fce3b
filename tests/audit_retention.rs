//! The audit trail's retention in the store, on SQLite and on PostgreSQL: events stamped
//! before the cutoff are removed, of every tenant, at most a batch at a time and the
//! first-recorded first; newer events stay.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use deploybot::deploy::{AuditEvent, AuditStore, ListOptions};

fn event(tenant: &str, detail: &str, at: DateTime<Utc>) -> AuditEvent {
    let mut event = AuditEvent::new(tenant, "@alice", "lock", detail);
    event.at = at;
    event
}

/// The details of `tenant`'s events, newest first.
fn details(db: &TestDb, tenant: &str) -> Vec<String> {
    let options = ListOptions {
        cursor: None,
        limit: Some(100),
    };
    db.store
        .list_audit(tenant, None, &options)
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.detail)
        .collect()
}

/// Now, in whole seconds (an event stamped exactly at the cutoff is kept).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn events_older_than_the_cutoff_go_a_batch_at_a_time_and_newer_ones_stay(db: &TestDb) {
    let now = now();
    let cutoff = now - Duration::days(400);
    for n in 0..5 {
        let at = cutoff - Duration::days(30 - n);
        db.store
            .record_audit(&event("acme", &format!("acme old {n}"), at))
            .unwrap();
    }
    db.store
        .record_audit(&event("globex", "globex old", cutoff - Duration::days(1)))
        .unwrap();
    db.store
        .record_audit(&event("acme", "acme at the cutoff", cutoff))
        .unwrap();
    db.store
        .record_audit(&event("acme", "acme recent", now - Duration::days(2)))
        .unwrap();
    db.store
        .record_audit(&event("globex", "globex recent", now))
        .unwrap();

    // At most a batch, the first-recorded first.
    assert_eq!(db.store.prune_audit(cutoff, 2).unwrap(), 2);
    assert_eq!(
        details(db, "acme"),
        [
            "acme recent",
            "acme at the cutoff",
            "acme old 4",
            "acme old 3",
            "acme old 2"
        ]
    );
    assert_eq!(db.store.prune_audit(cutoff, 2).unwrap(), 2);
    // The last old one of acme and globex's old one: every tenant's.
    assert_eq!(db.store.prune_audit(cutoff, 1000).unwrap(), 2);
    assert_eq!(db.store.prune_audit(cutoff, 1000).unwrap(), 0);
    assert_eq!(details(db, "acme"), ["acme recent", "acme at the cutoff"]);
    assert_eq!(details(db, "globex"), ["globex recent"]);
    // A batch of none removes none.
    assert_eq!(db.store.prune_audit(now + Duration::days(1), 0).unwrap(), 0);
    assert_eq!(details(db, "acme").len(), 2);
}

fn an_empty_audit_trail_prunes_nothing(db: &TestDb) {
    assert_eq!(db.store.prune_audit(Utc::now(), 1000).unwrap(), 0);
    db.store
        .record_audit(&event("acme", "today", Utc::now()))
        .unwrap();
    assert_eq!(
        db.store
            .prune_audit(Utc::now() - Duration::days(400), 1000)
            .unwrap(),
        0
    );
    assert_eq!(details(db, "acme"), ["today"]);
}

both_backends!(
    events_older_than_the_cutoff_go_a_batch_at_a_time_and_newer_ones_stay,
    an_empty_audit_trail_prunes_nothing,
);
