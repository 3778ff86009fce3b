//! The `deploybot` command line, below the argument parsing in `main.rs`: the REST API
//! commands for a person at a terminal (`client`: `deploy`, `rollback`, `cancel`,
//! `deployments`, `releases`, `instances`, `watch`), `simulate` (signed GitHub webhooks sent
//! to a running server), `config check`, and the process's logging.
//!
//! Exit codes: 0 success; 1 the thing asked about failed (a deployment that did not succeed,
//! a webhook the server refused); 2 the command could not do its job (usage, unreachable
//! server, an API error).

use std::future::Future;
use std::process::ExitCode;

mod check;
pub mod client;
mod http;
mod logging;
pub mod simulate;
mod table;

pub use check::check_config;
pub use logging::init_logging;

/// Exit code when the command worked and what it reports did not succeed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for usage errors, API errors and an unreachable server.
pub const EXIT_ERROR: u8 = 2;

/// How a command that ran to its end turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the deployment failed, was rolled back or cancelled; the webhook was refused.
    Failed,
}

/// Why a command could not do its job (exit 2). `Display` is the whole message for a person.
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
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(command) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(EXIT_FAILED),
        Err(e) => {
            eprintln!("deploybot: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
