//! API tokens (`[[api.tokens]]`): each acts for one tenant with a role, over the instances
//! its globs cover, and is stored as the SHA-256 of the token.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use super::checks::Checker;
use super::globs::{check_globs, globs_cover};
use super::shape::{RawApi, RawToken};

/// Bearer tokens for `/v1` and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiConfig {
    pub tokens: Vec<ApiToken>,
}

/// One API token, stored as the hex SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Recorded as the initiator of what the token starts; unique.
    pub name: String,
    /// Lower-case tenant the token acts for.
    pub tenant: String,
    /// 64 lower-case hex characters (upper case in the file is accepted and lower-cased).
    pub sha256: String,
    /// What the token may do (default `deploy`).
    pub role: Role,
    /// Globs over the tenant's instance names the token may see and act on; empty: all.
    pub instances: Vec<String>,
}

impl ApiToken {
    /// Whether the token's `instances` globs cover the instance `name` (no globs: all).
    pub fn covers(&self, name: &str) -> bool {
        globs_cover(&self.instances, name)
    }
}

/// What an API token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read through the `GET` routes (all but the failed outbox), and sign in to the pages.
    Read,
    /// Also deploy, roll back and cancel.
    #[default]
    Deploy,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Deploy, Role::Admin];

    /// The name written in `role = "…"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Deploy => "deploy",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("\"{s}\" is not a role; use \"read\", \"deploy\" or \"admin\""))
    }
}

/// `[[api.tokens]]`, each checked; token names are unique.
pub(super) fn build_api(raw: RawApi, check: &mut Checker) -> ApiConfig {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let tokens = raw
        .tokens
        .into_iter()
        .enumerate()
        .map(|(index, raw)| build_token(index, raw, &mut seen, check))
        .collect();
    ApiConfig { tokens }
}

/// One `[[api.tokens]]` entry; `seen` maps the names read so far to their index.
fn build_token(
    index: usize,
    raw: RawToken,
    seen: &mut HashMap<String, usize>,
    check: &mut Checker,
) -> ApiToken {
    let name = raw.name.unwrap_or_default().trim().to_string();
    let prefix = if name.is_empty() {
        format!("api.tokens[{index}]")
    } else {
        format!("api.tokens[{index}] ({name})")
    };
    check_token_name(check, &prefix, &name, index, seen);
    let tenant = raw.tenant.unwrap_or_default();
    check_token_tenant(check, &prefix, &tenant);
    let sha256 = raw.sha256.unwrap_or_default();
    check_token_sha256(check, &prefix, &sha256);
    let role = token_role(check, &prefix, raw.role.as_deref());
    let instances = raw.instances.unwrap_or_default();
    check_globs(
        check,
        &format!("{prefix}.instances"),
        "instance",
        &instances,
    );
    ApiToken {
        name,
        tenant,
        sha256: sha256.to_ascii_lowercase(),
        role,
        instances,
    }
}

/// The token's `name`: set, and not used by an earlier token.
fn check_token_name(
    check: &mut Checker,
    prefix: &str,
    name: &str,
    index: usize,
    seen: &mut HashMap<String, usize>,
) {
    if name.is_empty() {
        check.err(
            &format!("{prefix}.name"),
            "missing; give the token a name such as \"ci\" (it is recorded as the initiator)",
        );
    } else if let Some(first) = seen.get(name) {
        check.err(
            &format!("{prefix}.name"),
            format!(
                "duplicate token name \"{name}\" (also api.tokens[{first}]); token names must be unique"
            ),
        );
    } else {
        seen.insert(name.to_string(), index);
    }
}

/// The token's `tenant`: set, lower-case, without spaces.
fn check_token_tenant(check: &mut Checker, prefix: &str, tenant: &str) {
    if tenant.trim().is_empty() {
        check.err(
            &format!("{prefix}.tenant"),
            "missing; set it to the lower-case GitHub account the token acts for, e.g. \"acme\"",
        );
    } else if tenant != tenant.to_ascii_lowercase() || tenant.trim() != tenant {
        check.err(
            &format!("{prefix}.tenant"),
            format!(
                "\"{tenant}\" must be lower-case without spaces; write \"{}\"",
                tenant.trim().to_ascii_lowercase()
            ),
        );
    }
}

/// The token's `sha256`: 64 hex characters.
fn check_token_sha256(check: &mut Checker, prefix: &str, sha256: &str) {
    let sha_ok = sha256.len() == 64 && sha256.chars().all(|c| c.is_ascii_hexdigit());
    if !sha_ok {
        // The value is never echoed: people sometimes paste the token itself here.
        check.err(
            &format!("{prefix}.sha256"),
            format!(
                "must be the hex SHA-256 of the token, 64 characters of 0-9a-f (got {} characters); compute it with `printf %s \"$TOKEN\" | sha256sum`",
                sha256.chars().count()
            ),
        );
    }
}

/// The token's `role`; `deploy` when unset or unknown (an unknown one is reported).
fn token_role(check: &mut Checker, prefix: &str, raw: Option<&str>) -> Role {
    match raw.map(str::parse::<Role>) {
        None => Role::default(),
        Some(Ok(role)) => role,
        Some(Err(e)) => {
            check.err(&format!("{prefix}.role"), e);
            Role::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn api_tokens_are_checked() {
        let good = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let config = parse_ok(&format!(
            "[[api.tokens]]\nname = \"ci\"\ntenant = \"acme\"\nsha256 = \"{}\"\n",
            good.to_uppercase()
        ));
        assert_eq!(config.api.tokens[0].sha256, good);
        assert_eq!(config.api.tokens[0].tenant, "acme");

        let err = parse_err(&format!(
            "[[api.tokens]]\nname = \"ci\"\ntenant = \"Acme\"\nsha256 = \"my-raw-token\"\n\
             [[api.tokens]]\nname = \"ci\"\ntenant = \"\"\nsha256 = \"{good}\"\n"
        ));
        assert_mentions(
            &err,
            &[
                "api.tokens[0] (ci).tenant",
                "lower-case",
                "api.tokens[0] (ci).sha256",
                "64",
                "api.tokens[1] (ci).name",
                "duplicate",
                "api.tokens[1] (ci).tenant: missing",
            ],
        );
        assert!(!err.contains("my-raw-token"), "{err}");
    }

    #[test]
    fn token_roles_and_instance_globs_are_read_and_checked() {
        let good = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let config = parse_ok(&format!(
            "[[api.tokens]]\nname = \"ci\"\ntenant = \"acme\"\nsha256 = \"{good}\"\n\
             [[api.tokens]]\nname = \"dash\"\ntenant = \"acme\"\nsha256 = \"{good}\"\nrole = \"read\"\ninstances = [\"web-*\"]\n"
        ));
        let [ci, dash] = &config.api.tokens[..] else {
            panic!("two tokens")
        };
        assert_eq!((ci.role, dash.role), (Role::Deploy, Role::Read));
        assert!(ci.covers("api-production"));
        assert!(dash.covers("web-production") && !dash.covers("api-production"));

        let err = parse_err(&format!(
            "[[api.tokens]]\nname = \"ci\"\ntenant = \"acme\"\nsha256 = \"{good}\"\nrole = \"owner\"\ninstances = [\"[web\"]\n"
        ));
        assert_mentions(
            &err,
            &[
                "api.tokens[0] (ci).role",
                "\"owner\" is not a role",
                "api.tokens[0] (ci).instances[0]",
            ],
        );
    }
}
