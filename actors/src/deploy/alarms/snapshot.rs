//! A group's alarms as a deployment keeps them in its settings (JSON).

use std::time::Duration;

use serde_json::{json, Value};
use url::Url;

use crate::config::deploy::{Alarm, AlarmKind, Condition};

/// `alarms` as JSON.
pub fn to_json(alarms: &[Alarm]) -> Value {
    Value::Array(
        alarms
            .iter()
            .map(|a| match &a.kind {
                AlarmKind::Prometheus {
                    url,
                    query,
                    condition,
                } => json!({
                    "name": a.name,
                    "prometheus": { "url": url.as_str(), "query": query, "condition": condition.to_string() },
                }),
                AlarmKind::Http {
                    url,
                    expect,
                    timeout,
                } => json!({
                    "name": a.name,
                    "http": { "url": url.as_str(), "expect": expect, "timeout_seconds": timeout.as_secs_f64() },
                }),
                AlarmKind::Alertmanager { alert } => json!({
                    "name": a.name,
                    "alertmanager": { "alert": alert },
                }),
            })
            .collect(),
    )
}

/// The alarms kept in `value` (what [`to_json`] wrote). An entry that no longer reads
/// is answered as an error naming it, so the deployment stops rather than running
/// unwatched.
pub fn from_json(value: &Value) -> Vec<Result<Alarm, String>> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let name = entry["name"].as_str().unwrap_or("?").to_string();
            alarm_of(entry).map_err(|why| format!("alarm `{name}`: {why}"))
        })
        .collect()
}

fn alarm_of(entry: &Value) -> Result<Alarm, String> {
    let name = entry["name"].as_str().ok_or("no name")?.to_string();
    let url = |v: &Value| -> Result<Url, String> {
        Url::parse(v["url"].as_str().ok_or("no url")?).map_err(|e| e.to_string())
    };
    let kind = if let Some(p) = entry.get("prometheus") {
        AlarmKind::Prometheus {
            url: url(p)?,
            query: p["query"].as_str().ok_or("no query")?.to_string(),
            condition: Condition::parse(p["condition"].as_str().ok_or("no condition")?)?,
        }
    } else if let Some(h) = entry.get("http") {
        AlarmKind::Http {
            url: url(h)?,
            expect: h["expect"]
                .as_u64()
                .and_then(|e| u16::try_from(e).ok())
                .ok_or("no expected status")?,
            timeout: Duration::from_secs_f64(
                h["timeout_seconds"]
                    .as_f64()
                    .unwrap_or(5.0)
                    .clamp(0.1, 60.0),
            ),
        }
    } else if let Some(a) = entry.get("alertmanager") {
        AlarmKind::Alertmanager {
            alert: a["alert"].as_str().ok_or("no alert name")?.to_string(),
        }
    } else {
        return Err("watches nothing".into());
    };
    Ok(Alarm { name, kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::deploy::parse_deploy_yaml;

    #[test]
    fn every_kind_survives_the_round_trip() {
        let config = parse_deploy_yaml(
            "deploy.yaml",
            r#"
applications:
  web:
    groups:
      prod:
        tags: [["role=web"]]
        alarms:
          - { name: errors, prometheus: { url: "http://127.0.0.1:9090/prom", query: "sum(rate(x[1m]))", condition: ">= 0.05" } }
          - { name: health, http: { url: "http://127.0.0.1:8080/healthz", expect: 204, timeout: 2s } }
          - { name: paged, alertmanager: { alert: HighLatency } }
"#,
        )
        .unwrap();
        let group = config.group("web", "prod").unwrap();
        let back: Vec<Alarm> = from_json(&to_json(&group.alarms))
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, group.alarms);
    }

    #[test]
    fn a_broken_entry_is_an_error_that_names_it() {
        let read = from_json(&json!([{ "name": "x", "prometheus": { "url": "nonsense" } }]));
        assert_eq!(read.len(), 1);
        let err = read[0].clone().unwrap_err();
        assert!(err.starts_with("alarm `x`:"), "{err}");
    }
}
