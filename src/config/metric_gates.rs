//! `[[instances.gates]]`: metric health gates, Prometheus queries judged against a bound
//! after each phase that shifts traffic; and the instance's `watch`, how long they keep
//! being asked after a deployment succeeded.
//!
//! A query may hold the placeholders of [`GATE_PLACEHOLDERS`] as `{{name}}`. Those that
//! carry text (`instance`, `environment`, `slot`) belong inside a quoted PromQL string
//! (`instance="{{instance}}"`), where their values are escaped so that they stay inside
//! it; the numbers (`version`, `canary_percent`) may also stand outside strings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::ParseKindError;
use super::checks::{Checker, is_http_url};
use super::shape::RawMetricGate;

/// The placeholders a gate's `query` may hold, without braces.
pub const GATE_PLACEHOLDERS: &[&str] = &[
    "instance",
    "environment",
    "version",
    "slot",
    "canary_percent",
];

/// Placeholders whose values are numbers: they may stand outside a string.
const NUMERIC_PLACEHOLDERS: &[&str] = &["version", "canary_percent"];

/// The most measurements one gate takes per phase (`count`).
pub const MAX_GATE_COUNT: u32 = 100;

/// The longest gate name, in characters.
const MAX_NAME_CHARS: usize = 64;

/// Default `interval` between measurements.
pub const DEFAULT_GATE_INTERVAL: Duration = Duration::from_secs(30);

/// What a measurement is judged by: `max` (the value may be at most this) or `min`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GateBound {
    Max(f64),
    Min(f64),
}

/// Bounds are finite numbers (the configuration refuses NaN), so equality is total.
impl Eq for GateBound {}

impl GateBound {
    /// Whether `value` is within the bound (`value <= max`, `value >= min`); NaN never is.
    pub fn passes(self, value: f64) -> bool {
        match self {
            GateBound::Max(max) => value <= max,
            GateBound::Min(min) => value >= min,
        }
    }

    /// The configured number.
    pub fn limit(self) -> f64 {
        match self {
            GateBound::Max(v) | GateBound::Min(v) => v,
        }
    }

    /// How a value breaks the bound: `>` for `max`, `<` for `min`.
    pub fn broken_by(self) -> &'static str {
        match self {
            GateBound::Max(_) => ">",
            GateBound::Min(_) => "<",
        }
    }

    /// Of two values, the one further on the wrong side of the bound.
    pub fn worse(self, a: f64, b: f64) -> f64 {
        match self {
            GateBound::Max(_) => a.max(b),
            GateBound::Min(_) => a.min(b),
        }
    }
}

/// As shown with a reading: "≤ 0.01", "≥ 0.99".
impl fmt::Display for GateBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateBound::Max(v) => write!(f, "≤ {v}"),
            GateBound::Min(v) => write!(f, "≥ {v}"),
        }
    }
}

/// What a measurement that returns no data counts as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NoData {
    /// A failed measurement (the default).
    #[default]
    Fail,
    /// A passed measurement.
    Pass,
    /// Not counted: measured again after `interval`, up to ten times `count` in all.
    Wait,
}

impl NoData {
    const NAMES: &'static [&'static str] = &["fail", "pass", "wait"];

    pub fn as_str(self) -> &'static str {
        match self {
            NoData::Fail => "fail",
            NoData::Pass => "pass",
            NoData::Wait => "wait",
        }
    }
}

impl FromStr for NoData {
    type Err = ParseKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [NoData::Fail, NoData::Pass, NoData::Wait]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseKindError {
                what: "no_data",
                value: s.to_string(),
                valid: NoData::NAMES,
            })
    }
}

/// One `[[instances.gates]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricGateConfig {
    /// Unique within the instance; names the gate in readings, reasons and metrics.
    pub name: String,
    /// The Prometheus server's base URL (`http://prometheus:9090`), without a trailing `/`.
    pub prometheus: String,
    /// The PromQL query, with placeholders.
    pub query: String,
    pub bound: GateBound,
    /// Between measurements (default 30s).
    pub interval: Duration,
    /// Measurements per phase, 1–100 (default 1).
    pub count: u32,
    /// Failed measurements tolerated, less than `count` (default 0).
    pub failure_limit: u32,
    pub no_data: NoData,
}

