//! The placeholders an instance's `image` may hold (`{sha}`, `{branch}`, `{tag}`, …), the
//! check that it holds no others, and the warning about a placeholder that one of the
//! instance's triggers never fills (that trigger's deploys are then always refused).

use super::checks::Checker;
use super::{Config, InstanceConfig};

/// The placeholders an instance `image` may contain, without braces.
pub const IMAGE_PLACEHOLDERS: &[&str] = &["sha", "short_sha", "ref", "branch", "tag", "pr"];

/// `image`: set, with known placeholders only.
pub(super) fn image(check: &mut Checker, key: &str, raw: Option<String>) -> String {
    let image = raw.unwrap_or_default();
    if image.trim().is_empty() {
        check.err(
            key,
            "missing; set the image to deploy, e.g. \"ghcr.io/acme/web:{sha}\"",
        );
    } else {
        for problem in image_problems(&image) {
            check.err(key, problem);
        }
    }
    image
}

/// Why an image template is not usable, if it is not.
fn image_problems(image: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rest = image;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let placeholder = &after[..close];
                if !IMAGE_PLACEHOLDERS.contains(&placeholder) {
                    problems.push(format!(
                        "unknown placeholder {{{placeholder}}} in \"{image}\"; use {}",
                        IMAGE_PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ));
                }
                rest = &after[close + 1..];
            }
            None => {
                problems.push(format!(
                    "unclosed '{{' in \"{image}\"; write placeholders like {{sha}}"
                ));
                break;
            }
        }
    }
    problems
}

/// What starts a deployment from an instance's image template. API deploys name their
/// image and never use the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// A push to a branch matching `on_push`.
    Push,
    /// A tag matching `on_tag`.
    Tag,
    /// `/deploy` or `/noop` on a pull request (`commands = true`).
    Comment,
}

impl Trigger {
    /// The placeholders this trigger fills (as `github::image::ImageVars` is built for it).
    fn provides(self) -> &'static [&'static str] {
        match self {
            Trigger::Push => &["sha", "short_sha", "ref", "branch"],
            Trigger::Tag => &["sha", "short_sha", "ref", "tag"],
            Trigger::Comment => &["sha", "short_sha", "ref", "branch", "pr"],
        }
    }

    /// Who deploys through it, the key that turns it on, and one such deploy.
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Trigger::Push => ("pushes to branches", "on_push", "a push deploy"),
            Trigger::Tag => ("tags", "on_tag", "a tag deploy"),
            Trigger::Comment => ("/deploy comments", "commands", "a /deploy comment"),
        }
    }

    /// The triggers `instance` turns on.
    fn of(instance: &InstanceConfig) -> Vec<Trigger> {
        let mut on = Vec::new();
        if !instance.on_push.is_empty() {
            on.push(Trigger::Push);
        }
        if !instance.on_tag.is_empty() {
            on.push(Trigger::Tag);
        }
        if instance.commands {
            on.push(Trigger::Comment);
        }
        on
    }
}

impl Config {
    /// One warning per placeholder of an instance's image that one of its triggers never
    /// fills: every deploy from that trigger would be refused. The configuration is still
    /// valid (the API deploys any image), so these are warnings, not errors.
    pub fn image_warnings(&self) -> Vec<String> {
        self.instances.iter().flat_map(image_warnings).collect()
    }
}

/// The warnings about one instance's image.
fn image_warnings(instance: &InstanceConfig) -> Vec<String> {
    let triggers = Trigger::of(instance);
    let only = triggers.len() == 1;
    let mut warnings = Vec::new();
    for placeholder in used_placeholders(&instance.image) {
        for &trigger in &triggers {
            if trigger.provides().contains(&placeholder) {
                continue;
            }
            let (who, key, deploy) = trigger.words();
            let gap = if only {
                format!("but only {who} deploy it ({key})")
            } else {
                format!("which {who} ({key}) do not provide")
            };
            let provided: Vec<String> = trigger
                .provides()
                .iter()
                .map(|p| format!("{{{p}}}"))
                .collect();
            warnings.push(format!(
                "{}: image uses {{{placeholder}}}, {gap}; {deploy} would be refused. \
                 Use what {who} provide ({}) or deploy it another way",
                instance.name,
                provided.join(" ")
            ));
        }
    }
    warnings
}

