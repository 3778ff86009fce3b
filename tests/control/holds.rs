//! What holds a push and what lets it go: locks (taken, released, expiring while the
//! server is down, seen alike by two replicas), freeze windows, the lock an automatic
//! rollback takes; and what a deployment hands its provider: dry runs that only plan and
//! parameters that reach the deploy command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use deploybot::deploy::{
    AuditStore, DeployState, Deployment, InstanceStore, ListOptions, Lock, LockStore, LockTarget,
    LogStore, ReleaseStore, Store, WaitKind,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bot::{Bot, fixture, wait_until};
use crate::common::TestDb;

const SHA_1: &str = "1111111111111111111111111111111111111111";
const SHA_2: &str = "2222222222222222222222222222222222222222";
const SHA_3: &str = "3333333333333333333333333333333333333333";

/// The API token of the tests that call the REST API.
const TOKEN: &str = "holds-test-token";

/// A deploy command that appends what it was asked to do to `runs` in `dir`, and says it
/// in its log.
fn recording_script(dir: &Path) -> String {
    format!(
        "echo \"phase=$DEPLOY_PHASE noop=${{DEPLOY_NOOP:-unset}} region=${{DEPLOY_PARAM_REGION:-unset}} image=$DEPLOY_IMAGE\"\n\
         echo \"$DEPLOY_PHASE $DEPLOY_IMAGE\" >> '{}'",
        dir.join("runs").display()
    )
}

/// What the deploy command ran, one `phase image` per line.
fn runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn tag_push(tag: &str, commit: &str) -> Value {
    let mut v = fixture("push_tag");
    v["ref"] = format!("refs/tags/{tag}").into();
    v["after"] = commit.into();
    v["head_commit"]["id"] = commit.into();
    v
}

