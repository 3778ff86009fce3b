//! The placeholders an instance's `image` may hold (`{sha}`, `{branch}`, `{tag}`, …), and the
//! check that it holds no others.

use super::checks::Checker;

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
}
