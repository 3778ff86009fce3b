//! `watch` (and `--watch` of `deploy` and `rollback`): follow a deployment's progress and
//! log until it ends, redrawing a progress bar on a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;

use super::api::Api;
use super::{Connection, print_raw, state_name};
use crate::cli::{CliError, Outcome, table};
use crate::server::api::{DeployStateJson, DeploymentJson, LogEntryJson, LogPageJson};

/// Log lines asked for per request while watching (the API's maximum).
const LOG_PAGE: usize = 1000;
/// Failed polls in a row `watch` rides out (a server restarting) before giving up.
const WATCH_RETRIES: u32 = 20;
/// The shortest time between two polls of `watch`.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Width of the progress bar, in characters.
const BAR_WIDTH: usize = 24;

/// `deploybot watch DEPLOYMENT`
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The deployment (dep_…).
    pub deployment: String,
    /// Time between polls.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Print nothing while following, then the deployment as it ended, as the server's
    /// JSON (for scripts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `watch`: follow a deployment's progress and log until it ends.
pub async fn watch(args: WatchArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let interval = args.interval.max(MIN_INTERVAL);
    follow(&api, &args.deployment, args.json, interval).await
}

/// Polls the deployment and its log every `interval` until the deployment ends. Exit 0 when
/// it succeeded, 1 when it failed, was rolled back or cancelled.
pub(super) async fn follow(
    api: &Api,
    id: &str,
    json: bool,
    interval: Duration,
) -> Result<Outcome, CliError> {
    let mut follower = Follower {
        api,
        id,
        json,
        screen: Screen {
            tty: std::io::stdout().is_terminal(),
            shown: None,
        },
        after: 0,
        introduced: false,
    };
    let mut failures = 0;
    loop {
        let (deployment, raw) = match follower.poll().await {
            Ok(answer) => {
                failures = 0;
                answer
            }
            Err(CliError::Unreachable { .. })
                if failures < WATCH_RETRIES && follower.introduced =>
            {
                failures += 1;
                tokio::time::sleep(interval).await;
                continue;
            }
            Err(e) => {
                follower.screen.finish();
                return Err(e);
            }
        };
        if !json {
            follower.screen.progress(progress_line(&deployment));
        }
        if is_final(deployment.state) {
            return Ok(follower.end(&deployment, &raw));
        }
        tokio::time::sleep(interval).await;
    }
}

/// One deployment being followed: how far its log has been read, and what is on screen.
struct Follower<'a> {
    api: &'a Api,
    id: &'a str,
    /// `--json`: print nothing but the deployment as it ended.
    json: bool,
    screen: Screen,
    /// The sequence number of the last log line read.
    after: i64,
    /// The "watching …" line was printed: the server answered at least once.
    introduced: bool,
}

impl Follower<'_> {
    /// Reads the deployment, then the log lines written since the last poll; the
    /// deployment's raw JSON comes along for `--json`.
    async fn poll(&mut self) -> Result<(DeploymentJson, String), CliError> {
        let (deployment, raw) = self
            .api
            .get::<DeploymentJson>(&["deployments", self.id], &[])
            .await?;
        if !self.introduced && !self.json {
            println!("{}", introduction(&deployment));
            self.introduced = true;
        }
        // Read after the deployment: once it is final, every line it wrote is there.
        self.read_log().await?;
        Ok((deployment, raw))
    }

    /// Prints the log lines after `self.after`, page by page, and moves `self.after` on.
    async fn read_log(&mut self) -> Result<(), CliError> {
        loop {
            let query = [
                ("after", self.after.to_string()),
                ("limit", LOG_PAGE.to_string()),
            ];
            let (page, _) = self
                .api
                .get::<LogPageJson>(&["deployments", self.id, "logs"], &query)
                .await?;
            for entry in &page.items {
                if !self.json {
                    self.screen.log(entry);
                }
                self.after = self.after.max(entry.seq);
            }
            if page.items.len() < LOG_PAGE {
                return Ok(());
            }
        }
    }

    /// Prints how the deployment ended: its JSON with `--json`, else the last line.
    fn end(&mut self, deployment: &DeploymentJson, raw: &str) -> Outcome {
        self.screen.finish();
        if self.json {
            print_raw(raw);
        } else {
            println!("{}", ending(deployment));
        }
        if deployment.state == DeployStateJson::Succeeded {
            Outcome::Success
        } else {
            Outcome::Failed
        }
    }
}

