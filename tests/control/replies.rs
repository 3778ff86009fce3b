//! One live reply per command: a command's deployment gets exactly one bot comment on the
//! pull request, edited in place as it moves (queued with its place in line, running,
//! done), never a second one, not even when GitHub's answer to its creation is lost or the
//! server is killed; a dry run's reply carries its plan, masked, and GitHub shows the dry
//! run as its own task that never retires the live deployment.

use std::time::Duration;

use deploybot::deploy::DeployState;
use deploybot::sandbox::FakeComment;

use crate::bot::{Bot, PR_SHA, TOKEN, wait_until};
use crate::both_backends_owned;
use crate::common::TestDb;

/// Each phase waits for the file `go-<version>` next to the script, so a test decides
/// when each deployment may finish. A dry run plans at once: 35 numbered lines, then one
/// that names the GitHub token (a secret of the configuration).
const GATED_SCRIPT: &str = r#"if [ "$DEPLOY_NOOP" = "1" ]; then
  for i in $(seq 1 35); do printf 'plan line %02d\n' "$i"; done
  echo "would call GitHub with ghs_testtoken"
  echo 'a fence ``` inside the plan'
  exit 0
fi
here=$(dirname "$0")
while [ ! -e "$here/go-$DEPLOY_RELEASE_VERSION" ]; do sleep 0.1; done
echo "phase=$DEPLOY_PHASE""#;

fn start(db: TestDb) -> Bot {
    let bot = Bot::start(db, GATED_SCRIPT, "");
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot
}

/// Lets the deployment of release `version` finish.
fn release_gate(bot: &Bot, version: i64) {
    std::fs::write(bot.dir().join(format!("go-{version}")), "").unwrap();
}

/// The bot's comments on pull request `pr` (everything octocat did not write).
fn bot_comments(bot: &Bot, pr: u64) -> Vec<FakeComment> {
    bot.fake
        .comments("acme/web", pr)
        .into_iter()
        .filter(|c| c.user != "octocat")
        .collect()
}

