//! `docs/configuration.md` checked against the parser and the code:
//!
//! - every key the file's shape (`shape::RawConfig`) accepts is documented, and every
//!   documented key is one it accepts. The keys are read from the shape itself: a
//!   recording `Deserializer` walks `RawConfig` and notes the `fields` of every struct,
//!   through options, sequences and maps, as dotted paths (`instances.provider.run`);
//! - every environment variable the code reads, and every `DEPLOY_*` variable a deploy
//!   command gets, is named;
//! - every TOML example in the page is a valid configuration.
//!
//! In the page, a key is a row of a table whose header starts with `key`, under a heading
//! that names its table in backticks (`` `[github]` ``, `` `[[instances]]` ``) or says
//! "top level"; the row's first cell is the key in backticks.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Deserialize;
use serde::de::value::Error as DeError;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::Config;
use super::shape::RawConfig;

/// The page, relative to the crate.
const PAGE: &str = "docs/configuration.md";

/// Variables the code reads only in builds that are never deployed: the `bench-floor`
/// feature's switch (benches only).
const NOT_FOR_USERS: &[&str] = &["DEPLOYBOT_BENCH_FLOOR"];

/// The columns of a key table.
const KEY_COLUMNS: [&str; 5] = ["key", "type", "default", "environment", "what it does"];

/// Walks a `Deserialize` type, recording the dotted path of every struct field it reaches.
#[derive(Clone)]
struct Recorder {
    prefix: String,
    keys: Rc<RefCell<BTreeSet<String>>>,
}

impl Recorder {
    fn at(&self, name: &str) -> Recorder {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Recorder {
            prefix,
            keys: Rc::clone(&self.keys),
        }
    }
}

/// A struct's fields as a map: each field once, its value recorded under its path.
struct Fields {
    recorder: Recorder,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(field.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let field = self.fields[self.next];
        self.next += 1;
        seed.deserialize(self.recorder.at(field))
    }
}

/// A map with one entry, keyed `*`: what a map's values hold is recorded under `PATH.*`.
struct OneEntry {
    recorder: Option<Recorder>,
}

impl<'de> de::MapAccess<'de> for OneEntry {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.recorder {
            Some(_) => seed.deserialize("*".into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let recorder = self.recorder.take().expect("a value follows its key");
        seed.deserialize(recorder.at("*"))
    }
}

/// A sequence with one item, recorded under the sequence's own path (`instances.name`).
struct OneItem {
    recorder: Option<Recorder>,
}

impl<'de> de::SeqAccess<'de> for OneItem {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.recorder
            .take()
            .map(|r| seed.deserialize(r))
            .transpose()
    }
}

/// Deserializer methods that hand their visitor one fixed value.
macro_rules! fixed_value {
    ($($method:ident)+ => $visit:ident $args:tt) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                visitor.$visit $args
            }
        )+
    };
}

impl<'de> de::Deserializer<'de> for Recorder {
    type Error = DeError;

    /// `toml::Value` asks for anything: a string will do.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str("")
    }

    fixed_value!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 => visit_i64(1));
    fixed_value!(deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 => visit_u64(1));
    fixed_value!(deserialize_f32 deserialize_f64 => visit_f64(1.0));
    fixed_value!(deserialize_bool => visit_bool(false));
    fixed_value!(deserialize_char => visit_char('x'));
    fixed_value!(deserialize_unit => visit_unit());

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(OneItem {
            recorder: Some(self),
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(OneEntry {
            recorder: Some(self),
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        for field in fields {
            self.keys.borrow_mut().insert(self.at(field).prefix);
        }
        visitor.visit_map(Fields {
            recorder: self,
            fields,
            next: 0,
        })
    }

    /// An enum of unit variants (a kind written as a string): its first variant.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(first.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i128 u128 str string bytes byte_buf unit_struct tuple tuple_struct identifier ignored_any
    }
}

/// Every key the parser accepts, as dotted paths (`instances.provider.run`).
fn accepted_keys() -> BTreeSet<String> {
    let recorder = Recorder {
        prefix: String::new(),
        keys: Rc::default(),
    };
    let keys = Rc::clone(&recorder.keys);
    if let Err(e) = RawConfig::deserialize(recorder) {
        panic!("walking the config shape failed (teach the recorder this shape): {e}");
    }
    keys.take()
}

fn page_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(PAGE)
}

