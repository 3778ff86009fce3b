//! A deployment's log on its way to the store: the sink a run writes to, and the writer
//! that stores its lines in batches within the log's cap.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{LogCap, Worker, WorkerStore};
use crate::deploy::Deployment;
use crate::deploy::provider::{LogLine, LogMask, LogSink};
use crate::deploy::service::blocking;

impl Worker {
    /// The deployment's log sink, masking secrets, and the task storing what it receives.
    pub(super) fn start_log(
        &self,
        deployment: &Deployment,
    ) -> (LogSink, tokio::task::JoinHandle<()>) {
        let (log, lines) = LogSink::channel(4096);
        let mask = Arc::clone(
            &self
                .mask
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let log = log.masking(mask as Arc<dyn LogMask>);
        let writer = tokio::spawn(write_logs(
            Arc::clone(&self.store),
            deployment.tenant_id.clone(),
            deployment.id,
            self.log_cap,
            lines,
        ));
        (log, writer)
    }
}

/// Ends the deployment's log: notes how many lines the writer fell behind on, sends
/// deploybot's held lines, and waits until everything is stored.
pub(super) async fn close_log(log: LogSink, writer: tokio::task::JoinHandle<()>) {
    if log.dropped() > 0 {
        log.system(format!(
            "{} log lines were dropped because the log writer fell behind",
            log.dropped()
        ));
    }
    log.flush().await;
    drop(log);
    let _ = writer.await;
}

/// Keeps a deployment's log within its `LogCap`: the first half of the budget as the
/// lines arrive, then a rolling tail of the last lines in the other half (less one line
/// for the note of what was dropped between them), stored when the log ends.
struct LogBudget {
    cap: LogCap,
    head_lines: usize,
    head_bytes: usize,
    /// Once a line did not fit the head, every later line goes to the tail.
    tailing: bool,
    tail: VecDeque<(String, String)>,
    tail_bytes: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

/// The bytes a stored line counts for: its text and a newline, so empty lines count.
fn cost(text: &str) -> usize {
    text.len() + 1
}

/// Room kept in the byte budget for the note of what was dropped.
const NOTE_BYTES: usize = 256;

impl LogBudget {
    fn new(cap: LogCap) -> Self {
        Self {
            cap,
            head_lines: 0,
            head_bytes: 0,
            tailing: false,
            tail: VecDeque::new(),
            tail_bytes: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    fn head_max(&self) -> (usize, usize) {
        (self.cap.lines / 2, self.cap.bytes / 2)
    }

    fn tail_max(&self) -> (usize, usize) {
        let (lines, bytes) = self.head_max();
        (
            self.cap.lines.saturating_sub(lines + 1),
            self.cap.bytes.saturating_sub(bytes + NOTE_BYTES),
        )
    }

    /// Takes a line: `Some` when it is to be stored now (the head), `None` when the tail
    /// keeps it for the end (or drops its oldest lines to make room).
    fn push(&mut self, stream: String, text: String) -> Option<(String, String)> {
        let (max_lines, max_bytes) = self.head_max();
        if !self.tailing
            && self.head_lines < max_lines
            && self.head_bytes + cost(&text) <= max_bytes
        {
            self.head_lines += 1;
            self.head_bytes += cost(&text);
            return Some((stream, text));
        }
        self.tailing = true;
        self.tail_bytes += cost(&text);
        self.tail.push_back((stream, text));
        let (max_lines, max_bytes) = self.tail_max();
        while self.tail.len() > max_lines || self.tail_bytes > max_bytes {
            let Some((_, oldest)) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= cost(&oldest);
            self.dropped_lines += 1;
            self.dropped_bytes += cost(&oldest) as u64;
        }
        None
    }

    /// What is left to store when the log ends: the note of what was dropped, if anything
    /// was, and the tail.
    fn finish(&mut self) -> Vec<(String, String)> {
        let mut rest = Vec::with_capacity(self.tail.len() + 1);
        if self.dropped_lines > 0 {
            rest.push((
                "deploybot".to_string(),
                format!(
                    "log truncated: {} lines ({} bytes) were dropped here; a deployment's log keeps its first and last lines, at most {} lines and {} KiB",
                    self.dropped_lines,
                    self.dropped_bytes,
                    self.cap.lines,
                    self.cap.bytes / 1024
                ),
            ));
        }
        rest.extend(self.tail.drain(..));
        rest
    }
}

/// Writes log lines in small batches (at most 200 ms old, at most 200 lines), numbering
/// them, within `cap`, until every sink is dropped. Lines are taken as fast as they come
/// while a batch is being written (the budget bounds what waits in memory), so a chatty
/// command does not make the sink drop lines while the database catches up.
async fn write_logs(
    store: Arc<dyn WorkerStore>,
    tenant: String,
    id: crate::deploy::DeploymentId,
    cap: LogCap,
    mut lines: mpsc::Receiver<LogLine>,
) {
    const FLUSH_AFTER: Duration = Duration::from_millis(200);
    const BATCH: usize = 200;
    let mut budget = LogBudget::new(cap);
    let mut seq = 0i64;
    let mut waiting: VecDeque<(String, String)> = VecDeque::new();
    let mut flush_at: Option<tokio::time::Instant> = None;
    let mut writing: Option<tokio::task::JoinHandle<()>> = None;
    let mut open = true;
    loop {
        let due = flush_at.is_some_and(|at| at <= tokio::time::Instant::now());
        if writing.is_none() && !waiting.is_empty() && (!open || due || waiting.len() >= BATCH) {
            let n = waiting.len().min(if open { BATCH } else { 5 * BATCH });
            let rows: Vec<(String, String)> = waiting.drain(..n).collect();
            let first = seq + 1;
            seq += rows.len() as i64;
            let (store, tenant) = (Arc::clone(&store), tenant.clone());
            writing = Some(tokio::spawn(async move {
                if let Err(e) = blocking(move || store.append_logs(&tenant, id, first, &rows)).await
                {
                    tracing::warn!(deployment = %id, error = %e, "cannot store log lines");
                }
            }));
            flush_at = (!waiting.is_empty()).then(|| tokio::time::Instant::now() + FLUSH_AFTER);
        }
        if !open && waiting.is_empty() {
            if let Some(last) = writing.take() {
                let _ = last.await;
            }
            return;
        }
        tokio::select! {
            line = lines.recv(), if open => match line {
                Some(line) => {
                    if let Some(row) = budget.push(line.stream.as_str().to_string(), line.text) {
                        waiting.push_back(row);
                        flush_at.get_or_insert_with(|| tokio::time::Instant::now() + FLUSH_AFTER);
                    }
                }
                None => {
                    open = false;
                    waiting.extend(budget.finish());
                }
            },
            _ = async {
                match writing.as_mut() {
                    Some(w) => {
                        let _ = w.await;
                    }
                    None => std::future::pending().await,
                }
            } => writing = None,
            _ = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            }, if writing.is_none() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past the cap, the first half and the last lines are kept, with one line between
    /// them saying how many were dropped; empty lines count against the cap.
    #[test]
    fn a_capped_log_keeps_its_first_and_last_lines() {
        let cap = LogCap {
            lines: 11,
            bytes: 1024 * 1024,
        };
        let mut budget = LogBudget::new(cap);
        let mut stored = Vec::new();
        for i in 0..100 {
            let text = if i == 99 {
                "last".to_string()
            } else {
                String::new()
            };
            stored.extend(budget.push("stdout".into(), text));
        }
        assert_eq!(stored.len(), 5, "the first half is stored at once");
        let rest = budget.finish();
        assert_eq!(stored.len() + rest.len(), 11);
        assert!(
            rest[0]
                .1
                .starts_with("log truncated: 90 lines (90 bytes) were dropped")
        );
        assert_eq!(rest.last().unwrap().1, "last");

        // Bytes: long lines reach the byte cap long before the line cap.
        let cap = LogCap {
            lines: 20_000,
            bytes: 4 * NOTE_BYTES,
        };
        let mut budget = LogBudget::new(cap);
        let mut kept = 0;
        for _ in 0..1000 {
            kept += budget
                .push("stdout".into(), "x".repeat(99))
                .into_iter()
                .count();
        }
        let rest = budget.finish();
        let bytes: usize = rest.iter().skip(1).map(|(_, t)| cost(t)).sum::<usize>() + kept * 100;
        assert!(bytes <= cap.bytes, "{bytes} bytes stored");
        assert!(rest[0].1.contains("were dropped"));

        // Under the cap nothing is dropped and nothing is added.
        let mut budget = LogBudget::new(LogCap::default());
        assert!(budget.push("stdout".into(), "one".into()).is_some());
        assert!(budget.finish().is_empty());
    }
}
