//! GitHub end to end, through the real `deploybot serve` binary and a fake GitHub:
//! verified webhooks, exactly-once deliveries, events turned into deployments, comment
//! commands, and every deployment reported back — in order, retried, never lost.

#[allow(dead_code)]
mod bot;
mod commands;
#[path = "../common/mod.rs"]
mod common;
mod prune;
mod reasons;
mod upgrade;

use std::time::Duration;

use bot::{Bot, PR_SHA, SECRET, SHA, fixture, pr_comment, push, wait_until};
use common::TestDb;
use common::fake_github::FakeDeployment;
use deploybot::deploy::{DeployState, ServiceStore, Store};
use deploybot::github::outbox::OutboxStore;
use deploybot::github::webhook::signature;
use serde_json::Value;

const OK_SCRIPT: &str = "echo \"phase=$DEPLOY_PHASE slot=$DEPLOY_SLOT image=$DEPLOY_IMAGE\"";

fn tag_push(tag: &str, commit: &str) -> Value {
    let mut v = fixture("push_tag");
    v["ref"] = format!("refs/tags/{tag}").into();
    v["after"] = commit.into();
    v["head_commit"]["id"] = commit.into();
    v
}

fn create_tag(tag: &str) -> Value {
    let mut v = fixture("create_tag");
    v["ref"] = tag.into();
    v
}

/// GitHub's only deployment of `environment`.
fn github_deployment(bot: &Bot, environment: &str) -> FakeDeployment {
    let mut deployments: Vec<_> = bot
        .fake
        .deployments("acme/web")
        .into_iter()
        .filter(|d| d.environment == environment)
        .collect();
    assert_eq!(deployments.len(), 1, "GitHub deployments: {deployments:?}");
    deployments.remove(0)
}

/// The statuses GitHub has for the only deployment of `environment`.
fn github_states(bot: &Bot, environment: &str) -> Vec<String> {
    github_deployment(bot, environment).states()
}

fn wait_for_github_state(bot: &Bot, environment: &str, state: &str) {
    wait_until(
        &format!("a {state} status on GitHub"),
        Duration::from_secs(60),
        || {
            bot.fake.deployments("acme/web").iter().any(|d| {
                d.environment == environment && d.states().last().map(String::as_str) == Some(state)
            })
        },
    );
}

// ---------------------------------------------------------------------------------------
// Verification and exactly-once
// ---------------------------------------------------------------------------------------

fn signatures_are_checked_before_anything_else(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    let body = serde_json::to_vec(&push("refs/heads/main", SHA, "octocat")).unwrap();
    let good = signature::sign(SECRET.as_bytes(), &body);
    fn headers(sig: &str) -> Vec<(&'static str, &str)> {
        vec![
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-1"),
            ("X-Hub-Signature-256", sig),
        ]
    }

    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let (status, answer) = bot.post("/webhooks/github", &headers(&good), &tampered);
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "bad_signature");
    let wrong = signature::sign(b"not the secret", &body);
    assert_eq!(bot.post("/webhooks/github", &headers(&wrong), &body).0, 401);
    let (status, answer) = bot.post(
        "/webhooks/github",
        &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d-1")],
        &body,
    );
    assert_eq!(status, 401);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("X-Hub-Signature-256"), "{message}");
    assert!(
        !message.contains(&good[7..]),
        "the expected value must not leak"
    );
    let sha1 = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "d-1"),
        ("X-Hub-Signature", "sha1=0000"),
    ];
    assert_eq!(bot.post("/webhooks/github", &sha1, &body).0, 401);
    assert_eq!(
        bot.post(
            "/webhooks/github",
            &headers(&good.to_uppercase().replace("SHA256=", "sha256=")),
            &body
        )
        .0,
        202
    );
    assert!(
        bot.deployments("web-staging").len() == 1,
        "nothing refused was stored; the uppercase one was"
    );

    // The previous secret still works during rotation.
    let mut second = push("refs/heads/main", PR_SHA, "octocat");
    second["after"] = PR_SHA.into();
    let body2 = serde_json::to_vec(&second).unwrap();
    let rotated = signature::sign(b"the-previous-secret", &body2);
    let (status, _) = bot.post(
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-2"),
            ("X-Hub-Signature-256", &rotated),
        ],
        &body2,
    );
    assert_eq!(status, 202);

    // Missing event or delivery headers are bad requests (after verification).
    let (status, answer) = bot.post(
        "/webhooks/github",
        &[("X-GitHub-Delivery", "d-3"), ("X-Hub-Signature-256", &good)],
        &body,
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-GitHub-Event")
    );
    let (status, _) = bot.post(
        "/webhooks/github",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &good)],
        &body,
    );
    assert_eq!(status, 400);
    // A signed empty body is not a push.
    let empty = signature::sign(SECRET.as_bytes(), b"");
    let (status, answer) = bot.post(
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-4"),
            ("X-Hub-Signature-256", &empty),
        ],
        b"",
    );
    assert_eq!(status, 400, "{answer}");
    // Past webhook_max_bytes (64 KiB here): 413 before the body is even verified.
    let big = vec![b' '; 70_000];
    let big_sig = signature::sign(SECRET.as_bytes(), &big);
    let (status, answer) = bot.post("/webhooks/github", &headers(&big_sig), &big);
    assert_eq!(status, 413, "{answer}");
    // The server is still healthy.
    assert_eq!(bot.send("ping", &fixture("ping"), "d-5").0, 200);
}

