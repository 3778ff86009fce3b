//! The gates before a deployment starts, through the real server and the fake GitHub on
//! both databases: a tag reaches production only after it succeeded on staging, and a
//! person's deploy of a commit staging never ran is refused; a deploy needing approval
//! waits for another deployer (never its requester) and ends when nobody approves in time;
//! required checks hold a deployment until they are green and end it when one fails;
//! `/deploy` needs approving reviews of the pull request's current head and a branch up to
//! date with its base; deployers named by team are its members. Every refusal is in the
//! audit trail.

use std::time::Duration;

use deploybot::deploy::{DeployState, Deployment, WaitKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bot::{Bot, PR_SHA, SHA, push, wait_until};
use crate::both_backends_owned;
use crate::common::{TestDb, http};

const ALPHA: &str = "gates-alpha-token-5c0e93";
const BRAVO: &str = "gates-bravo-token-d21a7f";
const CHIEF: &str = "gates-chief-token-8b44e0";

/// A commit no environment has seen.
const OTHER_SHA: &str = "4444444444444444444444444444444444444444";

/// People who comment in these tests; every other comment is the bot's.
const PEOPLE: [&str; 5] = ["alice", "bob", "carol", "dave", "octocat"];

/// alpha and bravo deploy for acme; chief is acme's admin.
fn tokens() -> String {
    let token = |name: &str, secret: &str, role: &str| {
        format!(
            "[[api.tokens]]\nname = \"{name}\"\ntenant = \"acme\"\nsha256 = \"{}\"\nrole = \"{role}\"\n",
            hex::encode(Sha256::digest(secret.as_bytes()))
        )
    };
    [
        token("alpha", ALPHA, "deploy"),
        token("bravo", BRAVO, "deploy"),
        token("chief", CHIEF, "admin"),
    ]
    .concat()
}

/// The bot with web-production configured with `production` (TOML lines) and the tokens;
/// alice, bob, carol and dave may write, and pull request #42 (by octocat) is open at
/// `PR_SHA`.
fn start(db: TestDb, production: &str) -> Bot {
    let bot = Bot::start_with(db, "echo deployed", &tokens(), false, production);
    for user in ["alice", "bob", "carol", "dave"] {
        bot.fake.set_permission("acme/web", user, "write");
    }
    bot.open_pull(42, PR_SHA, false, "open");
    bot
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

#[track_caller]
fn expect(answer: &(u16, Value), status: u16) -> Value {
    assert_eq!(answer.0, status, "{}", answer.1);
    answer.1.clone()
}

/// `token` deploys `commit` to `instance` through the API.
fn deploy(bot: &Bot, token: &str, instance: &str, commit: &str) -> (u16, Value) {
    call(
        bot,
        token,
        "POST",
        &format!("/v1/instances/{instance}/deploy"),
        json!({"image": format!("ghcr.io/acme/web:{commit}"), "commit_sha": commit}),
    )
}

fn approve(bot: &Bot, token: &str, id: &str) -> (u16, Value) {
    call(
        bot,
        token,
        "POST",
        &format!("/v1/deployments/{id}/approve"),
        Value::Null,
    )
}

/// The deployment as the API shows it.
fn shown(bot: &Bot, id: &str) -> Value {
    expect(
        &call(
            bot,
            CHIEF,
            "GET",
            &format!("/v1/deployments/{id}"),
            Value::Null,
        ),
        200,
    )
}

/// The audit trail as acme's admin reads it, newest first.
fn audit(bot: &Bot) -> Vec<Value> {
    let page = expect(
        &call(bot, CHIEF, "GET", "/v1/audit?limit=100", Value::Null),
        200,
    );
    page["items"].as_array().unwrap().clone()
}

/// The audit event of `actor` doing `action` whose detail holds `needle`.
#[track_caller]
fn audited(bot: &Bot, actor: &str, action: &str, needle: &str) -> Value {
    let events = audit(bot);
    events
        .iter()
        .find(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["detail"].as_str().unwrap_or("").contains(needle)
        })
        .cloned()
        .unwrap_or_else(|| {
            panic!("no {action:?} by {actor} with {needle:?} in the audit trail: {events:#?}")
        })
}

/// Waits until the deployment waits at `kind` (and `check` holds of it); returns it.
pub(crate) fn wait_waiting(
    bot: &Bot,
    id: &str,
    kind: WaitKind,
    mut check: impl FnMut(&Deployment) -> bool,
) -> Deployment {
    let mut last = None;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            &format!("{id} to wait for {}", kind.as_str()),
            Duration::from_secs(30),
            || {
                let d = bot.deployment(id);
                let done = d.state == DeployState::Pending
                    && d.waiting_for.as_ref().is_some_and(|w| w.kind == kind)
                    && check(&d);
                last = Some(d);
                done
            },
        )
    }));
    if waited.is_err() {
        panic!("{id} never waited for {}: {last:#?}", kind.as_str());
    }
    last.unwrap()
}

