//! The `deploybot` command line, below the argument parsing in `main.rs`: the REST API
//! commands for a person at a terminal (`client`: `deploy`, `rollback`, `cancel`,
//! `deployments`, `releases`, `instances`, `watch`, `lock`, `unlock`, `locks`, `audit`), `simulate` (signed GitHub webhooks sent
//! to a running server), `config check`, `backup` (a copy of the SQLite database), the
//! flags the server commands share, where the server is (`server_url`), the exit codes,
//! and the process's logging.
//!
//! Every command, client and server alike, ends with one of the exit codes below
//! (`EXIT_CODES_HELP` is the table `deploybot --help` prints).

use std::future::Future;
use std::process::ExitCode;

mod backup;
mod check;
pub mod client;
mod flags;
mod http;
mod logging;
mod server_url;
pub mod simulate;
mod table;

pub use backup::{BackupArgs, backup};
pub use check::check_config;
pub use flags::{ConfigFlag, DatabaseFlags, SERVER_ENV_HELP, ServerFlags};
pub use logging::init_logging;
pub use server_url::{ServerUrl, server_url};

/// Exit code: what was asked succeeded.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code: what was asked did not succeed. A deployment failed, was rolled back or
/// cancelled; the server refused the request (any HTTP error answer: not found, invalid
/// state, forbidden, a bad token, another's lock, a freeze); a webhook was not accepted; the server stopped with an
/// error.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: a usage or configuration error. Bad arguments (clap's own usage errors are
/// 2 as well), a configuration file that is missing or invalid, a port already in use.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: what the command must talk to cannot be reached. The deploybot server for
/// the client commands and `simulate`; the database for `serve`, `migrate`, `prune`,
/// `repos` and `backup`.
pub const EXIT_UNREACHABLE: u8 = 3;

/// The exit codes as `deploybot --help` lists them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes (every command):
  0  success
  1  what was asked did not succeed: a deployment failed, was rolled back or cancelled;
     the server refused the request (also when locked or frozen); a webhook was not
     accepted
  2  usage or configuration error: bad arguments, a missing or invalid configuration
     file, a port already in use
  3  unreachable: no deploybot server answered (client commands, simulate), or the
     database cannot be reached (serve, migrate, prune, repos, backup)";

/// How a command that ran to its end turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the deployment failed, was rolled back or cancelled; the webhook was refused.
    Failed,
}

/// Why a command could not do its job; `exit_code` says which class it is. `Display` is
/// the whole message for a person.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing answered at the URL.
    #[error("cannot reach deploybot at {url}: {reason}\n{hint}")]
    Unreachable {
        url: String,
        reason: String,
        hint: String,
    },
    /// The server answered with an error in the API's shape (or something else non-2xx).
    #[error("{message} (HTTP {status}{})", code_suffix(.code))]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server answered 2xx with something that is not what the API documents.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol { url: String, detail: String },
    /// The arguments or the configuration do not allow the command to run.
    #[error("{0}")]
    Usage(String),
    /// The configuration file could not be loaded.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Output could not be written (a closed pipe, a full disk).
    #[error("cannot write the output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    /// The exit code of this error: 1 when the server refused, 2 for usage and
    /// configuration, 3 when no deploybot server answered as one.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } | CliError::Io(_) => EXIT_FAILED,
            CliError::Usage(_) | CliError::Config(_) => EXIT_USAGE,
            CliError::Unreachable { .. } | CliError::Protocol { .. } => EXIT_UNREACHABLE,
        }
    }

    /// Says what was being done: an API error becomes "cannot cancel dep_…: <message>".
    pub fn context(self, what: impl std::fmt::Display) -> CliError {
        match self {
            CliError::Api {
                status,
                code,
                message,
            } => CliError::Api {
                status,
                code,
                message: format!("{what}: {message}"),
            },
            other => other,
        }
    }
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    }
}

/// Runs a command on a small runtime of its own, prints an error as `deploybot: …` on
/// stderr, and returns the exit code.
pub fn run<F>(command: F) -> ExitCode
where
    F: Future<Output = Result<Outcome, CliError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("deploybot: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(command) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(EXIT_FAILED),
        Err(e) => {
            eprintln!("deploybot: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