fn a_delivery_counts_once_even_across_restarts(db: TestDb) {
    let mut bot = Bot::start(db, OK_SCRIPT, "");
    let event = push("refs/heads/main", SHA, "octocat");
    let (status, first) = bot.send("push", &event, "delivery-1");
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["deployments"].as_array().unwrap().len(), 1);
    let (status, again) = bot.send("push", &event, "delivery-1");
    assert_eq!((status, again["status"].as_str()), (200, Some("duplicate")));
    bot.kill9_and_restart();
    let (status, after_restart) = bot.send("push", &event, "delivery-1");
    assert_eq!(
        (status, after_restart["status"].as_str()),
        (200, Some("duplicate"))
    );
    assert_eq!(bot.deployments("web-staging").len(), 1);

    // A redelivery under a new id of the same push is the same trigger: still one deployment.
    let (status, redelivered) = bot.send("push", &event, "delivery-2");
    assert_eq!(status, 202);
    assert_eq!(redelivered["status"], "already deployed", "{redelivered}");
    assert_eq!(bot.deployments("web-staging").len(), 1);
}

fn ping_and_ignored_events(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    let (status, pong) = bot.send("ping", &fixture("ping"), "p-1");
    assert_eq!(status, 200);
    assert_eq!(pong["status"], "pong");
    assert!(!pong["zen"].as_str().unwrap().is_empty());

    let cases = [
        (
            "push",
            push("refs/heads/feature", SHA, "octocat"),
            "no instance",
        ),
        ("push", fixture("push_delete"), "deleted"),
        ("issues", fixture("ping"), "does not act on issues"),
        (
            "issue_comment",
            fixture("issue_comment_edited"),
            "only new comments",
        ),
        (
            "issue_comment",
            fixture("issue_comment_deleted"),
            "only new comments",
        ),
        ("issue_comment", fixture("issue_comment_bot"), "bot"),
    ];
    for (i, (event, body, reason)) in cases.into_iter().enumerate() {
        let (status, answer) = bot.send(event, &body, &format!("i-{i}"));
        assert_eq!(status, 202, "{event}: {answer}");
        assert_eq!(answer["status"], "ignored", "{event}: {answer}");
        assert!(
            answer["reason"].as_str().unwrap().contains(reason),
            "{event}: {answer}"
        );
    }
    assert!(bot.deployments("web-staging").is_empty());
    assert!(bot.deployments("web-production").is_empty());
}

// ---------------------------------------------------------------------------------------
// Events to deployments
// ---------------------------------------------------------------------------------------

fn push_to_main_deploys_the_pushed_commit(db: TestDb) {
    // A second instance deploys pushes to main too, but its image needs a tag: the answer
    // (GitHub's delivery log) says so instead of leaving it out silently.
    let bot = Bot::start(
        db,
        OK_SCRIPT,
        r#"
[[instances]]
name = "web-tagged"
repo = "acme/web"
environment = "tagged"
image = "ghcr.io/acme/web:{tag}"
on_push = ["main"]

[instances.provider]
kind = "noop"
"#,
    );
    let (status, answer) = bot.send("push", &push("refs/heads/main", SHA, "octocat"), "push-1");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["deployments"].as_array().unwrap().len(),
        1,
        "{answer}"
    );
    assert_eq!(answer["refused"][0]["instance"], "web-tagged", "{answer}");
    let reason = answer["refused"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("{tag}") && reason.contains("does not provide"),
        "{reason}"
    );
    assert!(bot.deployments("web-tagged").is_empty());
    let id = answer["deployments"][0].as_str().unwrap();
    let d = bot.wait_final(id);
    assert_eq!(d.state, DeployState::Succeeded, "{}", d.error);
    assert_eq!(d.image, "ghcr.io/acme/web:a10867b");
    assert_eq!(d.initiator, "octocat");
    assert_eq!(d.source.trigger, "push to main by @octocat (a10867b)");
    let release = bot.db.store.get_release("acme", d.release_id).unwrap();
    assert_eq!(release.commit_sha, SHA);
    assert_eq!(release.notes, "push to main by @octocat (a10867b)");

    // The same push again (another delivery, as from a second webhook): deployed already.
    let (_, answer) = bot.send("push", &push("refs/heads/main", SHA, "octocat"), "push-2");
    assert_eq!(answer["status"], "already deployed", "{answer}");
    // main moves on, then is force-pushed back: the earlier commit deploys again.
    let mut moved = push("refs/heads/main", PR_SHA, "octocat");
    moved["before"] = SHA.into();
    let (_, answer) = bot.send("push", &moved, "push-3");
    let next = bot.wait_final(answer["deployments"][0].as_str().unwrap());
    assert_eq!(next.state, DeployState::Succeeded, "{}", next.error);
    let mut reverted = push("refs/heads/main", SHA, "octocat");
    reverted["before"] = PR_SHA.into();
    reverted["forced"] = true.into();
    let (_, answer) = bot.send("push", &reverted, "push-4");
    assert_eq!(answer["status"], "accepted", "{answer}");
    let back = bot.wait_final(answer["deployments"][0].as_str().unwrap());
    assert_eq!(back.state, DeployState::Succeeded, "{}", back.error);
    assert_eq!(back.image, "ghcr.io/acme/web:a10867b");
    // GitHub's redelivery of the revert, under another delivery id: nothing new.
    let (_, answer) = bot.send("push", &reverted, "push-5");
    assert_eq!(answer["status"], "already deployed", "{answer}");
    assert_eq!(bot.deployments("web-staging").len(), 3);
}

