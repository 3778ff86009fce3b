//! The REST API commands for a person at a terminal: `deploy`, `rollback`, `cancel`,
//! `deployments`, `releases`, `instances` and `watch`. They talk to `--url`/`DEPLOYBOT_URL`
//! with the bearer token `--token`/`DEPLOYBOT_TOKEN`, print aligned tables (or the server's
//! JSON with `--json`), and read the answers with the API's own types, so the client cannot
//! drift from the server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{CliError, Outcome, http, table};
use crate::server::api::{
    DeployListJson, DeployStateJson, DeploymentJson, InstanceListJson, LogEntryJson, LogPageJson,
    ReleaseJson, ReleaseListJson,
};

/// The server when neither `--url` nor `DEPLOYBOT_URL` names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Log lines asked for per request while watching (the API's maximum).
const LOG_PAGE: usize = 1000;
/// Items per page when `--all` reads every page.
const ALL_PAGE: u32 = 100;
/// Failed polls in a row `watch` rides out (a server restarting) before giving up.
const WATCH_RETRIES: u32 = 20;
/// The shortest time between two polls of `watch`.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Width of the progress bar, in characters.
const BAR_WIDTH: usize = 24;

const UNREACHABLE_HINT: &str = "is the server running? Start it with `deploybot serve`, or \
                                point --url (or DEPLOYBOT_URL) at it";

/// Where the server is and how to talk to it; every API command takes these.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The deploybot server.
    #[arg(long, env = "DEPLOYBOT_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// An API token of the server's [[api.tokens]]; it decides the tenant.
    #[arg(long, env = "DEPLOYBOT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of tables (for scripts); `watch` prints only the
    /// deployment as it ended.
    #[arg(long)]
    pub json: bool,
}

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
    /// Follow the deployment until it ends, as `watch` does.
    #[arg(long)]
    pub watch: bool,
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
    /// Follow the deployment until it ends, as `watch` does.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// `deploybot cancel DEPLOYMENT`
#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    /// The deployment (dep_…).
    pub deployment: String,
    #[command(flatten)]
    pub connection: Connection,
}

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
    #[command(flatten)]
    pub connection: Connection,
}

/// `deploybot instances`
#[derive(Debug, Clone, Args)]
pub struct InstancesArgs {
    #[command(flatten)]
    pub connection: Connection,
}

/// `deploybot watch DEPLOYMENT`
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The deployment (dep_…).
    pub deployment: String,
    /// Time between polls.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
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

// ---------------------------------------------------------------------------------------------
// Talking to the API
// ---------------------------------------------------------------------------------------------

/// The REST API at one base URL, with one token.
struct Api {
    http: reqwest::Client,
    base: Url,
    shown: String,
    token: Option<String>,
}

impl Api {
    fn new(connection: &Connection) -> Result<Api, CliError> {
        let shown = http::base_url("--url", &connection.url)?;
        let base = Url::parse(&shown).map_err(|e| {
            CliError::Usage(format!(
                "--url {:?} is not a URL ({e}): use http://HOST:PORT",
                connection.url
            ))
        })?;
        Ok(Api {
            http: http::client()?,
            base,
            shown,
            token: connection.token.clone().filter(|t| !t.trim().is_empty()),
        })
    }

    /// `base/v1/SEGMENTS…?QUERY`, each segment percent-encoded.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, CliError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                CliError::Usage(format!("--url {} cannot have a path appended", self.shown))
            })?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// Sends a request and returns the body of a 2xx answer; anything else is an error with
    /// the server's message.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<String, CliError> {
        let mut request = self.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::unreachable(&self.shown, &e, UNREACHABLE_HINT))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| http::unreachable(&self.shown, &e, UNREACHABLE_HINT))?;
        if status.is_success() {
            return Ok(text);
        }
        let mut err = http::api_error(status, &text);
        if let CliError::Api {
            status: 401,
            message,
            ..
        } = &mut err
        {
            message.push_str(if self.token.is_none() {
                ". No token was given: pass --token or set DEPLOYBOT_TOKEN"
            } else {
                ". Check --token / DEPLOYBOT_TOKEN: the server does not know this token"
            });
        }
        Err(err)
    }

    /// A GET read as `T`, with the raw body for `--json`.
    async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<(T, String), CliError> {
        let url = self.url(segments, query)?;
        let text = self.call(Method::GET, url.clone(), None).await?;
        Ok((decode(&url, &text)?, text))
    }

    /// A POST of `body` read as `T`, with the raw body for `--json`.
    async fn post<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &Value,
    ) -> Result<(T, String), CliError> {
        let url = self.url(segments, &[])?;
        let text = self.call(Method::POST, url.clone(), Some(body)).await?;
        Ok((decode(&url, &text)?, text))
    }
}

