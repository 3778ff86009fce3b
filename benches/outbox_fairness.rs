//! Outbox fairness: tenant B's deployment-status delay while tenant A floods the outbox.
//! The real `deploybot serve` binary (bench profile), a fresh SQLite or PostgreSQL
//! database and the stateful fake GitHub of the tests, all on 127.0.0.1, started by the
//! tests' own `Bot` harness (`tests/github/bot.rs`). The fake answers every request after
//! `BENCH_FAIRNESS_GITHUB_MS` (50 ms), as a distant GitHub would.
//!
//! Tenant A (`globex/public`) has 10,000 comment replies queued at once, as a flood of
//! 10,000 comments leaves them (they are written to the outbox directly, so the bench
//! measures the sender, not the webhook path). Then tenant B (`acme/web`) pushes to `main`
//! every 500 ms; each push deploys the noop `web-staging` instance. For each push the bench
//! measures push → `in_progress` and push → `success` at the fake GitHub (polled every
//! millisecond). The flood must still be queued when the last sample ends, or the run
//! says so.
//!
//! Run: `cargo bench --bench outbox_fairness`. Environment: `BENCH_BACKENDS`
//! (`sqlite,postgres`), `BENCH_FAIRNESS_FLOOD` (10000), `BENCH_FAIRNESS_SAMPLES` (40),
//! `BENCH_FAIRNESS_GITHUB_MS` (50), `TEST_DATABASE_URL`, `BENCH_OUT`.

#[allow(dead_code)]
#[path = "../tests/github/bot.rs"]
mod bot;
#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use bot::{Bot, SECRET, push};
use common::TestDb;
use deploybot::github::outbox::{CommentReply, NewOutboxItem, OutboxStore, Work};
use deploybot::github::webhook::signature;
use support::{Results, ms, stats};

const FLOODED: &str = "globex/public";

/// Whether the fake GitHub holds a status in `state` for the Deployment of `sha`.
fn has_status(deployments: &[common::fake_github::FakeDeployment], sha: &str, state: &str) -> bool {
    deployments
        .iter()
        .rev()
        .find(|d| d.sha == sha || d.git_ref == sha)
        .is_some_and(|d| d.statuses.iter().any(|s| s.state == state))
}

/// A push of tenant B, and when its statuses reached GitHub (ms after the push).
struct Sample {
    sha: String,
    started: Instant,
    in_progress: Option<f64>,
    success: Option<f64>,
}

struct Run {
    in_progress: Vec<f64>,
    success: Vec<f64>,
    /// Tenant A's replies still queued when the last sample ended.
    flood_left: i64,
    /// Tenant A's replies GitHub had received by then.
    flood_sent: usize,
}