impl MetricGateConfig {
    /// The query split at its placeholders (checked when the configuration was read).
    pub fn query_parts(&self) -> Result<Vec<QueryPart>, String> {
        parse_query(&self.query).map_err(|problems| problems.join("; "))
    }

    /// The gate in a few words, for `config check`: `"error rate" ≤ 0.01 (4 × 30s, …)`.
    pub fn describe(&self) -> String {
        let mut how = vec![format!(
            "{} × {}",
            self.count,
            humantime::format_duration(self.interval)
        )];
        if self.failure_limit > 0 {
            how.push(format!("tolerates {}", self.failure_limit));
        }
        how.push(format!("no data: {}", self.no_data.as_str()));
        format!("\"{}\" {} ({})", self.name, self.bound, how.join(", "))
    }
}

/// A piece of a gate's query: text as written, or a placeholder and the quote of the
/// PromQL string it stands in (`None`: outside any string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryPart {
    Text(String),
    Value {
        name: &'static str,
        quote: Option<char>,
    },
}

/// `query` split at its placeholders, or every problem with them: an unknown or unclosed
/// placeholder, a text placeholder outside a quoted string or inside a raw (`` ` ``)
/// string, or one right after a backslash.
pub fn parse_query(query: &str) -> Result<Vec<QueryPart>, Vec<String>> {
    let mut parts = Vec::new();
    let mut problems = Vec::new();
    let mut text = String::new();
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{{") {
            let Some(end) = after.find("}}") else {
                problems.push(
                    "unclosed '{{'; write placeholders like {{instance}}, closed by '}}'"
                        .to_string(),
                );
                break;
            };
            rest = &after[end + 2..];
            match placeholder(after[..end].trim(), quote) {
                Ok(part) => {
                    parts.extend(
                        (!text.is_empty()).then(|| QueryPart::Text(std::mem::take(&mut text))),
                    );
                    parts.push(part);
                }
                Err(problem) => problems.push(problem),
            }
            continue;
        }
        rest = &rest[c.len_utf8()..];
        text.push(c);
        match quote {
            _ if comment => comment = c != '\n',
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None => comment = c == '#',
            Some(q) if c == q => quote = None,
            Some(q) if c == '\\' && q != '`' => {
                if rest.starts_with("{{") {
                    problems.push(
                        "a placeholder right after a backslash; remove the backslash".to_string(),
                    );
                } else if let Some(next) = rest.chars().next() {
                    text.push(next);
                    rest = &rest[next.len_utf8()..];
                }
            }
            Some(_) => {}
        }
    }
    if !text.is_empty() {
        parts.push(QueryPart::Text(text));
    }
    if problems.is_empty() {
        Ok(parts)
    } else {
        Err(problems)
    }
}

/// The placeholder `name`, standing inside a string opened by `quote` (if any).
fn placeholder(name: &str, quote: Option<char>) -> Result<QueryPart, String> {
    let Some(&known) = GATE_PLACEHOLDERS.iter().find(|p| **p == name) else {
        let known: Vec<String> = GATE_PLACEHOLDERS
            .iter()
            .map(|p| format!("{{{{{p}}}}}"))
            .collect();
        return Err(format!(
            "unknown placeholder {{{{{name}}}}}; use {}",
            known.join(" ")
        ));
    };
    match quote {
        Some('`') => Err(format!(
            "{{{{{known}}}}} is inside a `…` string, where its value cannot be escaped; write \
             the string in double quotes, e.g. instance=\"{{{{instance}}}}\""
        )),
        None if !NUMERIC_PLACEHOLDERS.contains(&known) => Err(format!(
            "{{{{{known}}}}} stands outside a quoted string; put it inside one, e.g. \
             {known}=\"{{{{{known}}}}}\", so that its value is escaped"
        )),
        _ => Ok(QueryPart::Value { name: known, quote }),
    }
}

