//! `/pay/{token}`: the invoice as the customer's mail linked it, its PDF, and paying it with the card the
//! customer saved. Works without JavaScript. The token is the only credential: it opens one invoice, and
//! stops working when a newer link is issued or it expires; a paid or cancelled invoice shows as settled.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use poem::http::{header, StatusCode};
use poem::Response;
use portal_billing::collect::{self, Trigger};
use portal_billing::document::InvoicePrint;
use portal_billing::invoices;
use portal_billing::links::{self, LinkKind, LinkRefusal};
use portal_billing::model::{Invoice, InvoiceId, InvoiceStatus};
use portal_core::idempotency::Claim;
use portal_core::{Error, ErrorCode, Store, Timestamp};
use portal_documents::{render_blocking, Renderer};
use portal_organization::model::{Logo, LogoFormat};
use portal_stripe::Stripe;

use crate::html::{error_page, escape, page};

/// What the pay pages need.
pub(crate) struct PayPages {
    pub store: Store,
    pub renderer: Arc<Renderer>,
    pub stripe: Arc<Option<Stripe>>,
    pub public_url: Option<String>,
}

/// An invoice opened by its link, with everything its page shows.
struct Opened {
    invoice: Invoice,
    print: InvoicePrint,
    /// The customer saved a card, and the portal can charge it.
    saved_card: bool,
}

/// A line shown above the invoice after an attempt to pay.
enum Notice {
    Error(String),
}

impl PayPages {
    /// The invoice `token` opens, or the page that says why it opens nothing.
    fn open(&self, token: &str) -> std::result::Result<Opened, Box<Response>> {
        let now = Timestamp::now();
        let public_url = self.public_url.as_deref();
        let can_charge = self.stripe.is_some();
        let opened = self.store.read_blocking(|tx| {
            let id = match links::open(tx, LinkKind::Pay, token, now)? {
                Ok(id) => InvoiceId::from_key(&id).ok_or_else(|| Error::internal("a link names no invoice"))?,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let invoice = invoices::get(tx, id)?.ok_or_else(|| Error::not_found("invoice"))?;
            let Ok(scope) = portal_customers::system_scope(tx, invoice.customer_id) else {
                return Ok(Err(LinkRefusal::Unknown));
            };
            let print = InvoicePrint::read(tx, &invoice, &scope, now, public_url)?;
            let card = portal_customers::service::billing(tx, &scope)?.stripe_payment_method_id;
            Ok::<_, Error>(Ok(Opened { invoice, print, saved_card: card.is_some() && can_charge }))
        });
        match opened {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(LinkRefusal::Expired)) => Err(Box::new(error_page(
                StatusCode::GONE,
                "This payment link has expired",
                "Ask for the invoice to be sent again: the new mail carries a new link.",
            ))),
            Ok(Err(LinkRefusal::Unknown | LinkRefusal::Replaced)) => Err(Box::new(error_page(
                StatusCode::NOT_FOUND,
                "This payment link is not valid",
                "It may have been replaced by a newer one. Use the link in the latest mail about this invoice.",
            ))),
            Err(e) => Err(Box::new(failure(&e))),
        }
    }

    pub async fn show(&self, token: &str) -> Response {
        match self.open(token) {
            Ok(opened) => self.invoice_page(token, &opened, None, StatusCode::OK),
            Err(page) => *page,
        }
    }

    pub async fn pdf(&self, token: &str) -> Response {
        let opened = match self.open(token) {
            Ok(opened) => opened,
            Err(page) => return *page,
        };
        let (renderer, number) = (Arc::clone(&self.renderer), opened.invoice.number.clone());
        let print = opened.print;
        match render_blocking(move || print.render_pdf(&renderer)).await {
            Ok(pdf) => Response::builder()
                .header(header::CONTENT_TYPE, "application/pdf")
                .header(header::CONTENT_DISPOSITION, format!("inline; filename=\"{number}.pdf\""))
                .body(pdf),
            Err(e) => failure(&e),
        }
    }

    /// Charges the saved card, then shows the invoice paid (303 to the page) or why not.
    pub async fn pay_with_saved_card(&self, token: &str) -> Response {
        let opened = match self.open(token) {
            Ok(opened) => opened,
            Err(page) => return *page,
        };
        let Some(stripe) = self.stripe.as_ref().as_ref() else {
            let notice = Notice::Error("Card payments are not available here; please pay by bank transfer.".into());
            return self.invoice_page(token, &opened, Some(notice), StatusCode::SERVICE_UNAVAILABLE);
        };
        let id = opened.invoice.id;
        match collect::pay(&self.store, stripe, id, None, Trigger::Payer, &Claim::None, Timestamp::now()).await {
            Ok(_) => Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(header::LOCATION, format!("/pay/{token}"))
                .finish(),
            Err(e)
                if matches!(e.code(), ErrorCode::PaymentFailed | ErrorCode::Conflict | ErrorCode::ValidationFailed) =>
            {
                let message = match e.code() {
                    ErrorCode::PaymentFailed => {
                        "Your card was declined. Please use another card or pay by bank transfer."
                    }
                    _ => e.message(),
                };
                let reopened = self.open(token).unwrap_or(opened);
                self.invoice_page(token, &reopened, Some(Notice::Error(message.to_string())), e.code().status())
            }
            Err(e) => failure(&e),
        }
    }

