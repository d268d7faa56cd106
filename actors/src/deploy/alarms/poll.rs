//! Reading the alarms of the running deployments, all at once.

use std::time::Duration;

use tokio::task::JoinSet;

use super::{prometheus, snapshot, verdict, Reading};
use crate::config::deploy::{Alarm, AlarmKind};
use crate::store::{DeploymentRow, Store};

/// How long a Prometheus query may take.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(10);

/// A running deployment's alarms, as it keeps them.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The deployment.
    pub deployment: i64,
    /// Its alarms (an entry that no longer reads is an error naming it).
    pub alarms: Vec<Result<Alarm, String>>,
    /// The group's `ignore-alarm-poll-failure`.
    pub ignore_poll_failure: bool,
}

impl Watch {
    /// Whether `d` is watched at all ([`Watch::of`] without reading its alarms): it has
    /// alarms and is not a rollback.
    pub fn applies(d: &DeploymentRow) -> bool {
        d.rollback_of.is_none()
            && d.settings["alarms"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
    }

    /// What `d` watches; `None` when it has no alarms, or when it is a rollback: the
    /// alarm most likely fires because of the revision being rolled back, and stopping
    /// the cure half-way would leave the group on two revisions.
    pub fn of(d: &DeploymentRow) -> Option<Watch> {
        if !Watch::applies(d) {
            return None;
        }
        let alarms = snapshot::from_json(&d.settings["alarms"]);
        (!alarms.is_empty()).then(|| Watch {
            deployment: d.id,
            alarms,
            ignore_poll_failure: d.settings["ignore_alarm_poll_failure"]
                .as_bool()
                .unwrap_or(false),
        })
    }
}

/// One deployment's readings and, if it must stop, why.
#[derive(Debug, Clone)]
pub struct Polled {
    /// The deployment.
    pub deployment: i64,
    /// Each alarm's name, kind (`prometheus`, `http`, `alertmanager`) and reading.
    pub readings: Vec<(String, &'static str, Reading)>,
    /// Why it must stop ([`verdict`]).
    pub stop: Option<String>,
}

/// The HTTP client alarms use: no redirects (a redirect is an answer, judged by its
/// status), no proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!(
            "slipway/",
            env!("CARGO_PKG_VERSION"),
            " (alarm poll)"
        ))
        .build()
        .unwrap_or_default()
}

