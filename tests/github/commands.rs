//! Pull-request commands act once, on what was asked, and do no work for strangers: told
//! as an attacker (or an unlucky crash) would try it, against the real server and the fake
//! GitHub, on both databases.

use std::time::Duration;

use chrono::Utc;
use deploybot::deploy::{DeployState, Deployment};
use serde_json::Value;

use crate::bot::{Bot, PR_SHA, fixture, github_time, pr_comment, pull_event, wait_until};
use crate::common::TestDb;
use crate::{both_backends_owned, tag_push};

/// Each deploy phase sleeps, so a deployment stays running until it is cancelled.
const SLOW_SCRIPT: &str = "sleep 30";
const NEW_SHA: &str = "9c0ffee5d1e7a1b2c3d4e5f60718293a4b5c6d7e";

fn start(db: TestDb) -> Bot {
    let bot = Bot::start(db, SLOW_SCRIPT, "");
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot
}

/// A tag push to production; the deployment it queued.
fn tag(bot: &Bot, name: &str, commit: &str) -> Deployment {
    let before: Vec<_> = bot
        .deployments("web-production")
        .into_iter()
        .map(|d| d.id)
        .collect();
    let (status, answer) = bot.send("push", &tag_push(name, commit), &format!("tag-{name}"));
    assert_eq!(status, 202, "{answer}");
    wait_until("the tag's deployment", Duration::from_secs(30), || {
        bot.deployments("web-production").len() == before.len() + 1
    });
    bot.deployments("web-production")
        .into_iter()
        .find(|d| !before.contains(&d.id))
        .unwrap()
}

fn wait_state(bot: &Bot, d: &Deployment, state: DeployState) {
    wait_until(
        &format!("{} to be {state:?}", d.id),
        Duration::from_secs(60),
        || bot.deployment(&d.id.to_string()).state == state,
    );
}

/// The bot's replies on pull request `pr` (everything not written by a person).
fn replies(bot: &Bot, pr: u64) -> Vec<String> {
    bot.fake
        .comments("acme/web", pr)
        .into_iter()
        .filter(|c| !["octocat", "mallory", "contributor"].contains(&c.user.as_str()))
        .map(|c| c.body)
        .collect()
}

/// Sends `/help` as octocat and waits for its answer: every job queued before it on the
/// pull request has run by then (a pull request's jobs run in order).
fn barrier(bot: &Bot, pr: u64, delivery: &str) {
    let before = replies(bot, pr).len();
    bot.comment(pr, "octocat", "/help", delivery);
    wait_until(
        &format!("the answer to {delivery}"),
        Duration::from_secs(30),
        || replies(bot, pr).len() > before,
    );
}

