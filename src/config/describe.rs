//! The table of instances `deploybot config check` prints, followed by each instance's
//! deploy control: parameters, deployers, and the freeze in force and the next one.

use chrono::{DateTime, SecondsFormat, Utc};

use super::freeze::{FreezeWindow, Occurrence, freeze_state};
use super::{Config, InstanceConfig, ProviderKind};

/// The table's columns.
const HEADER: [&str; 7] = [
    "NAME",
    "TENANT",
    "REPO",
    "ENVIRONMENT",
    "STRATEGY",
    "PROVIDER",
    "TRIGGERS",
];

impl Config {
    /// Human-readable table of instances for `deploybot config check` (name, tenant, repo,
    /// environment, strategy, provider, triggers), then one line per instance with deploy
    /// control settings and freezes as of now.
    pub fn describe(&self) -> String {
        self.describe_at(Utc::now())
    }

    /// Same, with the freezes as of `now`.
    pub fn describe_at(&self, now: DateTime<Utc>) -> String {
        if self.instances.is_empty() {
            return "no instances configured (add an [[instances]] table to the config file)\n"
                .to_string();
        }
        let mut rows: Vec<[String; 7]> = vec![HEADER.map(str::to_string)];
        rows.extend(self.instances.iter().map(row));
        let mut out = render(&rows);
        let controls: Vec<String> = self
            .instances
            .iter()
            .filter_map(|i| control(i, &self.freezes, now))
            .collect();
        if self.command_prefix != '/' || !controls.is_empty() {
            out.push('\n');
        }
        if self.command_prefix != '/' {
            out.push_str(&format!(
                "commands start with {0} ({0}deploy, {0}lock, …)\n",
                self.command_prefix
            ));
        }
        for line in controls {
            out.push_str(&line);
        }
        out
    }
}

/// An instance's deploy control in a line or three, `None` when every setting is the
/// default and no freeze applies.
fn control(i: &InstanceConfig, global: &[FreezeWindow], now: DateTime<Utc>) -> Option<String> {
    let mut settings = Vec::new();
    if !i.params.is_empty() {
        settings.push(format!("params {}", i.params.join(", ")));
    }
    if !i.deployers.is_empty() {
        settings.push(format!("deployers {}", i.deployers.join(", ")));
    }
    let gates = i.gates.describe();
    if !gates.is_empty() {
        settings.push(format!("gates: {}", gates.join(", ")));
    }
    let metric_gates: Vec<String> = i.metric_gates.iter().map(|g| g.describe()).collect();
    if !metric_gates.is_empty() {
        settings.push(format!("metric gates: {}", metric_gates.join(", ")));
    }
    if let Some(watch) = i.watch {
        settings.push(format!("watch {}", humantime::format_duration(watch)));
    }
    if !i.lock_on_rollback {
        settings.push("no lock on rollback".to_string());
    }
    if i.unlock_on_merge {
        settings.push("unlock on merge".to_string());
    }
    if !i.provider.noop_run.is_empty() {
        settings.push(format!("dry run {}", i.provider.noop_run.join(" ")));
    }
    let windows: Vec<FreezeWindow> = i.freezes.iter().chain(global).cloned().collect();
    let (current, next) = freeze_state(&windows, now);
    if settings.is_empty() && windows.is_empty() {
        return None;
    }
    let mut out = format!("{}:", i.name);
    if !settings.is_empty() {
        out.push(' ');
        out.push_str(&settings.join("; "));
    }
    out.push('\n');
    if !windows.is_empty() {
        let schedules: Vec<String> = windows
            .iter()
            .map(|w| format!("\"{}\" {}", w.reason, w.schedule()))
            .collect();
        out.push_str(&format!("  freezes: {}\n", schedules.join("; ")));
    }
    match current {
        Some(occurrence) => {
            out.push_str(&format!("  frozen now: {}\n", occurrence_text(occurrence)))
        }
        None if !windows.is_empty() => out.push_str("  not frozen now\n"),
        None => {}
    }
    if let Some(occurrence) = next {
        out.push_str(&format!("  next freeze: {}\n", occurrence_text(occurrence)));
    }
    Some(out)
}