/// Asserts for `during` that the deployment stays pending at `kind`, never started.
#[track_caller]
fn stays_waiting(bot: &Bot, id: &str, kind: WaitKind, during: Duration) {
    let until = std::time::Instant::now() + during;
    while std::time::Instant::now() < until {
        let d = bot.deployment(id);
        assert_eq!(d.state, DeployState::Pending, "{d:#?}");
        assert_eq!(d.waiting_for.as_ref().map(|w| w.kind), Some(kind), "{d:#?}");
        assert!(d.started_at.is_none(), "{d:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bot's comments on pull request `pr`.
fn replies(bot: &Bot, pr: u64) -> Vec<String> {
    bot.fake
        .comments("acme/web", pr)
        .into_iter()
        .filter(|c| !PEOPLE.contains(&c.user.as_str()))
        .map(|c| c.body)
        .collect()
}

/// `user` comments `body` on #`pr` (a fresh delivery).
fn say(bot: &Bot, pr: u64, user: &str, body: &str) {
    let delivery = format!("c-{}", uuid::Uuid::now_v7().simple());
    let (_, status, answer) = bot.comment(pr, user, body, &delivery);
    assert!((200..300).contains(&status), "{status} {answer}");
}

/// Waits for a reply on #`pr` holding every one of `parts`, and returns it.
fn reply_with(bot: &Bot, pr: u64, parts: &[&str]) -> String {
    let mut found = None;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            &format!("a reply with {parts:?}"),
            Duration::from_secs(30),
            || {
                found = replies(bot, pr)
                    .into_iter()
                    .find(|r| parts.iter().all(|p| r.contains(p)));
                found.is_some()
            },
        )
    }));
    if waited.is_err() {
        panic!(
            "no reply with {parts:?}; the replies: {:#?}",
            replies(bot, pr)
        );
    }
    found.unwrap()
}

/// How many of the bot's replies on #`pr` hold `part`.
fn replies_with(bot: &Bot, pr: u64, part: &str) -> usize {
    replies(bot, pr).iter().filter(|r| r.contains(part)).count()
}

/// Waits until web-production has `n` deployments; the newest.
fn nth_production(bot: &Bot, n: usize) -> Deployment {
    wait_until(
        &format!("deployment number {n} of web-production"),
        Duration::from_secs(30),
        || bot.deployments("web-production").len() >= n,
    );
    bot.deployments("web-production")
        .into_iter()
        .next()
        .unwrap()
}

fn short(sha: &str) -> &str {
    &sha[..7]
}

/// Restarts the bot with web-staging deploying the tags web-production deploys.
fn with_staging_on_tags(bot: &mut Bot) {
    bot.sigterm();
    let path = bot.dir().join("deploybot.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    assert!(config.contains("on_push = [\"main\"]"), "{config}");
    let config = config.replace("on_push = [\"main\"]", "on_tag = [\"v*\"]");
    std::fs::write(&path, config).unwrap();
    bot.restart();
}

