//! Webhooks: a JSON POST signed with HMAC-SHA256, only to addresses the settings allow.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Channels, Outcome};
use crate::config::settings::is_internal;
use crate::store::Delivery;

/// The signature header: `sha256=` and the hex HMAC of the body under the secret.
pub const SIGNATURE_HEADER: &str = "X-Slipway-Signature-256";

/// `sha256=HEX` for `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn secret(channels: &Channels, name: &str) -> Result<Vec<u8>, String> {
    let store = channels.store.clone();
    let n = name.to_string();
    let row = tokio::task::spawn_blocking(move || store.param_get(&n))
        .await
        .map_err(|e| format!("parameter lookup failed: {e}"))?
        .map_err(|e| format!("parameter lookup failed: {e}"))?
        .ok_or_else(|| format!("secret parameter `{name}` does not exist; create it with `param put {name} --secure`"))?;
    if row.secure {
        channels
            .master
            .open(&row.value)
            .map_err(|e| format!("secret parameter `{name}`: {e}"))
    } else {
        Ok(row.value)
    }
}

/// Posts one webhook.
pub async fn send(channels: &Channels, d: &Delivery) -> Outcome {
    let p = &d.delivery.payload;
    let body = p["body"].as_str().unwrap_or("{}").to_string();
    let url = match url::Url::parse(&d.delivery.target) {
        Ok(u) => u,
        Err(e) => return Outcome::Permanent(format!("bad URL: {e}")),
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Outcome::Permanent("the URL has no host".into());
    };
    let host = host.to_string();
    let lookup_host = host.trim_matches(['[', ']']).to_string();
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::net::lookup_host((lookup_host.as_str(), port)).await {
            Ok(a) => a.collect(),
            Err(e) => return Outcome::Retry(format!("cannot resolve {host}: {e}")),
        };
    if addrs.is_empty() {
        return Outcome::Retry(format!("{host} resolves to no address"));
    }
    for addr in &addrs {
        let ip = addr.ip();
        if is_internal(ip) && !channels.webhooks.allow.iter().any(|a| a.covers(&host, ip)) {
            return Outcome::Permanent(format!(
                "refused: {host} is {ip}, a loopback, private or link-local address; list it under webhooks.allow in slipway.yaml to permit it"
            ));
        }
    }
    let signature = match p["secret_param"].as_str() {
        Some(name) => match secret(channels, name).await {
            Ok(s) => Some(signature(&s, body.as_bytes())),
            Err(e) => return Outcome::Retry(e),
        },
        None => None,
    };
    // Pin the checked addresses: a second DNS answer cannot redirect the request.
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(channels.webhooks.timeout)
        .resolve_to_addrs(&lookup_host, &addrs)
        .user_agent(concat!("slipway/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Retry(format!("cannot build the HTTP client: {e}")),
    };
    let mut request = client
        .post(url)
        .header("Content-Type", "application/json")
        .header(
            "X-Slipway-Event",
            p["event_type"].as_str().unwrap_or("event"),
        )
        .header("X-Slipway-Delivery", d.message_id.as_str())
        .body(body);
    if let Some(sig) = signature {
        request = request.header(SIGNATURE_HEADER, sig);
    }
    match request.send().await {
        Ok(resp) if resp.status().is_success() => Outcome::Sent,
        Ok(resp) => {
            let status = resp.status();
            if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                Outcome::Retry(format!("the receiver answered {status}"))
            } else {
                Outcome::Permanent(format!("the receiver answered {status}"))
            }
        }
        Err(e) => Outcome::Retry(format!("POST failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
