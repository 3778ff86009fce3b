//! Text for GitHub's Markdown: whatever a person typed, shown so that it renders as it
//! is and mentions nobody.

/// `text` as an inline code span that nothing inside can close early (the fence is longer
/// than any run of backticks in it), on one line, so it renders literally and mentions
/// nobody.
pub(crate) fn code_span(text: &str) -> String {
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') || text.trim().is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_are_fenced_longer_than_any_backtick_run_inside() {
        assert_eq!(code_span("A=b"), "`A=b`");
        assert_eq!(code_span("A=b`c"), "``A=b`c``");
        assert_eq!(code_span("`x"), "`` `x ``");
        assert_eq!(code_span(" "), "`   `");
    }
}
