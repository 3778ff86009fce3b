//! What the queue, ingest and in_progress benchmarks share: percentiles, resident memory
//! from /proc, and the result rows that `bench/run.sh` turns into one table.
//!
//! Every benchmark appends rows `section<TAB>measure<TAB>subject<TAB>value` to
//! `$BENCH_OUT/<bench>.tsv` (default `target/bench-results/`), and its details (commands,
//! counts) to `$BENCH_OUT/<bench>.md`.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The column names of the "All together" table.
pub const SQLITE: &str = "deploybot SQLite";
pub const POSTGRES: &str = "deploybot PostgreSQL";
pub const NODE: &str = "Node @octokit/webhooks";
pub const PYTHON: &str = "Python gidgethub+aiohttp";

/// Where results go: `$BENCH_OUT`, or `target/bench-results` of this crate.
/// A number from the environment, or `default` when unset.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} is a number")))
        .unwrap_or(default)
}

pub fn out_dir() -> PathBuf {
    let dir = std::env::var_os("BENCH_OUT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-results"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("create the bench output directory");
    dir
}

/// The rows and details one benchmark writes; both files start empty for each run.
pub struct Results {
    rows: std::fs::File,
    details: std::fs::File,
}

impl Results {
    pub fn create(bench: &str) -> Results {
        let dir = out_dir();
        let open = |name: String| {
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(dir.join(name))
                .expect("open a bench result file")
        };
        Results {
            rows: open(format!("{bench}.tsv")),
            details: open(format!("{bench}.md")),
        }
    }

    /// One cell of the summary table.
    pub fn row(&mut self, section: &str, measure: &str, subject: &str, value: &str) {
        writeln!(self.rows, "{section}\t{measure}\t{subject}\t{value}").expect("write a row");
    }

    /// A line of details (markdown), also printed.
    pub fn detail(&mut self, line: &str) {
        println!("{line}");
        writeln!(self.details, "{line}").expect("write details");
    }
}

/// Percentiles of a sample, by nearest rank.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stats(mut values: Vec<f64>) -> Stats {
    assert!(!values.is_empty(), "no samples");
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let i = ((p / 100.0) * values.len() as f64).ceil() as usize;
        values[i.clamp(1, values.len()) - 1]
    };
    Stats {
        n: values.len(),
        p50: rank(50.0),
        p99: rank(99.0),
        min: values[0],
        max: values[values.len() - 1],
    }
}

/// Milliseconds with a precision that suits the size.
pub fn ms(value: f64) -> String {
    if value.abs() < 10.0 {
        format!("{value:.2}")
    } else if value.abs() < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// Resident set size of a process in KiB (`VmRSS` of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's resident size every 100 ms until stopped; returns the largest.
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak.max(rss_kib(pid).unwrap_or(0))
        });
        RssSampler { stop, thread }
    }

    /// The largest resident size seen, in KiB.
    pub fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the RSS sampler")
    }
}

/// The 1-minute load average, to show what else the machine was doing.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Waits until something listens on the port; panics after `limit`.
pub fn wait_for_port(port: u16, limit: Duration, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < limit,
            "{what} did not listen on 127.0.0.1:{port} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
