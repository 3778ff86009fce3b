//! Helpers the configuration's unit tests share.

use std::collections::HashMap;

use super::{Config, ConfigError};

pub(super) fn no_env(_: &str) -> Option<String> {
    None
}

pub(super) fn parse_ok(text: &str) -> Config {
    match Config::from_toml_str(text, &no_env) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// The Display of the error, which must exist.
pub(super) fn parse_err(text: &str) -> String {
    match Config::from_toml_str(text, &no_env) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_toml_str(text, &move |k| vars.get(k).cloned())
}

pub(super) fn instance(extra: &str) -> String {
    format!(
        "[[instances]]\nname = \"web-production\"\nrepo = \"acme/web\"\nenvironment = \"production\"\nimage = \"ghcr.io/acme/web:{{sha}}\"\n{extra}\n"
    )
}

pub(super) fn assert_mentions(error: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            error.contains(needle),
            "error should mention {needle:?}:\n{error}"
        );
    }
}
