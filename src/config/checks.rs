//! Validation: the `Checker` collects every problem, each naming its key (and instance) or
//! environment variable and what to do, so that all of them are reported together; and the
//! checks several sections share (durations, URLs).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::env::Origin;

/// The problems found so far, and the file they are in.
pub(super) struct Checker {
    file: Option<String>,
    errors: Vec<String>,
}

impl Checker {
    /// A checker for the file at `file`; `None` for a string or defaults.
    pub(super) fn new(file: Option<&Path>) -> Self {
        Checker {
            file: file.map(|f| f.display().to_string()),
            errors: Vec::new(),
        }
    }

    /// Every problem found, in the order found.
    pub(super) fn into_errors(self) -> Vec<String> {
        self.errors
    }

    /// A problem with a key of the file.
    pub(super) fn err(&mut self, key: &str, message: impl fmt::Display) {
        match &self.file {
            Some(file) => self.errors.push(format!("{file}: {key}: {message}")),
            None => self.errors.push(format!("{key}: {message}")),
        }
    }

    /// A problem with a value that came from an environment variable (or a file key).
    pub(super) fn err_at(&mut self, origin: Origin<'_>, message: impl fmt::Display) {
        match origin {
            Origin::File(key) => self.err(key, message),
            Origin::Env(var) => self
                .errors
                .push(format!("environment variable {var}: {message}")),
        }
    }

    /// `raw` read as a duration (`"30s"`, `"15m"`), else `default`.
    pub(super) fn duration(&mut self, key: &str, raw: Option<&str>, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw.trim()) {
            Ok(d) => d,
            Err(e) => {
                self.err(
                    key,
                    format!(
                        "invalid duration \"{raw}\": {e}; write it like \"30s\", \"15m\" or \"1h 30m\""
                    ),
                );
                default
            }
        }
    }

    /// Same, and a duration written in the file must be longer than zero.
    pub(super) fn positive_duration(
        &mut self,
        key: &str,
        raw: Option<&str>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(key, raw, default);
        if raw.is_some() && d.is_zero() {
            self.err(key, "must be longer than zero");
        }
        d
    }
}

/// Whether `url` is an `http://` or `https://` URL with a host.
pub(super) fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn bad_durations_name_the_key() {
        let err = parse_err(&format!(
            "[worker]\nlease = \"soon\"\n{}{}",
            instance(""),
            "[instances.provider]\ntimeout = \"15 parsecs\"\n[instances.canary]\npause = \"x\"\n"
        ));
        assert_mentions(
            &err,
            &[
                "worker.lease: invalid duration \"soon\"",
                "instances[0] (web-production).provider.timeout: invalid duration \"15 parsecs\"",
                "instances[0] (web-production).canary.pause",
                "\"30s\"",
            ],
        );
        // All problems are reported together, one per line.
        assert!(err.lines().count() >= 4, "{err}");
    }

    #[test]
    fn all_errors_are_reported_together() {
        let err = parse_err(
            "listen = \"x\"\n[[instances]]\nname = \"A\"\nrepo = \"acme\"\nenvironment = \"p\"\nimage = \"i\"\nstrategy = \"fast\"\n",
        );
        assert!(
            err.starts_with("invalid configuration (4 problems):"),
            "{err}"
        );
        assert_mentions(
            &err,
            &[
                "listen",
                "instances[0] (A).name",
                "instances[0] (A).repo",
                "instances[0] (A).strategy",
            ],
        );
    }
}