    fn invoice_page(&self, token: &str, opened: &Opened, notice: Option<Notice>, status: StatusCode) -> Response {
        let doc = &opened.print.document;
        let lh = &doc.letterhead;
        let mut body = String::new();
        body.push_str("<div class=\"card\">");
        if let Some(logo) = &opened.print.logo {
            body.push_str(&format!(
                "<img class=\"logo\" src=\"{}\" alt=\"{}\">",
                data_uri(logo),
                escape(&lh.seller.name)
            ));
        }
        if !lh.seller.name.is_empty() {
            body.push_str(&format!("<p class=\"seller\">{}</p>", escape(&lh.seller.name)));
        }
        let (class, word) = match opened.invoice.status_at(Timestamp::now()) {
            InvoiceStatus::Paid => ("paid", "Paid"),
            InvoiceStatus::Cancelled => ("cancelled", "Cancelled"),
            InvoiceStatus::Overdue => ("open", "Overdue"),
            _ => ("open", "Open"),
        };
        body.push_str(&format!(
            "<h1>Invoice <span class=\"nowrap\">{}</span> <span class=\"status {class}\">{word}</span></h1>",
            escape(&doc.number)
        ));
        if let Some(Notice::Error(message)) = &notice {
            body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message)));
        }
        body.push_str("<dl class=\"facts\">");
        let mut facts = vec![
            ("Billed to", doc.buyer.name.clone()),
            ("Issued", doc.issue_date.clone()),
            ("Due", doc.due_date.clone()),
        ];
        if let Some(paid) = &doc.paid_date {
            facts.push(("Paid", paid.clone()));
        }
        for (label, value) in facts {
            body.push_str(&format!("<dt class=\"muted\">{label}</dt><dd>{}</dd>", escape(&value)));
        }
        body.push_str("</dl><table><thead><tr><th>Description</th><th class=\"num\">Amount</th></tr></thead><tbody>");
        for line in &doc.lines {
            let qty = if line.quantity == "1" { String::new() } else { format!(" × {}", line.quantity) };
            body.push_str(&format!(
                "<tr class=\"line\"><td>{}{}</td><td class=\"num\">{}</td></tr>",
                escape(&line.description),
                escape(&qty),
                escape(&line.amount)
            ));
        }
        let mut totals = vec![("Subtotal".to_string(), doc.subtotal.clone()), (doc.tax_label.clone(), doc.tax.clone())];
        if let Some(costs) = &doc.infrastructure_costs {
            totals.push(("Infrastructure costs".into(), costs.clone()));
        }
        for (label, value) in totals {
            body.push_str(&format!(
                "<tr><td class=\"muted\">{}</td><td class=\"num\">{}</td></tr>",
                escape(&label),
                escape(&value)
            ));
        }
        body.push_str(&format!("<tr class=\"total\"><td>Total</td><td class=\"num\">{}</td></tr>", escape(&doc.total)));
        for refund in &doc.refunds {
            body.push_str(&format!(
                "<tr><td class=\"muted\">Refunded {}</td><td class=\"num\">−{}</td></tr>",
                escape(&refund.date),
                escape(&refund.amount)
            ));
        }
        body.push_str("</tbody></table>");
        body.push_str(&format!(
            "<p><a href=\"/pay/{}/invoice.pdf\">Download the invoice (PDF)</a></p></div>",
            escape(token)
        ));
        if let Some(due) = &doc.amount_due {
            body.push_str("<div class=\"card\"><h2>Pay</h2>");
            if opened.saved_card {
                body.push_str(&format!(
                    "<form method=\"post\" action=\"/pay/{}\"><p>Charge the card you saved with us.</p>\
                     <button type=\"submit\">Pay {} with your saved card</button></form>",
                    escape(token),
                    escape(due)
                ));
            }
            if !lh.bank.is_empty() {
                body.push_str(&format!(
                    "<p>{} bank transfer, quoting <strong>{}</strong>:</p><p class=\"bank\">{}</p>",
                    if opened.saved_card { "Or by" } else { "By" },
                    escape(&doc.number),
                    lh.bank.iter().map(|l| escape(l)).collect::<Vec<_>>().join("\n")
                ));
            }
            body.push_str("</div>");
        } else if word == "Paid" {
            body.push_str("<div class=\"card\"><p>Thank you: this invoice is paid.</p></div>");
        }
        page(status, &format!("Invoice {}", doc.number), &body)
    }
}

fn data_uri(logo: &Logo) -> String {
    let kind = match logo.format {
        LogoFormat::Png => "image/png",
        LogoFormat::Svg => "image/svg+xml",
    };
    format!("data:{kind};base64,{}", STANDARD.encode(&logo.bytes))
}

/// A page for a failure of the portal itself (logged; the customer learns nothing internal).
fn failure(e: &Error) -> Response {
    tracing::error!(error = %e, "pay page failed");
    error_page(
        e.code().status(),
        "Something went wrong",
        "The invoice cannot be shown right now. Please try again later.",
    )
}
