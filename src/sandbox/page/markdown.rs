//! A comment's Markdown as GitHub renders it, from untrusted input: pulldown-cmark with
//! GitHub's extensions, line breaks kept, and raw HTML reduced to what is safe. HTML
//! comments vanish (as on GitHub), `<details>`, `<summary>` and `<br>` stay (balanced),
//! and every other tag shows as the text it is. Links and images keep only `http`,
//! `https`, `mailto` and relative addresses. An image shows as a link to it (its alt
//! text, else its address): viewers' browsers load nothing a commenter names.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};

use crate::server::pages::escape_into;

/// The HTML of `markdown`, safe to place inside an element.
pub(super) fn render(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_GFM;
    let mut raw = RawHtml::default();
    let mut events: Vec<Event> = Vec::new();
    let mut block: Option<String> = None;
    // Each open image: where its link starts in `events`, and the text it shows if empty.
    let mut images: Vec<(usize, String)> = Vec::new();
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(Tag::HtmlBlock) => block = Some(String::new()),
            Event::End(TagEnd::HtmlBlock) => {
                let text = block.take().unwrap_or_default();
                events.push(Event::Html(raw.clean(&text).into()));
            }
            Event::Html(text) | Event::InlineHtml(text) => match block.as_mut() {
                Some(block) => block.push_str(&text),
                None => events.push(Event::InlineHtml(raw.clean(&text).into())),
            },
            Event::SoftBreak => events.push(Event::HardBreak),
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let dest_url = safe_url(dest_url);
                let shown = if &*dest_url == "#" {
                    "image"
                } else {
                    &dest_url
                };
                images.push((events.len(), shown.to_string()));
                let link = Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                };
                events.push(Event::Start(link));
            }
            Event::End(TagEnd::Image) => {
                if let Some((start, shown)) = images.pop()
                    && events.len() == start + 1
                {
                    events.push(Event::Text(shown.into()));
                }
                events.push(Event::End(TagEnd::Link));
            }
            Event::Start(tag) => events.push(Event::Start(safe_tag(tag))),
            other => events.push(other),
        }
    }
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events.into_iter());
    out.push_str(&raw.close_all());
    out
}

/// A link or image whose address could run script loses the address.
fn safe_tag(tag: Tag<'_>) -> Tag<'_> {
    match tag {
        Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        } => Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        },
        Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        } => Tag::Image {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        },
        other => other,
    }
}

fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    if is_safe_url(&url) {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

/// True for `http:`, `https:` and `mailto:` addresses and for relative ones (no scheme).
pub(super) fn is_safe_url(url: &str) -> bool {
    let url = url.trim();
    let scheme_end = url.find([':', '/', '?', '#']);
    match scheme_end {
        Some(i) if url[i..].starts_with(':') => {
            let scheme = url[..i].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
        _ => !url.chars().any(|c| c.is_control()),
    }
}

/// Raw HTML of one document, cleaned piece by piece; remembers the open `<details>` and
/// `<summary>` so that a stray close tag is dropped and an unclosed one is closed.
#[derive(Default)]
struct RawHtml {
    open: Vec<&'static str>,
}

impl RawHtml {
    fn clean(&mut self, raw: &str) -> String {
        let mut out = String::with_capacity(raw.len() + 16);
        let mut rest = raw;
        while let Some(start) = rest.find('<') {
            escape_into(&mut out, &rest[..start]);
            rest = &rest[start..];
            if let Some(after) = rest.strip_prefix("<!--") {
                // A comment: hidden, as GitHub hides it; unterminated, the rest is hidden.
                rest = after.find("-->").map_or("", |end| &after[end + 3..]);
                continue;
            }
            let end = rest.find('>').map_or(rest.len(), |i| i + 1);
            let (tag, after) = rest.split_at(end);
            match self.allowed(tag) {
                Some(safe) => out.push_str(&safe),
                None => escape_into(&mut out, tag),
            }
            rest = after;
        }
        escape_into(&mut out, rest);
        out
    }

    /// The tag as it may be written out, when it is one that is allowed.
    fn allowed(&mut self, tag: &str) -> Option<String> {
        let inner = tag.strip_prefix('<')?.strip_suffix('>')?.trim();
        let (closing, name) = match inner.strip_prefix('/') {
            Some(name) => (true, name.trim()),
            None => (false, inner.trim_end_matches('/').trim()),
        };
        let name = name.to_ascii_lowercase();
        let (name, written) = match name.as_str() {
            "br" if !closing => return Some("<br>".to_string()),
            "details open" if !closing => ("details", "<details open>"),
            "details" => ("details", "<details>"),
            "summary" => ("summary", "<summary>"),
            _ => return None,
        };
        if !closing {
            self.open.push(name);
            return Some(written.to_string());
        }
        let at = self.open.iter().rposition(|open| *open == name)?;
        let closed: String = self.open[at..]
            .iter()
            .rev()
            .map(|open| format!("</{open}>"))
            .collect();
        self.open.truncate(at);
        Some(closed)
    }

    /// Close tags for whatever is still open.
    fn close_all(&mut self) -> String {
        self.open
            .drain(..)
            .rev()
            .map(|open| format!("</{open}>"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn lists_code_and_emphasis_become_html() {
        let html = render("Plan:\n\n- one\n- **two**\n\n`code` and ~~gone~~");
        assert!(
            html.contains("<ul>\n<li>one</li>\n<li><strong>two</strong></li>"),
            "{html}"
        );
        assert!(html.contains("<code>code</code>"), "{html}");
        assert!(html.contains("<del>gone</del>"), "{html}");
    }

    #[test]
    fn details_stay_and_markdown_inside_them_renders() {
        let html =
            render("<details>\n<summary>Plan output</summary>\n\n```\n+ web\n```\n\n</details>");
        assert!(
            html.contains("<details>\n<summary>Plan output</summary>"),
            "{html}"
        );
        assert!(html.contains("<pre><code>+ web\n</code></pre>"), "{html}");
        assert!(html.trim_end().ends_with("</details>"), "{html}");
    }

    #[test]
    fn hostile_html_shows_as_text() {
        for (input, shown) in [
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            (
                "hi <img src=x onerror=alert(1)>",
                "&lt;img src=x onerror=alert(1)&gt;",
            ),
            (
                "<details ontoggle=alert(1)>x",
                "&lt;details ontoggle=alert(1)&gt;",
            ),
            ("<iframe src=//evil>", "&lt;iframe src=//evil&gt;"),
        ] {
            let html = render(input);
            assert!(html.contains(shown), "{input} → {html}");
            assert!(
                !html.contains("<script") && !html.contains("<img") && !html.contains("<iframe"),
                "{html}"
            );
        }
    }

    #[test]
    fn comments_vanish_and_stray_tags_balance() {
        let html = render("done\n\n<!-- deploybot:reply:abc -->");
        assert!(!html.contains("deploybot:reply"), "{html}");
        let html = render("</details></summary>text <details>open");
        assert!(!html.contains("</details></summary>text"), "{html}");
        assert_eq!(
            html.matches("<details>").count(),
            html.matches("</details>").count(),
            "{html}"
        );
    }

    #[test]
    fn script_addresses_are_dropped() {
        let html = render("[click](javascript:alert(1)) [ok](https://example.com/x) [rel](/a?b#c)");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("href=\"https://example.com/x\""), "{html}");
        assert!(html.contains("href=\"/a?b#c\""), "{html}");
        let html = render("![x](data:text/html;base64,AAAA) [y](JaVaScRiPt:x)");
        assert!(
            !html.contains("data:") && !html.to_lowercase().contains("javascript"),
            "{html}"
        );
    }

    #[test]
    fn images_show_as_links_and_nothing_is_loaded() {
        let html = render(
            "see ![the chart](https://evil.example/p.png) and ![](https://evil.example/q.png)",
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("<a href=\"https://evil.example/p.png\">the chart</a>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"https://evil.example/q.png\">https://evil.example/q.png</a>"),
            "{html}"
        );
    }

    #[test]
    fn line_breaks_in_a_comment_are_kept() {
        assert!(render("one\ntwo").contains("one<br />\ntwo"));
    }
}
