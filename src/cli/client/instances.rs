//! `instances`: the token's instances with their active release, lock and freeze.

use clap::Args;

use super::api::Api;
use super::{Connection, print_raw};
use crate::cli::{CliError, Outcome, table};
use crate::server::api::{InstanceJson, InstanceListJson};

/// `deploybot instances`
#[derive(Debug, Clone, Args)]
pub struct InstancesArgs {
    /// Print the server's JSON list of instances, each with its active release, instead of
    /// the table (for scripts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `instances`: the token's instances with their active release.
pub async fn instances(args: InstancesArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let (list, raw): (InstanceListJson, _) = api.get(&["instances"], &[]).await?;
    if args.json {
        print_raw(&raw);
        return Ok(Outcome::Success);
    }
    if list.items.is_empty() {
        println!(
            "no instances for this token's tenant: add [[instances]] to the server's \
             configuration (repo = \"OWNER/NAME\" with OWNER = the token's tenant)"
        );
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = list.items.iter().map(instance_row).collect();
    print!(
        "{}",
        table::render(
            &[
                "NAME",
                "REPO",
                "ENVIRONMENT",
                "ACTIVE",
                "IMAGE",
                "COMMIT",
                "SINCE (UTC)",
                "LOCKED BY",
                "FROZEN",
                "ID"
            ],
            &rows
        )
    );
    Ok(Outcome::Success)
}

/// One instance as a row of the `instances` table.
fn instance_row(i: &InstanceJson) -> Vec<String> {
    let name = if i.configured {
        i.name.clone()
    } else {
        format!("{} (not configured)", i.name)
    };
    let (version, image, sha, since) = match &i.active_release {
        Some(r) => (
            format!("v{}", r.version),
            table::clip(&r.image, 48),
            table::short_sha(&r.commit_sha),
            table::time(&r.updated_at),
        ),
        None => ("-".into(), "-".into(), "-".into(), "-".into()),
    };
    vec![
        name,
        i.repo.clone(),
        i.environment.clone(),
        version,
        image,
        sha,
        since,
        i.lock
            .as_ref()
            .map_or_else(|| "-".into(), |l| l.holder.clone()),
        match (&i.freeze.current, &i.freeze.next) {
            (Some(now), _) => format!("until {}: {}", table::time(&now.end), now.reason),
            (None, Some(next)) => format!("from {}: {}", table::time(&next.start), next.reason),
            (None, None) => "-".into(),
        },
        i.id.clone(),
    ]
}
