//! The command line as a person uses it: the real `deploybot` binary against a real
//! `deploybot serve` child process (noop provider, canary strategy), on SQLite and on
//! PostgreSQL. Webhooks come from `deploybot simulate`, everything else from the API
//! commands; every command is checked by its exit code and what it prints. Also the
//! command line without a server: configuration files named or missing, the help of every
//! flag, the exit-code classes, and `serve` on a port already in use.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDb;
use common::cli_run::Run;
use serde_json::Value;
use sha2::{Digest, Sha256};

const TOKEN: &str = "cli-test-token-4f1c2a9b7e";
/// A read-only token of the same tenant (name "dash").
const READ_TOKEN: &str = "cli-test-read-token-8d2e5a";
/// Another deploy token of the same tenant (name "other").
const OTHER_TOKEN: &str = "cli-test-other-token-19b7c4";
const SECRET: &str = "cli-test-webhook-secret";
/// No command may take longer than this; a hung `watch` fails the test instead of hanging it.
const COMMAND_LIMIT: Duration = Duration::from_secs(90);

const BIN: &str = env!("CARGO_BIN_EXE_deploybot");

/// Variables of the developer's shell that would change what the commands do.
const SCRUBBED: &[&str] = &[
    "DATABASE_URL",
    "DEPLOYBOT_CONFIG",
    "DEPLOYBOT_LISTEN",
    "DEPLOYBOT_PUBLIC_URL",
    "DEPLOYBOT_WEBHOOK_SECRET",
    "DEPLOYBOT_URL",
    "DEPLOYBOT_TOKEN",
    "GITHUB_TOKEN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let read_hash = hex::encode(Sha256::digest(READ_TOKEN.as_bytes()));
    let other_hash = hex::encode(Sha256::digest(OTHER_TOKEN.as_bytes()));
    let path = dir.join("deploybot.toml");
    std::fs::write(
        &path,
        format!(
            r#"listen = "127.0.0.1:{port}"
webhook_secrets = ["{SECRET}"]

[worker]
concurrency = 2
lease = "5s"

[[api.tokens]]
name = "cli-test"
tenant = "acme"
sha256 = "{hash}"

[[api.tokens]]
name = "dash"
tenant = "acme"
sha256 = "{read_hash}"
role = "read"

[[api.tokens]]
name = "other"
tenant = "acme"
sha256 = "{other_hash}"

[[instances]]
name = "web"
repo = "acme/web"
environment = "production"
image = "ghcr.io/acme/web:{{short_sha}}"
strategy = "canary"
on_push = ["main"]
on_tag = ["v*"]
api_env = ["LOG_LEVEL"]

[instances.provider]
kind = "noop"

[instances.canary]
steps = [50, 100]
pause = "300ms"

[[instances]]
name = "broken"
repo = "acme/api"
environment = "production"
image = "ghcr.io/acme/api:{{short_sha}}"
strategy = "recreate"

[instances.provider]
kind = "command"
run = ["false"]
timeout = "30s"
"#
        ),
    )
    .unwrap();
    path
}