/// Pushes tag `tag` at `commit`; the deployment of web-production it queued.
fn push_tag(bot: &Bot, tag: &str, commit: &str) -> String {
    let (status, answer) = bot.send(
        "push",
        &tag_push(tag, commit),
        &format!("tag-{tag}-{}", uuid::Uuid::now_v7().simple()),
    );
    assert_eq!(status, 202, "{answer}");
    answer["deployments"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no deployment queued: {answer}"))
        .to_string()
}

fn image(commit: &str) -> String {
    format!("ghcr.io/acme/web:{commit}")
}

/// web-production, once the server has stored its instances (it listens before that).
fn production(bot: &Bot) -> deploybot::deploy::Instance {
    let mut found = None;
    wait_until(
        "the server to store its instances",
        Duration::from_secs(30),
        || {
            found = bot.db.store.find_instance("acme", "web-production").ok();
            found.is_some()
        },
    );
    found.unwrap()
}

/// `@alice`'s lock on web-production, taken through the store, ending after `ttl`.
fn lock_production(bot: &Bot, ttl: Option<Duration>) -> Lock {
    let now = deploybot::deploy::now();
    let lock = Lock {
        tenant_id: "acme".into(),
        target: LockTarget::Instance {
            instance_id: production(bot).id,
        },
        repo: "acme/web".into(),
        holder: "@alice".into(),
        reason: "incident 42".into(),
        pull_request: None,
        created_at: now,
        expires_at: ttl.map(|t| now + chrono::Duration::from_std(t).unwrap()),
    };
    bot.db.store.acquire_lock(&lock).unwrap()
}

fn unlock_production(bot: &Bot) {
    let target = LockTarget::Instance {
        instance_id: production(bot).id,
    };
    assert!(
        bot.db
            .store
            .release_lock("acme", &target)
            .unwrap()
            .is_some()
    );
}

/// Waits until the deployment waits for `kind`; returns it.
fn wait_waiting(bot: &Bot, id: &str, kind: WaitKind) -> Deployment {
    let mut last = None;
    wait_until(
        &format!("{id} to wait for {}", kind.as_str()),
        Duration::from_secs(30),
        || {
            let d = bot.deployment(id);
            let done = d.state == DeployState::Pending
                && d.waiting_for.as_ref().is_some_and(|w| w.kind == kind);
            last = Some(d);
            done
        },
    );
    last.unwrap()
}

/// Asserts for `during` that the deployment stays pending, waiting for `kind`, and that the
/// deploy command never ran.
fn stays_held(bot: &Bot, dir: &Path, id: &str, kind: WaitKind, during: Duration) {
    let until = std::time::Instant::now() + during;
    while std::time::Instant::now() < until {
        let d = bot.deployment(id);
        assert_eq!(d.state, DeployState::Pending, "{d:?}");
        assert_eq!(d.waiting_for.as_ref().map(|w| w.kind), Some(kind), "{d:?}");
        assert!(
            runs(dir).is_empty(),
            "the deploy command ran: {:?}",
            runs(dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn audit_actions(bot: &Bot) -> Vec<(String, String, String)> {
    bot.db
        .store
        .list_audit(
            "acme",
            None,
            &ListOptions {
                cursor: None,
                limit: Some(100),
            },
        )
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.actor, e.action, e.detail))
        .collect()
}

fn log_of(bot: &Bot, id: &str) -> Vec<String> {
    bot.db
        .store
        .read_logs("acme", id.parse().unwrap(), 0, 1000)
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect()
}

fn active_version(bot: &Bot) -> Option<i64> {
    bot.db
        .store
        .active_release("acme", production(bot).id)
        .unwrap()
        .map(|r| r.version)
}

/// A scratch directory for what the deploy command records.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn a_lock_holds_pushes_and_unlock_runs_the_newest(db: TestDb) {
    let (_keep, dir) = scratch();
    let bot = Bot::start(db, &recording_script(&dir), "");
    lock_production(&bot, None);

    let first = push_tag(&bot, "v1.0.0", SHA_1);
    let held = wait_waiting(&bot, &first, WaitKind::Lock);
    let reason = &held.waiting_for.as_ref().unwrap().reason;
    assert!(
        reason.contains("@alice") && reason.contains("incident 42"),
        "{reason}"
    );
    let second = push_tag(&bot, "v2.0.0", SHA_2);
    stays_held(&bot, &dir, &second, WaitKind::Lock, Duration::from_secs(3));
    assert_eq!(bot.deployment(&first).state, DeployState::Pending);

    unlock_production(&bot);
    let newest = bot.wait_final(&second);
    assert_eq!(newest.state, DeployState::Succeeded, "{newest:?}");
    assert!(newest.waiting_for.is_none());
    let older = bot.wait_final(&first);
    assert_eq!(older.state, DeployState::Cancelled, "{older:?}");
    assert!(older.error.contains("superseded"), "{older:?}");
    assert!(
        runs(&dir).iter().all(|r| r.ends_with(&image(SHA_2))),
        "only the newest push ran: {:?}",
        runs(&dir)
    );
    assert!(!runs(&dir).is_empty());
}

fn a_lock_that_expires_while_the_server_is_down_lets_the_push_run_after_restart(db: TestDb) {
    let (_keep, dir) = scratch();
    let mut bot = Bot::start(db, &recording_script(&dir), "");
    let lock = lock_production(&bot, Some(Duration::from_secs(4)));
    let id = push_tag(&bot, "v1.0.0", SHA_1);
    wait_waiting(&bot, &id, WaitKind::Lock);
    bot.kill9();
    let expiry = lock.expires_at.unwrap();
    while Utc::now() <= expiry + chrono::Duration::milliseconds(500) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(runs(&dir).is_empty());
    bot.restart();
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:?}");
    assert!(runs(&dir).iter().any(|r| r.ends_with(&image(SHA_1))));
    let expired: Vec<_> = audit_actions(&bot)
        .into_iter()
        .filter(|(_, action, _)| action == "lock.expired")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].0, "deploybot");
    assert!(expired[0].2.contains("@alice"), "{expired:?}");
}