/// Every `[[instances.gates]]` entry of the instance `p`, checked; names unique.
pub(super) fn build_metric_gates(
    p: &str,
    raw: Vec<RawMetricGate>,
    check: &mut Checker,
) -> Vec<MetricGateConfig> {
    let mut gates: Vec<MetricGateConfig> = Vec::new();
    for (n, raw) in raw.into_iter().enumerate() {
        let table = format!("{p}.gates[{n}]");
        let gate = build_metric_gate(&table, raw, check);
        if let Some(first) = gates
            .iter()
            .position(|g| !g.name.is_empty() && g.name == gate.name)
        {
            check.err(
                &format!("{table}.name"),
                format!(
                    "\"{}\" names another gate too (gates[{first}]); give each gate its own name",
                    gate.name
                ),
            );
        }
        gates.push(gate);
    }
    gates
}

/// One gate; problems name `…gates[N].KEY`.
fn build_metric_gate(table: &str, raw: RawMetricGate, check: &mut Checker) -> MetricGateConfig {
    let key = |k: &str| format!("{table}.{k}");
    let name = gate_name(check, &key("name"), raw.name);
    let prometheus = prometheus_url(check, &key("prometheus"), raw.prometheus);
    let query = raw.query.unwrap_or_default();
    if query.trim().is_empty() {
        check.err(
            &key("query"),
            "missing; write the PromQL query to measure, e.g. query = 'sum(rate(http_requests_total{code=~\"5..\",instance=\"{{instance}}\"}[1m]))'",
        );
    } else if let Err(problems) = parse_query(&query) {
        for problem in problems {
            check.err(&key("query"), problem);
        }
    }
    let bound = bound(check, table, raw.max, raw.min);
    let interval = check.positive_duration(
        &key("interval"),
        raw.interval.as_deref(),
        DEFAULT_GATE_INTERVAL,
    );
    let count = match raw.count {
        None => 1,
        Some(c) if (1..=i64::from(MAX_GATE_COUNT)).contains(&c) => c as u32,
        Some(c) => {
            check.err(
                &key("count"),
                format!("{c} is not a number of measurements from 1 to {MAX_GATE_COUNT}"),
            );
            1
        }
    };
    let failure_limit = match raw.failure_limit {
        None => 0,
        Some(f) if (0..i64::from(count)).contains(&f) => f as u32,
        Some(f) => {
            check.err(
                &key("failure_limit"),
                format!(
                    "{f} failed measurements tolerated of count = {count}; it must be at least 0 and less than count"
                ),
            );
            0
        }
    };
    let no_data = match raw.no_data.as_deref() {
        None => NoData::default(),
        Some(s) => s.parse().unwrap_or_else(|e: ParseKindError| {
            check.err(&key("no_data"), e);
            NoData::default()
        }),
    };
    MetricGateConfig {
        name,
        prometheus,
        query,
        bound,
        interval,
        count,
        failure_limit,
        no_data,
    }
}

/// `name`: set, short, one line.
fn gate_name(check: &mut Checker, key: &str, raw: Option<String>) -> String {
    let name = raw.unwrap_or_default().trim().to_string();
    if name.is_empty() {
        check.err(
            key,
            "missing; name the gate, e.g. name = \"error rate\" (shown in readings and reasons)",
        );
    } else if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        check.err(
            key,
            format!(
                "at most {MAX_NAME_CHARS} characters, without line breaks or control characters"
            ),
        );
    }
    name
}

