//! Webhook payloads (`events::parse`) for every event deploybot handles, then the routing
//! that turns them into deployments and jobs (`rules::route`), as the webhook route does.
//! Input: one byte choosing the `X-GitHub-Event` name, then the raw body.
#![no_main]

use std::sync::OnceLock;

use deploybot::config::Config;
use deploybot::github::webhook::events::{self, Event};
use deploybot::github::rules::{self, Routing};
use libfuzzer_sys::fuzz_target;

const EVENTS: [&str; 5] = ["ping", "push", "create", "issue_comment", "workflow_run"];

/// Instances for the fixtures' repository that act on everything: every branch and tag,
/// commands, and an image using every placeholder, so routing code is reached.
const CONFIG: &str = r#"
[[instances]]
name = "hello-production"
repo = "Codertocat/Hello-World"
environment = "production"
image = "ghcr.io/codertocat/hello:{tag}-{short_sha}"
on_tag = ["**"]
commands = true

[instances.provider]
kind = "noop"

[[instances]]
name = "hello-staging"
repo = "codertocat/hello-world"
environment = "staging"
image = "ghcr.io/codertocat/hello:{branch}-{sha}-{short_sha}-{ref}"
on_push = ["**"]
commands = true

[instances.provider]
kind = "noop"
"#;

fn config() -> &'static Config {
    static CONFIG_ONCE: OnceLock<Config> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| match Config::from_toml_str(CONFIG, &|_| None) {
        Ok(config) => config,
        Err(error) => panic!("the fuzz config is invalid: {error}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let name = EVENTS[usize::from(selector) % EVENTS.len()];
    let event = match events::parse(name, body) {
        Ok(event) => event,
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with(name), "{message}");
            return;
        }
    };
    if let Event::Other(other) = &event {
        assert_eq!(other, name);
    }
    match rules::route(config(), &event) {
        Routing::Act { deploys, .. } => {
            for planned in deploys {
                // Values from the payload reach the image only sanitized.
                let tag = planned.image.rsplit_once(':').map_or("", |(_, tag)| tag);
                assert!(
                    tag.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
                    "{:?}",
                    planned.image
                );
            }
        }
        Routing::Pong { .. } | Routing::Ignored { .. } => {}
    }
});
