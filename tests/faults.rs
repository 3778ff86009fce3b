//! Faults under load, with the real binary: a steady stream of signed webhooks (some of
//! them deploying) while `deploybot serve` is killed with SIGKILL and PostgreSQL (a
//! server of the test's own) is restarted under it, and two servers sharing one
//! PostgreSQL. Afterwards every delivery that got a 2xx is stored exactly once, every
//! deployment ended, each deployment ran at most once and never beside another of its
//! instance, and GitHub heard every report exactly once and in order. Run with
//! `--nocapture` to see the counts.

#[allow(dead_code)]
#[path = "github/bot.rs"]
mod bot;
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bot::{Bot, SECRET, fixture, push, wait_until};
use common::pg_cluster::{Binaries, OwnCluster};
use common::{Sql, TestDb};
use deploybot::github::webhook::signature;
use diesel::sql_types::{Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::Value;

/// The tests here load the machine: one at a time (when one process runs them all).
static SERIAL: Mutex<()> = Mutex::new(());

/// Taken before a test creates its database.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A sender gives a delivery up after this many attempts (GitHub redelivers for longer).
const MAX_ATTEMPTS: u32 = 40;
const RETRY_AFTER: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------
// The stream of webhooks
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A push to main with a new commit: deploys.
    Deploy,
    /// A push to a branch nothing deploys.
    Ignored,
    /// The same delivery (id and body) again, as GitHub's redelivery sends it.
    Duplicate,
    /// The same push under a new delivery id: the same trigger, deploys nothing new.
    Redelivery,
    Ping,
}

#[derive(Clone)]
struct Planned {
    delivery: String,
    event: &'static str,
    body: Vec<u8>,
    kind: Kind,
    /// The commit a Deploy (or its copies) pushes.
    sha: Option<String>,
}

/// What happened to one planned delivery.
struct Sent {
    planned: Planned,
    /// The last answer's status; 0 when the server never answered.
    status: u16,
    /// `status` of the last answer's JSON body.
    answer: String,
    attempts: u32,
    unavailable: u32,
    no_answer: u32,
}

fn sha(i: usize) -> String {
    format!("fa17{:036x}", i)
}

/// `n` deliveries: a third push new commits to main, the rest are ignored pushes, pings,
/// duplicates and redeliveries of those pushes.
fn plan(n: usize) -> Vec<Planned> {
    let mut planned: Vec<Planned> = Vec::with_capacity(n);
    let encode = |v: &Value| serde_json::to_vec(v).unwrap();
    for i in 0..n {
        let p = match i % 6 {
            0 | 3 => Planned {
                delivery: format!("d-{i}"),
                event: "push",
                body: encode(&push("refs/heads/main", &sha(i), "octocat")),
                kind: Kind::Deploy,
                sha: Some(sha(i)),
            },
            1 => Planned {
                delivery: format!("d-{i}"),
                event: "push",
                body: encode(&push(
                    &format!("refs/heads/feature-{i}"),
                    &sha(i),
                    "octocat",
                )),
                kind: Kind::Ignored,
                sha: None,
            },
            2 => Planned {
                kind: Kind::Duplicate,
                ..planned[i - 2].clone()
            },
            4 => Planned {
                delivery: format!("d-{i}"),
                event: "ping",
                body: encode(&fixture("ping")),
                kind: Kind::Ping,
                sha: None,
            },
            _ => Planned {
                delivery: format!("d-{i}"),
                kind: Kind::Redelivery,
                ..planned[i - 2].clone()
            },
        };
        planned.push(p);
    }
    planned
}

/// One signed POST over a fresh connection; `Err` when nothing came back.
fn post(port: u16, p: &Planned) -> std::io::Result<(u16, Value)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let signature = signature::sign(SECRET.as_bytes(), &p.body);
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: GitHub-Hookshot/test\r\n\
         X-GitHub-Event: {}\r\nX-GitHub-Delivery: {}\r\nX-Hub-Signature-256: {signature}\r\n\r\n",
        p.body.len(),
        p.event,
        p.delivery
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&p.body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json = body
        .find('{')
        .and_then(|start| body.rfind('}').map(|end| &body[start..=end]))
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or(Value::Null);
    Ok((status, json))
}

