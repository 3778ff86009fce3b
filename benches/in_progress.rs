//! Webhook → `in_progress` latency: the real `deploybot serve` binary (built by
//! `cargo bench` with the bench profile, i.e. release), a fresh SQLite or PostgreSQL
//! database and the stateful fake GitHub of the tests, all on 127.0.0.1 — started by the
//! tests' own `Bot` harness (`tests/github/bot.rs`).
//!
//! For each sample a signed `push` to `main` (a new commit SHA, so it deploys the noop
//! `web-staging` instance) is sent on a new connection, as GitHub does; the clock stops when
//! the fake GitHub holds an `in_progress` status for that commit's GitHub Deployment. The
//! fake is polled every millisecond, so each sample is late by up to 1 ms (0.5 ms on
//! average). The next sample starts once the deployment's `success` arrived (and the
//! fake's repository was emptied, to keep polls cheap), so every sample meets an idle bot. Also reported: the webhook's answer time and webhook →
//! `success`.
//!
//! Run: `cargo bench --bench in_progress`. Environment: `BENCH_BACKENDS`
//! (`sqlite,postgres`), `BENCH_INPROGRESS_SAMPLES` (200), `TEST_DATABASE_URL`, `BENCH_OUT`.

#[allow(dead_code)]
#[path = "../tests/github/bot.rs"]
mod bot;
#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use bot::{Bot, SECRET, push};
use common::TestDb;
use deploybot::github::webhook::signature;
use support::{Results, Stats, ms, stats};

const WARM_UP: usize = 5;

struct Sample {
    answered: f64,
    in_progress: f64,
    success: f64,
}

/// Polls the fake GitHub until the Deployment of `sha` has a status in `state`.
fn wait_status(bot: &Bot, sha: &str, state: &str, started: Instant) -> f64 {
    loop {
        let seen = bot
            .fake
            .deployments("acme/web")
            .iter()
            .rev()
            .find(|d| d.sha == sha || d.git_ref == sha)
            .is_some_and(|d| d.statuses.iter().any(|s| s.state == state));
        if seen {
            return started.elapsed().as_secs_f64() * 1000.0;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {state} status for {sha} on the fake GitHub after 60 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn run(db: TestDb, samples: usize) -> Vec<Sample> {
    let bot = Bot::start(db, "true", "");
    let mut out = Vec::new();
    for n in 0..samples + WARM_UP {
        let sha = format!("{:040x}", 0x00c0_ffee_0000_u64 + n as u64);
        let body = serde_json::to_vec(&push("refs/heads/main", &sha, "octocat")).expect("json");
        let signed = signature::sign(SECRET.as_bytes(), &body);
        let delivery = format!("in-progress-{n}");
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
        let answered = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(status, 202, "the push was accepted: {answer}");
        assert_eq!(
            answer["deployments"].as_array().map(Vec::len),
            Some(1),
            "the push created one deployment: {answer}"
        );
        let in_progress = wait_status(&bot, &sha, "in_progress", started);
        let success = wait_status(&bot, &sha, "success", started);
        // A fresh repository on the fake (no deployments), so a poll stays cheap: it
        // clones every deployment of the repository.
        bot.fake.add_repo("acme/web");
        if n >= WARM_UP {
            out.push(Sample {
                answered,
                in_progress,
                success,
            });
        }
    }
    out
}

fn cell(s: &Stats) -> String {
    format!("{} / {}", ms(s.p50), ms(s.p99))
}

fn main() {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let samples: usize = support::env_number("BENCH_INPROGRESS_SAMPLES", 200);
    let mut results = Results::create("in_progress");
    results.detail(&format!(
        "Webhook → in_progress: {samples} signed pushes to main, one at a time ({WARM_UP} more \
         warm up first), each deploying the noop `web-staging` instance (recreate) of the real \
         binary; the fake GitHub of the tests is polled every 1 ms."
    ));
    results.detail("");
    results.detail("| backend | samples | webhook answered p50 / p99 (ms) | webhook → `in_progress` at GitHub p50 / p99 / max (ms) | samples over 100 ms | webhook → `success` at GitHub p50 / p99 (ms) | load before → after |");
    results.detail("| --- | --- | --- | --- | --- | --- | --- |");
    for backend in backends.split(',').map(str::trim) {
        let (subject, db) = match backend {
            "sqlite" => (support::SQLITE, TestDb::sqlite()),
            "postgres" => (support::POSTGRES, TestDb::postgres()),
            other => panic!("BENCH_BACKENDS: unknown backend {other:?} (sqlite, postgres)"),
        };
        let load_before = support::load();
        let run = run(db, samples);
        let load_after = support::load();
        let answered = stats(run.iter().map(|s| s.answered).collect());
        let in_progress = stats(run.iter().map(|s| s.in_progress).collect());
        let success = stats(run.iter().map(|s| s.success).collect());
        let slow = run.iter().filter(|s| s.in_progress > 100.0).count();
        results.detail(&format!(
            "| {backend} | {} | {} | {} / {} / {} | {slow} | {} | {load_before} → {load_after} |",
            in_progress.n,
            cell(&answered),
            ms(in_progress.p50),
            ms(in_progress.p99),
            ms(in_progress.max),
            cell(&success),
        ));
        results.row(
            "Webhook to in_progress",
            "signed push → `in_progress` at the fake GitHub, p50 / p99 ms (noop)",
            subject,
            &cell(&in_progress),
        );
        results.row(
            "Webhook to in_progress",
            "signed push → `success` at the fake GitHub, p50 / p99 ms (noop)",
            subject,
            &cell(&success),
        );
    }
}
