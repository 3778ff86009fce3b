//! Deploy control from the terminal: `lock` and `unlock` an instance (or with `--global`
//! every instance of its repository), list the `locks`, and read the `audit` trail.

use clap::Args;
use reqwest::Method;
use serde_json::json;

use super::api::Api;
use super::{Connection, print_raw};
use crate::cli::{CliError, Outcome, table};
use crate::server::api::{AuditPageJson, LockJson, LockListJson, LockScopeJson, parse_ttl};

/// `deploybot lock INSTANCE [--global] [--for DURATION] [--reason TEXT]`
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// The instance: its name or id.
    pub instance: String,
    /// Lock every instance of the instance's repository.
    #[arg(long)]
    pub global: bool,
    /// How long the lock holds: a whole number and a unit, s, m, h or d (30m, 2h, 1d);
    /// without it, until unlocked.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<String>,
    /// Why (shown to whoever the lock refuses).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Print the lock as the server's JSON (for scripts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `deploybot unlock INSTANCE [--global]`
#[derive(Debug, Clone, Args)]
pub struct UnlockArgs {
    /// The instance: its name or id.
    pub instance: String,
    /// Release the lock on every instance of the instance's repository.
    #[arg(long)]
    pub global: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `deploybot locks`
#[derive(Debug, Clone, Args)]
pub struct LocksArgs {
    /// Print the server's JSON list of locks (for scripts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `deploybot audit [--instance I] [--limit N] [--cursor C]`
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Only this instance's events (its name or id).
    #[arg(long)]
    pub instance: Option<String>,
    /// Events per page, 1 to 100 (default 20).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: Option<u32>,
    /// Start after this cursor (the one printed under the previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print the server's JSON page, `{items, next_cursor}` (for scripts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `--for`: what the API's `ttl` accepts, checked before anything is sent.
fn parse_duration(text: &str) -> Result<String, String> {
    match parse_ttl(text) {
        Ok(Some(_)) => Ok(text.to_string()),
        Ok(None) => Err("the duration is empty: use e.g. 30m, 2h or 1d".into()),
        Err(e) => Err(e.replacen("ttl", "duration", 1)),
    }
}

fn scope(instance: &str, global: bool) -> String {
    if global {
        format!("every instance of the repository of {instance}")
    } else {
        instance.to_string()
    }
}

/// `lock`: take (or renew) the lock.
pub async fn lock(args: LockArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let body = json!({
        "reason": args.reason.unwrap_or_default(),
        "ttl": args.duration.unwrap_or_default(),
        "global": args.global,
    });
    let (lock, raw): (LockJson, _) = api
        .put(&["instances", &args.instance, "lock"], &body)
        .await
        .map_err(|e| {
            e.context(format_args!(
                "cannot lock {}",
                scope(&args.instance, args.global)
            ))
        })?;
    if args.json {
        print_raw(&raw);
    } else {
        println!(
            "locked {}: {}",
            scope(&args.instance, args.global),
            lock.description
        );
        println!(
            "release it: deploybot unlock {}{}",
            args.instance,
            if args.global { " --global" } else { "" }
        );
    }
    Ok(Outcome::Success)
}

/// `unlock`: release the lock, whoever holds it.
pub async fn unlock(args: UnlockArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let query = if args.global {
        vec![("global", "true".to_string())]
    } else {
        Vec::new()
    };
    let url = api.url(&["instances", &args.instance, "lock"], &query)?;
    api.call(Method::DELETE, url, None).await.map_err(|e| {
        e.context(format_args!(
            "cannot unlock {}",
            scope(&args.instance, args.global)
        ))
    })?;
    println!("unlocked {}", scope(&args.instance, args.global));
    Ok(Outcome::Success)
}

/// `locks`: the live locks the token can see.
pub async fn locks(args: LocksArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let (list, raw): (LockListJson, _) = api.get(&["locks"], &[]).await?;
    if args.json {
        print_raw(&raw);
        return Ok(Outcome::Success);
    }
    if list.items.is_empty() {
        println!("nothing is locked");
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|l| {
            let target = match l.scope {
                LockScopeJson::Instance => l.instance_id.clone().unwrap_or_default(),
                LockScopeJson::Repo => format!("{} (every instance)", l.repo),
            };
            vec![
                target,
                l.holder.clone(),
                table::time(&l.created_at),
                l.expires_at
                    .as_ref()
                    .map_or_else(|| "until unlocked".to_string(), table::time),
                table::clip(&table::or_dash(&l.reason), 60),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["LOCKED", "HOLDER", "SINCE (UTC)", "UNTIL (UTC)", "REASON"],
            &rows
        )
    );
    Ok(Outcome::Success)
}

/// `audit`: who did what, newest first.
pub async fn audit(args: AuditArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(instance) = &args.instance {
        query.push(("instance", instance.clone()));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &args.cursor {
        query.push(("cursor", cursor.clone()));
    }
    let (page, raw): (AuditPageJson, _) = api.get(&["audit"], &query).await?;
    if args.json {
        print_raw(&raw);
        return Ok(Outcome::Success);
    }
    if page.items.is_empty() {
        println!("the audit trail is empty");
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|e| {
            vec![
                table::time(&e.at),
                e.actor.clone(),
                e.action.clone(),
                table::or_dash(e.deployment_id.as_deref().unwrap_or_default()),
                e.detail.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &["AT (UTC)", "ACTOR", "ACTION", "DEPLOYMENT", "DETAIL"],
            &rows
        )
    );
    if let Some(cursor) = &page.next_cursor {
        println!("more: deploybot audit --cursor {cursor}");
    }
    Ok(Outcome::Success)
}
