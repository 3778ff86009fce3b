//! Metric gates against a real Prometheus scraping an exporter the test controls: each
//! gate is built from `[[instances.gates]]` the way the catalog builds it, and judged on
//! what the exporter serves.

mod common;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::prometheus::Prometheus;
use deploybot::config::Config;
use deploybot::deploy::provider::{
    GatePoint, GateReading, LogSink, MetricGate, ProviderError, ReleaseSpec, RunContext,
};
use deploybot::deploy::{DeploymentId, Env, ReleaseId};
use deploybot::provider::catalog::spec_of;
use tokio_util::sync::CancellationToken;

const INSTANCE: &str = "web-production";

/// The instance's only gate, "error rate", asking `prom` for `query`; `extra` adds keys.
fn gate(prom: &Prometheus, query: &str, extra: &str) -> Arc<dyn MetricGate> {
    let text = format!(
        "[[instances]]\nname = \"{INSTANCE}\"\nrepo = \"acme/web\"\nenvironment = \"production\"\nimage = \"x\"\n\
         [[instances.gates]]\nname = \"error rate\"\nprometheus = \"{}\"\nquery = '''{query}'''\n{extra}\n",
        prom.url()
    );
    let config = Config::from_toml_str(&text, &|_| None).expect("a valid configuration");
    let spec = spec_of(&config.instances[0], &[]).expect("the instance's spec");
    assert_eq!(spec.gates.len(), 1);
    Arc::clone(&spec.gates[0])
}

fn run(environment: &str) -> RunContext {
    RunContext {
        deployment_id: DeploymentId::new(),
        tenant_id: "acme".into(),
        instance: INSTANCE.into(),
        environment: environment.into(),
        strategy: "canary".into(),
        release: ReleaseSpec {
            id: ReleaseId::new(),
            version: 7,
            image: "ghcr.io/acme/web:7".into(),
            commit_sha: "abc1234".into(),
            env: Env::new(),
        },
        cancel: CancellationToken::new(),
        log: LogSink::discard(),
        params: Env::new(),
        noop: false,
    }
}

fn canary() -> GatePoint {
    GatePoint::new("canary", "canary", 50, "canary 50%")
}

/// Evaluates `gate` at canary 50%: its result and every reading it handed over.
async fn evaluate(
    gate: &dyn MetricGate,
    run: &RunContext,
) -> (Result<(), ProviderError>, Vec<GateReading>) {
    let readings = Mutex::new(Vec::new());
    let result = gate
        .evaluate(run, &canary(), &|r| readings.lock().unwrap().push(r))
        .await;
    (result, readings.into_inner().unwrap())
}

/// Serves the error ratio of this instance and of another one, and waits until
/// Prometheus has both.
fn serve_errors(prom: &Prometheus, ours: f64, theirs: f64) {
    prom.exporter()
        .set("app_error_ratio", &[("instance", INSTANCE)], ours);
    prom.exporter()
        .set("app_error_ratio", &[("instance", "api")], theirs);
    prom.wait_for("app_error_ratio", |s| s.len() == 2);
}

const OURS: &str = "max(app_error_ratio{instance=\"{{instance}}\"})";