/// `"reason" from START until END` (UTC).
fn occurrence_text((window, start, end): Occurrence<'_>) -> String {
    format!(
        "\"{}\" from {} until {}",
        window.reason,
        start.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        end.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// One instance's cells, in the order of `HEADER`.
fn row(i: &InstanceConfig) -> [String; 7] {
    let provider = match (i.provider.kind, i.provider.run.first()) {
        (ProviderKind::Command, Some(program)) => format!("command {program}"),
        (kind, _) => kind.as_str().to_string(),
    };
    let mut triggers = Vec::new();
    if !i.on_push.is_empty() {
        triggers.push(format!("push {}", i.on_push.join(",")));
    }
    if !i.on_tag.is_empty() {
        triggers.push(format!("tag {}", i.on_tag.join(",")));
    }
    if i.commands {
        triggers.push("/deploy".to_string());
    }
    if triggers.is_empty() {
        triggers.push("API only".to_string());
    }
    [
        i.name.clone(),
        i.tenant(),
        i.repo.clone(),
        i.environment.clone(),
        i.strategy.as_str().to_string(),
        provider,
        triggers.join("; "),
    ]
}

/// The rows as text, each column padded to its widest cell plus two spaces.
fn render(rows: &[[String; 7]]) -> String {
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (col, cell) in row.iter().enumerate() {
            if col + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[col] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("instant")
            .with_timezone(&chrono::Utc)
    }

    const CONTROLLED: &str = "command_prefix = \".\"\n\
        [[freeze]]\nreason = \"end of year\"\nstart = \"2026-12-20T00:00:00Z\"\nend = \"2027-01-04T08:00:00Z\"\n\
        [[instances]]\nname = \"web-production\"\nrepo = \"acme/web\"\nenvironment = \"production\"\nimage = \"x\"\n\
        params = [\"REGION\"]\ndeployers = [\"alice\", \"@acme/sre\"]\nlock_on_rollback = false\n\
        [[instances.freeze]]\nreason = \"weekend\"\nweekly = { from = \"Fri 15:00\", until = \"Mon 08:00\", timezone = \"Europe/Berlin\" }\n\
        [[instances]]\nname = \"web-staging\"\nrepo = \"acme/web\"\nenvironment = \"staging\"\nimage = \"x\"\n";

    #[test]
    fn config_check_shows_each_instances_control_and_freezes() {
        let config = parse_ok(CONTROLLED);
        // Wednesday 2026-12-09: nothing holds; the weekend comes before the holidays.
        let text = config.describe_at(at("2026-12-09T12:00:00Z"));
        assert_mentions(
            &text,
            &[
                "commands start with . (.deploy",
                "web-production: params REGION; deployers alice, @acme/sre; no lock on rollback\n  freezes: \"weekend\" every Fri 15:00 until Mon 08:00 Europe/Berlin; \"end of year\" 2026-12-20T00:00:00Z until 2027-01-04T08:00:00Z\n  not frozen now\n  next freeze: \"weekend\" from 2026-12-11T14:00:00Z until 2026-12-14T07:00:00Z\n",
                "web-staging:\n  freezes: \"end of year\" 2026-12-20T00:00:00Z until 2027-01-04T08:00:00Z\n  not frozen now\n  next freeze: \"end of year\" from 2026-12-20T00:00:00Z until 2027-01-04T08:00:00Z\n",
            ],
        );
        // Saturday 2026-12-26: both hold for web-production, the longer one is shown.
        let text = config.describe_at(at("2026-12-26T12:00:00Z"));
        assert_mentions(
            &text,
            &[
                "web-production: params REGION",
                "  frozen now: \"end of year\" from 2026-12-20T00:00:00Z until 2027-01-04T08:00:00Z\n  next freeze: \"weekend\" from 2027-01-01T14:00:00Z",
                "web-staging:\n  freezes: \"end of year\" 2026-12-20T00:00:00Z until 2027-01-04T08:00:00Z\n  frozen now: \"end of year\"",
            ],
        );
    }

    #[test]
    fn config_check_lists_metric_gates_and_watch() {
        let config = parse_ok(&instance(
            "watch = \"10m\"\n[[instances.gates]]\nname = \"error rate\"\nprometheus = \"http://prometheus:9090\"\nquery = 'sum(rate(errors{instance=\"{{instance}}\"}[1m]))'\nmax = 0.01\ncount = 4\nfailure_limit = 1\n",
        ));
        let text = config.describe_at(at("2026-12-09T12:00:00Z"));
        assert_mentions(
            &text,
            &[
                "web-production: metric gates: \"error rate\" ≤ 0.01 (4 × 30s, tolerates 1, no data: fail); watch 10m\n",
            ],
        );
    }

    #[test]
    fn instances_without_control_settings_add_no_lines() {
        let config = parse_ok(&instance(""));
        let text = config.describe_at(at("2026-12-09T12:00:00Z"));
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains("freeze") && !text.contains("commands start"));
    }
}
