//! Plain-text tables with aligned columns, and the small formatters their cells use.

use chrono::{DateTime, Utc};

/// Renders `header` and `rows` as left-aligned columns separated by two spaces; the last
/// column is not padded, so lines have no trailing blanks.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let width = widths.get(i).copied().unwrap_or(0);
                line.extend(std::iter::repeat_n(
                    ' ',
                    width.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `text` cut to `max` characters, the cut marked with `…`.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A time as `2024-05-01 12:03:04` (UTC).
pub(crate) fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A duration as `850ms`, `12.3s`, `4m05s` or `2h03m`.
pub(crate) fn duration(from: &DateTime<Utc>, to: &DateTime<Utc>) -> String {
    let ms = (*to - *from).num_milliseconds().max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// The first 7 characters of a commit SHA, or `-`.
pub(crate) fn short_sha(sha: &str) -> String {
    if sha.is_empty() {
        "-".into()
    } else {
        sha.chars().take(7).collect()
    }
}

/// `-` for an empty cell.
pub(crate) fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_without_trailing_blanks() {
        let out = render(
            &["ID", "STATE", "NOTE"],
            &[
                vec!["dep_1".into(), "succeeded".into(), "".into()],
                vec!["dep_22".into(), "failed".into(), "boom".into()],
            ],
        );
        assert_eq!(
            out,
            "ID      STATE      NOTE\n\
             dep_1   succeeded\n\
             dep_22  failed     boom\n"
        );
    }

    #[test]
    fn cells_are_clipped_and_durations_readable() {
        assert_eq!(clip("ghcr.io/acme/web:1", 8), "ghcr.io…");
        assert_eq!(clip("short", 8), "short");
        let t0 = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
        let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
        assert_eq!(duration(&t0, &at(850)), "850ms");
        assert_eq!(duration(&t0, &at(12_340)), "12.3s");
        assert_eq!(duration(&t0, &at(245_000)), "4m05s");
        assert_eq!(duration(&t0, &at(7_380_000)), "2h03m");
        assert_eq!(short_sha("6113728f27ae82c7b1a"), "6113728");
        assert_eq!(short_sha(""), "-");
    }
}
