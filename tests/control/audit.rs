//! The audit trail as `GET /v1/audit` shows it, through the real server and the fake GitHub
//! on both databases: a push's deployment is a `deploy` by its pusher, an automatic
//! rollback is the bot's `rollback.automatic` of the deployment that failed, a
//! `/cancel --queued` is a `cancel` by its commenter of each deployment it cancelled, and a
//! lock that runs out is the bot's `lock.expired`. Also what a push held by a lock waits for
//! once the lock ends: promotion, naming its commit and where it must succeed first.

use std::time::Duration;

use deploybot::deploy::{DeployState, WaitKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bot::{Bot, PR_SHA, push, wait_until};
use crate::both_backends_owned;
use crate::common::{TestDb, http};
use crate::gates::wait_waiting;

/// acme's admin token, named "ops".
const OPS: &str = "audit-ops-token-61d0b2";

const SHA_1: &str = "1111111111111111111111111111111111111111";
const SHA_2: &str = "2222222222222222222222222222222222222222";

/// The bot with web-production configured with `production` (TOML lines), the ops token,
/// alice allowed to write, and pull request #42 open; each deploy ends at once unless
/// `script` says otherwise.
fn start(db: TestDb, script: &str, production: &str) -> Bot {
    let token = format!(
        "[[api.tokens]]\nname = \"ops\"\ntenant = \"acme\"\nsha256 = \"{}\"\nrole = \"admin\"\n",
        hex::encode(Sha256::digest(OPS.as_bytes()))
    );
    let bot = Bot::start_with(db, script, &token, false, production);
    bot.fake.set_permission("acme/web", "alice", "write");
    bot.open_pull(42, PR_SHA, false, "open");
    bot
}

/// web-production's id, once the server has stored its instances (it listens before that).
fn production_id(bot: &Bot) -> String {
    use deploybot::deploy::InstanceStore;
    let mut found = None;
    wait_until(
        "the server to store its instances",
        Duration::from_secs(30),
        || {
            found = bot.db.store.find_instance("acme", "web-production").ok();
            found.is_some()
        },
    );
    found.unwrap().id.to_string()
}

fn call(bot: &Bot, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = http(bot.port, method, path, Some(OPS), &body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[track_caller]
fn expect(answer: (u16, Value), status: u16) -> Value {
    assert_eq!(answer.0, status, "{}", answer.1);
    answer.1
}

/// The audit trail as `GET /v1/audit` shows it, newest first.
fn audit(bot: &Bot) -> Vec<Value> {
    let page = expect(call(bot, "GET", "/v1/audit?limit=100", Value::Null), 200);
    page["items"].as_array().unwrap().clone()
}

/// The events of `action` in the audit trail.
fn events(bot: &Bot, action: &str) -> Vec<Value> {
    audit(bot)
        .into_iter()
        .filter(|e| e["action"] == action)
        .collect()
}

/// Waits until the audit trail has an event of `action`; returns them all.
#[track_caller]
fn wait_event(bot: &Bot, action: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            &format!("a {action:?} event in the audit trail"),
            Duration::from_secs(30),
            || {
                found = events(bot, action);
                !found.is_empty()
            },
        )
    }));
    if waited.is_err() {
        panic!("no {action:?} event in the audit trail: {:#?}", audit(bot));
    }
    found
}

fn lock_production(bot: &Bot, ttl: &str) {
    expect(
        call(
            bot,
            "PUT",
            "/v1/instances/web-production/lock",
            json!({"reason": "incident 7", "ttl": ttl}),
        ),
        200,
    );
}

fn unlock_production(bot: &Bot) {
    expect(
        call(
            bot,
            "DELETE",
            "/v1/instances/web-production/lock",
            Value::Null,
        ),
        204,
    );
}

