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
use crate::document::{CreditNotePrint, InvoicePrint, Seller};
use crate::links::{self, LinkKind};
use crate::model::Invoice;
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

/// What one mail is made from.
struct Prints {
    invoice: InvoicePrint,
    credit_note: Option<CreditNotePrint>,
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
                    batch.into_iter().map(|queued| async { self.settle_all(vec![self.send(queued).await]).await });
                stream::iter(each)
                    .buffer_unordered(IN_FLIGHT)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .sum::<Result<usize>>()?
            } else {
                // Read in one transaction, and kept in the outbox (text only: no PDF is made for it) by the
                // transaction that settles them.
                let prints = self.read(&batch)?;
                let outcomes = batch
                    .into_iter()
                    .zip(prints)
                    .map(|(queued, prints)| {
                        let kept =
                            prints.map(|p| Some(content::compose(&queued.mail, &p.invoice.document, Vec::new())));
                        outcome(queued, kept)
                    })
                    .collect();
                self.settle_all(outcomes).await?
            };
        }
    }

    /// Reads what each mail of `batch` is made from, in one read transaction: the invoices and their pay
    /// links at once, the seller's letterhead and logo once for all; each mail's customer is announced
    /// ahead, so that PostgreSQL fetches it along with its listing. A mail that cannot be made gets its
    /// error.
    fn read(&self, batch: &[Queued]) -> Result<Vec<Result<Prints>>> {
        let (now, public_url) = (Timestamp::now(), self.public_url.as_deref());
        self.store.read_blocking(|tx| {
            portal_organization::letterhead::expect(tx);
            let ids: Vec<_> = batch.iter().map(|queued| queued.mail.invoice_id).collect();
            let invoices = invoices::get_many(tx, &ids)?;
            let seller = Seller::read(tx)?;
            let links = match public_url {
                Some(_) => {
                    links::current_many(tx, LinkKind::Pay, &ids.iter().map(|id| id.to_key()).collect::<Vec<_>>())?
                }
                None => vec![None; ids.len()],
            };
            let read = |queued: &Queued, invoice: Option<Invoice>, link| {
                let invoice = invoice.ok_or_else(|| Error::not_found("invoice"))?;
                portal_customers::service::expect(tx, invoice.customer_id);
                portal_customers::service::expect_listed(tx, invoice.customer_id);
                let scope = portal_customers::system_scope(tx, invoice.customer_id)?;
                let credit_note =
                    match queued.mail.credit_note_id.map(|id| credit_notes::get(tx, id)).transpose()?.flatten() {
                        Some(note) => Some(CreditNotePrint::read_with(tx, &note, &scope, &seller)?),
                        None => None,
                    };
                let invoice = InvoicePrint::read_with(tx, &invoice, &scope, link, &seller, now, public_url)?;
                Ok(Prints { invoice, credit_note })
            };
            Ok(batch
                .iter()
                .zip(invoices)
                .zip(links)
                .map(|((queued, invoice), link)| read(queued, invoice, link))
                .collect())
        })
    }

    /// Sends one mail through the mail server, with the invoice's PDF (and the credit note's) as they stand now.
    async fn send(&self, queued: Queued) -> Outcome {
        let sent = self.read_and_send(&queued).await;
        outcome(queued, sent.map(|()| None))
    }

    async fn read_and_send(&self, queued: &Queued) -> Result<()> {
        let read = self.read(std::slice::from_ref(queued))?.into_iter().next();
        let Prints { invoice, credit_note } = read.unwrap_or_else(|| Err(Error::internal("the mail was not read")))?;
        let invoice = Arc::new(invoice);
        let (renderer, print) = (Arc::clone(&self.renderer), Arc::clone(&invoice));
        let mut attachments =
            vec![pdf_file(&invoice.document.number, render_blocking(move || print.render_pdf(&renderer)).await?)];
        if let Some(note) = credit_note {
            let (renderer, number) = (Arc::clone(&self.renderer), note.document.number.clone());
            attachments.push(pdf_file(&number, render_blocking(move || note.render_pdf(&renderer)).await?));
        }
        self.notifier.send_mail(&content::compose(&queued.mail, &invoice.document, attachments)).await?;
        Ok(())
    }

    /// Records what became of mails in one transaction; how many went out. Without a mail server each
    /// mail goes to the outbox in that transaction, so it is kept exactly once.
    async fn settle_all(&self, outcomes: Vec<Outcome>) -> Result<usize> {
        let outcomes = Arc::new(outcomes);
        let settling = Arc::clone(&outcomes);
        let kept = self
            .store
            .write(move |tx| {
                let pairs: Vec<_> = settling.iter().map(|outcome| (&outcome.queued, &outcome.attempt)).collect();
                let settled = settle(tx, &pairs)?;
                let kept: Vec<_> = settling
                    .iter()
                    .zip(settled)
                    .filter_map(|(outcome, settled)| match (settled, &outcome.kept, &outcome.attempt) {
                        (true, Some(mail), Attempt::Sent(at)) => Some((mail, *at)),
                        _ => None,
                    })
                    .collect();
                portal_notify::keep_mails(tx, kept.iter().copied())?;
                Ok::<_, Error>(kept.len())
            })
            .await?;
        if kept > 0 {
            tracing::info!(mails = kept, "no SMTP server configured: invoice mails kept in the outbox");
        }
        Ok(outcomes.iter().filter(|outcome| matches!(outcome.attempt, Attempt::Sent(_))).count())
    }
}

/// What became of an attempt: sent (with the mail to keep in the outbox, without a mail server), or failed
/// and due again later unless it failed too often.
fn outcome(queued: Queued, result: Result<Option<Mail>>) -> Outcome {
    match result {
        Ok(kept) => Outcome { queued, attempt: Attempt::Sent(Timestamp::now()), kept },
        Err(e) => {
            let retry =
                RETRY_AFTER_SECS.get(queued.mail.attempts as usize).filter(|_| queued.mail.attempts + 1 < MAX_ATTEMPTS);
            tracing::warn!(mail = %queued.mail.id, invoice = %queued.mail.invoice_id, error = %e, will_retry = retry.is_some(), "invoice mail not sent");
            let attempt =
                Attempt::Failed { why: e.to_string(), retry_at: retry.map(|secs| Timestamp::now().plus_secs(*secs)) };
            Outcome { queued, attempt, kept: None }
        }
    }
}

fn pdf_file(number: &str, bytes: Vec<u8>) -> MailAttachment {
    MailAttachment { name: format!("{number}.pdf"), content_type: "application/pdf".into(), bytes }
}

pub(crate) fn job() -> Job {
    Job::new("invoice-mail", Duration::from_secs(1), |ctx| async move { Sender::new(&ctx)?.run().await.map(drop) })
}