/// `deploybot serve` as a child process; killed when dropped.
struct Server {
    child: Child,
    url: String,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(database_url: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = write_config(dir.path(), port);
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let mut command = Command::new(BIN);
        for name in SCRUBBED {
            command.env_remove(name);
        }
        let child = command
            .args(["serve", "--config"])
            .arg(&config)
            .env("DATABASE_URL", database_url)
            .env("DEPLOYBOT_LOG", "warn")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            config,
            dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("deploybot serve exited with {status}:\n{}", server.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "deploybot serve did not listen within 60 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Runs `deploybot ARGS` the way a person at a terminal in the server's directory would:
    /// DEPLOYBOT_URL, DEPLOYBOT_TOKEN and DEPLOYBOT_CONFIG set.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// Same with more variables; an empty value removes the variable.
    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let config = self.config.display().to_string();
        let mut all = vec![
            ("DEPLOYBOT_URL", self.url.as_str()),
            ("DEPLOYBOT_TOKEN", TOKEN),
            ("DEPLOYBOT_CONFIG", config.as_str()),
        ];
        all.extend_from_slice(env);
        run_in(self.dir.path(), args, &all)
    }
}

/// Runs `deploybot ARGS` in `dir` with the developer's variables scrubbed and `env` set
/// (an empty value removes the variable), within `COMMAND_LIMIT`.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = dir.join("out");
    let err = dir.join("err");
    let mut command = Command::new(BIN);
    for name in SCRUBBED {
        command.env_remove(name);
    }
    command.args(args).env("DEPLOYBOT_LOG", "warn");
    for (name, value) in env {
        if value.is_empty() {
            command.env_remove(name);
        } else {
            command.env(name, value);
        }
    }
    let mut child = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`deploybot {}` did not end within {COMMAND_LIMIT:?}; it printed:\n{}\n{}",
                args.join(" "),
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        args: args.join(" "),
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The deployment ids (`dep_` + 26 characters) in `text`, in order.
fn deployment_ids(text: &str) -> Vec<String> {
    text.match_indices("dep_")
        .filter_map(|(at, _)| text.get(at..at + 30))
        .filter(|id| id[4..].bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(str::to_string)
        .collect()
}

fn the_tour(db: &TestDb) {
    let server = Server::start(&db.url);

    // A new webhook is pinged by GitHub: the zen comes back.
    let ping = server.run(&["simulate", "ping", "--repo", "acme/web", "--json"]);
    let answer = ping.expect(0).json();
    assert_eq!(answer["status"], "pong", "{answer}");
    assert!(
        !answer["zen"].as_str().unwrap_or_default().is_empty(),
        "{answer}"
    );
    server
        .run(&["simulate", "ping", "--repo", "acme/web"])
        .expect(0)
        .stdout_has(&["200 OK", "\"status\": \"pong\"", "\"zen\":"]);

    // A push to main deploys.
    let push = server.run(&["simulate", "push", "--repo", "acme/web", "--branch", "main"]);
    push.expect(0).stdout_has(&[
        "push to main",
        "X-GitHub-Event: push",
        "202 Accepted",
        "\"status\": \"accepted\"",
        "follow it: deploybot watch dep_",
    ]);
    let pushed = deployment_ids(&push.stdout);
    assert!(!pushed.is_empty(), "{}", push.stdout);
    let pushed = pushed[0].clone();

    // The same delivery twice (GitHub's redelivery): the second deploys nothing.
    let first = server.run(&[
        "simulate",
        "push",
        "--repo",
        "acme/web",
        "--delivery",
        "redelivered-1",
        "--json",
    ]);
    let answer = first.expect(0).json();
    assert_eq!(answer["status"], "accepted", "{answer}");
    let redelivered = answer["deployments"][0].as_str().unwrap().to_string();
    server
        .run(&[
            "simulate",
            "push",
            "--repo",
            "acme/web",
            "--delivery",
            "redelivered-1",
        ])
        .expect(0)
        .stdout_has(&["200 OK", "\"status\": \"duplicate\"", "deploys nothing"]);

    // A branch no instance deploys is acknowledged and ignored.
    let feature = server.run(&[
        "simulate", "push", "--repo", "acme/web", "--branch", "feature", "--json",
    ]);
    let answer = feature.expect(0).json();
    assert_eq!(answer["status"], "ignored", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("feature"),
        "{answer}"
    );

    // A tag matching on_tag deploys the tagged commit.
    let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    let tag = server.run(&[
        "simulate", "tag", "--repo", "acme/web", "--tag", "v1.0.0", "--sha", sha, "--json",
    ]);
    let answer = tag.expect(0).json();
    assert_eq!(answer["status"], "accepted", "{answer}");
    let tagged = answer["deployments"][0].as_str().unwrap().to_string();

    // A /deploy comment on a pull request is accepted; it waits for GitHub (the commenter's
    // permission and the pull request's head), which this server has no credentials for.
    let comment = server.run(&[
        "simulate",
        "comment",
        "--repo",
        "acme/web",
        "--pr",
        "42",
        "--body",
        "/deploy production",
    ]);
    comment.expect(0).stdout_has(&[
        "comment \"/deploy production\" on #42 by @octocat",
        "X-GitHub-Event: issue_comment",
        "202 Accepted",
        "\"deployments\": []",
        "queued for GitHub",
    ]);

    // A webhook signed with another secret is refused: exit 1 with the server's reason.
    server
        .run(&[
            "simulate",
            "push",
            "--repo",
            "acme/web",
            "--secret",
            "not-the-secret",
        ])
        .expect(1)
        .stdout_has(&["401 Unauthorized", "bad_signature"])
        .stderr_has(&["refused the webhook", "does not match"]);

    // A deploy through the API, as JSON for scripts.
    let deploy = server.run(&[
        "deploy",
        "web",
        "--image",
        "ghcr.io/acme/web:manual",
        "--env",
        "LOG_LEVEL=debug",
        "--notes",
        "by hand",
        "--json",
    ]);
    let created = deploy.expect(0).json();
    assert_eq!(created["state"], "pending", "{created}");
    assert_eq!(created["image"], "ghcr.io/acme/web:manual");
    assert_eq!(created["env"]["LOG_LEVEL"], "debug");
    assert_eq!(created["initiator"], "cli-test");
    let manual = created["id"].as_str().unwrap().to_string();

    // watch follows it, behind the three queued before it, to the end.
    let watch = server.run(&["watch", &manual]);
    watch.expect(0).stdout_has(&[
        &format!("watching {manual}"),
        "noop: would start release v4",
        "% running",
        "[########################] 100% succeeded",
        &format!("✓ {manual} succeeded in "),
    ]);
    let log_at = watch.stdout.find("noop: would start").unwrap();
    let done_at = watch.stdout.find("100% succeeded").unwrap();
    assert!(
        log_at < done_at,
        "log lines come as they are written:\n{}",
        watch.stdout
    );

    // The list shows every deployment with its state, version and trigger.
    let list = server.run(&["deployments", "web"]);
    list.expect(0)
        .stdout_has(&["ID", "STATE", "VERSION", "IMAGE", "PROGRESS", "INITIATOR"]);
    for id in [&pushed, &redelivered, &tagged, &manual] {
        assert!(
            list.row(id).contains("succeeded"),
            "{id} has not succeeded:\n{}",
            list.stdout
        );
    }
    assert!(list.row(&manual).contains("v4"), "{}", list.stdout);
    assert!(
        list.row(&manual).contains("API (cli-test)"),
        "{}",
        list.stdout
    );
    assert!(list.row(&tagged).contains("tag v1.0.0"), "{}", list.stdout);
    assert!(
        list.row(&tagged).contains("ghcr.io/acme/web:6113728"),
        "{}",
        list.stdout
    );
    assert_eq!(
        deployment_ids(&list.stdout),
        vec![
            manual.clone(),
            tagged.clone(),
            redelivered.clone(),
            pushed.clone()
        ],
        "newest first"
    );

    // Pages: one at a time with a cursor, or all of them.
    let page = server.run(&["deployments", "web", "--limit", "3"]);
    page.expect(0).stdout_has(&[
        "showing 3 of 4",
        "deploybot deployments web --limit 3 --cursor ",
    ]);
    let page = server
        .run(&["deployments", "web", "--limit", "3", "--json"])
        .json();
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let rest = server
        .run(&[
            "deployments",
            "web",
            "--limit",
            "3",
            "--cursor",
            &cursor,
            "--json",
        ])
        .json();
    assert_eq!(rest["items"][0]["id"], pushed.as_str());
    let all = server
        .run(&["deployments", "web", "--all", "--limit", "1", "--json"])
        .json();
    assert_eq!(all["items"].as_array().unwrap().len(), 4, "{all}");
    assert_eq!(all["total"], 4);
    assert!(all.get("next_cursor").is_none(), "{all}");

    // Cancelling a finished deployment is refused: exit 1 with the server's 409 message.
    server.run(&["cancel", &manual]).expect(1).stderr_has(&[
        &format!("cannot cancel {manual}"),
        "cannot become cancelled",
        "HTTP 409",
    ]);

    // A wrong token is refused: exit 1 with the server's 401 message and what to check.
    server
        .run(&["instances", "--token", "wrong-token"])
        .expect(1)
        .stderr_has(&["HTTP 401", "not valid", "--token"]);
    // A read-only token lists but cannot deploy: exit 1 with the server's 403 message.
    server
        .run(&["instances", "--token", READ_TOKEN])
        .expect(0)
        .stdout_has(&["web"]);
    server
        .run(&["deploy", "web", "--image", "x", "--token", READ_TOKEN])
        .expect(1)
        .stderr_has(&["HTTP 403", "needs the deploy role; token 'dash' has read"]);
    server
        .run_with(&["deployments", "web"], &[("DEPLOYBOT_TOKEN", "")])
        .expect(1)
        .stderr_has(&["HTTP 401", "No token was given"]);

    // instances shows the active release.
    let instances = server.run(&["instances"]);
    instances.expect(0).stdout_has(&["NAME", "ACTIVE", "IMAGE"]);
    let web = instances.row("acme/web");
    assert!(
        web.contains("v4") && web.contains("ghcr.io/acme/web:manual"),
        "{}",
        instances.stdout
    );

    // Roll back to the previous release (the tag) and follow it in the same command.
    server
        .run(&["rollback", "web", "--watch"])
        .expect(0)
        .stdout_has(&["rollback dep_", "queued for web", "succeeded"]);
    let instances = server.run(&["instances", "--json"]).json();
    let web = &instances["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "web")
        .unwrap()["active_release"];
    assert_eq!(web["version"], 3, "{instances}");
    assert_eq!(web["commit_sha"], sha);
    let releases = server.run(&["releases", "web"]);
    releases
        .expect(0)
        .stdout_has(&["VERSION", "ACTIVE", "COMMIT"]);
    assert!(
        releases.row("v3 ").contains("active"),
        "{}",
        releases.stdout
    );
    assert!(
        releases.row("v3 ").contains("6113728"),
        "{}",
        releases.stdout
    );
    assert!(
        !releases.row("v4 ").contains("active"),
        "{}",
        releases.stdout
    );

    // A deployment that fails: watch exits 1 and says why.
    let broken = server
        .run(&[
            "deploy",
            "broken",
            "--image",
            "ghcr.io/acme/api:1",
            "--json",
        ])
        .json();
    let broken = broken["id"].as_str().unwrap().to_string();
    server
        .run(&["watch", &broken])
        .expect(1)
        .stdout_has(&[&format!("✗ {broken} failed")]);
    server
        .run(&["deploy", "nope", "--image", "x"])
        .expect(1)
        .stderr_has(&["cannot deploy nope", "HTTP 404"]);

    // Bad arguments: exit 2, naming the problem.
    server
        .run(&["deploy", "web", "--image", "x", "--url", "127.0.0.1:1"])
        .expect(2)
        .stderr_has(&["--url", "is not a URL", "http://"]);
    server
        .run(&["deploy", "web"])
        .expect(2)
        .stderr_has(&["--image"]);

    // Nothing listens: exit 3, naming the URL and how to start the server.
    let closed = format!("http://127.0.0.1:{}", free_port());
    server
        .run(&["instances", "--url", &closed])
        .expect(3)
        .stderr_has(&[&closed, "connection refused", "deploybot serve"]);
    server
        .run(&["simulate", "ping", "--repo", "acme/web", "--url", &closed])
        .expect(3)
        .stderr_has(&[&closed, "deploybot serve"]);
    // DEPLOYBOT_URL names the server for simulate as for the API commands.
    server
        .run_with(
            &["simulate", "ping", "--repo", "acme/web"],
            &[("DEPLOYBOT_URL", &closed)],
        )
        .expect(3)
        .stderr_has(&[&closed]);

    finds_the_server_without_a_url(&server);
}

/// Without --url and DEPLOYBOT_URL, every client command and simulate find the server the
/// same way: the configuration's public_url, else http:// and its listen address, with the
/// environment's overrides (DEPLOYBOT_LISTEN).
fn finds_the_server_without_a_url(server: &Server) {
    let no_url = [("DEPLOYBOT_URL", "")];
    server
        .run_with(&["instances"], &no_url)
        .expect(0)
        .stdout_has(&["acme/web"]);
    server
        .run_with(
            &["simulate", "ping", "--repo", "acme/web", "--json"],
            &no_url,
        )
        .expect(0);
    let listen = server.url.trim_start_matches("http://");
    let elsewhere = tempfile::tempdir().unwrap();
    // No configuration file there: the defaults, with DEPLOYBOT_LISTEN over them.
    let run = run_in(
        elsewhere.path(),
        &["deployments", "web"],
        &[("DEPLOYBOT_TOKEN", TOKEN), ("DEPLOYBOT_LISTEN", listen)],
    );
    run.expect(0).stdout_has(&["succeeded"]);
    // The configuration's public_url wins over its listen address.
    let other = elsewhere.path().join("other.toml");
    std::fs::write(
        &other,
        format!(
            "listen = \"127.0.0.1:1\"\npublic_url = \"{}/\"\n",
            server.url
        ),
    )
    .unwrap();
    let other = other.display().to_string();
    run_in(
        elsewhere.path(),
        &["simulate", "ping", "--repo", "acme/web", "--secret", SECRET],
        &[("DEPLOYBOT_CONFIG", &other)],
    )
    .expect(0)
    .stdout_has(&["200 OK", "pong"]);
    run_in(
        elsewhere.path(),
        &["instances", "--config", &other],
        &[("DEPLOYBOT_TOKEN", TOKEN)],
    )
    .expect(0)
    .stdout_has(&["acme/web"]);
}

#[test]
fn tour_on_sqlite() {
    the_tour(&TestDb::sqlite());
}

#[test]
fn tour_on_postgres() {
    the_tour(&TestDb::postgres());
}

/// `lock`, `locks`, `unlock` and `audit` through the binary: another token's deploy is
/// refused with exit 1 and the lock's holder and reason, and runs once unlocked.
fn locks_from_the_terminal(db: &TestDb) {
    let server = Server::start(&db.url);
    let other = [("DEPLOYBOT_TOKEN", OTHER_TOKEN)];

    server
        .run(&["lock", "web", "--for", "30m", "--reason", "incident 42"])
        .expect(0)
        .stdout_has(&["locked web", "token:cli-test", "incident 42", "until 20"]);
    server
        .run(&["locks"])
        .expect(0)
        .stdout_has(&["HOLDER", "token:cli-test", "incident 42"]);
    let instances = server.run(&["instances"]);
    assert!(
        instances
            .expect(0)
            .row("acme/web")
            .contains("token:cli-test"),
        "{}",
        instances.stdout
    );
    let refused = server.run_with(&["deploy", "web", "--image", "ghcr.io/acme/web:x"], &other);
    refused.expect(1).stderr_has(&[
        "cannot deploy web",
        "token:cli-test",
        "incident 42",
        "409 locked",
    ]);
    server
        .run_with(&["lock", "web"], &other)
        .expect(1)
        .stderr_has(&["cannot lock web", "token:cli-test"]);
    server
        .run(&["lock", "web", "--for", "5 minutes"])
        .expect(2)
        .stderr_has(&["duration"]);

    // The holder's own dry run passes; the deployment says what it is.
    let dry = server.run(&[
        "deploy",
        "web",
        "--image",
        "ghcr.io/acme/web:dry",
        "--noop",
        "--json",
    ]);
    assert_eq!(dry.expect(0).json()["noop"], true);

    server
        .run(&["audit", "--instance", "web"])
        .expect(0)
        .stdout_has(&["token:cli-test", "lock", "token:other", "refused", "noop"]);

    server
        .run_with(&["unlock", "web"], &other)
        .expect(0)
        .stdout_has(&["unlocked web"]);
    server
        .run(&["unlock", "web"])
        .expect(1)
        .stderr_has(&["cannot unlock web", "not locked"]);
    server
        .run(&["locks"])
        .expect(0)
        .stdout_has(&["nothing is locked"]);
    server
        .run_with(&["deploy", "web", "--image", "ghcr.io/acme/web:x"], &other)
        .expect(0)
        .stdout_has(&["queued for web"]);
}

#[test]
fn locks_from_the_terminal_on_sqlite() {
    locks_from_the_terminal(&TestDb::sqlite());
}

#[test]
fn locks_from_the_terminal_on_postgres() {
    locks_from_the_terminal(&TestDb::postgres());
}

#[test]
fn simulate_without_a_secret_says_where_to_put_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    for name in SCRUBBED {
        command.env_remove(name);
    }
    let output = command
        .args(["simulate", "push", "--repo", "acme/web"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DEPLOYBOT_WEBHOOK_SECRET") && stderr.contains("--secret"),
        "{stderr}"
    );
}

#[test]
fn simulate_dry_run_prints_a_signed_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    for name in SCRUBBED {
        command.env_remove(name);
    }
    let output = command
        .args([
            "simulate",
            "comment",
            "--repo",
            "acme/web",
            "--pr",
            "7",
            "--body",
            "/deploy production",
            "--dry-run",
        ])
        .env("DEPLOYBOT_WEBHOOK_SECRET", SECRET)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (head, body) = stdout.split_once("\n\n").unwrap();
    assert!(
        head.starts_with("POST http://127.0.0.1:8080/webhooks/github"),
        "{head}"
    );
    assert!(head.contains("X-GitHub-Event: issue_comment"), "{head}");
    let signature = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Hub-Signature-256: "))
        .unwrap();
    let body = body.trim_end_matches('\n');
    assert_eq!(
        signature,
        deploybot::github::webhook::signature::sign(SECRET.as_bytes(), body.as_bytes())
    );
    let payload: Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["comment"]["body"], "/deploy production");
    assert_eq!(payload["issue"]["number"], 7);
}

/// An instance whose image uses `{branch}` but deploys only on tags (no PR commands).
const TAG_ONLY_BRANCH_IMAGE: &str = r#"[[instances]]
name = "web-production"
repo = "acme/web"
environment = "production"
image = "ghcr.io/acme/web:{branch}"
on_tag = ["v*"]
commands = false

[instances.provider]
kind = "noop"
"#;

#[test]
fn a_configuration_file_that_is_named_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let secret = [("DEPLOYBOT_WEBHOOK_SECRET", SECRET)];
    run_in(
        dir.path(),
        &["config", "check", "--config", "nope.toml"],
        &secret,
    )
    .expect(2)
    .stderr_has(&["nope.toml", "(named by --config) does not exist"]);
    run_in(
        dir.path(),
        &["config", "check"],
        &[("DEPLOYBOT_CONFIG", "missing/deploybot.toml")],
    )
    .expect(2)
    .stderr_has(&[
        "missing/deploybot.toml",
        "(named by DEPLOYBOT_CONFIG) does not exist",
    ]);
    let database = dir.path().join("never.db");
    let database_url = format!("sqlite://{}", database.display());
    run_in(
        dir.path(),
        &["serve"],
        &[
            ("DEPLOYBOT_CONFIG", "gone.toml"),
            ("DEPLOYBOT_WEBHOOK_SECRET", SECRET),
            ("DATABASE_URL", &database_url),
        ],
    )
    .expect(2)
    .stderr_has(&["gone.toml", "does not exist"]);
    run_in(dir.path(), &["migrate", "--config", "gone.toml"], &[])
        .expect(2)
        .stderr_has(&["gone.toml", "does not exist"]);
    run_in(
        dir.path(),
        &["instances", "--config", "gone.toml"],
        &[("DEPLOYBOT_TOKEN", TOKEN)],
    )
    .expect(2)
    .stderr_has(&["gone.toml", "does not exist"]);
    assert!(!database.exists(), "serve opened the database");
}