fn a_tag_push_and_its_create_event_deploy_once(db: TestDb) {
    let mut bot = Bot::start(db, OK_SCRIPT, "");
    bot.fake.add_tag("acme/web", "v1.2.0", SHA, true);
    let (status, pushed) = bot.send("push", &tag_push("v1.2.0", SHA), "t-1");
    assert_eq!(status, 202, "{pushed}");
    assert_eq!(pushed["deployments"].as_array().unwrap().len(), 1);
    bot.kill9_and_restart();
    let (status, created) = bot.send("create", &create_tag("v1.2.0"), "t-2");
    assert_eq!(status, 202, "{created}");
    let id = pushed["deployments"][0].as_str().unwrap();
    bot.wait_final(id);
    // The create job resolves the tag (annotated: dereferenced to the commit) and finds it deployed.
    wait_until("the tag job", Duration::from_secs(30), || {
        bot.fake
            .calls()
            .iter()
            .any(|c| c.path.starts_with("/repos/acme/web/git/tags/"))
    });
    std::thread::sleep(Duration::from_millis(500));
    let deployments = bot.deployments("web-production");
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    assert_eq!(deployments[0].image, format!("ghcr.io/acme/web:{SHA}"));
}

fn a_create_event_alone_resolves_the_tag_and_deploys(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    bot.fake.add_tag("acme/web", "v2.0.0", PR_SHA, true);
    let (status, answer) = bot.send("create", &create_tag("v2.0.0"), "c-1");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["jobs"], 1);
    wait_until("the tag's deployment", Duration::from_secs(30), || {
        bot.deployments("web-production").len() == 1
    });
    let d = &bot.deployments("web-production")[0];
    let release = bot.db.store.get_release("acme", d.release_id).unwrap();
    assert_eq!(
        release.commit_sha, PR_SHA,
        "the commit, not the annotated tag object"
    );
    assert_eq!(d.source.trigger, "tag v2.0.0 by @Codertocat (2f3d6a7)");
}

// ---------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------

/// With `required_contexts`, a commit deploys only once GitHub accepts its Deployment: a
/// red (or missing) check fails the deployment before its command runs; green checks
/// deploy.
fn required_contexts_gate_the_deployment(db: TestDb) {
    let bot = Bot::start_configured(
        db,
        "echo \"$DEPLOY_ID\" >> \"$(dirname \"$0\")/ran\"",
        r#"required_contexts = ["ci/test"]"#,
    );
    let ran = || std::fs::read_to_string(bot.dir.path().join("ran")).unwrap_or_default();
    bot.fake
        .set_commit_status("acme/web", SHA, "ci/test", "pending");
    bot.fake
        .set_commit_status("acme/web", SHA, "ci/test", "failure");
    let (_, answer) = bot.send("push", &tag_push("v1.0.0", SHA), "rc-1");
    let red = answer["deployments"][0].as_str().unwrap().to_string();
    let failed = bot.wait_final(&red);
    assert_eq!(failed.state, DeployState::Failed);
    assert!(
        failed
            .error
            .contains("GitHub refused the deployment (required_contexts)")
            && failed.error.contains("Commit status checks failed")
            && failed.error.ends_with("(ci/test is failure)"),
        "{}",
        failed.error
    );
    assert!(!ran().contains(&red), "the command ran: {}", ran());
    assert!(
        bot.fake
            .deployments("acme/web")
            .iter()
            .all(|d| d.environment != "production"),
        "GitHub created no Deployment"
    );

    // CI turns green on the next commit: that one deploys.
    bot.fake
        .set_commit_status("acme/web", PR_SHA, "ci/test", "success");
    let (_, answer) = bot.send("push", &tag_push("v1.0.1", PR_SHA), "rc-2");
    let green = answer["deployments"][0].as_str().unwrap().to_string();
    assert_eq!(bot.wait_final(&green).state, DeployState::Succeeded);
    assert_eq!(ran().lines().collect::<Vec<_>>(), vec![green.as_str()]);
    wait_for_github_state(&bot, "production", "success");
    let gh = github_deployment(&bot, "production");
    assert_eq!(gh.git_ref, PR_SHA);
    assert_eq!(gh.required_contexts, Some(vec!["ci/test".to_string()]));

    // A rollback cannot bring back the commit whose check failed.
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot.open_pull(42, PR_SHA, false, "open");
    let command = "/rollback production 1";
    let (_, status, answer) = bot.comment(42, "octocat", command, "rc-3");
    assert_eq!(status, 202, "{answer}");
    // v1 never went live (GitHub refused it), so it is no release to roll back to.
    wait_until("the rollback's refusal", Duration::from_secs(30), || {
        bot.fake
            .comments("acme/web", 42)
            .iter()
            .any(|c| c.body.contains("v1 of web-production was never live"))
    });
    assert_eq!(bot.deployments("web-production").len(), 2);
    assert_eq!(ran().lines().count(), 1, "only the green commit ran");
}

