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
                params,
                ..
            }) => {
                for name in environment.iter().chain(strategy.iter()) {
                    assert_safe_name(name);
                }
                assert_safe_params(&params);
            }
            Ok(Command::Noop {
                environment,
                params,
            }) => {
                environment.iter().for_each(|name| assert_safe_name(name));
                assert_safe_params(&params);
            }
            Ok(Command::Lock {
                environment,
                global,
                reason,
                ..
            }) => {
                assert!(!(global && environment.is_some()), "global lock with {environment:?}");
                environment.iter().for_each(|name| assert_safe_name(name));
                if let Some(reason) = reason {
                    assert!(reason.chars().count() <= 500, "{reason:?}");
                }
            }
            Ok(Command::Approve { environment }) => {
                environment.iter().for_each(|name| assert_safe_name(name));
            }
            Ok(Command::Unlock { environment, global }) => {
                assert!(!(global && environment.is_some()), "global unlock with {environment:?}");
                environment.iter().for_each(|name| assert_safe_name(name));
            }
            Ok(
                Command::Rollback {
                    target: RollbackTo::Previous,
                    ..
                }
                | Command::Cancel { .. }
                | Command::Locks
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

/// An environment or strategy name the parser lets through can never carry shell or
/// markdown syntax.
fn assert_safe_name(name: &str) {
    assert!(!name.is_empty() && name.len() <= 255, "{name:?}");
    assert!(!name.contains(['`', '$', ';', ' ', '\n']), "{name:?}");
}

/// Parameters are single words split at their first `=`, named like env variables (the
/// service checks the names against the instance's list).
fn assert_safe_params(params: &std::collections::BTreeMap<String, String>) {
    for (key, value) in params {
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{key:?}"
        );
        for text in [key, value] {
            assert!(!text.chars().any(char::is_whitespace), "{key}={value:?}");
        }
    }
}
