//! Instances (`[[instances]]`): one deploy target each, a repository and a GitHub environment,
//! with its triggers, who may use the commands, its provider, health check and strategy.

use std::collections::{BTreeMap, HashMap};

use super::checks::{Checker, is_http_url};
use super::child_env::{build_child_env_names, release_env};
use super::freeze::{FreezeWindow, build_freezes};
use super::gates::{GateConfig, build_gates, check_promotion};
use super::globs::{check_globs, matches_any};
use super::metric_gates::{MetricGateConfig, build_metric_gates, build_watch};
use super::placeholders;
use super::provider::{HealthConfig, ProviderConfig, build_health, build_provider};
use super::shape::RawInstance;
use super::strategy::{CanaryConfig, StrategyKind, build_canary, strategy};
use crate::deploy::env::EnvNameError;

/// The GitHub repository permissions `allowed_permissions` may list.
pub const PERMISSIONS: &[&str] = &["admin", "maintain", "write", "triage", "read"];

/// One deploy target: a repository and a GitHub environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// 1–63 characters of `[a-z0-9-]`, unique within its tenant.
    pub name: String,
    /// `owner/name` as written in the file.
    pub repo: String,
    /// GitHub environment name.
    pub environment: String,
    /// Image reference with `{sha}`, `{short_sha}`, `{ref}`, `{branch}`, `{tag}`, `{pr}`.
    pub image: String,
    pub strategy: StrategyKind,
    /// Branch globs that deploy on push.
    pub on_push: Vec<String>,
    /// Tag globs that deploy when a tag is pushed.
    pub on_tag: Vec<String>,
    /// Accept `/deploy`, `/rollback`, `/cancel` on pull requests.
    pub commands: bool,
    /// Repository permissions allowed to use the commands.
    pub allowed_permissions: Vec<String>,
    /// Accept commands on pull requests from forks.
    pub allow_forks: bool,
    /// A newer request cancels pending ones for the same instance.
    pub supersede: bool,
    pub environment_url: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Server variables the deploy and health commands also get (none by default).
    pub pass_env: Vec<String>,
    /// Release env names the API may set (none by default).
    pub api_env: Vec<String>,
    /// `pass_env` names whose values are secrets: masked as `***` in stored logs.
    pub secret_env: Vec<String>,
    pub provider: ProviderConfig,
    pub health: Option<HealthConfig>,
    pub canary: CanaryConfig,
    /// Commit status contexts GitHub must see green before deploying.
    pub required_contexts: Vec<String>,
    pub production_environment: Option<bool>,
    pub transient_environment: bool,
    /// `params`: the names accepted after `|` and in the API's `params`.
    pub params: Vec<String>,
    /// `deployers`: GitHub logins and `@org/team`s who may deploy here, pass a lock (with a
    /// rollback) or a freeze with `--force`; empty: whoever `allowed_permissions` allows,
    /// and nobody may force.
    pub deployers: Vec<String>,
    /// `lock_on_rollback` (default true): an automatic rollback locks the instance.
    pub lock_on_rollback: bool,
    /// `unlock_on_merge`: a lock taken from a pull request ends when it is merged or closed.
    pub unlock_on_merge: bool,
    /// `[[instances.freeze]]`: this instance's own freeze windows.
    pub freezes: Vec<FreezeWindow>,
    /// Promotion order, required checks, reviews and approvals.
    pub gates: GateConfig,
    /// `[[instances.gates]]`: metric health gates asked after each phase that shifts traffic.
    pub metric_gates: Vec<MetricGateConfig>,
    /// `watch`: how long the metric gates keep being asked after a deployment succeeded.
    pub watch: Option<std::time::Duration>,
}