/// The first line of `watch`: `watching dep_… (IMAGE, STRATEGY, TRIGGER)`.
fn introduction(d: &DeploymentJson) -> String {
    format!(
        "watching {}{} ({}, {}{})",
        d.id,
        if d.noop { " (dry run)" } else { "" },
        d.image,
        d.strategy,
        if d.source.trigger.is_empty() {
            String::new()
        } else {
            format!(", {}", d.source.trigger)
        }
    )
}

fn is_final(state: DeployStateJson) -> bool {
    !matches!(state, DeployStateJson::Pending | DeployStateJson::Running)
}

/// `[#########...............]  38%`
fn bar(percent: i32) -> String {
    let percent = percent.clamp(0, 100) as usize;
    let filled = percent * BAR_WIDTH / 100;
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled)
    )
}

/// The progress line of a deployment: bar, state, phase and message.
fn progress_line(d: &DeploymentJson) -> String {
    let p = &d.progress;
    let mut line = format!("{} {}", bar(p.percent), state_name(d.state));
    if let Some(waiting) = d
        .waiting_for
        .as_ref()
        .filter(|_| d.state == DeployStateJson::Pending)
    {
        line.push_str(&format!(": {}", waiting.description));
    } else if d.state == DeployStateJson::Pending && p.phase.is_empty() {
        line.push_str(": waiting for a worker");
    }
    if !p.phase.is_empty() {
        line.push_str(&format!(" · {}", p.phase));
    }
    if !p.message.is_empty() {
        line.push_str(&format!(": {}", p.message));
    }
    line
}

/// What `watch` prints: log lines as they come and the progress, redrawn in place on a
/// terminal, one line per change otherwise.
struct Screen {
    tty: bool,
    /// The progress line on screen (terminal) or last printed (otherwise).
    shown: Option<String>,
}

impl Screen {
    fn log(&mut self, entry: &LogEntryJson) {
        self.clear();
        println!(
            "{}  {:<9} {}",
            entry.at.format("%H:%M:%S"),
            entry.stream,
            entry.line
        );
        if self.tty {
            self.redraw();
        }
    }

    fn progress(&mut self, line: String) {
        if self.shown.as_deref() == Some(line.as_str()) {
            return;
        }
        if self.tty {
            self.shown = Some(line);
            self.redraw();
        } else {
            println!("{line}");
            self.shown = Some(line);
        }
    }

    fn redraw(&self) {
        if let Some(line) = &self.shown {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{line}");
            let _ = out.flush();
        }
    }

    /// Takes the progress line off a terminal so that a log line can be printed.
    fn clear(&self) {
        if self.tty && self.shown.is_some() {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
    }

    /// Leaves the progress line on a terminal as the last line of output.
    fn finish(&mut self) {
        if self.tty && self.shown.is_some() {
            println!();
        }
    }
}

/// The last line of `watch`.
fn ending(d: &DeploymentJson) -> String {
    let took = match (&d.started_at, &d.finished_at) {
        (Some(start), Some(end)) => format!(" in {}", table::duration(start, end)),
        _ => String::new(),
    };
    let error = if d.error.is_empty() {
        String::new()
    } else {
        format!(": {}", d.error)
    };
    match d.state {
        DeployStateJson::Succeeded => format!("✓ {} succeeded{took}", d.id),
        DeployStateJson::Failed => format!("✗ {} failed{took}{error}", d.id),
        DeployStateJson::RolledBack => format!(
            "✗ {} rolled back{took}{error} (the previous release runs again)",
            d.id
        ),
        DeployStateJson::Cancelled => format!("✗ {} cancelled{took}{error}", d.id),
        DeployStateJson::Pending | DeployStateJson::Running => {
            format!("{} is {}", d.id, state_name(d.state))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_percentage() {
        assert_eq!(bar(0), format!("[{}]   0%", ".".repeat(BAR_WIDTH)));
        assert_eq!(
            bar(50),
            format!("[{}{}]  50%", "#".repeat(12), ".".repeat(12))
        );
        assert_eq!(bar(100), format!("[{}] 100%", "#".repeat(BAR_WIDTH)));
        assert_eq!(bar(140), bar(100));
    }
}
