//! Tenants and their webhook secrets: `[[tenants]]` entries, the global secrets
//! (`DEPLOYBOT_WEBHOOK_SECRET` or `webhook_secrets`), and which of them verify a delivery.

use std::fmt;

use super::Config;
use super::checks::Checker;
use super::env::{SECRET_ENV, comma_list};
use super::secrets::RedactedList;
use super::shape::RawTenant;

/// A `[[tenants]]` entry: the webhook secrets of one GitHub account's repository and
/// organization webhooks. `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// The account, lower-cased (`acme` in `acme/web`).
    pub name: String,
    /// The variable the secrets were read from (`webhook_secret_env`).
    pub secret_env: String,
    /// Its secrets, newest first while rotating; empty when the variable is unset or empty.
    pub secrets: Vec<String>,
}

impl fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantConfig")
            .field("name", &self.name)
            .field("secret_env", &self.secret_env)
            .field("secrets", &RedactedList(self.secrets.len()))
            .finish()
    }
}

impl Config {
    /// The secrets a webhook delivery naming `tenant` must be signed with.
    ///
    /// A tenant with a `[[tenants]]` entry: its own secrets, and the global
    /// (`DEPLOYBOT_WEBHOOK_SECRET`) ones only when GitHub App credentials are configured,
    /// since an App signs every delivery with its one secret. A tenant without an entry:
    /// the global secrets. A delivery that names no account (`None`) can start nothing,
    /// so any configured secret verifies it.
    pub fn webhook_secrets_for(&self, tenant: Option<&str>) -> Vec<&str> {
        let global = self.webhook_secrets.iter().map(String::as_str);
        let Some(tenant) = tenant else {
            let tenants = self.tenants.iter().flat_map(|t| &t.secrets);
            return global.chain(tenants.map(String::as_str)).collect();
        };
        match self.tenants.iter().find(|t| t.name == tenant) {
            Some(entry) if self.github.app_id.is_some() => entry
                .secrets
                .iter()
                .map(String::as_str)
                .chain(global)
                .collect(),
            Some(entry) => entry.secrets.iter().map(String::as_str).collect(),
            None => global.collect(),
        }
    }

    /// What stops webhooks from being verified, each naming the tenant or instance and
    /// what to set: a `[[tenants]]` variable that is unset or empty, an instance whose
    /// tenant has no secret at all, or no secret anywhere. `serve` refuses to start and
    /// `config check` fails while this is not empty.
    pub fn webhook_secret_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for tenant in &self.tenants {
            if tenant.secrets.is_empty() {
                problems.push(format!(
                    "tenant \"{}\": {} is not set or is empty; export it with the secret of {}'s webhooks (comma-separated while rotating)",
                    tenant.name, tenant.secret_env, tenant.name
                ));
            }
        }
        let mut named = std::collections::BTreeSet::new();
        for instance in &self.instances {
            let tenant = instance.tenant();
            let covered = self.tenants.iter().any(|t| t.name == tenant);
            if !covered && self.webhook_secrets.is_empty() && named.insert(tenant.clone()) {
                problems.push(format!(
                    "tenant \"{tenant}\" (instance {} of {}) has no webhook secret: add a [[tenants]] entry with name = \"{tenant}\" and webhook_secret_env, or set {SECRET_ENV}",
                    instance.name, instance.repo
                ));
            }
        }
        if self.webhook_secrets.is_empty() && self.tenants.is_empty() && self.instances.is_empty() {
            problems.push(format!(
                "no webhook secret is configured: set {SECRET_ENV} (the secret of your GitHub App or webhook) or add [[tenants]] entries"
            ));
        }
        problems
    }
}

