//! `deploybot approve` as a person uses it: the real binary against a real `deploybot serve`
//! child process (noop provider), on SQLite and on PostgreSQL. A deployment of an instance
//! with `approvals` waits for other deployers; its requester's own approval is refused with
//! exit 1 and the server's 403, another deployer's lets it run, and `--json` prints the
//! server's answer.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cli_run::Run;
use common::{TestDb, http};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Deploy tokens of tenant acme, named alpha, bravo and charlie.
const ALPHA: &str = "approve-alpha-token-3e91c0";
const BRAVO: &str = "approve-bravo-token-7a2d54";
const CHARLIE: &str = "approve-charlie-token-c8f613";
const SECRET: &str = "approve-webhook-secret";
/// No command may take longer than this.
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

fn token(name: &str, secret: &str) -> String {
    format!(
        "[[api.tokens]]\nname = \"{name}\"\ntenant = \"acme\"\nsha256 = \"{}\"\n\n",
        hex::encode(Sha256::digest(secret.as_bytes()))
    )
}

/// web needs one approval, db two; both deploy with the noop provider.
fn write_config(dir: &Path, port: u16) -> PathBuf {
    let tokens = [
        token("alpha", ALPHA),
        token("bravo", BRAVO),
        token("charlie", CHARLIE),
    ]
    .concat();
    let path = dir.join("deploybot.toml");
    std::fs::write(
        &path,
        format!(
            r#"listen = "127.0.0.1:{port}"
webhook_secrets = ["{SECRET}"]

[worker]
concurrency = 2
lease = "5s"

{tokens}
[[instances]]
name = "web"
repo = "acme/web"
environment = "production"
image = "ghcr.io/acme/web:{{short_sha}}"
strategy = "recreate"
approvals = 1

[instances.provider]
kind = "noop"

[[instances]]
name = "db"
repo = "acme/db"
environment = "production"
image = "ghcr.io/acme/db:{{short_sha}}"
strategy = "recreate"
approvals = 2

[instances.provider]
kind = "noop"
"#
        ),
    )
    .unwrap();
    path
}

