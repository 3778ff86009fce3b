//! User text in replies. A reply is Markdown, so a lock's reason such as
//! `@org/everyone ![x](http://evil/img.png)` would mention people and load an image:
//! whatever a person typed is shown as an inline code span, and a lock's holder as the
//! login it is (`@alice`, which mentions only the holder) or, for a token, as code.

use crate::deploy::Lock;
pub(super) use crate::github::markdown::code_span;

/// A lock's holder: `@login` as it is when it is a GitHub login (the mention reaches the
/// holder only), anything else (`token:ci`) as code.
pub(super) fn holder(holder: &str) -> String {
    let is_login = holder.strip_prefix('@').is_some_and(|login| {
        (1..=39).contains(&login.len())
            && login
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if is_login {
        holder.to_string()
    } else {
        code_span(holder)
    }
}

/// "locked by @alice since … until …: `reason`": [`Lock::describe`] with the holder and
/// the reason shown safely.
pub(super) fn lock(lock: &Lock) -> String {
    let reason = if lock.reason.is_empty() {
        String::new()
    } else {
        code_span(&lock.reason)
    };
    Lock {
        holder: holder(&lock.holder),
        reason,
        ..lock.clone()
    }
    .describe()
}

/// A refusal's text that names a lock (`Error::Locked`: the lock's description, then
/// perhaps a hint), with the lock shown safely: the longest description of `held` it
/// starts with is replaced by [`lock`]. When none matches (the lock ended meanwhile), or
/// what follows is more than a plain sentence, the whole text is shown as code.
pub(super) fn locked(why: &str, held: &[Lock]) -> String {
    let found = held
        .iter()
        .filter_map(|l| why.strip_prefix(&l.describe()).map(|rest| (l, rest)))
        .min_by_key(|(_, rest)| rest.len());
    match found {
        Some((l, rest)) if plain_sentence(rest) => format!("{}{rest}", lock(l)),
        _ => code_span(why),
    }
}

/// Words and punctuation that Markdown shows as they are.
fn plain_sentence(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || " .,;:'-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{LockTarget, now};

    const HOSTILE: &str = "@org/everyone ![x](http://evil/img.png) <b>";

    fn held(holder: &str, reason: &str) -> Lock {
        Lock {
            tenant_id: "acme".into(),
            target: LockTarget::Repo {
                repo: "acme/web".into(),
            },
            repo: "acme/web".into(),
            holder: holder.into(),
            reason: reason.into(),
            pull_request: None,
            created_at: now(),
            expires_at: None,
        }
    }

    /// The text Markdown renders outside code spans (a backtick run opens a span that the
    /// next run of the same length closes).
    fn outside_code(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('`') {
            out.push_str(&rest[..at]);
            let run = rest[at..].chars().take_while(|&c| c == '`').count();
            let after = &rest[at + run..];
            let fence = "`".repeat(run);
            let close = after.char_indices().map(|(i, _)| i).find(|&i| {
                after[i..].starts_with(&fence)
                    && !after[i + run..].starts_with('`')
                    && (i == 0 || !after[..i].ends_with('`'))
            });
            match close {
                Some(i) => rest = &after[i + run..],
                None => {
                    out.push_str(&rest[at..at + run]);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn code_spans_hold_any_backticks_and_lines() {
        assert_eq!(code_span("plain"), "`plain`");
        assert_eq!(code_span("a`"), "`` a` ``");
        assert_eq!(code_span("x``y"), "```x``y```");
        assert_eq!(code_span("one\ntwo"), "`one two`");
        for text in [HOSTILE, "a` @all `b", "``@all", "`` ![i](u) ``"] {
            let shown = outside_code(&code_span(text));
            assert!(shown.is_empty(), "{text:?} leaks {shown:?}");
        }
    }

    #[test]
    fn a_lock_shows_its_reason_as_code_and_its_login_holder_as_a_mention() {
        let text = lock(&held("@alice", HOSTILE));
        assert!(text.starts_with("locked by @alice since "), "{text}");
        assert!(text.ends_with(&format!(": `{HOSTILE}`")), "{text}");
        let shown = outside_code(&text);
        for bare in ["@org", "![", "<b>"] {
            assert!(!shown.contains(bare), "{bare} outside code: {text}");
        }
        assert!(lock(&held("token:ci", "")).starts_with("locked by `token:ci` since"));
        let odd = lock(&held("@x ![i](u)", ""));
        assert!(!outside_code(&odd).contains("!["), "{odd}");
    }

    #[test]
    fn a_refusal_naming_a_lock_shows_it_safely_and_keeps_the_hint() {
        let mine = held("@alice", HOSTILE);
        let why = format!("{}. A deployer may pass it with --force.", mine.describe());
        let text = locked(&why, &[held("@alice", "@org/everyone"), mine.clone()]);
        assert_eq!(
            text,
            format!("{}. A deployer may pass it with --force.", lock(&mine))
        );
        assert!(!outside_code(&text).contains("!["), "{text}");
        let gone = locked(&why, &[]);
        assert!(outside_code(&gone).is_empty(), "{gone}");
    }
}
