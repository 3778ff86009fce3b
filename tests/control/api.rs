//! Deploy control through the REST API, as tokens use it: a lock refuses others' deploys
//! and passes its holder's; only an admin token forces a rollback through it; the audit
//! trail records who did what and shows nothing to another tenant or to a token limited to
//! other instances; parameters and dry runs reach the deployment; a freeze refuses deploys
//! unless an admin token forces them.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bot::{Bot, SHA, push};
use crate::common::{TestDb, http};

const ALPHA: &str = "control-alpha-token-3b8f01";
const BRAVO: &str = "control-bravo-token-77c1e2";
const CHIEF: &str = "control-chief-token-a90d4f";
const RIVAL: &str = "control-rival-token-1e6b35";
const STAGER: &str = "control-stager-token-52ad0c";

/// alpha and bravo deploy for acme, chief is acme's admin, rival is another tenant's admin,
/// stager deploys acme's web-staging only.
fn tokens() -> String {
    let token = |name: &str, secret: &str, tenant: &str, role: &str, instances: &str| {
        format!(
            "[[api.tokens]]\nname = \"{name}\"\ntenant = \"{tenant}\"\nsha256 = \"{}\"\nrole = \"{role}\"\n{instances}\n",
            hex::encode(Sha256::digest(secret.as_bytes()))
        )
    };
    [
        token("alpha", ALPHA, "acme", "deploy", ""),
        token("bravo", BRAVO, "acme", "deploy", ""),
        token("chief", CHIEF, "acme", "admin", ""),
        token("rival", RIVAL, "globex", "admin", ""),
        token(
            "stager",
            STAGER,
            "acme",
            "deploy",
            "instances = [\"web-staging\"]",
        ),
    ]
    .concat()
}

fn start(db: TestDb, extra: &str) -> Bot {
    Bot::start_with(
        db,
        "exit 0",
        &format!("{}{extra}", tokens()),
        false,
        "params = [\"REGION\"]",
    )
}

