//! Webhook ingest and memory: signed `push` webhooks per second and
//! latency percentiles on 127.0.0.1, measured with `wrk` and the same script, payload and
//! settings for every subject:
//!
//! - the real `deploybot serve` binary (built by `cargo bench`, bench profile = release)
//!   on a fresh SQLite file and on a fresh PostgreSQL database, storing every delivery
//!   before it answers; no GitHub credentials, so reports go to the log;
//! - the Node.js peer, `bench/node/server.js` (`@octokit/webhooks` `createNodeMiddleware`,
//!   verifies and parses, stores nothing);
//! - the Python peer, `bench/python/server.py` (aiohttp + gidgethub
//!   `Event.from_http`, verifies and parses, stores nothing).
//!
//! Two payloads, GitHub's documented `push` example retargeted at `acme/web`: (a) a push to
//! a branch no instance deploys (stored, answered "ignored"); (b) a push to `main`, which
//! the `web-staging` instance (noop provider) deploys. Every request carries a new commit
//! SHA and its own signature, precomputed into a file that `benches/ingest.lua` cycles
//! through (wrk's Lua has no HMAC), and a unique `X-GitHub-Delivery`. Each subject and
//! payload gets a fresh process (and database): start, 1 s idle (resident size read), a
//! warm-up run with payload (a), then the measured run while the resident size is sampled
//! every 100 ms. Afterwards deploybot's database is counted: deliveries stored and
//! deployments created.
//!
//! The CPU time each subject's process and the load tool used during the measured run is
//! read too (`/proc/PID/stat`, `getrusage`), per answered request.
//!
//! Run: `bench/run.sh` (installs wrk and the peers), or `cargo bench --bench ingest`.
//! Environment: `BENCH_INGEST_SUBJECTS` (`sqlite,postgres,node,python`),
//! `BENCH_INGEST_CLIENTS` (`wrk`, the default, and/or `light`: `benches/support/client.rs`,
//! the same requests with a third of wrk's CPU per request),
//! `BENCH_DURATION` (seconds, 10), `BENCH_WARMUP` (seconds, 3), `BENCH_CONNECTIONS` (32),
//! `BENCH_THREADS` (2), `BENCH_INGEST_BODIES` (signed bodies for payload (b), 200000),
//! `TEST_DATABASE_URL`, `BENCH_OUT`.
//!
//! Floors: built with `--features bench-floor`, the subjects `floor-nothing`,
//! `floor-handover` and `floor-fsync` run deploybot on SQLite without storing deliveries
//! (`DEPLOYBOT_BENCH_FLOOR`, src/store/group.rs): the webhook path alone, plus the hand-over
//! to the delivery writer, plus one `fdatasync` per batch. They show how much of the
//! request's cost is the store's. Listed round after round with `node` and `sqlite`, each
//! run is compared with the Node run just before it:
//!
//!   BENCH_INGEST_SUBJECTS=node,floor-nothing,floor-handover,floor-fsync,sqlite,node,… \
//!     cargo bench --features bench-floor --bench ingest

#[allow(dead_code)]
#[path = "../tests/github/bot.rs"]
mod bot;
#[path = "support/client.rs"]
mod client;
#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestDb;
use deploybot::github::webhook::signature;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use support::{Results, RssSampler, mib, ms};

const SECRET: &str = "bench-webhook-secret";
const PLACEHOLDER: &str = "@@AFTER@@";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What is measured, in the order of the table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    Sqlite,
    Postgres,
    Node,
    Python,
    /// deploybot on SQLite built with `--features bench-floor`, storing nothing: see
    /// `DEPLOYBOT_BENCH_FLOOR` in src/store/group.rs.
    FloorNothing,
    FloorHandover,
    FloorFsync,
}

