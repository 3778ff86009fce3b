//! A NUL character (U+0000) never costs a log, a 500 or a lost delivery. PostgreSQL text
//! cannot hold it and SQLite can, so deploybot makes both answer the same: log lines and
//! GitHub payloads carry U+FFFD in its place, and the API refuses it naming the field.
//! Against the real server, the fake GitHub and both databases.

#[allow(dead_code)]
#[path = "github/bot.rs"]
mod bot;
#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use bot::{Bot, PR_SHA, SHA, fixture, push, wait_until};
use common::TestDb;
use deploybot::deploy::{DeployState, LogStore, Store};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const API_TOKEN: &str = "nul-test-token";

fn api_token() -> String {
    format!(
        "\n[[api.tokens]]\nname = \"nul\"\ntenant = \"acme\"\nsha256 = \"{}\"\n",
        hex::encode(Sha256::digest(API_TOKEN.as_bytes()))
    )
}

/// A tag push of `tag` at `commit`, as GitHub sends it.
fn tag_push(tag: &str, commit: &str) -> Value {
    let mut v = fixture("push_tag");
    v["ref"] = format!("refs/tags/{tag}").into();
    v["after"] = commit.into();
    v["head_commit"]["id"] = commit.into();
    v
}

/// An API call with the test token, its raw `body` sent as JSON: (status, answer).
fn call(bot: &Bot, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = common::http(bot.port, method, path, Some(API_TOKEN), body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A deploy script prints `binary\0output`: the line is stored with U+FFFD in place of the
/// NUL, and the lines around it and deploybot's own lines are all stored too.
fn a_deploy_printing_a_nul_byte_keeps_its_whole_log(db: TestDb) {
    let bot = Bot::start(
        db,
        "echo before-the-nul; printf 'binary\\0output\\n'; echo after-the-nul",
        "",
    );
    let (status, answer) = bot.send("push", &tag_push("v1", SHA), "nul-log");
    assert_eq!(status, 202, "{answer}");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    let done = bot.wait_final(&id);
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);
    let mut lines = Vec::new();
    wait_until("the log to be stored", Duration::from_secs(30), || {
        lines = bot.db.store.read_logs("acme", done.id, 0, 1000).unwrap();
        lines.iter().any(|l| l.line == "after-the-nul")
    });
    let text: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.stream.as_str(), l.line.as_str()))
        .collect();
    assert!(text.contains(&("stdout", "before-the-nul")), "{text:?}");
    assert!(
        text.contains(&("stdout", "binary\u{FFFD}output")),
        "{text:?}"
    );
    assert!(text.iter().any(|(s, _)| *s == "deploybot"), "{text:?}");
    assert!(!text.iter().any(|(_, l)| l.contains('\0')), "{text:?}");
}

/// A NUL in a path segment or a string field of the API is a 400 naming it, never a 500
/// and never a different answer on SQLite.
fn the_api_refuses_a_nul_naming_where_it_is(db: TestDb) {
    let bot = Bot::start(db, "true", &api_token());
    let refused = [
        ("GET", "/v1/instances/%00/deployments", "", "instance"),
        ("GET", "/v1/instances/web%00/releases", "", "instance"),
        (
            "POST",
            "/v1/instances/%00/deploy",
            r#"{"image":"ghcr.io/acme/web:1"}"#,
            "instance",
        ),
        ("POST", "/v1/instances/web%00/rollback", "{}", "instance"),
        ("GET", "/v1/deployments/%00", "", "id"),
        ("GET", "/v1/releases/%00", "", "id"),
        ("GET", "/v1/deployments/%00/logs", "", "id"),
        (
            "GET",
            "/v1/instances/web-production/deployments?cursor=%00",
            "",
            "cursor",
        ),
        (
            "POST",
            "/v1/instances/web-production/deploy",
            r#"{"image":"img\u0000x"}"#,
            "field `image`",
        ),
        (
            "POST",
            "/v1/instances/web-production/deploy",
            r#"{"image":"ghcr.io/acme/web:1","notes":"n\u0000"}"#,
            "field `notes`",
        ),
        (
            "POST",
            "/v1/instances/web-production/deploy",
            r#"{"image":"ghcr.io/acme/web:1","strategy":"canary\u0000"}"#,
            "field `strategy`",
        ),
        (
            "POST",
            "/v1/instances/web-production/deploy",
            r#"{"image":"ghcr.io/acme/web:1","env":{"REGION":"eu\u0000"}}"#,
            "field `env.REGION`",
        ),
        (
            "POST",
            "/v1/instances/web-production/rollback",
            r#"{"to":"previous\u0000"}"#,
            "field `to`",
        ),
    ];
    for (method, path, body, names) in refused {
        let (status, answer) = call(&bot, method, path, body);
        assert!(
            status == 400 || status == 422,
            "{method} {path} {body}: {status} {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(names),
            "{method} {path} {body}: {message:?} does not name {names}"
        );
    }
    // The escaped backslash is the literal text `\u0000`, not a NUL.
    let (status, answer) = call(
        &bot,
        "POST",
        "/v1/instances/web-production/deploy",
        r#"{"image":"ghcr.io/acme/web:1","notes":"the text \\u0000"}"#,
    );
    assert_eq!(status, 201, "{answer}");
    let release: deploybot::deploy::ReleaseId =
        answer["release_id"].as_str().unwrap().parse().unwrap();
    let release = bot.db.store.get_release("acme", release).unwrap();
    assert_eq!(release.notes, "the text \\u0000");
    assert_eq!(bot.deployments("web-production").len(), 1);
}