fn two_replicas_agree_on_a_lock(db: TestDb) {
    let (_keep, dir) = scratch();
    let bot = Bot::start(db, &recording_script(&dir), "");
    let _replica = bot.start_replica();
    lock_production(&bot, Some(Duration::from_secs(6)));
    let id = push_tag(&bot, "v1.0.0", SHA_1);
    wait_waiting(&bot, &id, WaitKind::Lock);
    // Neither replica lets it run while the lock holds.
    stays_held(&bot, &dir, &id, WaitKind::Lock, Duration::from_secs(3));
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:?}");
    let starts = runs(&dir)
        .into_iter()
        .filter(|r| r.starts_with("start "))
        .count();
    assert_eq!(starts, 1, "it ran once: {:?}", runs(&dir));
    let expired = audit_actions(&bot)
        .into_iter()
        .filter(|(_, action, _)| action == "lock.expired")
        .count();
    assert_eq!(expired, 1, "one replica expired the lock");
}

fn a_freeze_holds_a_push_until_it_ends(db: TestDb) {
    let (_keep, dir) = scratch();
    let end = (Utc::now() + chrono::Duration::seconds(12)).trunc_subsecs(0);
    let bot = Bot::start_configured(db, &recording_script(&dir), &freeze_until(end));
    let id = push_tag(&bot, "v1.0.0", SHA_1);
    let held = wait_waiting(&bot, &id, WaitKind::Freeze);
    let waiting = held.waiting_for.unwrap();
    assert_eq!(waiting.reason, "release freeze");
    assert!(waiting.until.is_some());
    let left = (end - Utc::now() - chrono::Duration::seconds(1))
        .to_std()
        .unwrap_or_default();
    stays_held(&bot, &dir, &id, WaitKind::Freeze, left);
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:?}");
    assert!(
        done.started_at.unwrap() >= end,
        "it ran once the freeze ended"
    );
    assert!(runs(&dir).iter().any(|r| r.ends_with(&image(SHA_1))));
}

