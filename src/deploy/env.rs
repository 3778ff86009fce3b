//! Which environment variable names may reach a child process, whoever names them: the
//! instance's `env` and `pass_env` in the configuration, the API's deploy `env`, a stored
//! release. One rule, used by the configuration check, the API, the service and, last, the
//! provider right before it starts a process.
//!
//! A name must match `^[A-Z_][A-Z0-9_]{0,63}$` and must not be one that a dynamic loader,
//! shell, language runtime or common tool reads as code, a search path or options
//! (`LD_PRELOAD`, `BASH_ENV`, `NODE_OPTIONS`, `GIT_SSH_COMMAND`, …), nor one deploybot sets
//! itself (`PATH`, `HOME`, `LANG`, `LC_*`, `DEPLOY_*`).

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Names deploybot sets for every child: a release or `pass_env` may not replace them.
const SET_BY_DEPLOYBOT: &[&str] = &["PATH", "HOME", "LANG"];

/// Names read by a loader, shell, runtime or tool as code, a search path or options.
const INTERPRETED: &[&str] = &[
    // shells
    "ENV",
    "BASH_ENV",
    "IFS",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "PROMPT_COMMAND",
    "SHELLOPTS",
    "BASHOPTS",
    "CDPATH",
    "GLOBIGNORE",
    "ZDOTDIR",
    // the C library
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RES_OPTIONS",
    "LOCALDOMAIN",
    // language runtimes
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "DOTNET_STARTUP_HOOKS",
    "JAVA_OPTS",
    "MAVEN_OPTS",
    "GRADLE_OPTS",
    "SBT_OPTS",
    "ANT_OPTS",
    "ERL_AFLAGS",
    "ERL_ZFLAGS",
    "ERL_FLAGS",
    "ERL_LIBS",
    "PHPRC",
    "PHP_INI_SCAN_DIR",
    "GEMRC",
    "BUNDLE_GEMFILE",
    "GOFLAGS",
    // build tools: compilers, wrappers and flags they run or pass on
    "MAKEFLAGS",
    "MFLAGS",
    "GNUMAKEFLAGS",
    "MAKEFILES",
    "CC",
    "CXX",
    "CPP",
    "LD",
    "AR",
    "CFLAGS",
    "CXXFLAGS",
    "CPPFLAGS",
    "LDFLAGS",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    // tools that start other programs or read options or config from the environment
    "SHELL",
    "TAR_OPTIONS",
    "RSYNC_RSH",
    "RSYNC_CONNECT_PROG",
    "LESSOPEN",
    "LESSCLOSE",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "KUBE_EDITOR",
    "KUBECTL_EXTERNAL_DIFF",
    "WGETRC",
    "CURL_HOME",
    "XDG_CONFIG_HOME",
    "XDG_CONFIG_DIRS",
];

/// Name prefixes with the same meaning as `INTERPRETED`.
const INTERPRETED_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "BASH_",
    "MALLOC_",
    "PYTHON",
    "PERL5",
    "GIT_",
    "NPM_CONFIG_",
    "YARN_",
    "PIP_",
    "CARGO_",
    "LUA_INIT",
    "TF_CLI_ARGS",
    "ANSIBLE_",
    "CORECLR_",
    "LC_",
];

/// Prefix of the variables deploybot gives every deploy command (`DEPLOY_ID`, …).
pub const DEPLOY_PREFIX: &str = "DEPLOY_";

/// The server variables that hold deploybot's own secrets and settings; `pass_env` may not
/// name them, nor any `DEPLOYBOT_*` variable.
pub const BOT_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "GITHUB_TOKEN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
];

/// Why a name may not reach a child process. `Display` names it and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvNameError {
    #[error(
        "environment variable name {0:?} is not allowed: use 1 to 64 characters of A-Z, 0-9 and _, not starting with a digit (for example LOG_LEVEL)"
    )]
    Malformed(String),
    #[error(
        "environment variable {0} is set by deploybot for every deploy command and cannot be replaced; remove it"
    )]
    SetByDeploybot(String),
    #[error(
        "environment variable {0} is refused: a loader, shell or runtime reads it as code, a search path or options; remove it (set it inside your deploy script if you really need it)"
    )]
    Interpreted(String),
    #[error(
        "environment variable {0} is refused: DEPLOY_* names are reserved for the values deploybot gives every deploy command; choose another name"
    )]
    Reserved(String),
    #[error(
        "environment variable {0} holds deploybot's own configuration or secrets and is never passed to a deploy command; remove it from pass_env"
    )]
    BotSecret(String),
}