fn a_tag_push_is_mirrored_on_github(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    let (_, answer) = bot.send("push", &tag_push("v1.0.0", SHA), "m-1");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    assert_eq!(bot.wait_final(&id).state, DeployState::Succeeded);
    wait_for_github_state(&bot, "production", "success");
    let gh = github_deployment(&bot, "production");
    assert_eq!(gh.git_ref, SHA);
    assert!(!gh.auto_merge);
    assert_eq!(gh.required_contexts, Some(vec![]));
    assert_eq!(gh.payload["deploybot"]["deployment_id"], id.as_str());
    assert_eq!(gh.payload["deploybot"]["version"], 1);
    assert_eq!(
        gh.payload["deploybot"]["image"],
        format!("ghcr.io/acme/web:{SHA}")
    );
    assert!(
        gh.description
            .as_deref()
            .unwrap()
            .starts_with("v1 · tag v1.0.0"),
        "{:?}",
        gh.description
    );
    let states = gh.states();
    assert_eq!(states.first().map(String::as_str), Some("queued"));
    assert_eq!(states.get(1).map(String::as_str), Some("in_progress"));
    assert_eq!(states.last().map(String::as_str), Some("success"));
    assert!(
        states[1..states.len() - 1]
            .iter()
            .all(|s| s == "in_progress"),
        "{states:?}"
    );
    for status in &gh.statuses {
        assert_eq!(status.log_url, format!("http://bot.test/deployments/{id}"));
        assert_eq!(status.environment_url, "https://web.acme.dev");
        assert_eq!(status.environment, "production");
    }
    assert_eq!(gh.statuses.last().unwrap().auto_inactive, Some(true));
    assert_eq!(bot.deployment(&id).github_deployment_id, Some(gh.id as i64));
    // Every call carried the headers GitHub expects.
    for call in bot.fake.calls() {
        assert_eq!(
            call.accept.as_deref(),
            Some("application/vnd.github+json"),
            "{call:?}"
        );
        assert_eq!(call.api_version.as_deref(), Some("2022-11-28"));
        assert!(
            call.user_agent
                .as_deref()
                .unwrap_or_default()
                .contains("deploybot/"),
            "{call:?}"
        );
    }
}

fn failures_and_cancellations_are_reported(db: TestDb) {
    // v-fail exits 3; v-hang sleeps until cancelled.
    let script =
        "case \"$DEPLOY_IMAGE\" in *bbbbbbb*) echo boom >&2; exit 3;; *ccccccc*) sleep 600;; esac";
    let bot = Bot::start(db, script, "");
    let failing = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let (_, answer) = bot.send("push", &tag_push("v1.0.1", failing), "f-1");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    let d = bot.wait_final(&id);
    assert_eq!(d.state, DeployState::Failed);
    assert!(d.error.contains("exited with status 3"), "{}", d.error);
    wait_for_github_state(&bot, "production", "failure");
    let gh = bot
        .fake
        .deployments("acme/web")
        .into_iter()
        .find(|g| g.sha == failing)
        .unwrap();
    let last = gh.statuses.last().unwrap();
    assert!(
        last.description.contains("exited with status 3"),
        "{}",
        last.description
    );
    assert_eq!(last.auto_inactive, None);

    let hanging = "cccccccccccccccccccccccccccccccccccccccc";
    let (_, answer) = bot.send("push", &tag_push("v1.0.2", hanging), "f-2");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    wait_until(
        "the hanging deployment to run",
        Duration::from_secs(30),
        || bot.deployment(&id).state == DeployState::Running,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let catalog = deploybot::provider::catalog::ConfigCatalog::default();
        let service = deploybot::deploy::Service::new(
            std::sync::Arc::clone(&bot.db.store) as std::sync::Arc<dyn ServiceStore>,
            std::sync::Arc::new(catalog),
        );
        service
            .cancel("acme", id.parse().unwrap(), "octocat")
            .await
            .unwrap();
    });
    assert_eq!(bot.wait_final(&id).state, DeployState::Cancelled);
    wait_until(
        "an error status for the cancelled deployment",
        Duration::from_secs(30),
        || {
            bot.fake
                .deployments("acme/web")
                .iter()
                .any(|g| g.sha == hanging && g.states().last().map(String::as_str) == Some("error"))
        },
    );
}

/// With `supersede = true`, a tag pushed while an older one waits behind a running
/// deployment cancels the waiting one, and GitHub shows why; the newest still deploys.
fn a_superseded_deployment_is_reported_on_github(db: TestDb) {
    let extra = r#"
[[instances]]
name = "web-canary"
repo = "acme/web"
environment = "canary"
image = "ghcr.io/acme/web:{sha}"
strategy = "recreate"
on_tag = ["c*"]
supersede = true

[instances.provider]
kind = "command"
run = ["sleep", "2"]
"#;
    let bot = Bot::start(db, OK_SCRIPT, extra);
    let shas = ["c1".repeat(20), "c2".repeat(20), "c3".repeat(20)];
    let mut ids = Vec::new();
    for (n, sha) in shas.iter().enumerate() {
        let (status, answer) =
            bot.send("push", &tag_push(&format!("c{n}"), sha), &format!("s-{n}"));
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["deployments"][0].as_str().unwrap().to_string());
        if n == 0 {
            wait_until(
                "the first deployment to run",
                Duration::from_secs(30),
                || bot.deployment(&ids[0]).state == DeployState::Running,
            );
        }
    }
    let superseded = bot.wait_final(&ids[1]);
    assert_eq!(superseded.state, DeployState::Cancelled);
    assert_eq!(superseded.error, format!("superseded by {}", ids[2]));
    assert_eq!(bot.wait_final(&ids[2]).state, DeployState::Succeeded);
    let last_state_is = |sha: &str, state: &str| {
        bot.fake
            .deployments("acme/web")
            .iter()
            .any(|g| g.sha == sha && g.states().last().map(String::as_str) == Some(state))
    };
    wait_until(
        "the newest deployment's success status on GitHub",
        Duration::from_secs(30),
        || last_state_is(&shas[2], "success"),
    );
    wait_until(
        "the superseded deployment's error status on GitHub",
        Duration::from_secs(30),
        || last_state_is(&shas[1], "error"),
    );
    let gh = bot.fake.deployments("acme/web");
    let on_github = |sha: &str| gh.iter().find(|g| g.sha == sha).unwrap();
    let last = on_github(&shas[1]).statuses.last().unwrap().clone();
    assert!(
        last.description.contains("superseded"),
        "{}",
        last.description
    );
    // The first succeeded, then GitHub made it inactive when the newest succeeded.
    let first = on_github(&shas[0]).states();
    assert_eq!(
        &first[first.len() - 2..],
        ["success", "inactive"],
        "{first:?}"
    );
    assert_eq!(on_github(&shas[2]).states().last().unwrap(), "success");
}

