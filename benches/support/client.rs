//! A light HTTP/1.1 load client for the ingest benchmark, sending exactly what
//! `benches/ingest.lua` makes wrk send (same template, signatures, headers and delivery
//! ids), with less CPU per request than wrk's Lua: on a 2-core machine the load tool
//! shares the cores with the server it measures, and wrk's per-request Lua (a
//! concatenation of the 7.6 KB request) and HTTP parsing cost it 25–40 µs of CPU.
//!
//! Each connection is one tokio task on a runtime of `threads` workers, keeps its
//! connection alive, and sends one request at a time (no pipelining), like wrk. Only
//! answers completed before the deadline are counted; latency is from the first byte
//! written to the last byte of the answer read.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PLACEHOLDER: &[u8] = b"@@AFTER@@";

struct Inputs {
    before: Vec<u8>,
    middle: Vec<u8>,
    after: Vec<u8>,
    /// (commit SHA, `sha256=` signature) per body.
    lines: Vec<(String, String)>,
}

fn read_inputs(template: &Path, signatures: &Path) -> Result<Inputs, String> {
    let text = std::fs::read(template).map_err(|e| format!("{}: {e}", template.display()))?;
    let find = |from: usize| {
        text[from..]
            .windows(PLACEHOLDER.len())
            .position(|w| w == PLACEHOLDER)
            .map(|p| p + from)
    };
    let first = find(0).ok_or("the template has no placeholder")?;
    let second = find(first + PLACEHOLDER.len()).ok_or("the template has one placeholder")?;
    let lines = std::fs::read_to_string(signatures)
        .map_err(|e| format!("{}: {e}", signatures.display()))?
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(sha, sig)| (sha.to_string(), sig.to_string()))
        .collect::<Vec<_>>();
    if lines.is_empty() {
        return Err("no signatures".into());
    }
    Ok(Inputs {
        before: text[..first].to_vec(),
        middle: text[first + PLACEHOLDER.len()..second].to_vec(),
        after: text[second + PLACEHOLDER.len()..].to_vec(),
        lines,
    })
}

/// What one run measured, named as `benches/ingest.lua`'s `done()` names wrk's.
#[derive(Default)]
pub struct Outcome {
    pub requests: u64,
    pub duration: Duration,
    pub latencies_us: Vec<u32>,
    pub status_errors: u64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub wraps: u64,
    pub bodies: u64,
}

impl Outcome {
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        f64::from(self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1])
    }

    pub fn max_us(&self) -> f64 {
        self.latencies_us.last().map_or(f64::NAN, |v| f64::from(*v))
    }
}

/// Sends signed pushes to `addr` for `seconds` from `connections` connections.
pub fn run(
    addr: SocketAddr,
    threads: usize,
    connections: usize,
    seconds: u64,
    template: &Path,
    signatures: &Path,
    prefix: &str,
) -> Result<Outcome, String> {
    let inputs = Arc::new(read_inputs(template, signatures)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let duration = Duration::from_secs(seconds);
    let outcomes = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + duration;
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let inputs = Arc::clone(&inputs);
                let prefix = format!("{prefix}-{c}");
                tokio::spawn(connection(addr, inputs, c, connections, prefix, deadline))
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.map_err(|e| format!("client task: {e}"))?);
        }
        Ok::<_, String>(outcomes)
    })?;
    let mut total = Outcome {
        duration,
        bodies: inputs.lines.len() as u64,
        ..Outcome::default()
    };
    for o in outcomes {
        total.requests += o.requests;
        total.status_errors += o.status_errors;
        total.connect_errors += o.connect_errors;
        total.read_errors += o.read_errors;
        total.write_errors += o.write_errors;
        total.wraps += o.wraps;
        total.latencies_us.extend(o.latencies_us);
    }
    total.latencies_us.sort_unstable();
    Ok(total)
}

async fn connection(
    addr: SocketAddr,
    inputs: Arc<Inputs>,
    index: usize,
    connections: usize,
    prefix: String,
    deadline: tokio::time::Instant,
) -> Outcome {
    let mut out = Outcome::default();
    let mut request = Vec::with_capacity(16 * 1024);
    let mut answer = vec![0u8; 64 * 1024];
    let mut line = index;
    let mut sent = 0u64;
    let mut stream: Option<TcpStream> = None;
    while tokio::time::Instant::now() < deadline {
        let conn = match stream.as_mut() {
            Some(conn) => conn,
            None => match TcpStream::connect(addr).await {
                Ok(conn) => {
                    let _ = conn.set_nodelay(true);
                    stream.insert(conn)
                }
                Err(_) => {
                    out.connect_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if line >= inputs.lines.len() {
            line = index % inputs.lines.len();
            out.wraps += 1;
        }
        let (sha, signature) = &inputs.lines[line];
        line += connections;
        sent += 1;
        build(&mut request, &inputs, sha, signature, &prefix, sent, addr);
        let started = Instant::now();
        if conn.write_all(&request).await.is_err() {
            out.write_errors += 1;
            stream = None;
            continue;
        }
        match read_answer(conn, &mut answer).await {
            Ok(status) => {
                if tokio::time::Instant::now() > deadline {
                    break;
                }
                let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                out.latencies_us.push(micros);
                out.requests += 1;
                if !(200..300).contains(&status) {
                    out.status_errors += 1;
                }
            }
            Err(_) => {
                out.read_errors += 1;
                stream = None;
            }
        }
    }
    out
}

fn build(
    request: &mut Vec<u8>,
    inputs: &Inputs,
    sha: &str,
    signature: &str,
    prefix: &str,
    n: u64,
    addr: SocketAddr,
) {
    use std::io::Write as _;
    let length = inputs.before.len() + inputs.middle.len() + inputs.after.len() + 2 * sha.len();
    request.clear();
    let _ = write!(
        request,
        "POST /webhooks/github HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         User-Agent: GitHub-Hookshot/bench\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: {prefix}-{n}\r\nX-Hub-Signature-256: {signature}\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    request.extend_from_slice(&inputs.before);
    request.extend_from_slice(sha.as_bytes());
    request.extend_from_slice(&inputs.middle);
    request.extend_from_slice(sha.as_bytes());
    request.extend_from_slice(&inputs.after);
}

/// Reads one answer (Content-Length or chunked body); returns its status code.
async fn read_answer(conn: &mut TcpStream, buf: &mut [u8]) -> Result<u16, String> {
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Err("answer too large".into());
        }
        let n = conn
            .read(&mut buf[filled..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        filled += n;
        let Some(head_end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| e.to_string())?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("no status code")?;
        let body = &buf[head_end + 4..filled];
        let lower = head.to_ascii_lowercase();
        let complete = if let Some(length) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            body.len() >= length
        } else if lower.contains("transfer-encoding: chunked") {
            body.ends_with(b"0\r\n\r\n")
        } else {
            true
        };
        if complete {
            return Ok(status);
        }
    }
}
