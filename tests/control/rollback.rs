//! Rollbacks end to end, through the real server, the fake GitHub and the `deploybot` CLI
//! on both databases: the reason given with `/rollback --reason`, `POST …/rollback` or
//! `deploybot rollback --reason` is on the deployment, its GitHub Deployment and in the
//! audit trail; a freeze refuses a rollback unless a deployer forces it; a rollback never
//! waits for required checks or approvals, only for `rollback_approvals`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use deploybot::deploy::{DeployKind, DeployState, Deployment, WaitKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bot::{Bot, PR_SHA, SHA, wait_until};
use crate::both_backends_owned;
use crate::common::{TestDb, http};

const ALPHA: &str = "rollback-alpha-token-71c2e4";
const BRAVO: &str = "rollback-bravo-token-0f9a3d";
const CHIEF: &str = "rollback-chief-token-e58b21";

/// The head pull request #42 moves to before its second deploy.
const NEXT_SHA: &str = "5555555555555555555555555555555555555555";

/// People who comment in these tests; every other comment is the bot's.
const PEOPLE: [&str; 3] = ["alice", "carol", "octocat"];

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
/// alice and carol may write, and pull request #42 (by octocat) is open at `PR_SHA`.
fn start(db: TestDb, production: &str) -> Bot {
    let bot = Bot::start_with(db, "echo deployed", &tokens(), false, production);
    for user in ["alice", "carol"] {
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

const ROLLBACK: &str = "/v1/instances/web-production/rollback";

/// `token` deploys `commit` to web-production through the API; the created deployment.
fn deploy(bot: &Bot, token: &str, commit: &str, force: bool) -> Value {
    let body = json!({
        "image": format!("ghcr.io/acme/web:{commit}"),
        "commit_sha": commit,
        "force": force,
    });
    let path = "/v1/instances/web-production/deploy";
    expect(&call(bot, token, "POST", path, body), 201)
}

fn id_of(created: &Value) -> String {
    created["id"].as_str().unwrap().to_string()
}

#[track_caller]
fn succeeded(bot: &Bot, id: &str) -> Deployment {
    let done = bot.wait_final(id);
    assert_eq!(done.state, DeployState::Succeeded, "{done:#?}");
    done
}

/// The audit event of `actor` doing `action` whose detail holds `needle`.
#[track_caller]
fn audited(bot: &Bot, actor: &str, action: &str, needle: &str) -> Value {
    let path = "/v1/audit?limit=100";
    let page = expect(&call(bot, CHIEF, "GET", path, Value::Null), 200);
    let events = page["items"].as_array().unwrap().clone();
    events
        .into_iter()
        .find(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["detail"].as_str().unwrap_or("").contains(needle)
        })
        .unwrap_or_else(|| panic!("no {action:?} by {actor} with {needle:?}: {page:#}"))
}

/// Waits until the deployment's GitHub Deployment has a status in `state`; its
/// description and the states of its statuses.
fn on_github(bot: &Bot, id: &str, state: &str) -> (String, Vec<String>) {
    let mut found = None;
    wait_until(
        &format!("{id}'s GitHub Deployment to be {state}"),
        Duration::from_secs(30),
        || {
            found = bot.fake.deployments("acme/web").into_iter().find(|d| {
                d.payload["deploybot"]["deployment_id"] == id
                    && d.states().iter().any(|s| s == state)
            });
            found.is_some()
        },
    );
    let d = found.unwrap();
    (d.description.clone().unwrap_or_default(), d.states())
}

/// `user` comments `body` on #42 (a fresh delivery).
fn say(bot: &Bot, user: &str, body: &str) {
    let delivery = format!("c-{}", uuid::Uuid::now_v7().simple());
    let (_, status, answer) = bot.comment(42, user, body, &delivery);
    assert!((200..300).contains(&status), "{status} {answer}");
}

/// Waits for a reply of the bot on #42 holding every one of `parts`, and returns it.
fn reply_with(bot: &Bot, parts: &[&str]) -> String {
    let replies = || -> Vec<String> {
        bot.fake
            .comments("acme/web", 42)
            .into_iter()
            .filter(|c| !PEOPLE.contains(&c.user.as_str()))
            .map(|c| c.body)
            .collect()
    };
    let mut found = None;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            &format!("a reply with {parts:?}"),
            Duration::from_secs(30),
            || {
                found = replies()
                    .into_iter()
                    .find(|r| parts.iter().all(|p| r.contains(p)));
                found.is_some()
            },
        )
    }));
    if waited.is_err() {
        panic!("no reply with {parts:?}; the replies: {:#?}", replies());
    }
    found.unwrap()
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

/// v1 (#42's head) and then v2 (its next head) deployed to production by `user`'s comments
/// (`extra` appended to each `/deploy`).
fn two_releases_by_comment(bot: &Bot, user: &str, extra: &str) {
    say(bot, user, &format!("/deploy production{extra}"));
    succeeded(bot, &nth_production(bot, 1).id.to_string());
    bot.push_to_pull(42, NEXT_SHA, Utc::now() - chrono::Duration::seconds(30));
    say(bot, user, &format!("/deploy production{extra}"));
    succeeded(bot, &nth_production(bot, 2).id.to_string());
}