fn pr_command_end_to_end(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot.open_pull(42, PR_SHA, false, "open");
    let comment = bot
        .fake
        .add_comment("acme/web", 42, "octocat", "/deploy production");
    let (status, answer) = bot.send(
        "issue_comment",
        &pr_comment(42, comment, "octocat", "Looks good.\n\n/deploy production"),
        "pr-1",
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["jobs"], 1, "the comment's job: {answer}");
    wait_until("the command's deployment", Duration::from_secs(30), || {
        bot.deployments("web-production").len() == 1
    });
    let d = bot.deployments("web-production").remove(0);
    assert_eq!(d.image, format!("ghcr.io/acme/web:{PR_SHA}"));
    assert_eq!(d.initiator, "octocat");
    assert_eq!(d.source.pull_request, Some(42));
    assert_eq!(
        bot.wait_final(&d.id.to_string()).state,
        DeployState::Succeeded
    );
    wait_for_github_state(&bot, "production", "success");
    wait_until("the reply", Duration::from_secs(30), || {
        !bot.fake
            .comments("acme/web", 42)
            .iter()
            .all(|c| c.id == comment)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(bot.fake.reactions("acme/web", comment), ["eyes", "rocket"]);
    let replies: Vec<_> = bot
        .fake
        .comments("acme/web", 42)
        .into_iter()
        .filter(|c| c.id != comment)
        .collect();
    assert_eq!(replies.len(), 1, "one reply per command: {replies:?}");
    assert!(
        replies[0]
            .body
            .contains("🚀 Deployment of **v1** to **production** succeeded"),
        "{}",
        replies[0].body
    );
    assert!(
        replies[0]
            .body
            .contains(&format!("http://bot.test/deployments/{}", d.id)),
        "{}",
        replies[0].body
    );
    assert_eq!(
        github_states(&bot, "production").last().map(String::as_str),
        Some("success")
    );
    // The permission was asked of GitHub, and the head SHA came from the API.
    let calls = bot.fake.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.path == "/repos/acme/web/collaborators/octocat/permission")
    );
    assert!(calls.iter().any(|c| c.path == "/repos/acme/web/pulls/42"));
}

/// A command's reply held up (GitHub answering 503 with Retry-After) until a later rollback
/// has marked the deployment rolled back still tells the outcome it was queued with.
fn a_delayed_reply_tells_the_outcome_it_was_queued_with(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot.open_pull(42, PR_SHA, false, "open");
    bot.fake.fail_next(
        "POST",
        "/repos/acme/web/issues/42/comments",
        1,
        503,
        &[("Retry-After", "2")],
    );
    bot.comment(42, "octocat", "/deploy production", "late-1");
    wait_until("the command's deployment", Duration::from_secs(30), || {
        bot.deployments("web-production").len() == 1
    });
    let d = bot.deployments("web-production").remove(0);
    assert_eq!(
        bot.wait_final(&d.id.to_string()).state,
        DeployState::Succeeded
    );
    // While the reply waits to be retried, a later rollback replaces the deployment.
    let replaced = bot.sql().execute(&format!(
        "UPDATE deployments SET state = 'rolled_back', error = 'rolled back by dep_later' WHERE id = '{}'",
        d.id
    ));
    assert_eq!(replaced, 1);
    assert!(
        bot.fake.comments("acme/web", 42).len() == 1,
        "the reply was sent before the rollback"
    );
    wait_until("the reply", Duration::from_secs(30), || {
        bot.fake.comments("acme/web", 42).len() == 2
    });
    let reply = bot.fake.comments("acme/web", 42).remove(1).body;
    assert!(
        reply.contains("🚀 Deployment of **v1** to **production** succeeded"),
        "{reply}"
    );
}

