//! The deployment commands: `deploy` and `rollback` queue one (and follow it with
//! `--watch`), `cancel` stops one, `deployments` lists an instance's, newest first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::api::Api;
use super::paging::{ALL_PAGE, ListArgs, more, pages, print_list};
use super::watch::follow;
use super::{Connection, print_raw, state_name};
use crate::cli::{CliError, Outcome, table};
use crate::server::api::{
    DeployKindJson, DeployListJson, DeployStateJson, DeploymentJson, ReleaseListJson, WaitKindJson,
};

/// How often `--watch` of `deploy` and `rollback` polls.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// `deploybot deploy INSTANCE --image IMG …`
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// The instance: its name (web-production) or id (inst_…).
    pub instance: String,
    /// The image to run.
    #[arg(long)]
    pub image: String,
    /// An environment variable of the release; repeat for more.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// rolling, recreate, blue-green or canary (default: the instance's strategy).
    #[arg(long)]
    pub strategy: Option<String>,
    /// Notes recorded with the release.
    #[arg(long)]
    pub notes: Option<String>,
    /// The commit the image was built from (7 to 64 hex characters).
    #[arg(long)]
    pub sha: Option<String>,
    /// A parameter the instance accepts (its `params`); repeat for more.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// A dry run: the provider plans and changes nothing (a freeze does not refuse it).
    #[arg(long)]
    pub noop: bool,
    /// Pass a freeze in force (an admin token only).
    #[arg(long)]
    pub force: bool,
    /// Follow the deployment until it ends, as `watch` does.
    #[arg(long)]
    pub watch: bool,
    /// Print the created deployment as the server's JSON (for scripts); with --watch, only
    /// the deployment as it ended.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `deploybot rollback INSTANCE [--version N | --release REL_ID]`
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The instance: its name or id.
    pub instance: String,
    /// Return to this release version (default: the release active before the current one).
    #[arg(long, conflicts_with = "release", value_parser = clap::value_parser!(i64).range(1..))]
    pub version: Option<i64>,
    /// Return to this release (rel_…).
    #[arg(long, value_name = "REL_ID")]
    pub release: Option<String>,
    /// Pass another's lock or a freeze in force (an admin token only).
    #[arg(long)]
    pub force: bool,
    /// Why: kept in the deployment's trigger and the audit trail.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Follow the deployment until it ends, as `watch` does.
    #[arg(long)]
    pub watch: bool,
    /// Print the rollback deployment as the server's JSON (for scripts); with --watch, only
    /// the deployment as it ended.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `deploybot cancel DEPLOYMENT`
#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The deployment (dep_…).
    pub deployment: String,
    /// Print the deployment after the cancel request as the server's JSON (for scripts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `approve`: a deployment that waits for approval.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The deployment (dep_…).
    pub deployment: String,
    /// Print the deployment after the approval as the server's JSON (for scripts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `KEY=VALUE` of `--env`.
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "{text:?} is not KEY=VALUE, e.g. --env LOG_LEVEL=debug"
        )),
    }
}

/// `KEY=VALUE` of `--param`.
fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "{text:?} is not KEY=VALUE, e.g. --param REGION=eu-west-1"
        )),
    }
}

/// `deploy`: queue a new release of the instance; with `--watch`, follow it.
pub async fn deploy(args: DeployArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let env: BTreeMap<String, String> = args.env.into_iter().collect();
    let body = json!({
        "image": args.image,
        "env": env,
        "strategy": args.strategy.unwrap_or_default(),
        "notes": args.notes.unwrap_or_default(),
        "commit_sha": args.sha.unwrap_or_default(),
        "params": args.params.into_iter().collect::<BTreeMap<_, _>>(),
        "noop": args.noop,
        "force": args.force,
    });
    let (deployment, raw): (DeploymentJson, _) = api
        .post(&["instances", &args.instance, "deploy"], &body)
        .await
        .map_err(|e| e.context(format_args!("cannot deploy {}", args.instance)))?;
    created(
        &api,
        &args.instance,
        &deployment,
        &raw,
        args.watch,
        args.json,
    )
    .await
}

