//! Reloading the configuration of the real `deploybot serve` without a restart, on SQLite
//! and PostgreSQL: `deploybot reload` (an admin token) and SIGHUP put a new file in force
//! for new work — tokens, webhook secrets, instances, health checks — while a deployment
//! running at the time finishes under the configuration it started with; a removed
//! instance keeps its history and has its queued deployments cancelled; an invalid file
//! is refused whole, named on /readyz and in the metrics, and the old one stays.

#[allow(dead_code)]
#[path = "github/bot.rs"]
mod bot;
#[path = "common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use bot::{Bot, push, wait_until};
use common::TestDb;
use deploybot::deploy::DeployState;
use deploybot::github::webhook::signature;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// web-production's deploy command: slow enough to be running while the file is reloaded.
const SCRIPT: &str = "sleep 3; echo \"image=$DEPLOY_IMAGE\"";

const ADMIN: &str = "admin-token-for-reload";
const CI: &str = "ci-token-removed-by-reload";
const CI2: &str = "ci-token-added-by-reload";
const NARROW: &str = "admin-token-of-some-instances";
const ROTATED: &str = "rotated-webhook-secret";

fn token(name: &str, secret: &str, role: &str, extra: &str) -> String {
    format!(
        "[[api.tokens]]\nname = \"{name}\"\ntenant = \"acme\"\nrole = \"{role}\"\nsha256 = \"{}\"\n{extra}\n",
        hex::encode(Sha256::digest(secret.as_bytes()))
    )
}

fn tokens() -> String {
    token("ops", ADMIN, "admin", "")
        + &token("ci", CI, "deploy", "")
        + &token("narrow", NARROW, "admin", "instances = [\"web-*\"]")
}

fn bearer(bot: &Bot, method: &str, path: &str, secret: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {secret}");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    bot.call(
        method,
        path,
        &[("Authorization", auth.as_str())],
        body.as_bytes(),
    )
}

fn deploy(bot: &Bot, secret: &str, instance: &str, image: &str) -> (u16, Value) {
    bearer(
        bot,
        "POST",
        &format!("/v1/instances/{instance}/deploy"),
        secret,
        Some(json!({"image": image})),
    )
}

fn config_path(bot: &Bot) -> std::path::PathBuf {
    bot.dir().join("deploybot.toml")
}

/// The file as the test wrote it, changed: the webhook secret rotated, token `ci` replaced
/// by `ci2`, a failing health check on web-production, web-staging removed and
/// web-canary added.
fn changed_file(original: &str) -> String {
    let (head, staging) = original
        .split_once("[[instances]]\nname = \"web-staging\"")
        .expect("the file has web-staging");
    assert!(staging.contains("kind = \"noop\""));
    head.replace(
        "webhook_secrets = [\"webhook-secret\", \"the-previous-secret\"]",
        &format!("webhook_secrets = [\"{ROTATED}\"]"),
    )
    .replace(&token("ci", CI, "deploy", ""), &token("ci2", CI2, "deploy", ""))
    .replace(
        "environment_url = \"https://web.acme.dev\"\n",
        "environment_url = \"https://web.acme.dev\"\n[instances.health]\ncommand = [\"/bin/false\"]\ninterval = \"100ms\"\ndeadline = \"1s\"\n",
    ) + "[[instances]]\nname = \"web-canary\"\nrepo = \"acme/web\"\nenvironment = \"canary\"\nimage = \"ghcr.io/acme/web:{sha}\"\nstrategy = \"recreate\"\n[instances.provider]\nkind = \"noop\"\n"
}

/// `deploybot reload` against the bot with `secret`: exit code, stdout, stderr.
fn reload_cli(bot: &Bot, secret: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(["reload", "--url", &format!("http://127.0.0.1:{}", bot.port)])
        .env("DEPLOYBOT_TOKEN", secret)
        .env_remove("DEPLOYBOT_CONFIG")
        .env_remove("DEPLOYBOT_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metrics(bot: &Bot) -> String {
    bot.get_text("/metrics")
}

fn signed(bot: &Bot, secret: &str, sha: &str, delivery: &str) -> (u16, Value) {
    let body = serde_json::to_vec(&push("refs/heads/main", sha, "octocat")).unwrap();
    let sig = signature::sign(secret.as_bytes(), &body);
    bot.post(
        "/webhooks/github",
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
        ],
        &body,
    )
}