/// A `[[instances.freeze]]` that began an hour ago and ends at `end` (to the second).
fn freeze_until(end: chrono::DateTime<Utc>) -> String {
    format!(
        "[[instances.freeze]]\nreason = \"release freeze\"\nstart = \"{}\"\nend = \"{}\"\n",
        (end - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn a_waiting_push_follows_what_holds_it_from_the_freeze_to_a_lock_and_back(db: TestDb) {
    let (_keep, dir) = scratch();
    let end = (Utc::now() + chrono::Duration::seconds(12)).trunc_subsecs(0);
    let bot = Bot::start_configured(db, &recording_script(&dir), &freeze_until(end));
    let id = push_tag(&bot, "v1.0.0", SHA_1);
    wait_waiting(&bot, &id, WaitKind::Freeze);

    lock_production(&bot, None);
    let locked = wait_waiting(&bot, &id, WaitKind::Lock);
    assert!(
        locked.waiting_for.unwrap().reason.contains("@alice"),
        "the push now says the lock holds it"
    );
    unlock_production(&bot);
    let frozen = wait_waiting(&bot, &id, WaitKind::Freeze);
    assert_eq!(frozen.waiting_for.unwrap().reason, "release freeze");
    assert!(runs(&dir).is_empty(), "the freeze still holds it");
    let left = (end - Utc::now() - chrono::Duration::seconds(1))
        .to_std()
        .unwrap_or_default();
    stays_held(&bot, &dir, &id, WaitKind::Freeze, left);
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:?}");
    assert!(done.started_at.unwrap() >= end);
}

/// web-production's settings for the API tests: the accepted parameter, and a token.
fn api_settings() -> String {
    let hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    format!(
        "params = [\"REGION\"]\n\n[[api.tokens]]\nname = \"ci\"\ntenant = \"acme\"\nsha256 = \"{hash}\"\n"
    )
}

fn api_deploy(bot: &Bot, body: Value) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    bot.post(
        "/v1/instances/web-production/deploy",
        &[("Authorization", &auth)],
        &serde_json::to_vec(&body).unwrap(),
    )
}

fn a_dry_run_plans_and_leaves_the_active_release(db: TestDb) {
    let (_keep, dir) = scratch();
    let bot = Bot::start_configured(db, &recording_script(&dir), &api_settings());
    let live = push_tag(&bot, "v1.0.0", SHA_1);
    assert_eq!(bot.wait_final(&live).state, DeployState::Succeeded);
    assert_eq!(active_version(&bot), Some(1));
    let before = runs(&dir);

    let (status, answer) = api_deploy(
        &bot,
        json!({"image": image(SHA_2), "commit_sha": SHA_2, "noop": true,
               "params": {"REGION": "eu-west-1"}}),
    );
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:?}");
    assert!(done.noop);
    assert_eq!(done.progress.phase, "plan");
    assert_eq!(
        active_version(&bot),
        Some(1),
        "the dry run activated nothing"
    );
    let planned_release = bot.db.store.get_release("acme", done.release_id).unwrap();
    assert!(!planned_release.active);
    assert!(
        planned_release.notes.starts_with("dry run: "),
        "{planned_release:?}"
    );
    let planned: Vec<_> = runs(&dir)[before.len()..].to_vec();
    assert_eq!(
        planned,
        [format!("plan {}", image(SHA_2))],
        "only a plan ran"
    );
    let log = log_of(&bot, &id);
    assert!(
        log.iter()
            .any(|l| l == &format!("phase=plan noop=1 region=eu-west-1 image={}", image(SHA_2))),
        "{log:#?}"
    );
    assert_eq!(
        bot.deployment(&live).state,
        DeployState::Succeeded,
        "the live deployment is untouched"
    );
}

fn parameters_reach_the_deploy_command_and_unlisted_ones_are_refused(db: TestDb) {
    let (_keep, dir) = scratch();
    let bot = Bot::start_configured(db, &recording_script(&dir), &api_settings());
    let (status, answer) = api_deploy(
        &bot,
        json!({"image": image(SHA_1), "commit_sha": SHA_1, "params": {"REGION": "us-east-1"}}),
    );
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    assert_eq!(bot.wait_final(&id).state, DeployState::Succeeded);
    let log = log_of(&bot, &id);
    assert!(
        log.iter()
            .any(|l| l.starts_with("phase=start noop=unset region=us-east-1 ")),
        "{log:#?}"
    );

    let ran = runs(&dir).len();
    let (status, answer) = api_deploy(
        &bot,
        json!({"image": image(SHA_2), "commit_sha": SHA_2, "params": {"COLOR": "red"}}),
    );
    assert!((400..500).contains(&status), "{status} {answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("COLOR") && message.contains("REGION"),
        "{message}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(runs(&dir).len(), ran, "nothing ran for the refused request");
    assert_eq!(bot.deployments("web-production").len(), 1);
}

/// A request to the REST API as the test's token: the status and the JSON answer.
fn api(bot: &Bot, method: &str, path: &str, body: &Value) -> (u16, Value) {
    use std::io::{Read, Write};
    let body = serde_json::to_vec(body).unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", bot.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| {
            let (start, end) = (b.find('{')?, b.rfind('}')?);
            serde_json::from_str(&b[start..=end]).ok()
        })
        .unwrap_or(Value::Null);
    (status, json)
}

