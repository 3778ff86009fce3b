//! Globs as in GitHub Actions, over branches, tags and instance names.

use super::checks::Checker;

/// Globs as in GitHub Actions: `*` does not cross `/`, `**` does, `?` and `[…]` as usual.
const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// Whether any of `patterns` matches `name`; a pattern that does not parse matches nothing.
pub(super) fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        glob::Pattern::new(p).is_ok_and(|pattern| pattern.matches_with(name, GLOB_OPTIONS))
    })
}

/// Whether a token's `instances` globs cover the instance `name` (no globs: all).
pub fn globs_cover(globs: &[String], name: &str) -> bool {
    globs.is_empty() || matches_any(globs, name)
}

/// Each glob of `key` is non-empty and parses; `what` names what it matches.
pub(super) fn check_globs(check: &mut Checker, key: &str, what: &str, patterns: &[String]) {
    for (n, pattern) in patterns.iter().enumerate() {
        if pattern.is_empty() {
            check.err(
                &format!("{key}[{n}]"),
                format!("empty {what} glob; remove it or write a pattern like \"main\""),
            );
        } else if let Err(e) = glob::Pattern::new(pattern) {
            check.err(
                &format!("{key}[{n}]"),
                format!(
                    "invalid {what} glob \"{pattern}\": {e} (use `*` within a path segment, `**` as a whole segment, `?` and `[...]`)"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::InstanceConfig;
    use crate::config::test_support::*;

    #[test]
    fn globs_match() {
        let mut i = InstanceConfig::new("web", "acme/web", "production", "img");
        i.on_push = vec!["main".into(), "release/*".into()];
        i.on_tag = vec!["v*".into()];
        assert!(i.matches_push("main"));
        assert!(i.matches_push("release/1.2"));
        assert!(!i.matches_push("release/1.2/hotfix"));
        assert!(!i.matches_push("mainline"));
        assert!(i.matches_tag("v1.2.0"));
        assert!(!i.matches_tag("x1"));
        i.on_push = vec!["feature/**".into()];
        assert!(i.matches_push("feature/a/b"));
    }

    #[test]
    fn bad_glob_is_an_error() {
        let err = parse_err(&instance(
            "on_push = [\"main\", \"release/[\"]\non_tag = [\"v**\"]",
        ));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).on_push[1]",
                "release/[",
                "instances[0] (web-production).on_tag[0]",
                "Pattern syntax error",
            ],
        );
    }
}