/// Sends one delivery, redelivering it (same id) after a refused connection, no answer
/// or a 5xx, as GitHub would; the next attempt goes to the next server.
fn deliver(ports: &[u16], first: usize, planned: Planned) -> Sent {
    let mut sent = Sent {
        planned,
        status: 0,
        answer: String::new(),
        attempts: 0,
        unavailable: 0,
        no_answer: 0,
    };
    while sent.attempts < MAX_ATTEMPTS {
        let port = ports[(first + sent.attempts as usize) % ports.len()];
        sent.attempts += 1;
        match post(port, &sent.planned) {
            Ok((status, answer)) => {
                sent.status = status;
                sent.answer = answer["status"].as_str().unwrap_or_default().to_string();
                if status == 503 {
                    sent.unavailable += 1;
                } else if status < 500 {
                    return sent;
                }
            }
            Err(_) => {
                sent.status = 0;
                sent.no_answer += 1;
            }
        }
        std::thread::sleep(RETRY_AFTER);
    }
    sent
}

/// Starts the stream: one delivery every `every`, each in its own thread so that a slow
/// answer (the database restarting) does not slow the rate.
fn stream(ports: Vec<u16>, planned: Vec<Planned>, every: Duration) -> JoinHandle<Vec<Sent>> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut senders = Vec::with_capacity(planned.len());
        for (i, p) in planned.into_iter().enumerate() {
            let at = started + every * i as u32;
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let ports = ports.clone();
            senders.push(std::thread::spawn(move || deliver(&ports, i, p)));
        }
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    })
}

// ---------------------------------------------------------------------------------------
// PostgreSQL restarts
// ---------------------------------------------------------------------------------------

/// A PostgreSQL server of the test's own, restarted by the test (never the server other
/// tests use); stopped and removed when dropped.
struct OwnPostgres(OwnCluster);

impl OwnPostgres {
    /// A new server, when the server binaries are installed.
    fn start() -> Option<OwnPostgres> {
        Binaries::find().map(|bins| OwnPostgres(OwnCluster::start(&bins)))
    }

    fn admin_url(&self) -> String {
        self.0.cluster.admin_url()
    }

    fn restart(&self) -> Duration {
        let started = Instant::now();
        assert!(self.0.cluster.ctl("restart"), "pg_ctl restart failed");
        started.elapsed()
    }
}

// ---------------------------------------------------------------------------------------
// What the database holds
// ---------------------------------------------------------------------------------------

#[derive(QueryableByName, Debug, Clone)]
struct DeploymentRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    instance: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Text)]
    error: String,
    #[diesel(sql_type = Text)]
    commit_sha: String,
}

#[derive(QueryableByName, Debug)]
struct OutboxRow {
    #[diesel(sql_type = Nullable<Text>)]
    deployment_id: Option<String>,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Text)]
    state: String,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

const DEPLOYMENTS: &str = "SELECT d.id AS id, i.name AS instance, d.state AS state, \
    d.error AS error, r.commit_sha AS commit_sha FROM deployments d \
    JOIN releases r ON r.id = d.release_id JOIN instances i ON i.id = d.instance_id \
    ORDER BY d.created_at, d.id";

/// Waits until no deployment is pending or running and no report is waiting.
fn wait_for_quiet(url: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut sql = None;
    wait_until("deployments and reports to drain", limit, || {
        // Reconnect lazily: the database may just have restarted.
        let sql = sql.get_or_insert_with(|| Sql::open(url));
        let busy = sql
            .count("SELECT COUNT(*) AS n FROM deployments WHERE state IN ('pending', 'running')");
        let waiting = sql.count("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'");
        busy == 0 && waiting == 0
    });
    started.elapsed()
}

const RUNNING: &str = "SELECT COUNT(*) AS n FROM deployments WHERE state = 'running'";
/// Reports a sender has claimed and not yet completed.
const CLAIMED: &str =
    "SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending' AND locked_by IS NOT NULL";

/// The GitHub state a stored status report becomes.
fn github_state(state: &str, message: &str) -> &'static str {
    match state {
        "pending" => "queued",
        "running" => "in_progress",
        "succeeded" => "success",
        "failed" if message == deploybot::store::WORKER_LOST => "error",
        "failed" | "rolled_back" => "failure",
        _ => "error",
    }
}

const FINAL: [&str; 3] = ["success", "failure", "error"];