/// `/rollback production --reason bad error rate`: v1 is back at once, and the reason is
/// in the deployment's trigger, on its GitHub Deployment and in the audit trail.
fn a_comment_rollback_carries_its_reason(db: TestDb) {
    let bot = start(db, "");
    two_releases_by_comment(&bot, "alice", "");

    say(
        &bot,
        "alice",
        "/rollback production --reason bad error rate",
    );
    let rollback = nth_production(&bot, 3);
    assert_eq!(rollback.kind, DeployKind::Rollback);
    let id = rollback.id.to_string();
    let done = succeeded(&bot, &id);
    assert!(done.source.trigger.contains("bad error rate"), "{done:#?}");
    reply_with(&bot, &["Rollback of **production** to **v1** succeeded"]);
    let (description, states) = on_github(&bot, &id, "success");
    assert!(description.contains("bad error rate"), "{description}");
    assert!(description.contains("v1"), "{description}");
    assert_eq!(states.last().map(String::as_str), Some("success"));
    let event = audited(&bot, "@alice", "rollback", "bad error rate");
    assert_eq!(event["deployment_id"], id.as_str(), "{event}");
}

/// During a freeze a rollback is refused with the freeze's reason, by comment and through
/// the API; a deployer's `/rollback --force` and an admin token's forced rollback pass,
/// and both forces are audited.
fn a_freeze_refuses_a_rollback_unless_forced(db: TestDb) {
    let now = Utc::now();
    let settings = format!(
        "deployers = [\"carol\"]\n\n[[instances.freeze]]\nreason = \"launch week\"\nstart = \"{}\"\nend = \"{}\"\n",
        (now - chrono::Duration::hours(1)).to_rfc3339(),
        (now + chrono::Duration::days(1)).to_rfc3339()
    );
    let bot = start(db, &settings);
    two_releases_by_comment(&bot, "carol", " --force");

    say(
        &bot,
        "carol",
        "/rollback production --reason bad error rate",
    );
    let refusal = reply_with(&bot, &["@carol cannot roll back `production`"]);
    assert!(refusal.contains("launch week"), "{refusal}");
    let refused = call(&bot, CHIEF, "POST", ROLLBACK, json!({"reason": "api"}));
    assert_eq!(expect(&refused, 409)["error"]["code"], "frozen");
    assert_eq!(
        bot.deployments("web-production").len(),
        2,
        "a refused rollback ran"
    );

    say(
        &bot,
        "carol",
        "/rollback production --force --reason bad error rate",
    );
    let forced = nth_production(&bot, 3);
    assert_eq!(forced.kind, DeployKind::Rollback);
    succeeded(&bot, &forced.id.to_string());
    audited(&bot, "@carol", "force", "launch week");

    let body = json!({"version": 2, "force": true, "reason": "forward again"});
    let api = expect(&call(&bot, CHIEF, "POST", ROLLBACK, body), 201);
    assert_eq!(api["kind"], "rollback", "{api}");
    let done = succeeded(&bot, &id_of(&api));
    assert!(done.source.trigger.contains("forward again"), "{done:#?}");
    let event = audited(&bot, "token:chief", "force", "launch week");
    assert_eq!(event["deployment_id"], api["id"], "{event}");
}

/// With required checks and one approval, deploys wait; a rollback through the API (with
/// a reason) and one by `deploybot rollback --reason` run at once, unapproved, even while
/// the commit they return to has a check running again.
fn a_rollback_waits_for_neither_checks_nor_approvals(db: TestDb) {
    let bot = start(db, "required_checks = [\"ci/test\"]\napprovals = 1");
    for commit in [SHA, NEXT_SHA] {
        bot.fake
            .set_commit_status("acme/web", commit, "ci/test", "success");
        let queued = deploy(&bot, ALPHA, commit, false);
        // Its check passed: it waits for the approval only.
        let id = id_of(&queued);
        wait_until(
            "the deploy to wait for approval",
            Duration::from_secs(30),
            || bot.deployment(&id).waiting_for.map(|w| w.kind) == Some(WaitKind::Approval),
        );
        let path = format!("/v1/deployments/{}/approve", id_of(&queued));
        expect(&call(&bot, BRAVO, "POST", &path, Value::Null), 200);
        succeeded(&bot, &id_of(&queued));
    }
    // A deploy of v1's commit now would wait for its check.
    bot.fake
        .set_commit_status("acme/web", SHA, "ci/test", "pending");

    let body = json!({"reason": "p99 latency doubled"});
    let back = expect(&call(&bot, ALPHA, "POST", ROLLBACK, body), 201);
    assert!(back["waiting_for"].is_null(), "{back}");
    let id = id_of(&back);
    let done = succeeded(&bot, &id);
    assert_eq!(done.kind, DeployKind::Rollback);
    assert!(
        done.source.trigger.contains("p99 latency doubled"),
        "{done:#?}"
    );
    let event = audited(&bot, "token:alpha", "rollback", "p99 latency doubled");
    assert_eq!(event["deployment_id"], id.as_str(), "{event}");
    let (description, _) = on_github(&bot, &id, "success");
    assert!(description.contains("p99 latency doubled"), "{description}");

    let cli = cli(
        &bot,
        &["rollback", "web-production", "--version", "2"],
        "from the CLI",
    );
    let created: Value = serde_json::from_str(cli.trim()).unwrap_or_else(|e| panic!("{e}: {cli}"));
    assert!(created["waiting_for"].is_null(), "{created}");
    let done = succeeded(&bot, &id_of(&created));
    assert!(done.source.trigger.contains("from the CLI"), "{done:#?}");
    audited(&bot, "token:alpha", "rollback", "from the CLI");
}