#[test]
fn config_check_says_which_file_it_read_and_warns_when_none() {
    let dir = tempfile::tempdir().unwrap();
    let secret = [("DEPLOYBOT_WEBHOOK_SECRET", SECRET)];
    run_in(dir.path(), &["config", "check"], &secret)
        .expect(0)
        .stderr_has(&[
            "no configuration file: config/deploybot.toml does not exist; using defaults and the environment",
        ]);
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/deploybot.toml"), "").unwrap();
    let run = run_in(dir.path(), &["config", "check"], &secret);
    run.expect(0)
        .stderr_has(&["reading configuration from config/deploybot.toml"]);
    assert!(
        !run.stderr.contains("no configuration file"),
        "{}",
        run.stderr
    );
    // Without a webhook secret the configuration cannot serve: a configuration error.
    run_in(dir.path(), &["config", "check"], &[])
        .expect(2)
        .stderr_has(&["DEPLOYBOT_WEBHOOK_SECRET"]);
}

#[test]
fn config_check_warns_about_a_placeholder_a_trigger_never_fills() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tag-only.toml");
    std::fs::write(&file, TAG_ONLY_BRANCH_IMAGE).unwrap();
    let file = file.display().to_string();
    let run = run_in(
        dir.path(),
        &["config", "check", "--config", &file],
        &[("DEPLOYBOT_WEBHOOK_SECRET", SECRET)],
    );
    run.expect(0).stdout_has(&["web-production"]).stderr_has(&[
        &format!("reading configuration from {file}"),
        "warning: web-production: image uses {branch}, but only tags deploy it (on_tag); a tag deploy would be refused",
    ]);
    // The same instance with an image tags fill: no warning.
    std::fs::write(&file, TAG_ONLY_BRANCH_IMAGE.replace("{branch}", "{tag}")).unwrap();
    let run = run_in(
        dir.path(),
        &["config", "check", "--config", &file],
        &[("DEPLOYBOT_WEBHOOK_SECRET", SECRET)],
    );
    run.expect(0);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[test]