/// `deploybot serve` as a child process; killed when dropped.
struct Server {
    child: Child,
    port: u16,
    url: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(database_url: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
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
            port,
            url: format!("http://127.0.0.1:{port}"),
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

    /// Runs `deploybot ARGS` with DEPLOYBOT_URL set and no token but what `--token` gives.
    fn run(&self, args: &[&str]) -> Run {
        let out = self.dir.path().join("out");
        let err = self.dir.path().join("err");
        let mut command = Command::new(BIN);
        for name in SCRUBBED {
            command.env_remove(name);
        }
        let mut child = command
            .args(args)
            .env("DEPLOYBOT_LOG", "warn")
            .env("DEPLOYBOT_URL", &self.url)
            .current_dir(self.dir.path())
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
                    "`deploybot {}` did not end within {COMMAND_LIMIT:?}",
                    args.join(" ")
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

    /// A request to the API as `token`: the status and the JSON answer.
    fn api(&self, token: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, text) = http(self.port, method, path, Some(token), &body);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The deployment as the API shows it.
    fn deployment(&self, id: &str) -> Value {
        let (status, json) = self.api(ALPHA, "GET", &format!("/v1/deployments/{id}"), &Value::Null);
        assert_eq!(status, 200, "{json}");
        json
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first deployment id (`dep_` + 26 characters) in `text`.
#[track_caller]
fn deployment_id(text: &str) -> String {
    text.match_indices("dep_")
        .filter_map(|(at, _)| text.get(at..at + 30))
        .find(|id| id[4..].bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_else(|| panic!("no deployment id in:\n{text}"))
        .to_string()
}

/// Asserts for `during` that the deployment stays pending, waiting for approval.
#[track_caller]
fn stays_waiting(server: &Server, id: &str, during: Duration) {
    let until = Instant::now() + during;
    while Instant::now() < until {
        let d = server.deployment(id);
        assert_eq!(d["state"], "pending", "{d}");
        assert_eq!(d["waiting_for"]["kind"], "approval", "{d}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// alpha deploys web through the API: 201, waiting for one approval; alpha's own
/// `deploybot approve` is refused (exit 1, the 403 `not_approved` and why) and changes
/// nothing; bravo's runs it, and it succeeds.
fn the_requester_cannot_approve_and_another_deployer_runs_it(db: TestDb) {
    let server = Server::start(&db.url);
    let (status, queued) = server.api(
        ALPHA,
        "POST",
        "/v1/instances/web/deploy",
        &json!({"image": "ghcr.io/acme/web:one"}),
    );
    assert_eq!(status, 201, "{queued}");
    assert_eq!(queued["state"], "pending", "{queued}");
    assert_eq!(queued["waiting_for"]["kind"], "approval", "{queued}");
    let id = queued["id"].as_str().unwrap().to_string();

    let own = server.run(&["approve", &id, "--token", ALPHA]);
    own.expect(1).stderr_has(&[
        &format!("cannot approve {id}"),
        "token:alpha asked for deployment",
        "another deployer must",
        "HTTP 403 not_approved",
    ]);
    assert!(own.stdout.is_empty(), "{}", own.stdout);
    let own_json = server.run(&["approve", &id, "--json", "--token", ALPHA]);
    own_json.expect(1).stderr_has(&["HTTP 403 not_approved"]);
    assert!(own_json.stdout.is_empty(), "{}", own_json.stdout);
    stays_waiting(&server, &id, Duration::from_secs(1));

    server
        .run(&["approve", &id, "--token", BRAVO])
        .expect(0)
        .stdout_has(&[&format!("approved {id}: it runs now")]);
    server
        .run(&["watch", &id, "--token", BRAVO])
        .expect(0)
        .stdout_has(&["succeeded"]);
    let done = server.deployment(&id);
    assert_eq!(done["state"], "succeeded", "{done}");

    // Approving again, once it ran, is refused.
    server
        .run(&["approve", &id, "--token", CHARLIE])
        .expect(1)
        .stderr_has(&[&format!("cannot approve {id}"), "HTTP 403 not_approved"]);
}

/// `deploybot deploy` shows what the deployment waits for; `approve --json` prints the
/// server's JSON of the approved deployment, and nothing else.
fn approve_json_prints_the_servers_answer(db: TestDb) {
    let server = Server::start(&db.url);
    let deployed = server.run(&[
        "deploy",
        "web",
        "--image",
        "ghcr.io/acme/web:two",
        "--token",
        ALPHA,
    ]);
    deployed
        .expect(0)
        .stdout_has(&["queued for web", "waiting", "approval", "token:alpha"]);
    let id = deployment_id(&deployed.stdout);

    let approved = server
        .run(&["approve", &id, "--json", "--token", BRAVO])
        .expect(0)
        .json();
    assert_eq!(approved["id"], id.as_str(), "{approved}");
    assert!(approved["waiting_for"].is_null(), "{approved}");
    assert_eq!(approved["image"], "ghcr.io/acme/web:two", "{approved}");
    assert_eq!(
        approved["source"]["requested_by"], "token:alpha",
        "{approved}"
    );
    // The deployment as the approval left it: pending, no longer waiting, not yet started.
    assert_eq!(approved["state"], "pending", "{approved}");
    assert!(approved.get("started_at").is_none(), "{approved}");
    let shown = server.deployment(&id);
    for key in [
        "tenant_id",
        "instance_id",
        "release_id",
        "created_at",
        "kind",
        "strategy",
    ] {
        assert_eq!(approved[key], shown[key], "{key}: {approved}\n{shown}");
    }
    server
        .run(&["watch", &id, "--token", BRAVO])
        .expect(0)
        .stdout_has(&["succeeded"]);
}

/// With two approvals needed, the first approval says what the deployment still waits
/// for, and the second lets it run.
fn an_approval_short_of_enough_says_what_is_still_needed(db: TestDb) {
    let server = Server::start(&db.url);
    let (status, queued) = server.api(
        ALPHA,
        "POST",
        "/v1/instances/db/deploy",
        &json!({"image": "ghcr.io/acme/db:one"}),
    );
    assert_eq!(status, 201, "{queued}");
    let id = queued["id"].as_str().unwrap().to_string();

    server
        .run(&["approve", &id, "--token", BRAVO])
        .expect(0)
        .stdout_has(&[
            &format!("approved {id}: still waiting for approval"),
            "approved by token:bravo",
            "1 more needed",
        ]);
    stays_waiting(&server, &id, Duration::from_secs(1));
    server
        .run(&["approve", &id, "--token", CHARLIE])
        .expect(0)
        .stdout_has(&[&format!("approved {id}: it runs now")]);
    server
        .run(&["watch", &id, "--token", CHARLIE])
        .expect(0)
        .stdout_has(&["succeeded"]);
}

both_backends_owned!(
    the_requester_cannot_approve_and_another_deployer_runs_it,
    approve_json_prints_the_servers_answer,
    an_approval_short_of_enough_says_what_is_still_needed,
);
