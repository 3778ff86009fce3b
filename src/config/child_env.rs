//! What reaches the deploy and health commands besides the deployment: the release `env`, the
//! server variables in `pass_env`, the names the API may set (`api_env`) and which passed
//! variables are secrets (`secret_env`). Names are checked by the domain's rules
//! (`deploy::env`); no variable holding one of deploybot's own secrets is passed.

use std::collections::BTreeMap;

use super::Config;
use super::checks::Checker;

/// The release `env` of the instance `p`: names by the domain's rule, values without NUL.
pub(super) fn release_env(
    check: &mut Checker,
    p: &str,
    env: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for (name, value) in &env {
        if let Err(e) = crate::deploy::env::check_release_name(name) {
            check.err(&format!("{p}.env"), e);
        } else if value.contains('\0') {
            check.err(
                &format!("{p}.env.{name}"),
                "contains a NUL character, which no process environment can hold",
            );
        }
    }
    env
}

/// `pass_env`, `api_env` and `secret_env` of the instance `p`, each name checked by the
/// domain's rule (`deploy::env`); `secret_env` names must be in `pass_env`.
pub(super) fn build_child_env_names(
    p: &str,
    pass_env: Vec<String>,
    api_env: Vec<String>,
    secret_env: Vec<String>,
    check: &mut Checker,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    for (n, name) in pass_env.iter().enumerate() {
        if let Err(e) = crate::deploy::env::check_pass_name(name) {
            check.err(&format!("{p}.pass_env[{n}]"), e);
        }
    }
    for (n, name) in api_env.iter().enumerate() {
        if let Err(e) = crate::deploy::env::check_release_name(name) {
            check.err(&format!("{p}.api_env[{n}]"), e);
        }
    }
    for (n, name) in secret_env.iter().enumerate() {
        if !pass_env.contains(name) {
            check.err(
                &format!("{p}.secret_env[{n}]"),
                format!(
                    "{name:?} is not in pass_env; secret_env marks which pass_env variables hold secrets, so add {name:?} to pass_env too or remove it here"
                ),
            );
        }
    }
    (pass_env, api_env, secret_env)
}

/// A `pass_env` variable whose value is one of deploybot's own secrets (whatever its
/// name, e.g. the variable a tenant's webhook secret is read from) is refused.
pub(super) fn check_passed_values(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) {
    let secrets: Vec<String> = config
        .secret_values()
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| s.len() >= 4)
        .collect();
    for (index, instance) in config.instances.iter().enumerate() {
        for (n, name) in instance.pass_env.iter().enumerate() {
            let names_a_tenant_secret = config.tenants.iter().any(|t| &t.secret_env == name);
            let holds_a_secret =
                env(name).is_some_and(|value| secrets.iter().any(|s| value.contains(s.as_str())));
            if names_a_tenant_secret || holds_a_secret {
                check.err(
                    &format!("instances[{index}] ({}).pass_env[{n}]", instance.name),
                    format!(
                        "{name} holds one of deploybot's own secrets, which never reach a deploy command; remove it from pass_env"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn child_env_keys_are_read_and_default_to_none() {
        let config = parse_ok(&instance(""));
        let i = &config.instances[0];
        assert!(i.pass_env.is_empty() && i.api_env.is_empty() && i.secret_env.is_empty());
        let config = parse_ok(&instance(
            "pass_env = [\"AWS_PROFILE\", \"AWS_SECRET_ACCESS_KEY\"]\napi_env = [\"LOG_LEVEL\"]\nsecret_env = [\"AWS_SECRET_ACCESS_KEY\"]\n",
        ));
        let i = &config.instances[0];
        assert_eq!(i.pass_env, vec!["AWS_PROFILE", "AWS_SECRET_ACCESS_KEY"]);
        assert_eq!(i.api_env, vec!["LOG_LEVEL"]);
        assert_eq!(i.secret_env, vec!["AWS_SECRET_ACCESS_KEY"]);
    }

    #[test]
    fn env_names_a_shell_or_loader_reads_are_refused_naming_key_and_instance() {
        let err = parse_err(&instance(
            "env = { LD_PRELOAD = \"/tmp/x.so\", log_level = \"x\" }\npass_env = [\"GITHUB_TOKEN\", \"PATH\"]\napi_env = [\"BASH_ENV\"]\nsecret_env = [\"AWS_SECRET_ACCESS_KEY\"]\n",
        ));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).env",
                "LD_PRELOAD",
                "log_level",
                "instances[0] (web-production).pass_env[0]",
                "GITHUB_TOKEN",
                "instances[0] (web-production).pass_env[1]",
                "PATH",
                "instances[0] (web-production).api_env[0]",
                "BASH_ENV",
                "instances[0] (web-production).secret_env[0]",
                "AWS_SECRET_ACCESS_KEY",
            ],
        );
    }

    #[test]
    fn pass_env_holding_a_bot_secret_is_refused_whatever_its_name() {
        let err = with_env(
            &instance("pass_env = [\"SOME_HOOK\"]\n"),
            &[
                ("DEPLOYBOT_WEBHOOK_SECRET", "hook-secret-value"),
                ("SOME_HOOK", "hook-secret-value"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert_mentions(
            &err,
            &["instances[0] (web-production).pass_env[0]", "SOME_HOOK"],
        );
        assert!(!err.contains("hook-secret-value"), "{err}");

        // A tenant's webhook secret variable, by name, and a copy of it while rotating.
        let err = with_env(
            &format!(
                "[[tenants]]\nname = \"acme\"\nwebhook_secret_env = \"ACME_HOOK\"\n{}",
                instance("pass_env = [\"ACME_HOOK\", \"HOOKS_COPY\"]\n")
            ),
            &[
                ("ACME_HOOK", "acme-new-secret,acme-old-secret"),
                ("HOOKS_COPY", "acme-new-secret,acme-old-secret"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).pass_env[0]",
                "ACME_HOOK",
                "instances[0] (web-production).pass_env[1]",
                "HOOKS_COPY",
            ],
        );
        assert!(!err.contains("acme-new-secret"), "{err}");

        // A copy of the session key, in another of its encodings.
        let key = "5a".repeat(32);
        let err = with_env(
            &instance("pass_env = [\"KEY_COPY\"]\n"),
            &[
                ("DEPLOYBOT_SESSION_KEY", &key),
                ("KEY_COPY", &key.to_uppercase()),
            ],
        )
        .unwrap_err()
        .to_string();
        assert_mentions(
            &err,
            &["instances[0] (web-production).pass_env[0]", "KEY_COPY"],
        );
    }
}