/// A tag deploys to staging and production at once; production waits for promotion while
/// staging is held by a lock, then runs once staging succeeded with the same commit.
fn a_tag_reaches_production_after_it_succeeded_on_staging(db: TestDb) {
    let mut bot = start(db, "promote_from = \"staging\"");
    with_staging_on_tags(&mut bot);
    expect(
        &call(
            &bot,
            CHIEF,
            "PUT",
            "/v1/instances/web-staging/lock",
            json!({"reason": "smoke tests first"}),
        ),
        200,
    );
    let (status, answer) = bot.send("push", &push("refs/tags/v1.4.0", SHA, "octocat"), "tag-1");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["deployments"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    let production = nth_production(&bot, 1).id.to_string();
    let waiting = wait_waiting(&bot, &production, WaitKind::Promotion, |_| true);
    let reason = &waiting.waiting_for.as_ref().unwrap().reason;
    assert!(
        reason.contains("staging") && reason.contains(short(SHA)),
        "{reason}"
    );
    let json = shown(&bot, &production);
    assert_eq!(json["waiting_for"]["kind"], "promotion", "{json}");
    stays_waiting(
        &bot,
        &production,
        WaitKind::Promotion,
        Duration::from_secs(3),
    );

    expect(
        &call(
            &bot,
            CHIEF,
            "DELETE",
            "/v1/instances/web-staging/lock",
            Value::Null,
        ),
        204,
    );
    let staging = bot.deployments("web-staging")[0].id.to_string();
    let staged = bot.wait_final(&staging);
    assert_eq!(staged.state, DeployState::Succeeded, "{staged:#?}");
    let promoted = bot.wait_final(&production);
    assert_eq!(promoted.state, DeployState::Succeeded, "{promoted:#?}");
    assert!(
        promoted.started_at.unwrap() >= staged.finished_at.unwrap(),
        "production started before staging succeeded: {promoted:#?} {staged:#?}"
    );
}

/// A tag staging never deploys waits for promotion until `promotion_timeout`, then ends
/// cancelled, saying so; the audit trail records it.
fn a_tag_staging_never_deployed_times_out_waiting_for_promotion(db: TestDb) {
    let bot = start(db, "promote_from = \"staging\"\npromotion_timeout = \"2s\"");
    let (status, answer) = bot.send("push", &push("refs/tags/v2.0.0", SHA, "octocat"), "tag-2");
    assert_eq!(status, 202, "{answer}");
    let id = nth_production(&bot, 1).id.to_string();
    wait_waiting(&bot, &id, WaitKind::Promotion, |_| true);
    let ended = bot.wait_final(&id);
    assert_eq!(ended.state, DeployState::Cancelled, "{ended:#?}");
    assert!(
        ended.error.contains("promotion timed out") && ended.error.contains("staging"),
        "{}",
        ended.error
    );
    assert!(ended.started_at.is_none(), "{ended:#?}");
    audited(&bot, "deploybot", "gate.expired", "promotion timed out");
}

/// A person's deploy (API and comment) of a commit not yet deployed to staging is refused,
/// naming staging; once it succeeded there, the same deploys are accepted and run.
fn a_deploy_of_a_commit_not_on_staging_is_refused_until_it_succeeded_there(db: TestDb) {
    let bot = start(db, "promote_from = \"staging\"");
    let refused = expect(&deploy(&bot, ALPHA, "web-production", PR_SHA), 409);
    assert_eq!(refused["error"]["code"], "promotion_order", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("deploy {} to staging first", short(PR_SHA))),
        "{message}"
    );
    say(&bot, 42, "alice", "/deploy production");
    reply_with(
        &bot,
        42,
        &[
            "Could not deploy `production`",
            &format!("deploy {} to staging first", short(PR_SHA)),
        ],
    );
    assert!(
        bot.deployments("web-production").is_empty(),
        "a refused deploy was queued"
    );
    audited(&bot, "token:alpha", "refused", "to staging first");
    audited(&bot, "@alice", "refused", "to staging first");

    let staged = expect(&deploy(&bot, BRAVO, "web-staging", PR_SHA), 201);
    let staged = bot.wait_final(staged["id"].as_str().unwrap());
    assert_eq!(staged.state, DeployState::Succeeded, "{staged:#?}");

    let accepted = expect(&deploy(&bot, ALPHA, "web-production", PR_SHA), 201);
    assert!(accepted["waiting_for"].is_null(), "{accepted}");
    let done = bot.wait_final(accepted["id"].as_str().unwrap());
    assert_eq!(done.state, DeployState::Succeeded, "{done:#?}");
    say(&bot, 42, "alice", "/deploy production");
    let second = bot.wait_final(&nth_production(&bot, 2).id.to_string());
    assert_eq!(second.state, DeployState::Succeeded, "{second:#?}");
    assert_eq!(second.initiator, "alice", "{second:#?}");
    expect(&deploy(&bot, ALPHA, "web-production", OTHER_SHA), 409);
}

