//! The REST API commands for a person at a terminal: `deploy`, `rollback`, `cancel`,
//! `deployments`, `releases`, `instances`, `watch`, `lock`, `unlock`, `locks`, `audit` and `reload`. They find the server with
//! `cli::server_url` (`--url`, `DEPLOYBOT_URL`, then the configuration), send the bearer
//! token `--token`/`DEPLOYBOT_TOKEN`, print aligned tables (or the server's JSON with
//! `--json`), and read the answers with the API's own types, so the client cannot drift
//! from the server.
//!
//! `api` holds the connection, `paging` what the list commands share, and one file per
//! command group: `deployments`, `releases`, `instances`, `watch`, `locks` (with `audit`).

use std::path::PathBuf;

use clap::Args;

use crate::server::api::DeployStateJson;

mod api;
mod deployments;
mod instances;
mod locks;
mod paging;
mod releases;
mod reload;
mod watch;

pub use deployments::{
    ApproveArgs, CancelArgs, DeployArgs, RollbackArgs, approve, cancel, deploy, deployments,
    rollback,
};
pub use instances::{InstancesArgs, instances};
pub use locks::{AuditArgs, LockArgs, LocksArgs, UnlockArgs, audit, lock, locks, unlock};
pub use paging::ListArgs;
pub use releases::releases;
pub use reload::{ReloadArgs, reload};
pub use watch::{WatchArgs, watch};

/// Where the server is and how to talk to it; every API command takes these.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The deploybot server, e.g. http://127.0.0.1:8080. Without it: the configuration's
    /// public_url, else http:// and its listen address.
    #[arg(long, env = "DEPLOYBOT_URL")]
    pub url: Option<String>,
    /// An API token of the server's [[api.tokens]]; it decides the tenant.
    #[arg(long, env = "DEPLOYBOT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The configuration file to find the server in when no URL is given; without it,
    /// config/deploybot.toml is read when it exists.
    #[arg(long, env = "DEPLOYBOT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The server's JSON as received, for `--json`.
fn print_raw(text: &str) {
    println!("{}", text.trim());
}

/// A deployment state as the API spells it.
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