fn invalid_configuration_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "listen = \"here\"\n").unwrap();
    let file = file.display().to_string();
    run_in(dir.path(), &["config", "check", "--config", &file], &[])
        .expect(2)
        .stderr_has(&["listen", "not a socket address"]);
    run_in(dir.path(), &["serve", "--config", &file], &[])
        .expect(2)
        .stderr_has(&["listen", "not a socket address"]);
    // --listen stands for DEPLOYBOT_LISTEN, over the file: serve gets as far as listening.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let database_url = format!("sqlite://{}", dir.path().join("d.db").display());
    run_in(
        dir.path(),
        &["serve", "--config", &file, "--listen", &listen],
        &[
            ("DEPLOYBOT_WEBHOOK_SECRET", SECRET),
            ("DATABASE_URL", &database_url),
        ],
    )
    .expect(2)
    .stderr_has(&[&format!(
        "cannot listen on {listen}: address already in use"
    )]);
}

#[test]
fn serve_on_a_port_in_use_says_so_once_before_touching_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let database = dir.path().join("fresh.db");
    let database_url = format!("sqlite://{}", database.display());
    let run = run_in(
        dir.path(),
        &["serve"],
        &[
            ("DEPLOYBOT_LISTEN", &listen),
            ("DATABASE_URL", &database_url),
            ("DEPLOYBOT_WEBHOOK_SECRET", SECRET),
            ("DEPLOYBOT_LOG", "info"),
        ],
    );
    let message = format!(
        "cannot listen on {listen}: address already in use; set DEPLOYBOT_LISTEN or `listen`"
    );
    run.expect(2).stderr_has(&[
        &message,
        "no configuration file: config/deploybot.toml does not exist",
    ]);
    assert_eq!(
        run.stderr.matches("already in use").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("migration"), "{}", run.stderr);
    assert!(
        !database.exists(),
        "serve created the database before it could listen"
    );
    // The same with the listen address as a flag.
    run_in(
        dir.path(),
        &[
            "serve",
            "--listen",
            &listen,
            "--database-url",
            &database_url,
        ],
        &[("DEPLOYBOT_WEBHOOK_SECRET", SECRET)],
    )
    .expect(2)
    .stderr_has(&[&message]);
    assert!(!database.exists());
    drop(taken);
}

