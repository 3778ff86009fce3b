//! `deploybot config check`: loads the configuration, prints its instances, and names what
//! is wrong with it.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

/// Validates the configuration at `path` (or the default one) and prints the instances;
/// exit 1 when it cannot be loaded or a webhook secret has a problem.
pub fn check_config(path: Option<&Path>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", config.describe());
    let problems = config.webhook_secret_problems();
    for problem in &problems {
        eprintln!("webhook secrets: {problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
