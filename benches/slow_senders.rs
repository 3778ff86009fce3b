//! Resident memory of `deploybot serve` (SQLite, default webhook bounds, or
//! `BENCH_PENDING_BYTES` as `webhook_pending_bytes`) while 300
//! unsigned senders hold connections open, and whether signed pushes still get through.
//!
//! Two attacks, each held for `BENCH_HOLD_SECS` (default 6 s, under the 10 s
//! `webhook_body_timeout`):
//! - drip: each sender announces a 25 MiB body and sends one byte every 300 ms;
//! - bulk: each sender announces a 25 MiB body, sends 1 MiB of it at once, then stalls
//!   (300 MiB offered against the 64 MiB `webhook_pending_bytes`).
//!
//! Meanwhile a signed push is sent every 200 ms; the bench reports how many got 2xx.
//! Run: `cargo bench --bench slow_senders`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deploybot::github::webhook::signature;

const SECRET: &str = "bench-secret";
const SENDERS: usize = 300;
const ANNOUNCED: usize = 25 * 1024 * 1024;

fn head(delivery: &str, announced: usize) -> Vec<u8> {
    format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {announced}\r\nConnection: close\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: {delivery}\r\n\r\n"
    )
    .into_bytes()
}

/// A signed push to a branch no instance deploys (GitHub's example payload, retargeted at
/// acme/web): the status of its answer.
fn signed_push(port: u16, n: usize) -> u16 {
    let path = format!(
        "{}/tests/fixtures/github/push.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut push: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the push fixture"))
            .expect("the push fixture is JSON");
    push["ref"] = "refs/heads/bench".into();
    push["after"] = format!("{n:040x}").into();
    push["repository"]["full_name"] = "acme/web".into();
    push["repository"]["name"] = "web".into();
    push["repository"]["owner"]["login"] = "acme".into();
    let body = serde_json::to_string(&push).expect("JSON");
    let request = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: bench-{n}\r\nX-Hub-Signature-256: {}\r\n\r\n{body}",
        body.len(),
        signature::sign(SECRET.as_bytes(), body.as_bytes())
    );
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Runs one attack: opens the senders, holds them for `hold` while sending signed pushes,
/// and returns (peak RSS KiB, pushes answered 2xx, pushes sent).
fn attack(
    port: u16,
    pid: u32,
    bulk: bool,
    hold: Duration,
    announced: usize,
) -> (u64, usize, usize) {
    let sampler = support::RssSampler::start(pid);
    let senders = std::thread::spawn(move || {
        let chunk = vec![b' '; 1024 * 1024];
        let mut streams: Vec<TcpStream> = (0..SENDERS)
            .filter_map(|n| {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
                stream
                    .write_all(&head(&format!("slow-{n}"), announced))
                    .ok()?;
                stream.set_nonblocking(true).ok()?;
                if bulk {
                    // As much of 1 MiB as the socket takes at once; the server refuses
                    // (and closes) past the byte budget.
                    let _ = stream.write(&chunk);
                } else {
                    let _ = stream.write(b"{");
                }
                Some(stream)
            })
            .collect();
        let started = Instant::now();
        while started.elapsed() < hold {
            std::thread::sleep(Duration::from_millis(300));
            if !bulk {
                for stream in &mut streams {
                    let _ = stream.write(b" ");
                }
            }
        }
        streams.len()
    });
    let started = Instant::now();
    let (mut ok, mut sent) = (0, 0);
    std::thread::sleep(Duration::from_millis(500));
    while started.elapsed() < hold {
        sent += 1;
        if (200..300).contains(&signed_push(port, sent + if bulk { 100_000 } else { 0 })) {
            ok += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let opened = senders.join().expect("the senders");
    assert_eq!(opened, SENDERS, "not every sender could connect");
    (sampler.stop(), ok, sent)
}

fn main() {
    let hold = Duration::from_secs(support::env_number("BENCH_HOLD_SECS", 6));
    // `webhook_pending_bytes` for the run (default: deploybot's, 64 MiB).
    let budget: usize = support::env_number("BENCH_PENDING_BYTES", 64 * 1024 * 1024);
    // Bodies may be at most the budget (webhook_max_bytes must fit in it).
    let announced = ANNOUNCED.min(budget);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = support::free_port();
    let config = dir.path().join("deploybot.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"sqlite://{}\"\nlisten = \"127.0.0.1:{port}\"\nwebhook_secrets = [\"{SECRET}\"]\n\
             webhook_pending_bytes = {budget}\nwebhook_max_bytes = {announced}\n\n\
             [[instances]]\nname = \"web-staging\"\nrepo = \"acme/web\"\nenvironment = \"staging\"\n\
             image = \"ghcr.io/acme/web:{{short_sha}}\"\non_push = [\"main\"]\n\n\
             [instances.provider]\nkind = \"noop\"\n",
            dir.path().join("bench.db").display()
        ),
    )
    .expect("write the config");
    let mut server = Command::new(env!("CARGO_BIN_EXE_deploybot"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("DEPLOYBOT_WEBHOOK_SECRET")
        .env_remove("DEPLOYBOT_LISTEN")
        .env("DEPLOYBOT_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start deploybot serve");
    support::wait_for_port(port, Duration::from_secs(30), "deploybot serve");
    let pid = server.id();
    std::thread::sleep(Duration::from_secs(1));
    let idle = support::rss_kib(pid).unwrap_or(0);
    let drip = attack(port, pid, false, hold, announced);
    // Let the drip senders' connections end before the next attack.
    std::thread::sleep(Duration::from_secs(2));
    let bulk = attack(port, pid, true, hold, announced);
    let _ = server.kill();
    let _ = server.wait();

    println!(
        "deploybot serve (SQLite, webhook_pending_bytes = {} MiB), {SENDERS} unsigned senders each announcing {} MiB, held {hold:?}; load {}",
        budget / (1024 * 1024),
        announced / (1024 * 1024),
        support::load()
    );
    println!("| attack | peak resident MiB | signed pushes answered 2xx |");
    println!("| --- | --- | --- |");
    println!("| none (idle) | {} | — |", support::mib(idle));
    println!(
        "| drip: a byte every 300 ms | {} | {}/{} |",
        support::mib(drip.0),
        drip.1,
        drip.2
    );
    println!(
        "| bulk: 1 MiB at once, then stall | {} | {}/{} |",
        support::mib(bulk.0),
        bulk.1,
        bulk.2
    );
}
