//! The table of instances `deploybot config check` prints.

use super::{Config, InstanceConfig, ProviderKind};

/// The table's columns.
const HEADER: [&str; 7] = [
    "NAME",
    "TENANT",
    "REPO",
    "ENVIRONMENT",
    "STRATEGY",
    "PROVIDER",
    "TRIGGERS",
];

impl Config {
    /// Human-readable table of instances for `deploybot config check` (name, tenant, repo,
    /// environment, strategy, provider, triggers).
    pub fn describe(&self) -> String {
        if self.instances.is_empty() {
            return "no instances configured (add an [[instances]] table to the config file)\n"
                .to_string();
        }
        let mut rows: Vec<[String; 7]> = vec![HEADER.map(str::to_string)];
        rows.extend(self.instances.iter().map(row));
        render(&rows)
    }
}

/// One instance's cells, in the order of `HEADER`.
fn row(i: &InstanceConfig) -> [String; 7] {
    let provider = match (i.provider.kind, i.provider.run.first()) {
        (ProviderKind::Command, Some(program)) => format!("command {program}"),
        (kind, _) => kind.as_str().to_string(),
    };
    let mut triggers = Vec::new();
    if !i.on_push.is_empty() {
        triggers.push(format!("push {}", i.on_push.join(",")));
    }
    if !i.on_tag.is_empty() {
        triggers.push(format!("tag {}", i.on_tag.join(",")));
    }
    if i.commands {
        triggers.push("/deploy".to_string());
    }
    if triggers.is_empty() {
        triggers.push("API only".to_string());
    }
    [
        i.name.clone(),
        i.tenant(),
        i.repo.clone(),
        i.environment.clone(),
        i.strategy.as_str().to_string(),
        provider,
        triggers.join("; "),
    ]
}

/// The rows as text, each column padded to its widest cell plus two spaces.
fn render(rows: &[[String; 7]]) -> String {
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (col, cell) in row.iter().enumerate() {
            if col + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[col] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