/// An API deploy needing an approval waits for it; its own token's approval is refused
/// (and audited), another deploy token's lets it run.
fn an_api_deploy_runs_once_another_token_approves_it(db: TestDb) {
    let bot = start(db, "approvals = 1");
    let queued = expect(&deploy(&bot, ALPHA, "web-production", SHA), 201);
    let id = queued["id"].as_str().unwrap().to_string();
    assert_eq!(queued["state"], "pending", "{queued}");
    assert_eq!(queued["waiting_for"]["kind"], "approval", "{queued}");
    let approval = &queued["waiting_for"]["approval"];
    assert_eq!(approval["requested_by"], "token:alpha", "{queued}");
    assert_eq!(approval["needed"], 1, "{queued}");
    assert_eq!(approval["approved_by"], json!([]), "{queued}");
    stays_waiting(&bot, &id, WaitKind::Approval, Duration::from_secs(2));

    let own = expect(&approve(&bot, ALPHA, &id), 403);
    assert_eq!(own["error"]["code"], "not_approved", "{own}");
    stays_waiting(&bot, &id, WaitKind::Approval, Duration::from_millis(600));
    audited(&bot, "token:alpha", "refused", "cannot approve it");

    let approved = expect(&approve(&bot, BRAVO, &id), 200);
    assert_eq!(approved["id"], id.as_str(), "{approved}");
    assert!(approved["waiting_for"].is_null(), "{approved}");
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:#?}");
    let event = audited(&bot, "token:bravo", "approve", &id);
    assert_eq!(event["deployment_id"], id.as_str(), "{event}");
    audited(&bot, "token:alpha", "deploy", "waiting for approval");
    let late = expect(&approve(&bot, BRAVO, &id), 403);
    assert_eq!(late["error"]["code"], "not_approved", "{late}");
}

/// alice's `/deploy` waits for approval; her own `/approve` gets a refusal reply; bob's
/// `/approve` lets it run.
fn a_comment_deploy_runs_once_another_deployer_approves_it(db: TestDb) {
    let bot = start(db, "approvals = 1");
    say(&bot, 42, "alice", "/deploy production");
    let id = nth_production(&bot, 1).id.to_string();
    let waiting = wait_waiting(&bot, &id, WaitKind::Approval, |_| true);
    let approval = waiting.waiting_for.unwrap().approval.unwrap();
    assert_eq!(approval.requested_by, "@alice");
    // carol's deploy from another pull request, queued after alice's, waits too.
    bot.open_pull(43, OTHER_SHA, false, "open");
    say(&bot, 43, "carol", "/deploy production");
    let carols = nth_production(&bot, 2).id.to_string();
    wait_waiting(&bot, &carols, WaitKind::Approval, |_| true);

    say(&bot, 42, "alice", "/approve production");
    reply_with(
        &bot,
        42,
        &["@alice cannot approve on `production`", "another deployer"],
    );
    stays_waiting(&bot, &id, WaitKind::Approval, Duration::from_secs(1));
    audited(&bot, "@alice", "refused", "cannot approve it");

    // bob's approval on #42 is for alice's deployment, not the newer one of #43.
    say(&bot, 42, "bob", "/approve production");
    reply_with(
        &bot,
        42,
        &["Approved deployment", &id, "@bob", "it runs now"],
    );
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:#?}");
    audited(&bot, "@bob", "approve", &id);
    stays_waiting(&bot, &carols, WaitKind::Approval, Duration::from_secs(1));
}

/// Nobody approves within `approval_timeout`: the deployment ends cancelled, never run,
/// and the audit trail says why.
fn an_approval_not_given_in_time_cancels_the_deployment(db: TestDb) {
    let bot = start(db, "approvals = 1\napproval_timeout = \"2s\"");
    let queued = expect(&deploy(&bot, ALPHA, "web-production", SHA), 201);
    let id = queued["id"].as_str().unwrap();
    assert_eq!(queued["waiting_for"]["kind"], "approval", "{queued}");
    let ended = bot.wait_final(id);
    assert_eq!(ended.state, DeployState::Cancelled, "{ended:#?}");
    assert!(ended.started_at.is_none(), "{ended:#?}");
    let json = shown(&bot, id);
    assert_eq!(json["state"], "cancelled", "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("approval expired"),
        "{json}"
    );
    assert!(json["waiting_for"].is_null(), "{json}");
    audited(&bot, "deploybot", "gate.expired", "approval expired");
    let late = expect(&approve(&bot, BRAVO, id), 403);
    assert_eq!(late["error"]["code"], "not_approved", "{late}");
}

