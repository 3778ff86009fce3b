//! Where the deploybot server is, the same way for every command that talks to it (the
//! API commands and `simulate`): `--url`, then `DEPLOYBOT_URL`, then the configuration's
//! `public_url`, which is `http://` and its `listen` address when unset (the file, with the
//! environment's overrides such as `DEPLOYBOT_LISTEN`).

use std::path::Path;

use super::{CliError, http};
use crate::config::Config;

/// The variable that names the server.
const URL_ENV: &str = "DEPLOYBOT_URL";

/// The server's base URL, and where it came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `http(s)://HOST[:PORT][/PREFIX]`, without a trailing slash.
    pub url: String,
    /// "--url", "DEPLOYBOT_URL", or which key of which configuration.
    pub from: String,
}

/// The server: `flag` (`--url`, which the command line fills from `DEPLOYBOT_URL` when
/// the flag is absent), else the configuration read from `file` (or the default file).
pub fn server_url(flag: Option<&str>, file: Option<&Path>) -> Result<ServerUrl, CliError> {
    match flag.filter(|u| !u.trim().is_empty()) {
        Some(url) => {
            let from = if std::env::var(URL_ENV).is_ok_and(|v| v == url) {
                URL_ENV
            } else {
                "--url"
            };
            Ok(ServerUrl {
                url: http::base_url(from, url)?,
                from: from.to_string(),
            })
        }
        None => from_config(&Config::load(file)?),
    }
}

/// The server a configuration describes: its `public_url`, else `http://LISTEN` with a
/// wildcard address made connectable (`0.0.0.0` → `127.0.0.1`).
fn from_config(config: &Config) -> Result<ServerUrl, CliError> {
    let key = if config.public_url == format!("http://{}", config.listen) {
        "listen"
    } else {
        "public_url"
    };
    let whose = match &config.source {
        Some(file) => format!("{} with the environment's overrides", file.display()),
        None => "the defaults with the environment's overrides (no configuration file)".into(),
    };
    let from = format!("{key} of {whose}");
    Ok(ServerUrl {
        url: http::base_url(&from, &connectable(&config.public_url))?,
        from,
    })
}

/// A listen-derived URL with a wildcard address made connectable.
fn connectable(url: &str) -> String {
    url.replacen("://0.0.0.0", "://127.0.0.1", 1)
        .replacen("://[::]", "://[::1]", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str, env: &[(&str, &str)]) -> Config {
        let lookup = |key: &str| {
            env.iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.to_string())
        };
        Config::from_toml_str(text, &lookup).unwrap()
    }

    #[test]
    fn wildcard_listen_addresses_become_connectable() {
        assert_eq!(connectable("http://0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(connectable("http://[::]:8080"), "http://[::1]:8080");
        assert_eq!(
            connectable("https://deploy.acme.dev"),
            "https://deploy.acme.dev"
        );
    }

    #[test]
    fn a_flag_wins_and_is_checked() {
        let url = server_url(Some("http://127.0.0.1:9000/"), None).unwrap();
        assert_eq!(url.url, "http://127.0.0.1:9000");
        let err = server_url(Some("127.0.0.1:9000"), None).unwrap_err();
        assert!(err.to_string().contains("is not a URL"), "{err}");
    }

    #[test]
    fn the_configuration_gives_public_url_else_listen() {
        let listen = from_config(&config("listen = \"0.0.0.0:9100\"\n", &[])).unwrap();
        assert_eq!(listen.url, "http://127.0.0.1:9100");
        assert!(
            listen.from.starts_with("listen of the defaults"),
            "{listen:?}"
        );
        let env = from_config(&config("", &[("DEPLOYBOT_LISTEN", "127.0.0.1:9200")])).unwrap();
        assert_eq!(env.url, "http://127.0.0.1:9200");
        let public = from_config(&config(
            "public_url = \"https://deploy.acme.dev/\"\n",
            &[("DEPLOYBOT_LISTEN", "127.0.0.1:9200")],
        ))
        .unwrap();
        assert_eq!(public.url, "https://deploy.acme.dev");
        assert!(public.from.starts_with("public_url"), "{public:?}");
    }
}