impl Subject {
    fn parse(name: &str) -> Subject {
        match name {
            "sqlite" => Subject::Sqlite,
            "postgres" => Subject::Postgres,
            "node" => Subject::Node,
            "python" => Subject::Python,
            "floor-nothing" | "floor-handover" | "floor-fsync"
                if !cfg!(feature = "bench-floor") =>
            {
                panic!(
                    "BENCH_INGEST_SUBJECTS: {name} needs a deploybot built with the bench-floor \
                     feature: cargo bench --features bench-floor --bench ingest"
                )
            }
            "floor-nothing" => Subject::FloorNothing,
            "floor-handover" => Subject::FloorHandover,
            "floor-fsync" => Subject::FloorFsync,
            other => panic!(
                "BENCH_INGEST_SUBJECTS: unknown subject {other:?} (sqlite, postgres, node, \
                 python; with --features bench-floor also floor-nothing, floor-handover, \
                 floor-fsync)"
            ),
        }
    }

    /// A floor stores nothing: it is measured on payload (a) only and is left out of the
    /// summary table (its own table says what it is).
    fn is_floor(self) -> bool {
        matches!(
            self,
            Subject::FloorNothing | Subject::FloorHandover | Subject::FloorFsync
        )
    }

    /// `DEPLOYBOT_BENCH_FLOOR` for a floor (`dir`: the subject's temporary directory).
    fn floor_setting(self, dir: &Path) -> Option<String> {
        match self {
            Subject::FloorNothing => Some("nothing".into()),
            Subject::FloorHandover => Some("handover".into()),
            Subject::FloorFsync => Some(format!("fsync:{}", dir.join("floor.sync").display())),
            _ => None,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Subject::Sqlite => "sqlite",
            Subject::Postgres => "postgres",
            Subject::Node => "node",
            Subject::Python => "python",
            Subject::FloorNothing => "floor-nothing",
            Subject::FloorHandover => "floor-handover",
            Subject::FloorFsync => "floor-fsync",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Subject::Sqlite => support::SQLITE,
            Subject::Postgres => support::POSTGRES,
            Subject::Node => support::NODE,
            Subject::Python => support::PYTHON,
            Subject::FloorNothing => "floor: nothing stored, no hand-over",
            Subject::FloorHandover => "floor: hand-over to the writer, nothing written",
            Subject::FloorFsync => "floor: hand-over + one 4 KiB fdatasync per batch",
        }
    }
}

/// The two payloads.
#[derive(Clone, Copy)]
struct Case {
    key: &'static str,
    label: &'static str,
    git_ref: &'static str,
}

const NO_MATCH: Case = Case {
    key: "a",
    label: "(a) push that matches no instance",
    git_ref: "refs/heads/feature/not-deployed",
};
const DEPLOYS: Case = Case {
    key: "b",
    label: "(b) push that creates a deployment",
    git_ref: "refs/heads/main",
};

/// A template and its signatures file, as `benches/ingest.lua` reads them.
struct Inputs {
    template: PathBuf,
    signatures: PathBuf,
}

fn write_inputs(dir: &Path, case: Case, bodies: u64) -> Inputs {
    let payload = bot::push(case.git_ref, PLACEHOLDER, "octocat");
    let template = serde_json::to_string(&payload).expect("json");
    assert_eq!(
        template.matches(PLACEHOLDER).count(),
        2,
        "the template names the commit in `after` and `head_commit.id`"
    );
    let inputs = Inputs {
        template: dir.join(format!("push-{}.json", case.key)),
        signatures: dir.join(format!("signatures-{}.txt", case.key)),
    };
    std::fs::write(&inputs.template, &template).expect("write the template");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&inputs.signatures).expect("create the signatures file"),
    );
    // Different SHAs per payload, so (a) and (b) never share a commit.
    let base: u64 = if case.key == "a" {
        0xa << 56
    } else {
        0xb << 56
    };
    for n in 0..bodies {
        let sha = format!("{:040x}", u128::from(base + n));
        let body = template.replace(PLACEHOLDER, &sha);
        writeln!(
            out,
            "{sha} {}",
            signature::sign(SECRET.as_bytes(), body.as_bytes())
        )
        .expect("write a signature");
    }
    out.flush().expect("flush the signatures");
    inputs
}

/// A child process that is killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running subject on its port.
struct Server {
    port: u16,
    proc: Proc,
    /// deploybot's database (dropped after the process).
    db: Option<TestDb>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/github", self.port)
    }
}