/// GitHub writes (anything but GET) the bot made so far.
fn writes(bot: &Bot) -> Vec<String> {
    bot.fake
        .calls()
        .into_iter()
        .filter(|c| c.method != "GET")
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

/// A captured `/cancel` comment, replayed under a new delivery id after a new deployment
/// started, cancels nothing more and says nothing more.
fn a_replayed_cancel_under_a_new_delivery_id_cancels_nothing_more(db: TestDb) {
    let bot = start(db);
    bot.open_pull(42, PR_SHA, false, "open");
    let first = tag(&bot, "v1", PR_SHA);
    wait_state(&bot, &first, DeployState::Running);
    let comment = bot
        .fake
        .add_comment("acme/web", 42, "octocat", "/cancel production");
    let body = pr_comment(42, comment, "octocat", "/cancel production");
    let (status, answer) = bot.send("issue_comment", &body, "cancel-1");
    assert_eq!(status, 202, "{answer}");
    wait_state(&bot, &first, DeployState::Cancelled);
    let second = tag(&bot, "v2", NEW_SHA);
    wait_state(&bot, &second, DeployState::Running);

    // The same signed comment, under a delivery id GitHub never used.
    let (status, answer) = bot.send("issue_comment", &body, "cancel-1-replayed");
    assert_eq!(status, 202, "{answer}");
    barrier(&bot, 42, "after-replay");
    assert_eq!(
        bot.deployment(&second.id.to_string()).state,
        DeployState::Running,
        "the replayed /cancel stopped the new deployment"
    );
    let stopping = replies(&bot, 42)
        .iter()
        .filter(|r| r.contains("Stopping deployment"))
        .count();
    assert_eq!(stopping, 1, "{:?}", replies(&bot, 42));
    assert_eq!(bot.fake.reactions("acme/web", comment), ["eyes"]);
}

/// The sender dies after a `/cancel` job's effect committed but before it recorded the job
/// as done: the job runs again and does nothing twice.
fn a_cancel_job_run_again_after_its_effect_does_nothing_twice(db: TestDb) {
    let bot = start(db);
    bot.open_pull(42, PR_SHA, false, "open");
    let first = tag(&bot, "v1", PR_SHA);
    wait_state(&bot, &first, DeployState::Running);
    bot.comment(42, "octocat", "/cancel production", "cancel-1");
    wait_state(&bot, &first, DeployState::Cancelled);
    wait_until("the cancel's reply", Duration::from_secs(30), || {
        replies(&bot, 42)
            .iter()
            .any(|r| r.contains("Stopping deployment"))
    });
    let second = tag(&bot, "v2", NEW_SHA);
    wait_state(&bot, &second, DeployState::Running);

    // As after a crash: the comment's job is pending again and is claimed again.
    let mut sql = bot.sql();
    let again = sql.execute(
        "UPDATE outbox SET state = 'pending', locked_by = NULL, locked_until = NULL, attempts = 1 \
         WHERE kind = 'job.comment'",
    );
    assert_eq!(again, 1);
    wait_until("the job to run again", Duration::from_secs(30), || {
        sql.count(
            "SELECT COUNT(*) AS n FROM outbox WHERE kind = 'job.comment' AND state = 'pending'",
        ) == 0
    });
    barrier(&bot, 42, "after-rerun");
    assert_eq!(
        bot.deployment(&second.id.to_string()).state,
        DeployState::Running,
        "the job run again cancelled the new deployment"
    );
    let stopping = replies(&bot, 42)
        .iter()
        .filter(|r| r.contains("Stopping deployment"))
        .count();
    assert_eq!(stopping, 1, "{:?}", replies(&bot, 42));
}

/// `/cancel production` stops the bad running deployment, not the queued one behind it;
/// `/cancel production --queued` cancels the queued ones and leaves the running one.
fn cancel_stops_the_running_deployment_and_queued_cancels_the_waiting_ones(db: TestDb) {
    let bot = start(db);
    bot.open_pull(42, PR_SHA, false, "open");
    let bad = tag(&bot, "v1", PR_SHA);
    wait_state(&bot, &bad, DeployState::Running);
    let next = tag(&bot, "v2", NEW_SHA);
    assert_eq!(
        bot.deployment(&next.id.to_string()).state,
        DeployState::Pending
    );

    bot.comment(42, "octocat", "/cancel production", "cancel-running");
    wait_state(&bot, &bad, DeployState::Cancelled);
    // The queued deployment was not cancelled: it runs now.
    wait_state(&bot, &next, DeployState::Running);

    let waiting = tag(&bot, "v3", "3333333333333333333333333333333333333333");
    bot.comment(
        42,
        "octocat",
        "/cancel production --queued",
        "cancel-queued",
    );
    wait_state(&bot, &waiting, DeployState::Cancelled);
    barrier(&bot, 42, "after-queued");
    assert_eq!(
        bot.deployment(&next.id.to_string()).state,
        DeployState::Running,
        "--queued stopped the running deployment"
    );
    let replies = replies(&bot, 42);
    assert!(
        replies
            .iter()
            .any(|r| r.contains(&format!("Stopping deployment {}", bad.id))),
        "{replies:?}"
    );
    assert!(
        replies
            .iter()
            .any(|r| r.contains(&format!("Cancelled queued deployment {}", waiting.id))),
        "{replies:?}"
    );
}

/// `/deploy` and `/cancel` on a closed pull request and on a fork's are refused with the
/// reason, and change nothing.
fn closed_and_fork_pull_requests_are_refused_for_deploy_and_cancel(db: TestDb) {
    let bot = start(db);
    bot.open_pull(7, PR_SHA, true, "open");
    bot.open_pull(8, PR_SHA, false, "closed");
    let running = tag(&bot, "v1", PR_SHA);
    wait_state(&bot, &running, DeployState::Running);
    let cases = [
        (7, "/deploy production", "comes from a fork"),
        (7, "/cancel production", "comes from a fork"),
        (8, "/deploy production", "is closed"),
        (8, "/cancel production", "is closed"),
    ];
    for (i, (pr, body, expected)) in cases.into_iter().enumerate() {
        let (comment, status, answer) = bot.comment(pr, "octocat", body, &format!("refuse-{i}"));
        assert_eq!(status, 202, "{answer}");
        wait_until(
            &format!("the refusal of {body} on #{pr}"),
            Duration::from_secs(30),
            || {
                bot.fake
                    .reactions("acme/web", comment)
                    .contains(&"confused".to_string())
            },
        );
        let refusal = replies(&bot, pr)
            .into_iter()
            .find(|r| r.contains(expected) && r.contains(&format!("#{pr}")));
        assert!(
            refusal.is_some(),
            "{body} on #{pr}: {:?}",
            replies(&bot, pr)
        );
    }
    assert_eq!(
        bot.deployment(&running.id.to_string()).state,
        DeployState::Running,
        "a refused /cancel stopped the deployment"
    );
    assert_eq!(
        bot.deployments("web-production").len(),
        1,
        "a refused /deploy deployed"
    );
}

/// Someone pushes to the pull request right after a maintainer's `/deploy production`: the
/// bot refuses, names the new head, and deploys nothing; a new comment deploys the new head.
fn a_push_after_the_deploy_comment_is_refused_and_nothing_deployed(db: TestDb) {
    let bot = start(db);
    bot.open_pull(42, PR_SHA, false, "open");
    let written = Utc::now() - chrono::Duration::seconds(10);
    let comment = bot
        .fake
        .add_comment("acme/web", 42, "octocat", "/deploy production");
    let mut body = pr_comment(42, comment, "octocat", "/deploy production");
    body["comment"]["created_at"] = github_time(written).into();
    // The push lands after the comment; its event even reaches the bot first.
    bot.push_to_pull(42, NEW_SHA, written + chrono::Duration::seconds(5));
    let (status, answer) = bot.send("issue_comment", &body, "deploy-1");
    assert_eq!(status, 202, "{answer}");
    let expected = "the pull request changed after your comment; comment again to deploy 9c0ffee";
    wait_until("the refusal", Duration::from_secs(30), || {
        replies(&bot, 42).iter().any(|r| r.contains(expected))
    });
    barrier(&bot, 42, "after-refusal");
    assert!(
        bot.deployments("web-production").is_empty(),
        "a commit the commenter never saw was deployed"
    );

    // The push's event never arrives: the head GitHub reports is not the one recorded
    // before the comment, so the bot refuses all the same.
    bot.fake.push_to_pull("acme/web", 42, PR_SHA);
    let (silent, ..) = bot.comment(42, "octocat", "/deploy production", "deploy-2");
    let expected = format!("comment again to deploy {}", &PR_SHA[..7]);
    wait_until("the second refusal", Duration::from_secs(30), || {
        bot.fake
            .reactions("acme/web", silent)
            .contains(&"confused".to_string())
    });
    assert!(
        replies(&bot, 42).iter().any(|r| r.contains(&expected)),
        "{:?}",
        replies(&bot, 42)
    );
    assert!(bot.deployments("web-production").is_empty());

    // Commenting again (after the head the bot named) deploys that head.
    std::thread::sleep(Duration::from_millis(1100));
    bot.comment(42, "octocat", "/deploy production", "deploy-3");
    wait_until("the deployment", Duration::from_secs(30), || {
        !bot.deployments("web-production").is_empty()
    });
    let deployed = bot.deployments("web-production").remove(0);
    assert_eq!(deployed.image, format!("ghcr.io/acme/web:{PR_SHA}"));
}

/// A stranger (read permission) comments `/deploy production`, then `/help`, then replays
/// the first under a new delivery id: one 😕 on each comment, one reply in the hour, and no
/// other write to GitHub.
fn a_strangers_commands_get_one_confused_reaction_and_one_reply_an_hour(db: TestDb) {
    let bot = start(db);
    bot.fake.set_permission("acme/web", "mallory", "read");
    bot.open_pull(42, PR_SHA, false, "open");
    let (deploy, ..) = bot.comment(42, "mallory", "/deploy production", "stranger-1");
    wait_until("😕 on the /deploy", Duration::from_secs(30), || {
        !bot.fake.reactions("acme/web", deploy).is_empty()
    });
    let (help, ..) = bot.comment(42, "mallory", "/help", "stranger-2");
    wait_until("😕 on the /help", Duration::from_secs(30), || {
        !bot.fake.reactions("acme/web", help).is_empty()
    });
    let replay = pr_comment(42, deploy, "mallory", "/deploy production");
    bot.send("issue_comment", &replay, "stranger-1-replayed");
    barrier(&bot, 42, "after-stranger");

    assert_eq!(bot.fake.reactions("acme/web", deploy), ["confused"]);
    assert_eq!(bot.fake.reactions("acme/web", help), ["confused"]);
    let to_mallory: Vec<String> = replies(&bot, 42)
        .into_iter()
        .filter(|r| r.contains("@mallory"))
        .collect();
    assert_eq!(to_mallory.len(), 1, "{to_mallory:?}");
    assert!(
        to_mallory[0].contains("you have `read`"),
        "{}",
        to_mallory[0]
    );
    assert!(
        !to_mallory[0].contains("`production`"),
        "a stranger learned the environments: {}",
        to_mallory[0]
    );
    assert!(bot.deployments("web-production").is_empty());
    // Besides the barrier's 👀 and help reply (octocat's), the two 😕 and the one reply.
    let writes = writes(&bot);
    let reactions = writes.iter().filter(|w| w.ends_with("/reactions")).count();
    let posted = writes
        .iter()
        .filter(|w| w.ends_with("/issues/42/comments"))
        .count();
    assert_eq!(reactions, 3, "{writes:?}");
    assert_eq!(posted, 2, "{writes:?}");
    assert_eq!(writes.len(), 5, "{writes:?}");
}

/// `/deploy production` on a plain issue: the bot writes nothing at all.
fn a_command_on_a_plain_issue_gets_nothing(db: TestDb) {
    let bot = start(db);
    bot.fake.add_issue("acme/web", 5);
    let comment = bot
        .fake
        .add_comment("acme/web", 5, "octocat", "/deploy production");
    let mut body: Value = fixture("issue_comment_created_issue");
    body["issue"]["number"] = 5.into();
    body["comment"]["id"] = comment.into();
    body["comment"]["body"] = "/deploy production\n/help".into();
    body["comment"]["user"]["login"] = "octocat".into();
    let (status, answer) = bot.send("issue_comment", &body, "issue-1");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "ignored", "{answer}");
    let mut sql = bot.sql();
    assert_eq!(sql.count("SELECT COUNT(*) AS n FROM outbox"), 0);
    assert!(writes(&bot).is_empty(), "{:?}", writes(&bot));
}