/// A new file, put in force by `deploybot reload`, reaches new work only.
fn a_reloaded_file_reaches_new_work_and_spares_the_running_deployment(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, &tokens());
    // web-staging's pushes wait behind a lock: a queued deployment the reload will cancel.
    let (status, answer) = bearer(
        &bot,
        "PUT",
        "/v1/instances/web-staging/lock",
        ADMIN,
        Some(json!({"reason": "hold pushes"})),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = bot.send("push", &push("refs/heads/main", bot::SHA, "octocat"), "p1");
    assert_eq!(status, 202, "{answer}");
    let queued = answer["deployments"][0].as_str().unwrap().to_string();
    // A deployment of web-production is running when the file changes.
    let (status, running) = deploy(&bot, CI, "web-production", "ghcr.io/acme/web:one");
    assert_eq!(status, 201, "{running}");
    let running = running["id"].as_str().unwrap().to_string();
    wait_until("the deployment to run", Duration::from_secs(30), || {
        bot.deployment(&running).state == DeployState::Running
    });

    let original = std::fs::read_to_string(config_path(&bot)).unwrap();
    std::fs::write(config_path(&bot), changed_file(&original)).unwrap();
    let (code, stdout, stderr) = reload_cli(&bot, ADMIN);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for needle in [
        "added: web-canary",
        "removed (history kept): web-staging",
        &queued,
    ] {
        assert!(stdout.contains(needle), "{needle} in {stdout}");
    }

    // The running deployment finishes under the file it started with: no health check.
    assert_eq!(bot.wait_final(&running).state, DeployState::Succeeded);
    // New work gets the new file: web-production's health check now fails.
    let (status, next) = deploy(&bot, CI2, "web-production", "ghcr.io/acme/web:two");
    assert_eq!(status, 201, "{next}");
    let next = bot.wait_final(next["id"].as_str().unwrap());
    assert_ne!(next.state, DeployState::Succeeded, "{next:?}");

    // Tokens: the removed one is refused, the added one works.
    let (status, answer) = deploy(&bot, CI, "web-production", "ghcr.io/acme/web:x");
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = deploy(&bot, CI2, "web-canary", "ghcr.io/acme/web:canary");
    assert_eq!(status, 201, "{answer}");

    // Webhook secrets: the old one no longer verifies, the rotated one does.
    let (status, _) = signed(&bot, bot::SECRET, &format!("{:040x}", 2), "p2");
    assert_eq!(status, 401);
    let (status, answer) = signed(&bot, ROTATED, &format!("{:040x}", 3), "p3");
    assert!((200..300).contains(&status), "{answer}");

    // The removed instance: its queued deployment cancelled with the reason, its history
    // readable, and new deployments to it refused naming why.
    let cancelled = bot.deployment(&queued);
    assert_eq!(cancelled.state, DeployState::Cancelled);
    assert_eq!(
        cancelled.error,
        "instance web-staging was removed from the configuration"
    );
    let (status, answer) = bearer(
        &bot,
        "GET",
        &format!("/v1/deployments/{queued}"),
        ADMIN,
        None,
    );
    assert_eq!(
        (status, &answer["state"]),
        (200, &json!("cancelled")),
        "{answer}"
    );
    let (status, answer) = bearer(
        &bot,
        "GET",
        "/v1/instances/web-staging/deployments",
        ADMIN,
        None,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["items"].as_array().unwrap().len(), 1, "{answer}");
    let (status, answer) = deploy(&bot, CI2, "web-staging", "ghcr.io/acme/web:old");
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer
            .to_string()
            .contains("no longer in the configuration"),
        "{answer}"
    );
    let audit = bearer(&bot, "GET", "/v1/audit", ADMIN, None).1.to_string();
    assert!(audit.contains("removed from the configuration"), "{audit}");
}

/// An invalid file is refused whole, by `deploybot reload` and by SIGHUP: the error is
/// named, /readyz and the metrics show it, and the configuration in force stays, until a
/// valid file is put in force by SIGHUP.
fn an_invalid_file_is_refused_whole_and_the_old_one_stays(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, &tokens());
    let original = std::fs::read_to_string(config_path(&bot)).unwrap();
    // Valid TOML up to a typo, and a token added: nothing of it may take effect.
    let invalid = original.replace(
        &token("ci", CI, "deploy", ""),
        &token("ci2", CI2, "deploy", ""),
    ) + "\n[[instances]]\nname = \"broken\"\nrepo = \"acme/web\"\nenvironment = \"x\"\nimage = \"i\"\nstrategy = \"sideways\"\n";
    std::fs::write(config_path(&bot), &invalid).unwrap();
    let (code, stdout, stderr) = reload_cli(&bot, ADMIN);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("invalid_config"), "{stderr}");
    assert!(stderr.contains("sideways"), "{stderr}");
    assert!(
        stderr.contains("the configuration in force stays"),
        "{stderr}"
    );

    let (status, ready) = bot.get("/readyz");
    assert_eq!(status, 200, "still serving: {ready}");
    let detail = ready["config"].as_str().unwrap();
    assert!(
        detail.contains("refused") && detail.contains("sideways"),
        "{ready}"
    );
    let text = metrics(&bot);
    assert!(text.contains("deploybot_config_reload_refused 1"), "{text}");
    assert!(
        text.contains("deploybot_config_reloads_total{result=\"refused\"} 1"),
        "{text}"
    );

    // The old file is in force: the old token works, the new one does not.
    assert_eq!(deploy(&bot, CI2, "web-production", "x:1").0, 401);
    let (status, answer) = deploy(&bot, CI, "web-production", "ghcr.io/acme/web:ok");
    assert_eq!(status, 201, "{answer}");

    // SIGHUP with the file still invalid: refused again, nothing changes.
    bot.signal(libc::SIGHUP);
    wait_until("the second refusal", Duration::from_secs(10), || {
        metrics(&bot).contains("deploybot_config_reloads_total{result=\"refused\"} 2")
    });
    assert_eq!(deploy(&bot, CI2, "web-production", "x:1").0, 401);

    // Fixed, and SIGHUP: in force, and /readyz clears.
    let fixed = original.replace(
        &token("ci", CI, "deploy", ""),
        &token("ci2", CI2, "deploy", ""),
    );
    std::fs::write(config_path(&bot), fixed).unwrap();
    bot.signal(libc::SIGHUP);
    wait_until("the reload to apply", Duration::from_secs(10), || {
        deploy(&bot, CI2, "web-staging", "ghcr.io/acme/web:new").0 == 201
    });
    assert_eq!(bot.get("/readyz").1["config"], "ok");
    let text = metrics(&bot);
    assert!(text.contains("deploybot_config_reload_refused 0"), "{text}");
    assert!(
        text.contains("deploybot_config_reloads_total{result=\"applied\"} 1"),
        "{text}"
    );
    assert_eq!(deploy(&bot, CI, "web-production", "x:1").0, 401);
}

