//! What a child process sees of the server: nothing but a fixed `PATH`, `HOME`, `LANG` and
//! the server variables an instance lists in `pass_env`. And what a stored log line never
//! shows: the secret values deploybot knows, replaced by `***`.

use std::borrow::Cow;

use super::process::TRUNCATION_MARKER;
use crate::deploy::provider::LogMask;

/// The `PATH` of every child process, whatever the server's is.
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `HOME` when the server has none.
pub const DEFAULT_HOME: &str = "/";

/// `LANG` when the server has none.
pub const DEFAULT_LANG: &str = "C.UTF-8";

/// Secret values shorter than this (in bytes) are not masked: a value like `1` or `yes`
/// would turn every log into stars.
pub const MIN_SECRET_LEN: usize = 4;

/// What replaces a secret value in a stored log line.
pub const MASK: &str = "***";

/// The environment every child process starts from: the fixed `PATH`, and the server's
/// `HOME` and `LANG` (`/` and `C.UTF-8` when unset).
pub fn base() -> [(String, String); 3] {
    let server = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty() && !v.contains('\0'))
            .unwrap_or_else(|| default.to_string())
    };
    [
        ("PATH".to_string(), CHILD_PATH.to_string()),
        ("HOME".to_string(), server("HOME", DEFAULT_HOME)),
        ("LANG".to_string(), server("LANG", DEFAULT_LANG)),
    ]
}

/// The server's values of the `pass_env` names that are set (unset ones are left out).
pub fn passed(names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|value| (name.clone(), value)))
        .collect()
}

/// Replaces every known secret value in a log line with `***`.
#[derive(Debug, Clone, Default)]
pub struct SecretMask {
    /// Longest first, so a secret that contains a shorter one is masked whole.
    secrets: Vec<String>,
}

impl SecretMask {
    /// A mask for these values. A multi-line value (a PEM key) is masked line by line, since
    /// logs are stored a line at a time; pieces shorter than [`MIN_SECRET_LEN`] are ignored.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = values
            .into_iter()
            .flat_map(|value| {
                value
                    .lines()
                    .map(|line| line.trim_end_matches('\r').to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|piece| piece.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Self { secrets }
    }

    /// How many values (and lines of values) are masked.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `line` with every secret replaced by `***`. A line cut at the line limit may end in
    /// the first part of a secret whose rest was dropped; that part is masked too.
    pub fn apply<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(line);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        if let Some(kept) = out.strip_suffix(TRUNCATION_MARKER)
            && let Some(start) = self.cut_secret_start(kept)
        {
            out = Cow::Owned(format!("{}{MASK}{TRUNCATION_MARKER}", &kept[..start]));
        }
        out
    }

    /// Where the longest beginning of a secret that `text` ends with starts.
    fn cut_secret_start(&self, text: &str) -> Option<usize> {
        self.secrets
            .iter()
            .filter_map(|secret| {
                (1..secret.len())
                    .rev()
                    .filter(|&n| secret.is_char_boundary(n))
                    .find(|&n| text.ends_with(&secret[..n]))
                    .map(|n| text.len() - n)
            })
            .min()
    }
}

impl LogMask for SecretMask {
    fn apply<'a>(&self, line: &'a str) -> Cow<'a, str> {
        SecretMask::apply(self, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_wherever_they_appear_in_a_line() {
        let mask = SecretMask::new(["hunter22".to_string(), "ghp_abcdef".to_string()]);
        assert_eq!(
            mask.apply("GITHUB_TOKEN=ghp_abcdef pw=hunter22 again hunter22"),
            "GITHUB_TOKEN=*** pw=*** again ***"
        );
        assert!(matches!(mask.apply("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_secret_cut_at_the_line_limit_is_masked_as_far_as_it_was_kept() {
        let mask = SecretMask::new(["aws-SECRET-value-21ch".to_string()]);
        let cut = format!("{}aws-SECRET-valu{TRUNCATION_MARKER}", "x".repeat(10));
        assert_eq!(
            mask.apply(&cut),
            format!("{}***{TRUNCATION_MARKER}", "x".repeat(10))
        );
        // A line that was not cut keeps text that only looks like a secret's beginning.
        assert_eq!(mask.apply("ends with aws-"), "ends with aws-");
    }

    #[test]
    fn short_and_empty_values_are_not_masked() {
        let mask = SecretMask::new(["".to_string(), "abc".to_string(), "abcd".to_string()]);
        assert_eq!(mask.len(), 1);
        assert_eq!(mask.apply("abc abcd"), "abc ***");
    }

    #[test]
    fn the_longer_secret_wins_when_one_contains_another() {
        let mask = SecretMask::new(["pass".to_string(), "password123".to_string()]);
        assert_eq!(mask.apply("x=password123 y=pass"), "x=*** y=***");
    }

    #[test]
    fn each_line_of_a_multi_line_secret_is_masked() {
        let pem = "-----BEGIN KEY-----\r\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END KEY-----\n";
        let mask = SecretMask::new([pem.to_string()]);
        assert_eq!(mask.apply("MIIEvQIBADANBgkq"), "***");
        assert_eq!(mask.apply("x hkiG9w0BAQEFAASC y"), "x *** y");
    }

    #[test]
    fn the_base_environment_has_the_fixed_path() {
        let base = base();
        assert_eq!(base[0], ("PATH".to_string(), CHILD_PATH.to_string()));
        assert_eq!(base[1].0, "HOME");
        assert_eq!(base[2].0, "LANG");
    }
}