/// `deploybot ARGS --reason REASON --json` as alpha against the bot: what it printed.
fn cli(bot: &Bot, args: &[&str], reason: &str) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(args)
        .args(["--reason", reason, "--json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("DEPLOYBOT_URL", format!("http://127.0.0.1:{}", bot.port))
        .env("DEPLOYBOT_TOKEN", ALPHA)
        .env("DEPLOYBOT_LOG", "warn")
        .current_dir(home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`deploybot {}` did not end within 60 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "`deploybot {}` failed: {stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `rollback_approvals = 1`: deploys run at once, a rollback waits for another deploy
/// token's approval and then runs.
fn rollback_approvals_hold_a_rollback_until_approved(db: TestDb) {
    let bot = start(db, "rollback_approvals = 1");
    for commit in [SHA, NEXT_SHA] {
        let queued = deploy(&bot, ALPHA, commit, false);
        assert!(queued["waiting_for"].is_null(), "{queued}");
        succeeded(&bot, &id_of(&queued));
    }
    let back = expect(&call(&bot, ALPHA, "POST", ROLLBACK, json!({})), 201);
    assert_eq!(back["waiting_for"]["kind"], "approval", "{back}");
    let id = id_of(&back);
    wait_until("the rollback to wait", Duration::from_secs(30), || {
        let d = bot.deployment(&id);
        d.state == DeployState::Pending
            && d.waiting_for.as_ref().map(|w| w.kind) == Some(WaitKind::Approval)
    });
    std::thread::sleep(Duration::from_secs(1));
    let d = bot.deployment(&id);
    assert_eq!(d.state, DeployState::Pending, "{d:#?}");
    assert!(d.started_at.is_none(), "an unapproved rollback ran: {d:#?}");

    let path = format!("/v1/deployments/{id}/approve");
    expect(&call(&bot, BRAVO, "POST", &path, Value::Null), 200);
    succeeded(&bot, &id);
}

/// Three releases, then two rollbacks to `previous`: the second goes on back to v1; it
/// never ships v3 again, the release the first rollback removed.
fn a_second_rollback_goes_further_back_not_to_the_release_the_first_removed(db: TestDb) {
    let bot = start(db, "");
    for commit in ["1111111", "2222222", "3333333"] {
        succeeded(&bot, &id_of(&deploy(&bot, ALPHA, commit, false)));
    }
    let back = |bot: &Bot| {
        let created = expect(&call(bot, ALPHA, "POST", ROLLBACK, json!({})), 201);
        succeeded(bot, &id_of(&created))
    };
    assert_eq!(back(&bot).image, "ghcr.io/acme/web:2222222");
    assert_eq!(back(&bot).image, "ghcr.io/acme/web:1111111");
}

/// A comment's rollback reason with a terminal escape or a bidi override is refused with a
/// reply, and nothing rolls back.
fn a_rollback_reason_with_control_characters_is_refused(db: TestDb) {
    let bot = start(db, "");
    two_releases_by_comment(&bot, "alice", "");
    say(&bot, "alice", "/rollback production --reason x\u{1b}[2Jy");
    say(&bot, "alice", "/rollback production --reason \u{202e}evil");
    wait_until("two refusals", Duration::from_secs(30), || {
        let refusals = bot.fake.comments("acme/web", 42).into_iter().filter(|c| {
            !PEOPLE.contains(&c.user.as_str()) && c.body.contains("control or invisible")
        });
        refusals.count() == 2
    });
    assert_eq!(bot.deployments("web-production").len(), 2);
    assert!(
        bot.deployments("web-production")
            .iter()
            .all(|d| d.kind == DeployKind::Deploy)
    );
}

both_backends_owned!(
    a_second_rollback_goes_further_back_not_to_the_release_the_first_removed,
    a_rollback_reason_with_control_characters_is_refused,
    a_comment_rollback_carries_its_reason,
    a_freeze_refuses_a_rollback_unless_forced,
    a_rollback_waits_for_neither_checks_nor_approvals,
    rollback_approvals_hold_a_rollback_until_approved,
);
