//! The worker that sends queued invoice mail: each with the invoice's PDF as it stands when sent, a few at a
//! time, marking each sent in the store after the mail server took it. Failures are tried again later
//! (1 minute, 5 minutes, 30 minutes, 2 hours, 6 hours), then given up and left on the record.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use portal_core::{Context, Error, Job, Result, Store, Timestamp};
use portal_documents::{render_blocking, Renderer};
use portal_notify::{Mail, MailAttachment, Notifier};

use super::{content, due, settle, Attempt, Queued};
use crate::document::{expect_print, CreditNotePrint, InvoicePrint};
use crate::{credit_notes, invoices};

/// After this many failed attempts a mail is given up.
pub const MAX_ATTEMPTS: u32 = 6;
const RETRY_AFTER_SECS: [i64; 5] = [60, 300, 1_800, 7_200, 21_600];
/// Mails handed to the mail server at once.
const IN_FLIGHT: usize = 4;
/// Mails read from the queue at a time (without a mail server, settled in one transaction).
const BATCH: usize = 32;

/// What became of one queued mail.
struct Outcome {
    queued: Queued,
    attempt: Attempt,
    /// The mail for the outbox, when no mail server is configured.
    kept: Option<Mail>,
}

/// What sending needs, shared by every mail of a run.
#[derive(Clone)]
pub(crate) struct Sender {
    store: Store,
    notifier: Arc<Notifier>,
    renderer: Arc<Renderer>,
    public_url: Option<String>,
}

impl Sender {
    pub(crate) fn new(ctx: &Context) -> Result<Self> {
        Ok(Self {
            store: ctx.store.clone(),
            notifier: portal_notify::shared(ctx)?,
            renderer: portal_documents::renderer(ctx)?,
            public_url: ctx.config.public_url.clone(),
        })
    }

    /// Sends every mail due now; returns how many were sent.
    pub(crate) async fn run(&self) -> Result<usize> {
        let mut sent = 0;
        loop {
            let now = Timestamp::now();
            let batch = self.store.read_blocking(|tx| due(tx, now, BATCH))?;
            if batch.is_empty() {
                return Ok(sent);
            }
            sent += if self.notifier.sends_mail() {
                // Each marked sent as soon as the server took it: a crash sends again only those in flight.
                let each =
                    batch.into_iter().map(|queued| async { self.settle_all(vec![self.attempt(queued).await]).await });
                stream::iter(each)
                    .buffer_unordered(IN_FLIGHT)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .sum::<Result<usize>>()?
            } else {
                // Kept in the outbox by the transaction that settles them: one for the whole batch.
                let attempts = stream::iter(batch).map(|queued| self.attempt(queued)).buffer_unordered(IN_FLIGHT);
                self.settle_all(attempts.collect().await).await?
            };
        }
    }

    /// Tries to send one mail; what became of it, and the mail to keep in the outbox without a mail server.
    async fn attempt(&self, queued: Queued) -> Outcome {
        match self.compose_and_send(&queued).await {
            Ok(kept) => Outcome { queued, attempt: Attempt::Sent(Timestamp::now()), kept },
            Err(e) => {
                let retry = RETRY_AFTER_SECS
                    .get(queued.mail.attempts as usize)
                    .filter(|_| queued.mail.attempts + 1 < MAX_ATTEMPTS);
                tracing::warn!(mail = %queued.mail.id, invoice = %queued.mail.invoice_id, error = %e, will_retry = retry.is_some(), "invoice mail not sent");
                let attempt = Attempt::Failed {
                    why: e.to_string(),
                    retry_at: retry.map(|secs| Timestamp::now().plus_secs(*secs)),
                };
                Outcome { queued, attempt, kept: None }
            }
        }
    }

    /// Records what became of mails in one transaction; how many went out. Without a mail server each
    /// mail goes to the outbox in that transaction, so it is kept exactly once.
    async fn settle_all(&self, outcomes: Vec<Outcome>) -> Result<usize> {
        let outcomes = Arc::new(outcomes);
        let settling = Arc::clone(&outcomes);
        let kept = self
            .store
            .write(move |tx| {
                let mut kept = Vec::new();
                for (n, Outcome { queued, attempt, kept: to_keep }) in settling.iter().enumerate() {
                    if let (true, Some(mail), Attempt::Sent(at)) = (settle(tx, queued, attempt)?, to_keep, attempt) {
                        portal_notify::keep_mail(tx, mail, *at)?;
                        kept.push(n);
                    }
                }
                Ok::<_, Error>(kept)
            })
            .await?;
        for mail in kept.into_iter().filter_map(|n| outcomes.get(n)?.kept.as_ref()) {
            tracing::info!(to = ?mail.to, subject = mail.subject, "no SMTP server configured: mail kept in the outbox");
        }
        Ok(outcomes.iter().filter(|outcome| matches!(outcome.attempt, Attempt::Sent(_))).count())
    }

    /// Composes the mail and sends it; without a mail server, gives it back to be kept in the outbox.
    async fn compose_and_send(&self, queued: &Queued) -> Result<Option<Mail>> {
        let (mail, now, public_url) = (&queued.mail, Timestamp::now(), self.public_url.as_deref());
        let (print, credit_note) = self.store.read_blocking(|tx| {
            let invoice = invoices::get(tx, mail.invoice_id)?.ok_or_else(|| Error::not_found("invoice"))?;
            // The customer's check brings what the mail's document reads.
            expect_print(tx, invoice.customer_id);
            let scope = portal_customers::system_scope(tx, invoice.customer_id)?;
            let note = match mail.credit_note_id.map(|id| credit_notes::get(tx, id)).transpose()?.flatten() {
                Some(note) => Some(CreditNotePrint::read(tx, &note, &scope)?),
                None => None,
            };
            Ok::<_, Error>((InvoicePrint::read(tx, &invoice, &scope, now, public_url)?, note))
        })?;
        let print = Arc::new(print);
        // The outbox keeps text only: no PDF is made for it.
        let mut attachments = Vec::new();
        if self.notifier.sends_mail() {
            let (renderer, invoice) = (Arc::clone(&self.renderer), Arc::clone(&print));
            let pdf = render_blocking(move || invoice.render_pdf(&renderer)).await?;
            attachments.push(pdf_file(&print.document.number, pdf));
            if let Some(note) = credit_note {
                let (renderer, number) = (Arc::clone(&self.renderer), note.document.number.clone());
                attachments.push(pdf_file(&number, render_blocking(move || note.render_pdf(&renderer)).await?));
            }
        }
        let message = content::compose(mail, &print.document, attachments);
        if !self.notifier.sends_mail() {
            return Ok(Some(message));
        }
        self.notifier.send_mail(&message).await?;
        Ok(None)
    }
}

fn pdf_file(number: &str, bytes: Vec<u8>) -> MailAttachment {
    MailAttachment { name: format!("{number}.pdf"), content_type: "application/pdf".into(), bytes }
}

pub(crate) fn job() -> Job {
    Job::new("invoice-mail", Duration::from_secs(1), |ctx| async move { Sender::new(&ctx)?.run().await.map(drop) })
}
