//! Metric gates on Prometheus (`[[instances.gates]]`): an instant query, asked `count`
//! times `interval` apart, each answer judged against the gate's `max` or `min`; more
//! failed measurements than `failure_limit` fail the gate at once.

mod answer;
mod query;

use std::time::Duration;

use async_trait::async_trait;

use self::answer::{Answer, shown};
use crate::config::{MetricGateConfig, NoData, QueryPart, hide_url_passwords, redact_url};
use crate::deploy::provider::{GatePoint, GateReading, MetricGate, ProviderError, RunContext};
use crate::metrics::{self, GateResult};

/// The longest one query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read; a larger one is an error (a query over far too many series).
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// With `no_data = "wait"`, the gate gives up after this many times `count` measurements
/// without data.
const WAIT_FACTOR: u32 = 10;

/// The most characters of an error quoted in a gate's failure.
const MAX_ERROR_CHARS: usize = 120;

/// A metric gate asking a Prometheus server.
pub struct PrometheusGate {
    config: MetricGateConfig,
    parts: Vec<QueryPart>,
    /// `{prometheus}/api/v1/query`.
    endpoint: String,
    client: reqwest::Client,
}

/// How one measurement counts.
struct Judged {
    result: GateResult,
    /// As shown in the reading: "0.042", "no data", "error".
    value: String,
    /// Counted as passed (`Some(true)`), failed, or not counted (`None`: waiting for data).
    counts: Option<bool>,
    /// A value was measured (the failure reads "NAME 0.042 > 0.01 at …").
    measured: bool,
    /// What was found: "0.042 > 0.01", "0.004 ≤ 0.01", "no data", "query failed".
    why: String,
    /// Said after the place: " (worst of 3 series)", ": Prometheus: bad_data: …".
    after: String,
    /// For the log only: the worst series' labels.
    series: String,
}

/// The measurements of one evaluation so far.
#[derive(Default)]
struct Tally {
    /// Counted measurements.
    taken: u32,
    failed: u32,
    /// Measurements without data, not counted (`no_data = "wait"`).
    waited: u32,
}

impl PrometheusGate {
    /// The gate `config` describes; its client follows redirects only on the same server.
    pub fn new(config: &MetricGateConfig) -> Result<Self, ProviderError> {
        let parts = config.query_parts().map_err(|problem| {
            ProviderError::Unavailable(format!("gate \"{}\": query: {problem}", config.name))
        })?;
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let first = &attempt.previous()[0];
            let same = attempt.url().host_str() == first.host_str()
                && attempt.url().port_or_known_default() == first.port_or_known_default();
            if same && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .redirect(redirects)
            .user_agent(concat!(
                "deploybot/",
                env!("CARGO_PKG_VERSION"),
                " metric-gate"
            ))
            .build()
            .map_err(|e| {
                ProviderError::Unavailable(format!("cannot build the metric-gate client: {e}"))
            })?;
        Ok(Self {
            endpoint: format!("{}/api/v1/query", config.prometheus.trim_end_matches('/')),
            config: config.clone(),
            parts,
            client,
        })
    }

    /// The query asked for `run` at `at`: the placeholders filled, their values escaped.
    pub fn query(&self, run: &RunContext, at: &GatePoint) -> String {
        query::render(&self.parts, |name| query::value_of(name, run, at))
    }

