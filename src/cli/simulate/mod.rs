//! `deploybot simulate push|tag|comment|ping`: builds a webhook delivery the way GitHub
//! sends it (the documented payload shapes, the `X-GitHub-*` headers), signs it with the
//! configured webhook secret, sends it to a running server and prints the answer. With it,
//! anyone can try the bot without GitHub.
//!
//! Here are the flags and the steps of `run`; `delivery` turns the flags into a delivery,
//! `payload` and `repo` write GitHub's JSON, `ids` makes its ids, and `send` signs, sends
//! and reports.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, Outcome};

mod delivery;
mod ids;
mod payload;
mod repo;
pub mod sandbox;
mod send;

pub use delivery::{Delivery, build};
pub use repo::Repo;

/// The webhook path of the server.
const WEBHOOK_PATH: &str = "/webhooks/github";

/// Which event to send.
#[derive(Debug, Clone, Subcommand)]
pub enum Event {
    /// Commits pushed to a branch (a `push` event for refs/heads/BRANCH).
    Push {
        #[command(flatten)]
        target: Target,
        /// The branch pushed to.
        #[arg(long, default_value = "main")]
        branch: String,
        /// The commit pushed (40 hex characters; default: a random one).
        #[arg(long)]
        sha: Option<String>,
        /// The GitHub login that pushed.
        #[arg(long, default_value = "octocat")]
        user: String,
        /// The head commit's message.
        #[arg(long, default_value = "Update the README")]
        message: String,
    },
    /// A tag pushed (a `push` event for refs/tags/TAG).
    Tag {
        #[command(flatten)]
        target: Target,
        /// The tag, e.g. v1.2.0.
        #[arg(long)]
        tag: String,
        /// The commit tagged (40 hex characters; default: a random one).
        #[arg(long)]
        sha: Option<String>,
        /// The GitHub login that pushed the tag.
        #[arg(long, default_value = "octocat")]
        user: String,
    },
    /// A new comment on a pull request (an `issue_comment` event), e.g. `/deploy production`.
    Comment {
        #[command(flatten)]
        target: Target,
        /// The pull request number.
        #[arg(long, default_value_t = 42, value_parser = clap::value_parser!(u64).range(1..))]
        pr: u64,
        /// The comment's text.
        #[arg(long, default_value = "/deploy")]
        body: String,
        /// The GitHub login that commented.
        #[arg(long, default_value = "octocat")]
        user: String,
    },
    /// GitHub's check that a new webhook reaches the server (a `ping` event).
    Ping {
        #[command(flatten)]
        target: Target,
    },
}

impl Event {
    /// Where and how to send this event.
    pub fn target(&self) -> &Target {
        match self {
            Event::Push { target, .. }
            | Event::Tag { target, .. }
            | Event::Comment { target, .. }
            | Event::Ping { target } => target,
        }
    }
}

/// Where and how to send the delivery; the same for every event.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The repository, as in an instance's `repo`.
    #[arg(long, value_name = "OWNER/NAME")]
    pub repo: String,
    /// The deploybot server, e.g. http://127.0.0.1:8080. Without it: the configuration's
    /// public_url, else http:// and its listen address.
    #[arg(long, env = "DEPLOYBOT_URL")]
    pub url: Option<String>,
    /// The configuration file to take the secret and the server from, as for `serve`;
    /// without it, config/deploybot.toml is read when it exists.
    #[arg(long, env = "DEPLOYBOT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Sign with this secret instead of the first of the configured webhook secrets
    /// (DEPLOYBOT_WEBHOOK_SECRET or `webhook_secrets`).
    #[arg(long)]
    pub secret: Option<String>,
    /// The X-GitHub-Delivery id (default: a fresh UUID). Send the same one twice to see
    /// how a redelivery is handled.
    #[arg(long)]
    pub delivery: Option<String>,
    /// Add `installation.id`, as in the webhooks of a GitHub App.
    #[arg(long)]
    pub installation: Option<u64>,
    /// Print only the server's JSON answer.
    #[arg(long)]
    pub json: bool,
    /// Print the request (headers and payload) instead of sending it.
    #[arg(long)]
    pub dry_run: bool,
}

/// Sends the delivery `event` describes and prints the answer. Exit 1 when the server did
/// not answer 2xx.
pub async fn run(event: Event) -> Result<Outcome, CliError> {
    let target = event.target();
    let repo = Repo::parse(&target.repo)?;
    let (secret, base) = send::secret_and_url(target)?;
    let url = webhook_url(base);
    let delivery = build(&event, &repo, &url)?;
    let request = send::Signed::new(&delivery, &secret)?;
    if target.dry_run {
        request.print(&url);
        return Ok(Outcome::Success);
    }
    let answer = match sandbox::through_sandbox(&event, &repo, &url, &delivery).await? {
        Some(answer) => answer,
        None => request.send(&url).await?,
    };
    if target.json {
        println!("{}", answer.text.trim());
    } else {
        answer.print(&delivery, &repo, &url);
    }
    Ok(answer.outcome())
}

/// The webhook route under the server's base URL (a base that already ends in it is kept).
fn webhook_url(base: String) -> String {
    if base.ends_with(WEBHOOK_PATH) {
        base
    } else {
        format!("{base}{WEBHOOK_PATH}")
    }
}
