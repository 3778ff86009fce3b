//! `deploybot reload`: asks a running server to re-read its configuration file
//! (`POST /v1/admin/reload`, an admin token), and prints what changed.

use clap::Args;

use super::api::Api;
use super::{Connection, print_raw};
use crate::cli::{CliError, Outcome};
use crate::server::api::ReloadJson;

/// `deploybot reload`
#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    /// Print the server's JSON answer (for scripts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `reload`: the server re-reads its file; a refusal (exit 1) names the file's problems.
pub async fn reload(args: ReloadArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let (report, raw): (ReloadJson, _) = api
        .post(&["admin", "reload"], &serde_json::json!({}))
        .await
        .map_err(|e| e.context("cannot reload the configuration"))?;
    if args.json {
        print_raw(&raw);
        return Ok(Outcome::Success);
    }
    println!("{}", summary(&report));
    Ok(Outcome::Success)
}

/// What the reload changed, one line per kind of change.
fn summary(report: &ReloadJson) -> String {
    let from = report
        .source
        .as_deref()
        .unwrap_or("defaults and the environment");
    let mut lines = vec![format!(
        "reloaded the configuration from {from}: {} instance{}",
        report.instances.len(),
        if report.instances.len() == 1 { "" } else { "s" }
    )];
    let mut list = |what: &str, names: &[String]| {
        if !names.is_empty() {
            lines.push(format!("{what}: {}", names.join(", ")));
        }
    };
    list("added", &report.added);
    list("removed (history kept)", &report.removed);
    list("cancelled queued deployments", &report.cancelled);
    list(
        "changed, taking effect after a restart",
        &report.restart_needed,
    );
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_each_change_and_skips_empty_ones() {
        let report = ReloadJson {
            source: Some("deploybot.toml".into()),
            instances: vec!["web".into(), "api".into()],
            added: vec!["api".into()],
            removed: vec!["old".into()],
            cancelled: vec![],
            restart_needed: vec!["listen".into()],
        };
        assert_eq!(
            summary(&report),
            "reloaded the configuration from deploybot.toml: 2 instances\nadded: api\n\
             removed (history kept): old\nchanged, taking effect after a restart: listen"
        );
    }
}