/// A deploy waits while a required check runs (a check run and a commit status), runs
/// once both are green; a failed required check ends another deploy failed, naming it.
fn required_checks_hold_a_deploy_until_green_and_a_failure_ends_it(db: TestDb) {
    let bot = start(db, "required_checks = [\"ci/test\", \"ci/lint\"]");
    let repo = "acme/web";
    bot.fake
        .set_check_run(repo, SHA, "ci/test", "in_progress", None);
    bot.fake.set_commit_status(repo, SHA, "ci/lint", "success");
    let queued = expect(&deploy(&bot, ALPHA, "web-production", SHA), 201);
    let id = queued["id"].as_str().unwrap().to_string();
    assert_eq!(queued["waiting_for"]["kind"], "checks", "{queued}");
    assert!(
        queued["waiting_for"]["reason"]
            .as_str()
            .unwrap()
            .contains("ci/test"),
        "{queued}"
    );
    wait_waiting(&bot, &id, WaitKind::Checks, |d| {
        d.waiting_for.as_ref().unwrap().reason == "pending: `ci/test`"
    });
    stays_waiting(&bot, &id, WaitKind::Checks, Duration::from_secs(3));
    bot.fake
        .set_check_run(repo, SHA, "ci/test", "completed", Some("success"));
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:#?}");

    bot.fake
        .set_check_run(repo, OTHER_SHA, "ci/test", "completed", Some("failure"));
    bot.fake
        .set_commit_status(repo, OTHER_SHA, "ci/lint", "success");
    let failing = expect(&deploy(&bot, ALPHA, "web-production", OTHER_SHA), 201);
    let failing = failing["id"].as_str().unwrap();
    let failed = bot.wait_final(failing);
    assert_eq!(failed.state, DeployState::Failed, "{failed:#?}");
    assert!(failed.started_at.is_none(), "{failed:#?}");
    assert!(
        failed
            .error
            .contains(&format!("checks of {} failed: `ci/test`", short(OTHER_SHA))),
        "{}",
        failed.error
    );
    let event = audited(&bot, "deploybot", "refused", "failed: `ci/test`");
    assert_eq!(event["deployment_id"], failing, "{event}");
    // Its release never ran: a rollback to it would pass the checks, so it is refused.
    let back = call(
        &bot,
        ALPHA,
        "POST",
        "/v1/instances/web-production/rollback",
        json!({"version": 2}),
    );
    let refused = expect(&back, 409);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("v2 of web-production was never live"),
        "{refused}"
    );
    assert_eq!(bot.deployments("web-production").len(), 2);

    let unnamed = call(
        &bot,
        ALPHA,
        "POST",
        "/v1/instances/web-production/deploy",
        json!({"image": "ghcr.io/acme/web:x"}),
    );
    let unnamed = expect(&unnamed, 400);
    assert!(
        unnamed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("commit_sha"),
        "{unnamed}"
    );
}

