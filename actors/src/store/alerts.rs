//! Alerts posted by Alertmanager's webhook: the firing ones are kept (by fingerprint)
//! until Alertmanager says they are resolved. Deployment alarms of kind
//! `alertmanager` ask which are firing under a name.

use std::collections::BTreeMap;

use super::{now, Store, StoreError};

/// One alert from a webhook notification.
#[derive(Debug, Clone)]
pub struct AlertUpdate {
    /// Alertmanager's fingerprint (or one made from the labels).
    pub fingerprint: String,
    /// The `alertname` label.
    pub alertname: String,
    /// Every label.
    pub labels: BTreeMap<String, String>,
    /// `firing` or `resolved`.
    pub firing: bool,
    /// When it started firing (as Alertmanager wrote it).
    pub starts_at: Option<String>,
}

impl Store {
    /// Records a notification's alerts in one transaction: firing ones are kept,
    /// resolved ones forgotten.
    pub fn record_alerts(&self, alerts: &[AlertUpdate]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let at = now();
        for a in alerts {
            if a.firing {
                let labels = serde_json::to_string(&a.labels).unwrap_or_else(|_| "{}".into());
                tx.execute(
                    "INSERT INTO alerts (fingerprint, alertname, labels, starts_at, received) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(fingerprint) DO UPDATE SET alertname = excluded.alertname, labels = excluded.labels,
                        starts_at = excluded.starts_at, received = excluded.received",
                    rusqlite::params![a.fingerprint, a.alertname, labels, a.starts_at, at],
                )?;
            } else {
                tx.execute(
                    "DELETE FROM alerts WHERE fingerprint = ?1",
                    [&a.fingerprint],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The firing alerts named `alertname` that Alertmanager sent within `max_age`
    /// seconds, each as its other labels (`{k="v",…}`).
    pub fn firing_alerts(&self, alertname: &str, max_age: f64) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT labels FROM alerts WHERE alertname = ?1 AND received >= ?2 ORDER BY fingerprint",
        )?;
        let rows = stmt.query_map(rusqlite::params![alertname, now() - max_age], |r| {
            r.get::<_, String>(0)
        })?;
        let mut out = Vec::new();
        for labels in rows {
            let labels: BTreeMap<String, String> =
                serde_json::from_str(&labels?).unwrap_or_default();
            let inner: Vec<String> = labels
                .iter()
                .filter(|(k, _)| k.as_str() != "alertname")
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            out.push(format!("{{{}}}", inner.join(",")));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(fp: &str, name: &str, instance: &str, firing: bool) -> AlertUpdate {
        AlertUpdate {
            fingerprint: fp.into(),
            alertname: name.into(),
            labels: [("alertname", name), ("instance", instance)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            firing,
            starts_at: None,
        }
    }

    #[test]
    fn alerts_fire_until_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        store
            .record_alerts(&[
                alert("a", "HighLatency", "web-1", true),
                alert("b", "HighLatency", "web-2", true),
                alert("c", "DiskFull", "db-1", true),
            ])
            .unwrap();
        assert_eq!(
            store.firing_alerts("HighLatency", 60.0).unwrap(),
            vec!["{instance=\"web-1\"}", "{instance=\"web-2\"}"]
        );
        store
            .record_alerts(&[alert("a", "HighLatency", "web-1", false)])
            .unwrap();
        assert_eq!(
            store.firing_alerts("HighLatency", 60.0).unwrap(),
            vec!["{instance=\"web-2\"}"]
        );
        store
            .record_alerts(&[alert("b", "HighLatency", "web-2", false)])
            .unwrap();
        assert!(store.firing_alerts("HighLatency", 60.0).unwrap().is_empty());
        assert_eq!(store.firing_alerts("DiskFull", 60.0).unwrap().len(), 1);
        // Not sent again within the maximum age: it no longer counts.
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(store.firing_alerts("DiskFull", 0.01).unwrap().is_empty());
    }
}