fn page() -> String {
    std::fs::read_to_string(page_path()).unwrap_or_else(|e| panic!("{PAGE} must exist: {e}"))
}

/// The table a heading names: `[github]` → `github`, `[[api.tokens]]` → `api.tokens`,
/// "Top-level keys" → the empty path; `None` for any other heading.
fn heading_table(heading: &str) -> Option<String> {
    let named = heading
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|code| code.starts_with('[') && code.ends_with(']'));
    match named {
        Some(code) => Some(code.trim_matches(|c| c == '[' || c == ']').to_string()),
        None => {
            let lower = heading.to_ascii_lowercase();
            (lower.contains("top level") || lower.contains("top-level")).then(String::new)
        }
    }
}

/// A table row's cells; `\|` is a `|` inside a cell.
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().replace("\\|", "\u{0}");
    let inner = inner.trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|c| c.trim().replace('\u{0}', "|"))
        .collect()
}

/// One key row: the key's dotted path; each of its cells must say something.
fn key_row(table: &str, row: &[String], line: usize) -> String {
    assert_eq!(
        row.len(),
        KEY_COLUMNS.len(),
        "{PAGE}:{line}: a key row has the columns {KEY_COLUMNS:?}"
    );
    assert!(
        row.iter().all(|c| !c.is_empty()),
        "{PAGE}:{line}: every cell of a key row says something (write \"none\" or \"—\")"
    );
    let key = row[0].trim_matches('`');
    assert!(
        row[0].starts_with('`') && !key.is_empty() && !key.contains('`'),
        "{PAGE}:{line}: a key row starts with the key in backticks, e.g. `listen`"
    );
    match table {
        "" => key.to_string(),
        table => format!("{table}.{key}"),
    }
}

/// `api.tokens` and its parents: `api`, `api.tokens`.
fn with_parents(table: &str) -> Vec<String> {
    let parts: Vec<&str> = table.split('.').collect();
    (1..=parts.len()).map(|n| parts[..n].join(".")).collect()
}

/// Whether a table row is the line under its header (`| --- | :-: |`).
fn is_separator(row: &str) -> bool {
    cells(row)
        .iter()
        .all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':'))
}