#[test]
fn serve_says_which_file_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut command = Command::new(BIN);
    for name in SCRUBBED {
        command.env_remove(name);
    }
    let mut child = command
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("serve.db").display()),
        )
        .env("DEPLOYBOT_LOG", "info")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "serve exited");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains(&format!("reading configuration from {}", config.display())),
        "{log}"
    );
}

#[test]
fn an_unreachable_database_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!(
        "postgres://deploybot@127.0.0.1:{}/deploybot?connect_timeout=2",
        free_port()
    );
    run_in(dir.path(), &["migrate", "--database-url", &closed], &[])
        .expect(3)
        .stderr_has(&["cannot connect"]);
}

/// A database URL libpq cannot read, with a password in the clear and percent-encoded.
const MALFORMED_DATABASE_URL: &str = "postgres://bot:DBPASS%40value@[bad/deploybot";

#[track_caller]
fn hides_the_database_password(run: &Run) {
    let printed = format!("{}{}", run.stdout, run.stderr);
    for secret in ["DBPASS", "%40value", "@value"] {
        assert!(
            !printed.contains(secret),
            "`deploybot {}` printed the database password ({secret:?}):\n{printed}",
            run.args
        );
    }
}

#[test]
fn a_malformed_database_url_is_refused_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let from_env = [
        ("DATABASE_URL", MALFORMED_DATABASE_URL),
        ("DEPLOYBOT_WEBHOOK_SECRET", SECRET),
        ("DEPLOYBOT_LISTEN", listen.as_str()),
    ];
    let shown = "postgres://bot:***@[bad/deploybot";
    for args in [&["serve"][..], &["migrate"][..]] {
        let run = run_in(dir.path(), args, &from_env);
        run.expect(2)
            .stderr_has(&["DATABASE_URL", shown, "PostgreSQL can read"]);
        hides_the_database_password(&run);
    }
    let run = run_in(
        dir.path(),
        &["migrate", "--database-url", MALFORMED_DATABASE_URL],
        &[],
    );
    run.expect(2).stderr_has(&[shown, "PostgreSQL can read"]);
    hides_the_database_password(&run);

    let config = dir.path().join("deploybot.toml");
    let file = format!("database_url = \"{MALFORMED_DATABASE_URL}\"\n");
    std::fs::write(&config, file).unwrap();
    let run = run_in(
        dir.path(),
        &["migrate", "--config", config.to_str().unwrap()],
        &[],
    );
    run.expect(2)
        .stderr_has(&["database_url", shown, "PostgreSQL can read"]);
    hides_the_database_password(&run);

    let run = run_in(
        dir.path(),
        &["sandbox", "--database-url", MALFORMED_DATABASE_URL],
        &from_env[1..],
    );
    run.expect(2)
        .stderr_has(&["--database-url", shown, "PostgreSQL can read"]);
    hides_the_database_password(&run);
    assert!(!run.stderr.contains("DATABASE_URL"), "{}", run.stderr);
}

