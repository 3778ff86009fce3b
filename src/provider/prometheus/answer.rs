//! Prometheus's answer to an instant query (`GET /api/v1/query`), read into one value: a
//! scalar, or the worst sample of an instant vector as judged by the gate's bound.

use serde_json::Value;

use crate::config::GateBound;

/// What one query measured.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Answer {
    /// A value; `of` is how many samples it is the worst of, `series` the worst's labels
    /// (empty for a scalar).
    Value {
        value: f64,
        of: usize,
        series: String,
    },
    /// No sample, or only NaN.
    NoData,
}

/// The answer to a query, from the HTTP status and body Prometheus sent; `Err` says why it
/// is no measurement (Prometheus's own error, a result that is not a value, …).
pub(super) fn read(status: u16, body: &[u8], bound: GateBound) -> Result<Answer, String> {
    let json: Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(_) if (200..300).contains(&status) => {
            return Err("the answer is not the JSON of Prometheus's query API".to_string());
        }
        Err(_) => return Err(format!("Prometheus answered HTTP {status}")),
    };
    match json["status"].as_str() {
        Some("success") => {}
        Some("error") => {
            let kind = json["errorType"].as_str().unwrap_or("error");
            let error = json["error"].as_str().unwrap_or("no reason given");
            return Err(format!("Prometheus: {kind}: {error}"));
        }
        _ => {
            return Err(format!(
                "HTTP {status}, and the answer is not one of Prometheus's query API"
            ));
        }
    }
    let data = &json["data"];
    match data["resultType"].as_str() {
        Some("vector") => vector(&data["result"], bound),
        Some("scalar") => Ok(match sample(&data["result"])? {
            v if v.is_nan() => Answer::NoData,
            value => Answer::Value {
                value,
                of: 1,
                series: String::new(),
            },
        }),
        Some(other) => Err(format!(
            "the query returned a {other}; it must return an instant vector or a scalar"
        )),
        None => Err("the answer has no resultType".to_string()),
    }
}

/// The worst sample of an instant vector; NaN samples are no data.
fn vector(result: &Value, bound: GateBound) -> Result<Answer, String> {
    let items = result
        .as_array()
        .ok_or("the vector's result is not a list")?;
    let mut worst: Option<(f64, &Value)> = None;
    let mut of = 0;
    for item in items {
        let value = sample(&item["value"])?;
        if value.is_nan() {
            continue;
        }
        of += 1;
        worst = match worst {
            Some((w, metric)) if bound.worse(w, value) == w => Some((w, metric)),
            _ => Some((value, &item["metric"])),
        };
    }
    Ok(match worst {
        None => Answer::NoData,
        Some((value, metric)) => Answer::Value {
            value,
            of,
            series: labels(metric),
        },
    })
}

/// The number of a `[time, "value"]` pair ("NaN", "+Inf" and "-Inf" included).
fn sample(pair: &Value) -> Result<f64, String> {
    let text = pair[1]
        .as_str()
        .ok_or("a sample is not a [time, \"value\"] pair")?;
    text.parse::<f64>()
        .map_err(|_| format!("the sample value \"{text}\" is not a number"))
}

/// A series as PromQL writes it: `name{label="value",…}`.
fn labels(metric: &Value) -> String {
    let Some(map) = metric.as_object() else {
        return String::new();
    };
    let name = map.get("__name__").and_then(Value::as_str).unwrap_or("");
    let pairs: Vec<String> = map
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map_or_else(|| v.to_string(), |s| format!("{s:?}"))
            )
        })
        .collect();
    format!("{name}{{{}}}", pairs.join(","))
}