/// Every key the page documents: the rows of its key tables and the tables its headings
/// name (with their parents: `[[api.tokens]]` documents `api` too). Code blocks are skipped.
fn documented_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut table: Option<String> = None;
    let mut in_code = false;
    let mut in_key_table = false;
    let mut previous_was_row = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        if trimmed.starts_with('#') {
            table = heading_table(trimmed);
            keys.extend(
                table
                    .iter()
                    .filter(|t| !t.is_empty())
                    .flat_map(|t| with_parents(t)),
            );
        }
        let is_row = trimmed.starts_with('|');
        if is_row && !previous_was_row {
            in_key_table = cells(trimmed).first().is_some_and(|c| c == KEY_COLUMNS[0]);
        } else if is_row && in_key_table && !is_separator(trimmed) {
            let Some(named) = &table else {
                panic!(
                    "{PAGE}:{}: a key table under a heading that names no table",
                    n + 1
                );
            };
            keys.insert(key_row(named, &cells(trimmed), n + 1));
        }
        previous_was_row = is_row;
    }
    keys
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `name` looks like an environment variable (`A-Z`, `0-9`, `_`).
fn is_variable(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The string literals in `text` that start right after `marker` and look like variable
/// names; `keep` is put back in front (the part of the literal the marker holds).
fn names_after(text: &str, marker: &str, keep: &str, out: &mut BTreeSet<String>) {
    for (at, _) in text.match_indices(marker) {
        let rest = &text[at + marker.len()..];
        let Some(end) = rest.find('"') else { continue };
        let name = format!("{keep}{}", &rest[..end]);
        if end > 0 && is_variable(&name) {
            out.insert(name);
        }
    }
}

/// Every variable named in `src/` where the code reads the environment (`env("…")`,
/// `std::env::var("…")`, clap's `env = "…"`, `…_ENV: &str = "…"`), and every `DEPLOY_*`
/// name it gives a child process.
fn variables_in_code() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let this_file = Path::new(file!()).file_name().expect("file name");
    let mut names = BTreeSet::new();
    for file in files.iter().filter(|f| f.file_name() != Some(this_file)) {
        let text = std::fs::read_to_string(file).expect("read source");
        for marker in [
            "env(\"",
            "env = \"",
            "var(\"",
            "var_os(\"",
            "_ENV: &str = \"",
            "pick(env, \"",
        ] {
            names_after(&text, marker, "", &mut names);
        }
        names_after(&text, "\"DEPLOY_", "DEPLOY_", &mut names);
    }
    names.retain(|n| !NOT_FOR_USERS.contains(&n.as_str()));
    names
}

/// The page's ```toml blocks.
fn toml_examples(text: &str) -> Vec<(usize, String)> {
    let mut examples = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        match (&mut current, line.trim()) {
            (None, "```toml") => current = Some((n + 2, String::new())),
            (Some(_), "```") => examples.extend(current.take()),
            (Some((_, block)), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    examples
}

#[test]
fn every_key_the_parser_accepts_is_documented_and_every_documented_key_is_accepted() {
    let accepted = accepted_keys();
    assert!(
        accepted.contains("instances.provider.run") && accepted.contains("api.tokens.sha256"),
        "the walk reaches nested tables: {accepted:?}"
    );
    let documented = documented_keys(&page());
    let undocumented: Vec<_> = accepted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "the config file accepts keys that {PAGE} does not list; add a row for each under the heading of its table: {undocumented:?}"
    );
    let rejected: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        rejected.is_empty(),
        "{PAGE} lists keys that the config file rejects as unknown; remove or fix them: {rejected:?}"
    );
}

#[test]
fn every_environment_variable_the_code_reads_is_documented() {
    let page = page();
    let names = variables_in_code();
    for expected in [
        "DATABASE_URL",
        "DEPLOYBOT_URL",
        "DEPLOYBOT_LOG",
        "DEPLOY_IMAGE",
    ] {
        assert!(
            names.contains(expected),
            "the scan finds {expected}: {names:?}"
        );
    }
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !page.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "the code reads (or gives deploy commands) environment variables that {PAGE} does not name in backticks: {missing:?}"
    );
}

#[test]
fn every_toml_example_in_the_page_is_a_valid_configuration() {
    let page = page();
    let examples = toml_examples(&page);
    assert!(examples.len() >= 2, "{PAGE} starts with a complete example");
    for (line, example) in examples {
        if let Err(e) = Config::from_toml_str(&example, &|_| None) {
            panic!("{PAGE}:{line}: the example is not a valid configuration: {e}");
        }
    }
}

#[test]
fn a_key_the_page_does_not_list_is_found() {
    let text = "## `[worker]`\n\n| key | type | default | environment | what it does |\n| --- | --- | --- | --- | --- |\n| `concurrency` | integer | `4` | — | deployments at once |\n";
    let documented = documented_keys(text);
    assert_eq!(
        documented,
        BTreeSet::from(["worker".to_string(), "worker.concurrency".to_string()])
    );
    let accepted = accepted_keys();
    assert!(accepted.contains("worker.lease") && !documented.contains("worker.lease"));
}