/// GitHub posts a reply but its answer is lost (a 502 after the write): the retry finds
/// the reply on the pull request and does not post it again — for the reply to a
/// command's deployment and for the reply refusing a command.
fn a_reply_whose_answer_was_lost_is_posted_once(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot.fake.set_permission("acme/web", "reader", "read");
    bot.open_pull(42, PR_SHA, false, "open");
    let replies = || {
        let calls = bot.fake.calls();
        let posted = calls
            .iter()
            .filter(|c| c.method == "POST" && c.path == "/repos/acme/web/issues/42/comments")
            .count();
        let looked = calls
            .iter()
            .filter(|c| {
                c.method == "GET" && c.path.starts_with("/repos/acme/web/issues/42/comments")
            })
            .count();
        (posted, looked)
    };
    let human = |body: &str| {
        bot.fake
            .comments("acme/web", 42)
            .into_iter()
            .filter(|c| c.user != "octocat" && c.user != "reader")
            .filter(|c| c.body.contains(body))
            .count()
    };

    // First a refusal, then a deployment's outcome: each reply is written by GitHub, its
    // answer lost, and the retry looks, finds it and stops.
    let cases = [
        ("reader", "needs write, maintain, admin permission"),
        (
            "octocat",
            "🚀 Deployment of **v1** to **production** succeeded",
        ),
    ];
    for (n, (user, reply)) in cases.into_iter().enumerate() {
        bot.fake
            .fail_after_applying_next("POST", "/repos/acme/web/issues/42/comments", 1, 502);
        let comment = bot
            .fake
            .add_comment("acme/web", 42, user, "/deploy production");
        let (status, answer) = bot.send(
            "issue_comment",
            &pr_comment(42, comment, user, "/deploy production"),
            &format!("lost-{n}"),
        );
        assert_eq!(status, 202, "{answer}");
        let expected = (n + 1, n + 1);
        wait_until(
            &format!("the retry of the reply to {user} to look on GitHub"),
            Duration::from_secs(30),
            || replies() == expected,
        );
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(replies(), expected, "(replies posted, lookups)");
        assert_eq!(human(reply), 1, "{reply}");
    }
}

/// Comments `body` on pull request `pr` as `user` (delivery id `delivery`) and waits until
/// one of the pull request's comments satisfies `replied`; the comment's id.
fn comment_and_wait_for_reply(
    bot: &Bot,
    (pr, user, body): (u64, &str, &str),
    delivery: &str,
    replied: impl Fn(&str) -> bool,
) -> u64 {
    let (comment, status, answer) = bot.comment(pr, user, body, delivery);
    assert_eq!(status, 202, "{answer}");
    wait_until(
        &format!("the reply to {delivery}"),
        Duration::from_secs(30),
        || {
            bot.fake
                .comments("acme/web", pr)
                .iter()
                .any(|c| replied(&c.body))
        },
    );
    comment
}

fn refused_commands_explain_why(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    bot.fake.set_permission("acme/web", "reader", "read");
    bot.fake.set_permission("acme/web", "octocat", "maintain");
    bot.open_pull(7, PR_SHA, true, "open");
    bot.open_pull(8, PR_SHA, false, "closed");
    bot.open_pull(9, PR_SHA, false, "open");
    let cases = [
        (
            9,
            "reader",
            "/deploy production",
            "needs write, maintain, admin permission",
        ),
        (7, "octocat", "/deploy production", "comes from a fork"),
        (8, "octocat", "/deploy", "is closed"),
        (9, "octocat", "/deploy moon", "`moon` is not an environment"),
        (9, "octocat", "/deploy production --strategy", "--strategy"),
    ];
    for (i, (pr, user, body, expected)) in cases.iter().enumerate() {
        let comment = bot.fake.add_comment("acme/web", *pr, user, body);
        let (status, answer) = bot.send(
            "issue_comment",
            &pr_comment(*pr, comment, user, body),
            &format!("r-{i}"),
        );
        assert_eq!(status, 202, "{answer}");
        wait_until(
            &format!("the reply to {body:?} by {user}"),
            Duration::from_secs(30),
            || {
                bot.fake
                    .comments("acme/web", *pr)
                    .iter()
                    .any(|c| c.body.contains(expected))
            },
        );
        wait_until("😕", Duration::from_secs(30), || {
            bot.fake
                .reactions("acme/web", comment)
                .contains(&"confused".to_string())
        });
        // The commenter without permission gets 😕 alone; the others 👀 first.
        let first = if *user == "reader" {
            "confused"
        } else {
            "eyes"
        };
        assert_eq!(bot.fake.reactions("acme/web", comment)[0], first);
    }
    assert!(
        bot.deployments("web-production").is_empty(),
        "nothing refused was deployed"
    );
    // /help lists the environments that take commands.
    comment_and_wait_for_reply(&bot, (9, "octocat", "/help"), "r-help", |reply| {
        reply.contains("`production`") && reply.contains("/rollback")
    });
    // A quoted command is not a command.
    let (_, answer) = bot.send(
        "issue_comment",
        &pr_comment(9, 999, "octocat", "> /deploy production"),
        "r-quote",
    );
    assert_eq!(answer["status"], "ignored");

    // A comment full of commands: the first five are taken, the rest refused in one reply,
    // and 😕 is added once.
    bot.open_pull(10, PR_SHA, false, "open");
    let spam = ["/help"; 12].join("\n");
    let comment = comment_and_wait_for_reply(&bot, (10, "octocat", &spam), "r-spam", |reply| {
        reply.contains("has 12 commands") && reply.contains("at most 5")
    });
    wait_until("😕 on it", Duration::from_secs(30), || {
        bot.fake.reactions("acme/web", comment).len() == 2
    });
    let replies: Vec<_> = bot
        .fake
        .comments("acme/web", 10)
        .into_iter()
        .filter(|c| c.user != "octocat")
        .collect();
    assert_eq!(
        replies
            .iter()
            .filter(|c| c.body.contains("/rollback"))
            .count(),
        5,
        "{replies:?}"
    );
    assert_eq!(replies.len(), 6, "{replies:?}");
    assert_eq!(
        bot.fake.reactions("acme/web", comment),
        vec!["eyes".to_string(), "confused".to_string()]
    );

    // An organization's custom repository role counts as the built-in role it grants
    // (GitHub names the custom role in `role_name`).
    bot.fake
        .set_custom_role("acme/web", "auditor", "security-auditor", "triage");
    bot.fake
        .set_custom_role("acme/web", "shipper", "deployer", "write");
    comment_and_wait_for_reply(
        &bot,
        (9, "auditor", "/deploy production"),
        "r-custom-1",
        |reply| reply.contains("@auditor cannot") && reply.contains("you have `triage`"),
    );
    assert!(bot.deployments("web-production").is_empty());
    bot.comment(9, "shipper", "/deploy production", "r-custom-2");
    wait_until(
        "the deployment by a custom role",
        Duration::from_secs(30),
        || !bot.deployments("web-production").is_empty(),
    );
    let deployment = bot.deployments("web-production").remove(0);
    assert_eq!(deployment.initiator, "shipper");
}