/// A value as shown in readings and reasons: up to 4 significant digits ("0.042",
/// "1235", "1.5e-7"), "NaN", "+Inf" or "-Inf".
pub(super) fn shown(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if value == 0.0 {
        return "0".to_string();
    }
    let exponent = value.abs().log10().floor() as i32;
    if (-4..=3).contains(&exponent) {
        let decimals = (3 - exponent).max(0) as usize;
        let text = format!("{value:.decimals$}");
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.')
        } else {
            &text
        };
        return text.to_string();
    }
    let text = format!("{value:.3e}");
    match text.split_once('e') {
        Some((mantissa, exp)) if mantissa.contains('.') => {
            let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
            format!("{mantissa}e{exp}")
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: GateBound = GateBound::Max(0.01);

    fn ok(body: &str, bound: GateBound) -> Answer {
        read(200, body.as_bytes(), bound).expect("a measurement")
    }

    #[test]
    fn one_sample_of_an_instant_vector() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"web-production","job":"web"},"value":[1765130400.123,"0.042"]}]}}"#;
        assert_eq!(
            ok(body, MAX),
            Answer::Value {
                value: 0.042,
                of: 1,
                series: "{instance=\"web-production\",job=\"web\"}".into()
            }
        );
    }

    #[test]
    fn several_samples_give_the_worst_for_the_bound() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"errors","pod":"a"},"value":[1765130400.1,"0.002"]},
            {"metric":{"__name__":"errors","pod":"b"},"value":[1765130400.1,"0.5"]},
            {"metric":{"__name__":"errors","pod":"c"},"value":[1765130400.1,"NaN"]},
            {"metric":{"__name__":"errors","pod":"d"},"value":[1765130400.1,"0.0001"]}]}}"#;
        let Answer::Value { value, of, series } = ok(body, MAX) else {
            panic!("a value")
        };
        assert_eq!((value, of, series.as_str()), (0.5, 3, "errors{pod=\"b\"}"));
        let Answer::Value { value, series, .. } = ok(body, GateBound::Min(0.99)) else {
            panic!("a value")
        };
        assert_eq!((value, series.as_str()), (0.0001, "errors{pod=\"d\"}"));
    }

    #[test]
    fn no_samples_and_nan_are_no_data() {
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(ok(empty, MAX), Answer::NoData);
        let nan = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1765130400,"NaN"]}]}}"#;
        assert_eq!(ok(nan, MAX), Answer::NoData);
        let scalar_nan =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1765130400,"NaN"]}}"#;
        assert_eq!(ok(scalar_nan, MAX), Answer::NoData);
    }

    #[test]
    fn scalars_and_infinities_are_values() {
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1765130400.5,"0.995"]}}"#;
        assert_eq!(
            ok(scalar, MAX),
            Answer::Value {
                value: 0.995,
                of: 1,
                series: String::new()
            }
        );
        let inf = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1765130400,"+Inf"]},{"metric":{},"value":[1765130400,"-Inf"]}]}}"#;
        let Answer::Value { value, .. } = ok(inf, MAX) else {
            panic!("a value")
        };
        assert_eq!(value, f64::INFINITY);
        assert!(!MAX.passes(value));
    }

    #[test]
    fn matrices_and_strings_are_refused() {
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"web"},"values":[[1765130340,"1"],[1765130400,"2"]]}]}}"#;
        let err = read(200, matrix.as_bytes(), MAX).unwrap_err();
        assert_eq!(
            err,
            "the query returned a matrix; it must return an instant vector or a scalar"
        );
        let string =
            r#"{"status":"success","data":{"resultType":"string","result":[1765130400,"web"]}}"#;
        assert!(
            read(200, string.as_bytes(), MAX)
                .unwrap_err()
                .contains("a string;")
        );
    }

    #[test]
    fn prometheus_errors_are_shown() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:9: parse error: unexpected end of input"}"#;
        assert_eq!(
            read(400, body.as_bytes(), MAX).unwrap_err(),
            "Prometheus: bad_data: invalid parameter \"query\": 1:9: parse error: unexpected end of input"
        );
        let timeout = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
        assert!(
            read(503, timeout.as_bytes(), MAX)
                .unwrap_err()
                .contains("timeout: query timed out")
        );
        assert_eq!(
            read(502, b"<html>Bad Gateway</html>", MAX).unwrap_err(),
            "Prometheus answered HTTP 502"
        );
        assert!(
            read(200, b"<html>login</html>", MAX)
                .unwrap_err()
                .contains("not the JSON")
        );
        assert!(
            read(200, b"{\"hello\":1}", MAX)
                .unwrap_err()
                .contains("HTTP 200")
        );
    }

    #[test]
    fn values_show_four_significant_digits() {
        for (value, text) in [
            (0.042, "0.042"),
            (0.0420001, "0.042"),
            (0.123456, "0.1235"),
            (1.0, "1"),
            (99.5, "99.5"),
            (1234.4, "1234"),
            (12346.0, "1.235e4"),
            (0.00012346, "0.0001235"),
            (0.0000015, "1.5e-6"),
            (-0.25, "-0.25"),
            (0.0, "0"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(shown(value), text, "{value}");
        }
    }
}
