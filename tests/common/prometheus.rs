//! A real Prometheus for tests: an [`Exporter`] the test sets values on (a tiny HTTP
//! server on 127.0.0.1 serving `/metrics`), and a `prometheus` child process scraping it
//! every second from its own temporary storage, killed when dropped.
//!
//! ```ignore
//! let Some(prom) = Prometheus::start_or_skip("my_test") else { return };
//! prom.exporter().set("app_errors", &[("instance", "web")], 0.5);
//! prom.wait_for("app_errors", |samples| samples.len() == 1);
//! // ask prom.url() …
//! ```
//!
//! The scrape keeps the exporter's labels (`honor_labels`), so a series the exporter serves
//! with `instance="web"` is found by `{instance="web"}`. `start_or_skip` says loudly that a
//! test does not run when no `prometheus` binary is found; with
//! `DEPLOYBOT_REQUIRE_PROMETHEUS` set (CI sets it) a missing binary fails the test instead.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long Prometheus may take to become ready, and a query to see the awaited data.
const PATIENCE: Duration = Duration::from_secs(60);

/// A `/metrics` endpoint on 127.0.0.1 whose series the test sets; stopped when dropped.
pub struct Exporter {
    addr: SocketAddr,
    series: Arc<Mutex<BTreeMap<String, f64>>>,
    stop: Arc<AtomicBool>,
}

impl Exporter {
    /// Serves no series yet, on a free port.
    pub fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the exporter");
        let addr = listener.local_addr().unwrap();
        let series = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (served, stopped) = (Arc::clone(&series), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    let text = exposition(&served.lock().unwrap());
                    let _ = answer(stream, &text);
                }
            }
        });
        Exporter { addr, series, stop }
    }

    /// `host:port`, as a scrape target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Serves `name{labels…}` with `value` (label values may hold any character).
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series
            .lock()
            .unwrap()
            .insert(series(name, labels), value);
    }

    /// Stops serving `name{labels…}`; Prometheus marks it stale at its next scrape.
    pub fn remove(&self, name: &str, labels: &[(&str, &str)]) {
        self.series.lock().unwrap().remove(&series(name, labels));
    }

    /// What `/metrics` serves now.
    pub fn text(&self) -> String {
        exposition(&self.series.lock().unwrap())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A series in the text exposition format: `name{a="x",b="y"}`, values escaped.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{name}{{{}}}", pairs.join(","))
}

fn exposition(series: &BTreeMap<String, f64>) -> String {
    series
        .iter()
        .map(|(s, v)| {
            let v = match *v {
                v if v.is_nan() => "NaN".to_string(),
                v if v == f64::INFINITY => "+Inf".to_string(),
                v if v == f64::NEG_INFINITY => "-Inf".to_string(),
                v => v.to_string(),
            };
            format!("{s} {v}\n")
        })
        .collect()
}

/// Reads a request's head and answers `text` (whatever was asked).
fn answer(mut stream: TcpStream, text: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}

/// One sample of an instant vector: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// A `prometheus` server scraping an [`Exporter`] every second; killed when dropped.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    url: String,
    exporter: Exporter,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// `DEPLOYBOT_PROMETHEUS`, else `prometheus` on PATH.
    pub fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("DEPLOYBOT_PROMETHEUS") {
            return Some(PathBuf::from(path)).filter(|p| p.is_file());
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.is_file())
    }

    /// A ready server scraping a fresh exporter; without a binary, says past the harness's
    /// output capture that `test` did not run and gives `None`, or fails when
    /// `DEPLOYBOT_REQUIRE_PROMETHEUS` is set.
    pub fn start_or_skip(test: &str) -> Option<Prometheus> {
        let Some(binary) = Self::binary() else {
            let reason =
                "no prometheus binary was found (DEPLOYBOT_PROMETHEUS, or prometheus on PATH)";
            assert!(
                std::env::var_os("DEPLOYBOT_REQUIRE_PROMETHEUS").is_none(),
                "DEPLOYBOT_REQUIRE_PROMETHEUS is set but {reason}"
            );
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {reason}. Install it (`apt-get install -y prometheus`) or point \
                 DEPLOYBOT_PROMETHEUS at a prometheus binary to run it."
            );
            return None;
        };
        Some(Self::start(&binary))
    }

    /// Starts `binary` scraping a fresh exporter and waits until it is ready.
    pub fn start(binary: &Path) -> Prometheus {
        let exporter = Exporter::start();
        let dir = tempfile::tempdir().expect("a directory for Prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: exporter\n    honor_labels: true\n    \
                 static_configs:\n      - targets: ['{}']\n",
                exporter.target()
            ),
        )
        .unwrap();
        // A free port may be taken between finding it and Prometheus binding it: try again.
        let mut last_log = String::new();
        for attempt in 0..3 {
            let addr = free_port();
            let log = dir.path().join(format!("prometheus-{attempt}.log"));
            let mut child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start prometheus");
            if wait_ready(&mut child, addr) {
                return Prometheus {
                    child,
                    url: format!("http://{addr}"),
                    addr,
                    exporter,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("prometheus did not become ready; its log:\n{last_log}");
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The exporter it scrapes (job `exporter`).
    pub fn exporter(&self) -> &Exporter {
        &self.exporter
    }

    /// The instant vector `query` returns now, or Prometheus's error.
    pub fn query(&self, query: &str) -> Result<Vec<Sample>, String> {
        let path = format!("/api/v1/query?query={}", percent_encoded(query));
        let (_, body) = get(self.addr, &path).ok_or("Prometheus did not answer")?;
        let json: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if json["status"] != "success" {
            return Err(format!("{}: {}", json["errorType"], json["error"]));
        }
        let result = json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(result
            .iter()
            .map(|item| {
                let labels = item["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = item["value"][1].as_str().unwrap_or("NaN").parse().unwrap();
                (labels, value)
            })
            .collect())
    }

    /// Waits (blocking, at most a minute) until `query` returns samples that satisfy
    /// `ready`, and gives them: the scrapes take a second or two to show a change.
    pub fn wait_for(&self, query: &str, ready: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let samples = self.query(query);
            if let Ok(samples) = &samples
                && ready(samples)
            {
                return samples.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{query} did not return what was awaited; last: {samples:?}; the exporter serves:\n{}",
                self.exporter.text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the child answers `/-/ready` before it exits or a minute passes.
fn wait_ready(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        if get(addr, "/-/ready").is_some_and(|(status, _)| status == 200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `GET path` over HTTP/1.0: the status and the body, `None` when nothing answered.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `text` for a URL's query string: everything but unreserved characters percent-encoded.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap()
}
