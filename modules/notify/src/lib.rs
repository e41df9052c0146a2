//! Outgoing messages: mail over SMTP (`PORTAL_SMTP_URL`), SMS over an HTTP gateway speaking Twilio's
//! Messages API (`PORTAL_SMS_*`). A channel with no transport configured writes its messages to the
//! `notify.outbox` table instead, so a self-hosted portal without mail still shows codes to its operator
//! (`portal outbox`). Message bodies carry codes and tokens: they are never logged.
#![forbid(unsafe_code)]

mod config;
mod mail;
mod outbox;
mod sms;

use std::sync::Arc;

use portal_core::{Result, Store, Timestamp};

pub use config::NotifyConfig;
pub use outbox::{keep_mails, outbox, Channel, OutboxMessage};

/// The module: the outbox table, no API of its own.
pub struct NotifyModule;

impl portal_core::Module for NotifyModule {
    const NAME: &'static str = "notify";
    type Api = ();

    fn install(tx: &portal_core::WriteTx) -> Result<()> {
        outbox::install(tx)
    }

    fn api(_ctx: &portal_core::Context) -> Result<()> {
        Ok(())
    }
}

/// How a message left the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the SMTP server or the SMS gateway.
    Sent,
    /// No transport configured: kept in the outbox table.
    Outbox,
}

/// A mail with a text and an HTML part and attachments, sent under a Message-ID its sender chose (and
/// recorded), so a mail sent twice reaches its reader as the same message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The part of the Message-ID before `@` (the sender's domain follows it).
    pub message_id: String,
    pub attachments: Vec<MailAttachment>,
}

#[derive(Debug, Clone)]
pub struct MailAttachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// The notifier every module shares (one SMTP connection pool).
pub fn shared(ctx: &portal_core::Context) -> Result<Arc<Notifier>> {
    let config = ctx.settings::<NotifyConfig>()?;
    ctx.services.get_or_try_init(|| Notifier::new(&config, ctx.store.clone()))
}

/// Sends mail and SMS. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    mail: Option<Arc<mail::Mailer>>,
    sms: Option<Arc<sms::SmsGateway>>,
    store: Store,
}

impl Notifier {
    /// Builds the transports the configuration names; a malformed SMTP URL or sender is a start-up error.
    pub fn new(config: &NotifyConfig, store: Store) -> Result<Self> {
        let mail = match &config.smtp_url {
            Some(url) => {
                Some(Arc::new(mail::Mailer::new(url.expose(), &config.mail_from, config.smtp_timeout_seconds)?))
            }
            None => None,
        };
        let sms = sms::SmsGateway::from_config(config)?.map(Arc::new);
        Ok(Self { mail, sms, store })
    }

    /// Sends a plain-text mail. SMTP failures come back as 503 `upstream_unavailable`.
    pub async fn send_email(&self, to: &str, subject: &str, body: &str) -> Result<Delivery> {
        match &self.mail {
            Some(mailer) => {
                mailer.send(to, subject, body).await?;
                tracing::info!(to, subject, "mail sent");
                Ok(Delivery::Sent)
            }
            None => {
                outbox::keep(&self.store, outbox::Channel::Email, to, Some(subject), body).await?;
                tracing::info!(to, subject, "no SMTP server configured: mail kept in the outbox");
                Ok(Delivery::Outbox)
            }
        }
    }

    /// Whether mail leaves the portal (an SMTP server is configured), or goes to the outbox as text.
    pub fn sends_mail(&self) -> bool {
        self.mail.is_some()
    }

    /// Sends `mail` to all its recipients at once. With no SMTP server configured, its text part is kept in
    /// the outbox for each recipient (attachments are not kept).
    pub async fn send_mail(&self, mail: &Mail) -> Result<Delivery> {
        match &self.mail {
            Some(mailer) => {
                mailer.send_mail(mail).await?;
                tracing::info!(to = ?mail.to, subject = mail.subject, message_id = mail.message_id, "mail sent");
                Ok(Delivery::Sent)
            }
            None => {
                let text = Mail {
                    to: mail.to.clone(),
                    subject: mail.subject.clone(),
                    text: mail.text.clone(),
                    html: String::new(),
                    message_id: mail.message_id.clone(),
                    attachments: Vec::new(),
                };
                let at = Timestamp::now();
                self.store.write(move |tx| outbox::keep_mails(tx, [(&text, at)])).await?;
                tracing::info!(to = ?mail.to, subject = mail.subject, "no SMTP server configured: mail kept in the outbox");
                Ok(Delivery::Outbox)
            }
        }
    }

    /// Sends a text message to an E.164 number. Gateway failures come back as 503 `upstream_unavailable`.
    pub async fn send_sms(&self, to: &str, body: &str) -> Result<Delivery> {
        match &self.sms {
            Some(gateway) => {
                gateway.send(to, body).await?;
                tracing::info!(to, "sms sent");
                Ok(Delivery::Sent)
            }
            None => {
                outbox::keep(&self.store, outbox::Channel::Sms, to, None, body).await?;
                tracing::info!(to, "no SMS gateway configured: message kept in the outbox");
                Ok(Delivery::Outbox)
            }
        }
    }
}