fn start(subject: Subject) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = support::free_port();
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
    let (command, db) = match subject {
        Subject::Sqlite
        | Subject::Postgres
        | Subject::FloorNothing
        | Subject::FloorHandover
        | Subject::FloorFsync => {
            let db = if subject == Subject::Postgres {
                TestDb::postgres()
            } else {
                TestDb::sqlite()
            };
            let config = dir.path().join("deploybot.toml");
            std::fs::write(
                &config,
                format!(
                    r#"database_url = "{url}"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
webhook_secrets = ["{SECRET}"]

[[instances]]
name = "web-staging"
repo = "acme/web"
environment = "staging"
image = "ghcr.io/acme/web:{{short_sha}}"
strategy = "rolling"
on_push = ["main"]

[instances.provider]
kind = "noop"
"#,
                    url = db.url
                ),
            )
            .expect("write the config");
            let mut command = Command::new(env!("CARGO_BIN_EXE_deploybot"));
            command.args(["serve", "--config"]).arg(&config);
            for name in [
                "DATABASE_URL",
                "DEPLOYBOT_CONFIG",
                "DEPLOYBOT_LISTEN",
                "DEPLOYBOT_PUBLIC_URL",
                "DEPLOYBOT_WEBHOOK_SECRET",
                "DEPLOYBOT_GITHUB_API_URL",
                "DEPLOYBOT_LOG",
                "RUST_LOG",
                "GITHUB_TOKEN",
                "GITHUB_APP_ID",
                "GITHUB_APP_PRIVATE_KEY",
                "GITHUB_APP_PRIVATE_KEY_PATH",
                "DEPLOYBOT_BENCH_FLOOR",
            ] {
                command.env_remove(name);
            }
            if let Some(floor) = subject.floor_setting(dir.path()) {
                command.env("DEPLOYBOT_BENCH_FLOOR", floor);
            }
            (command, Some(db))
        }
        Subject::Node => {
            let dir = root().join("bench/node");
            assert!(
                dir.join("node_modules/@octokit/webhooks").exists(),
                "the Node peer is not installed: run bench/run.sh (or `npm ci` in bench/node)"
            );
            let mut command = Command::new("node");
            command
                .arg("server.js")
                .current_dir(dir)
                .env("NODE_ENV", "production");
            (command, None)
        }
        Subject::Python => {
            let dir = root().join("bench/python");
            let python = dir.join(".venv/bin/python");
            assert!(
                python.exists(),
                "the Python peer is not installed: run bench/run.sh"
            );
            let mut command = Command::new(python);
            command.arg("server.py").current_dir(dir);
            (command, None)
        }
    };
    let mut command = command;
    command
        .env("PORT", port.to_string())
        .env("WEBHOOK_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log);
    let proc = Proc(command.spawn().expect("start the subject"));
    support::wait_for_port(port, Duration::from_secs(60), subject.key());
    Server {
        port,
        proc,
        db,
        _dir: dir,
    }
}

/// One load run, with wrk's field names (its script's `done()`).
#[derive(Default, Clone)]
struct Run {
    command: String,
    output: String,
    fields: BTreeMap<String, f64>,
}

impl Run {
    fn get(&self, name: &str) -> f64 {
        self.fields.get(name).copied().unwrap_or(f64::NAN)
    }

    fn requests_per_second(&self) -> f64 {
        self.get("requests") / (self.get("duration_us") / 1e6)
    }

    fn errors(&self) -> f64 {
        ["connect_errors", "read_errors", "write_errors", "timeouts"]
            .iter()
            .map(|f| self.get(f))
            .sum()
    }
}

struct Settings {
    threads: u64,
    connections: u64,
}

fn wrk(
    settings: &Settings,
    url: &str,
    seconds: u64,
    inputs: &Inputs,
    prefix: &str,
) -> Result<Run, String> {
    let script = root().join("benches/ingest.lua");
    let args: Vec<String> = vec![
        format!("-t{}", settings.threads),
        format!("-c{}", settings.connections),
        format!("-d{seconds}s"),
        "--latency".into(),
        "-s".into(),
        script.display().to_string(),
        url.into(),
        "--".into(),
        inputs.template.display().to_string(),
        inputs.signatures.display().to_string(),
        prefix.into(),
        settings.threads.to_string(),
    ];
    let command = format!("wrk {}", args.join(" "));
    let output = Command::new("wrk")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install -y wrk): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("WRKRESULT "))
        .ok_or_else(|| format!("wrk printed no WRKRESULT line:\n{text}"))?;
    let fields = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect();
    Ok(Run {
        command,
        output: text,
        fields,
    })
}