/// `rollback`: queue a deployment of an earlier release (default: the previous one).
pub async fn rollback(args: RollbackArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let mut body = match (args.version, &args.release) {
        (Some(version), _) => json!({"version": version}),
        (None, Some(release)) => json!({"release_id": release}),
        (None, None) => json!({}),
    };
    body["force"] = json!(args.force);
    if let Some(reason) = &args.reason {
        body["reason"] = json!(reason);
    }
    let (deployment, raw): (DeploymentJson, _) = api
        .post(&["instances", &args.instance, "rollback"], &body)
        .await
        .map_err(|e| e.context(format_args!("cannot roll back {}", args.instance)))?;
    created(
        &api,
        &args.instance,
        &deployment,
        &raw,
        args.watch,
        args.json,
    )
    .await
}

/// What `deploy` and `rollback` print, then follow with `--watch`.
async fn created(
    api: &Api,
    instance: &str,
    deployment: &DeploymentJson,
    raw: &str,
    watch: bool,
    json: bool,
) -> Result<Outcome, CliError> {
    if watch {
        if !json {
            print!("{}", summary(instance, deployment));
        }
        return follow(api, &deployment.id, json, WATCH_INTERVAL).await;
    }
    if json {
        print_raw(raw);
    } else {
        print!("{}", summary(instance, deployment));
        println!("follow it: deploybot watch {}", deployment.id);
    }
    Ok(Outcome::Success)
}

/// A created deployment, key by key.
fn summary(instance: &str, d: &DeploymentJson) -> String {
    let what = match (d.kind, d.noop) {
        (DeployKindJson::Rollback, _) => "rollback",
        (DeployKindJson::Deploy, true) => "dry run",
        (DeployKindJson::Deploy, false) => "deployment",
    };
    let mut rows = vec![
        ("image", d.image.clone()),
        ("strategy", d.strategy.clone()),
        ("release", d.release_id.clone()),
        ("initiator", d.initiator.clone()),
    ];
    if !d.env.is_empty() {
        let env: Vec<String> = d.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("env", env.join(" ")));
    }
    if !d.params.is_empty() {
        let params: Vec<String> = d.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("params", params.join(" ")));
    }
    if let Some(waiting) = &d.waiting_for {
        rows.push(("waiting", waiting.description.clone()));
    }
    let mut out = format!(
        "{what} {} queued for {instance} ({})\n",
        d.id,
        state_name(d.state)
    );
    for (key, value) in rows {
        out.push_str(&format!("  {key:<10} {value}\n"));
    }
    out
}

/// `cancel`: stop a pending or running deployment.
pub async fn cancel(args: CancelArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let url = api.url(&["deployments", &args.deployment, "cancel"], &[])?;
    api.call(Method::POST, url, None)
        .await
        .map_err(|e| e.context(format_args!("cannot cancel {}", args.deployment)))?;
    let (deployment, raw): (DeploymentJson, _) =
        api.get(&["deployments", &args.deployment], &[]).await?;
    if args.json {
        print_raw(&raw);
    } else if deployment.state == DeployStateJson::Cancelled {
        println!("cancelled {}", deployment.id);
    } else {
        println!(
            "cancellation of {} requested: it is {} and stops at its next step \
             (follow it: deploybot watch {})",
            deployment.id,
            state_name(deployment.state),
            deployment.id
        );
    }
    Ok(Outcome::Success)
}

/// `approve`: approves a deployment that waits for approval, and says whether it runs now
/// or what it still waits for.
pub async fn approve(args: ApproveArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let (deployment, raw): (DeploymentJson, _) = api
        .post(
            &["deployments", &args.deployment, "approve"],
            &serde_json::json!({}),
        )
        .await
        .map_err(|e| e.context(format_args!("cannot approve {}", args.deployment)))?;
    if args.json {
        print_raw(&raw);
        return Ok(Outcome::Success);
    }
    match &deployment.waiting_for {
        None => println!("approved {}: it runs now", deployment.id),
        Some(waiting) => println!("approved {}: still {}", deployment.id, waiting.description),
    }
    Ok(Outcome::Success)
}

