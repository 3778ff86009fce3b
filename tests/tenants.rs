//! Webhooks of several tenants against the real `deploybot serve` (tests/github/bot.rs):
//! each tenant's deliveries verify only under its own secret, a repository name re-created
//! under another repository id is refused until the operator accepts it, and a delivery
//! that cannot be stored in time is answered 503 before GitHub gives up, so its
//! redelivery deploys once.

#[allow(dead_code)]
#[path = "github/bot.rs"]
mod bot;
#[path = "common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bot::{Bot, push, wait_until};
use common::TestDb;
use deploybot::deploy::DeployState;
use deploybot::github::webhook::signature;
use serde_json::Value;

const SCRIPT: &str = "echo \"image=$DEPLOY_IMAGE\"";

/// Sets a variable the server child inherits. Each test runs in a process of its own
/// (nextest), and every name here is used by one test only.
fn export(name: &str, value: &str) {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var(name, value) };
}

/// `body` as GitHub sends it for `event`, signed with `secret`.
fn send_signed_with(
    bot: &Bot,
    secret: &str,
    event: &str,
    body: &Value,
    delivery: &str,
) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let sig = signature::sign(secret.as_bytes(), &body);
    bot.post(
        "/webhooks/github",
        &[
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
        ],
        &body,
    )
}

/// A push to `repo`'s main branch.
fn push_to(repo: &str, sha: &str) -> Value {
    let mut v = push("refs/heads/main", sha, "octocat");
    let (owner, name) = repo.split_once('/').unwrap();
    v["repository"]["full_name"] = repo.into();
    v["repository"]["name"] = name.into();
    v["repository"]["owner"]["login"] = owner.into();
    v
}

/// A push to acme/web's main branch as GitHub sends it for repository id `id`.
fn push_with_repository_id(sha: &str, id: i64) -> Value {
    let mut v = push("refs/heads/main", sha, "octocat");
    v["repository"]["id"] = id.into();
    v
}

fn message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or_default()
}

fn metrics_text(bot: &Bot) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", bot.port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

// ---------------------------------------------------------------------------------------

/// acme and globex each have their webhook secret. Whoever holds globex's secret (or the
/// shared one) cannot push to acme/web: 401 naming acme as the tenant whose secret must
/// sign it, and nothing deploys. acme's new and old secrets (rotation) both work, and
/// globex's organization ping, which names no repository, is answered.
fn a_tenants_secret_cannot_sign_another_tenants_repository(db: TestDb) {
    export("ACME_WEBHOOK_SECRET", "acme-new, acme-old");
    export("GLOBEX_WEBHOOK_SECRET", "globex-secret");
    let tenants = "\n[[tenants]]\nname = \"acme\"\nwebhook_secret_env = \"ACME_WEBHOOK_SECRET\"\n\n\
                   [[tenants]]\nname = \"globex\"\nwebhook_secret_env = \"GLOBEX_WEBHOOK_SECRET\"\n";
    let bot = Bot::start(db, SCRIPT, tenants);

    let forged = push_to("acme/web", &format!("{:040x}", 1));
    for (n, secret) in ["globex-secret", bot::SECRET].into_iter().enumerate() {
        let (status, answer) =
            send_signed_with(&bot, secret, "push", &forged, &format!("forged-{n}"));
        assert_eq!(status, 401, "signed with {secret}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_signature");
        assert!(
            message(&answer).contains("does not match the secret of tenant \"acme\""),
            "{answer}"
        );
        assert!(message(&answer).contains("ACME_WEBHOOK_SECRET"), "{answer}");
        assert!(!message(&answer).contains(secret), "{answer}");
        assert!(!message(&answer).contains("acme-new"), "{answer}");
    }
    assert!(bot.deployments("web-staging").is_empty());

    // Rotation: the new secret and the old one both verify acme's deliveries.
    for (n, secret) in ["acme-new", "acme-old"].into_iter().enumerate() {
        let sha = format!("{:040x}", 10 + n);
        let (status, answer) = send_signed_with(
            &bot,
            secret,
            "push",
            &push_to("acme/web", &sha),
            &format!("acme-{n}"),
        );
        assert_eq!(status, 202, "signed with {secret}: {answer}");
        assert_eq!(
            answer["deployments"].as_array().unwrap().len(),
            1,
            "{answer}"
        );
    }
    assert_eq!(bot.deployments("web-staging").len(), 2);

    // globex's own deliveries verify under its secret, not acme's.
    let globex = push_to("globex/api", &format!("{:040x}", 20));
    let (status, answer) = send_signed_with(&bot, "acme-new", "push", &globex, "globex-0");
    assert_eq!(status, 401, "{answer}");
    assert!(message(&answer).contains("tenant \"globex\""), "{answer}");
    let (status, answer) = send_signed_with(&bot, "globex-secret", "push", &globex, "globex-1");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "ignored", "{answer}");

    // An organization webhook's ping names no repository, only the organization.
    let mut ping = bot::fixture("ping");
    ping.as_object_mut().unwrap().remove("repository");
    ping["organization"] = serde_json::json!({"login": "globex", "id": 99});
    let (status, answer) = send_signed_with(&bot, "globex-secret", "ping", &ping, "ping-org");
    assert_eq!(
        (status, &answer["status"]),
        (200, &Value::from("pong")),
        "{answer}"
    );
    let (status, _) = send_signed_with(&bot, "acme-new", "ping", &ping, "ping-org-2");
    assert_eq!(status, 401);
}