/// The load tool of a run.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Client {
    /// wrk with `benches/ingest.lua`.
    Wrk,
    /// `benches/support/client.rs`: the same requests, less CPU per request.
    Light,
}

impl Client {
    fn parse(name: &str) -> Client {
        match name {
            "wrk" => Client::Wrk,
            "light" => Client::Light,
            other => panic!("BENCH_INGEST_CLIENTS: unknown client {other:?} (wrk, light)"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Client::Wrk => "wrk",
            Client::Light => "light client",
        }
    }
}

/// Runs `client` against `server` and reads what it measured.
fn drive(
    client: Client,
    settings: &Settings,
    server: &Server,
    seconds: u64,
    inputs: &Inputs,
    prefix: &str,
) -> Result<Run, String> {
    match client {
        Client::Wrk => wrk(settings, &server.url(), seconds, inputs, prefix),
        Client::Light => light(settings, server.port, seconds, inputs, prefix),
    }
}

fn light(
    settings: &Settings,
    port: u16,
    seconds: u64,
    inputs: &Inputs,
    prefix: &str,
) -> Result<Run, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let command = format!(
        "benches/support/client.rs (in the bench process): threads={} connections={} \
         duration={seconds}s http://{addr}/webhooks/github {} {} {prefix}",
        settings.threads,
        settings.connections,
        inputs.template.display(),
        inputs.signatures.display(),
    );
    let out = client::run(
        addr,
        settings.threads as usize,
        settings.connections as usize,
        seconds,
        &inputs.template,
        &inputs.signatures,
        prefix,
    )?;
    let fields = [
        ("requests", out.requests as f64),
        ("duration_us", out.duration.as_micros() as f64),
        ("p50_us", out.percentile_us(50.0)),
        ("p90_us", out.percentile_us(90.0)),
        ("p99_us", out.percentile_us(99.0)),
        ("max_us", out.max_us()),
        ("status_errors", out.status_errors as f64),
        ("connect_errors", out.connect_errors as f64),
        ("read_errors", out.read_errors as f64),
        ("write_errors", out.write_errors as f64),
        ("timeouts", 0.0),
        ("wraps", out.wraps as f64),
        ("bodies", out.bodies as f64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(Run {
        command,
        output: String::new(),
        fields,
    })
}

/// CPU time (user + system) a process has used, in µs: `/proc/PID/stat` for a running
/// process, `getrusage(RUSAGE_CHILDREN)` for the children this process has reaped (wrk),
/// `getrusage(RUSAGE_SELF)` for this process (the light client).
fn cpu_us_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz * 1e6)
}

