//! A real `deploybot serve` child process, a fake GitHub, a test database, and a small
//! blocking HTTP client that signs webhooks like GitHub does.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploybot::deploy::{Deployment, Instance, InstanceStore, ListOptions, Store};
use deploybot::github::webhook::signature;
use serde_json::Value;

use crate::common::TestDb;
use crate::common::fake_github::FakeGithub;

pub const SECRET: &str = "webhook-secret";
pub const TOKEN: &str = "ghs_testtoken";
pub const SHA: &str = "a10867b14bb761a232cd80139fbd4c0d33264240";
pub const PR_SHA: &str = "2f3d6a7b9c0e1f2a3b4c5d6e7f8091a2b3c4d5e6";

pub struct Bot {
    pub db: TestDb,
    pub fake: FakeGithub,
    pub port: u16,
    pub dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

/// The default instances: production deploys tags and takes commands, staging deploys main.
pub fn instances(script: &str) -> String {
    instances_with(script, "")
}

/// `instances`, with `production` (TOML lines) added to web-production's settings.
pub fn instances_with(script: &str, production: &str) -> String {
    format!(
        r#"
[[instances]]
name = "web-production"
repo = "acme/web"
environment = "production"
image = "ghcr.io/acme/web:{{sha}}"
strategy = "rolling"
on_tag = ["v*"]
environment_url = "https://web.acme.dev"
{production}

[instances.provider]
kind = "command"
run = ["{script}"]
timeout = "1m"

[[instances]]
name = "web-staging"
repo = "acme/web"
environment = "staging"
image = "ghcr.io/acme/web:{{short_sha}}"
strategy = "recreate"
on_push = ["main"]
commands = false

[instances.provider]
kind = "noop"
"#
    )
}

impl Bot {
    /// Starts everything; `script_body` is the deploy command of web-production.
    pub fn start(db: TestDb, script_body: &str, extra: &str) -> Bot {
        Self::start_with(db, script_body, extra, false, "")
    }

    /// Like `start`, with `production` (TOML lines) added to web-production's settings.
    pub fn start_configured(db: TestDb, script_body: &str, production: &str) -> Bot {
        Self::start_with(db, script_body, "", false, production)
    }

    /// Like `start`, authenticating as a GitHub App (id 4242, installation 77) instead of a token.
    pub fn start_as_app(db: TestDb, script_body: &str) -> Bot {
        Self::start_with(db, script_body, "", true, "")
    }

    /// Starts everything with `extra` (TOML after `[worker]`) and `production` (TOML lines
    /// of web-production), as a GitHub App when `app`.
    pub fn start_with(
        db: TestDb,
        script_body: &str,
        extra: &str,
        app: bool,
        production: &str,
    ) -> Bot {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("ship.sh");
        std::fs::write(&script, format!("#!/bin/bash\n{script_body}\n")).unwrap();
        let mut perms = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).unwrap();

        let fake = FakeGithub::start();
        fake.add_repo("acme/web");
        fake.set_token(TOKEN);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let github = if app {
            let key = dir.path().join("app.pem");
            std::fs::write(&key, crate::common::fake_github::TEST_APP_PRIVATE_KEY).unwrap();
            fake.set_app(
                4242,
                crate::common::fake_github::TEST_APP_PUBLIC_KEY,
                77,
                "ghs_installation",
            );
            format!(
                "app_id = 4242\napp_private_key_path = \"{}\"",
                key.display()
            )
        } else {
            format!("token = \"{TOKEN}\"")
        };
        let config = dir.path().join("deploybot.toml");
        std::fs::write(
            &config,
            format!(
                r#"database_url = "{db}"
listen = "127.0.0.1:{port}"
public_url = "http://bot.test"
webhook_secrets = ["{SECRET}", "the-previous-secret"]
webhook_max_bytes = 65536

[github]
api_url = "{api}"
{github}

[pages]
public = true

[worker]
lease = "2s"
{extra}
{instances}"#,
                db = db.url,
                api = fake.url,
                instances = instances_with(&script.display().to_string(), production),
            ),
        )
        .unwrap();
        let mut bot = Bot {
            db,
            fake,
            port,
            dir,
            config,
            child: None,
        };
        bot.spawn();
        bot
    }

    fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deploybot"));
        command
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("DATABASE_URL")
            .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
            .env_remove("GITHUB_TOKEN")
            .env_remove("DEPLOYBOT_GITHUB_API_URL")
            .env(
                "DEPLOYBOT_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // The bench-only floors (benches/ingest.rs) answer webhooks without storing them.
        // A build without that feature, the only kind deployed, must ignore the variable:
        // every test of this bot counts stored deliveries and deployments, so none would
        // pass if it did not.
        if !cfg!(feature = "bench-floor") {
            command.env("DEPLOYBOT_BENCH_FLOOR", "nothing");
        }
        let child = command.spawn().unwrap();
        self.child = Some(child);
        // The port is bound before the database is opened: the server has started only
        // once it answers, not once it accepts a connection.
        wait_until("the server to answer", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.get("/healthz").0 == 200
        });
    }

    /// Crashes the server (SIGKILL) and starts it again.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Stops the server as a supervisor would (SIGTERM) and waits for it to exit.
    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server runs");
        // SAFETY: kill only sends SIGTERM to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// Starts the server again after `sigterm` or `kill9`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server still runs");
        self.spawn();
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Sends a webhook signed with the current secret.
    /// `user` comments `body` on pull request `pr` of acme/web (on the fake GitHub too, as
    /// GitHub would have it) and GitHub sends the `issue_comment` webhook as `delivery`:
    /// the comment's id and deploybot's answer.
    pub fn comment(&self, pr: u64, user: &str, body: &str, delivery: &str) -> (u64, u16, Value) {
        let id = self.fake.add_comment("acme/web", pr, user, body);
        let (status, answer) =
            self.send("issue_comment", &pr_comment(pr, id, user, body), delivery);
        (id, status, answer)
    }

    pub fn send(&self, event: &str, body: &Value, delivery: &str) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let signature = signature::sign(SECRET.as_bytes(), &body);
        self.post(
            "/webhooks/github",
            &[
                ("X-GitHub-Event", event),
                ("X-GitHub-Delivery", delivery),
                ("X-Hub-Signature-256", &signature),
            ],
            &body,
        )
    }

    /// A raw POST with exactly these headers.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        self.call("POST", path, headers, body)
    }

    /// The whole answer to a GET, head and body, as text (`/metrics`).
    pub fn get_text(&self, path: &str) -> String {
        self.exchange("GET", path, &[], b"")
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the server.
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("the server runs");
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// A GET; the status and the JSON answer (`Null` when it is not JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, &[], b"")
    }

    /// A request with any method and exactly these headers; the status and the JSON answer
    /// (`Null` when it is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let text = self.exchange(method, path, headers, body);
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        // Chunked bodies: take the JSON object inside.
        let json = body
            .find('{')
            .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }

    /// Sends one request on a connection of its own; the whole answer as text.
    fn exchange(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: GitHub-Hookshot/test\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let _ = stream.write_all(body);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    pub fn instance(&self, name: &str) -> Instance {
        self.db.store.find_instance("acme", name).unwrap()
    }

    pub fn deployments(&self, instance: &str) -> Vec<Deployment> {
        let id = self.instance(instance).id;
        self.db
            .store
            .list_deployments(
                "acme",
                id,
                &ListOptions {
                    cursor: None,
                    limit: Some(100),
                },
            )
            .unwrap()
            .items
    }

    pub fn deployment(&self, id: &str) -> Deployment {
        self.db
            .store
            .get_deployment("acme", id.parse().unwrap())
            .unwrap()
    }

    /// Waits until the deployment reaches a final state.
    pub fn wait_final(&self, id: &str) -> Deployment {
        let mut last = None;
        wait_until("the deployment to finish", Duration::from_secs(60), || {
            let d = self.deployment(id);
            let done = d.finished_at.is_some();
            last = Some(d);
            done
        });
        last.unwrap()
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GitHub's documented payload from tests/fixtures/github, retargeted at acme/web (one
/// repository: the same repository id in every payload).
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/github/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    if v.get("repository").is_some() {
        v["repository"]["full_name"] = "acme/web".into();
        v["repository"]["name"] = "web".into();
        v["repository"]["owner"]["login"] = "acme".into();
        v["repository"]["id"] = 186_853_002.into();
    }
    v
}

/// A push of `git_ref` to `after`, shaped like GitHub's example.
pub fn push(git_ref: &str, after: &str, user: &str) -> Value {
    let mut v = fixture("push");
    v["ref"] = git_ref.into();
    v["after"] = after.into();
    v["created"] = false.into();
    v["deleted"] = false.into();
    v["sender"]["login"] = user.into();
    if v["head_commit"].is_object() {
        v["head_commit"]["id"] = after.into();
    }
    v
}

impl Bot {
    /// A direct connection to the bot's database that waits for the server's writes to end
    /// (SQLite: a busy timeout) instead of failing with "database is locked".
    pub fn sql(&self) -> crate::common::Sql {
        let mut sql = crate::common::Sql::open(&self.db.url);
        if let crate::common::Sql::Sqlite(conn) = &mut sql {
            diesel::connection::SimpleConnection::batch_execute(
                conn,
                "PRAGMA busy_timeout = 10000",
            )
            .unwrap();
        }
        sql
    }
}

/// GitHub's time format, to the second.
pub fn github_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A `pull_request` event (`opened`, `reopened` or `synchronize`, from GitHub's examples)
/// giving #`pr` the head `sha` at GitHub's time `at`.
pub fn pull_event(action: &str, pr: u64, sha: &str, at: chrono::DateTime<chrono::Utc>) -> Value {
    let mut v = fixture(&format!("pull_request_{action}"));
    v["number"] = pr.into();
    v["pull_request"]["number"] = pr.into();
    v["pull_request"]["head"]["sha"] = sha.into();
    v["pull_request"]["updated_at"] = github_time(at).into();
    v
}

impl Bot {
    /// A pull request #`pr` opened a minute ago with head `sha`: on the fake GitHub, and
    /// the `pull_request` `opened` event GitHub sent then.
    pub fn open_pull(&self, pr: u64, sha: &str, from_fork: bool, state: &str) {
        self.fake.add_pull("acme/web", pr, sha, from_fork, state);
        let opened = chrono::Utc::now() - chrono::Duration::seconds(60);
        let delivery = format!("opened-{pr}-{}", uuid::Uuid::now_v7().simple());
        let (status, answer) = self.send(
            "pull_request",
            &pull_event("opened", pr, sha, opened),
            &delivery,
        );
        assert_eq!(status, 202, "{answer}");
    }

    /// Someone pushes `sha` to #`pr` at GitHub's time `at`: the fake GitHub's head moves and
    /// GitHub's `synchronize` event reaches the bot.
    pub fn push_to_pull(&self, pr: u64, sha: &str, at: chrono::DateTime<chrono::Utc>) {
        self.fake.push_to_pull("acme/web", pr, sha);
        let delivery = format!("sync-{pr}-{}", uuid::Uuid::now_v7().simple());
        let (status, answer) = self.send(
            "pull_request",
            &pull_event("synchronize", pr, sha, at),
            &delivery,
        );
        assert_eq!(status, 202, "{answer}");
    }
}

/// A comment on pull request #`pr`, written now.
pub fn pr_comment(pr: u64, comment_id: u64, user: &str, body: &str) -> Value {
    let mut v = fixture("issue_comment_created_pr");
    v["comment"]["created_at"] = github_time(chrono::Utc::now()).into();
    v["issue"]["number"] = pr.into();
    v["comment"]["id"] = comment_id.into();
    v["comment"]["body"] = body.into();
    v["comment"]["user"]["login"] = user.into();
    v["comment"]["user"]["type"] = "User".into();
    v["sender"]["login"] = user.into();
    v
}

/// A second `deploybot serve` with the same config file and database, on its own port
/// (`DEPLOYBOT_LISTEN` overrides `listen`); killed when dropped.
pub struct Replica {
    pub port: u16,
    child: Child,
}

impl Bot {
    /// Starts a replica of this bot's server, sharing its database and fake GitHub.
    pub fn start_replica(&self) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_deploybot"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("DATABASE_URL")
            .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
            .env_remove("GITHUB_TOKEN")
            .env_remove("DEPLOYBOT_GITHUB_API_URL")
            .env("DEPLOYBOT_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "DEPLOYBOT_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let replica = Replica { port, child };
        wait_until("the replica to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        replica
    }
}

impl Replica {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
