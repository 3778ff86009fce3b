//! A gate's query with its placeholders filled: each value escaped for the PromQL string
//! it stands in, so that no value can close that string and change the query.

use std::fmt::Write as _;

use crate::config::QueryPart;
use crate::deploy::provider::{GatePoint, RunContext};

/// The value of the placeholder `name` for `run` at `at`.
pub(super) fn value_of(name: &str, run: &RunContext, at: &GatePoint) -> String {
    match name {
        "instance" => run.instance.clone(),
        "environment" => run.environment.clone(),
        "version" => run.release.version.to_string(),
        "slot" => at.slot.clone(),
        "canary_percent" => at.traffic_percent.to_string(),
        _ => String::new(),
    }
}

/// The query: text as written, each placeholder replaced by its value, escaped for the
/// string it stands in (outside strings only numbers stand, as they are).
pub(super) fn render(parts: &[QueryPart], value: impl Fn(&str) -> String) -> String {
    let mut query = String::new();
    for part in parts {
        match part {
            QueryPart::Text(text) => query.push_str(text),
            QueryPart::Value {
                name,
                quote: Some(quote),
            } => query.push_str(&escaped(&value(name), *quote)),
            QueryPart::Value { name, quote: None } => {
                let value = value(name);
                // Only the numeric placeholders stand outside strings; anything else in
                // their place is quoted, so it can never be read as PromQL.
                if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
                    query.push_str(&value);
                } else {
                    query.push('"');
                    query.push_str(&escaped(&value, '"'));
                    query.push('"');
                }
            }
        }
    }
    query
}

/// `value` written inside a PromQL string opened by `quote` (`"` or `'`): the backslash
/// and that quote escaped, line breaks and other control characters as escapes.
pub(super) fn escaped(value: &str, quote: char) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_query;

    /// Reads the PromQL string literal that opens at `query[start]` as Prometheus's lexer
    /// does (Go escapes), giving its value and where it ends.
    fn literal_at(query: &str, start: usize) -> (String, usize) {
        let quote = query[start..].chars().next().expect("a quote");
        let mut value = String::new();
        let mut chars = query[start + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, e) = chars.next().expect("an escape");
                    match e {
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        't' => value.push('\t'),
                        'u' => {
                            let hex: String = (0..4).map(|_| chars.next().unwrap().1).collect();
                            let code = u32::from_str_radix(&hex, 16).expect("hex");
                            value.push(char::from_u32(code).expect("a char"));
                        }
                        e if e == '\\' || e == quote => value.push(e),
                        e => panic!("PromQL refuses the escape \\{e} in {query}"),
                    }
                }
                c if c == quote => return (value, start + 1 + i + 1),
                '\n' => panic!("an unescaped line break in a string: {query}"),
                c => value.push(c),
            }
        }
        panic!("unclosed string in {query}");
    }

    const HOSTILE: &[&str] = &[
        "web",
        "web\"} or vector(1) # ",
        "web\\",
        "web\\\"",
        "\\\\\"",
        "it's",
        "line\nbreak\r\tand\u{0}nul\u{7f}\u{85}\u{2028}",
        "{{instance}}",
        "\"",
        "'",
        "",
        "ünïcødé ✓",
    ];

    #[test]
    fn a_hostile_value_stays_inside_its_double_quoted_string() {
        let parts = parse_query("up{instance=\"{{instance}}\",job=\"web\"} > 0").unwrap();
        for value in HOSTILE {
            let query = render(&parts, |_| value.to_string());
            assert!(query.starts_with("up{instance=\""), "{query}");
            let (read, end) = literal_at(&query, "up{instance=".len());
            assert_eq!(read, *value, "{query}");
            assert_eq!(&query[end..], ",job=\"web\"} > 0", "{query}");
        }
    }

    #[test]
    fn a_hostile_value_stays_inside_its_single_quoted_string() {
        let parts = parse_query("up{env='{{environment}}'}").unwrap();
        for value in HOSTILE {
            let query = render(&parts, |_| value.to_string());
            let (read, end) = literal_at(&query, "up{env=".len());
            assert_eq!(read, *value, "{query}");
            assert_eq!(&query[end..], "}", "{query}");
        }
    }

    #[test]
    fn values_are_filled_once_and_numbers_stand_as_they_are() {
        let parts =
            parse_query("x{slot=\"{{slot}}\",v=\"{{version}}\"} * {{canary_percent}} / 100")
                .unwrap();
        let query = render(&parts, |name| match name {
            "slot" => "{{canary_percent}}".to_string(),
            "version" => "12".to_string(),
            _ => "50".to_string(),
        });
        assert_eq!(query, "x{slot=\"{{canary_percent}}\",v=\"12\"} * 50 / 100");
        // Something other than a number outside a string is quoted, never PromQL.
        let parts = parse_query("x > {{version}}").unwrap();
        assert_eq!(render(&parts, |_| "1 or up".into()), "x > \"1 or up\"");
    }
}