/// `/deploy` and `/noop` need an approving review of the pull request's current head by
/// someone other than its author; a review of an earlier head does not count.
fn a_comment_deploy_needs_an_approving_review_of_the_current_head(db: TestDb) {
    let bot = start(db, "required_reviews = 1");
    say(&bot, 42, "alice", "/deploy production");
    let needs = "it needs 1 approving review";
    reply_with(
        &bot,
        42,
        &["@alice cannot deploy `production`", needs, short(PR_SHA)],
    );
    say(&bot, 42, "alice", "/noop production");
    reply_with(&bot, 42, &["@alice cannot dry-run `production`", needs]);
    assert!(bot.deployments("web-production").is_empty());
    audited(&bot, "@alice", "refused", "required reviews");

    // The author's approval, one asking for changes, and one by a reader without write
    // access do not count.
    bot.fake.set_permission("acme/web", "mallory", "read");
    bot.fake
        .add_review("acme/web", 42, "mallory", "APPROVED", PR_SHA);
    bot.fake
        .add_review("acme/web", 42, "octocat", "APPROVED", PR_SHA);
    bot.fake
        .add_review("acme/web", 42, "bob", "CHANGES_REQUESTED", PR_SHA);
    say(&bot, 42, "alice", "/deploy production");
    wait_until("a third refusal", Duration::from_secs(30), || {
        replies_with(&bot, 42, needs) == 3
    });
    bot.fake
        .add_review("acme/web", 42, "bob", "APPROVED", PR_SHA);
    say(&bot, 42, "alice", "/deploy production");
    let done = bot.wait_final(&nth_production(&bot, 1).id.to_string());
    assert_eq!(done.state, DeployState::Succeeded, "{done:#?}");
    assert_eq!(done.source.pull_request, Some(42), "{done:#?}");

    bot.push_to_pull(
        42,
        OTHER_SHA,
        chrono::Utc::now() - chrono::Duration::seconds(5),
    );
    say(&bot, 42, "alice", "/deploy production");
    let refusal = reply_with(&bot, 42, &[needs, short(OTHER_SHA)]);
    assert!(refusal.contains("earlier head do not count"), "{refusal}");
    assert_eq!(bot.deployments("web-production").len(), 1);
}

/// With `require_up_to_date`, `/deploy` from a branch behind its base is refused, and
/// accepted once the branch contains the base's head.
fn a_comment_deploy_needs_a_branch_up_to_date_with_its_base(db: TestDb) {
    let bot = start(db, "require_up_to_date = true");
    bot.fake.add_branch("acme/web", "main", OTHER_SHA);
    say(&bot, 42, "alice", "/deploy production");
    reply_with(
        &bot,
        42,
        &["@alice cannot deploy `production`", "behind `main`"],
    );
    assert!(bot.deployments("web-production").is_empty());
    audited(
        &bot,
        "@alice",
        "refused",
        "does not contain the head of main",
    );

    bot.fake.mark_up_to_date("acme/web", PR_SHA, OTHER_SHA);
    say(&bot, 42, "alice", "/deploy production");
    let done = bot.wait_final(&nth_production(&bot, 1).id.to_string());
    assert_eq!(done.state, DeployState::Succeeded, "{done:#?}");
}

/// `deployers = ["@acme/sre"]`: carol, on the team, deploys; dave, not on it, is refused
/// with who may deploy, and the refusal is audited.
fn deployers_named_by_team_are_its_members(db: TestDb) {
    let bot = start(db, "deployers = [\"@acme/sre\"]");
    bot.fake.add_team_member("acme", "sre", "carol");
    say(&bot, 42, "dave", "/deploy production");
    reply_with(
        &bot,
        42,
        &[
            "@dave cannot deploy `production`",
            "only its deployers may",
            "`@acme/sre`",
        ],
    );
    assert!(bot.deployments("web-production").is_empty());
    audited(&bot, "@dave", "refused", "not a deployer");

    say(&bot, 42, "carol", "/deploy production");
    let done = bot.wait_final(&nth_production(&bot, 1).id.to_string());
    assert_eq!(done.state, DeployState::Succeeded, "{done:#?}");
    assert_eq!(done.initiator, "carol", "{done:#?}");
    audited(&bot, "@carol", "deploy", "web-production");

    // A deployer's deploy from a closed pull request is refused, and that is recorded.
    bot.open_pull(45, OTHER_SHA, false, "closed");
    say(&bot, 45, "carol", "/deploy production");
    reply_with(&bot, 45, &["Pull request #45 is closed"]);
    audited(&bot, "@carol", "refused", "refused on #45");
    assert_eq!(bot.deployments("web-production").len(), 1);
}

both_backends_owned!(
    a_tag_reaches_production_after_it_succeeded_on_staging,
    a_tag_staging_never_deployed_times_out_waiting_for_promotion,
    a_deploy_of_a_commit_not_on_staging_is_refused_until_it_succeeded_there,
    an_api_deploy_runs_once_another_token_approves_it,
    a_comment_deploy_runs_once_another_deployer_approves_it,
    an_approval_not_given_in_time_cancels_the_deployment,
    required_checks_hold_a_deploy_until_green_and_a_failure_ends_it,
    a_comment_deploy_needs_an_approving_review_of_the_current_head,
    a_comment_deploy_needs_a_branch_up_to_date_with_its_base,
    deployers_named_by_team_are_its_members,
);