/// Only an admin token covering every instance may reload; the others cannot even make
/// the server read the file.
fn only_a_full_admin_token_may_reload(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, &tokens());
    let original = std::fs::read_to_string(config_path(&bot)).unwrap();
    std::fs::write(config_path(&bot), changed_file(&original)).unwrap();
    for (secret, status, code) in [
        (CI, 403, "forbidden"),
        (NARROW, 403, "forbidden"),
        ("not-a-token", 401, "unauthenticated"),
    ] {
        let (got, answer) = bearer(&bot, "POST", "/v1/admin/reload", secret, None);
        assert_eq!(
            (got, &answer["error"]["code"]),
            (status, &json!(code)),
            "{answer}"
        );
    }
    let (status, _) = bot.get("/readyz");
    assert_eq!(status, 200);
    assert!(metrics(&bot).contains("deploybot_config_reloads_total{result=\"applied\"} 0"));
    // Nothing was reloaded: the removed token still works.
    let (status, answer) = deploy(&bot, CI, "web-staging", "ghcr.io/acme/web:still");
    assert_eq!(status, 201, "{answer}");
}

/// When tenants share the file, a refusal shows one tenant's admin none of the others'
/// instances, nor does /readyz without the metrics token; the token's holder sees them.
fn a_refusal_names_no_other_tenants_instances(db: TestDb) {
    // SAFETY: set before the server starts; this test runs in a process of its own.
    unsafe { std::env::set_var("DEPLOYBOT_METRICS_TOKEN", "metrics-reader") };
    let globex = "[[api.tokens]]\nname = \"globex-ops\"\ntenant = \"globex\"\nrole = \"admin\"\nsha256 = \"00\"\n";
    let globex = globex.replace(
        "\"00\"",
        &format!("\"{}\"", hex::encode(Sha256::digest(b"globex-token"))),
    );
    let bot = Bot::start(db, SCRIPT, &(tokens() + &globex));
    let original = std::fs::read_to_string(config_path(&bot)).unwrap();
    let secret_plan = "\n[[instances]]\nname = \"globex-secret-merger\"\nrepo = \"globex/merger\"\nenvironment = \"x\"\nimage = \"i\"\nstrategy = \"sideways\"\n";
    std::fs::write(config_path(&bot), original + secret_plan).unwrap();
    let (status, answer) = bearer(&bot, "POST", "/v1/admin/reload", ADMIN, None);
    assert_eq!(
        (status, &answer["error"]["code"]),
        (422, &json!("invalid_config")),
        "{answer}"
    );
    assert!(
        answer
            .to_string()
            .contains("the configuration in force stays"),
        "{answer}"
    );
    assert!(
        !answer.to_string().contains("globex-secret-merger"),
        "{answer}"
    );
    let (status, ready) = bot.get("/readyz");
    assert_eq!(status, 200);
    let detail = ready["config"].as_str().unwrap();
    assert!(detail.contains("refused"), "{ready}");
    assert!(!detail.contains("globex-secret-merger"), "{ready}");
    let (_, ready) = bot.call(
        "GET",
        "/readyz",
        &[("Authorization", "Bearer metrics-reader")],
        b"",
    );
    assert!(
        ready["config"]
            .as_str()
            .unwrap()
            .contains("globex-secret-merger"),
        "{ready}"
    );
}

both_backends_owned!(
    a_refusal_names_no_other_tenants_instances,
    a_reloaded_file_reaches_new_work_and_spares_the_running_deployment,
    an_invalid_file_is_refused_whole_and_the_old_one_stays,
    only_a_full_admin_token_may_reload,
);