/// Reads every alarm of `watches` concurrently; an Alertmanager alert counts if it was
/// sent within `alert_max_age` seconds.
pub async fn poll_all(
    client: &reqwest::Client,
    store: &Store,
    watches: Vec<Watch>,
    alert_max_age: f64,
) -> Vec<Polled> {
    let mut jobs = JoinSet::new();
    for (w, watch) in watches.iter().enumerate() {
        for (a, alarm) in watch.alarms.iter().enumerate() {
            let (client, store, alarm) = (client.clone(), store.clone(), alarm.clone());
            jobs.spawn(async move {
                let (name, kind, reading) = match alarm {
                    Ok(alarm) => {
                        let kind = kind_of(&alarm.kind);
                        (
                            alarm.name.clone(),
                            kind,
                            read(&client, &store, &alarm, alert_max_age).await,
                        )
                    }
                    Err(why) => ("?".to_string(), "unknown", Reading::Unreadable(why)),
                };
                (w, a, name, kind, reading)
            });
        }
    }
    let mut readings: Vec<Vec<(usize, String, &'static str, Reading)>> =
        vec![Vec::new(); watches.len()];
    while let Some(done) = jobs.join_next().await {
        match done {
            Ok((w, a, name, kind, reading)) => readings[w].push((a, name, kind, reading)),
            Err(e) => tracing::error!(error = %e, "an alarm reading task failed"),
        }
    }
    watches
        .iter()
        .zip(readings)
        .map(|(watch, mut got)| {
            got.sort_by_key(|(a, ..)| *a);
            let readings: Vec<(String, &'static str, Reading)> =
                got.into_iter().map(|(_, n, k, r)| (n, k, r)).collect();
            let named: Vec<(String, Reading)> = readings
                .iter()
                .map(|(n, _, r)| (n.clone(), r.clone()))
                .collect();
            let mut stop = verdict(&named, watch.ignore_poll_failure);
            if readings.len() < watch.alarms.len() && stop.is_none() && !watch.ignore_poll_failure {
                stop = Some("an alarm could not be read (its reading task failed)".into());
            }
            Polled {
                deployment: watch.deployment,
                readings,
                stop,
            }
        })
        .collect()
}

fn kind_of(kind: &AlarmKind) -> &'static str {
    match kind {
        AlarmKind::Prometheus { .. } => "prometheus",
        AlarmKind::Http { .. } => "http",
        AlarmKind::Alertmanager { .. } => "alertmanager",
    }
}

/// Reads one alarm.
pub async fn read(
    client: &reqwest::Client,
    store: &Store,
    alarm: &Alarm,
    alert_max_age: f64,
) -> Reading {
    match &alarm.kind {
        AlarmKind::Prometheus {
            url: full,
            query,
            condition,
        } => {
            let url = shown(full);
            let answer = client
                .get(prometheus::query_url(full, query))
                .timeout(PROMETHEUS_TIMEOUT)
                .send()
                .await;
            let response = match answer {
                Ok(r) => r,
                Err(e) => {
                    return Reading::Unreadable(format!(
                        "Prometheus at {url} did not answer: {}",
                        plain(e)
                    ))
                }
            };
            let status = response.status();
            match response.json::<serde_json::Value>().await {
                Ok(body) => prometheus::evaluate(&body, query, condition),
                Err(_) => Reading::Unreadable(format!(
                    "Prometheus at {url} answered {status} without a JSON body: is it a Prometheus server?"
                )),
            }
        }
        AlarmKind::Http {
            url: full,
            expect,
            timeout,
        } => match client.get(full.clone()).timeout(*timeout).send().await {
            Ok(r) if r.status().as_u16() == *expect => Reading::Ok,
            Ok(r) => Reading::Firing(format!(
                "GET {} answered {}, expected {expect}",
                shown(full),
                r.status().as_u16()
            )),
            // The service being checked is what does not answer: that is the alarm.
            Err(e) if e.is_connect() => Reading::Firing(format!(
                "GET {} could not connect: {}",
                shown(full),
                plain(e)
            )),
            Err(e) if e.is_timeout() => Reading::Firing(format!(
                "GET {} gave no answer within {}s",
                shown(full),
                timeout.as_secs_f64()
            )),
            Err(e) => Reading::Firing(format!("GET {} failed: {}", shown(full), plain(e))),
        },
        AlarmKind::Alertmanager { alert } => {
            let (store, name) = (store.clone(), alert.clone());
            match tokio::task::spawn_blocking(move || store.firing_alerts(&name, alert_max_age))
                .await
            {
                Ok(Ok(firing)) if firing.is_empty() => Reading::Ok,
                Ok(Ok(firing)) => Reading::Firing(format!(
                    "Alertmanager reports {} firing alert(s) named {alert}: {}",
                    firing.len(),
                    firing.join(", ")
                )),
                Ok(Err(e)) => Reading::Unreadable(format!("the alert store: {e}")),
                Err(e) => Reading::Unreadable(format!("the alert store: {e}")),
            }
        }
    }
}

/// `url` as people may see it: without a user name or password.
fn shown(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// A reqwest error with its causes, in one line, without its URL (which may carry
/// credentials; the caller names the URL).
fn plain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn shown_urls_carry_no_credentials() {
        let url = url::Url::parse("http://admin:s3cret@127.0.0.1:9090/prom?x=1").unwrap();
        assert_eq!(super::shown(&url), "http://127.0.0.1:9090/prom?x=1");
    }
}
