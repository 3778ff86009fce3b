//! Reports and jobs stored by the version before typed work, row by row as it wrote them:
//! after the upgrade each kind is read and sent, and an item this version cannot read is
//! parked as failed, with the reason in its row and in the metrics, and does nothing else.

use std::time::Duration;

use deploybot::deploy::{DeployState, Deployment};
use deploybot::github::outbox::OutboxStore;
use deploybot::github::store::DeliveryStore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bot::{Bot, PR_SHA, SHA, fixture, pr_comment, wait_until};
use crate::common::{self, Sql, TestDb};

const OK_SCRIPT: &str = "echo deployed";

/// A commit a pull request moved to, recorded by a stored `job.pull_head`.
const NEW_HEAD: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";

/// Tenant acme's admin token, configured by [`api_tokens`].
const ADMIN_TOKEN: &str = "upgrade-admin-token-0123456789";
/// Tenant acme's read token, configured by [`api_tokens`].
const READ_TOKEN: &str = "upgrade-read-token-0123456789";

/// `[[api.tokens]]` for acme: an admin token and a read token.
fn api_tokens() -> String {
    [("root", ADMIN_TOKEN, "admin"), ("dash", READ_TOKEN, "read")]
        .iter()
        .map(|(name, secret, role)| {
            format!(
                "\n[[api.tokens]]\nname = \"{name}\"\ntenant = \"acme\"\nsha256 = \"{}\"\nrole = \"{role}\"\n",
                hex::encode(Sha256::digest(secret.as_bytes()))
            )
        })
        .collect()
}

/// One outbox row as the previous version wrote it: pending, due, never tried.
struct Row<'a> {
    key: &'a str,
    deployment: Option<&'a Deployment>,
    kind: &'a str,
    payload: String,
}

fn store_row(sql: &mut Sql, row: Row<'_>) {
    let at = "2000-01-01 00:00:00";
    let deployment = row
        .deployment
        .map_or("NULL".to_string(), |d| format!("'{}'", d.id));
    let payload = row.payload.replace('\'', "''");
    sql.execute(&format!(
        "INSERT INTO outbox (tenant_id, lane, ordering_key, deployment_id, kind, payload, state, \
         attempts, next_attempt_at, last_error, created_at, updated_at) \
         VALUES ('acme', 'acme/web', '{}', {deployment}, '{}', '{payload}', 'pending', 0, '{at}', '', '{at}', '{at}')",
        row.key, row.kind,
    ));
}

fn report<'a>(d: &'a Deployment, key: &'a str, kind: &'a str, payload: Value) -> Row<'a> {
    Row {
        key,
        deployment: Some(d),
        kind,
        payload: payload.to_string(),
    }
}

fn pull_item<'a>(kind: &'a str, payload: Value) -> Row<'a> {
    Row {
        key: "pull:acme/web#42",
        deployment: None,
        kind,
        payload: payload.to_string(),
    }
}

/// Rows left in any state but sent.
fn unsent(sql: &mut Sql) -> i64 {
    sql.count("SELECT COUNT(*) AS n FROM outbox WHERE state <> 'sent'")
}

