//! Sending mail: SMTP through lettre, or `.eml` files when no SMTP server is configured.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;

use super::{Channels, Outcome};
use crate::config::settings::{SmtpSettings, SmtpTls};
use crate::store::Delivery;

/// Where mail goes.
pub enum Mailer {
    /// An SMTP server.
    Smtp(SmtpClient),
    /// `.eml` files in this directory (the embedded default).
    Files(PathBuf),
}

impl Mailer {
    /// The SMTP client for `settings`, or files under `dir` without settings.
    pub fn new(settings: Option<&SmtpSettings>, dir: PathBuf) -> Result<Mailer, String> {
        let Some(s) = settings else {
            return Ok(Mailer::Files(dir));
        };
        if s.username.is_some() != s.password.is_some() {
            return Err("smtp: give both username and password, or neither".into());
        }
        if s.host.is_empty() {
            return Err("smtp.host is empty".into());
        }
        Ok(Mailer::Smtp(SmtpClient {
            settings: s.clone(),
            idle: tokio::sync::Mutex::new(Vec::new()),
        }))
    }
}

/// Connections to the SMTP server, kept open between messages.
///
/// lettre's own transport writes a message's body and its final `.` separately and then
/// waits for the answer; with Nagle's algorithm on, that costs a delayed-ACK round (about
/// 40 ms) per message. These connections are opened by slipway with `TCP_NODELAY` and
/// handed to lettre, which still speaks the protocol (EHLO, STARTTLS, AUTH, DATA).
pub struct SmtpClient {
    settings: SmtpSettings,
    idle: tokio::sync::Mutex<Vec<AsyncSmtpConnection>>,
}

/// A permanent (5xx) answer gives up; anything else is worth another try.
fn classify(e: lettre::transport::smtp::Error) -> Outcome {
    if e.is_permanent() {
        Outcome::Permanent(format!("SMTP refused: {e}"))
    } else {
        Outcome::Retry(format!("SMTP: {e}"))
    }
}

/// Idle connections kept for reuse: as many as deliveries run at once, so a burst does
/// not pay for new connections (connect, greeting, EHLO) on every message.
const POOL: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(20);

impl SmtpClient {
    fn port(&self) -> u16 {
        self.settings.port.unwrap_or(match self.settings.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, Outcome> {
        let s = &self.settings;
        let hello = ClientId::default();
        let addr = (s.host.as_str(), self.port());
        let mut conn = if s.tls == SmtpTls::Tls {
            let tls = TlsParameters::new(s.host.clone()).map_err(classify)?;
            AsyncSmtpConnection::connect_tokio1(addr, Some(TIMEOUT), &hello, Some(tls), None)
                .await
                .map_err(classify)?
        } else {
            let tcp =
                match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(tcp)) => tcp,
                    Ok(Err(e)) => {
                        return Err(Outcome::Retry(format!(
                            "SMTP: cannot connect to {}:{}: {e}",
                            s.host,
                            self.port()
                        )))
                    }
                    Err(_) => {
                        return Err(Outcome::Retry(format!(
                            "SMTP: connecting to {}:{} timed out",
                            s.host,
                            self.port()
                        )))
                    }
                };
            let _ = tcp.set_nodelay(true);
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello)
                .await
                .map_err(classify)?;
            if s.tls == SmtpTls::Starttls {
                let tls = TlsParameters::new(s.host.clone()).map_err(classify)?;
                conn.starttls(tls, &hello).await.map_err(classify)?;
            }
            conn
        };
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            conn.auth(
                &[Mechanism::Plain, Mechanism::Login],
                &Credentials::new(u.clone(), p.clone()),
            )
            .await
            .map_err(classify)?;
        }
        Ok(conn)
    }

    /// Sends `message`, on an idle connection when one is still good.
    pub async fn send(&self, message: &Message) -> Outcome {
        let envelope = message.envelope().clone();
        let bytes = message.formatted();
        let reused = self.idle.lock().await.pop();
        if let Some(mut conn) = reused {
            if let Ok(sent) = tokio::time::timeout(TIMEOUT, conn.send(&envelope, &bytes)).await {
                match sent {
                    Ok(_) => {
                        self.keep(conn).await;
                        return Outcome::Sent;
                    }
                    // The server answered: that answer stands.
                    Err(e) if e.is_permanent() || e.is_transient() => return classify(e),
                    // The connection broke while idle: try a fresh one below.
                    Err(_) => {}
                }
            }
        }
        let mut conn = match self.connect().await {
            Ok(c) => c,
            Err(outcome) => return outcome,
        };
        match tokio::time::timeout(TIMEOUT, conn.send(&envelope, &bytes)).await {
            Ok(Ok(_)) => {
                self.keep(conn).await;
                Outcome::Sent
            }
            Ok(Err(e)) => classify(e),
            Err(_) => Outcome::Retry("SMTP: the server took too long to answer".into()),
        }
    }

    async fn keep(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().await;
        if idle.len() < POOL && !conn.has_broken() {
            idle.push(conn);
        }
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
        Mailer::Smtp(client) => client.send(&message).await,
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