fn run(db: TestDb, flood: usize, samples: usize, github: Duration) -> Run {
    let bot = Bot::start(db, "true", "");
    bot.fake.add_repo(FLOODED);
    bot.fake.add_issue(FLOODED, 1);
    bot.fake.set_delay(github);
    let items: Vec<NewOutboxItem> = (0..flood)
        .map(|n| NewOutboxItem {
            tenant_id: "globex".into(),
            ordering_key: format!("comment:{n}"),
            deployment_id: None,
            work: Work::CommentReply(CommentReply {
                repo: FLOODED.into(),
                issue: 1,
                body: format!("reply {n}"),
                installation_id: None,
            }),
        })
        .collect();
    bot.db.store.enqueue(&items).expect("queue the flood");
    let mut out = Run {
        in_progress: Vec::new(),
        success: Vec::new(),
        flood_left: 0,
        flood_sent: 0,
    };
    let mut sent: Vec<Sample> = Vec::new();
    let mut next_push = Instant::now();
    let began = Instant::now();
    loop {
        if sent.len() < samples && Instant::now() >= next_push {
            let n = sent.len();
            let sha = format!("{:040x}", 0x00fa_1e00_0000_u64 + n as u64);
            let body = serde_json::to_vec(&push("refs/heads/main", &sha, "octocat")).expect("json");
            let signed = signature::sign(SECRET.as_bytes(), &body);
            let delivery = format!("fairness-{n}");
            let started = Instant::now();
            let (status, answer) = bot.post(
                "/webhooks/github",
                &[
                    ("X-GitHub-Event", "push"),
                    ("X-GitHub-Delivery", &delivery),
                    ("X-Hub-Signature-256", &signed),
                ],
                &body,
            );
            assert_eq!(status, 202, "the push was accepted: {answer}");
            sent.push(Sample {
                sha,
                started,
                in_progress: None,
                success: None,
            });
            next_push += Duration::from_millis(500);
        }
        let deployments = bot.fake.deployments("acme/web");
        for sample in sent.iter_mut() {
            let at = sample.started.elapsed().as_secs_f64() * 1000.0;
            if sample.in_progress.is_none() && has_status(&deployments, &sample.sha, "in_progress")
            {
                sample.in_progress = Some(at);
            }
            if sample.success.is_none() && has_status(&deployments, &sample.sha, "success") {
                sample.success = Some(at);
            }
        }
        if sent.len() == samples && sent.iter().all(|s| s.success.is_some()) {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(600),
            "tenant B's statuses did not all arrive within 600 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    out.in_progress = sent.iter().filter_map(|s| s.in_progress).collect();
    out.success = sent.iter().filter_map(|s| s.success).collect();
    out.flood_left = bot.db.store.outbox_counts().expect("outbox counts").0;
    out.flood_sent = bot.fake.comments(FLOODED, 1).len();
    out
}

fn main() {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let flood: usize = support::env_number("BENCH_FAIRNESS_FLOOD", 10_000);
    let samples: usize = support::env_number("BENCH_FAIRNESS_SAMPLES", 40);
    let github_ms: u64 = support::env_number("BENCH_FAIRNESS_GITHUB_MS", 50);
    let mut results = Results::create("outbox_fairness");
    results.detail(&format!(
        "Outbox fairness: tenant A has {flood} comment replies queued; tenant B pushes to main \
         every 500 ms ({samples} pushes, each deploying the noop `web-staging` instance of the \
         real binary); the fake GitHub answers each request after {github_ms} ms."
    ));
    results.detail("");
    results.detail("| backend | samples | push → `in_progress` p50 / p99 / max (ms) | push → `success` p50 / p99 / max (ms) | A's replies sent / still queued at the end |");
    results.detail("| --- | --- | --- | --- | --- |");
    for backend in backends.split(',').map(str::trim) {
        let (subject, db) = match backend {
            "sqlite" => (support::SQLITE, TestDb::sqlite()),
            "postgres" => (support::POSTGRES, TestDb::postgres()),
            other => panic!("BENCH_BACKENDS: unknown backend {other:?} (sqlite, postgres)"),
        };
        let run = run(db, flood, samples, Duration::from_millis(github_ms));
        let in_progress = stats(run.in_progress.clone());
        let success = stats(run.success.clone());
        if run.flood_left == 0 {
            results.detail(&format!(
                "{backend}: the flood was sent before the last sample ended; raise BENCH_FAIRNESS_FLOOD or BENCH_FAIRNESS_GITHUB_MS"
            ));
        }
        results.detail(&format!(
            "| {backend} | {} | {} / {} / {} | {} / {} / {} | {} / {} |",
            in_progress.n,
            ms(in_progress.p50),
            ms(in_progress.p99),
            ms(in_progress.max),
            ms(success.p50),
            ms(success.p99),
            ms(success.max),
            run.flood_sent,
            run.flood_left,
        ));
        results.row(
            "Outbox fairness",
            "tenant B's push → `success` at GitHub during tenant A's flood, p50 / p99 ms",
            subject,
            &format!("{} / {}", ms(success.p50), ms(success.p99)),
        );
    }
}