/// A comment's deployment ran while GitHub refused its Deployment, so all its reports
/// were still queued when the server stopped. The queue is replaced by the rows the
/// previous version wrote for the same events (one row for each of the nine kinds), and
/// the upgraded server sends every one: GitHub gets the Deployment once with its three
/// statuses, the 🚀 and the outcome reply, the stored reaction and reply, the pull
/// request's new head is recorded, the tag is resolved and deployed, and `/help` is
/// answered.
pub fn reports_and_jobs_stored_by_the_previous_version_are_sent_after_the_upgrade(db: TestDb) {
    let mut bot = Bot::start(db, OK_SCRIPT, "");
    bot.fake.set_permission("acme/web", "octocat", "write");
    bot.open_pull(42, PR_SHA, false, "open");
    bot.fake.add_tag("acme/web", "v7.0.0", SHA, false);
    bot.fake
        .fail_next("POST", "/repos/acme/web/deployments", 10_000, 503, &[]);
    let comment = bot
        .fake
        .add_comment("acme/web", 42, "octocat", "/deploy production");
    let (status, answer) = bot.send(
        "issue_comment",
        &pr_comment(42, comment, "octocat", "/deploy production"),
        "up-1",
    );
    assert_eq!(status, 202, "{answer}");
    wait_until("the command's deployment", Duration::from_secs(30), || {
        bot.deployments("web-production").len() == 1
    });
    let d = bot.deployments("web-production").remove(0);
    assert_eq!(
        bot.wait_final(&d.id.to_string()).state,
        DeployState::Succeeded
    );
    wait_until("the 👀 on the comment", Duration::from_secs(30), || {
        bot.fake.reactions("acme/web", comment) == ["eyes"]
    });
    bot.kill9();
    assert!(bot.fake.deployments("acme/web").is_empty());

    let mut sql = bot.sql();
    sql.execute("DELETE FROM outbox WHERE state = 'pending'");
    let help = bot.fake.add_comment("acme/web", 42, "octocat", "/help");
    let key = d.id.to_string();
    for row in [
        report(&d, &key, "deployment.created", json!({})),
        report(
            &d,
            &key,
            "deployment.status",
            json!({"state": "pending", "message": "queued"}),
        ),
        report(
            &d,
            &key,
            "deployment.status",
            json!({"state": "running", "message": "started"}),
        ),
        report(
            &d,
            &key,
            "deployment.status",
            json!({"state": "succeeded", "message": ""}),
        ),
        report(
            &d,
            &key,
            "deployment.reaction",
            json!({"content": "rocket"}),
        ),
        report(
            &d,
            &key,
            "deployment.reply",
            json!({"state": "succeeded", "error": ""}),
        ),
        pull_item(
            "comment.reaction",
            json!({"repo": "acme/web", "comment_id": comment, "content": "heart", "installation_id": null}),
        ),
        pull_item(
            "comment.reply",
            json!({"repo": "acme/web", "issue": 42, "body": "Stored before the upgrade.", "installation_id": null}),
        ),
        pull_item(
            "job.pull_head",
            json!({"repo": "acme/web", "pr": 42, "head_sha": NEW_HEAD, "at": "2026-12-01T10:00:00Z"}),
        ),
        pull_item(
            "job.comment",
            json!({"repo": "acme/web", "pr": 42, "comment_id": help, "created_at": "2026-12-01T10:00:01Z",
                   "user": "octocat", "installation_id": null, "steps": [{"command": "help"}]}),
        ),
        Row {
            key: "tag:acme/web:v7.0.0",
            deployment: None,
            kind: "job.resolve_tag",
            payload: json!({"repo": "acme/web", "tag": "v7.0.0", "sender": "octocat",
                            "installation_id": null, "instances": ["web-production"]})
            .to_string(),
        },
    ] {
        store_row(&mut sql, row);
    }
    bot.fake.clear_faults();
    bot.restart();

    wait_until(
        "every stored item to be sent",
        Duration::from_secs(60),
        || bot.deployments("web-production").len() == 2 && unsent(&mut sql) == 0,
    );
    let github: Vec<_> = bot
        .fake
        .deployments("acme/web")
        .into_iter()
        .filter(|g| g.sha == PR_SHA)
        .collect();
    assert_eq!(github.len(), 1, "created once: {github:?}");
    // The tag's later deployment to production makes this one inactive.
    let states = github[0].states();
    assert_eq!(
        states[..3],
        ["queued", "in_progress", "success"],
        "{states:?}"
    );
    let reactions = bot.fake.reactions("acme/web", comment);
    for content in ["eyes", "rocket", "heart"] {
        assert!(reactions.iter().any(|r| r == content), "{reactions:?}");
    }
    let replies: Vec<String> = bot
        .fake
        .comments("acme/web", 42)
        .into_iter()
        .filter(|c| c.id != comment && c.id != help)
        .map(|c| c.body)
        .collect();
    assert_eq!(replies.len(), 3, "{replies:?}");
    for text in [
        "🚀 Deployment of **v1** to **production** succeeded",
        "Stored before the upgrade.",
        "Environments of acme/web",
    ] {
        assert!(
            replies.iter().any(|r| r.contains(text)),
            "{text}: {replies:?}"
        );
    }
    let heads = bot.db.store.pull_heads("acme", "acme/web", 42).unwrap();
    assert!(heads.iter().any(|h| h.head_sha == NEW_HEAD), "{heads:?}");
    let tagged = bot.deployments("web-production");
    assert!(
        tagged
            .iter()
            .any(|t| t.source.trigger == "tag v7.0.0 by @octocat (a10867b)"),
        "{tagged:?}"
    );
}

/// The value of one sample in the Prometheus text of `/metrics`.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