/// With a [[tenants]] entry for every instance's tenant, serve starts without
/// DEPLOYBOT_WEBHOOK_SECRET; `config check` names a tenant whose variable is not set, and
/// serve refuses to start naming it.
#[test]
fn serve_needs_only_tenant_secrets_and_config_check_names_a_tenant_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("deploybot.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}\"\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[tenants]]\nname = \"acme\"\nwebhook_secret_env = \"ACME_HOOK_SECRET_FOR_CHECK\"\n\n\
             [[instances]]\nname = \"web\"\nrepo = \"acme/web\"\nenvironment = \"production\"\n\
             image = \"ghcr.io/acme/web:{{sha}}\"\n[instances.provider]\nkind = \"noop\"\n",
            dir.path().join("bot.db").display()
        ),
    )
    .unwrap();
    let deploybot = |args: &[&str], secret: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deploybot"));
        command
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
            .env_remove("DATABASE_URL")
            .env_remove("DEPLOYBOT_LISTEN")
            .env_remove("ACME_HOOK_SECRET_FOR_CHECK");
        if let Some(secret) = secret {
            command.env("ACME_HOOK_SECRET_FOR_CHECK", secret);
        }
        command
    };

    let check = deploybot(&["config", "check"], None).output().unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{stderr}");
    assert!(stderr.contains("tenant \"acme\""), "{stderr}");
    assert!(stderr.contains("ACME_HOOK_SECRET_FOR_CHECK"), "{stderr}");
    let check = deploybot(&["config", "check"], Some("s3cret"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let refused = deploybot(&["serve"], None).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("ACME_HOOK_SECRET_FOR_CHECK"), "{stderr}");

    let mut serving = deploybot(&["serve"], Some("s3cret"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("serve to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let _ = serving.kill();
    let _ = serving.wait();
}

/// acme/web is first seen as repository 186853002 and deploys. Then a delivery names
/// acme/web with repository id 999 (the name deleted and re-created by someone else): 409
/// telling the operator how to accept it, counted in /metrics, and nothing deploys. After
/// `deploybot repos accept acme/web` the same delivery, redelivered, deploys; the old id
/// is now the stranger.
fn a_repository_recreated_under_the_same_name_is_refused_until_accepted(db: TestDb) {
    let bot = Bot::start(db, SCRIPT, "");
    let original = 186_853_002;
    let (status, answer) = bot.send(
        "push",
        &push_with_repository_id(&format!("{:040x}", 1), original),
        "first",
    );
    assert_eq!(status, 202, "{answer}");
    assert_eq!(bot.deployments("web-staging").len(), 1);

    let impostor = push_with_repository_id(&format!("{:040x}", 2), 999);
    let (status, answer) = bot.send("push", &impostor, "impostor");
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "repository_replaced");
    for part in [
        "acme/web",
        "999",
        "186853002",
        "deploybot repos accept acme/web",
    ] {
        assert!(message(&answer).contains(part), "{part}: {answer}");
    }
    assert_eq!(bot.deployments("web-staging").len(), 1);
    assert!(
        metrics_text(&bot)
            .contains(r#"deploybot_webhooks_total{event="push",outcome="repository_replaced"} 1"#),
        "{}",
        metrics_text(&bot)
    );

    let accepted = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(["repos", "accept", "acme/web", "--config"])
        .arg(bot.dir().join("deploybot.toml"))
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&accepted.stdout);
    assert!(
        accepted.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert!(stdout.contains("186853002"), "{stdout}");

    let (status, answer) = bot.send("push", &impostor, "impostor");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["deployments"].as_array().unwrap().len(),
        1,
        "{answer}"
    );
    let (status, answer) = bot.send(
        "push",
        &push_with_repository_id(&format!("{:040x}", 3), original),
        "old-id",
    );
    assert_eq!(status, 409, "{answer}");
    assert_eq!(bot.deployments("web-staging").len(), 2);
}

/// The database holding every write to the deliveries: on SQLite another connection holds
/// the write lock; on PostgreSQL another session holds an exclusive lock on the table.
enum Outage {
    Sqlite(common::Sql),
    Postgres(diesel::PgConnection),
}

impl Outage {
    fn begin(db: &TestDb) -> Outage {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        if db.url.starts_with("sqlite://") {
            let mut sql = common::Sql::open(&db.url);
            sql.execute("BEGIN EXCLUSIVE");
            Outage::Sqlite(sql)
        } else {
            let mut conn = diesel::PgConnection::establish(&db.url).unwrap();
            conn.batch_execute("BEGIN; LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
                .unwrap();
            Outage::Postgres(conn)
        }
    }

    fn end(self) {
        use diesel::connection::SimpleConnection;
        match self {
            Outage::Sqlite(mut sql) => {
                sql.execute("COMMIT");
            }
            Outage::Postgres(mut conn) => conn.batch_execute("COMMIT").unwrap(),
        }
    }
}

/// A push while the database is away gets its 503 (with Retry-After) from a client that
/// waits 9 s, as GitHub waits 10 s; nothing was stored, so once the database is back the
/// same delivery, redelivered, is accepted and deploys exactly once.
fn a_push_while_the_database_is_away_gets_503_before_github_gives_up(db: TestDb) {
    use std::io::{Read, Write};
    let bot = Bot::start(db, SCRIPT, "");
    let body =
        serde_json::to_vec(&push("refs/heads/main", &format!("{:040x}", 7), "octocat")).unwrap();
    let request = |delivery: &str| {
        let mut head = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\nX-GitHub-Event: push\r\n\
             X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {}\r\n\r\n",
            body.len(),
            signature::sign(bot::SECRET.as_bytes(), &body)
        )
        .into_bytes();
        head.extend_from_slice(&body);
        head
    };
    let outage = Outage::begin(&bot.db);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", bot.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(9)))
        .unwrap();
    stream.write_all(&request("while-away")).unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(read.is_ok(), "no answer within 9 s: {read:?} {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("\r\nretry-after: "),
        "{answer}"
    );
    assert!(answer.contains("redeliver"), "{answer}");
    // A push to a repository no instance is configured for is bounded the same way.
    let mut other = push("refs/heads/main", &format!("{:040x}", 8), "octocat");
    other["repository"]["full_name"] = "acme/other".into();
    let other = serde_json::to_vec(&other).unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", bot.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(9)))
        .unwrap();
    let mut request = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: other-while-away\r\nX-Hub-Signature-256: {}\r\n\r\n",
        other.len(),
        signature::sign(bot::SECRET.as_bytes(), &other)
    )
    .into_bytes();
    request.extend_from_slice(&other);
    stream.write_all(&request).unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(read.is_ok(), "no answer within 9 s: {read:?} {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    outage.end();

    let started = Instant::now();
    let (status, answer) = loop {
        let (status, answer) = bot.send(
            "push",
            &push("refs/heads/main", &format!("{:040x}", 7), "octocat"),
            "while-away",
        );
        if status != 503 || started.elapsed() > Duration::from_secs(30) {
            break (status, answer);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(status, 202, "{answer}");
    let created = answer["deployments"].as_array().unwrap();
    assert_eq!(created.len(), 1, "{answer}");
    let done = bot.wait_final(created[0].as_str().unwrap());
    assert_eq!(done.state, DeployState::Succeeded);
    let (status, answer) = bot.send(
        "push",
        &push("refs/heads/main", &format!("{:040x}", 7), "octocat"),
        "while-away",
    );
    assert_eq!(
        (status, &answer["status"]),
        (200, &Value::from("duplicate"))
    );
    assert_eq!(bot.deployments("web-staging").len(), 1);
}

both_backends_owned!(
    a_tenants_secret_cannot_sign_another_tenants_repository,
    a_repository_recreated_under_the_same_name_is_refused_until_accepted,
    a_push_while_the_database_is_away_gets_503_before_github_gives_up,
);