/// A signed push whose sender's login holds a NUL deploys as any push does, the NUL
/// shown as U+FFFD.
fn a_push_whose_sender_login_holds_a_nul_deploys(db: TestDb) {
    let bot = Bot::start(db, "true", "");
    let (status, answer) = bot.send(
        "push",
        &push("refs/heads/main", SHA, "octo\u{0}cat"),
        "nul-sender",
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["deployments"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    let id = answer["deployments"][0].as_str().unwrap();
    let done = bot.wait_final(id);
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);
    let release = bot.db.store.get_release("acme", done.release_id).unwrap();
    assert!(
        release.notes.contains("@octo\u{FFFD}cat"),
        "{:?}",
        release.notes
    );
    // GitHub's redelivery of it is a duplicate, not a second deployment.
    let (status, answer) = bot.send(
        "push",
        &push("refs/heads/main", SHA, "octo\u{0}cat"),
        "nul-sender",
    );
    assert_eq!((status, &answer["status"]), (200, &json!("duplicate")));
}

/// A `/deploy production` comment with a NUL in its text, written by a login holding a
/// NUL, deploys the pull request's head as the same comment without them would; the
/// deployment names the commenter with U+FFFD in place of the NUL.
fn a_deploy_comment_holding_a_nul_deploys(db: TestDb) {
    let bot = Bot::start(db, "true", "");
    bot.fake
        .set_permission("acme/web", "octo\u{FFFD}cat", "write");
    bot.open_pull(42, PR_SHA, false, "open");
    let (comment, status, answer) = bot.comment(
        42,
        "octo\u{0}cat",
        "/deploy production\n\npasted: binary\u{0}output",
        "nul-comment",
    );
    assert_eq!(status, 202, "{answer}");
    wait_until("the comment's deployment", Duration::from_secs(30), || {
        !bot.deployments("web-production").is_empty()
    });
    let deployment = &bot.deployments("web-production")[0];
    let done = bot.wait_final(&deployment.id.to_string());
    assert_eq!(done.state, DeployState::Succeeded, "{}", done.error);
    assert_eq!(done.image, format!("ghcr.io/acme/web:{PR_SHA}"));
    let release = bot.db.store.get_release("acme", done.release_id).unwrap();
    assert!(
        release.notes.contains("@octo\u{FFFD}cat"),
        "{:?}",
        release.notes
    );
    wait_until("the 🚀 reaction", Duration::from_secs(30), || {
        bot.fake
            .reactions("acme/web", comment)
            .contains(&"rocket".to_string())
    });
}

/// Should a NUL ever reach the database, PostgreSQL's refusal is an invalid request (a
/// webhook answers 422), not "the database is unavailable" (503, redelivered in vain).
#[test]
fn postgres_refusing_a_nul_is_an_invalid_request_not_an_outage() {
    let db = TestDb::postgres();
    let refused = db.store.append_logs(
        "acme",
        deploybot::deploy::DeploymentId::new(),
        1,
        &[("stdout".to_string(), "binary\u{0}output".to_string())],
    );
    assert!(
        matches!(refused, Err(deploybot::deploy::Error::InvalidRequest(_))),
        "{refused:?}"
    );
}

both_backends_owned!(
    a_deploy_printing_a_nul_byte_keeps_its_whole_log,
    the_api_refuses_a_nul_naming_where_it_is,
    a_push_whose_sender_login_holds_a_nul_deploys,
    a_deploy_comment_holding_a_nul_deploys,
);
