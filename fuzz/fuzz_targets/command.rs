//! The comment command parser: any comment text, including every error message it can
//! produce (they quote the commenter's text back, cut to a length).
#![no_main]

use deploybot::github::commands::{self, Command, RollbackTo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(comment) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in commands::parse(comment) {
        match parsed {
            Ok(Command::Rollback {
                target: RollbackTo::Version(version),
                ..
            }) => assert!(version >= 1, "version {version}"),
            Ok(Command::Deploy {
                environment,
                strategy,
            }) => {
                for name in environment.iter().chain(strategy.iter()) {
                    assert!(!name.is_empty() && name.len() <= 255, "{name:?}");
                    assert!(!name.contains(['`', '$', ';', ' ', '\n']), "{name:?}");
                }
            }
            Ok(
                Command::Rollback {
                    target: RollbackTo::Previous,
                    ..
                }
                | Command::Cancel { .. }
                | Command::Help,
            ) => {}
            Err(error) => {
                let message = error.to_string();
                // The reply quotes at most 64 characters of user text, never a mention.
                assert!(message.chars().count() < 400, "{message}");
            }
        }
    }
});