/// The global webhook secrets: `DEPLOYBOT_WEBHOOK_SECRET` when it holds any, else the file's
/// `webhook_secrets`.
pub(super) fn webhook_secrets(
    value: Option<toml::Value>,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> Vec<String> {
    let env_secrets = comma_list(env(SECRET_ENV));
    if !env_secrets.is_empty() {
        env_secrets
    } else {
        file_webhook_secrets(check, value)
    }
}

/// `[[tenants]]`: names are lower-case and unique; each names the variable holding its
/// secrets (comma-separated while rotating). An unset or empty variable is not an error
/// here (`Config::webhook_secret_problems` reports it), so commands that never verify a
/// webhook work without it.
pub(super) fn build_tenants(
    raw: Vec<RawTenant>,
    env: &dyn Fn(&str) -> Option<String>,
    check: &mut Checker,
) -> Vec<TenantConfig> {
    let mut tenants: Vec<TenantConfig> = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let name = raw.name.unwrap_or_default();
        let prefix = format!("tenants[{index}]");
        if name.trim().is_empty() {
            check.err(
                &format!("{prefix}.name"),
                "missing: write the GitHub account that owns the repositories, e.g. name = \"acme\"",
            );
            continue;
        }
        if name != name.trim().to_ascii_lowercase() || name.contains('/') {
            check.err(
                &format!("{prefix}.name"),
                format!(
                    "\"{name}\" must be a lower-case GitHub account without spaces or slashes; write \"{}\"",
                    name.trim().to_ascii_lowercase()
                ),
            );
        }
        if tenants.iter().any(|t| t.name == name) {
            check.err(
                &format!("{prefix}.name"),
                format!(
                    "tenant \"{name}\" is listed twice; keep one [[tenants]] entry per account"
                ),
            );
        }
        let secret_env = raw.webhook_secret_env.unwrap_or_default();
        let valid_env = !secret_env.is_empty()
            && secret_env
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid_env {
            check.err(
                &format!("{prefix} ({name}).webhook_secret_env"),
                "must name an environment variable (A-Z, 0-9, _) that holds the tenant's webhook secret, e.g. webhook_secret_env = \"ACME_WEBHOOK_SECRET\"",
            );
        }
        let secrets = comma_list(env(&secret_env));
        tenants.push(TenantConfig {
            name,
            secret_env,
            secrets,
        });
    }
    tenants
}

/// The file's `webhook_secrets`: an array of strings (or one string); values are never echoed.
fn file_webhook_secrets(check: &mut Checker, value: Option<toml::Value>) -> Vec<String> {
    const HINT: &str = "must be an array of strings, e.g. webhook_secrets = [\"…\"] (better: leave it out and export DEPLOYBOT_WEBHOOK_SECRET)";
    let items = match value {
        None => return Vec::new(),
        Some(toml::Value::String(s)) => vec![toml::Value::String(s)],
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            check.err("webhook_secrets", HINT);
            return Vec::new();
        }
    };
    let mut secrets = Vec::new();
    for (n, item) in items.into_iter().enumerate() {
        let key = format!("webhook_secrets[{n}]");
        match item {
            toml::Value::String(s) if !s.trim().is_empty() => secrets.push(s.trim().to_string()),
            toml::Value::String(_) => check.err(&key, "empty secret; remove it"),
            _ => check.err(&key, HINT),
        }
    }
    secrets
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn each_tenant_is_verified_with_its_own_secrets() {
        let text = format!(
            "[[tenants]]\nname = \"acme\"\nwebhook_secret_env = \"ACME_SECRET\"\n{}",
            instance("")
        );
        let config = with_env(
            &text,
            &[
                ("ACME_SECRET", "new, old"),
                ("DEPLOYBOT_WEBHOOK_SECRET", "global"),
            ],
        )
        .expect("valid");
        assert_eq!(config.webhook_secrets_for(Some("acme")), vec!["new", "old"]);
        assert_eq!(config.webhook_secrets_for(Some("globex")), vec!["global"]);
        assert_eq!(
            config.webhook_secrets_for(None),
            vec!["global", "new", "old"]
        );
        assert!(config.webhook_secret_problems().is_empty());
        assert!(config.secret_values().contains(&"old".to_string()));
        assert!(!format!("{config:?}").contains("new"));

        // A GitHub App signs every delivery with its one secret.
        let mut app = config.clone();
        app.github.app_id = Some(1);
        assert_eq!(
            app.webhook_secrets_for(Some("acme")),
            vec!["new", "old", "global"]
        );

        // Unset: named, with the variable to set.
        let unset = with_env(&text, &[]).expect("valid");
        let problems = unset.webhook_secret_problems().join("\n");
        assert_mentions(&problems, &["tenant \"acme\"", "ACME_SECRET"]);

        let err = parse_err("[[tenants]]\nname = \"Acme\"\nwebhook_secret_env = \"lower\"\n");
        assert_mentions(&err, &["tenants[0].name", "\"acme\"", "webhook_secret_env"]);
    }
}