    /// Asks Prometheus once.
    async fn measure(&self, query: &str) -> Result<Answer, String> {
        let request = self.client.get(&self.endpoint).query(&[("query", query)]);
        let mut response = request
            .send()
            .await
            .map_err(|e| self.request_error("cannot reach Prometheus", e))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.request_error("reading Prometheus's answer failed", e))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!(
                    "the answer is larger than {} MiB; make the query return fewer series",
                    MAX_ANSWER_BYTES / 1024 / 1024
                ));
            }
            body.extend_from_slice(&chunk);
        }
        answer::read(status, &body, self.config.bound)
    }

    /// A failed request in words, without the URL's credentials.
    fn request_error(&self, doing: &str, e: reqwest::Error) -> String {
        if e.is_timeout() {
            return format!(
                "Prometheus did not answer within {}",
                humantime::format_duration(QUERY_TIMEOUT)
            );
        }
        let text = format!("{doing}: {}", chain(&e.without_url()));
        hide_url_passwords(&text, &self.config.prometheus)
    }

    /// One answer judged by the bound and `no_data`.
    fn judge(&self, answer: Result<Answer, String>) -> Judged {
        let bound = self.config.bound;
        match answer {
            Ok(Answer::Value { value, of, series }) => {
                let passed = bound.passes(value);
                let mut value_text = shown(value);
                if value_text == bound.limit().to_string() {
                    // Rounded onto the bound: the exact value says why it is judged so.
                    value_text = value.to_string();
                }
                let judged = if passed {
                    bound.to_string()
                } else {
                    format!("{} {}", bound.broken_by(), bound.limit())
                };
                Judged {
                    result: if passed {
                        GateResult::Passed
                    } else {
                        GateResult::Failed
                    },
                    why: format!("{value_text} {judged}"),
                    value: value_text,
                    counts: Some(passed),
                    measured: true,
                    after: if of > 1 {
                        format!(" (worst of {of} series)")
                    } else {
                        String::new()
                    },
                    series,
                }
            }
            Ok(Answer::NoData) => Judged {
                result: GateResult::NoData,
                value: "no data".to_string(),
                counts: match self.config.no_data {
                    NoData::Fail => Some(false),
                    NoData::Pass => Some(true),
                    NoData::Wait => None,
                },
                measured: false,
                why: "no data".to_string(),
                after: String::new(),
                series: String::new(),
            },
            Err(error) => Judged {
                result: GateResult::Error,
                value: "error".to_string(),
                counts: Some(false),
                measured: false,
                why: "query failed".to_string(),
                after: format!(": {}", shortened(&error)),
                series: String::new(),
            },
        }
    }

    /// The gate's failure as one sentence: "error rate 0.042 > 0.01 at canary 50%".
    fn failure(&self, judged: &Judged, at: &GatePoint, tally: &Tally) -> ProviderError {
        let name = &self.config.name;
        let (why, label, after) = (&judged.why, &at.label, &judged.after);
        let mut sentence = if judged.measured {
            format!("{name} {why} at {label}{after}")
        } else {
            format!("{name}: {why} at {label}{after}")
        };
        if self.config.failure_limit > 0 && judged.counts.is_some() {
            sentence.push_str(&format!(
                " ({} of {} measurements failed)",
                tally.failed, tally.taken
            ));
        }
        ProviderError::Failed(sentence)
    }

    /// Hands the measurement on (reading, log, metric).
    fn record(
        &self,
        run: &RunContext,
        at: &GatePoint,
        judged: &Judged,
        reading: &(dyn Fn(GateReading) + Send + Sync),
    ) {
        let c = &self.config;
        metrics::global().gate_evaluated(&c.name, judged.result);
        reading(GateReading {
            gate: c.name.clone(),
            value: judged.value.clone(),
            bound: c.bound.to_string(),
            passed: judged.counts == Some(true),
            at: at.label.clone(),
        });
        let outcome = match judged.counts {
            Some(true) => "passed".to_string(),
            Some(false) => "failed".to_string(),
            None => format!(
                "measuring again in {}",
                humantime::format_duration(c.interval)
            ),
        };
        let series = if judged.series.is_empty() || judged.after.is_empty() {
            String::new()
        } else {
            format!(": {}", judged.series)
        };
        run.log.system(format!(
            "gate \"{}\" at {}: {}{}{series}; {outcome}",
            c.name, at.label, judged.why, judged.after
        ));
    }
}

#[async_trait]
impl MetricGate for PrometheusGate {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    async fn evaluate(
        &self,
        run: &RunContext,
        at: &GatePoint,
        reading: &(dyn Fn(GateReading) + Send + Sync),
    ) -> Result<(), ProviderError> {
        let c = &self.config;
        let query = self.query(run, at);
        run.log.system(format!(
            "gate \"{}\" at {}: {} measurement(s) of {} by {}",
            c.name,
            at.label,
            c.count,
            query,
            redact_url(&c.prometheus)
        ));
        let mut tally = Tally::default();
        loop {
            if tally.taken + tally.waited > 0 {
                tokio::select! {
                    _ = run.cancel.cancelled() => return Err(ProviderError::Cancelled),
                    _ = tokio::time::sleep(c.interval) => {}
                }
            }
            let answer = tokio::select! {
                biased;
                _ = run.cancel.cancelled() => return Err(ProviderError::Cancelled),
                answer = self.measure(&query) => answer,
            };
            let judged = self.judge(answer);
            self.record(run, at, &judged, reading);
            match judged.counts {
                Some(passed) => {
                    tally.taken += 1;
                    tally.failed += u32::from(!passed);
                    if !passed && tally.failed > c.failure_limit {
                        return Err(self.failure(&judged, at, &tally));
                    }
                }
                None => {
                    tally.waited += 1;
                    if tally.waited >= WAIT_FACTOR * c.count {
                        let judged = Judged {
                            after: format!(" ({} measurements)", tally.waited),
                            ..judged
                        };
                        return Err(self.failure(&judged, at, &tally));
                    }
                }
            }
            if tally.taken >= c.count {
                return Ok(());
            }
        }
    }
}

/// An error and its causes, joined by ": ".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// At most [`MAX_ERROR_CHARS`] characters of `text`, on one line: what Prometheus says may
/// quote the application's label values, so control and invisible characters (a NUL
/// neither database stores alike, a newline, a bidi override) become U+FFFD.
fn shortened(text: &str) -> String {
    let plain = text.chars().map(|c| {
        if crate::deploy::is_hidden_char(c) {
            '\u{FFFD}'
        } else {
            c
        }
    });
    if text.chars().count() <= MAX_ERROR_CHARS {
        return plain.collect();
    }
    let mut short: String = plain.take(MAX_ERROR_CHARS - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus's error text may quote an application's label values: a NUL (which
    /// PostgreSQL refuses to store, losing the gate's outcome), a newline or a bidi
    /// override never reaches a reason.
    #[test]
    fn an_error_quoted_in_a_reason_holds_no_control_or_invisible_character() {
        let quoted = shortened("bad label \"a\0b\"\nnext line \u{202e}desrever \u{1b}[2J");
        assert!(
            !quoted.chars().any(crate::deploy::is_hidden_char),
            "{quoted:?}"
        );
        assert!(quoted.starts_with("bad label \"a\u{FFFD}b\""), "{quoted:?}");

        let long = "\0".repeat(MAX_ERROR_CHARS * 2);
        let quoted = shortened(&long);
        assert_eq!(quoted.chars().count(), MAX_ERROR_CHARS);
        assert!(!quoted.contains('\0'));
    }
}
