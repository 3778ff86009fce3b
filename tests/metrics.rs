//! `/metrics` and the JSON logs of a real `deploybot serve` child process, in front of a
//! fake GitHub and a real database: what an operator's dashboard and log search would
//! show after webhooks arrive and deployments run.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDb;
use common::fake_github::{FakeGithub, RATE_LIMIT};
use deploybot::github::webhook::signature;
use serde_json::Value;

const SECRET: &str = "metrics-secret";
const TOKEN: &str = "ghs_metricstoken";
const SHA_1: &str = "a10867b14bb761a232cd80139fbd4c0d33264240";
const SHA_2: &str = "2f3d6a7b9c0e1f2a3b4c5d6e7f8091a2b3c4d5e6";
/// Commits whose deploy command fails on `web-edge`.
const BAD_1: &str = "bad1a7b9c0e1f2a3b4c5d6e7f8091a2b3c4d5e61";
const BAD_2: &str = "bad2a7b9c0e1f2a3b4c5d6e7f8091a2b3c4d5e62";
/// A commit whose health check fails on `web-edge`.
const SICK: &str = "0dd3a7b9c0e1f2a3b4c5d6e7f8091a2b3c4d5e63";

/// A `deploybot serve` child with a fake GitHub. Instance `web-staging` (noop provider,
/// recreate) deploys pushes to `main`; `web-production` (a script that waits until the
/// file `go` exists, rolling) deploys pushes to `release`; `web-edge` (recreate) deploys
/// pushes to `edge`: its deploy command fails for commits starting `bad`, its health
/// command for commits starting `0dd`, and its automatic rollbacks take no lock.
struct Bot {
    port: u16,
    dir: tempfile::TempDir,
    fake: FakeGithub,
    child: Child,
    _db: TestDb,
}