#[test]
fn client_messages_hide_the_password_of_the_server_url() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://admin:URLPASS@127.0.0.1:{}/", free_port());
    for (url, needle) in [
        (
            closed.as_str(),
            "cannot reach deploybot at http://admin:***@127.0.0.1:",
        ),
        ("htp://admin:URLPASS@127.0.0.1:1/", "is not a URL"),
        ("admin:URLPASS@127.0.0.1:1", "is not a URL"),
    ] {
        for run in [
            run_in(dir.path(), &["instances"], &[("DEPLOYBOT_URL", url)]),
            run_in(dir.path(), &["instances", "--url", url], &[]),
        ] {
            run.stderr_has(&[needle, "admin:***@"]);
            assert!(
                !format!("{}{}", run.stdout, run.stderr).contains("URLPASS"),
                "`deploybot {}` printed the password:\n{}",
                run.args,
                run.stderr
            );
        }
    }
    // `simulate` shows where it sends the delivery, with the password hidden too.
    let comment = [
        "simulate", "comment", "--repo", "acme/web", "--pr", "7", "--body", "/help",
    ];
    let env = [
        ("DEPLOYBOT_URL", closed.as_str()),
        ("DEPLOYBOT_WEBHOOK_SECRET", SECRET),
    ];
    let dry_run = run_in(dir.path(), &[&comment[..], &["--dry-run"]].concat(), &env);
    dry_run
        .expect(0)
        .stdout_has(&["POST http://admin:***@127.0.0.1:"]);
    let sent = run_in(dir.path(), &comment, &env);
    sent.expect(3)
        .stderr_has(&["cannot reach deploybot at http://admin:***@127.0.0.1:"]);
    for run in [dry_run, sent] {
        assert!(
            !format!("{}{}", run.stdout, run.stderr).contains("URLPASS"),
            "`deploybot {}` printed the password:\n{}{}",
            run.args,
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn help_shows_exit_codes_variables_and_defaults_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let top = run_in(dir.path(), &["--help"], &[]);
    top.expect(0).stdout_has(&[
        "Exit codes (every command):",
        "0  success",
        "1  what was asked did not succeed",
        "2  usage or configuration error",
        "3  unreachable",
    ]);
    let secrets = [
        ("DEPLOYBOT_WEBHOOK_SECRET", "hook-secret-4b1d"),
        ("GITHUB_TOKEN", "ghp_token_9c2e"),
        ("DATABASE_URL", "postgres://u:db-password-77@127.0.0.1/d"),
        ("DEPLOYBOT_TOKEN", "api-token-51aa"),
        ("DEPLOYBOT_LISTEN", "127.0.0.1:9999"),
    ];
    let serve = run_in(dir.path(), &["serve", "--help"], &secrets);
    serve.expect(0).stdout_has(&[
        "[env: DATABASE_URL",
        "[env: DEPLOYBOT_LISTEN=127.0.0.1:9999]",
        "[env: DEPLOYBOT_PUBLIC_URL=]",
        "[env: DEPLOYBOT_WEBHOOK_SECRET",
        "[env: GITHUB_TOKEN",
        "[env: GITHUB_APP_ID=]",
        "[env: GITHUB_APP_PRIVATE_KEY_PATH=]",
        "[env: DEPLOYBOT_GITHUB_API_URL=]",
        "[env: DEPLOYBOT_CONFIG=]",
        "GITHUB_APP_PRIVATE_KEY ",
        "DEPLOYBOT_SESSION_KEY",
    ]);
    for command in [&["serve", "--help"][..], &["instances", "--help"][..]] {
        let help = run_in(dir.path(), command, &secrets);
        for (_, secret) in &secrets[..4] {
            assert!(!help.stdout.contains(secret), "{}", help.stdout);
        }
    }
    run_in(dir.path(), &["simulate", "push", "--help"], &[])
        .expect(0)
        .stdout_has(&[
            "[env: DEPLOYBOT_URL=]",
            "[env: DEPLOYBOT_CONFIG=]",
            "[default: main]",
        ]);
    run_in(dir.path(), &["watch", "--help"], &[])
        .expect(0)
        .stdout_has(&[
            "[env: DEPLOYBOT_URL=]",
            "[env: DEPLOYBOT_TOKEN",
            "[default: 500ms]",
        ]);
    // Each command's --json says what that command prints.
    let json_help = |command: &str| {
        let help = run_in(dir.path(), &[command, "--help"], &[]);
        let at = help.stdout.find("--json").expect("--json is listed");
        help.stdout[at..]
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let helps: Vec<String> = [
        "watch",
        "deploy",
        "rollback",
        "cancel",
        "deployments",
        "instances",
    ]
    .iter()
    .map(|c| json_help(c))
    .collect();
    for (i, a) in helps.iter().enumerate() {
        for b in &helps[i + 1..] {
            assert_ne!(a, b, "two commands share one --json help");
        }
    }
    assert!(helps[4].contains("next_cursor"), "{}", helps[4]);
    assert!(helps[5].contains("instances"), "{}", helps[5]);
}
