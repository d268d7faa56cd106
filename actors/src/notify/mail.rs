//! Sending mail: SMTP through lettre, or `.eml` files when no SMTP server is configured.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Channels, Outcome};
use crate::config::settings::{SmtpSettings, SmtpTls};
use crate::store::Delivery;

/// Where mail goes.
pub enum Mailer {
    /// An SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in this directory (the embedded default).
    Files(PathBuf),
}

impl Mailer {
    /// The SMTP transport for `settings`, or files under `dir` without settings.
    pub fn new(settings: Option<&SmtpSettings>, dir: PathBuf) -> Result<Mailer, String> {
        let Some(s) = settings else {
            return Ok(Mailer::Files(dir));
        };
        let builder = match s.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
                .port(s.port.unwrap_or(25)),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                .map_err(|e| format!("smtp.host `{}`: {e}", s.host))?
                .port(s.port.unwrap_or(587)),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)
                .map_err(|e| format!("smtp.host `{}`: {e}", s.host))?
                .port(s.port.unwrap_or(465)),
        };
        let builder = match (&s.username, &s.password) {
            (Some(u), Some(p)) => builder.credentials(Credentials::new(u.clone(), p.clone())),
            (None, None) => builder,
            _ => return Err("smtp: give both username and password, or neither".into()),
        };
        Ok(Mailer::Smtp(
            builder.timeout(Some(Duration::from_secs(20))).build(),
        ))
    }
}

fn build(channels: &Channels, d: &Delivery) -> Result<Message, String> {
    let p = &d.delivery.payload;
    let subject = p["subject"].as_str().unwrap_or("[slipway] notification");
    let body = p["body"].as_str().unwrap_or("");
    Message::builder()
        .from(
            channels
                .from
                .parse()
                .map_err(|e| format!("notify.from `{}`: {e}", channels.from))?,
        )
        .to(d
            .delivery
            .target
            .parse()
            .map_err(|e| format!("recipient `{}`: {e}", d.delivery.target))?)
        .subject(subject)
        .message_id(Some(d.message_id.clone()))
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|e| format!("cannot build the message: {e}"))
}

/// Sends one mail.
pub async fn send(channels: &Channels, d: &Delivery) -> Outcome {
    let message = match build(channels, d) {
        Ok(m) => m,
        Err(e) => return Outcome::Permanent(e),
    };
    match &channels.mailer {
        Mailer::Smtp(transport) => match transport.send(message).await {
            Ok(_) => Outcome::Sent,
            Err(e) if e.is_permanent() => Outcome::Permanent(format!("SMTP refused: {e}")),
            Err(e) => Outcome::Retry(format!("SMTP: {e}")),
        },
        Mailer::Files(dir) => {
            let dir = dir.clone();
            let name = format!("{:010}.eml", d.id);
            let bytes = message.formatted();
            let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::create_dir_all(&dir)?;
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, &bytes)?;
                std::fs::rename(&tmp, dir.join(&name))
            })
            .await;
            match written {
                Ok(Ok(())) => Outcome::Sent,
                Ok(Err(e)) => Outcome::Retry(format!("cannot write the mail file: {e}")),
                Err(e) => Outcome::Retry(format!("mail file task failed: {e}")),
            }
        }
    }
}
