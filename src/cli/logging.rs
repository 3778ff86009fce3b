//! The process's log output: `tracing` to stderr, filtered by `DEPLOYBOT_LOG` (or
//! `RUST_LOG`), as JSON lines with `DEPLOYBOT_LOG_FORMAT=json` (`json`: the keys every
//! line has).

mod json;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use json::{ContextKeys, JsonLines};

/// Sets up logging once, at start-up; colours only when stderr is a terminal.
pub fn init_logging() {
    let filter = EnvFilter::try_from_env("DEPLOYBOT_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn,octocrab=off"));
    if std::env::var("DEPLOYBOT_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::registry()
            .with(filter)
            .with(ContextKeys)
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonLines)
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        // Colours only on a terminal: a log file or a log collector gets plain text.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init();
    }
}