/// GitHub takes 90 s to answer a reply on another tenant's repository; while that reply
/// is being sent, a push to main deploys staging and its statuses, through `success`,
/// reach GitHub: an item GitHub is slow to answer holds up only itself.
fn a_report_github_is_slow_to_answer_does_not_hold_up_the_others(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    bot.fake.add_repo("globex/public");
    bot.fake.add_issue("globex/public", 1);
    bot.fake.delay_path(
        "POST",
        "/repos/globex/public/issues/1/comments",
        Duration::from_secs(90),
    );
    bot.db
        .store
        .enqueue(&[deploybot::github::outbox::NewOutboxItem {
            tenant_id: "globex".into(),
            ordering_key: "comment:1".into(),
            deployment_id: None,
            work: deploybot::github::outbox::Work::CommentReply(
                deploybot::github::outbox::CommentReply {
                    repo: "globex/public".into(),
                    issue: 1,
                    body: "slow".into(),
                    installation_id: None,
                },
            ),
        }])
        .unwrap();
    let mut sql = bot.sql();
    wait_until(
        "the slow reply is being sent",
        Duration::from_secs(10),
        || sql.count("SELECT COUNT(*) AS n FROM outbox WHERE locked_by IS NOT NULL") == 1,
    );
    let (status, answer) = bot.send(
        "push",
        &push("refs/heads/main", PR_SHA, "octocat"),
        "slow-1",
    );
    assert_eq!(status, 202, "{answer}");
    wait_for_github_state(&bot, "staging", "success");
    // Its first attempt is still waiting for GitHub's answer.
    let in_flight = "SELECT COUNT(*) AS n FROM outbox \
        WHERE tenant_id = 'globex' AND attempts = 0 AND locked_by IS NOT NULL";
    assert_eq!(
        sql.count(in_flight),
        1,
        "the slow reply was still being sent"
    );
    assert!(bot.fake.comments("globex/public", 1).is_empty());
}

fn github_faults_are_retried_in_order_and_never_block(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    bot.fake
        .fail_next("POST", "/repos/acme/web/deployments", 1, 500, &[]);
    bot.fake.fail_next(
        "POST",
        "/repos/acme/web/deployments",
        1,
        429,
        &[("Retry-After", "1")],
    );
    let (_, answer) = bot.send("push", &tag_push("v3.0.0", SHA), "x-1");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    assert_eq!(
        bot.wait_final(&id).state,
        DeployState::Succeeded,
        "GitHub faults never block the deploy"
    );
    wait_for_github_state(&bot, "production", "success");
    let creates: Vec<u16> = bot
        .fake
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path == "/repos/acme/web/deployments")
        .map(|c| c.status)
        .collect();
    assert_eq!(creates, [500, 429, 201], "retried until created, once");
    let states = github_states(&bot, "production");
    assert_eq!(
        states.first().map(String::as_str),
        Some("queued"),
        "{states:?}"
    );
    assert_eq!(
        states.last().map(String::as_str),
        Some("success"),
        "{states:?}"
    );

    // A 422 on one report is recorded and the rest still go out.
    bot.fake
        .fail_next("POST", "/repos/acme/web/deployments/", 1, 422, &[]);
    let (_, answer) = bot.send("push", &tag_push("v3.0.1", PR_SHA), "x-2");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    assert_eq!(bot.wait_final(&id).state, DeployState::Succeeded);
    wait_until("the later statuses", Duration::from_secs(30), || {
        bot.fake
            .deployments("acme/web")
            .iter()
            .any(|g| g.sha == PR_SHA && g.states().last().map(String::as_str) == Some("success"))
    });
    let items = bot
        .db
        .store
        .outbox_items("acme", id.parse().unwrap())
        .unwrap();
    let failed: Vec<_> = items.iter().filter(|i| i.state == "failed").collect();
    assert_eq!(failed.len(), 1, "{items:?}");
    assert!(
        failed[0].last_error.contains("422"),
        "{}",
        failed[0].last_error
    );
}

