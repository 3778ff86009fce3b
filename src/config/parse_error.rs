//! Messages for a file that is not TOML or does not fit the shape: `FILE:LINE:COLUMN: KEY
//! PATH: message`, naming the instance of an `instances[N]` path, and never echoing the
//! source line (it may hold a secret).

use std::path::Path;

/// `FILE:LINE:COLUMN: KEY PATH: message`, without echoing the source line (it may hold a secret).
pub(super) fn toml_error_message(
    text: &str,
    file: Option<&Path>,
    error: &toml::de::Error,
) -> String {
    let mut out = match file {
        Some(f) => f.display().to_string(),
        None => "config".to_string(),
    };
    let mut key_path = None;
    if let Some(span) = error.span() {
        let (line, column) = line_column(text, span.start);
        out.push_str(&format!(":{line}:{column}"));
        if let Ok(doc) = toml::de::DeTable::parse(text) {
            let mut path = Vec::new();
            if find_path(doc.get_ref(), span.start, &mut path) {
                key_path = Some(render_path(doc.get_ref(), &path));
            }
        }
    }
    out.push_str(": ");
    if let Some(key_path) = key_path {
        out.push_str(&key_path);
        out.push_str(": ");
    }
    let message = error.message().trim_end();
    out.push_str(message);
    if message.starts_with("unknown field") {
        out.push_str(" (remove the key or fix its spelling)");
    } else if message.starts_with("invalid type") && message.contains("expected a string") {
        out.push_str(" (write the value in quotes, e.g. \"30s\")");
    }
    out
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, last)| last)
        .chars()
        .count()
        + 1;
    (line, column)
}

enum Segment {
    Key(String),
    Index(usize),
}

type Spanned<T> = toml::Spanned<T>;

/// Finds the key path whose key or scalar value covers `offset`.
fn find_path(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<Segment>) -> bool {
    for (key, value) in table.iter() {
        path.push(Segment::Key(key.get_ref().to_string()));
        if key.span().contains(&offset) || find_in_value(value, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(
    value: &Spanned<toml::de::DeValue<'_>>,
    offset: usize,
    path: &mut Vec<Segment>,
) -> bool {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => {
            find_path(table, offset, path) || value.span().contains(&offset)
        }
        toml::de::DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                path.push(Segment::Index(index));
                if find_in_value(item, offset, path) {
                    return true;
                }
                path.pop();
            }
            value.span().contains(&offset)
        }
        _ => value.span().contains(&offset),
    }
}

/// `instances[1] (web-production).provider.timeout`.
fn render_path(root: &toml::de::DeTable<'_>, path: &[Segment]) -> String {
    let mut out = String::new();
    for (n, segment) in path.iter().enumerate() {
        match segment {
            Segment::Key(key) => {
                if n > 0 {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => {
                out.push_str(&format!("[{index}]"));
                let is_instance = n == 1 && matches!(&path[0], Segment::Key(k) if k == "instances");
                if is_instance && let Some(name) = raw_instance_name(root, *index) {
                    out.push_str(&format!(" ({name})"));
                }
            }
        }
    }
    out
}

fn raw_instance_name(root: &toml::de::DeTable<'_>, index: usize) -> Option<String> {
    let (_, instances) = root.iter().find(|(k, _)| k.get_ref() == "instances")?;
    let item = instances.get_ref().as_array()?.get(index)?;
    let (_, name) = item
        .get_ref()
        .as_table()?
        .iter()
        .find(|(k, _)| k.get_ref() == "name")?;
    name.get_ref().as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::test_support::*;

    #[test]
    fn unknown_top_level_key_is_named_with_line_and_column() {
        let err = parse_err("listen = \"127.0.0.1:8080\"\nlisten_addr = \"x\"\n");
        assert_mentions(&err, &["listen_addr", "config:2:1", "unknown field"]);
    }

    #[test]
    fn unknown_instance_key_names_instance_and_key() {
        let err = parse_err(&format!(
            "{}{}",
            instance("strategy = \"canary\""),
            "[instances.provider]\nkind = \"noop\"\ntiemout = \"5m\"\n"
        ));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).provider.tiemout",
                "unknown field `tiemout`",
                "timeout",
                ":9:1",
            ],
        );
    }

    #[test]
    fn unknown_key_in_file_is_prefixed_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[pages]\npublik = true\n").expect("write");
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert_mentions(
            &err,
            &[&format!("{}:2:1", path.display()), "pages.publik", "publik"],
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse_err("[worker]\nconcurrency = \"four\"\n");
        assert_mentions(&err, &["worker.concurrency", "invalid type"]);
    }
}