#[derive(Default)]
struct Counts {
    deliveries: usize,
    deploy_pushes: usize,
    duplicate_copies: usize,
    redelivered_pushes: usize,
    accepted: usize,
    gave_up: usize,
    duplicates: usize,
    already_deployed: usize,
    ignored: usize,
    unavailable_503: u32,
    no_answer: u32,
    redeliveries: u32,
    deployments: usize,
    worker_lost: usize,
    github_deployments: usize,
    github_statuses: usize,
    /// GETs that looked for a report whose sending was interrupted, before resending it.
    github_lookups: usize,
    skipped_reports: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  deliveries sent {} (pushes to main {}, same delivery again {}, same push under a new id {})",
            self.deliveries, self.deploy_pushes, self.duplicate_copies, self.redelivered_pushes
        )?;
        writeln!(
            f,
            "  answered 2xx {} (duplicate {}, already deployed {}, ignored {}); gave up {}",
            self.accepted, self.duplicates, self.already_deployed, self.ignored, self.gave_up
        )?;
        writeln!(
            f,
            "  attempts that got 503 {}, got no answer {}; redeliveries {}",
            self.unavailable_503, self.no_answer, self.redeliveries
        )?;
        writeln!(
            f,
            "  deployments {} (worker lost {}); GitHub Deployments {}, statuses {}; \
             lookups before a resend {}; reports skipped {}",
            self.deployments,
            self.worker_lost,
            self.github_deployments,
            self.github_statuses,
            self.github_lookups,
            self.skipped_reports
        )
    }
}