/// A `pull_request` event GitHub sends for a pull request is recorded without a reply.
fn pull_request_events_are_accepted_quietly(db: TestDb) {
    let bot = start(db);
    let event = pull_event("reopened", 3, PR_SHA, Utc::now());
    let (status, answer) = bot.send("pull_request", &event, "reopened-1");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["jobs"], 1, "{answer}");
}

/// Eight workers run the same step of one comment at once (replicas claiming a replay and
/// its original): the step acts once, and its reply is queued once.
fn a_step_run_by_many_workers_at_once_acts_once(db: TestDb) {
    use deploybot::github::outbox::{CommentReply, NewOutboxItem, Work};
    use deploybot::github::store::{CommentEffect, CommentStep, DeliveryStore};
    let step = CommentStep {
        tenant_id: "acme".into(),
        repo: "acme/web".into(),
        comment_id: u64::MAX,
        step: 1,
    };
    let acted: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let reply = |_: &deploybot::github::store::CommentActed| {
                        vec![NewOutboxItem {
                            tenant_id: "acme".into(),
                            ordering_key: "pull:acme/web#1".into(),
                            deployment_id: None,
                            work: Work::CommentReply(CommentReply {
                                repo: "acme/web".into(),
                                issue: 1,
                                body: "once".into(),
                                installation_id: None,
                            }),
                        }]
                    };
                    db.store
                        .act_on_comment(&step, &CommentEffect::Reply, &reply)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let once = acted.iter().filter(|a| matches!(a, Ok(Some(_)))).count();
    assert_eq!(once, 1, "{acted:?}");
    for a in &acted {
        assert!(
            matches!(
                a,
                Ok(_)
                    | Err(deploybot::deploy::Error::Conflict(_)
                        | deploybot::deploy::Error::Unavailable(_))
            ),
            "{a:?}"
        );
    }
    let mut sql = crate::common::Sql::open(&db.url);
    assert_eq!(sql.count("SELECT COUNT(*) AS n FROM outbox"), 1);
    assert_eq!(
        db.store
            .comment_steps("acme", "acme/web", u64::MAX)
            .unwrap(),
        vec![1]
    );
}

both_backends_owned!(
    a_step_run_by_many_workers_at_once_acts_once,
    a_replayed_cancel_under_a_new_delivery_id_cancels_nothing_more,
    a_cancel_job_run_again_after_its_effect_does_nothing_twice,
    cancel_stops_the_running_deployment_and_queued_cancels_the_waiting_ones,
    closed_and_fork_pull_requests_are_refused_for_deploy_and_cancel,
    a_push_after_the_deploy_comment_is_refused_and_nothing_deployed,
    a_strangers_commands_get_one_confused_reaction_and_one_reply_an_hour,
    a_command_on_a_plain_issue_gets_nothing,
    pull_request_events_are_accepted_quietly,
);