#[tokio::test]
async fn a_value_within_the_bound_passes_and_other_instances_do_not_count() {
    let Some(prom) = Prometheus::start_or_skip("a_value_within_the_bound_passes") else {
        return;
    };
    serve_errors(&prom, 0.004, 0.9);
    let gate = gate(&prom, OURS, "max = 0.01");
    let (result, readings) = evaluate(gate.as_ref(), &run("production")).await;
    assert_eq!(result, Ok(()));
    assert_eq!(
        readings,
        [GateReading {
            gate: "error rate".into(),
            value: "0.004".into(),
            bound: "≤ 0.01".into(),
            passed: true,
            at: "canary 50%".into(),
        }]
    );
    let metrics = deploybot::metrics::global().encode().unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "deploybot_gate_evaluations_total{gate=\"error rate\",result=\"passed\"} "
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_value_over_the_bound_fails_naming_value_bound_and_place() {
    let Some(prom) = Prometheus::start_or_skip("a_value_over_the_bound_fails") else {
        return;
    };
    serve_errors(&prom, 0.042, 0.0);
    let gate = gate(&prom, OURS, "max = 0.01");
    let (result, readings) = evaluate(gate.as_ref(), &run("production")).await;
    assert_eq!(
        result,
        Err(ProviderError::Failed(
            "error rate 0.042 > 0.01 at canary 50%".into()
        ))
    );
    assert_eq!(readings.len(), 1);
    assert_eq!(
        (readings[0].value.as_str(), readings[0].passed),
        ("0.042", false)
    );
}

#[tokio::test]
async fn a_min_bound_and_the_failure_limit_count_measurements() {
    let Some(prom) = Prometheus::start_or_skip("a_min_bound_and_the_failure_limit") else {
        return;
    };
    serve_errors(&prom, 0.5, 1.0);
    // At least 0.9 of successes: 0.5 fails each time; one failure is tolerated, the second
    // ends the gate before the third measurement.
    let gate = gate(
        &prom,
        OURS,
        "min = 0.9\ncount = 3\nfailure_limit = 1\ninterval = \"200ms\"",
    );
    let (result, readings) = evaluate(gate.as_ref(), &run("production")).await;
    assert_eq!(
        result,
        Err(ProviderError::Failed(
            "error rate 0.5 < 0.9 at canary 50% (2 of 2 measurements failed)".into()
        ))
    );
    assert_eq!(readings.len(), 2);
    assert!(readings.iter().all(|r| r.bound == "≥ 0.9" && !r.passed));
}

/// A server whose exporter serves only a marker series (so it scrapes and answers) and
/// none of the instance's; `None` when the test is skipped.
fn without_our_series(test: &str) -> Option<Prometheus> {
    let prom = Prometheus::start_or_skip(test)?;
    prom.exporter().set("up_marker", &[], 1.0);
    prom.wait_for("up_marker", |s| s.len() == 1);
    Some(prom)
}

const NOT_SERVED: &str = "app_error_ratio{instance=\"{{instance}}\"}";

#[tokio::test]
async fn no_data_fails_by_default() {
    let Some(prom) = without_our_series("no_data_fails_by_default") else {
        return;
    };
    let gate = gate(&prom, NOT_SERVED, "max = 0.01");
    let (result, readings) = evaluate(gate.as_ref(), &run("production")).await;
    assert_eq!(
        result,
        Err(ProviderError::Failed(
            "error rate: no data at canary 50%".into()
        ))
    );
    assert_eq!(
        (readings[0].value.as_str(), readings[0].passed),
        ("no data", false)
    );
}

#[tokio::test]
async fn no_data_passes_when_configured_to() {
    let Some(prom) = without_our_series("no_data_passes_when_configured_to") else {
        return;
    };
    let gate = gate(&prom, NOT_SERVED, "max = 0.01\nno_data = \"pass\"");
    let (result, readings) = evaluate(gate.as_ref(), &run("production")).await;
    assert_eq!(result, Ok(()));
    assert_eq!(
        (readings[0].value.as_str(), readings[0].passed),
        ("no data", true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_wait_passes_once_the_series_is_served() {
    let Some(prom) = without_our_series("no_data_wait_passes_once_the_series_is_served") else {
        return;
    };
    // Up to 10 × 2 measurements half a second apart: time enough for a scrape or two.
    let gate = gate(
        &prom,
        NOT_SERVED,
        "max = 0.01\nno_data = \"wait\"\ncount = 2\ninterval = \"500ms\"",
    );
    let (seen, readings) = mpsc::channel::<GateReading>();
    let seen = Mutex::new(seen);
    let run = run("production");
    let evaluation = {
        let (gate, run) = (Arc::clone(&gate), run.clone());
        tokio::spawn(async move {
            gate.evaluate(&run, &canary(), &move |r| {
                let _ = seen.lock().unwrap().send(r);
            })
            .await
        })
    };
    let first = tokio::task::spawn_blocking(move || {
        let first = readings
            .recv_timeout(Duration::from_secs(30))
            .expect("a first reading");
        (first, readings)
    });
    let (first, readings) = first.await.unwrap();
    assert_eq!((first.value.as_str(), first.passed), ("no data", false));
    prom.exporter()
        .set("app_error_ratio", &[("instance", INSTANCE)], 0.001);
    let result = evaluation.await.unwrap();
    assert_eq!(result, Ok(()));
    let later: Vec<GateReading> = readings.try_iter().collect();
    let values: Vec<&str> = later.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(
        values[values.len() - 2..],
        ["0.001", "0.001"],
        "two measurements with data count: {values:?}"
    );
}

#[tokio::test]
async fn no_data_wait_gives_up_after_ten_times_count() {
    let Some(prom) = without_our_series("no_data_wait_gives_up_after_ten_times_count") else {
        return;
    };
    let gate = gate(
        &prom,
        NOT_SERVED,
        "max = 0.01\nno_data = \"wait\"\ninterval = \"100ms\"",
    );
    let (result, readings) = evaluate(gate.as_ref(), &run("production")).await;
    assert_eq!(
        result,
        Err(ProviderError::Failed(
            "error rate: no data at canary 50% (10 measurements)".into()
        ))
    );
    assert_eq!(readings.len(), 10);
}

#[tokio::test]
async fn a_promql_syntax_error_fails_naming_prometheus_error() {
    let Some(prom) = without_our_series("a_promql_syntax_error_fails") else {
        return;
    };
    let gate = gate(
        &prom,
        "sum(app_error_ratio{instance=\"{{instance}}\"}",
        "max = 0.01",
    );
    let (result, readings) = evaluate(gate.as_ref(), &run("production")).await;
    let Err(ProviderError::Failed(reason)) = result else {
        panic!("a failure, got {result:?}");
    };
    assert!(
        reason.starts_with("error rate: query failed at canary 50%: Prometheus: bad_data: ")
            && reason.contains("parse error"),
        "{reason}"
    );
    assert_eq!(readings[0].value, "error");
}

/// An environment name made to close the label's string: escaped, it selects its own
/// series (0.5, over the bound); unescaped it would select the calm staging series.
#[tokio::test]
async fn a_hostile_environment_stays_inside_its_label_matcher() {
    let Some(prom) = Prometheus::start_or_skip("a_hostile_environment_stays_inside") else {
        return;
    };
    let hostile = "staging\"}) or vector(0) or max(app_error_ratio{environment=\"staging";
    prom.exporter()
        .set("app_error_ratio", &[("environment", hostile)], 0.5);
    prom.exporter()
        .set("app_error_ratio", &[("environment", "staging")], 0.001);
    prom.wait_for("app_error_ratio", |s| s.len() == 2);
    let gate = gate(
        &prom,
        "max(app_error_ratio{environment=\"{{environment}}\"})",
        "max = 0.01",
    );
    let (result, _) = evaluate(gate.as_ref(), &run(hostile)).await;
    assert_eq!(
        result,
        Err(ProviderError::Failed(
            "error rate 0.5 > 0.01 at canary 50%".into()
        ))
    );
}

#[tokio::test]
async fn a_cancel_ends_the_gate_between_measurements() {
    let Some(prom) = Prometheus::start_or_skip("a_cancel_ends_the_gate") else {
        return;
    };
    serve_errors(&prom, 0.001, 0.0);
    let gate = gate(&prom, OURS, "max = 0.01\ncount = 5\ninterval = \"1h\"");
    let run = run("production");
    let cancel = run.cancel.clone();
    let readings = Mutex::new(Vec::new());
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        gate.evaluate(&run, &canary(), &|r| {
            readings.lock().unwrap().push(r);
            cancel.cancel();
        }),
    )
    .await
    .expect("the cancel ends the hour-long wait");
    assert_eq!(result, Err(ProviderError::Cancelled));
    assert_eq!(readings.into_inner().unwrap().len(), 1);
}