/// `deployments`: the instance's deployments, newest first.
pub async fn deployments(args: ListArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let (list, raw): (DeployListJson, _) =
        pages(&api, &["instances", &args.instance, "deployments"], &args).await?;
    if args.json {
        print_list(&list, &raw)?;
        return Ok(Outcome::Success);
    }
    if list.items.is_empty() {
        println!(
            "{} has no deployments yet: deploy with `deploybot deploy {} --image IMAGE`, or \
             push (try `deploybot simulate push`)",
            args.instance, args.instance
        );
        return Ok(Outcome::Success);
    }
    let needed: HashSet<&str> = list.items.iter().map(|d| d.release_id.as_str()).collect();
    let versions = release_versions(&api, &args.instance, &needed).await?;
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|d| deployment_row(d, &versions))
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "ID",
                "STATE",
                "VERSION",
                "IMAGE",
                "STRATEGY",
                "PROGRESS",
                "CREATED (UTC)",
                "TOOK",
                "INITIATOR",
                "TRIGGER",
            ],
            &rows,
        )
    );
    for d in list.items.iter().filter(|d| !d.error.is_empty()) {
        println!("{}: {}", d.id, d.error);
    }
    for d in &list.items {
        if let Some(waiting) = &d.waiting_for {
            println!("{}: {}", d.id, waiting.description);
        }
    }
    if let Some(line) = more(&list, "deployments", &args) {
        println!("{line}");
    }
    Ok(Outcome::Success)
}

/// One deployment as a row of the `deployments` table; `versions` maps release ids to
/// their versions.
fn deployment_row(d: &DeploymentJson, versions: &HashMap<String, i64>) -> Vec<String> {
    let version = versions
        .get(&d.release_id)
        .map_or_else(|| "-".to_string(), |v| format!("v{v}"));
    let version = match (d.kind, d.noop) {
        (DeployKindJson::Rollback, _) => format!("{version} (rollback)"),
        (DeployKindJson::Deploy, true) => format!("{version} (dry run)"),
        (DeployKindJson::Deploy, false) => version,
    };
    let duration = match (&d.started_at, &d.finished_at) {
        (Some(start), Some(end)) => table::duration(start, end),
        _ => "-".into(),
    };
    vec![
        d.id.clone(),
        state_name(d.state).to_string(),
        version,
        table::clip(&d.image, 48),
        d.strategy.clone(),
        progress_cell(d),
        table::time(&d.created_at),
        duration,
        table::or_dash(&d.initiator),
        table::clip(&table::or_dash(&d.source.trigger), 48),
    ]
}

/// `45% shift traffic` (the phase is left out once a deployment succeeded); `waiting (lock)`
/// for a pending deployment that waits.
fn progress_cell(d: &DeploymentJson) -> String {
    if let Some(waiting) = &d.waiting_for {
        return format!("waiting ({})", waiting_kind(waiting.kind));
    }
    let p = &d.progress;
    if p.phase.is_empty() || d.state == DeployStateJson::Succeeded {
        format!("{}%", p.percent)
    } else {
        format!("{}% {}", p.percent, p.phase)
    }
}

fn waiting_kind(kind: WaitKindJson) -> &'static str {
    match kind {
        WaitKindJson::Lock => "lock",
        WaitKindJson::Freeze => "freeze",
        WaitKindJson::Checks => "checks",
        WaitKindJson::Promotion => "promotion",
        WaitKindJson::Approval => "approval",
    }
}

/// The versions of the releases `needed`, read from the instance's releases (newest first,
/// so the releases of recent deployments are on the first pages).
async fn release_versions(
    api: &Api,
    instance: &str,
    needed: &HashSet<&str>,
) -> Result<HashMap<String, i64>, CliError> {
    let mut versions = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", ALL_PAGE.to_string())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let (page, _): (ReleaseListJson, _) = api
            .get(&["instances", instance, "releases"], &query)
            .await?;
        for release in page.items {
            versions.insert(release.id, release.version);
        }
        if needed.iter().all(|id| versions.contains_key(*id)) {
            return Ok(versions);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(versions),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_flags_are_key_value() {
        assert_eq!(
            parse_env("LOG_LEVEL=debug").unwrap(),
            ("LOG_LEVEL".into(), "debug".into())
        );
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(
            parse_env("EMPTY=").unwrap(),
            ("EMPTY".into(), String::new())
        );
        assert!(parse_env("novalue").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_env("=x").is_err());
    }
}