fn reports_pending_at_a_crash_are_delivered_after_restart(db: TestDb) {
    let mut bot = Bot::start(db, OK_SCRIPT, "");
    // GitHub is down: every report waits in the outbox.
    bot.fake
        .fail_next("POST", "/repos/acme/web/", 1000, 503, &[]);
    let (_, answer) = bot.send("push", &tag_push("v4.0.0", SHA), "k-1");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    assert_eq!(bot.wait_final(&id).state, DeployState::Succeeded);
    bot.kill9();
    bot.fake.clear_faults();
    assert!(bot.fake.deployments("acme/web").is_empty());
    bot.kill9_and_restart();
    wait_for_github_state(&bot, "production", "success");
    let gh = bot.fake.deployments("acme/web");
    assert_eq!(gh.len(), 1, "created once");
    let states = gh[0].states();
    assert_eq!(states.first().map(String::as_str), Some("queued"));
    assert_eq!(states.last().map(String::as_str), Some("success"));
    // The stale in-progress updates collapsed: nothing after success.
    assert_eq!(states.iter().filter(|s| *s == "success").count(), 1);
}

/// SIGTERM while GitHub is slow and reports are queued: deploybot finishes the reports it
/// is sending and exits, without first draining the queue (which could take minutes);
/// the rest is sent after the restart, each report once.
fn sigterm_leaves_queued_reports_for_the_next_start(db: TestDb) {
    let mut bot = Bot::start(db, OK_SCRIPT, "");
    // Each answer takes a second: the four reports of each deployment (created, queued,
    // in progress, success) take at least four seconds, one after another.
    bot.fake.set_delay(Duration::from_secs(1));
    let mut ids = Vec::new();
    for n in 0..6 {
        let sha = format!("{:040x}", 0xabc0 + n);
        let (status, answer) = bot.send(
            "push",
            &push("refs/heads/main", &sha, "octocat"),
            &format!("s-{n}"),
        );
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["deployments"][0].as_str().unwrap().to_string());
    }
    wait_until(
        "the first report to reach GitHub",
        Duration::from_secs(30),
        || !bot.fake.deployments("acme/web").is_empty(),
    );
    let status = bot.sigterm();
    assert!(status.success(), "clean exit: {status:?}");
    let (queued, failed) = bot.db.store.outbox_counts().unwrap();
    assert!(
        queued > 0,
        "deploybot drained the whole queue before exiting"
    );
    assert_eq!(failed, 0);

    bot.fake.clear_faults();
    bot.restart();
    wait_until("every report to be sent", Duration::from_secs(60), || {
        bot.db.store.outbox_counts().unwrap() == (0, 0)
    });
    let gh = bot.fake.deployments("acme/web");
    let mut shas: Vec<_> = gh.iter().map(|d| d.sha.clone()).collect();
    shas.sort();
    shas.dedup();
    assert_eq!(
        shas.len(),
        gh.len(),
        "a deployment was created twice: {shas:?}"
    );
    assert_eq!(gh.len(), ids.len(), "one GitHub deployment per deployment");
    for id in &ids {
        let d = bot.deployment(id);
        assert!(d.state.is_final(), "{id} is {:?}", d.state);
    }
    for d in &gh {
        // Each ends with one final status, sent once.
        let states = d.states();
        let last = states.last().cloned().unwrap_or_default();
        assert!(
            ["success", "failure", "error", "inactive"].contains(&last.as_str()),
            "{states:?}"
        );
        assert_eq!(
            states.iter().filter(|s| **s == last).count(),
            1,
            "{states:?}"
        );
    }
}

fn a_github_app_acts_through_its_installation(db: TestDb) {
    let bot = Bot::start_as_app(db, OK_SCRIPT);
    // The tag push carries no installation: deploybot looks it up for the repository.
    let mut event = tag_push("v5.0.0", SHA);
    event.as_object_mut().unwrap().remove("installation");
    let (_, answer) = bot.send("push", &event, "app-1");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    assert_eq!(bot.wait_final(&id).state, DeployState::Succeeded);
    wait_for_github_state(&bot, "production", "success");
    let calls = bot.fake.calls();
    let lookup = calls
        .iter()
        .find(|c| c.path == "/repos/acme/web/installation")
        .expect("installation lookup");
    assert_eq!(lookup.auth, common::fake_github::CallAuth::AppJwt);
    let mints: Vec<_> = calls
        .iter()
        .filter(|c| c.path == "/app/installations/77/access_tokens")
        .collect();
    assert_eq!(mints.len(), 1, "the installation token is cached");
    for call in calls
        .iter()
        .filter(|c| c.path.starts_with("/repos/acme/web/deployments"))
    {
        assert_eq!(
            call.auth,
            common::fake_github::CallAuth::InstallationToken,
            "{call:?}"
        );
    }
    let gh = bot.fake.deployments("acme/web");
    assert_eq!(gh[0].creator, common::fake_github::APP_BOT_LOGIN);
}

both_backends_owned!(
    a_report_github_is_slow_to_answer_does_not_hold_up_the_others,
    a_delayed_reply_tells_the_outcome_it_was_queued_with,
    signatures_are_checked_before_anything_else,
    a_reply_whose_answer_was_lost_is_posted_once,
    a_delivery_counts_once_even_across_restarts,
    ping_and_ignored_events,
    push_to_main_deploys_the_pushed_commit,
    a_tag_push_and_its_create_event_deploy_once,
    a_create_event_alone_resolves_the_tag_and_deploys,
    a_tag_push_is_mirrored_on_github,
    required_contexts_gate_the_deployment,
    failures_and_cancellations_are_reported,
    a_superseded_deployment_is_reported_on_github,
    pr_command_end_to_end,
    refused_commands_explain_why,
    github_faults_are_retried_in_order_and_never_block,
    reports_pending_at_a_crash_are_delivered_after_restart,
    sigterm_leaves_queued_reports_for_the_next_start,
    a_github_app_acts_through_its_installation,
);