/// `login` pushes tag `tag` at `commit`; the deployment of web-production it queued.
fn push_tag(bot: &Bot, tag: &str, commit: &str, login: &str) -> String {
    let (status, answer) = bot.send(
        "push",
        &push(&format!("refs/tags/{tag}"), commit, login),
        &format!("tag-{tag}-{}", uuid::Uuid::now_v7().simple()),
    );
    assert_eq!(status, 202, "{answer}");
    answer["deployments"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no deployment queued: {answer}"))
        .to_string()
}

/// A tag pushed while a lock holds web-production is a `deploy` by `@` its pusher, of that
/// deployment; alice's `/cancel production --queued` cancels it and is a `cancel` by
/// `@alice` of that deployment.
fn a_push_is_its_pushers_deploy_and_a_queued_cancel_its_commenters(db: TestDb) {
    let bot = start(db, "echo deployed", "");
    let production = production_id(&bot);
    lock_production(&bot, "");
    let id = push_tag(&bot, "v1.0.0", SHA_1, "mona-pusher");
    wait_waiting(&bot, &id, WaitKind::Lock, |_| true);

    let deploys = events(&bot, "deploy");
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    let deploy = &deploys[0];
    assert_eq!(deploy["actor"], "@mona-pusher", "{deploy}");
    assert_eq!(deploy["deployment_id"], id.as_str(), "{deploy}");
    assert_eq!(deploy["instance_id"], production.as_str(), "{deploy}");
    let detail = deploy["detail"].as_str().unwrap();
    assert!(
        detail.contains("web-production") && detail.contains(SHA_1),
        "{detail}"
    );
    let shown = expect(
        call(&bot, "GET", &format!("/v1/deployments/{id}"), Value::Null),
        200,
    );
    assert_eq!(shown["source"]["requested_by"], "@mona-pusher", "{shown}");

    let delivery = format!("c-{}", uuid::Uuid::now_v7().simple());
    let (_, status, answer) = bot.comment(42, "alice", "/cancel production --queued", &delivery);
    assert!((200..300).contains(&status), "{status} {answer}");
    let cancels = wait_event(&bot, "cancel");
    assert_eq!(cancels.len(), 1, "{cancels:#?}");
    let cancel = &cancels[0];
    assert_eq!(cancel["actor"], "@alice", "{cancel}");
    assert_eq!(cancel["deployment_id"], id.as_str(), "{cancel}");
    assert_eq!(cancel["instance_id"], production.as_str(), "{cancel}");
    let detail = cancel["detail"].as_str().unwrap();
    assert!(
        detail.contains("/cancel on #42 on production") && detail.contains(&id),
        "{detail}"
    );
    let ended = bot.wait_final(&id);
    assert_eq!(ended.state, DeployState::Cancelled, "{ended:#?}");
    assert!(ended.started_at.is_none(), "{ended:#?}");
}

/// A deployment whose health check fails is rolled back by the bot: a
/// `rollback.automatic` by `deploybot` of that deployment, and none of the one that
/// succeeded.
fn an_automatic_rollback_is_the_bots_of_the_failed_deployment(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    // The deploy command records what runs; the health check fails while SHA_2 runs.
    let script = format!(
        "if [ \"$DEPLOY_PHASE\" = start ]; then echo \"$DEPLOY_IMAGE\" > '{}'; fi",
        live.display()
    );
    let health = format!(
        "[instances.health]\ncommand = [\"/bin/sh\", \"-c\", \"! grep -q {SHA_2} '{}'\"]\ninterval = \"100ms\"\ntimeout = \"2s\"\ndeadline = \"1s\"\n",
        live.display()
    );
    let bot = start(db, &script, &health);
    let production = production_id(&bot);
    let good = push_tag(&bot, "v1.0.0", SHA_1, "octocat");
    assert_eq!(bot.wait_final(&good).state, DeployState::Succeeded);
    assert!(events(&bot, "rollback.automatic").is_empty());

    let bad = push_tag(&bot, "v2.0.0", SHA_2, "octocat");
    let failed = bot.wait_final(&bad);
    assert_eq!(failed.state, DeployState::RolledBack, "{failed:#?}");
    let rollbacks = wait_event(&bot, "rollback.automatic");
    assert_eq!(rollbacks.len(), 1, "{rollbacks:#?}");
    let rollback = &rollbacks[0];
    assert_eq!(rollback["actor"], "deploybot", "{rollback}");
    assert_eq!(rollback["deployment_id"], bad.as_str(), "{rollback}");
    assert_eq!(rollback["instance_id"], production.as_str(), "{rollback}");
    let detail = rollback["detail"].as_str().unwrap();
    assert!(
        detail.contains(&bad) && detail.contains("previous release was restored"),
        "{detail}"
    );
}

/// A lock that runs out is the bot's `lock.expired` on its instance, naming who held it and
/// why; the lock is gone.
fn a_lock_that_runs_out_is_the_bots_lock_expired(db: TestDb) {
    let bot = start(db, "echo deployed", "");
    let production = production_id(&bot);
    lock_production(&bot, "2s");
    assert!(events(&bot, "lock.expired").is_empty());
    let expired = wait_event(&bot, "lock.expired");
    assert_eq!(expired.len(), 1, "{expired:#?}");
    let event = &expired[0];
    assert_eq!(event["actor"], "deploybot", "{event}");
    assert_eq!(event["instance_id"], production.as_str(), "{event}");
    let detail = event["detail"].as_str().unwrap();
    assert!(
        detail.contains("token:ops") && detail.contains("incident 7"),
        "{detail}"
    );
    expect(
        call(
            &bot,
            "GET",
            "/v1/instances/web-production/lock",
            Value::Null,
        ),
        404,
    );
}

/// A tag pushed while a lock holds web-production (promoted from staging) waits for the
/// lock, then for promotion: its reason names the commit and staging.
fn a_push_let_go_by_a_lock_waits_for_promotion_naming_its_commit(db: TestDb) {
    let bot = start(db, "echo deployed", "promote_from = \"staging\"");
    lock_production(&bot, "");
    let id = push_tag(&bot, "v1.0.0", SHA_1, "octocat");
    let held = wait_waiting(&bot, &id, WaitKind::Lock, |_| true);
    assert!(
        held.waiting_for.unwrap().reason.contains("incident 7"),
        "the push waits for the lock first"
    );

    unlock_production(&bot);
    let expected = format!("{} to succeed on staging first", &SHA_1[..7]);
    wait_waiting(&bot, &id, WaitKind::Promotion, |d| {
        d.waiting_for.as_ref().is_some_and(|w| w.reason == expected)
    });
    let shown = expect(
        call(&bot, "GET", &format!("/v1/deployments/{id}"), Value::Null),
        200,
    );
    assert_eq!(shown["waiting_for"]["kind"], "promotion", "{shown}");
    assert_eq!(shown["waiting_for"]["reason"], expected.as_str(), "{shown}");
    std::thread::sleep(Duration::from_secs(2));
    let still = bot.deployment(&id);
    assert_eq!(still.state, DeployState::Pending, "{still:#?}");
    assert!(still.started_at.is_none(), "{still:#?}");
}

both_backends_owned!(
    a_push_is_its_pushers_deploy_and_a_queued_cancel_its_commenters,
    an_automatic_rollback_is_the_bots_of_the_failed_deployment,
    a_lock_that_runs_out_is_the_bots_lock_expired,
    a_push_let_go_by_a_lock_waits_for_promotion_naming_its_commit,
);
