//! SMTP through lettre's async transport (pooled connections, STARTTLS/TLS per the URL).

use std::time::Duration;

use lettre::message::{header::ContentType, Attachment, Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portal_core::{Error, Result};

pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
}

impl Mailer {
    /// `timeout_secs` bounds a whole send, so a server that does not answer fails it fast instead of
    /// holding the request (lettre's own timeout covers only the TCP connect, not a silent greeting).
    pub(crate) fn new(url: &str, from: &str, timeout_secs: u64) -> Result<Self> {
        let timeout = Duration::from_secs(timeout_secs);
        // The URL holds credentials: the error names the problem, never the URL.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&with_tls_default(url))
            .map_err(|e| Error::internal(format!("PORTAL_SMTP_URL is not a valid SMTP URL: {e}")))?
            .timeout(Some(timeout))
            .build();
        let from =
            from.parse().map_err(|e| Error::internal(format!("PORTAL_MAIL_FROM is not a valid mailbox: {e}")))?;
        Ok(Self { transport, from, timeout })
    }

    pub(crate) async fn send(&self, to: &str, subject: &str, body: &str) -> Result<()> {
        let to: Mailbox = to.parse().map_err(|_| Error::invalid("email", "not a valid email address"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(Error::internal)?;
        self.deliver(message).await
    }

    /// A mail with plain-text and HTML parts and attachments, under the Message-ID it was recorded with.
    pub(crate) async fn send_mail(&self, mail: &crate::Mail) -> Result<()> {
        let mut builder = Message::builder().from(self.from.clone()).subject(&mail.subject);
        for to in &mail.to {
            let to: Mailbox = to.parse().map_err(|_| Error::invalid("email", "not a valid email address"))?;
            builder = builder.to(to);
        }
        let domain = self.from.email.domain().to_owned();
        builder = builder.message_id(Some(format!("<{}@{domain}>", mail.message_id)));
        let alternative = MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone());
        let body = mail.attachments.iter().try_fold(MultiPart::mixed().multipart(alternative), |parts, file| {
            let content_type = ContentType::parse(&file.content_type).map_err(Error::internal)?;
            Ok::<_, Error>(parts.singlepart(Attachment::new(file.name.clone()).body(file.bytes.clone(), content_type)))
        })?;
        let message = builder.multipart(body).map_err(Error::internal)?;
        self.deliver(message).await
    }

    async fn deliver(&self, message: Message) -> Result<()> {
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::upstream("the mail server is unavailable", e)),
            Err(_) => Err(Error::upstream("the mail server did not answer in time", "SMTP timeout")),
        }
    }
}

/// lettre reads `smtp://` without a `tls` parameter as plain text. Credentials and codes must not cross a
/// network in the clear, so a remote `smtp://` server gets STARTTLS (`tls=required`) unless the URL says
/// `tls=none`; a loopback relay stays plain.
fn with_tls_default(url: &str) -> String {
    let Some(rest) = url.strip_prefix("smtp://") else { return url.to_string() };
    let (authority_path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if params.contains(&"tls=none") {
        params.retain(|p| *p != "tls=none");
    } else if !params.iter().any(|p| p.starts_with("tls=")) && !is_loopback(authority_path) {
        params.push("tls=required");
    }
    match params.is_empty() {
        true => format!("smtp://{authority_path}"),
        false => format!("smtp://{authority_path}?{}", params.join("&")),
    }
}

fn is_loopback(authority_path: &str) -> bool {
    let authority = authority_path.split('/').next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::with_tls_default;

    #[test]
    fn remote_smtp_gets_starttls_and_loopback_stays_plain() {
        assert_eq!(with_tls_default("smtp://u:p@mail.example.com:587"), "smtp://u:p@mail.example.com:587?tls=required");
        assert_eq!(with_tls_default("smtp://127.0.0.1:2525"), "smtp://127.0.0.1:2525");
        assert_eq!(with_tls_default("smtp://[::1]:25"), "smtp://[::1]:25");
        assert_eq!(with_tls_default("smtp://relay.lan:25?tls=none"), "smtp://relay.lan:25");
        assert_eq!(with_tls_default("smtp://h:25?tls=opportunistic"), "smtp://h:25?tls=opportunistic");
        assert_eq!(with_tls_default("smtps://h:465"), "smtps://h:465");
    }
}