impl InstanceConfig {
    /// An instance with every optional key at its default.
    pub fn new(
        name: impl Into<String>,
        repo: impl Into<String>,
        environment: impl Into<String>,
        image: impl Into<String>,
    ) -> Self {
        InstanceConfig {
            name: name.into(),
            repo: repo.into(),
            environment: environment.into(),
            image: image.into(),
            strategy: StrategyKind::default(),
            on_push: Vec::new(),
            on_tag: Vec::new(),
            commands: true,
            allowed_permissions: default_permissions(),
            allow_forks: false,
            supersede: false,
            environment_url: None,
            env: BTreeMap::new(),
            pass_env: Vec::new(),
            api_env: Vec::new(),
            secret_env: Vec::new(),
            provider: ProviderConfig::default(),
            health: None,
            canary: CanaryConfig::default(),
            required_contexts: Vec::new(),
            production_environment: None,
            transient_environment: false,
            params: Vec::new(),
            deployers: Vec::new(),
            lock_on_rollback: true,
            unlock_on_merge: false,
            freezes: Vec::new(),
            gates: GateConfig::default(),
            metric_gates: Vec::new(),
            watch: None,
        }
    }

    /// The repository owner, lower-cased.
    pub fn tenant(&self) -> String {
        self.repo
            .split_once('/')
            .map_or(self.repo.as_str(), |(owner, _)| owner)
            .to_ascii_lowercase()
    }

    /// The repository name without its owner.
    pub fn repo_name(&self) -> &str {
        self.repo
            .split_once('/')
            .map_or(self.repo.as_str(), |(_, name)| name)
    }

    /// Whether a push to `branch` (without `refs/heads/`) deploys this instance.
    pub fn matches_push(&self, branch: &str) -> bool {
        matches_any(&self.on_push, branch)
    }

    /// Whether pushing `tag` (without `refs/tags/`) deploys this instance.
    pub fn matches_tag(&self, tag: &str) -> bool {
        matches_any(&self.on_tag, tag)
    }
}

