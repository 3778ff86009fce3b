//! `deploybot config check`: loads the configuration, says which file it read, prints its
//! instances, and names what is wrong with it (errors) or will not work (warnings).

use std::path::Path;
use std::process::ExitCode;

use super::EXIT_USAGE;
use crate::config::Config;

/// Validates the configuration at `path` (or the default one) and prints the instances.
/// Exit 2 when it cannot be loaded or a webhook secret has a problem; warnings (no file,
/// an image placeholder a trigger never fills) leave it at 0.
pub fn check_config(path: Option<&Path>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("deploybot: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match config.source_message() {
        Ok(read) => eprintln!("{read}"),
        Err(none) => eprintln!("warning: {none}"),
    }
    print!("{}", config.describe());
    for warning in config.image_warnings() {
        eprintln!("warning: {warning}");
    }
    let problems = config.webhook_secret_problems();
    for problem in &problems {
        eprintln!("webhook secrets: {problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_USAGE)
    }
}
