//! What an invoice mail says: subject, plain text and HTML, from the same formatted figures the PDF prints.

use portal_documents::format::html as escape;
use portal_documents::model::InvoiceDocument;
use portal_notify::{Mail, MailAttachment};

use super::{InvoiceMail, MailKind};

/// The mail for `mail`, with its PDFs attached (the invoice's, and a refund's credit note) when made.
pub(crate) fn compose(mail: &InvoiceMail, doc: &InvoiceDocument, attachments: Vec<MailAttachment>) -> Mail {
    let seller = &doc.letterhead.seller.name;
    let from = if seller.is_empty() { String::new() } else { format!(" from {seller}") };
    let n = &doc.number;
    let (subject, opening) = match (mail.kind, mail.reminder_day) {
        (MailKind::Issued | MailKind::Resent, _) => (
            format!("Invoice {n}{from}: {} due {}", doc.total, doc.due_date),
            format!("Here is invoice {n} for {}, due on {}.", doc.total, doc.due_date),
        ),
        (MailKind::Reminder, Some(day)) if day < 0 => (
            format!("Reminder: invoice {n} is due on {}", doc.due_date),
            format!("A reminder that invoice {n} for {} is due in {} days, on {}.", doc.total, -day, doc.due_date),
        ),
        (MailKind::Reminder, Some(0)) => (
            format!("Invoice {n} is due today"),
            format!("Invoice {n} for {} is due today, {}.", doc.total, doc.due_date),
        ),
        (MailKind::Reminder, _) => (
            format!("Overdue: invoice {n} was due on {}", doc.due_date),
            format!(
                "Invoice {n} for {} was due on {} and is still open. If you have paid it already, please \
                 disregard this message.",
                doc.total, doc.due_date
            ),
        ),
        (MailKind::Receipt, _) => (
            format!("Receipt for invoice {n}{from}"),
            format!(
                "Thank you: we received your payment of {} for invoice {n}{}.",
                doc.total,
                doc.paid_date.as_deref().map(|d| format!(" on {d}")).unwrap_or_default()
            ),
        ),
        (MailKind::Refund, _) => {
            let refunded = doc.refunds.last().map_or(String::new(), |r| r.amount.clone());
            (
                format!("Refund for invoice {n}{from}"),
                format!("We refunded {refunded} of invoice {n}. It may take a few days to reach your account."),
            )
        }
    };
    let asks_payment = doc.amount_due.is_some();
    let mut text = vec![format!("Hello {},", doc.buyer.name), String::new(), opening.clone(), String::new()];
    let mut html = vec![format!("<p>Hello {},</p>", escape(&doc.buyer.name)), format!("<p>{}</p>", escape(&opening))];
    if asks_payment {
        if let Some(link) = &doc.pay_link {
            text.extend([format!("Pay online: {link}"), String::new()]);
            html.push(format!(
                "<p><a href=\"{0}\" style=\"display:inline-block;padding:10px 18px;background:#1f3a5f;color:#ffffff;\
                 text-decoration:none;border-radius:4px\">Pay {1} online</a></p>",
                escape(link),
                escape(&doc.total)
            ));
        }
        if !doc.letterhead.bank.is_empty() {
            text.push(format!("Or by bank transfer, quoting {n}:"));
            text.extend(doc.letterhead.bank.iter().cloned());
            text.push(String::new());
            html.push(format!(
                "<p>Or by bank transfer, quoting <strong>{}</strong>:<br>{}</p>",
                escape(n),
                doc.letterhead.bank.iter().map(|l| escape(l)).collect::<Vec<_>>().join("<br>")
            ));
        }
    }
    for file in &attachments {
        let what = if file.name.starts_with("CN-") { "The credit note" } else { "The invoice" };
        text.push(format!("{what} is attached as {}.", file.name));
        html.push(format!("<p>{what} is attached as {}.</p>", escape(&file.name)));
    }
    if !seller.is_empty() {
        text.extend([String::new(), seller.clone()]);
        html.push(format!("<p>{}</p>", escape(seller)));
    }
    if let Some(footer) = &doc.letterhead.footer {
        text.extend([String::new(), "--".into(), footer.clone()]);
        html.push(format!("<p style=\"color:#5f5f5f;font-size:12px\">{}</p>", escape(footer)));
    }
    let html = format!(
        "<!doctype html><html><body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#1a1a1a\">\
         {}</body></html>",
        html.join("")
    );
    Mail { to: mail.to.clone(), subject, text: text.join("\n"), html, message_id: mail.id.to_string(), attachments }
}