/// Who may use the commands by default: people with write access or more.
fn default_permissions() -> Vec<String> {
    ["write", "maintain", "admin"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Every `[[instances]]` entry, checked, and checked to be unique.
pub(super) fn build_instances(raw: Vec<RawInstance>, check: &mut Checker) -> Vec<InstanceConfig> {
    let instances: Vec<InstanceConfig> = raw
        .into_iter()
        .enumerate()
        .map(|(index, raw)| build_instance(index, raw, check))
        .collect();
    check_unique_instances(&instances, check);
    check_promotion(&instances, check);
    instances
}

/// One `[[instances]]` entry, each key checked; problems name `instances[N] (NAME).KEY`.
fn build_instance(index: usize, raw: RawInstance, check: &mut Checker) -> InstanceConfig {
    let name = raw.name.clone().unwrap_or_default();
    let p = if name.is_empty() {
        format!("instances[{index}]")
    } else {
        format!("instances[{index}] ({name})")
    };
    let key = |k: &str| format!("{p}.{k}");
    let gates = build_gates(check, &p, &raw);

    check_name(check, &key("name"), &name);
    let repo = repo(check, &key("repo"), raw.repo);
    let environment = environment(check, &key("environment"), raw.environment);
    let image = placeholders::image(check, &key("image"), raw.image);
    let strategy = strategy(check, &key("strategy"), raw.strategy.as_deref());
    let on_push = raw.on_push.unwrap_or_default();
    check_globs(check, &key("on_push"), "branch", &on_push);
    let on_tag = raw.on_tag.unwrap_or_default();
    check_globs(check, &key("on_tag"), "tag", &on_tag);
    let allowed_permissions = allowed_permissions(check, &p, raw.allowed_permissions);
    check_environment_url(
        check,
        &key("environment_url"),
        raw.environment_url.as_deref(),
    );
    let env = release_env(check, &p, raw.env.unwrap_or_default());
    let (pass_env, api_env, secret_env) = build_child_env_names(
        &p,
        raw.pass_env.unwrap_or_default(),
        raw.api_env.unwrap_or_default(),
        raw.secret_env.unwrap_or_default(),
        check,
    );
    let provider = build_provider(&p, raw.provider.unwrap_or_default(), check);
    let health = raw.health.map(|h| build_health(&p, h, check));
    let canary = build_canary(&p, raw.canary.unwrap_or_default(), check);
    let required_contexts = required_contexts(check, &p, raw.required_contexts);
    let params = params(check, &p, raw.params);
    let deployers = deployers(check, &p, raw.deployers);
    let freezes = build_freezes(&key("freeze"), raw.freeze, check);
    let metric_gates = build_metric_gates(&p, raw.gates, check);
    let watch = build_watch(check, &key("watch"), raw.watch, metric_gates.len());

    InstanceConfig {
        name,
        repo,
        environment,
        image,
        strategy,
        on_push,
        on_tag,
        commands: raw.commands.unwrap_or(true),
        allowed_permissions,
        allow_forks: raw.allow_forks.unwrap_or(false),
        supersede: raw.supersede.unwrap_or(false),
        environment_url: raw.environment_url,
        env,
        pass_env,
        api_env,
        secret_env,
        provider,
        health,
        canary,
        required_contexts,
        production_environment: raw.production_environment,
        transient_environment: raw.transient_environment.unwrap_or(false),
        params,
        deployers,
        lock_on_rollback: raw.lock_on_rollback.unwrap_or(true),
        unlock_on_merge: raw.unlock_on_merge.unwrap_or(false),
        freezes,
        gates,
        metric_gates,
        watch,
    }
}

/// `name`: set, and 1-63 characters of `[a-z0-9-]` not starting with `-`.
fn check_name(check: &mut Checker, key: &str, name: &str) {
    if name.is_empty() {
        check.err(
            key,
            "missing; give the instance a name like \"web-production\" (1-63 characters of a-z, 0-9 and -)",
        );
    } else if !valid_instance_name(name) {
        check.err(
            key,
            format!(
                "\"{name}\" is not a valid instance name; use 1-63 characters of lower-case letters, digits and '-', not starting with '-'"
            ),
        );
    }
}

/// `repo`: set, and a GitHub `owner/name`.
fn repo(check: &mut Checker, key: &str, raw: Option<String>) -> String {
    let repo = raw.unwrap_or_default();
    if repo.is_empty() {
        check.err(
            key,
            "missing; set it to the GitHub repository as \"owner/name\", e.g. \"acme/web\"",
        );
    } else if let Some(problem) = repo_problem(&repo) {
        check.err(key, problem);
    }
    repo
}

/// `environment`: set, and no longer than GitHub allows.
fn environment(check: &mut Checker, key: &str, raw: Option<String>) -> String {
    let environment = raw.unwrap_or_default();
    if environment.trim().is_empty() {
        check.err(
            key,
            "missing; set it to the GitHub environment name, e.g. \"production\"",
        );
    } else if environment.chars().count() > 255 {
        check.err(
            key,
            format!(
                "is {} characters long; GitHub environment names have at most 255",
                environment.chars().count()
            ),
        );
    }
    environment
}

/// `allowed_permissions` of the instance `p`: each one of `PERMISSIONS`.
fn allowed_permissions(check: &mut Checker, p: &str, raw: Option<Vec<String>>) -> Vec<String> {
    let allowed_permissions = raw.unwrap_or_else(default_permissions);
    for (n, permission) in allowed_permissions.iter().enumerate() {
        if !PERMISSIONS.contains(&permission.as_str()) {
            check.err(
                &format!("{p}.allowed_permissions[{n}]"),
                format!(
                    "unknown permission \"{permission}\"; use {}",
                    PERMISSIONS.join(", ")
                ),
            );
        }
    }
    allowed_permissions
}

/// `environment_url`, when set: an `http://` or `https://` URL.
fn check_environment_url(check: &mut Checker, key: &str, url: Option<&str>) {
    if let Some(url) = url
        && !is_http_url(url)
    {
        check.err(key, format!("\"{url}\" is not an http:// or https:// URL"));
    }
}

/// `required_contexts` of the instance `p`: no empty context.
fn required_contexts(check: &mut Checker, p: &str, raw: Option<Vec<String>>) -> Vec<String> {
    let required_contexts = raw.unwrap_or_default();
    for (n, context) in required_contexts.iter().enumerate() {
        if context.trim().is_empty() {
            check.err(
                &format!("{p}.required_contexts[{n}]"),
                "empty context; remove it or name a status check, e.g. \"ci/test\"",
            );
        }
    }
    required_contexts
}

/// `params` of the instance `p`: environment-variable names (they reach the provider as
/// `DEPLOY_PARAM_<NAME>`), each once.
fn params(check: &mut Checker, p: &str, raw: Option<Vec<String>>) -> Vec<String> {
    let params = raw.unwrap_or_default();
    for (n, name) in params.iter().enumerate() {
        let key = format!("{p}.params[{n}]");
        if let Err(e) = crate::deploy::env::check_release_name(name) {
            let hint = match e {
                EnvNameError::Malformed(_) => {
                    "use upper-case letters, digits and '_', not starting with a digit, e.g. \"REGION\""
                }
                _ => "choose another name",
            };
            check.err(
                &key,
                format!("parameter name \"{name}\" is refused ({e}); {hint}"),
            );
        } else if let Some(first) = params[..n].iter().position(|other| other == name) {
            check.err(
                &key,
                format!("\"{name}\" is listed twice (also params[{first}])"),
            );
        }
    }
    params
}

/// `deployers` of the instance `p`: GitHub logins (`alice`) and teams (`@acme/sre`), each
/// once, lower-cased (GitHub compares both without case).
fn deployers(check: &mut Checker, p: &str, raw: Option<Vec<String>>) -> Vec<String> {
    let mut deployers: Vec<String> = Vec::new();
    for (n, entry) in raw.unwrap_or_default().iter().enumerate() {
        let key = format!("{p}.deployers[{n}]");
        let entry = entry.trim();
        let valid = match entry.strip_prefix('@') {
            Some(team) => team
                .split_once('/')
                .is_some_and(|(org, slug)| valid_login(org) && valid_team_slug(slug)),
            None => valid_login(entry),
        };
        if !valid {
            let hint = if entry.starts_with('@') && !entry.contains('/') {
                format!(
                    "a login is written without '@' (\"{}\"); a team is \"@org/team\"",
                    &entry[1..]
                )
            } else {
                "write a GitHub login (\"alice\") or a team as \"@org/team\" (\"@acme/sre\")"
                    .to_string()
            };
            check.err(
                &key,
                format!("\"{entry}\" is not a GitHub login or team; {hint}"),
            );
            continue;
        }
        let entry = entry.to_ascii_lowercase();
        if let Some(first) = deployers.iter().position(|d| *d == entry) {
            check.err(
                &key,
                format!("\"{entry}\" is listed twice (also deployers[{first}])"),
            );
        } else {
            deployers.push(entry);
        }
    }
    deployers
}

/// A GitHub account name: 1-39 letters, digits and single hyphens, not at the start or end;
/// `_` too, for managed users (`alice_acme`).
fn valid_login(login: &str) -> bool {
    (1..=39).contains(&login.len())
        && !login.starts_with(['-', '_'])
        && !login.ends_with('-')
        && !login.contains("--")
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A team's slug as GitHub writes it in URLs: letters, digits, `-` and `_`.
fn valid_team_slug(slug: &str) -> bool {
    (1..=255).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 1-63 characters of `[a-z0-9-]`, not starting with `-`.
fn valid_instance_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Why `repo` is not a GitHub `owner/name`, if it is not.
fn repo_problem(repo: &str) -> Option<String> {
    let Some((owner, name)) = repo.split_once('/') else {
        return Some(format!(
            "\"{repo}\" is not \"owner/name\"; write the GitHub repository like \"acme/web\""
        ));
    };
    if owner.is_empty()
        || owner.len() > 39
        || owner.starts_with('-')
        || owner.ends_with('-')
        || owner.contains("--")
        || !owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Some(format!(
            "owner \"{owner}\" in \"{repo}\" is not a valid GitHub account name (1-39 letters, digits and single hyphens, not at the start or end)"
        ));
    }
    if name.is_empty()
        || name == "."
        || name == ".."
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some(format!(
            "repository name \"{name}\" in \"{repo}\" is not valid (letters, digits, '.', '_' and '-'; not \".\" or \"..\")"
        ));
    }
    None
}

/// Instance names are unique within a tenant, and each repository + environment pair is
/// one instance.
fn check_unique_instances(instances: &[InstanceConfig], check: &mut Checker) {
    let mut names: HashMap<(String, String), usize> = HashMap::new();
    let mut targets: HashMap<(String, String, String), usize> = HashMap::new();
    for (index, instance) in instances.iter().enumerate() {
        if instance.repo.is_empty() || repo_problem(&instance.repo).is_some() {
            continue;
        }
        let tenant = instance.tenant();
        let p = format!("instances[{index}] ({})", instance.name);
        if !instance.name.is_empty() {
            let name_key = (tenant.clone(), instance.name.clone());
            if let Some(first) = names.get(&name_key) {
                check.err(
                    &format!("{p}.name"),
                    format!(
                        "duplicate instance name \"{}\" in tenant \"{tenant}\" (also instances[{first}]); names must be unique per repository owner",
                        instance.name
                    ),
                );
            } else {
                names.insert(name_key, index);
            }
        }
        if !instance.environment.trim().is_empty() {
            let target_key = (
                tenant,
                instance.repo.to_ascii_lowercase(),
                instance.environment.to_lowercase(),
            );
            if let Some(first) = targets.get(&target_key) {
                check.err(
                    &format!("{p}.environment"),
                    format!(
                        "repo \"{}\" with environment \"{}\" is already configured by instances[{first}] ({}); each repository + environment pair is one instance",
                        instance.repo, instance.environment, instances[*first].name
                    ),
                );
            } else {
                targets.insert(target_key, index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderKind;
    use crate::config::test_support::*;
    use std::time::Duration;

    #[test]
    fn instance_defaults() {
        let config = parse_ok(&instance(""));
        let i = &config.instances[0];
        assert_eq!(i.strategy, StrategyKind::Rolling);
        assert!(i.on_push.is_empty() && i.on_tag.is_empty());
        assert!(i.commands);
        assert_eq!(i.allowed_permissions, vec!["write", "maintain", "admin"]);
        assert!(!i.allow_forks);
        assert!(!i.supersede);
        assert!(i.env.is_empty());
        assert_eq!(i.environment_url, None);
        assert_eq!(i.provider.kind, ProviderKind::Noop);
        assert_eq!(i.provider.timeout, Duration::from_secs(15 * 60));
        assert_eq!(i.provider.kill_grace, Duration::from_secs(10));
        assert_eq!(i.health, None);
        assert_eq!(i.canary.steps, vec![10, 50, 100]);
        assert_eq!(i.canary.pause, Duration::from_secs(30));
        assert!(i.required_contexts.is_empty());
        assert_eq!(i.production_environment, None);
        assert!(!i.transient_environment);
        assert_eq!(i.tenant(), "acme");
        assert_eq!(i.repo_name(), "web");
        assert!(!i.matches_push("main"));
        assert_eq!(
            *i,
            InstanceConfig::new(
                "web-production",
                "acme/web",
                "production",
                "ghcr.io/acme/web:{sha}"
            )
        );
    }

    #[test]
    fn health_defaults_and_full_instance() {
        let config = parse_ok(&instance(
            "strategy = \"blue-green\"\nenv = { LOG_LEVEL = \"info\" }\nenvironment_url = \"https://web.acme.dev\"\nrequired_contexts = [\"ci/test\"]\nproduction_environment = true\n[instances.health]\nurl = \"https://web.acme.dev/healthz\"\n",
        ));
        let i = &config.instances[0];
        assert_eq!(i.strategy, StrategyKind::BlueGreen);
        assert_eq!(i.env.get("LOG_LEVEL").map(String::as_str), Some("info"));
        assert_eq!(i.production_environment, Some(true));
        let health = i.health.as_ref().expect("health");
        assert_eq!(health.url.as_deref(), Some("https://web.acme.dev/healthz"));
        assert_eq!(health.command, None);
        assert_eq!(health.timeout, Duration::from_secs(5));
        assert_eq!(health.interval, Duration::from_secs(2));
        assert_eq!(health.deadline, Duration::from_secs(60));
    }

    #[test]
    fn tenant_is_lower_cased_owner() {
        let config = parse_ok(
            "[[instances]]\nname = \"web\"\nrepo = \"Acme-Corp/Web.Site\"\nenvironment = \"prod\"\nimage = \"x\"\n",
        );
        let i = &config.instances[0];
        assert_eq!(i.tenant(), "acme-corp");
        assert_eq!(i.repo, "Acme-Corp/Web.Site");
        assert_eq!(i.repo_name(), "Web.Site");
        assert!(config.instance("acme-corp", "web").is_some());
        assert!(config.instance("other", "web").is_none());
    }

    #[test]
    fn duplicate_names_within_a_tenant_are_errors() {
        let text = format!(
            "{}{}",
            instance(""),
            "[[instances]]\nname = \"web-production\"\nrepo = \"ACME/api\"\nenvironment = \"production\"\nimage = \"x\"\n"
        );
        let err = parse_err(&text);
        assert_mentions(
            &err,
            &[
                "instances[1] (web-production).name",
                "duplicate instance name",
                "acme",
                "instances[0]",
            ],
        );
        // The same name in another tenant is fine.
        parse_ok(&format!(
            "{}{}",
            instance(""),
            "[[instances]]\nname = \"web-production\"\nrepo = \"other/web\"\nenvironment = \"production\"\nimage = \"x\"\n"
        ));
    }

    #[test]
    fn duplicate_repo_environment_is_an_error() {
        let text = format!(
            "{}{}",
            instance(""),
            "[[instances]]\nname = \"web-prod-2\"\nrepo = \"acme/web\"\nenvironment = \"production\"\nimage = \"x\"\n"
        );
        let err = parse_err(&text);
        assert_mentions(
            &err,
            &[
                "instances[1] (web-prod-2).environment",
                "instances[0]",
                "acme/web",
            ],
        );
    }

    #[test]
    fn bad_repo_is_an_error() {
        for repo in [
            "acme",
            "-acme/web",
            "acme-/web",
            "ac--me/web",
            "acme/..",
            "acme/we b",
            "a_b/web",
            "acme/web/x",
            &format!("{}/web", "a".repeat(40)),
        ] {
            let err = parse_err(&format!(
                "[[instances]]\nname = \"web\"\nrepo = \"{repo}\"\nenvironment = \"prod\"\nimage = \"x\"\n"
            ));
            assert_mentions(&err, &["instances[0] (web).repo"]);
        }
        parse_ok(&format!(
            "[[instances]]\nname = \"web\"\nrepo = \"{}/my_repo.rs-2\"\nenvironment = \"prod\"\nimage = \"x\"\n",
            "a".repeat(39)
        ));
    }

    #[test]
    fn bad_name_and_environment_are_errors() {
        for name in ["Web", "-web", "web_prod", &"a".repeat(64)] {
            let err = parse_err(&format!(
                "[[instances]]\nname = \"{name}\"\nrepo = \"acme/web\"\nenvironment = \"prod\"\nimage = \"x\"\n"
            ));
            assert_mentions(
                &err,
                &[&format!("instances[0] ({name}).name"), "lower-case"],
            );
        }
        let err =
            parse_err("[[instances]]\nrepo = \"acme/web\"\nenvironment = \"\"\nimage = \"x\"\n");
        assert_mentions(
            &err,
            &[
                "instances[0].name: missing",
                "instances[0].environment: missing",
            ],
        );
        let err = parse_err(&format!(
            "[[instances]]\nname = \"web\"\nrepo = \"acme/web\"\nenvironment = \"{}\"\nimage = \"x\"\n",
            "e".repeat(256)
        ));
        assert_mentions(&err, &["instances[0] (web).environment", "255"]);
    }

    #[test]
    fn deploy_control_keys_default_and_are_read() {
        let i = &parse_ok(&instance("")).instances[0];
        assert!(i.params.is_empty() && i.deployers.is_empty() && i.freezes.is_empty());
        assert!(i.lock_on_rollback);
        assert!(!i.unlock_on_merge);

        let config = parse_ok(&instance(
            "params = [\"REGION\", \"FEATURE_FLAG\"]\ndeployers = [\"Alice\", \"@Acme/SRE-team\", \"bob-2\"]\nlock_on_rollback = false\nunlock_on_merge = true\n[[instances.freeze]]\nreason = \"launch\"\nstart = \"2026-12-20T00:00:00Z\"\nend = \"2026-12-21T00:00:00Z\"",
        ));
        let i = &config.instances[0];
        assert_eq!(i.params, vec!["REGION", "FEATURE_FLAG"]);
        assert_eq!(i.deployers, vec!["alice", "@acme/sre-team", "bob-2"]);
        assert!(!i.lock_on_rollback);
        assert!(i.unlock_on_merge);
        assert_eq!(i.freezes.len(), 1);
        assert_eq!(i.freezes[0].reason, "launch");
        assert!(config.freezes.is_empty(), "an instance's freeze is its own");
    }

    #[test]
    fn params_must_be_env_names_listed_once() {
        for (bad, hint) in [
            ("region", "upper-case"),
            ("1REGION", "upper-case"),
            ("RE GION", "upper-case"),
            ("", "upper-case"),
            ("DEPLOY\u{5f}X", "reserved"),
            ("LD_PRELOAD", "refused"),
        ] {
            let err = parse_err(&instance(&format!("params = [\"REGION\", \"{bad}\"]")));
            assert_mentions(&err, &["instances[0] (web-production).params[1]", hint]);
        }
        let err = parse_err(&instance("params = [\"REGION\", \"TIER\", \"REGION\"]"));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).params[2]",
                "\"REGION\" is listed twice",
                "params[0]",
            ],
        );
    }

    #[test]
    fn deployers_are_logins_or_teams() {
        for bad in [
            "@alice",
            "-alice",
            "alice-",
            "al--ice",
            "al ice",
            "al.ice",
            "@acme/",
            "@/sre",
            "@acme/s re",
            "acme/sre",
            "",
            &"a".repeat(40),
        ] {
            let err = parse_err(&instance(&format!("deployers = [\"alice\", \"{bad}\"]")));
            assert_mentions(
                &err,
                &["instances[0] (web-production).deployers[1]", "@org/team"],
            );
        }
        let err = parse_err(&instance("deployers = [\"@alice\"]"));
        assert_mentions(&err, &["without '@'", "\"alice\""]);
        let err = parse_err(&instance("deployers = [\"alice\", \"ALICE\"]"));
        assert_mentions(
            &err,
            &["deployers[1]", "\"alice\" is listed twice", "deployers[0]"],
        );
        let config = parse_ok(&instance(&format!(
            "deployers = [\"{}\", \"@my-org/team_2\", \"alice_acme\"]",
            "a".repeat(39)
        )));
        assert_eq!(config.instances[0].deployers.len(), 3);
    }

    #[test]
    fn allowed_permissions_are_checked() {
        let err = parse_err(&instance("allowed_permissions = [\"write\", \"push\"]"));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).allowed_permissions[1]",
                "push",
                "admin, maintain, write, triage, read",
            ],
        );
    }
}