fn a_lock_taken_through_the_api_holds_a_push_until_it_is_unlocked(db: TestDb) {
    let (_keep, dir) = scratch();
    let bot = Bot::start_configured(db, &recording_script(&dir), &api_settings());
    let (status, lock) = api(
        &bot,
        "PUT",
        "/v1/instances/web-production/lock",
        &json!({"reason": "migrating the database"}),
    );
    assert_eq!(status, 200, "{lock}");
    let id = push_tag(&bot, "v1.0.0", SHA_1);
    let held = wait_waiting(&bot, &id, WaitKind::Lock);
    let reason = held.waiting_for.unwrap().reason;
    assert!(
        reason.contains("token:ci") && reason.contains("migrating the database"),
        "{reason}"
    );
    stays_held(&bot, &dir, &id, WaitKind::Lock, Duration::from_secs(2));
    let (status, answer) = api(
        &bot,
        "DELETE",
        "/v1/instances/web-production/lock",
        &json!({}),
    );
    assert_eq!(status, 204, "{answer}");
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:?}");
    assert!(runs(&dir).iter().any(|r| r.ends_with(&image(SHA_1))));
}

fn an_automatic_rollback_locks_the_instance_against_pushes(db: TestDb) {
    let (_keep, dir) = scratch();
    let live = dir.join("live");
    // The deploy command records what runs; the health check fails while SHA_2 runs.
    let script = format!(
        "{}\nif [ \"$DEPLOY_PHASE\" = start ]; then echo \"$DEPLOY_IMAGE\" > '{}'; fi",
        recording_script(&dir),
        live.display()
    );
    let health = format!(
        "[instances.health]\ncommand = [\"/bin/sh\", \"-c\", \"! grep -q {SHA_2} '{}'\"]\ninterval = \"100ms\"\ntimeout = \"2s\"\ndeadline = \"1s\"\n",
        live.display()
    );
    let bot = Bot::start_configured(db, &script, &health);
    let good = push_tag(&bot, "v1.0.0", SHA_1);
    assert_eq!(bot.wait_final(&good).state, DeployState::Succeeded);
    assert!(
        bot.db
            .store
            .lock_covering("acme", production(&bot).id)
            .unwrap()
            .is_none()
    );

    let bad = push_tag(&bot, "v2.0.0", SHA_2);
    let failed = bot.wait_final(&bad);
    assert_eq!(failed.state, DeployState::RolledBack, "{failed:?}");
    let lock = bot
        .db
        .store
        .lock_covering("acme", production(&bot).id)
        .unwrap()
        .expect("the rollback locked the instance");
    assert_eq!(lock.holder, "deploybot");
    assert!(
        lock.reason
            .starts_with("v2 (2222222) failed and was rolled back: "),
        "{}",
        lock.reason
    );
    assert!(lock.expires_at.is_none());
    assert!(
        audit_actions(&bot)
            .iter()
            .any(|(actor, action, _)| actor == "deploybot" && action == "lock.on_rollback")
    );

    let next = push_tag(&bot, "v3.0.0", SHA_3);
    let held = wait_waiting(&bot, &next, WaitKind::Lock);
    assert!(
        held.waiting_for
            .unwrap()
            .reason
            .contains("failed and was rolled back"),
        "the push says why it waits"
    );
    let ran = runs(&dir).len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&dir).len(), ran, "the push waits");
    assert_eq!(bot.deployment(&next).state, DeployState::Pending);
}

crate::both_backends_owned!(
    a_lock_holds_pushes_and_unlock_runs_the_newest,
    a_lock_taken_through_the_api_holds_a_push_until_it_is_unlocked,
    a_lock_that_expires_while_the_server_is_down_lets_the_push_run_after_restart,
    two_replicas_agree_on_a_lock,
    a_freeze_holds_a_push_until_it_ends,
    a_waiting_push_follows_what_holds_it_from_the_freeze_to_a_lock_and_back,
    a_dry_run_plans_and_leaves_the_active_release,
    parameters_reach_the_deploy_command_and_unlisted_ones_are_refused,
    an_automatic_rollback_locks_the_instance_against_pushes,
);