fn decode<T: DeserializeOwned>(url: &Url, text: &str) -> Result<T, CliError> {
    serde_json::from_str(text).map_err(|e| CliError::Protocol {
        url: url.to_string(),
        detail: format!("{e}; is this a deploybot server of the same version?"),
    })
}

fn print_raw(text: &str) {
    println!("{}", text.trim());
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

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
        &args.connection,
    )
    .await
}

/// `rollback`: queue a deployment of an earlier release (default: the previous one).
pub async fn rollback(args: RollbackArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let body = match (args.version, &args.release) {
        (Some(version), _) => json!({"version": version}),
        (None, Some(release)) => json!({"release_id": release}),
        (None, None) => json!({}),
    };
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
        &args.connection,
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
    connection: &Connection,
) -> Result<Outcome, CliError> {
    if watch {
        if !connection.json {
            print!("{}", summary(instance, deployment));
        }
        return follow(
            api,
            &deployment.id,
            connection.json,
            Duration::from_millis(500),
        )
        .await;
    }
    if connection.json {
        print_raw(raw);
    } else {
        print!("{}", summary(instance, deployment));
        println!("follow it: deploybot watch {}", deployment.id);
    }
    Ok(Outcome::Success)
}

/// A created deployment, key by key.
fn summary(instance: &str, d: &DeploymentJson) -> String {
    let what = match d.kind {
        crate::server::api::DeployKindJson::Deploy => "deployment",
        crate::server::api::DeployKindJson::Rollback => "rollback",
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
    if args.connection.json {
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

/// Reads one page, or every page with `--all`, of a list route.
async fn pages<T: DeserializeOwned + Paged>(
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
trait Paged: serde::Serialize {
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
fn print_list<T: Paged>(list: &T, raw: &str) -> Result<(), CliError> {
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
fn more<T: Paged>(list: &T, command: &str, args: &ListArgs) -> Option<String> {
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

/// `deployments`: the instance's deployments, newest first.
pub async fn deployments(args: ListArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let (list, raw): (DeployListJson, _) =
        pages(&api, &["instances", &args.instance, "deployments"], &args).await?;
    if args.connection.json {
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
        .map(|d| {
            let version = versions
                .get(&d.release_id)
                .map_or_else(|| "-".to_string(), |v| format!("v{v}"));
            let version = match d.kind {
                crate::server::api::DeployKindJson::Rollback => format!("{version} (rollback)"),
                crate::server::api::DeployKindJson::Deploy => version,
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
        })
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
    if let Some(line) = more(&list, "deployments", &args) {
        println!("{line}");
    }
    Ok(Outcome::Success)
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

/// `releases`: the instance's releases, highest version first.
pub async fn releases(args: ListArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let (list, raw): (ReleaseListJson, _) =
        pages(&api, &["instances", &args.instance, "releases"], &args).await?;
    if args.connection.json {
        print_list(&list, &raw)?;
        return Ok(Outcome::Success);
    }
    if list.items.is_empty() {
        println!("{} has no releases yet", args.instance);
        return Ok(Outcome::Success);
    }
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|r: &ReleaseJson| {
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
        })
        .collect();
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

/// `instances`: the token's instances with their active release.
pub async fn instances(args: InstancesArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let (list, raw): (InstanceListJson, _) = api.get(&["instances"], &[]).await?;
    if args.connection.json {
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
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|i| {
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
                i.id.clone(),
            ]
        })
        .collect();
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
                "ID"
            ],
            &rows
        )
    );
    Ok(Outcome::Success)
}

/// `watch`: follow a deployment's progress and log until it ends.
pub async fn watch(args: WatchArgs) -> Result<Outcome, CliError> {
    let api = Api::new(&args.connection)?;
    let interval = args.interval.max(MIN_INTERVAL);
    follow(&api, &args.deployment, args.connection.json, interval).await
}

// ---------------------------------------------------------------------------------------------
// Watching
// ---------------------------------------------------------------------------------------------

fn state_name(state: DeployStateJson) -> &'static str {
    match state {
        DeployStateJson::Pending => "pending",
        DeployStateJson::Running => "running",
        DeployStateJson::Succeeded => "succeeded",
        DeployStateJson::Failed => "failed",
        DeployStateJson::RolledBack => "rolled_back",
        DeployStateJson::Cancelled => "cancelled",
    }
}

fn is_final(state: DeployStateJson) -> bool {
    !matches!(state, DeployStateJson::Pending | DeployStateJson::Running)
}

/// `45% shift traffic` (the phase is left out once a deployment succeeded).
fn progress_cell(d: &DeploymentJson) -> String {
    let p = &d.progress;
    if p.phase.is_empty() || d.state == DeployStateJson::Succeeded {
        format!("{}%", p.percent)
    } else {
        format!("{}% {}", p.percent, p.phase)
    }
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
    if d.state == DeployStateJson::Pending && p.phase.is_empty() {
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

/// Polls the deployment and its log every `interval` until the deployment ends. Exit 0 when
/// it succeeded, 1 when it failed, was rolled back or cancelled.
async fn follow(api: &Api, id: &str, json: bool, interval: Duration) -> Result<Outcome, CliError> {
    let mut screen = Screen {
        tty: std::io::stdout().is_terminal(),
        shown: None,
    };
    let mut after: i64 = 0;
    let mut failures = 0;
    let mut introduced = false;
    loop {
        let polled: Result<(DeploymentJson, String), CliError> = async {
            let (deployment, raw) = api.get::<DeploymentJson>(&["deployments", id], &[]).await?;
            if !introduced && !json {
                println!(
                    "watching {} ({}, {}{})",
                    deployment.id,
                    deployment.image,
                    deployment.strategy,
                    if deployment.source.trigger.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", deployment.source.trigger)
                    }
                );
                introduced = true;
            }
            // Read after the deployment: once it is final, every line it wrote is there.
            loop {
                let query = [
                    ("after", after.to_string()),
                    ("limit", LOG_PAGE.to_string()),
                ];
                let (page, _) = api
                    .get::<LogPageJson>(&["deployments", id, "logs"], &query)
                    .await?;
                let count = page.items.len();
                for entry in &page.items {
                    if !json {
                        screen.log(entry);
                    }
                    after = after.max(entry.seq);
                }
                if count < LOG_PAGE {
                    break;
                }
            }
            Ok((deployment, raw))
        }
        .await;
        let (deployment, raw) = match polled {
            Ok(answer) => {
                failures = 0;
                answer
            }
            Err(CliError::Unreachable { .. }) if failures < WATCH_RETRIES && introduced => {
                failures += 1;
                tokio::time::sleep(interval).await;
                continue;
            }
            Err(e) => {
                screen.finish();
                return Err(e);
            }
        };
        if !json {
            screen.progress(progress_line(&deployment));
        }
        if is_final(deployment.state) {
            screen.finish();
            if json {
                print_raw(&raw);
            } else {
                println!("{}", ending(&deployment));
            }
            return Ok(if deployment.state == DeployStateJson::Succeeded {
                Outcome::Success
            } else {
                Outcome::Failed
            });
        }
        tokio::time::sleep(interval).await;
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

    #[test]
    fn urls_encode_segments_and_keep_a_path_prefix() {
        let api = Api::new(&Connection {
            url: "https://ops.acme.dev/deploybot/".into(),
            token: None,
            json: false,
        })
        .unwrap();
        let url = api
            .url(
                &["instances", "web prod", "deployments"],
                &[("cursor", "a+b".into())],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://ops.acme.dev/deploybot/v1/instances/web%20prod/deployments?cursor=a%2Bb"
        );
    }

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