/// `prometheus`: an http(s) base URL without a query or fragment; the trailing `/` dropped.
fn prometheus_url(check: &mut Checker, key: &str, raw: Option<String>) -> String {
    let url = raw.unwrap_or_default().trim().to_string();
    if url.is_empty() {
        check.err(
            key,
            "missing; set the Prometheus server's URL, e.g. prometheus = \"http://prometheus:9090\"",
        );
    } else if !is_http_url(&url) || url.contains(['?', '#']) || url.chars().any(char::is_whitespace)
    {
        check.err(
            key,
            format!(
                "\"{}\" is not an http:// or https:// URL of a Prometheus server (without ? or #), e.g. \"http://prometheus:9090\"",
                super::redact_url(&url)
            ),
        );
    }
    url.trim_end_matches('/').to_string()
}

/// Exactly one of `max` and `min`, a finite number.
fn bound(check: &mut Checker, table: &str, max: Option<f64>, min: Option<f64>) -> GateBound {
    let (bound, key) = match (max, min) {
        (Some(max), None) => (GateBound::Max(max), "max"),
        (None, Some(min)) => (GateBound::Min(min), "min"),
        (Some(_), Some(_)) => {
            check.err(
                &format!("{table}.max"),
                "max and min are both set; a gate has one bound: max (the value may be at most this) or min",
            );
            return GateBound::Max(0.0);
        }
        (None, None) => {
            check.err(
                &format!("{table}.max"),
                "missing; set max (the value may be at most this, e.g. max = 0.01) or min",
            );
            return GateBound::Max(0.0);
        }
    };
    if !bound.limit().is_finite() {
        check.err(&format!("{table}.{key}"), "must be a finite number");
        return GateBound::Max(0.0);
    }
    bound
}

