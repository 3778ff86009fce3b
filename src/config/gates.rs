//! An instance's gates before a deployment starts: promotion order, required checks,
//! reviews and approvals (`promote_from`, `required_checks`, `required_reviews`,
//! `approvals`, …). Deploy control applies them in that order, after locks and freezes.

use std::time::Duration;

use super::checks::Checker;
use super::instance::InstanceConfig;
use super::shape::RawInstance;

/// The most approvals, reviews or required checks an instance may ask for.
const MAX_COUNT: u32 = 10;

/// The gates of one instance, with every key at its default when not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    /// `approvals`: other deployers who must approve a deploy (0: none).
    pub approvals: u32,
    /// `approval_timeout`: a deployment not approved within this ends cancelled.
    pub approval_timeout: Duration,
    /// `rollback_approvals`: approvals a rollback needs (default 0: recovery is never held).
    pub rollback_approvals: u32,
    /// `required_checks`: check runs and commit statuses of the deployed commit that must
    /// be green; `["*"]` means all of them.
    pub required_checks: Vec<String>,
    /// `checks_timeout`: how long pending checks are waited for.
    pub checks_timeout: Duration,
    /// `required_reviews`: approving reviews of the pull request's head, by others than
    /// its author, that `/deploy` and `/noop` need.
    pub required_reviews: u32,
    /// `require_up_to_date`: `/deploy` and `/noop` need the pull request's branch to
    /// contain its base branch's head.
    pub require_up_to_date: bool,
    /// `promote_from`: the environment of the same repository a commit must have been
    /// deployed to first.
    pub promote_from: Option<String>,
    /// `promotion_timeout`: how long a push waits for that deployment.
    pub promotion_timeout: Duration,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            approvals: 0,
            approval_timeout: Duration::from_secs(3600),
            rollback_approvals: 0,
            required_checks: Vec::new(),
            checks_timeout: Duration::from_secs(30 * 60),
            required_reviews: 0,
            require_up_to_date: false,
            promote_from: None,
            promotion_timeout: Duration::from_secs(24 * 3600),
        }
    }
}

impl GateConfig {
    /// Whether `required_checks` is `["*"]`: every check of the commit counts.
    pub fn all_checks(&self) -> bool {
        self.required_checks.iter().any(|c| c == "*")
    }

    /// The gates in words for `/help` and `deploybot config`: "promote from staging;
    /// checks ci/test, build; 1 review; up to date; 1 approval". Empty when none is set.
    pub fn describe(&self) -> Vec<String> {
        let mut gates = Vec::new();
        if let Some(from) = &self.promote_from {
            gates.push(format!("deployed to {from} first"));
        }
        if self.all_checks() {
            gates.push("all checks green".to_string());
        } else if !self.required_checks.is_empty() {
            gates.push(format!("checks {} green", self.required_checks.join(", ")));
        }
        if self.required_reviews > 0 {
            gates.push(plural(self.required_reviews, "approving review"));
        }
        if self.require_up_to_date {
            gates.push("branch up to date with its base".to_string());
        }
        if self.approvals > 0 {
            gates.push(format!(
                "{} by another deployer",
                plural(self.approvals, "approval")
            ));
        }
        if self.rollback_approvals > 0 {
            gates.push(format!(
                "{} for a rollback",
                plural(self.rollback_approvals, "approval")
            ));
        }
        gates
    }
}

/// "1 approval", "2 approvals".
pub fn plural(n: u32, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The gate keys of the instance `p`, each checked.
pub(super) fn build_gates(check: &mut Checker, p: &str, raw: &RawInstance) -> GateConfig {
    let key = |k: &str| format!("{p}.{k}");
    let defaults = GateConfig::default();
    let mut count = |k: &str, raw: Option<u32>| {
        let n = raw.unwrap_or(0);
        if n > MAX_COUNT {
            check.err(&key(k), format!("{n} is more than {MAX_COUNT}"));
        }
        n
    };
    let approvals = count("approvals", raw.approvals);
    let rollback_approvals = count("rollback_approvals", raw.rollback_approvals);
    let required_reviews = count("required_reviews", raw.required_reviews);
    let required_checks = required_checks(check, p, raw.required_checks.clone());
    let promote_from = raw.promote_from.as_ref().map(|e| e.trim().to_string());
    if promote_from.as_deref() == Some("") {
        check.err(
            &key("promote_from"),
            "is empty; name the environment a commit must reach first, like \"staging\"",
        );
    }
    GateConfig {
        approvals,
        approval_timeout: check.positive_duration(
            &key("approval_timeout"),
            raw.approval_timeout.as_deref(),
            defaults.approval_timeout,
        ),
        rollback_approvals,
        required_checks,
        checks_timeout: check.positive_duration(
            &key("checks_timeout"),
            raw.checks_timeout.as_deref(),
            defaults.checks_timeout,
        ),
        required_reviews,
        require_up_to_date: raw.require_up_to_date.unwrap_or(false),
        promote_from: promote_from.filter(|e| !e.is_empty()),
        promotion_timeout: check.positive_duration(
            &key("promotion_timeout"),
            raw.promotion_timeout.as_deref(),
            defaults.promotion_timeout,
        ),
    }
}

/// `required_checks`: names of check runs or status contexts, each once, or `["*"]`.
fn required_checks(check: &mut Checker, p: &str, raw: Option<Vec<String>>) -> Vec<String> {
    let names = raw.unwrap_or_default();
    let key = format!("{p}.required_checks");
    if names.iter().any(|n| n == "*") && names.len() > 1 {
        check.err(
            &key,
            "\"*\" already means every check: list names, or only \"*\"",
        );
    }
    for (n, name) in names.iter().enumerate() {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            check.err(
                &format!("{key}[{n}]"),
                "is empty or holds control characters; write a check's name as GitHub shows it, like \"ci/test\"",
            );
        } else if names[..n].contains(name) {
            check.err(
                &format!("{key}[{n}]"),
                format!("\"{name}\" is listed twice"),
            );
        }
    }
    if names.len() > 100 {
        check.err(&key, "lists more than 100 checks");
    }
    names
}

