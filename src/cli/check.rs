//! `slipway check`: validate the settings (with the HTTPS certificate and key they name)
//! and the admin configuration, as a push would.

use crate::adminconfig::{load_current, ADMIN_REF};
use crate::datadir::DataDir;
use crate::settings::Settings;

/// Returns the lines to print and whether everything is valid.
pub async fn check(data: &DataDir) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut ok = true;
    let settings = match Settings::load(&data.settings()) {
        Ok(s) => {
            lines.push(format!("ok    {}", data.settings().display()));
            s
        }
        Err(e) => {
            ok = false;
            lines.push(format!("error {e:#}"));
            Settings::default()
        }
    };
    if let Err(e) = settings.http.check_exposure() {
        ok = false;
        lines.push(format!("error {}: {e}", data.settings().display()));
    }
    if let Some(tls) = &settings.http.tls {
        match crate::http::tls::server_config(tls) {
            Ok(_) => lines.push(format!(
                "ok    HTTPS certificate {} with key {}",
                tls.cert.display(),
                tls.key.display()
            )),
            Err(e) => {
                ok = false;
                lines.push(format!(
                    "error {}: http.tls: {e}",
                    data.settings().display()
                ));
            }
        }
    }
    let admin = data.repos().join("admin.git");
    match load_current(&settings.git.binary, &admin).await {
        Ok(config) => {
            let admins: Vec<&str> = config.access.administrators().collect();
            lines.push(format!(
                "ok    access.yaml at {ADMIN_REF} {}: {} users, {} groups, {} policies; administrators: {}",
                &config.commit[..config.commit.len().min(12)],
                config.access.users.len(),
                config.access.groups.len(),
                config.access.policies.len(),
                admins.join(", ")
            ));
        }
        Err(e) => {
            ok = false;
            lines.push(format!("error {e}"));
        }
    }
    (lines, ok)
}
