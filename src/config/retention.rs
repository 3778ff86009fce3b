//! The `[retention]` section: how long stored records are kept before the worker removes
//! them.

use std::time::Duration;

use super::checks::Checker;
use super::shape::RawRetention;

/// `[retention] audit` when it is not set: 400 days.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(400 * 86_400);

/// The least `[retention] audit` accepted: the audit trail is kept at least 400 days.
pub const MIN_AUDIT_RETENTION: Duration = DEFAULT_AUDIT_RETENTION;

/// How long stored records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Audit events older than this are removed (≥ 400 days).
    pub audit: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            audit: DEFAULT_AUDIT_RETENTION,
        }
    }
}

/// `[retention]`, each period within its bounds.
pub(super) fn build_retention(raw: RawRetention, check: &mut Checker) -> RetentionConfig {
    let defaults = RetentionConfig::default();
    let audit = check.duration("retention.audit", raw.audit.as_deref(), defaults.audit);
    if audit < MIN_AUDIT_RETENTION {
        check.err(
            "retention.audit",
            format!(
                "\"{}\" is too short: the audit trail is kept at least 400 days; use \"400d\" or longer",
                raw.audit.as_deref().unwrap_or_default().trim()
            ),
        );
    }
    RetentionConfig { audit }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn the_audit_trail_is_kept_400_days_unless_configured_longer() {
        assert_eq!(
            parse_ok("").retention.audit,
            Duration::from_secs(400 * 86_400)
        );
        let config = parse_ok("[retention]\naudit = \"730d\"\n");
        assert_eq!(config.retention.audit, Duration::from_secs(730 * 86_400));
        let config = parse_ok("[retention]\naudit = \"400d\"\n");
        assert_eq!(config.retention.audit, Duration::from_secs(400 * 86_400));
    }

    #[test]
    fn an_audit_retention_under_400_days_is_refused() {
        let err = parse_err("[retention]\naudit = \"30d\"\n");
        assert_mentions(&err, &["retention.audit", "\"30d\"", "at least 400 days"]);
        let err = parse_err("[retention]\naudit = \"399d 23h\"\n");
        assert_mentions(&err, &["retention.audit", "at least 400 days"]);
        let err = parse_err("[retention]\naudit = \"forever\"\n");
        assert_mentions(&err, &["retention.audit", "invalid duration"]);
        let err = parse_err("[retention]\nlogs = \"30d\"\n");
        assert_mentions(&err, &["logs"]);
    }
}
