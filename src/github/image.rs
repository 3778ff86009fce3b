//! What a trigger deploys: an instance's image template filled from the commit, branch,
//! tag or pull request, and the short commit form notes and replies show.

/// Values for the image template's placeholders; a placeholder without a value is an error.
#[derive(Debug, Default, Clone)]
pub struct ImageVars<'a> {
    pub sha: &'a str,
    pub git_ref: &'a str,
    pub branch: Option<&'a str>,
    pub tag: Option<&'a str>,
    pub pr: Option<u64>,
}

/// Fills `{sha} {short_sha} {ref} {branch} {tag} {pr}` in an image template.
pub fn render_image(template: &str, vars: &ImageVars<'_>) -> Result<String, String> {
    let short: String = vars.sha.chars().take(7).collect();
    let pr = vars.pr.map(|n| n.to_string());
    let mut out = String::with_capacity(template.len() + 40);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &rest[start + 1..start + len];
        let value = match name {
            "sha" => Some(vars.sha),
            "short_sha" => Some(short.as_str()),
            "ref" => Some(vars.git_ref),
            "branch" => vars.branch,
            "tag" => vars.tag,
            "pr" => pr.as_deref(),
            _ => None,
        };
        match value {
            Some(v) if !v.is_empty() => out.push_str(&sanitize_tag(v)),
            _ => {
                return Err(format!(
                    "the image template {template:?} uses {{{name}}}, which this trigger does not provide"
                ));
            }
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Branch names may hold characters an image reference cannot (`feature/x`): keep the
/// reference valid and free of anything a shell or a registry would read specially.
fn sanitize_tag(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A commit's short form, as notes and replies show it.
pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_rendered_and_missing_values_refused() {
        let vars = ImageVars {
            sha: "a10867b14bb761a232cd80139fbd4c0d33264240",
            git_ref: "refs/heads/feature/x",
            branch: Some("feature/x"),
            tag: None,
            pr: Some(42),
        };
        assert_eq!(
            render_image("ghcr.io/acme/web:{short_sha}-{branch}-pr{pr}", &vars).unwrap(),
            "ghcr.io/acme/web:a10867b-feature-x-pr42"
        );
        let err = render_image("ghcr.io/acme/web:{tag}", &vars).unwrap_err();
        assert!(err.contains("{tag}"), "{err}");
        // Shell metacharacters from a branch name never survive into the image.
        let evil = ImageVars {
            branch: Some("main;rm -rf ~"),
            ..vars.clone()
        };
        assert_eq!(
            render_image("img:{branch}", &evil).unwrap(),
            "img:main-rm--rf--"
        );
        let evil = ImageVars {
            tag: Some("$(reboot)"),
            ..vars
        };
        assert_eq!(render_image("img:{tag}", &evil).unwrap(), "img:--reboot-");
    }
}
