//! Why a deployment rolled back, failed or was rolled back by hand, as GitHub shows it:
//! the deployment status's description (within GitHub's 140 characters, the reason's
//! start kept) and the command's reply.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use deploybot::deploy::DeployState;

use crate::bot::{Bot, PR_SHA, SHA, wait_until};
use crate::common::TestDb;
use crate::common::fake_github::FakeDeployment;
use crate::{both_backends_owned, tag_push};

/// Every deploy phase succeeds.
const OK_SCRIPT: &str = "echo \"phase=$DEPLOY_PHASE image=$DEPLOY_IMAGE\"";
const SECOND_SHA: &str = "5e3a1c0ffee0d1e7a1b2c3d4e5f60718293a4b5c";
/// What the health command is called by: long enough that the reason it fails with does
/// not fit in a deployment status.
const CHECK_NAME: &str = "checkout-smoke-test-against-the-eu-west-1-load-balancer-with-a-real-card";

/// web-production's settings: its health command fails for commits containing `failing`,
/// and its automatic rollbacks take no lock (so that `/rollback` needs no `--force`).
fn health(failing: &str) -> String {
    format!(
        r#"lock_on_rollback = false

[instances.health]
command = ["/bin/sh", "-c", "case \"$DEPLOY_IMAGE\" in *{failing}*) exit 1;; esac", "{CHECK_NAME}"]
interval = "100ms"
deadline = "1s"
"#
    )
}

/// The newest GitHub deployment of commit `sha` in production.
fn newest(bot: &Bot, sha: &str) -> Option<FakeDeployment> {
    bot.fake
        .deployments("acme/web")
        .into_iter()
        .filter(|d| d.sha == sha && d.environment == "production")
        .max_by_key(|d| d.id)
}

/// Waits until the newest GitHub deployment of `sha` ends in `state`; its last status's
/// description.
fn wait_status(bot: &Bot, sha: &str, state: &str) -> String {
    let mut description = String::new();
    wait_until(
        &format!("a {state} status for {sha}"),
        Duration::from_secs(60),
        || {
            let Some(d) = newest(bot, sha) else {
                return false;
            };
            let Some(last) = d.statuses.last() else {
                return false;
            };
            description = last.description.clone();
            last.state == state
        },
    );
    description
}

/// Waits until a comment of the bot on `pr` contains `text`; that comment's body.
fn wait_reply(bot: &Bot, pr: u64, text: &str) -> String {
    let mut found = String::new();
    wait_until(
        &format!("a reply reading {text:?}"),
        Duration::from_secs(60),
        || {
            let comments = bot.fake.comments("acme/web", pr);
            let reply = comments
                .into_iter()
                .filter(|c| c.user != "octocat")
                .find(|c| c.body.contains(text));
            found = reply.map(|c| c.body).unwrap_or_default();
            !found.is_empty()
        },
    );
    found
}

/// A deployment status posted straight to the fake GitHub; the answer's status code.
fn post_status(bot: &Bot, github_id: u64, description: &str) -> u16 {
    let address = bot.fake.url.strip_prefix("http://").unwrap().to_string();
    let body = serde_json::json!({"state": "failure", "description": description}).to_string();
    let mut stream = TcpStream::connect(&address).unwrap();
    let request = format!(
        "POST /repos/acme/web/deployments/{github_id}/statuses HTTP/1.1\r\nHost: {address}\r\n\
         Connection: close\r\nUser-Agent: deploybot-test\r\nAuthorization: token {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        crate::bot::TOKEN,
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A pull request's deployment whose health check fails rolls back: its status on GitHub
/// starts with the reason and fits in 140 characters, and the reply says "Rolled back:"
/// with the reason. Then `/rollback … --reason` returns to v1, and both the reply and the
/// rollback's status carry that reason.
fn a_rollback_says_why_on_github(db: TestDb) {
    let short_pr_sha = &PR_SHA[..12];
    let bot = Bot::start_configured(db, OK_SCRIPT, &health(short_pr_sha));
    bot.fake.set_permission("acme/web", "octocat", "write");
    for (n, (tag, sha)) in [("v1.0.0", SHA), ("v1.1.0", SECOND_SHA)]
        .into_iter()
        .enumerate()
    {
        let (_, answer) = bot.send("push", &tag_push(tag, sha), &format!("tag-{n}"));
        let id = answer["deployments"][0].as_str().unwrap().to_string();
        assert_eq!(bot.wait_final(&id).state, DeployState::Succeeded);
    }

    bot.open_pull(42, PR_SHA, false, "open");
    let (_, status, answer) = bot.comment(42, "octocat", "/deploy production", "deploy-1");
    assert_eq!(status, 202, "{answer}");
    wait_until(
        "the pull request's deployment",
        Duration::from_secs(30),
        || bot.deployments("web-production").len() == 3,
    );
    let d = bot.deployments("web-production").remove(0);
    let d = bot.wait_final(&d.id.to_string());
    assert_eq!(d.state, DeployState::RolledBack, "{d:#?}");
    assert!(
        d.error.starts_with("health check failed: command /bin/sh"),
        "{}",
        d.error
    );
    assert!(
        d.error.chars().count() > 140,
        "the reason is long: {}",
        d.error
    );

    let description = wait_status(&bot, PR_SHA, "failure");
    assert!(
        description.chars().count() <= 140,
        "{} characters: {description}",
        description.chars().count()
    );
    let shown = description
        .strip_prefix("v3 rolled back: ")
        .unwrap_or_else(|| panic!("{description}"));
    let start = shown.trim_end_matches('…');
    assert!(start.len() > 60, "{description}");
    assert!(d.error.starts_with(start), "{description} / {}", d.error);
    assert!(description.ends_with('…'), "{description}");
    // The fake answers a longer description as GitHub does.
    let github_id = newest(&bot, PR_SHA).unwrap().id;
    assert_eq!(post_status(&bot, github_id, &d.error), 422);

    let reply = wait_reply(&bot, 42, "**Rolled back:**");
    assert!(
        reply.contains(&format!("**Rolled back:** `{}`", d.error)),
        "{reply}"
    );
    assert!(
        reply.contains("⚠️ Deployment of **v3** to **production**"),
        "{reply}"
    );

    let why = "v3's checkout smoke test fails for @acme/payments";
    let command = format!("/rollback production 1 --reason {why}");
    let (_, status, answer) = bot.comment(42, "octocat", &command, "rollback-1");
    assert_eq!(status, 202, "{answer}");
    let reply = wait_reply(&bot, 42, "Rollback of **production** to **v1** succeeded");
    assert!(reply.contains(&format!("Reason: `{why}`")), "{reply}");
    let description = wait_status(&bot, SHA, "success");
    assert_eq!(description, format!("restored v1: {why}"));
}

both_backends_owned!(a_rollback_says_why_on_github);