/// Checks the invariants after the stream and returns the counts.
fn check(bot: &Bot, sent: &[Sent], deploying: &[&str]) -> (Counts, Vec<DeploymentRow>) {
    let mut counts = Counts {
        deliveries: sent.len(),
        ..Counts::default()
    };
    for s in sent {
        match s.planned.kind {
            Kind::Deploy => counts.deploy_pushes += 1,
            Kind::Duplicate => counts.duplicate_copies += 1,
            Kind::Redelivery => counts.redelivered_pushes += 1,
            Kind::Ignored | Kind::Ping => {}
        }
        counts.unavailable_503 += s.unavailable;
        counts.no_answer += s.no_answer;
        counts.redeliveries += s.attempts - 1;
        match s.answer.as_str() {
            "duplicate" => counts.duplicates += 1,
            "already deployed" => counts.already_deployed += 1,
            "ignored" => counts.ignored += 1,
            _ => {}
        }
        if (200..300).contains(&s.status) {
            counts.accepted += 1;
        } else {
            counts.gave_up += 1;
        }
    }
    let mut sql = Sql::open(&bot.db.url);

    // Every delivery that got a 2xx is stored; the id is the key, so once.
    let stored: Vec<String> = sql
        .load::<IdRow>("SELECT id FROM deliveries")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let stored_set: BTreeSet<&str> = stored.iter().map(String::as_str).collect();
    assert_eq!(stored_set.len(), stored.len(), "a delivery stored twice");
    let accepted: BTreeSet<&str> = sent
        .iter()
        .filter(|s| (200..300).contains(&s.status))
        .map(|s| s.planned.delivery.as_str())
        .collect();
    let missing: Vec<&&str> = accepted.difference(&stored_set).collect();
    assert!(
        missing.is_empty(),
        "deliveries answered 2xx but not stored: {missing:?}"
    );
    assert_eq!(
        counts.gave_up,
        0,
        "every delivery is accepted in the end (redelivered for {:?})",
        RETRY_AFTER * MAX_ATTEMPTS
    );

    // Each pushed commit deployed exactly once on each instance that deploys main.
    let deployments: Vec<DeploymentRow> = sql.load(DEPLOYMENTS);
    counts.deployments = deployments.len();
    let pushed: BTreeSet<&str> = sent
        .iter()
        .filter(|s| (200..300).contains(&s.status))
        .filter_map(|s| s.planned.sha.as_deref())
        .collect();
    for instance in deploying {
        let mut shas: Vec<&str> = deployments
            .iter()
            .filter(|d| d.instance == *instance)
            .map(|d| d.commit_sha.as_str())
            .collect();
        shas.sort();
        let unique: BTreeSet<&str> = shas.iter().copied().collect();
        assert_eq!(
            unique.len(),
            shas.len(),
            "{instance}: a commit deployed twice"
        );
        assert_eq!(
            unique, pushed,
            "{instance}: deployed commits != pushed commits"
        );
    }
    assert_eq!(deployments.len(), pushed.len() * deploying.len());

    // Every deployment ended.
    for d in &deployments {
        assert!(
            ["succeeded", "failed", "rolled_back", "cancelled"].contains(&d.state.as_str()),
            "deployment {} of {} is still {}",
            d.id,
            d.instance,
            d.state
        );
        if d.error == deploybot::store::WORKER_LOST {
            counts.worker_lost += 1;
        }
    }

    // The outbox: nothing waiting, nothing given up.
    let outbox: Vec<OutboxRow> =
        sql.load("SELECT deployment_id, kind, payload, state FROM outbox ORDER BY id");
    let failed: Vec<&OutboxRow> = outbox.iter().filter(|o| o.state == "failed").collect();
    assert!(failed.is_empty(), "reports GitHub never got: {failed:?}");
    assert!(outbox.iter().all(|o| o.state != "pending"));
    counts.skipped_reports = outbox.iter().filter(|o| o.state == "skipped").count();
    let mut sent_reports: HashMap<&str, Vec<&OutboxRow>> = HashMap::new();
    for o in outbox.iter().filter(|o| o.state == "sent") {
        if let Some(d) = &o.deployment_id {
            sent_reports.entry(d.as_str()).or_default().push(o);
        }
    }

    // GitHub: one Deployment per deployment, and exactly the statuses that were sent, in
    // order: queued first, one final status last.
    let github = bot.fake.deployments("acme/web");
    counts.github_deployments = github.len();
    counts.github_lookups = bot
        .fake
        .calls()
        .iter()
        .filter(|c| c.method == "GET" && c.path.contains("/deployments"))
        .count();
    let mut by_id: HashMap<String, Vec<&common::fake_github::FakeDeployment>> = HashMap::new();
    for g in &github {
        let id = g.payload["deploybot"]["deployment_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        by_id.entry(id).or_default().push(g);
    }
    let known: BTreeSet<&str> = deployments.iter().map(|d| d.id.as_str()).collect();
    for id in by_id.keys() {
        assert!(
            known.contains(id.as_str()),
            "a GitHub Deployment for {id:?}, which is not stored"
        );
    }
    for d in &deployments {
        let on_github = by_id.get(&d.id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            on_github.len(),
            1,
            "{} ({}): {} GitHub Deployments",
            d.id,
            d.instance,
            on_github.len()
        );
        let g = on_github[0];
        assert_eq!(g.sha, d.commit_sha);
        // `inactive` is GitHub's own doing (auto_inactive), not a report.
        let states: Vec<String> = g.states().into_iter().filter(|s| s != "inactive").collect();
        counts.github_statuses += states.len();
        let reports = sent_reports.get(d.id.as_str()).cloned().unwrap_or_default();
        let created = reports
            .iter()
            .filter(|o| o.kind == deploybot::github::outbox::DEPLOYMENT_CREATED)
            .count();
        assert_eq!(
            created, 1,
            "{}: the Deployment was sent {created} times",
            d.id
        );
        let expected: Vec<&str> = reports
            .iter()
            .filter(|o| o.kind == deploybot::github::outbox::DEPLOYMENT_STATUS)
            .map(|o| {
                let p: Value = serde_json::from_str(&o.payload).unwrap();
                github_state(
                    p["state"].as_str().unwrap_or_default(),
                    p["message"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            states, expected,
            "{} ({}, {} {:?}): GitHub has other statuses than were reported",
            d.id, d.instance, d.state, d.error
        );
        assert_eq!(
            states.first().map(String::as_str),
            Some("queued"),
            "{}: {states:?}",
            d.id
        );
        let finals = states
            .iter()
            .filter(|s| FINAL.contains(&s.as_str()))
            .count();
        assert_eq!(finals, 1, "{}: one final status: {states:?}", d.id);
        let last = states.last().map(String::as_str).unwrap_or_default();
        assert_eq!(
            last,
            github_state(&d.state, &d.error),
            "{} ({} {:?}): the final status is last and matches: {states:?}",
            d.id,
            d.state,
            d.error
        );
    }
    (counts, deployments)
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/bash\nset -u\n{body}\n")).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path.display().to_string()
}

fn command_instance(name: &str, environment: &str, script: &str) -> String {
    format!(
        r#"
[[instances]]
name = "{name}"
repo = "acme/web"
environment = "{environment}"
image = "ghcr.io/acme/web:{{sha}}"
strategy = "recreate"
on_push = ["main"]
commands = false

[instances.provider]
kind = "command"
run = ["{script}"]
timeout = "1m"
"#
    )
}

// ---------------------------------------------------------------------------------------
// 1. A steady stream while the server is killed and the database restarts
// ---------------------------------------------------------------------------------------

fn faults_under_a_steady_stream(db: TestDb, postgres: Option<&OwnPostgres>) {
    let began = Instant::now();
    let scripts = tempfile::tempdir().unwrap();
    // A deploy that takes a moment, so that one is likely running at the kill.
    let slow = script(
        scripts.path(),
        "slow.sh",
        r#"if [ "$DEPLOY_PHASE" = start ]; then sleep 0.2; fi"#,
    );
    let extra = command_instance("web-qa", "qa", &slow);
    let mut bot = Bot::start(db, "exit 0", &extra);
    let port = bot.port;

    // 20 webhooks a second for 20 seconds.
    let planned = plan(400);
    let stream = stream(vec![port], planned, Duration::from_millis(50));
    std::thread::sleep(Duration::from_secs(6));
    // Crash while a deployment runs (its outcome becomes unknown) and, if it happens
    // within a few seconds, while a report is on its way to GitHub.
    let crash_at = Instant::now();
    let (mut running_at_kill, mut claimed_at_kill);
    let mut sql = Sql::open(&bot.db.url);
    loop {
        running_at_kill = sql.count(RUNNING);
        claimed_at_kill = sql.count(CLAIMED);
        let waited = crash_at.elapsed();
        if running_at_kill > 0 && (claimed_at_kill > 0 || waited > Duration::from_secs(5)) {
            break;
        }
        assert!(waited < Duration::from_secs(15), "no deployment runs");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Instant::now();
    bot.kill9_and_restart();
    let restart = killed.elapsed();
    let mut pg_restart = None;
    if let Some(pg) = postgres {
        std::thread::sleep(Duration::from_secs(6));
        pg_restart = Some(pg.restart());
    }
    let sent = stream.join().unwrap();
    let streamed = began.elapsed();
    let drain = wait_for_quiet(&bot.db.url, Duration::from_secs(60));

    let (counts, _) = check(&bot, &sent, &["web-staging", "web-qa"]);
    println!(
        "faults_under_a_steady_stream ({}): server killed with {running_at_kill} deployment(s) \
         running and {claimed_at_kill} report(s) claimed, back in {restart:?}; \
         PostgreSQL restart {pg_restart:?}; stream {streamed:?}, drained in {drain:?}\n{counts}",
        if postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    assert!(counts.deployments > 0 && counts.duplicates > 0);
}

#[test]
fn postgres_faults_under_a_steady_stream() {
    let _serial = serial();
    let Some(postgres) = OwnPostgres::start() else {
        eprintln!("no PostgreSQL server binaries to start a server of its own: not restarted");
        return faults_under_a_steady_stream(TestDb::postgres(), None);
    };
    let db = TestDb::postgres_on(&postgres.admin_url(), None);
    faults_under_a_steady_stream(db, Some(&postgres));
}

#[test]
fn sqlite_faults_under_a_steady_stream() {
    let _serial = serial();
    faults_under_a_steady_stream(TestDb::sqlite(), None);
}

// ---------------------------------------------------------------------------------------
// 2. Two servers behind one PostgreSQL
// ---------------------------------------------------------------------------------------

/// One recorded phase of a deploy script.
#[derive(Debug)]
struct Phase {
    deployment: String,
    instance: String,
    phase: String,
    server: String,
    start: u128,
    end: u128,
}

fn phases(file: &Path) -> Vec<Phase> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Phase {
                deployment: f[0].into(),
                instance: f[1].into(),
                phase: f[2].into(),
                server: f[3].into(),
                start: f[4].parse().unwrap(),
                end: f[5].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn two_servers_share_one_postgres() {
    let _serial = serial();
    let began = Instant::now();
    let scripts = tempfile::tempdir().unwrap();
    let record = scripts.path().join("phases");
    let recording = script(
        scripts.path(),
        "record.sh",
        &format!(
            r#"start=$(date +%s%N)
if [ "$DEPLOY_PHASE" = start ]; then sleep 0.1; else sleep 0.02; fi
end=$(date +%s%N)
echo "$DEPLOY_ID $DEPLOY_INSTANCE $DEPLOY_PHASE $PPID $start $end" >> '{}'"#,
            record.display()
        ),
    );
    let instances = ["svc-a", "svc-b", "svc-c"];
    let extra: String = instances
        .iter()
        .map(|name| command_instance(name, name, &recording))
        .collect();
    let mut bot = Bot::start(TestDb::postgres(), "exit 0", &extra);
    let replica = bot.start_replica();
    let ports = vec![bot.port, replica.port];

    // 10 webhooks a second for 15 seconds, alternating between the servers; one server
    // crashes half-way and the other carries on (and recovers what the crash left running).
    let planned = plan(150);
    let stream = stream(ports, planned, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(7));
    // Crash the first server while it runs a deployment, if it does within a few seconds.
    let theirs = format!(
        "SELECT COUNT(*) AS n FROM deployments WHERE state = 'running' \
         AND lease_owner NOT LIKE '%:{}:%'",
        replica.pid()
    );
    let crash_at = Instant::now();
    let mut running_at_kill = 0;
    let mut sql = Sql::open(&bot.db.url);
    while running_at_kill == 0 && crash_at.elapsed() < Duration::from_secs(5) {
        running_at_kill = sql.count(&theirs);
        std::thread::sleep(Duration::from_millis(10));
    }
    bot.kill9_and_restart();
    let sent = stream.join().unwrap();
    let streamed = began.elapsed();
    let drain = wait_for_quiet(&bot.db.url, Duration::from_secs(60));

    let mut deploying = vec!["web-staging"];
    deploying.extend(instances);
    let (counts, deployments) = check(&bot, &sent, &deploying);

    // Never two deployments of one instance at once: a deployment's phases span from the
    // first start to the last end, and the spans of one instance do not overlap.
    let recorded = phases(&record);
    let mut spans: BTreeMap<(&str, &str), (u128, u128)> = BTreeMap::new();
    for p in &recorded {
        let span = spans
            .entry((p.instance.as_str(), p.deployment.as_str()))
            .or_insert((p.start, p.end));
        span.0 = span.0.min(p.start);
        span.1 = span.1.max(p.end);
    }
    for instance in instances {
        let mut list: Vec<(&str, (u128, u128))> = spans
            .iter()
            .filter(|((i, _), _)| *i == instance)
            .map(|((_, d), span)| (*d, *span))
            .collect();
        list.sort_by_key(|(_, (start, _))| *start);
        for pair in list.windows(2) {
            assert!(
                pair[0].1.1 <= pair[1].1.0,
                "{instance}: {} and {} ran at the same time",
                pair[0].0,
                pair[1].0
            );
        }
    }
    // Each deployment ran once: one start phase per succeeded deployment, at most one for
    // one whose worker was lost, none for anything else.
    let by_id: HashMap<&str, &DeploymentRow> =
        deployments.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut starts: HashMap<&str, usize> = HashMap::new();
    for p in recorded.iter().filter(|p| p.phase == "start") {
        assert!(
            by_id.contains_key(p.deployment.as_str()),
            "a run of an unknown deployment: {p:?}"
        );
        *starts.entry(p.deployment.as_str()).or_default() += 1;
    }
    for d in deployments.iter().filter(|d| d.instance != "web-staging") {
        let ran = starts.get(d.id.as_str()).copied().unwrap_or_default();
        match d.state.as_str() {
            "succeeded" => assert_eq!(ran, 1, "{} ran {ran} times", d.id),
            _ => assert!(ran <= 1, "{} ({}) ran {ran} times", d.id, d.state),
        }
    }
    // Only the crash loses deployments: none that the live server ran.
    let replica_pid = replica.pid().to_string();
    for p in recorded.iter().filter(|p| p.server == replica_pid) {
        let d = by_id[p.deployment.as_str()];
        assert_ne!(
            d.error,
            deploybot::store::WORKER_LOST,
            "{} ran on the live server and was declared lost",
            d.id
        );
    }
    let servers: BTreeSet<&str> = recorded.iter().map(|p| p.server.as_str()).collect();
    println!(
        "two_servers_share_one_postgres: first server killed with {running_at_kill} deployment(s) \
         running; stream {streamed:?}, drained in {drain:?}; \
         {} deploy phases run by {} server processes\n{counts}",
        recorded.len(),
        servers.len()
    );
    assert!(
        servers.len() >= 2,
        "both servers ran deployments: {servers:?}"
    );
}

/// What two servers do at once with leases that expired: both recovery loops find the
/// same deployments, and the late worker finishes some of them anyway. Each deployment
/// ends once, with one final report that matches its stored state.
#[test]
fn two_servers_settle_each_lost_lease_once() {
    use deploybot::deploy::{
        DeployRequest, DeployState, Deployment, InstanceStore, QueueStore, Release, ReleaseStore,
    };
    use deploybot::store::DieselStore;

    let _serial = serial();
    let db = TestDb::postgres();
    // The second server's own pool on the same database.
    let other = Arc::new(DieselStore::connect(&db.url).unwrap());
    for i in 0..40 {
        let inst = db
            .store
            .upsert_instance("acme", &format!("svc-{i}"), "acme/web", &format!("env-{i}"))
            .unwrap();
        let request = DeployRequest {
            instance_id: inst.id,
            image: format!("img:{i}"),
            env: BTreeMap::new(),
            strategy: "recreate".into(),
            notes: String::new(),
            commit_sha: sha(i),
            params: Default::default(),
            noop: false,
        };
        let release = Release::from_request("acme", &request);
        let deployment = Deployment::pending(&release, "recreate", "ci");
        db.store
            .insert_release_and_deployment(&release, &deployment)
            .unwrap();
    }
    // A worker claims them all with leases that expire at once, and falls silent.
    let mut claimed = Vec::new();
    while let Some(d) = db
        .store
        .claim_next("slow", Duration::from_millis(1))
        .unwrap()
    {
        claimed.push(d);
    }
    assert_eq!(claimed.len(), 40);
    std::thread::sleep(Duration::from_millis(20));

    let start = Arc::new(std::sync::Barrier::new(3));
    let recover = |store: Arc<DieselStore>| {
        let start = Arc::clone(&start);
        std::thread::spawn(move || {
            start.wait();
            let expired: Vec<_> = store
                .expired_leases()
                .unwrap()
                .into_iter()
                .map(|lease| lease.id)
                .collect();
            store.recover_expired(&expired).unwrap().len()
        })
    };
    let first = recover(Arc::clone(&db.store));
    let second = recover(Arc::clone(&other));
    let late = {
        let (store, start) = (Arc::clone(&db.store), Arc::clone(&start));
        std::thread::spawn(move || {
            start.wait();
            let mut finished = 0;
            for mut d in claimed {
                d.transition(DeployState::Succeeded).unwrap();
                if store.finish_deployment(&d, "slow").is_ok() {
                    finished += 1;
                }
            }
            finished
        })
    };
    let recovered = first.join().unwrap() + second.join().unwrap();
    let finished = late.join().unwrap();
    println!("lost leases: {recovered} recovered, {finished} finished by the late worker");

    let mut sql = Sql::open(&db.url);
    let deployments: Vec<DeploymentRow> = sql.load(DEPLOYMENTS);
    let outbox: Vec<OutboxRow> =
        sql.load("SELECT deployment_id, kind, payload, state FROM outbox ORDER BY id");
    let mut settled = BTreeMap::new();
    for d in &deployments {
        let finals: Vec<String> = outbox
            .iter()
            .filter(|o| o.deployment_id.as_deref() == Some(d.id.as_str()))
            .filter(|o| o.kind == deploybot::github::outbox::DEPLOYMENT_STATUS)
            .map(|o| serde_json::from_str::<Value>(&o.payload).unwrap())
            .map(|p| p["state"].as_str().unwrap_or_default().to_string())
            .filter(|s| s != "pending" && s != "running")
            .collect();
        assert_eq!(
            finals,
            vec![d.state.clone()],
            "{}: stored {} ({:?}), final reports {finals:?}",
            d.id,
            d.state,
            d.error
        );
        *settled.entry(d.state.clone()).or_insert(0) += 1;
    }
    assert_eq!(recovered + finished, 40, "{settled:?}");
}

// ---------------------------------------------------------------------------------------
// 3. A crash between GitHub's answer and the outbox commit
// ---------------------------------------------------------------------------------------

/// GitHub accepted every report of a deployment, but the sender died during its first
/// attempt, before recording it: the rows are still claimed by the dead sender, count no
/// attempt, and no GitHub id was stored. The server takes them over when the claim
/// expires, finds them on GitHub, and sends none twice.
fn reports_in_doubt_reach_github_once(db: TestDb) {
    let bot = Bot::start(db, "exit 0", "");
    let planned = plan(1).remove(0);
    let sent = deliver(&[bot.port], 0, planned);
    assert_eq!(sent.status, 202, "{}", sent.answer);
    wait_for_quiet(&bot.db.url, Duration::from_secs(30));
    let before = bot.fake.deployments("acme/web");
    assert_eq!(before.len(), 1);
    assert_eq!(
        before[0].states().last().map(String::as_str),
        Some("success")
    );
    let posts = |bot: &Bot| {
        let calls = bot.fake.calls();
        calls.iter().filter(|c| c.method == "POST").count()
    };
    let posted = posts(&bot);

    let mut sql = Sql::open(&bot.db.url);
    let reset = sql.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, locked_by = 'sender:dead', \
         locked_until = created_at WHERE deployment_id IS NOT NULL",
    );
    assert_eq!(reset, 4, "deployment, queued, in_progress, success");
    sql.execute("UPDATE deployments SET github_deployment_id = NULL");
    wait_for_quiet(&bot.db.url, Duration::from_secs(60));

    let after = bot.fake.deployments("acme/web");
    assert_eq!(after.len(), 1, "one GitHub Deployment");
    assert_eq!(after[0].states(), before[0].states(), "no status twice");
    assert_eq!(posts(&bot), posted, "nothing was sent again");
    let calls = bot.fake.calls();
    let lookups = calls.iter().filter(|c| c.method == "GET").count();
    assert_eq!(lookups, 4, "each report was looked up on GitHub instead");
    let outbox: Vec<OutboxRow> =
        sql.load("SELECT deployment_id, kind, payload, state FROM outbox ORDER BY id");
    assert!(outbox.iter().all(|o| o.state == "sent"), "{outbox:?}");
    let stored =
        sql.count("SELECT COUNT(*) AS n FROM deployments WHERE github_deployment_id IS NOT NULL");
    assert_eq!(stored, 1, "the GitHub id found again is stored");
}

#[test]
fn sqlite_reports_in_doubt_reach_github_once() {
    let _serial = serial();
    reports_in_doubt_reach_github_once(TestDb::sqlite());
}

#[test]
fn postgres_reports_in_doubt_reach_github_once() {
    let _serial = serial();
    reports_in_doubt_reach_github_once(TestDb::postgres());
}

/// When the database is gone, a webhook is refused with 503 `unavailable` (nothing was
/// stored: GitHub's redelivery brings it back) instead of being lost behind a 2xx or
/// stored as a refusal, the answer comes before GitHub's 10 s timeout, `/readyz` says not
/// ready, and `/healthz` still answers.
#[test]
fn a_webhook_is_503_when_postgres_is_gone() {
    let db = TestDb::postgres();
    let (base, name) = db.url.rsplit_once('/').expect("a database URL");
    let admin = format!("{base}/postgres");
    let name = name.to_string();
    let bot = Bot::start(db, "#!/bin/sh\nexit 0\n", "");
    let (status, pong) = bot.send("ping", &fixture("ping"), "gone-0");
    assert_eq!((status, pong["status"].as_str()), (200, Some("pong")));

    let mut conn = PgConnection::establish(&admin).expect("admin connection");
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .expect("drop the bot's database under it");

    let started = Instant::now();
    let event = push("refs/heads/main", &sha(1), "octocat");
    let (status, answer) = bot.send("push", &event, "gone-1");
    let waited = started.elapsed();
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "unavailable", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("redeliver"),
        "{answer}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "answered after {waited:?}: GitHub gives up after 10 s"
    );

    assert_eq!(bot.get("/healthz").0, 200, "the process is alive");
    assert_eq!(
        bot.get("/readyz").0,
        503,
        "but not ready without its database"
    );
}
