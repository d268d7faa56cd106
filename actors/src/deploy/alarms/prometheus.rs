//! A `prometheus` alarm: an instant query against Prometheus' HTTP API
//! (`GET BASE/api/v1/query?query=…`), in ALARM while any of the query's values satisfies
//! the condition. An empty answer ("no data") is not an alarm; a range vector or a
//! string is a query that cannot be judged, so the alarm is unreadable.

use serde_json::Value;
use url::Url;

use super::Reading;
use crate::config::deploy::Condition;

/// The instant-query URL for `query` under the server's base URL (which may carry a
/// path prefix, as behind a reverse proxy).
pub fn query_url(base: &Url, query: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/api/v1/query", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url.query_pairs_mut().append_pair("query", query);
    url
}

/// Reads Prometheus' answer `body` to `query`.
pub fn evaluate(body: &Value, query: &str, condition: &Condition) -> Reading {
    if body["status"] != "success" {
        let why = body["error"].as_str().unwrap_or("no reason given");
        return Reading::Unreadable(format!("Prometheus refused the query: {why}"));
    }
    let data = &body["data"];
    let samples: Vec<(String, &Value)> = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (labels(&s["metric"]), &s["value"]))
            .collect(),
        Some("scalar") => vec![(String::new(), &data["result"])],
        Some(other) => {
            return Reading::Unreadable(format!(
                "the query gives a {other}, not a number: write it so it gives an instant vector or a scalar (e.g. wrap a range in rate())"
            ))
        }
        None => return Reading::Unreadable("Prometheus' answer has no result type".into()),
    };
    for (series, sample) in samples {
        // A sample is [unix time, "value"]; Prometheus sends the value as a string.
        let Some(value) = sample[1].as_str().and_then(|v| v.parse::<f64>().ok()) else {
            return Reading::Unreadable(format!(
                "Prometheus' answer has a sample that is not a number: {sample}"
            ));
        };
        if condition.holds(value) {
            return Reading::Firing(format!("{query}{series} = {value} ({condition})"));
        }
    }
    Reading::Ok
}

/// `{a="1",b="2"}` for a series' labels, or nothing.
fn labels(metric: &Value) -> String {
    let Some(map) = metric.as_object().filter(|m| !m.is_empty()) else {
        return String::new();
    };
    let inner: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str().map(|s| format!("{s:?}")).unwrap_or_default()
            )
        })
        .collect();
    format!(" {{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gt(t: f64) -> Condition {
        Condition::parse(&format!("> {t}")).unwrap()
    }

    #[test]
    fn the_url_keeps_a_path_prefix_and_encodes_the_query() {
        let base = Url::parse("http://127.0.0.1:9090/prom/").unwrap();
        let url = query_url(&base, "sum(rate(x{a=\"b\"}[1m])) > 0");
        assert_eq!(url.path(), "/prom/api/v1/query");
        let (k, v) = url.query_pairs().next().unwrap();
        assert_eq!(
            (k.as_ref(), v.as_ref()),
            ("query", "sum(rate(x{a=\"b\"}[1m])) > 0")
        );
        let plain = query_url(&Url::parse("http://127.0.0.1:9090").unwrap(), "up");
        assert_eq!(
            plain.as_str(),
            "http://127.0.0.1:9090/api/v1/query?query=up"
        );
    }

    #[test]
    fn a_vector_fires_when_any_series_crosses() {
        let body = json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"a"},"value":[1.0,"0.01"]},
            {"metric":{"instance":"b"},"value":[1.0,"0.2"]}
        ]}});
        match evaluate(&body, "errors", &gt(0.05)) {
            Reading::Firing(why) => {
                assert!(why.contains("instance=\"b\""), "{why}");
                assert!(why.contains("= 0.2 (> 0.05)"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(evaluate(&body, "errors", &gt(0.5)), Reading::Ok);
    }

    #[test]
    fn scalars_empty_answers_and_nan() {
        let scalar = json!({"status":"success","data":{"resultType":"scalar","result":[1.0,"3"]}});
        assert!(matches!(
            evaluate(&scalar, "q", &gt(2.0)),
            Reading::Firing(_)
        ));
        let empty = json!({"status":"success","data":{"resultType":"vector","result":[]}});
        assert_eq!(evaluate(&empty, "q", &gt(0.0)), Reading::Ok);
        let nan = json!({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.0,"NaN"]}]}});
        assert_eq!(
            evaluate(&nan, "q", &Condition::parse("!= 0").unwrap()),
            Reading::Ok
        );
    }

    #[test]
    fn errors_and_ranges_are_unreadable() {
        let error =
            json!({"status":"error","errorType":"bad_data","error":"parse error at char 3"});
        match evaluate(&error, "q", &gt(0.0)) {
            Reading::Unreadable(why) => assert!(why.contains("parse error at char 3"), "{why}"),
            other => panic!("{other:?}"),
        }
        let range = json!({"status":"success","data":{"resultType":"matrix","result":[]}});
        match evaluate(&range, "q", &gt(0.0)) {
            Reading::Unreadable(why) => assert!(why.contains("matrix"), "{why}"),
            other => panic!("{other:?}"),
        }
        let junk = json!({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.0, 7]}]}});
        assert!(matches!(
            evaluate(&junk, "q", &gt(0.0)),
            Reading::Unreadable(_)
        ));
    }
}
