//! `releases`: an instance's releases, highest version first.

use super::api::Api;
use super::paging::{ListArgs, more, pages, print_list};
use crate::cli::{CliError, Outcome, table};
use crate::server::api::{ReleaseJson, ReleaseListJson};

/// `releases`: the instance's releases, highest version first.
pub async fn releases(args: ListArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let (list, raw): (ReleaseListJson, _) =
        pages(&api, &["instances", &args.instance, "releases"], &args).await?;
    if args.json {
        print_list(&list, &raw)?;
        return Ok(Outcome::Success);
    }
    if list.items.is_empty() {
        println!("{} has no releases yet", args.instance);
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = list.items.iter().map(release_row).collect();
    print!(
        "{}",
        table::render(
            &[
                "VERSION",
                "ID",
                "ACTIVE",
                "IMAGE",
                "COMMIT",
                "CREATED (UTC)",
                "NOTES"
            ],
            &rows
        )
    );
    if let Some(line) = more(&list, "releases", &args) {
        println!("{line}");
    }
    Ok(Outcome::Success)
}

/// One release as a row of the `releases` table.
fn release_row(r: &ReleaseJson) -> Vec<String> {
    vec![
        format!("v{}", r.version),
        r.id.clone(),
        if r.active {
            "active".into()
        } else {
            String::new()
        },
        table::clip(&r.image, 48),
        table::short_sha(&r.commit_sha),
        table::time(&r.created_at),
        table::clip(&r.notes, 60),
    ]
}