impl EnvNameError {
    /// The refused name.
    pub fn name(&self) -> &str {
        match self {
            EnvNameError::Malformed(n)
            | EnvNameError::SetByDeploybot(n)
            | EnvNameError::Interpreted(n)
            | EnvNameError::Reserved(n)
            | EnvNameError::BotSecret(n) => n,
        }
    }
}

fn well_formed(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && (bytes[0].is_ascii_uppercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
}

/// The last-line rule, for whatever a child process gets: well formed, not set by deploybot
/// and not interpreted. `DEPLOY_*` passes (deploybot sets those itself).
pub fn check_child_name(name: &str) -> Result<(), EnvNameError> {
    if !well_formed(name) {
        return Err(EnvNameError::Malformed(name.to_string()));
    }
    if SET_BY_DEPLOYBOT.contains(&name) {
        return Err(EnvNameError::SetByDeploybot(name.to_string()));
    }
    if INTERPRETED.contains(&name) || INTERPRETED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(EnvNameError::Interpreted(name.to_string()));
    }
    Ok(())
}

/// The rule for a release's env (configured `env`, the API's `env`, a stored release):
/// `check_child_name`, and not `DEPLOY_*`.
pub fn check_release_name(name: &str) -> Result<(), EnvNameError> {
    check_child_name(name)?;
    if name.starts_with(DEPLOY_PREFIX) {
        return Err(EnvNameError::Reserved(name.to_string()));
    }
    Ok(())
}

/// The rule for a `pass_env` name: `check_release_name`, and not one of deploybot's own
/// variables (`BOT_VARIABLES`, `DEPLOYBOT_*`).
pub fn check_pass_name(name: &str) -> Result<(), EnvNameError> {
    check_release_name(name)?;
    if BOT_VARIABLES.contains(&name) || name.starts_with("DEPLOYBOT_") {
        return Err(EnvNameError::BotSecret(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_upper_case_names_pass() {
        for name in ["LOG_LEVEL", "A", "_X", "AWS_PROFILE", "TZ", &"A".repeat(64)] {
            assert_eq!(check_release_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn malformed_names_are_refused() {
        for name in [
            "",
            "log_level",
            "1ABC",
            "A-B",
            "A=B",
            "BASH_FUNC_echo%%",
            "A\0B",
            "É",
            &"A".repeat(65),
        ] {
            assert_eq!(
                check_release_name(name),
                Err(EnvNameError::Malformed(name.to_string())),
                "{name:?}"
            );
        }
    }

    #[test]
    fn names_a_loader_shell_or_runtime_reads_are_refused() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
            "BASH_ENV",
            "BASH_FUNC_X",
            "ENV",
            "IFS",
            "PS4",
            "SHELLOPTS",
            "NODE_OPTIONS",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "RUBYOPT",
            "GIT_SSH_COMMAND",
            "LC_ALL",
            "GCONV_PATH",
            "TAR_OPTIONS",
            "MAKEFLAGS",
            "RSYNC_RSH",
            "LUA_INIT_5_4",
            "RUSTC_WRAPPER",
            "CARGO_BUILD_RUSTC_WRAPPER",
            "SHELL",
            "LESSOPEN",
            "PIP_INDEX_URL",
            "KUBECTL_EXTERNAL_DIFF",
            "XDG_CONFIG_HOME",
        ] {
            assert!(
                matches!(check_child_name(name), Err(EnvNameError::Interpreted(_))),
                "{name}"
            );
        }
        for name in ["PATH", "HOME", "LANG"] {
            assert!(matches!(
                check_child_name(name),
                Err(EnvNameError::SetByDeploybot(_))
            ));
        }
    }

    #[test]
    fn names_that_choose_a_target_or_hold_data_are_allowed() {
        for name in [
            "KUBECONFIG",
            "AWS_PROFILE",
            "DOCKER_HOST",
            "TZ",
            "LOG_LEVEL",
            "REGION",
        ] {
            assert_eq!(check_child_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn deploy_names_are_deploybots_own() {
        assert_eq!(check_child_name("DEPLOY_ID"), Ok(()));
        assert_eq!(
            check_release_name("DEPLOY_ID"),
            Err(EnvNameError::Reserved("DEPLOY_ID".into()))
        );
    }

    #[test]
    fn pass_env_never_names_the_bots_secrets() {
        for name in [
            "GITHUB_TOKEN",
            "DATABASE_URL",
            "GITHUB_APP_PRIVATE_KEY",
            "DEPLOYBOT_WEBHOOK_SECRET",
            "DEPLOYBOT_METRICS_TOKEN",
        ] {
            let err = check_pass_name(name).unwrap_err();
            assert_eq!(err.name(), name);
            assert!(err.to_string().contains(name), "{err}");
        }
        assert_eq!(check_pass_name("AWS_PROFILE"), Ok(()));
    }
}