/// Three stored items this version cannot read: a status without its message, a kind no
/// version has, and a comment job naming a command this version lacks. Each ends
/// `failed`, its reason naming the kind and what is wrong, counted in the metrics (an
/// unknown kind under `unknown`); GitHub gets no status, no comment, and nothing deploys.
/// The tenant's admin lists the three, newest first, with their reasons, through the API
/// (another tenant's failed item is not among them); a read token may not.
pub fn stored_items_this_version_cannot_read_are_parked_as_failed(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, &api_tokens());
    let mut push = fixture("push_tag");
    push["ref"] = "refs/tags/v1.0.0".into();
    push["after"] = SHA.into();
    push["head_commit"]["id"] = SHA.into();
    let (status, answer) = bot.send("push", &push, "bad-1");
    assert_eq!(status, 202, "{answer}");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    assert_eq!(bot.wait_final(&id).state, DeployState::Succeeded);
    let mut sql = bot.sql();
    wait_until("the deployment's reports", Duration::from_secs(30), || {
        unsent(&mut sql) == 0
    });
    let d = bot.deployment(&id);
    let before = bot.fake.deployments("acme/web");
    assert_eq!(before[0].states(), ["queued", "in_progress", "success"]);

    let key = d.id.to_string();
    // Read leniently (a missing message taken as empty), this would send `success` again.
    store_row(
        &mut sql,
        report(&d, &key, "deployment.status", json!({"state": "succeeded"})),
    );
    store_row(
        &mut sql,
        report(&d, &key, "deployment.lock", json!({"content": "rocket"})),
    );
    store_row(
        &mut sql,
        pull_item(
            "job.comment",
            json!({"repo": "acme/web", "pr": 42, "comment_id": 5, "created_at": "2026-12-01T10:00:00Z",
                   "user": "octocat", "installation_id": null,
                   "steps": [{"command": "lock", "instance": "web-production"}]}),
        ),
    );
    wait_until(
        "the unreadable items to fail",
        Duration::from_secs(30),
        || sql.count("SELECT COUNT(*) AS n FROM outbox WHERE state = 'failed'") == 3,
    );

    let listed = bot.db.store.outbox_items("acme", d.id).unwrap();
    let failed: Vec<_> = listed.iter().filter(|i| i.state == "failed").collect();
    assert_eq!(failed.len(), 2, "{listed:?}");
    for (item, words) in failed.iter().zip([
        [
            "cannot read this stored report",
            "deployment.status",
            "message",
        ],
        [
            "cannot read this stored report",
            "\"deployment.lock\"",
            "unknown kind",
        ],
    ]) {
        for word in words {
            assert!(
                item.last_error.contains(word),
                "{word}: {}",
                item.last_error
            );
        }
    }
    #[derive(diesel::QueryableByName)]
    struct Error {
        #[diesel(sql_type = diesel::sql_types::Text)]
        last_error: String,
    }
    let job = sql.load::<Error>("SELECT last_error FROM outbox WHERE kind = 'job.comment'");
    for word in ["cannot read this stored report", "job.comment", "steps[0]"] {
        assert!(
            job[0].last_error.contains(word),
            "{word}: {}",
            job[0].last_error
        );
    }
    assert_eq!(bot.db.store.outbox_counts().unwrap(), (0, 3));

    let (status, metrics) = common::http(bot.port, "GET", "/metrics", None, "");
    assert_eq!(status, 200, "{metrics}");
    for kind in ["unknown", "deployment.status", "job.comment"] {
        let name = format!("deploybot_outbox_sent_total{{kind=\"{kind}\",result=\"failed\"}}");
        assert_eq!(sample(&metrics, &name), Some(1.0), "{name}:\n{metrics}");
    }
    assert_eq!(
        sample(&metrics, "deploybot_outbox_failed"),
        Some(3.0),
        "{metrics}"
    );

    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        bot.fake.deployments("acme/web"),
        before,
        "GitHub got nothing new"
    );
    assert!(bot.fake.comments("acme/web", 42).is_empty());
    assert_eq!(
        bot.deployments("web-production").len(),
        1,
        "nothing deployed"
    );
    the_api_lists_the_failed_items(&bot, &mut sql, &d);
}

/// `GET /v1/outbox/failed` with acme's admin token: the three unreadable items, newest
/// first, each naming its problem, and not globex's failed reply; a read token gets 403.
fn the_api_lists_the_failed_items(bot: &Bot, sql: &mut Sql, d: &Deployment) {
    let at = "2000-01-01 00:00:00";
    sql.execute(&format!(
        "INSERT INTO outbox (tenant_id, lane, ordering_key, deployment_id, kind, payload, state, \
         attempts, next_attempt_at, last_error, created_at, updated_at) \
         VALUES ('globex', 'globex/web', 'pull:globex/web#7', NULL, 'comment.reply', '{{}}', \
         'failed', 1, '{at}', 'globex reply refused', '{at}', '{at}')"
    ));
    let (status, body) = common::http(bot.port, "GET", "/v1/outbox/failed", Some(ADMIN_TOKEN), "");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let items = answer["items"].as_array().unwrap();
    let deployment = json!(d.id.to_string());
    for (item, (kind, deployment, problem)) in items.iter().zip([
        ("job.comment", &Value::Null, "steps[0]"),
        ("deployment.lock", &deployment, "unknown kind"),
        ("deployment.status", &deployment, "message"),
    ]) {
        assert_eq!(item["kind"], kind, "{item}");
        assert_eq!(item["state"], "failed", "{item}");
        assert_eq!(&item["deployment_id"], deployment, "{item}");
        assert!(item.get("payload").is_none(), "{item}");
        let error = item["last_error"].as_str().unwrap();
        for word in ["cannot read this stored report", kind, problem] {
            assert!(error.contains(word), "{word}: {error}");
        }
    }
    assert_eq!(items.len(), 3, "acme's three, not globex's: {answer}");

    let (status, body) = common::http(bot.port, "GET", "/v1/outbox/failed", Some(READ_TOKEN), "");
    assert_eq!(status, 403, "{body}");
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["error"]["code"], "forbidden", "{body}");
}

crate::both_backends_owned!(
    reports_and_jobs_stored_by_the_previous_version_are_sent_after_the_upgrade,
    stored_items_this_version_cannot_read_are_parked_as_failed,
);
