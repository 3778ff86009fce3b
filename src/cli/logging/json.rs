//! The JSON log format (`DEPLOYBOT_LOG_FORMAT=json`): one object per line, every line with
//! the same top-level keys, so that a log collector can index and filter on them:
//!
//! `timestamp`, `level`, `target`, `message`, then `delivery`, `deployment`, `instance`
//! and `tenant` (null when not known), then `fields`: the event's other fields.
//!
//! The four context keys come from the event itself or from the spans it happens in, the
//! innermost first: a webhook's span carries its delivery and tenant, a deployment's its
//! id, instance and tenant. [`ContextKeys`] keeps each span's values of these four names
//! (recorded when the span opens or later with `Span::record`); [`JsonLines`] writes the
//! line.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The keys every line has, whether known or null, in the order they are written.
pub const CONTEXT_KEYS: [&str; 4] = ["delivery", "deployment", "instance", "tenant"];

/// The values of the context keys a span or an event carries.
#[derive(Debug, Clone, Default)]
struct KnownKeys([Option<String>; 4]);

impl KnownKeys {
    fn slot(name: &str) -> Option<usize> {
        CONTEXT_KEYS.iter().position(|key| *key == name)
    }

    /// Takes from `outer` what this one does not know yet.
    fn fill_from(&mut self, outer: &KnownKeys) {
        for (mine, theirs) in self.0.iter_mut().zip(&outer.0) {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.0.iter().all(Option::is_some)
    }
}

/// Reads a span's context keys, and nothing else.
struct SpanVisitor<'a>(&'a mut KnownKeys);

impl Visit for SpanVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(slot) = KnownKeys::slot(field.name()) {
            self.0.0[slot] = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(slot) = KnownKeys::slot(field.name()) {
            self.0.0[slot] = Some(format!("{value:?}"));
        }
    }
}

/// The layer that keeps each span's context keys in its extensions, for [`JsonLines`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextKeys;

impl<S> Layer<S> for ContextKeys
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut keys = KnownKeys::default();
        attrs.record(&mut SpanVisitor(&mut keys));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(keys);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<KnownKeys>() {
            Some(keys) => values.record(&mut SpanVisitor(keys)),
            None => {
                let mut keys = KnownKeys::default();
                values.record(&mut SpanVisitor(&mut keys));
                extensions.insert(keys);
            }
        }
    }
}

/// An event's message, context keys and other fields.
#[derive(Default)]
struct EventVisitor {
    message: String,
    keys: KnownKeys,
    fields: Map<String, Value>,
}

impl EventVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else if let Some(slot) = KnownKeys::slot(name) {
            self.keys.0[slot] = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(name.to_string(), value);
        }
    }
}

impl Visit for EventVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

/// One line, its keys in this order.
#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    level: &'a str,
    target: &'a str,
    message: String,
    delivery: Option<String>,
    deployment: Option<String>,
    instance: Option<String>,
    tenant: Option<String>,
    fields: Map<String, Value>,
}

/// The event formatter of the JSON format: one object per line (see the module's docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut seen = EventVisitor::default();
        event.record(&mut seen);
        // The event's own values win; then each span's, innermost first.
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                if seen.keys.is_complete() {
                    break;
                }
                if let Some(keys) = span.extensions().get::<KnownKeys>() {
                    seen.keys.fill_from(keys);
                }
            }
        }
        let metadata = event.metadata();
        let [delivery, deployment, instance, tenant] = seen.keys.0;
        let line = Line {
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            level: metadata.level().as_str(),
            target: metadata.target(),
            message: seen.message,
            delivery,
            deployment,
            instance,
            tenant,
            fields: seen.fields,
        };
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    /// The lines `log` writes, each parsed; every one must be a JSON object.
    fn lines(log: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(ContextKeys).with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLines)
                .with_writer(buffer.clone()),
        );
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn every_line_has_the_same_keys_null_when_not_known() {
        let lines = lines(|| {
            tracing::info!("started");
            tracing::warn!(port = 8080, ready = true, "listening");
        });
        assert_eq!(lines.len(), 2);
        for line in &lines {
            let keys: Vec<&str> = line
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys.len(),
                9,
                "timestamp, level, target, message, the four context keys, fields: {line}"
            );
            for key in CONTEXT_KEYS {
                assert!(line[key].is_null(), "{key} is not null: {line}");
            }
        }
        assert_eq!(lines[0]["message"], "started");
        assert_eq!(lines[0]["level"], "INFO");
        assert!(lines[0]["target"].as_str().unwrap().contains("json"));
        assert!(lines[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["fields"]["port"], 8080);
        assert_eq!(lines[1]["fields"]["ready"], true);
    }

    #[test]
    fn span_values_reach_the_lines_within_and_the_innermost_wins() {
        let lines = lines(|| {
            let webhook =
                tracing::info_span!("webhook", delivery = "d-1", tenant = tracing::field::Empty);
            let _in_webhook = webhook.enter();
            tracing::info!("received");
            webhook.record("tenant", "acme");
            let deployment = tracing::info_span!(
                "deployment",
                deployment = "dep_1",
                tenant = "other",
                instance = tracing::field::Empty
            );
            let _in_deployment = deployment.enter();
            deployment.record("instance", "web");
            tracing::info!(state = "succeeded", "deployment finished");
        });
        assert_eq!(lines[0]["delivery"], "d-1");
        assert!(lines[0]["tenant"].is_null(), "recorded later: {}", lines[0]);
        let finished = &lines[1];
        assert_eq!(
            finished["delivery"], "d-1",
            "from the outer span: {finished}"
        );
        assert_eq!(finished["deployment"], "dep_1");
        assert_eq!(finished["instance"], "web");
        assert_eq!(
            finished["tenant"], "other",
            "the innermost span wins: {finished}"
        );
        assert_eq!(finished["fields"]["state"], "succeeded");
        assert!(finished["fields"].get("deployment").is_none());
    }

    #[test]
    fn an_event_field_wins_over_its_spans() {
        let lines = lines(|| {
            let span = tracing::info_span!("deployment", deployment = "dep_outer", tenant = "acme");
            let _in = span.enter();
            let other = "dep_inner";
            tracing::info!(deployment = %other, "rollback requested");
        });
        assert_eq!(lines[0]["deployment"], "dep_inner");
        assert_eq!(lines[0]["tenant"], "acme");
        assert_eq!(lines[0]["message"], "rollback requested");
    }
}