/// The known placeholders in `image`, each once, in order.
fn used_placeholders(image: &str) -> Vec<&'static str> {
    let mut used = Vec::new();
    let mut rest = image;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        if let Some(known) = IMAGE_PLACEHOLDERS.iter().find(|p| **p == &after[..close])
            && !used.contains(known)
        {
            used.push(*known);
        }
        rest = &after[close + 1..];
    }
    used
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::*;

    #[test]
    fn image_must_be_set_and_placeholders_known() {
        let err = parse_err(
            "[[instances]]\nname = \"web\"\nrepo = \"acme/web\"\nenvironment = \"prod\"\nimage = \"\"\n",
        );
        assert_mentions(&err, &["instances[0] (web).image: missing"]);
        let err = parse_err(
            "[[instances]]\nname = \"web\"\nrepo = \"acme/web\"\nenvironment = \"prod\"\nimage = \"ghcr.io/acme/web:{version}-{sha\"\n",
        );
        assert_mentions(
            &err,
            &[
                "instances[0] (web).image",
                "{version}",
                "{short_sha}",
                "unclosed",
            ],
        );
        parse_ok(
            "[[instances]]\nname = \"web\"\nrepo = \"acme/web\"\nenvironment = \"prod\"\nimage = \"r/{sha}{short_sha}{ref}{branch}{tag}{pr}\"\n",
        );
    }

    fn warnings(triggers: &str, image: &str) -> Vec<String> {
        parse_ok(&format!(
            "[[instances]]\nname = \"web-production\"\nrepo = \"acme/web\"\nenvironment = \"production\"\nimage = \"{image}\"\n{triggers}\n"
        ))
        .image_warnings()
    }

    #[test]
    fn a_placeholder_no_trigger_fills_is_warned_about() {
        let tag_only = warnings(
            "on_tag = [\"v*\"]\ncommands = false",
            "ghcr.io/acme/web:{branch}",
        );
        assert_eq!(tag_only.len(), 1, "{tag_only:?}");
        assert_mentions(
            &tag_only[0],
            &[
                "web-production: image uses {branch}, but only tags deploy it (on_tag); a tag deploy would be refused",
                "{tag}",
            ],
        );
        let push_only = warnings(
            "on_push = [\"main\"]\ncommands = false",
            "ghcr.io/acme/web:{tag}",
        );
        assert_mentions(
            &push_only.join("\n"),
            &["image uses {tag}, but only pushes to branches deploy it (on_push)"],
        );
        let both = warnings(
            "on_push = [\"main\"]\non_tag = [\"v*\"]\ncommands = true",
            "r:{pr}",
        );
        assert_eq!(both.len(), 2, "{both:?}");
        assert_mentions(
            &both.join("\n"),
            &[
                "which pushes to branches (on_push) do not provide",
                "which tags (on_tag) do not provide",
            ],
        );
    }

    #[test]
    fn placeholders_every_trigger_fills_pass_quietly() {
        for (triggers, image) in [
            (
                "on_push = [\"main\"]\non_tag = [\"v*\"]",
                "r:{sha}-{short_sha}-{ref}",
            ),
            ("on_push = [\"main\"]\ncommands = false", "r:{branch}"),
            ("on_tag = [\"v*\"]\ncommands = false", "r:{tag}"),
            ("on_push = [\"main\"]", "r:{branch}"),
            ("", "r:{branch}-pr{pr}"),
            // No trigger: only the API deploys, naming its image.
            ("commands = false", "r:{tag}"),
        ] {
            assert!(
                warnings(triggers, image).is_empty(),
                "{triggers} {image}: {:?}",
                warnings(triggers, image)
            );
        }
    }

    /// The placeholders each trigger is said to fill are the ones the rendering fills.
    #[test]
    fn each_trigger_fills_what_rendering_fills() {
        use super::Trigger;
        use crate::github::image::{ImageVars, render_image};
        let sha = "a10867b14bb761a232cd80139fbd4c0d33264240";
        let cases = [
            (
                Trigger::Push,
                ImageVars {
                    sha,
                    git_ref: "refs/heads/main",
                    branch: Some("main"),
                    tag: None,
                    pr: None,
                },
            ),
            (
                Trigger::Tag,
                ImageVars {
                    sha,
                    git_ref: "refs/tags/v1",
                    branch: None,
                    tag: Some("v1"),
                    pr: None,
                },
            ),
            (
                Trigger::Comment,
                ImageVars {
                    sha,
                    git_ref: "refs/heads/feature",
                    branch: Some("feature"),
                    tag: None,
                    pr: Some(7),
                },
            ),
        ];
        for (trigger, vars) in cases {
            for placeholder in super::IMAGE_PLACEHOLDERS {
                let rendered = render_image(&format!("r:{{{placeholder}}}"), &vars).is_ok();
                assert_eq!(
                    rendered,
                    trigger.provides().contains(placeholder),
                    "{trigger:?} {{{placeholder}}}"
                );
            }
        }
    }
}