fn rusage_us(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

fn client_cpu_us(client: Client) -> f64 {
    match client {
        Client::Wrk => rusage_us(libc::RUSAGE_CHILDREN),
        Client::Light => rusage_us(libc::RUSAGE_SELF),
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A count from deploybot's database, through a connection of our own.
fn count(url: &str, sql: &str) -> i64 {
    let counted = if let Some(path) = url.strip_prefix("sqlite://") {
        let mut conn = SqliteConnection::establish(path).expect("open the SQLite database");
        diesel::sql_query(sql).get_result::<Count>(&mut conn)
    } else {
        let mut conn = PgConnection::establish(url).expect("open the PostgreSQL database");
        diesel::sql_query(sql).get_result::<Count>(&mut conn)
    };
    counted.expect("count").n
}

struct Measured {
    subject: Subject,
    case: Case,
    run: Run,
    idle_kib: u64,
    peak_kib: u64,
    /// deploybot: (deliveries of the measured run stored, deployments created).
    stored: Option<(i64, i64)>,
    /// The 1-minute load average before and right after the measured run.
    load: (String, String),
    client: Client,
    /// CPU time per answered request during the measured run, µs: (server, load tool).
    cpu_us: (f64, f64),
}

fn main() {
    let subjects: Vec<Subject> = std::env::var("BENCH_INGEST_SUBJECTS")
        .unwrap_or_else(|_| "sqlite,postgres,node,python".into())
        .split(',')
        .map(|s| Subject::parse(s.trim()))
        .collect();
    let seconds = support::env_number("BENCH_DURATION", 10);
    let warmup = support::env_number("BENCH_WARMUP", 3);
    let settings = Settings {
        threads: support::env_number("BENCH_THREADS", 2),
        connections: support::env_number("BENCH_CONNECTIONS", 32),
    };
    let bodies = support::env_number("BENCH_INGEST_BODIES", 200_000);
    let clients: Vec<Client> = std::env::var("BENCH_INGEST_CLIENTS")
        .unwrap_or_else(|_| "wrk".into())
        .split(',')
        .map(|c| Client::parse(c.trim()))
        .collect();
    let out = support::out_dir();
    let inputs_dir = out.join("ingest-inputs");
    std::fs::create_dir_all(&inputs_dir).expect("inputs dir");
    let no_match = write_inputs(&inputs_dir, NO_MATCH, 20_000);
    let deploys = write_inputs(&inputs_dir, DEPLOYS, bodies);
    let run_id = uuid::Uuid::now_v7().simple().to_string();

    let mut results = Results::create("ingest");
    let mut measured = Vec::new();
    let mut failures = Vec::new();
    for &subject in &subjects {
        for (case, &client) in [NO_MATCH, DEPLOYS]
            .into_iter()
            .flat_map(|case| clients.iter().map(move |c| (case, c)))
        {
            if subject.is_floor() && case.key != "a" {
                continue;
            }
            let inputs = if case.key == "a" { &no_match } else { &deploys };
            let server = start(subject);
            std::thread::sleep(Duration::from_secs(1));
            let idle_kib = support::rss_kib(server.pid()).unwrap_or(0);
            let tag = format!(
                "{}-{}-{}-{}",
                run_id,
                subject.key(),
                case.key,
                client.label().replace(' ', "-")
            );
            if warmup > 0
                && let Err(e) = drive(
                    client,
                    &settings,
                    &server,
                    warmup,
                    &no_match,
                    &format!("warm-{tag}"),
                )
            {
                failures.push(format!("{} {}: warm-up: {e}", subject.key(), case.key));
                continue;
            }
            let load_before = support::load();
            let sampler = RssSampler::start(server.pid());
            let prefix = format!("run-{tag}");
            let (server_cpu, client_cpu) = (cpu_us_of(server.pid()), client_cpu_us(client));
            let run = drive(client, &settings, &server, seconds, inputs, &prefix);
            let (server_cpu, client_cpu) = (
                cpu_us_of(server.pid())
                    .zip(server_cpu)
                    .map_or(f64::NAN, |(b, a)| b - a),
                client_cpu_us(client) - client_cpu,
            );
            let peak_kib = sampler.stop();
            let load_after = support::load();
            let run = match run {
                Ok(run) => run,
                Err(e) => {
                    failures.push(format!("{} {}: {e}", subject.key(), case.key));
                    continue;
                }
            };
            // Let answers in flight when wrk stopped land before counting.
            std::thread::sleep(Duration::from_millis(500));
            let stored = server.db.as_ref().map(|db| {
                (
                    count(
                        &db.url,
                        &format!("SELECT count(*) AS n FROM deliveries WHERE id LIKE '{prefix}-%'"),
                    ),
                    count(&db.url, "SELECT count(*) AS n FROM deployments"),
                )
            });
            let rps = run.requests_per_second();
            let answered = run.get("requests").max(1.0);
            let cpu_us = (server_cpu / answered, client_cpu / answered);
            println!(
                "{} {} ({}): {rps:.0} requests/s, p50 {} ms, p99 {} ms, non-2xx {}, stored {stored:?}, CPU µs/request server {:.1} client {:.1}",
                subject.key(),
                case.key,
                client.label(),
                ms(run.get("p50_us") / 1000.0),
                ms(run.get("p99_us") / 1000.0),
                run.get("status_errors"),
                cpu_us.0,
                cpu_us.1,
            );
            std::fs::write(
                out.join(format!(
                    "{}-{}-{}.txt",
                    client.label().replace(' ', "-"),
                    subject.key(),
                    case.key
                )),
                format!("$ {}\n{}", run.command, run.output),
            )
            .expect("write the wrk output");
            drop(server);
            measured.push(Measured {
                subject,
                case,
                run,
                idle_kib,
                peak_kib,
                stored,
                load: (load_before, load_after),
                client,
                cpu_us,
            });
        }
    }
    let payload_bytes = std::fs::metadata(&deploys.template).map_or(0, |m| m.len() as usize)
        - PLACEHOLDER.len() * 2
        + 80;
    report(
        &mut results,
        &settings,
        seconds,
        warmup,
        payload_bytes,
        &measured,
    );
    for f in &failures {
        results.detail(&format!("FAILED: {f}"));
    }
    assert!(failures.is_empty(), "some ingest runs failed");
}

fn report(
    results: &mut Results,
    settings: &Settings,
    seconds: u64,
    warmup: u64,
    payload_bytes: usize,
    measured: &[Measured],
) {
    results.detail(&format!(
        "Webhook ingest: {} threads, {} connections, {seconds} s per run after a {warmup} s \
         warm-up, on a fresh process (and database) per subject, payload and load tool. Payload: \
         GitHub's documented push example ({} bytes), a new commit SHA, signature and delivery id \
         per request. Load tools: wrk with `benches/ingest.lua`, and the light client \
         `benches/support/client.rs` (same requests, less CPU each). CPU µs/request: the \
         process's user + system time during the measured run ÷ the answers counted.",
        settings.threads, settings.connections, payload_bytes,
    ));
    results.detail("");
    results.detail("| subject | payload | load tool | requests/s | p50 / p90 / p99 / max (ms) | non-2xx | socket errors | a body sent twice | deliveries stored | deployments created | CPU µs/request: server / load tool | RSS idle → peak (MiB) | load before → after |");
    results
        .detail("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for m in measured {
        let r = &m.run;
        let (stored, created) = m.stored.map_or(("—".into(), "—".into()), |(d, c)| {
            (d.to_string(), c.to_string())
        });
        results.detail(&format!(
            "| {} | {} | {} | {:.0} | {} / {} / {} / {} | {} | {} | {} | {stored} | {created} | {:.1} / {:.1} | {} → {} | {} → {} |",
            m.subject.column(),
            m.case.label,
            m.client.label(),
            r.requests_per_second(),
            ms(r.get("p50_us") / 1000.0),
            ms(r.get("p90_us") / 1000.0),
            ms(r.get("p99_us") / 1000.0),
            ms(r.get("max_us") / 1000.0),
            r.get("status_errors"),
            r.errors(),
            match (m.case.key, r.get("wraps") > 0.0) {
                ("a", _) => "allowed",
                (_, true) => "yes",
                (_, false) => "no",
            },
            m.cpu_us.0,
            m.cpu_us.1,
            mib(m.idle_kib),
            mib(m.peak_kib),
            m.load.0,
            m.load.1,
        ));
    }
    results.detail("");
    results.detail(
        "Commands (inputs written by the bench into `ingest-inputs/` of the output directory):",
    );
    results.detail("");
    for m in measured {
        results.detail(&format!("    {}", m.run.command));
    }

    let node: BTreeMap<(&str, Client), f64> = measured
        .iter()
        .filter(|m| m.subject == Subject::Node)
        .map(|m| ((m.case.key, m.client), m.run.requests_per_second()))
        .collect();
    floors(results, measured);
    for m in measured.iter().filter(|m| !m.subject.is_floor()) {
        let r = &m.run;
        let column = m.subject.column();
        let label = format!("{} ({})", m.case.label, m.client.label());
        results.row(
            "Webhook ingest",
            &format!("{label}: requests/s"),
            column,
            &format!("{:.0}", r.requests_per_second()),
        );
        results.row(
            "Webhook ingest",
            &format!("{label}: server CPU µs per request"),
            column,
            &format!("{:.1}", m.cpu_us.0),
        );
        results.row(
            "Webhook ingest",
            &format!("{label}: p50 / p99 latency ms"),
            column,
            &format!(
                "{} / {}",
                ms(r.get("p50_us") / 1000.0),
                ms(r.get("p99_us") / 1000.0)
            ),
        );
        if let Some(base) = node.get(&(m.case.key, m.client)) {
            results.row(
                "Webhook ingest",
                &format!("{label}: requests/s ÷ Node's"),
                column,
                &format!("{:.2}×", r.requests_per_second() / base),
            );
        }
        if let Some((deliveries, _)) = m.stored {
            results.row(
                "Webhook ingest",
                &format!("{label}: deliveries stored / 2xx answers"),
                column,
                &format!(
                    "{deliveries} / {:.0}",
                    r.get("requests") - r.get("status_errors")
                ),
            );
        }
    }
    let mut memory: BTreeMap<Subject, (u64, u64)> = BTreeMap::new();
    for m in measured.iter().filter(|m| !m.subject.is_floor()) {
        let entry = memory.entry(m.subject).or_insert((m.idle_kib, 0));
        entry.1 = entry.1.max(m.peak_kib);
    }
    for (subject, (idle, peak)) in memory {
        results.row(
            "Memory",
            "RSS idle, MiB (VmRSS 1 s after start)",
            subject.column(),
            &mib(idle),
        );
        results.row(
            "Memory",
            "RSS peak under ingest load, MiB (VmRSS every 100 ms)",
            subject.column(),
            &mib(peak),
        );
    }
    let mut notes = String::new();
    for m in measured {
        if m.run.get("status_errors") > 0.0 || m.run.errors() > 0.0 {
            let _ = writeln!(
                notes,
                "NOTE: {} {} ({}): {} non-2xx answers, {} socket errors",
                m.subject.key(),
                m.case.key,
                m.client.label(),
                m.run.get("status_errors"),
                m.run.errors()
            );
        }
    }
    if !notes.is_empty() {
        results.detail("");
        for line in notes.lines() {
            results.detail(line);
        }
    }
}

/// The floors' table: each run of a floor or of deploybot on SQLite against the Node run
/// measured last before it (same payload and load tool), so that listing the subjects
/// round after round (`node,floor-nothing,floor-handover,floor-fsync,sqlite,node,…`)
/// compares each with a Node run of the same minutes.
fn floors(results: &mut Results, measured: &[Measured]) {
    if !measured.iter().any(|m| m.subject.is_floor()) {
        return;
    }
    let mut node: BTreeMap<(&str, Client), f64> = BTreeMap::new();
    let mut ratios: BTreeMap<Subject, Vec<(f64, f64, f64)>> = BTreeMap::new();
    for m in measured {
        let rps = m.run.requests_per_second();
        if m.subject == Subject::Node {
            node.insert((m.case.key, m.client), rps);
        } else if (m.subject.is_floor() || m.subject == Subject::Sqlite)
            && m.case.key == "a"
            && let Some(base) = node.get(&(m.case.key, m.client))
        {
            ratios
                .entry(m.subject)
                .or_default()
                .push((rps, m.cpu_us.0, rps / base));
        }
    }
    results.detail("");
    results.detail(
        "Floors (payload (a); built with `--features bench-floor`; a floor stores nothing, so \
         it shows what the rest of the path costs): each run against the Node run just before it.",
    );
    results.detail("");
    results.detail(
        "| subject | runs | requests/s | server CPU µs/request | ÷ Node: median (each run) |",
    );
    results.detail("| --- | --- | --- | --- | --- |");
    for (subject, runs) in &ratios {
        let range = |f: fn(&(f64, f64, f64)) -> f64, digits: usize| {
            let lo = runs.iter().map(f).fold(f64::INFINITY, f64::min);
            let hi = runs.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.digits$}–{hi:.digits$}")
        };
        let mut each: Vec<f64> = runs.iter().map(|r| r.2).collect();
        let listed = each
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        each.sort_by(f64::total_cmp);
        let median = if each.len() % 2 == 1 {
            each[each.len() / 2]
        } else {
            (each[each.len() / 2 - 1] + each[each.len() / 2]) / 2.0
        };
        results.detail(&format!(
            "| {} | {} | {} | {} | {median:.2}× ({listed}) |",
            subject.column(),
            runs.len(),
            range(|r| r.0, 0),
            range(|r| r.1, 1),
        ));
    }
}