/// Across instances: `promote_from` names another environment of the same repository
/// (with an instance in the same tenant), and promotion has no cycle.
pub(super) fn check_promotion(instances: &[InstanceConfig], check: &mut Checker) {
    for (index, i) in instances.iter().enumerate() {
        let Some(from) = &i.gates.promote_from else {
            continue;
        };
        let key = format!("instances[{index}] ({}).promote_from", i.name);
        let same_repo =
            |o: &&InstanceConfig| o.tenant() == i.tenant() && o.repo.eq_ignore_ascii_case(&i.repo);
        if *from == i.environment {
            check.err(
                &key,
                format!("\"{from}\" is this instance's own environment; name the one before it"),
            );
            continue;
        }
        if !instances
            .iter()
            .filter(same_repo)
            .any(|o| o.environment == *from)
        {
            let known: Vec<&str> = instances
                .iter()
                .filter(same_repo)
                .filter(|o| o.environment != i.environment)
                .map(|o| o.environment.as_str())
                .collect();
            check.err(
                &key,
                format!(
                    "no instance of {} deploys to environment \"{from}\"; environments of the repository: {}",
                    i.repo,
                    if known.is_empty() { "none other".to_string() } else { known.join(", ") }
                ),
            );
            continue;
        }
        if promotes_back(instances, i, from) {
            check.err(
                &key,
                format!(
                    "promotion from \"{from}\" leads back to \"{}\": remove the cycle",
                    i.environment
                ),
            );
        }
    }
}

/// Whether following `promote_from` from the environment `from` reaches `start`'s own.
fn promotes_back(instances: &[InstanceConfig], start: &InstanceConfig, from: &str) -> bool {
    let mut seen = vec![from.to_string()];
    let mut frontier = vec![from.to_string()];
    while let Some(env) = frontier.pop() {
        for o in instances.iter().filter(|o| {
            o.environment == env
                && o.tenant() == start.tenant()
                && o.repo.eq_ignore_ascii_case(&start.repo)
        }) {
            if let Some(next) = &o.gates.promote_from {
                if *next == start.environment {
                    return true;
                }
                if !seen.contains(next) {
                    seen.push(next.clone());
                    frontier.push(next.clone());
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn errors(toml: &str) -> String {
        match Config::from_toml_str(toml, &|_| None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const TWO: &str = "[[instances]]\nname = \"web-staging\"\nrepo = \"acme/web\"\nenvironment = \"staging\"\nimage = \"x:{sha}\"\n[instances.provider]\nrun = [\"true\"]\n\
        [[instances]]\nname = \"web-production\"\nrepo = \"acme/web\"\nenvironment = \"production\"\nimage = \"x:{sha}\"\n";

    #[test]
    fn gates_default_to_none_and_are_read() {
        let config = Config::from_toml_str(
            &format!(
                "{TWO}promote_from = \"staging\"\napprovals = 2\napproval_timeout = \"2h\"\nrequired_checks = [\"ci/test\", \"build\"]\nrequired_reviews = 1\nrequire_up_to_date = true\n[instances.provider]\nrun = [\"true\"]\n"
            ),
            &|_| None,
        )
        .unwrap();
        let staging = &config.instances[0].gates;
        assert_eq!(*staging, super::GateConfig::default());
        let production = &config.instances[1].gates;
        assert_eq!(production.promote_from.as_deref(), Some("staging"));
        assert_eq!(production.approvals, 2);
        assert_eq!(production.approval_timeout.as_secs(), 7200);
        assert_eq!(production.required_checks, ["ci/test", "build"]);
        assert_eq!(production.required_reviews, 1);
        assert!(production.require_up_to_date);
        assert_eq!(
            production.describe().join("; "),
            "deployed to staging first; checks ci/test, build green; 1 approving review; branch up to date with its base; 2 approvals by another deployer"
        );
    }

    #[test]
    fn promote_from_names_another_environment_of_the_repository() {
        let unknown = errors(&format!(
            "{TWO}promote_from = \"qa\"\n[instances.provider]\nrun = [\"true\"]\n"
        ));
        assert!(
            unknown.contains("promote_from") && unknown.contains("\"qa\""),
            "{unknown}"
        );
        assert!(unknown.contains("staging"), "{unknown}");
        let own = errors(&format!(
            "{TWO}promote_from = \"production\"\n[instances.provider]\nrun = [\"true\"]\n"
        ));
        assert!(own.contains("own environment"), "{own}");
        let cycle = errors(
            &format!("{TWO}promote_from = \"staging\"\n[instances.provider]\nrun = [\"true\"]\n")
                .replacen(
                    "environment = \"staging\"\n",
                    "environment = \"staging\"\npromote_from = \"production\"\n",
                    1,
                ),
        );
        assert!(cycle.contains("cycle"), "{cycle}");
    }

    #[test]
    fn bad_gate_values_are_named() {
        let bad = errors(&format!(
            "{TWO}approvals = 11\napproval_timeout = \"soon\"\nrequired_checks = [\"*\", \"ci\", \"\"]\n[instances.provider]\nrun = [\"true\"]\n"
        ));
        for needle in [
            "approvals: 11 is more than 10",
            "approval_timeout: invalid duration",
            "\"*\" already means every check",
            "required_checks[2]",
        ] {
            assert!(bad.contains(needle), "{needle} not in {bad}");
        }
    }
}
