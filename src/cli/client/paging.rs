//! What the list commands (`deployments`, `releases`) share: their flags, reading one page
//! or every page, and the hint under a table that is one page of several.

use clap::Args;
use serde::de::DeserializeOwned;

use super::api::Api;
use super::{Connection, print_raw};
use crate::cli::CliError;
use crate::server::api::{DeployListJson, ReleaseListJson};

/// Items per page when `--all` reads every page.
pub(super) const ALL_PAGE: u32 = 100;

/// `deploybot deployments|releases INSTANCE [--limit N] [--cursor C] [--all]`
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// The instance: its name or id.
    pub instance: String,
    /// Items per page, 1 to 100 (default 20).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: Option<u32>,
    /// Start after this cursor (the one printed under the previous page).
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Read every page.
    #[arg(long)]
    pub all: bool,
    /// Print the server's JSON page, `{items, next_cursor, total}`, instead of the table
    /// (for scripts); with --all, every page joined into one.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// Reads one page, or every page with `--all`, of a list route.
pub(super) async fn pages<T: DeserializeOwned + Paged>(
    api: &Api,
    segments: &[&str],
    args: &ListArgs,
) -> Result<(T, String), CliError> {
    let mut query: Vec<(&str, String)> = Vec::new();
    let limit = args.limit.or(args.all.then_some(ALL_PAGE));
    if let Some(limit) = limit {
        query.push(("limit", limit.to_string()));
    }
    if let Some(cursor) = &args.cursor {
        query.push(("cursor", cursor.clone()));
    }
    let (mut all, raw): (T, String) = api.get(segments, &query).await?;
    if !args.all {
        return Ok((all, raw));
    }
    while let Some(cursor) = all.next_cursor() {
        let mut query = query.clone();
        query.retain(|(name, _)| *name != "cursor");
        query.push(("cursor", cursor));
        let (page, _): (T, String) = api.get(segments, &query).await?;
        all.append(page);
    }
    Ok((all, String::new()))
}

/// A page of a list route that `--all` can join to the next.
pub(super) trait Paged: serde::Serialize {
    fn next_cursor(&self) -> Option<String>;
    fn append(&mut self, next: Self);
    fn len(&self) -> usize;
    fn total(&self) -> i64;
}

impl Paged for DeployListJson {
    fn next_cursor(&self) -> Option<String> {
        self.next_cursor.clone()
    }
    fn append(&mut self, next: Self) {
        self.items.extend(next.items);
        self.next_cursor = next.next_cursor;
        self.total = next.total;
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn total(&self) -> i64 {
        self.total
    }
}

impl Paged for ReleaseListJson {
    fn next_cursor(&self) -> Option<String> {
        self.next_cursor.clone()
    }
    fn append(&mut self, next: Self) {
        self.items.extend(next.items);
        self.next_cursor = next.next_cursor;
        self.total = next.total;
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    fn total(&self) -> i64 {
        self.total
    }
}

/// `--json` output of a list: the page as received, or all pages joined into one.
pub(super) fn print_list<T: Paged>(list: &T, raw: &str) -> Result<(), CliError> {
    if raw.is_empty() {
        let joined = serde_json::to_string(list)
            .map_err(|e| CliError::Usage(format!("cannot encode the list: {e}")))?;
        print_raw(&joined);
    } else {
        print_raw(raw);
    }
    Ok(())
}

/// The line under a table that is one page of several.
pub(super) fn more<T: Paged>(list: &T, command: &str, args: &ListArgs) -> Option<String> {
    let cursor = list.next_cursor()?;
    let limit = args
        .limit
        .map(|l| format!(" --limit {l}"))
        .unwrap_or_default();
    Some(format!(
        "showing {} of {}; next page: deploybot {command} {}{limit} --cursor {cursor} (or --all)",
        list.len(),
        list.total(),
        args.instance
    ))
}