impl Bot {
    fn start(db: TestDb, env: &[(&str, &str)]) -> Bot {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("ship.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/bash\nwhile [ ! -e '{}' ]; do sleep 0.05; done\necho \"shipped $DEPLOY_IMAGE\"\n",
                dir.path().join("go").display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&script, perms).unwrap();
        let edge = executable(
            dir.path(),
            "edge.sh",
            "case \"$DEPLOY_IMAGE\" in *:bad*) echo boom >&2; exit 3;; esac\n",
        );
        let edge_health = executable(
            dir.path(),
            "edge-health.sh",
            "case \"$DEPLOY_IMAGE\" in *:0dd*) exit 1;; esac\n",
        );

        let fake = FakeGithub::start();
        fake.add_repo("acme/web");
        fake.set_token(TOKEN);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("deploybot.toml");
        std::fs::write(
            &config,
            format!(
                r#"database_url = "{db}"
listen = "127.0.0.1:{port}"
webhook_secrets = ["{SECRET}"]

[github]
api_url = "{api}"
token = "{TOKEN}"

[worker]
lease = "5s"

[[instances]]
name = "web-staging"
repo = "acme/web"
environment = "staging"
image = "ghcr.io/acme/web:{{short_sha}}"
strategy = "recreate"
on_push = ["main"]

[instances.provider]
kind = "noop"

[[instances]]
name = "web-production"
repo = "acme/web"
environment = "production"
image = "ghcr.io/acme/web:{{short_sha}}"
strategy = "rolling"
on_push = ["release"]

[instances.provider]
kind = "command"
run = ["{script}"]
timeout = "1m"

[[instances]]
name = "web-edge"
repo = "acme/web"
environment = "edge"
image = "ghcr.io/acme/web:{{short_sha}}"
strategy = "recreate"
on_push = ["edge"]
lock_on_rollback = false

[instances.provider]
kind = "command"
run = ["{edge}"]
timeout = "1m"

[instances.health]
command = ["{edge_health}"]
interval = "100ms"
deadline = "1s"
"#,
                db = db.url,
                api = fake.url,
                script = script.display(),
                edge = edge.display(),
                edge_health = edge_health.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("deploybot.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_deploybot"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("DATABASE_URL")
            .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
            .env_remove("DEPLOYBOT_LOG_FORMAT")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_APP_ID")
            .env_remove("DEPLOYBOT_GITHUB_API_URL")
            .env("DEPLOYBOT_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let bot = Bot {
            port,
            dir,
            fake,
            child,
            _db: db,
        };
        wait_until("the server to listen", || {
            TcpStream::connect(("127.0.0.1", bot.port)).is_ok()
        });
        bot
    }

    /// One HTTP/1.1 request; returns the status, the raw head and the body.
    fn request(&self, head: &str, body: &[u8]) -> (u16, String, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_string(), body.to_string())
    }

    /// Posts a webhook signed with `secret`; returns the status and the JSON answer.
    fn webhook(&self, event: &str, delivery: &str, body: &Value, secret: &str) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap();
        let head = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {delivery}\r\n\
             X-Hub-Signature-256: {}\r\n\r\n",
            body.len(),
            signature::sign(secret.as_bytes(), &body),
        );
        let (status, _, answer) = self.request(&head, &body);
        (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
    }

    /// `GET /metrics`, checked to be the Prometheus text format.
    fn scrape(&self) -> Scrape {
        let (status, head, body) = self.request(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            b"",
        );
        assert_eq!(status, 200, "{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        Scrape::parse(&body)
    }

    /// Scrapes until `done` holds for a scrape, which is returned.
    fn scrape_until(&self, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
        let mut last = None;
        wait_until(what, || {
            let scrape = self.scrape();
            let ok = done(&scrape);
            last = Some(scrape);
            ok
        });
        last.unwrap()
    }

    fn release_the_script(&self) {
        std::fs::write(self.dir.path().join("go"), "").unwrap();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("deploybot.log")
    }
}

/// Writes an executable bash script `name` into `dir`; its path.
fn executable(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/bash\n{body}")).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scrape: every sample by name and labels.
struct Scrape {
    text: String,
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            samples.insert((name.to_string(), labels), value.parse().unwrap());
        }
        Scrape {
            text: text.to_string(),
            samples,
        }
    }

    /// The sample's value; `None` when the series is absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// The sample's value, absent counting as 0 (a counter that never moved).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// The sum over every series of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let limit = Duration::from_secs(60);
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
fn fixture(name: &str) -> Value {
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

/// A push of `branch` to `after`, shaped like GitHub's example.
fn push(branch: &str, after: &str) -> Value {
    let mut v = fixture("push");
    v["ref"] = format!("refs/heads/{branch}").into();
    v["after"] = after.into();
    v["created"] = false.into();
    v["deleted"] = false.into();
    if v["head_commit"].is_object() {
        v["head_commit"]["id"] = after.into();
    }
    v
}

const WEBHOOKS: &str = "deploybot_webhooks_total";

/// Webhooks by outcome, a deployment that runs to the end and its reports to GitHub, as
/// counted by `/metrics`.
fn webhooks_deployments_and_reports_are_counted(db: TestDb) {
    let bot = Bot::start(db, &[]);
    let before = bot.scrape();
    assert_eq!(
        before.get("deploybot_deployments_total", &[("state", "succeeded")]),
        Some(0.0),
        "final states show from the start:\n{}",
        before.text
    );
    assert_eq!(before.get("deploybot_queue_depth", &[]), Some(0.0));
    assert_eq!(
        before.get("deploybot_github_rate_limit_remaining", &[]),
        Some(-1.0),
        "unknown before the first call to GitHub"
    );
    assert_eq!(before.get("deploybot_database_up", &[]), Some(1.0));
    assert_eq!(before.sum(WEBHOOKS, &[]), 0.0);

    let (status, answer) = bot.webhook("push", "d-1", &push("main", SHA_1), SECRET);
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = bot.webhook("push", "d-1", &push("main", SHA_1), SECRET);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "duplicate");
    let (status, _) = bot.webhook("push", "d-2", &push("main", SHA_2), "not the secret");
    assert_eq!(status, 401);
    let (status, _) = bot.webhook("push", "d-3", &push("some-branch", SHA_2), SECRET);
    assert_eq!(status, 202);
    let (status, _) = bot.webhook("ping", "d-4", &fixture("ping"), SECRET);
    assert_eq!(status, 200);

    let after = bot.scrape_until(
        "the deployment to succeed and its reports to reach GitHub",
        |s| {
            s.value("deploybot_deployments_total", &[("state", "succeeded")]) == 1.0
                && s.value("deploybot_outbox_pending", &[]) == 0.0
        },
    );
    let text = &after.text;
    for (outcome, count) in [
        ("accepted", 1.0),
        ("duplicate", 1.0),
        ("bad_signature", 1.0),
        ("ignored", 1.0),
    ] {
        assert_eq!(
            after.value(WEBHOOKS, &[("event", "push"), ("outcome", outcome)]),
            count,
            "push {outcome}:\n{text}"
        );
    }
    assert_eq!(
        after.value(WEBHOOKS, &[("event", "ping"), ("outcome", "pong")]),
        1.0,
        "{text}"
    );
    assert_eq!(after.sum(WEBHOOKS, &[]), 5.0, "{text}");

    assert_eq!(
        after.get("deploybot_deployments", &[("state", "succeeded")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        after.get("deploybot_deployments", &[("state", "pending")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        after.get("deploybot_deployments_total", &[("state", "failed")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(after.get("deploybot_queue_depth", &[]), Some(0.0), "{text}");
    let duration = [("strategy", "recreate"), ("outcome", "succeeded")];
    assert_eq!(
        after.get("deploybot_deployment_duration_seconds_count", &duration),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        after.get(
            "deploybot_deployment_duration_seconds_bucket",
            &[duration[0], duration[1], ("le", "+Inf")]
        ),
        Some(1.0),
        "{text}"
    );

    // The Deployment and each status were sent to GitHub; nothing is left or given up.
    assert_eq!(
        after.value(
            "deploybot_outbox_sent_total",
            &[("kind", "deployment.created"), ("result", "sent")]
        ),
        1.0,
        "{text}"
    );
    let statuses = bot
        .fake
        .deployments("acme/web")
        .iter()
        .map(|d| d.states().len())
        .sum::<usize>();
    assert!(statuses >= 2, "GitHub got {statuses} statuses");
    assert_eq!(
        after.value(
            "deploybot_outbox_sent_total",
            &[("kind", "deployment.status"), ("result", "sent")]
        ),
        statuses as f64,
        "{text}"
    );
    assert_eq!(
        after.sum("deploybot_outbox_sent_total", &[("result", "failed")]),
        0.0
    );
    assert_eq!(after.get("deploybot_outbox_failed", &[]), Some(0.0));

    // GitHub's x-ratelimit-remaining counts down with every call the bot made.
    let calls = bot.fake.calls().len() as f64;
    let remaining = after.value("deploybot_github_rate_limit_remaining", &[]);
    assert!(
        remaining < RATE_LIMIT as f64 && remaining >= RATE_LIMIT as f64 - calls,
        "remaining {remaining} after {calls} calls"
    );
}

/// The database gauges follow what is queued and running at scrape time.
fn gauges_show_the_queue_at_scrape_time(db: TestDb) {
    let bot = Bot::start(db, &[]);
    assert_eq!(
        bot.webhook("push", "r-1", &push("release", SHA_1), SECRET)
            .0,
        202
    );
    assert_eq!(
        bot.webhook("push", "r-2", &push("release", SHA_2), SECRET)
            .0,
        202
    );
    // One runs (its script waits), the other waits for the instance.
    let busy = bot.scrape_until("one deployment to run and one to wait", |s| {
        s.value("deploybot_deployments", &[("state", "running")]) == 1.0
    });
    let text = &busy.text;
    assert_eq!(busy.get("deploybot_queue_depth", &[]), Some(1.0), "{text}");
    assert_eq!(
        busy.get("deploybot_deployments", &[("state", "pending")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        busy.get("deploybot_deployments_total", &[("state", "succeeded")]),
        Some(0.0),
        "{text}"
    );

    bot.release_the_script();
    // The database gauges are read before the in-process counters are rendered: a scrape
    // can count the second success and still read the row as running. Wait for both.
    let done = bot.scrape_until("both deployments to succeed", |s| {
        s.value("deploybot_deployments_total", &[("state", "succeeded")]) == 2.0
            && s.value("deploybot_deployments", &[("state", "succeeded")]) == 2.0
    });
    let text = &done.text;
    assert_eq!(done.get("deploybot_queue_depth", &[]), Some(0.0), "{text}");
    assert_eq!(
        done.get("deploybot_deployments", &[("state", "running")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        done.get("deploybot_deployments", &[("state", "succeeded")]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        done.get(
            "deploybot_deployment_duration_seconds_count",
            &[("strategy", "rolling"), ("outcome", "succeeded")]
        ),
        Some(2.0),
        "{text}"
    );
}

/// A failed deployment, one rolled back after its deploy command failed and one rolled
/// back after its health check failed: counted by outcome and by cause, with their time
/// to restore.
fn failures_and_rollbacks_are_counted_by_cause(db: TestDb) {
    let bot = Bot::start(db, &[]);
    let before = bot.scrape();
    for cause in ["gate", "failure", "watch", "manual"] {
        assert_eq!(
            before.get("deploybot_rollbacks_total", &[("cause", cause)]),
            Some(0.0),
            "every cause shows from the start:\n{}",
            before.text
        );
    }
    let pushes = [
        (BAD_1, "failed"),
        (SHA_1, "succeeded"),
        (BAD_2, "rolled_back"),
        (SICK, "rolled_back"),
    ];
    for (n, (sha, state)) in pushes.into_iter().enumerate() {
        let (status, answer) = bot.webhook("push", &format!("e-{n}"), &push("edge", sha), SECRET);
        assert_eq!(status, 202, "{answer}");
        let ended = pushes[..=n].iter().filter(|(_, s)| *s == state).count() as f64;
        bot.scrape_until(&format!("{sha} to end {state}"), |s| {
            s.value("deploybot_deployments_total", &[("state", state)]) == ended
        });
    }
    let after = bot.scrape();
    let text = &after.text;
    for (outcome, count) in [("failed", 1.0), ("rolled_back", 2.0), ("succeeded", 1.0)] {
        assert_eq!(
            after.get(
                "deploybot_deployment_duration_seconds_count",
                &[("strategy", "recreate"), ("outcome", outcome)]
            ),
            Some(count),
            "{outcome}:\n{text}"
        );
    }
    for (cause, count) in [
        ("failure", 1.0),
        ("gate", 1.0),
        ("watch", 0.0),
        ("manual", 0.0),
    ] {
        assert_eq!(
            after.get("deploybot_rollbacks_total", &[("cause", cause)]),
            Some(count),
            "{cause}:\n{text}"
        );
    }
    for cause in ["failure", "gate"] {
        assert_eq!(
            after.get("deploybot_restore_seconds_count", &[("cause", cause)]),
            Some(1.0),
            "{cause}:\n{text}"
        );
        assert_eq!(
            after.get(
                "deploybot_restore_seconds_bucket",
                &[("cause", cause), ("le", "+Inf")]
            ),
            Some(1.0),
            "{cause}:\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE deploybot_restore_seconds histogram"),
        "{text}"
    );
}

mod sqlite {
    #[test]
    fn failures_and_rollbacks_are_counted_by_cause() {
        super::failures_and_rollbacks_are_counted_by_cause(super::TestDb::sqlite());
    }

    #[test]
    fn webhooks_deployments_and_reports_are_counted() {
        super::webhooks_deployments_and_reports_are_counted(super::TestDb::sqlite());
    }

    #[test]
    fn gauges_show_the_queue_at_scrape_time() {
        super::gauges_show_the_queue_at_scrape_time(super::TestDb::sqlite());
    }
}

mod postgres {
    #[test]
    fn failures_and_rollbacks_are_counted_by_cause() {
        super::failures_and_rollbacks_are_counted_by_cause(super::TestDb::postgres());
    }

    #[test]
    fn webhooks_deployments_and_reports_are_counted() {
        super::webhooks_deployments_and_reports_are_counted(super::TestDb::postgres());
    }

    #[test]
    fn gauges_show_the_queue_at_scrape_time() {
        super::gauges_show_the_queue_at_scrape_time(super::TestDb::postgres());
    }
}

/// The JSON log lines of one server run.
fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn target_starts_with(line: &Value, prefixes: &[&str]) -> bool {
    line["target"]
        .as_str()
        .is_some_and(|t| prefixes.iter().any(|p| t.starts_with(p)))
}

/// With `DEPLOYBOT_LOG_FORMAT=json`, a webhook's lines carry its delivery id and a
/// deployment's lines its id, so one search finds everything about either, including
/// lines whose message does not name the id (it comes from the span they are logged in).
#[test]
fn json_logs_carry_the_delivery_and_the_deployment() {
    let bot = Bot::start(
        TestDb::sqlite(),
        &[
            ("DEPLOYBOT_LOG_FORMAT", "json"),
            ("DEPLOYBOT_LOG", "info,deploybot=debug"),
        ],
    );
    bot.release_the_script();
    let (status, answer) = bot.webhook("push", "d-json", &push("release", SHA_1), SECRET);
    assert_eq!(status, 202, "{answer}");
    let id = answer["deployments"][0].as_str().unwrap().to_string();
    bot.scrape_until("the deployment to succeed", |s| {
        s.value("deploybot_deployments_total", &[("state", "succeeded")]) == 1.0
    });

    let lines = json_lines(&bot.log_path());
    let webhook: Vec<&Value> = lines
        .iter()
        .filter(|l| target_starts_with(l, &["deploybot::server::webhook"]))
        .collect();
    assert!(
        webhook.iter().any(|l| l["message"] == "webhook accepted"),
        "{lines:#?}"
    );
    for line in webhook {
        assert_eq!(line["delivery"], "d-json", "{line}");
    }

    // The worker's, the strategy's and the provider's lines about the run.
    let run: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            target_starts_with(
                l,
                &[
                    "deploybot::worker",
                    "deploybot::deploy::strategies",
                    "deploybot::provider",
                ],
            ) && !l["deployment"].is_null()
        })
        .collect();
    let finished = run
        .iter()
        .find(|l| l["message"] == "deployment finished")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(finished["instance"], "web-production", "{finished}");
    assert_eq!(finished["tenant"], "acme", "{finished}");
    for line in run {
        assert_eq!(line["deployment"], id.as_str(), "{line}");
    }
}

/// With `DEPLOYBOT_METRICS_TOKEN` set, `/metrics` answers 401 (naming what to send) without
/// that bearer token or with another one, and the metrics with it.
#[test]
fn metrics_can_require_a_token() {
    let bot = Bot::start(
        TestDb::sqlite(),
        &[("DEPLOYBOT_METRICS_TOKEN", "scrape-me")],
    );
    let get = |authorization: &str| {
        bot.request(
            &format!(
                "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{authorization}Connection: close\r\n\r\n"
            ),
            b"",
        )
    };
    for refused in [
        "",
        "Authorization: Bearer scrape-you\r\n",
        "Authorization: Basic c2NyYXBlLW1l\r\n",
    ] {
        let (status, head, body) = get(refused);
        assert_eq!(status, 401, "{refused:?}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{head}"
        );
        assert!(body.contains("DEPLOYBOT_METRICS_TOKEN"), "{body}");
        assert!(!body.contains("deploybot_deployments_total"), "{body}");
    }
    let (status, _, body) = get("Authorization: Bearer scrape-me\r\n");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("# TYPE deploybot_deployments_total counter"),
        "{body}"
    );
}
