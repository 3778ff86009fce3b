//! A tiny HTML writer that makes escaping the default. Markup goes in only as
//! `&'static str` (text written in this source file); every runtime value goes through
//! [`Html::text`], which escapes it. So a branch name, a note or a log line from the
//! database or GitHub can never become markup, whatever it contains.

use std::fmt::{self, Display, Write};

/// An HTML document or fragment being written.
#[derive(Default)]
pub(super) struct Html {
    out: String,
}

impl Html {
    pub(super) fn new() -> Self {
        Self {
            out: String::with_capacity(16 * 1024),
        }
    }

    /// Appends markup written in this crate's source.
    pub(super) fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.out.push_str(markup);
        self
    }

    /// Appends a value as text, escaped for element content and quoted attribute values.
    pub(super) fn text(&mut self, value: impl Display) -> &mut Self {
        // Writing into a String cannot fail.
        let _ = write!(Escaper(&mut self.out), "{value}");
        self
    }

    /// The finished HTML.
    pub(super) fn finish(self) -> String {
        self.out
    }
}

/// A `fmt::Write` that escapes what goes through it.
struct Escaper<'a>(&'a mut String);

impl Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'`: safe in element content and in attribute values
/// quoted with either quote. The sandbox's pages escape with it too.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A log line made readable: ANSI colour and cursor sequences removed, other control
/// characters (except tab) dropped, so the line shows as the text a terminal would print.
pub(super) fn clean_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters… final byte in @..~ ; other escapes: ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for n in chars.by_ref() {
                        if ('@'..='~').contains(&n) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_raw_is_not() {
        let mut html = Html::new();
        html.raw("<p title=\"")
            .text("a\"b'<c>&")
            .raw("\">")
            .text("<script>alert(1)</script>")
            .raw("</p>");
        assert_eq!(
            html.finish(),
            "<p title=\"a&quot;b&#39;&lt;c&gt;&amp;\">&lt;script&gt;alert(1)&lt;/script&gt;</p>"
        );
    }

    #[test]
    fn clean_line_strips_terminal_sequences() {
        assert_eq!(
            clean_line("\u{1b}[1;32mok\u{1b}[0m done\r\u{7}\tx"),
            "ok done\tx"
        );
        assert_eq!(clean_line("plain <b>"), "plain <b>");
    }
}