fn call(bot: &Bot, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = http(bot.port, method, path, Some(token), &body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(bot: &Bot, token: &str, path: &str) -> (u16, Value) {
    call(bot, token, "GET", path, Value::Null)
}

fn deploy(bot: &Bot, token: &str, instance: &str, body: Value) -> (u16, Value) {
    call(
        bot,
        token,
        "POST",
        &format!("/v1/instances/{instance}/deploy"),
        body,
    )
}

#[track_caller]
fn expect(answer: &(u16, Value), status: u16) -> Value {
    assert_eq!(answer.0, status, "{}", answer.1);
    answer.1.clone()
}

/// The audit events (newest first) that `token` reads.
fn audit(bot: &Bot, token: &str, query: &str) -> Vec<Value> {
    let page = expect(
        &get(bot, token, &format!("/v1/audit?limit=100{query}")),
        200,
    );
    page["items"].as_array().unwrap().clone()
}

fn has_event(events: &[Value], actor: &str, action: &str) -> Option<Value> {
    events
        .iter()
        .find(|e| e["actor"] == actor && e["action"] == action)
        .cloned()
}

fn locks_refuse_others_pass_their_holder_and_are_audited(db: TestDb) {
    let bot = start(db, "");
    let prod = "/v1/instances/web-production";

    let lock = expect(
        &call(
            &bot,
            ALPHA,
            "PUT",
            &format!("{prod}/lock"),
            json!({"reason": "incident 42", "ttl": "30m"}),
        ),
        200,
    );
    assert_eq!(lock["holder"], "token:alpha", "{lock}");
    assert_eq!(lock["scope"], "instance", "{lock}");
    let expires = lock["expires_at"].as_str().expect("a 30m lock expires");
    let expires: chrono::DateTime<Utc> = expires.parse().unwrap();
    assert!(expires > Utc::now() + Duration::minutes(25), "{lock}");
    assert!(expires < Utc::now() + Duration::minutes(35), "{lock}");
    let seen = expect(&get(&bot, BRAVO, &format!("{prod}/lock")), 200);
    assert_eq!(seen["holder"], "token:alpha");

    // Another token's deploy is refused, naming holder, reason and expiry; so is its lock.
    let refused = expect(
        &deploy(
            &bot,
            BRAVO,
            "web-production",
            json!({"image": "ghcr.io/acme/web:b"}),
        ),
        409,
    );
    assert_eq!(refused["error"]["code"], "locked", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    for needle in [
        "token:alpha",
        "incident 42",
        &expires.format("%H:%M").to_string(),
    ] {
        assert!(message.contains(needle), "{needle:?} missing: {message}");
    }
    let dry = expect(
        &deploy(
            &bot,
            BRAVO,
            "web-production",
            json!({"image": "ghcr.io/acme/web:b", "noop": true}),
        ),
        409,
    );
    assert_eq!(dry["error"]["code"], "locked", "{dry}");
    let taken = expect(
        &call(&bot, BRAVO, "PUT", &format!("{prod}/lock"), json!({})),
        409,
    );
    assert_eq!(taken["error"]["code"], "locked");
    assert!(
        bot.deployments("web-production").is_empty(),
        "a refused deploy was queued"
    );

    // The holder deploys through its own lock.
    let own = expect(
        &deploy(
            &bot,
            ALPHA,
            "web-production",
            json!({"image": "ghcr.io/acme/web:a"}),
        ),
        201,
    );
    bot.wait_final(own["id"].as_str().unwrap());

    // A rollback through another's lock: refused with force by a deploy token, passed by an
    // admin token with force, which the audit trail records.
    let rollback = format!("{prod}/rollback");
    let weak = expect(
        &call(
            &bot,
            BRAVO,
            "POST",
            &rollback,
            json!({"version": 1, "force": true}),
        ),
        409,
    );
    assert_eq!(weak["error"]["code"], "locked", "{weak}");
    let unforced = expect(
        &call(&bot, CHIEF, "POST", &rollback, json!({"version": 1})),
        409,
    );
    assert_eq!(unforced["error"]["code"], "locked", "{unforced}");
    let forced = expect(
        &call(
            &bot,
            CHIEF,
            "POST",
            &rollback,
            json!({"version": 1, "force": true, "reason": "v1 corrupts sessions"}),
        ),
        201,
    );
    assert_eq!(forced["kind"], "rollback");
    assert!(
        forced["source"]["trigger"]
            .as_str()
            .unwrap()
            .contains("v1 corrupts sessions"),
        "{forced}"
    );
    let forced_id = forced["id"].as_str().unwrap();

    // The lock shows in the list and on its instance only.
    let locks = expect(&get(&bot, BRAVO, "/v1/locks"), 200);
    let items = locks["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{locks}");
    assert_eq!(items[0]["holder"], "token:alpha");
    let instances = expect(&get(&bot, BRAVO, "/v1/instances"), 200);
    for instance in instances["items"].as_array().unwrap() {
        match instance["name"].as_str().unwrap() {
            "web-production" => assert_eq!(instance["lock"]["holder"], "token:alpha"),
            _ => assert!(instance["lock"].is_null(), "{instance}"),
        }
        assert!(instance["freeze"]["current"].is_null(), "{instance}");
    }

    let events = audit(&bot, CHIEF, "");
    let lock_event = has_event(&events, "token:alpha", "lock").expect("the lock is audited");
    assert!(
        lock_event["detail"]
            .as_str()
            .unwrap()
            .contains("incident 42")
    );
    has_event(&events, "token:bravo", "refused").expect("the refusal is audited");
    let deployed = has_event(&events, "token:alpha", "deploy").expect("the deploy is audited");
    assert_eq!(deployed["deployment_id"], own["id"]);
    let force = has_event(&events, "token:chief", "force").expect("the force is audited");
    assert_eq!(force["deployment_id"], forced_id);
    assert!(force["detail"].as_str().unwrap().contains("token:alpha"));
    let rolled = has_event(&events, "token:chief", "rollback").expect("the rollback is audited");
    assert!(
        rolled["detail"]
            .as_str()
            .unwrap()
            .contains("v1 corrupts sessions")
    );
    assert!(
        has_event(&events, "token:bravo", "rollback").is_none(),
        "a refused rollback was audited as done"
    );

    // Another tenant sees none of it, nor does a token limited to another instance.
    assert!(audit(&bot, RIVAL, "").is_empty());
    expect(&get(&bot, RIVAL, &format!("{prod}/lock")), 404);
    let rival_locks = expect(&get(&bot, RIVAL, "/v1/locks"), 200);
    assert_eq!(rival_locks["items"], json!([]));
    expect(
        &call(&bot, RIVAL, "DELETE", &format!("{prod}/lock"), Value::Null),
        404,
    );
    let stager_events = audit(&bot, STAGER, "");
    assert!(
        stager_events.is_empty(),
        "a token limited to web-staging read production's events: {stager_events:?}"
    );
    expect(&get(&bot, STAGER, &format!("{prod}/lock")), 404);
    expect(&get(&bot, STAGER, "/v1/audit?instance=web-production"), 404);
    assert_eq!(
        expect(&get(&bot, STAGER, "/v1/locks"), 200)["items"],
        json!([])
    );

    // Unlocking lets others deploy again; a second unlock finds nothing.
    expect(
        &call(&bot, BRAVO, "DELETE", &format!("{prod}/lock"), Value::Null),
        204,
    );
    expect(&get(&bot, BRAVO, &format!("{prod}/lock")), 404);
    expect(
        &call(&bot, BRAVO, "DELETE", &format!("{prod}/lock"), Value::Null),
        404,
    );
    expect(
        &deploy(
            &bot,
            BRAVO,
            "web-production",
            json!({"image": "ghcr.io/acme/web:b"}),
        ),
        201,
    );
    let events = audit(&bot, CHIEF, "&instance=web-production");
    has_event(&events, "token:bravo", "unlock").expect("the unlock is audited");

    // A token limited to one instance takes no global lock: it would hold the others too.
    let partial = expect(
        &call(
            &bot,
            STAGER,
            "PUT",
            "/v1/instances/web-staging/lock",
            json!({"global": true}),
        ),
        403,
    );
    assert_eq!(partial["error"]["code"], "forbidden", "{partial}");
    expect(&get(&bot, ALPHA, &format!("{prod}/lock")), 404);

    // A global lock holds every instance of the repository.
    let global = expect(
        &call(
            &bot,
            ALPHA,
            "PUT",
            &format!("{prod}/lock"),
            json!({"reason": "migration", "global": true}),
        ),
        200,
    );
    assert_eq!(global["scope"], "repo", "{global}");
    assert!(global["expires_at"].is_null(), "{global}");
    let staging = expect(
        &deploy(
            &bot,
            STAGER,
            "web-staging",
            json!({"image": "ghcr.io/acme/web:s"}),
        ),
        409,
    );
    assert_eq!(staging["error"]["code"], "locked", "{staging}");
    let covering = expect(&get(&bot, STAGER, "/v1/instances/web-staging/lock"), 200);
    assert_eq!(covering["scope"], "repo");
    expect(
        &call(
            &bot,
            STAGER,
            "DELETE",
            "/v1/instances/web-staging/lock?global=true",
            Value::Null,
        ),
        403,
    );
    // A push waits for the lock, and its deployment says so.
    let (status, answer) = bot.send("push", &push("refs/heads/main", SHA, "octocat"), "d-push-1");
    assert!((200..300).contains(&status), "{status} {answer}");
    let listed = expect(
        &get(&bot, STAGER, "/v1/instances/web-staging/deployments"),
        200,
    );
    let held = listed["items"][0].clone();
    assert_eq!(held["state"], "pending", "{held}");
    assert_eq!(held["waiting_for"]["kind"], "lock", "{held}");
    assert!(
        held["waiting_for"]["description"]
            .as_str()
            .unwrap()
            .contains("token:alpha"),
        "{held}"
    );
    expect(
        &call(
            &bot,
            ALPHA,
            "DELETE",
            "/v1/instances/web-staging/lock?global=true",
            Value::Null,
        ),
        204,
    );
    let released = bot.wait_final(held["id"].as_str().unwrap());
    assert_eq!(released.waiting_for, None);
    expect(
        &deploy(
            &bot,
            STAGER,
            "web-staging",
            json!({"image": "ghcr.io/acme/web:s"}),
        ),
        201,
    );
}

fn parameters_and_dry_runs_reach_the_deployment(db: TestDb) {
    let bot = start(db, "");
    let listed = expect(
        &deploy(
            &bot,
            ALPHA,
            "web-production",
            json!({"image": "ghcr.io/acme/web:p", "params": {"REGION": "eu-west-1"}}),
        ),
        201,
    );
    assert_eq!(listed["params"], json!({"REGION": "eu-west-1"}), "{listed}");
    assert_eq!(listed["noop"], false);
    let id = listed["id"].as_str().unwrap();
    let read = expect(&get(&bot, ALPHA, &format!("/v1/deployments/{id}")), 200);
    assert_eq!(read["params"], json!({"REGION": "eu-west-1"}), "{read}");
    bot.wait_final(id);

    let unlisted = expect(
        &deploy(
            &bot,
            ALPHA,
            "web-production",
            json!({"image": "ghcr.io/acme/web:p", "params": {"COLOR": "red"}}),
        ),
        400,
    );
    let message = unlisted["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("COLOR") && message.contains("REGION"),
        "{message}"
    );
    let staging = expect(
        &deploy(
            &bot,
            ALPHA,
            "web-staging",
            json!({"image": "ghcr.io/acme/web:p", "params": {"REGION": "eu-west-1"}}),
        ),
        400,
    );
    assert!(
        staging["error"]["message"]
            .as_str()
            .unwrap()
            .contains("accepts no parameters"),
        "{staging}"
    );

    let dry = expect(
        &deploy(
            &bot,
            ALPHA,
            "web-staging",
            json!({"image": "ghcr.io/acme/web:dry", "noop": true}),
        ),
        201,
    );
    assert_eq!(dry["noop"], true, "{dry}");
    let release = expect(
        &get(
            &bot,
            ALPHA,
            &format!("/v1/releases/{}", dry["release_id"].as_str().unwrap()),
        ),
        200,
    );
    assert!(
        release["notes"].as_str().unwrap().starts_with("dry run: "),
        "{release}"
    );
    let events = audit(&bot, ALPHA, "");
    let noop = has_event(&events, "token:alpha", "noop").expect("the dry run is audited");
    assert_eq!(noop["deployment_id"], dry["id"]);
}

fn a_freeze_refuses_deploys_unless_an_admin_forces(db: TestDb) {
    let start_at = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let end_at = (Utc::now() + Duration::hours(2)).to_rfc3339();
    let later_start = (Utc::now() + Duration::hours(5)).to_rfc3339();
    let later_end = (Utc::now() + Duration::hours(6)).to_rfc3339();
    let freeze = format!(
        "[[freeze]]\nreason = \"end-of-year freeze\"\nstart = \"{start_at}\"\nend = \"{end_at}\"\n\
         [[freeze]]\nreason = \"inventory\"\nstart = \"{later_start}\"\nend = \"{later_end}\"\n"
    );
    let bot = start(db, &freeze);
    let image = json!({"image": "ghcr.io/acme/web:f"});

    let refused = expect(&deploy(&bot, ALPHA, "web-production", image.clone()), 409);
    assert_eq!(refused["error"]["code"], "frozen", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("end-of-year freeze"),
        "{refused}"
    );
    let weak = expect(
        &deploy(
            &bot,
            ALPHA,
            "web-production",
            json!({"image": "ghcr.io/acme/web:f", "force": true}),
        ),
        409,
    );
    assert_eq!(weak["error"]["code"], "frozen", "{weak}");
    assert!(bot.deployments("web-production").is_empty());

    let dry = expect(
        &deploy(
            &bot,
            ALPHA,
            "web-production",
            json!({"image": "ghcr.io/acme/web:f", "noop": true}),
        ),
        201,
    );
    assert_eq!(dry["noop"], true);
    let forced = expect(
        &deploy(
            &bot,
            CHIEF,
            "web-production",
            json!({"image": "ghcr.io/acme/web:f", "force": true}),
        ),
        201,
    );
    let events = audit(&bot, CHIEF, "&instance=web-production");
    let force = has_event(&events, "token:chief", "force").expect("the force is audited");
    assert_eq!(force["deployment_id"], forced["id"]);
    assert!(
        force["detail"]
            .as_str()
            .unwrap()
            .contains("end-of-year freeze")
    );
    has_event(&events, "token:alpha", "refused").expect("the refusal is audited");

    let instances = expect(&get(&bot, ALPHA, "/v1/instances"), 200);
    let prod = instances["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "web-production")
        .unwrap()
        .clone();
    assert_eq!(
        prod["freeze"]["current"]["reason"], "end-of-year freeze",
        "{prod}"
    );
    assert_eq!(prod["freeze"]["next"]["reason"], "inventory", "{prod}");
}

/// One holder at a time across a repository and its instances: a global lock keeps others
/// from locking an instance under it (and deploying through that), and an instance's lock
/// keeps others from taking the repository's.
fn a_lock_has_one_holder_across_a_repository_and_its_instances(db: TestDb) {
    let bot = start(db, "");
    let lock = |token: &str, instance: &str, body: Value| {
        call(
            &bot,
            token,
            "PUT",
            &format!("/v1/instances/{instance}/lock"),
            body,
        )
    };
    expect(
        &lock(
            ALPHA,
            "web-production",
            json!({"reason": "release train", "global": true}),
        ),
        200,
    );
    let under = expect(
        &lock(BRAVO, "web-staging", json!({"reason": "mine now"})),
        409,
    );
    assert_eq!(under["error"]["code"], "locked", "{under}");
    assert!(
        under["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token:alpha"),
        "{under}"
    );
    expect(&get(&bot, BRAVO, "/v1/instances/web-staging/lock"), 200);
    let refused = expect(
        &deploy(
            &bot,
            BRAVO,
            "web-staging",
            json!({"image": "ghcr.io/acme/web:b"}),
        ),
        409,
    );
    assert_eq!(refused["error"]["code"], "locked", "{refused}");
    // The global lock's holder may still lock one instance beneath it.
    expect(
        &lock(ALPHA, "web-staging", json!({"reason": "staging too"})),
        200,
    );
    for path in [
        "/v1/instances/web-staging/lock",
        "/v1/instances/web-production/lock?global=true",
    ] {
        expect(&call(&bot, ALPHA, "DELETE", path, Value::Null), 204);
    }

    expect(
        &lock(BRAVO, "web-production", json!({"reason": "hotfix"})),
        200,
    );
    let over = expect(
        &lock(
            ALPHA,
            "web-staging",
            json!({"reason": "everything", "global": true}),
        ),
        409,
    );
    assert!(
        over["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token:bravo"),
        "{over}"
    );
    let locks = expect(&get(&bot, CHIEF, "/v1/locks"), 200);
    assert_eq!(locks["items"].as_array().unwrap().len(), 1, "{locks}");
    assert_eq!(locks["items"][0]["holder"], "token:bravo", "{locks}");
}

/// A dry run by the lock's holder leaves the tag that waits for the lock waiting, even on
/// an instance where newer deployments supersede older ones; the tag runs at the unlock.
fn a_dry_run_supersedes_nothing_that_waits(db: TestDb) {
    let bot = Bot::start_with(
        db,
        "exit 0",
        &tokens(),
        false,
        "params = [\"REGION\"]\nsupersede = true",
    );
    expect(
        &call(
            &bot,
            CHIEF,
            "PUT",
            "/v1/instances/web-production/lock",
            json!({"reason": "checking the plan"}),
        ),
        200,
    );
    let mut tag = crate::bot::fixture("push_tag");
    tag["ref"] = "refs/tags/v9.0.0".into();
    tag["after"] = SHA.into();
    tag["head_commit"]["id"] = SHA.into();
    let (status, answer) = bot.send("push", &tag, "d-tag-v9");
    assert_eq!(status, 202, "{answer}");
    let held = answer["deployments"][0].as_str().unwrap().to_string();
    crate::bot::wait_until(
        "the tag to wait for the lock",
        std::time::Duration::from_secs(30),
        || bot.deployment(&held).waiting_for.is_some(),
    );

    let dry = expect(
        &deploy(
            &bot,
            CHIEF,
            "web-production",
            json!({"image": "ghcr.io/acme/web:plan", "noop": true}),
        ),
        201,
    );
    let dry = bot.wait_final(dry["id"].as_str().unwrap());
    assert_eq!(dry.state.as_str(), "succeeded", "{dry:?}");
    let waiting = bot.deployment(&held);
    assert_eq!(waiting.state.as_str(), "pending", "{waiting:?}");
    assert!(waiting.waiting_for.is_some(), "{waiting:?}");

    expect(
        &call(
            &bot,
            CHIEF,
            "DELETE",
            "/v1/instances/web-production/lock",
            Value::Null,
        ),
        204,
    );
    let ran = bot.wait_final(&held);
    assert_eq!(ran.state.as_str(), "succeeded", "{ran:?}");
}

/// Lock durations are bounded on every path, and a person's one-line texts cannot hide
/// characters that reorder or conceal what a reader sees.
fn lock_durations_and_texts_are_bounded(db: TestDb) {
    let bot = start(db, "");
    let long = expect(
        &call(
            &bot,
            ALPHA,
            "PUT",
            "/v1/instances/web-production/lock",
            json!({"reason": "forever", "ttl": "31d"}),
        ),
        400,
    );
    assert!(
        long["error"]["message"]
            .as_str()
            .unwrap()
            .contains("30 days"),
        "{long}"
    );
    expect(
        &call(
            &bot,
            ALPHA,
            "PUT",
            "/v1/instances/web-production/lock",
            json!({"reason": "fine \u{202E}enil-eno", "ttl": "1h"}),
        ),
        400,
    );
    expect(&get(&bot, ALPHA, "/v1/instances/web-production/lock"), 404);
    let hidden = expect(
        &deploy(
            &bot,
            ALPHA,
            "web-production",
            json!({"image": "ghcr.io/acme/web:p", "params": {"REGION": "eu\u{2066}-west"}}),
        ),
        400,
    );
    assert!(
        hidden["error"]["message"]
            .as_str()
            .unwrap()
            .contains("REGION"),
        "{hidden}"
    );
    expect(
        &call(
            &bot,
            ALPHA,
            "PUT",
            "/v1/instances/web-production/lock",
            json!({"reason": "thirty days", "ttl": "30d"}),
        ),
        200,
    );
}

crate::both_backends_owned!(
    locks_refuse_others_pass_their_holder_and_are_audited,
    a_lock_has_one_holder_across_a_repository_and_its_instances,
    a_dry_run_supersedes_nothing_that_waits,
    lock_durations_and_texts_are_bounded,
    parameters_and_dry_runs_reach_the_deployment,
    a_freeze_refuses_deploys_unless_an_admin_forces,
);