/// Waits until the bot's one reply on `pr` reads `text`; that reply.
fn wait_reply(bot: &Bot, pr: u64, text: &str) -> FakeComment {
    let limit = Duration::from_secs(60);
    let started = std::time::Instant::now();
    loop {
        let last = bot_comments(bot, pr);
        if let Some(found) = last.iter().find(|c| c.body.contains(text)) {
            return found.clone();
        }
        assert!(
            started.elapsed() < limit,
            "no reply on #{pr} reads {text:?}; the bot's comments: {last:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `octocat` comments `command` on `pr`; the deployment it queued.
fn command(bot: &Bot, pr: u64, command: &str, delivery: &str) -> String {
    let before = bot.deployments("web-production").len();
    let (_, status, answer) = bot.comment(pr, "octocat", command, delivery);
    assert_eq!(status, 202, "{answer}");
    wait_until("the command's deployment", Duration::from_secs(30), || {
        bot.deployments("web-production").len() == before + 1
    });
    bot.deployments("web-production")
        .into_iter()
        .max_by_key(|d| d.created_at)
        .unwrap()
        .id
        .to_string()
}

fn a_deploy_gets_one_reply_edited_from_queued_to_running_to_succeeded(db: TestDb) {
    let bot = start(db);
    bot.open_pull(41, PR_SHA, false, "open");
    bot.open_pull(42, PR_SHA, false, "open");
    let first = command(&bot, 41, "/deploy production", "first");
    wait_until("v1 to run", Duration::from_secs(30), || {
        bot.deployment(&first).state == DeployState::Running
    });
    let second = command(&bot, 42, "/deploy production", "second");

    // Behind the running v1, v2 says where it stands.
    let queued = wait_reply(&bot, 42, "queued: 2nd in line behind v1 (running)");
    assert!(
        queued
            .body
            .starts_with("⏳ Deployment of **v2** to **production** is queued"),
        "{}",
        queued.body
    );
    wait_reply(&bot, 41, "is running");

    release_gate(&bot, 1);
    wait_until("v2 to run", Duration::from_secs(60), || {
        bot.deployment(&second).state == DeployState::Running
    });
    let running = wait_reply(
        &bot,
        42,
        "🔄 Deployment of **v2** to **production** is running",
    );
    assert_eq!(
        running.id, queued.id,
        "the reply is edited, not posted again"
    );

    release_gate(&bot, 2);
    assert_eq!(bot.wait_final(&second).state, DeployState::Succeeded);
    let done = wait_reply(
        &bot,
        42,
        "🚀 Deployment of **v2** to **production** succeeded",
    );
    assert!(
        done.body
            .contains(&format!("http://bot.test/deployments/{second}")),
        "{}",
        done.body
    );
    // Give any late report the time to (wrongly) post a second comment.
    wait_until("the outbox to drain", Duration::from_secs(30), || {
        bot.sql()
            .count("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")
            == 0
    });
    let replies = bot_comments(&bot, 42);
    assert_eq!(replies.len(), 1, "one reply per command: {replies:#?}");
    let reply = &replies[0];
    assert_eq!(reply.id, queued.id);
    assert!(reply.edits() >= 2, "{reply:#?}");
    assert!(
        reply.history[0].contains("is queued"),
        "first written as queued: {reply:#?}"
    );
    let running_at = reply
        .history
        .iter()
        .position(|b| b.contains("is running"))
        .unwrap_or_else(|| panic!("edited to running: {reply:#?}"));
    let queued_at = reply
        .history
        .iter()
        .position(|b| b.contains("is queued"))
        .unwrap();
    assert!(queued_at < running_at, "{reply:#?}");
    assert!(reply.body.contains("succeeded"), "{}", reply.body);
    // Edits went to GitHub's comment endpoint, with the same comment id.
    let patches = bot
        .fake
        .calls()
        .into_iter()
        .filter(|c| {
            c.method == "PATCH" && c.path == format!("/repos/acme/web/issues/comments/{}", reply.id)
        })
        .count();
    assert_eq!(patches, reply.edits());
    // The other command's reply is its own, also one comment.
    assert_eq!(bot_comments(&bot, 41).len(), 1);
}

/// GitHub creates the reply but its answer is lost (a 502 after the write), and then the
/// server is killed right after the reply exists: the reply is found again by its marker
/// and edited to the outcome; no second comment appears.
fn a_lost_answer_and_a_crash_never_post_a_second_reply(db: TestDb) {
    let mut bot = start(db);
    bot.open_pull(42, PR_SHA, false, "open");
    bot.fake
        .fail_after_applying_next("POST", "/repos/acme/web/issues/42/comments", 1, 502);
    let id = command(&bot, 42, "/deploy production", "lost");
    wait_until("the reply to exist", Duration::from_secs(30), || {
        !bot_comments(&bot, 42).is_empty()
    });
    bot.kill9_and_restart();
    release_gate(&bot, 1);
    // Killed while it ran, the deployment may have failed as lost: its reply says so.
    let outcome = match bot.wait_final(&id).state {
        DeployState::Succeeded => "🚀 Deployment of **v1** to **production** succeeded",
        _ => "❌ Deployment of **v1** to **production** failed",
    };
    wait_reply(&bot, 42, outcome);
    wait_until("the outbox to drain", Duration::from_secs(30), || {
        bot.sql()
            .count("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")
            == 0
    });
    let replies = bot_comments(&bot, 42);
    assert_eq!(replies.len(), 1, "never a second reply: {replies:#?}");
    assert!(replies[0].edits() >= 1, "{:#?}", replies[0]);
    // The marker is random: not the deployment id, which others can read on the pages.
    assert!(!replies[0].body.contains(&format!("deploybot:reply:{id}")));
    let creates = bot
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path == "/repos/acme/web/issues/42/comments")
        .count();
    assert_eq!(creates, 1, "created once, then only edited");
}

/// A comment that merely quotes the marker's prefix, or carries another reply's marker,
/// is never taken for this reply.
fn a_reply_is_not_confused_with_a_comment_quoting_a_marker(db: TestDb) {
    let bot = start(db);
    bot.open_pull(42, PR_SHA, false, "open");
    bot.fake.add_comment(
        "acme/web",
        42,
        "mallory",
        "fake reply\n<!-- deploybot:reply: -->\n<!-- deploybot:reply:00000000000000000000000000000000 -->",
    );
    bot.fake
        .fail_after_applying_next("POST", "/repos/acme/web/issues/42/comments", 1, 502);
    let id = command(&bot, 42, "/deploy production", "quoted");
    release_gate(&bot, 1);
    assert_eq!(bot.wait_final(&id).state, DeployState::Succeeded);
    wait_reply(&bot, 42, "succeeded");
    let mallory: Vec<FakeComment> = bot
        .fake
        .comments("acme/web", 42)
        .into_iter()
        .filter(|c| c.user == "mallory")
        .collect();
    assert_eq!(mallory[0].edits(), 0, "nobody else's comment is edited");
    let replies: Vec<FakeComment> = bot_comments(&bot, 42)
        .into_iter()
        .filter(|c| c.user != "mallory")
        .collect();
    assert_eq!(replies.len(), 1, "{replies:#?}");
}

/// `/noop`: the reply carries the plan's last 30 lines in a details block with the secret
/// masked; GitHub shows a `deploy:noop` Deployment whose success leaves the live
/// deployment active.
fn a_dry_run_replies_with_its_masked_plan_and_leaves_the_live_deployment_active(db: TestDb) {
    let bot = Bot::start_configured(db, GATED_SCRIPT, "params = [\"REGION\"]");
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot.open_pull(41, PR_SHA, false, "open");
    bot.open_pull(42, PR_SHA, false, "open");
    release_gate(&bot, 1);
    let live = command(&bot, 41, "/deploy production", "live");
    assert_eq!(bot.wait_final(&live).state, DeployState::Succeeded);
    wait_reply(&bot, 41, "succeeded");

    let dry = command(&bot, 42, "/noop production | REGION=eu-west-1", "dry");
    assert_eq!(bot.wait_final(&dry).state, DeployState::Succeeded);
    let reply = wait_reply(&bot, 42, "Plan output");
    let body = &reply.body;
    assert!(
        body.contains("Dry run of **v2** on **production** succeeded"),
        "{body}"
    );
    assert!(
        body.contains("<details><summary>Plan output</summary>\n\n```\n"),
        "{body}"
    );
    assert!(body.contains("plan line 35"), "{body}");
    assert!(
        body.contains("Parameters: `REGION=eu-west-1`"),
        "the parameters it ran with: {body}"
    );
    assert!(body.contains("plan line 10"), "the last 30 lines: {body}");
    assert!(
        !body.contains("plan line 05"),
        "only the last 30 lines: {body}"
    );
    assert!(body.contains("would call GitHub with ***"), "{body}");
    assert!(!body.contains(TOKEN), "the secret is masked: {body}");
    // The plan's own fence cannot close the block early.
    let details = &body[body.find("<details>").unwrap()..];
    assert_eq!(details.matches("```").count(), 2, "{body}");
    assert_eq!(bot_comments(&bot, 42).len(), 1);

    wait_until(
        "both GitHub Deployments to end",
        Duration::from_secs(30),
        || {
            let deployments = bot.fake.deployments("acme/web");
            deployments.len() == 2
                && deployments.iter().all(|d| {
                    d.states()
                        .last()
                        .is_some_and(|s| s != "queued" && s != "in_progress")
                })
        },
    );
    let deployments = bot.fake.deployments("acme/web");
    let noop = deployments
        .iter()
        .find(|d| d.task == "deploy:noop")
        .unwrap_or_else(|| panic!("a deploy:noop Deployment: {deployments:#?}"));
    assert!(
        noop.description
            .as_deref()
            .unwrap_or("")
            .starts_with("dry run"),
        "{noop:#?}"
    );
    assert_eq!(noop.states().last().unwrap(), "success");
    assert_eq!(noop.payload["deploybot"]["params"]["REGION"], "eu-west-1");
    assert!(noop.statuses.iter().all(|s| s.auto_inactive == Some(false)));
    let deployed = deployments.iter().find(|d| d.task == "deploy").unwrap();
    assert_eq!(
        deployed.states().last().unwrap(),
        "success",
        "the live deployment stays active: {deployed:#?}"
    );
}

both_backends_owned!(
    a_deploy_gets_one_reply_edited_from_queued_to_running_to_succeeded,
    a_lost_answer_and_a_crash_never_post_a_second_reply,
    a_reply_is_not_confused_with_a_comment_quoting_a_marker,
    a_dry_run_replies_with_its_masked_plan_and_leaves_the_live_deployment_active,
);

/// The reply records, on the store directly.
mod records {
    use std::collections::BTreeMap;

    use deploybot::deploy::{
        DeployRequest, DeployState, Deployment, Instance, InstanceStore, QueueStore, Release,
        ReleaseStore,
    };
    use deploybot::github::store::ReplyStore;

    use crate::both_backends;
    use crate::common::TestDb;

    fn instance(db: &TestDb) -> Instance {
        db.store
            .upsert_instance("acme", "web-production", "acme/web", "production")
            .unwrap()
    }

    fn deploy(db: &TestDb, inst: &Instance) -> Deployment {
        let request = DeployRequest {
            instance_id: inst.id,
            image: "ghcr.io/acme/web:1".into(),
            env: BTreeMap::new(),
            strategy: "rolling".into(),
            notes: String::new(),
            commit_sha: String::new(),
            params: Default::default(),
            noop: false,
        };
        let release = Release::from_request("acme", &request);
        let d = Deployment::pending(&release, "rolling", "octocat");
        db.store
            .insert_release_and_deployment(&release, &d)
            .unwrap()
            .1
    }

    fn a_reply_record_keeps_one_random_marker_and_its_comment(db: &TestDb) {
        let first = db
            .store
            .reply_record("acme", "dep_1", "acme/web", 42)
            .unwrap();
        assert_eq!(first.marker.len(), 32);
        assert!(first.marker.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(first.comment_id, None);
        assert_eq!(first.issue, 42);
        assert!(first.created);
        let again = db
            .store
            .reply_record("acme", "dep_1", "acme/web", 42)
            .unwrap();
        assert!(!again.created, "an earlier attempt may have posted it");
        assert_eq!(
            (again.marker.as_str(), again.comment_id),
            (first.marker.as_str(), None),
            "the same record, the same marker"
        );
        let other = db
            .store
            .reply_record("acme", "dep_2", "acme/web", 42)
            .unwrap();
        assert_ne!(other.marker, first.marker);
        let tenant = db
            .store
            .reply_record("globex", "dep_1", "globex/web", 42)
            .unwrap();
        assert_ne!(tenant.marker, first.marker, "tenants do not share records");

        let at = chrono::Utc::now();
        // Ids past i64::MAX survive the BIGINT column.
        let big = u64::MAX - 7;
        db.store
            .set_reply_comment("acme", "dep_1", big, at)
            .unwrap();
        let stored = db
            .store
            .reply_record("acme", "dep_1", "acme/web", 42)
            .unwrap();
        assert_eq!(stored.comment_id, Some(big));
        let edited = stored.edited_at.unwrap();
        assert!(
            (edited - at).num_milliseconds().abs() < 1,
            "{edited} vs {at}"
        );
        assert_eq!(stored.marker, first.marker);
        let untouched = db
            .store
            .reply_record("acme", "dep_2", "acme/web", 42)
            .unwrap();
        assert_eq!(untouched.comment_id, None);
    }

    fn the_queue_lists_running_then_pending_oldest_first(db: &TestDb) {
        let inst = instance(db);
        let a = deploy(db, &inst);
        let b = deploy(db, &inst);
        let c = deploy(db, &inst);
        let claimed = db
            .store
            .claim_next("worker", std::time::Duration::from_secs(30))
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, a.id);
        let mut sql = crate::common::Sql::open(&db.url);
        sql.execute(&format!(
            "UPDATE deployments SET waiting_for = '{{\"kind\":\"lock\",\"reason\":\"locked by @alice\",\"until\":null}}' WHERE id = '{}'",
            b.id
        ));
        let queue = db.store.instance_queue("acme", inst.id).unwrap();
        let seen: Vec<_> = queue
            .iter()
            .map(|e| (e.id, e.state, e.version, e.waiting))
            .collect();
        assert_eq!(
            seen,
            vec![
                (a.id, DeployState::Running, 1, false),
                (b.id, DeployState::Pending, 2, true),
                (c.id, DeployState::Pending, 3, false),
            ]
        );
        assert!(
            db.store
                .instance_queue("globex", inst.id)
                .unwrap()
                .is_empty()
        );
    }

    both_backends!(
        a_reply_record_keeps_one_random_marker_and_its_comment,
        the_queue_lists_running_then_pending_oldest_first,
    );
}