/// `watch`: a positive duration, and only with gates to keep asking.
pub(super) fn build_watch(
    check: &mut Checker,
    key: &str,
    raw: Option<String>,
    gates: usize,
) -> Option<Duration> {
    let raw = raw?;
    let watch = check.positive_duration(key, Some(&raw), Duration::ZERO);
    if gates == 0 {
        check.err(
            key,
            "watch keeps the metric gates running after a deployment succeeded, and this instance has none; add an [[instances.gates]] table or remove watch",
        );
        return None;
    }
    (!watch.is_zero()).then_some(watch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    const GATE: &str = "[[instances.gates]]\nname = \"error rate\"\nprometheus = \"http://prometheus:9090/\"\nquery = 'sum(rate(errors{instance=\"{{instance}}\"}[1m]))'\n";

    fn gate(extra: &str) -> String {
        instance(&format!("{GATE}{extra}"))
    }

    #[test]
    fn a_gate_takes_its_defaults() {
        let config = parse_ok(&gate("max = 0.01"));
        let i = &config.instances[0];
        assert_eq!(i.watch, None);
        let g = &i.metric_gates[0];
        assert_eq!(g.name, "error rate");
        assert_eq!(g.prometheus, "http://prometheus:9090");
        assert_eq!(g.bound, GateBound::Max(0.01));
        assert_eq!(g.interval, Duration::from_secs(30));
        assert_eq!((g.count, g.failure_limit), (1, 0));
        assert_eq!(g.no_data, NoData::Fail);
        assert!(parse_ok(&instance("")).instances[0].metric_gates.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let config = parse_ok(&instance(&format!(
            "watch = \"10m\"\n{GATE}min = 1\ninterval = \"5s\"\ncount = 4\nfailure_limit = 3\nno_data = \"wait\"\n"
        )));
        let i = &config.instances[0];
        assert_eq!(i.watch, Some(Duration::from_secs(600)));
        let g = &i.metric_gates[0];
        assert_eq!(g.bound, GateBound::Min(1.0));
        assert_eq!(g.interval, Duration::from_secs(5));
        assert_eq!((g.count, g.failure_limit), (4, 3));
        assert_eq!(g.no_data, NoData::Wait);
        assert_eq!(
            g.describe(),
            "\"error rate\" ≥ 1 (4 × 5s, tolerates 3, no data: wait)"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let p = "instances[0] (web-production).gates[0]";
        for (extra, needles) in [
            ("", vec![format!("{p}.max: missing")]),
            ("max = 1\nmin = 0", vec![format!("{p}.max: max and min")]),
            ("max = nan", vec![format!("{p}.max: must be a finite")]),
            ("min = -inf", vec![format!("{p}.min: must be a finite")]),
            ("max = 1\ncount = 0", vec![format!("{p}.count: 0 is not")]),
            ("max = 1\ncount = 101", vec![format!("{p}.count: 101")]),
            (
                "max = 1\ncount = 2\nfailure_limit = 2",
                vec![format!("{p}.failure_limit"), "less than count".into()],
            ),
            (
                "max = 1\nfailure_limit = -1",
                vec![format!("{p}.failure_limit")],
            ),
            (
                "max = 1\nno_data = \"skip\"",
                vec![format!("{p}.no_data"), "\"skip\"".into(), "wait".into()],
            ),
            ("max = 1\ninterval = \"0s\"", vec![format!("{p}.interval")]),
            (
                "max = 1\ninterval = \"soon\"",
                vec![format!("{p}.interval")],
            ),
        ] {
            let err = parse_err(&gate(extra));
            let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            assert_mentions(&err, &needles);
        }
        let err = parse_err(&instance("[[instances.gates]]\nmax = 1"));
        assert_mentions(
            &err,
            &[
                &format!("{p}.name: missing"),
                &format!("{p}.prometheus: missing"),
                &format!("{p}.query: missing"),
            ],
        );
        for url in ["prometheus:9090", "ftp://p", "http://p/?x=1", "http://"] {
            let err = parse_err(&instance(&format!(
                "[[instances.gates]]\nname = \"e\"\nprometheus = \"{url}\"\nquery = \"up\"\nmax = 1"
            )));
            assert_mentions(&err, &[&format!("{p}.prometheus"), "http://"]);
        }
    }

    #[test]
    fn names_are_unique_per_instance() {
        let err = parse_err(&instance(&format!("{GATE}max = 1\n{GATE}min = 0\n")));
        assert_mentions(
            &err,
            &[
                "instances[0] (web-production).gates[1].name",
                "\"error rate\"",
                "gates[0]",
            ],
        );
    }

    #[test]
    fn watch_needs_a_gate() {
        let err = parse_err(&instance("watch = \"10m\""));
        assert_mentions(
            &err,
            &["instances[0] (web-production).watch", "[[instances.gates]]"],
        );
        let err = parse_err(&instance(&format!("watch = \"ages\"\n{GATE}max = 1")));
        assert_mentions(
            &err,
            &["instances[0] (web-production).watch: invalid duration"],
        );
    }

    #[test]
    fn only_known_placeholders_in_the_right_place() {
        let key = "instances[0] (web-production).gates[0].query";
        for (query, needle) in [
            ("up{job=\"{{job}}\"}", "unknown placeholder {{job}}"),
            ("up{job=\"{{instance}\"}", "unclosed '{{'"),
            ("up{instance={{instance}}}", "{{instance}} stands outside"),
            ("up{slot=`{{slot}}`}", "{{slot}} is inside a `…` string"),
            ("up{slot=\"\\{{slot}}\"}", "after a backslash"),
            ("up # {{environment}}", "{{environment}} stands outside"),
        ] {
            let text = instance(&format!(
                "[[instances.gates]]\nname = \"e\"\nprometheus = \"http://p\"\nquery = '''{query}'''\nmax = 1"
            ));
            assert_mentions(&parse_err(&text), &[key, needle]);
        }
        let parts = parse_query(
            "x{a=\"{{ instance }}\",b='{{slot}}',c=\"\\\"{{environment}}\"} > {{canary_percent}} # \"{{version}}",
        )
        .expect("valid");
        let values: Vec<_> = parts
            .iter()
            .filter_map(|p| match p {
                QueryPart::Value { name, quote } => Some((*name, *quote)),
                QueryPart::Text(_) => None,
            })
            .collect();
        assert_eq!(
            values,
            [
                ("instance", Some('"')),
                ("slot", Some('\'')),
                ("environment", Some('"')),
                ("canary_percent", None),
                ("version", None),
            ]
        );
    }
}
