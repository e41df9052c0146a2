//! `/pay/{token}`: the invoice as the customer's mail linked it, its PDF, and paying it with the card the
//! customer saved (works without JavaScript) or a new card through Stripe.js (the card form). The token is
//! the only credential: it opens one invoice, and stops working when a newer link is issued or it expires; a
//! paid or cancelled invoice shows as settled.

use std::sync::Arc;

use poem::http::{header, StatusCode};
use poem::Response;
use portal_billing::cards;
use portal_billing::collect::{self, Trigger};
use portal_billing::document::InvoicePrint;
use portal_billing::invoices;
use portal_billing::links::{self, LinkKind, LinkRefusal};
use portal_billing::model::{Invoice, InvoiceId, InvoiceStatus};
use portal_billing::views::PaymentView;
use portal_core::idempotency::Claim;
use portal_core::{Error, ErrorCode, Result, Store, Timestamp};
use portal_customers::CustomerScope;
use portal_documents::{render_blocking, Renderer};
use portal_stripe::Stripe;
use serde::Deserialize;
use serde_json::json;

use crate::card_form::{self, Endpoints, StripeJs};
use crate::html::{error_page, escape, letterhead, page, page_with_card_form};

/// What the pay pages need.
pub(crate) struct PayPages {
    pub store: Store,
    pub renderer: Arc<Renderer>,
    pub stripe: Arc<Option<Stripe>>,
    /// Stripe.js for the card form (`None`: no new cards).
    pub stripe_js: Option<StripeJs>,
    pub public_url: Option<String>,
}

/// An invoice opened by its link, with everything its page shows.
struct Opened {
    invoice: Invoice,
    scope: CustomerScope,
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
            // The page's customer and its saved card come with the scope's check.
            portal_customers::service::expect_record(tx, invoice.customer_id);
            let Ok(scope) = portal_customers::system_scope(tx, invoice.customer_id) else {
                return Ok(Err(LinkRefusal::Unknown));
            };
            let print = InvoicePrint::read(tx, &invoice, &scope, now, public_url)?;
            let card = portal_customers::service::billing(tx, &scope)?.stripe_payment_method_id;
            Ok::<_, Error>(Ok(Opened { invoice, scope, print, saved_card: card.is_some() && can_charge }))
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

    /// The card form's first call: a SetupIntent for the invoice's customer, whose `client_secret`
    /// Stripe.js confirms with the card. Its card never becomes the default by Stripe's report; the
    /// payment's outcome decides.
    pub async fn start_card(&self, token: &str) -> Response {
        let (opened, stripe) = match self.open_for_card(token, true) {
            Ok(both) => both,
            Err(answer) => return *answer,
        };
        match cards::start(&self.store, stripe, &opened.scope, false).await {
            Ok(intent) => card_form::json(StatusCode::OK, &json!({ "client_secret": intent.client_secret })),
            Err(e) => card_form::error(&e),
        }
    }

    /// The card form's second call, once Stripe.js confirmed the SetupIntent: charges that card under the
    /// invoice's exactly-once reservation. Answers `paid`, `requires_action` with the PaymentIntent's
    /// secret for 3-D Secure, or the decline in the envelope.
    pub async fn pay_with_new_card(&self, token: &str, request: CardPayment) -> Response {
        let (opened, stripe) = match self.open_for_card(token, true) {
            Ok(both) => both,
            Err(answer) => return *answer,
        };
        let card = match cards::confirmed(&self.store, stripe, &opened.scope, &request.setup_intent_id).await {
            Ok(card) => card,
            Err(e) => return card_form::error(&e),
        };
        let id = opened.invoice.id;
        let paid =
            collect::pay(&self.store, stripe, id, Some(card.clone()), Trigger::Page, &Claim::None, Timestamp::now())
                .await;
        self.card_outcome(stripe, &opened.scope, &card, request.save, paid).await
    }

    /// The card form's last call, after 3-D Secure: the PaymentIntent's outcome, read from Stripe.
    pub async fn confirm_new_card(&self, token: &str, request: CardPayment) -> Response {
        // The webhook may have recorded the payment already: the invoice is then settled, and paid.
        let (opened, stripe) = match self.open_for_card(token, false) {
            Ok(both) => both,
            Err(answer) => return *answer,
        };
        let card = match cards::confirmed(&self.store, stripe, &opened.scope, &request.setup_intent_id).await {
            Ok(card) => card,
            Err(e) => return card_form::error(&e),
        };
        let paid = collect::refresh(&self.store, stripe, opened.invoice.id, Timestamp::now()).await;
        self.card_outcome(stripe, &opened.scope, &card, request.save, paid).await
    }

    /// Answers the card form, and keeps the card only if it paid and the customer asked to keep it (it then
    /// becomes the default); otherwise it is detached from the customer.
    async fn card_outcome(
        &self,
        stripe: &Stripe,
        scope: &CustomerScope,
        card: &str,
        save: bool,
        paid: Result<PaymentView>,
    ) -> Response {
        let settled = match &paid {
            Ok(view) => view.status == "succeeded",
            Err(e) => e.code() == ErrorCode::PaymentFailed,
        };
        if settled {
            let kept = if save && paid.is_ok() {
                cards::make_default(&self.store, scope, card.to_string()).await
            } else {
                stripe.detach(card).await
            };
            if let Err(e) = kept {
                tracing::warn!(error = %e, customer = %scope.id(), "the card used on the pay page was not kept or removed");
            }
        }
        match paid {
            Ok(view) if view.status == "succeeded" => card_form::json(StatusCode::OK, &json!({ "status": "paid" })),
            Ok(view) if view.status == "requires_action" => {
                match stripe.payment_intent(&view.payment_intent_id).await {
                    Ok(intent) => card_form::json(
                        StatusCode::OK,
                        &json!({ "status": "requires_action", "client_secret": intent.client_secret }),
                    ),
                    Err(e) => card_form::error(&e),
                }
            }
            Ok(view) => card_form::json(StatusCode::OK, &json!({ "status": view.status })),
            Err(e) if e.code() == ErrorCode::PaymentFailed => card_form::error(&Error::new(
                ErrorCode::PaymentFailed,
                "Your card was declined. Please use another card or pay by bank transfer.",
            )),
            Err(e) => card_form::error(&e),
        }
    }

    /// The invoice `token` opens for the card form (`open`: only while it can still be paid); otherwise
    /// the JSON answer.
    fn open_for_card(&self, token: &str, open: bool) -> std::result::Result<(Opened, &Stripe), Box<Response>> {
        let (Some(stripe), Some(_)) = (self.stripe.as_ref().as_ref(), &self.stripe_js) else {
            return Err(Box::new(card_form::error(&portal_stripe::not_configured())));
        };
        let opened = self.open(token).map_err(|_| Box::new(card_form::error(&Error::not_found("payment link"))))?;
        if open && opened.print.document.amount_due.is_none() {
            return Err(Box::new(card_form::error(&Error::conflict(
                "the invoice is settled: there is nothing to pay",
            ))));
        }
        Ok((opened, stripe))
    }

    fn invoice_page(&self, token: &str, opened: &Opened, notice: Option<Notice>, status: StatusCode) -> Response {
        let doc = &opened.print.document;
        let lh = &doc.letterhead;
        let mut body = String::new();
        body.push_str("<div class=\"card\">");
        body.push_str(&letterhead(opened.print.logo.as_deref(), &lh.seller.name));
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
        let title = format!("Invoice {}", doc.number);
        let Some(due) = &doc.amount_due else {
            if word == "Paid" {
                body.push_str("<div class=\"card\"><p>Thank you: this invoice is paid.</p></div>");
            }
            return page(status, &title, &body);
        };
        body.push_str("<div class=\"card\"><h2>Pay</h2>");
        let mut offered = false;
        if opened.saved_card {
            body.push_str(&format!(
                "<form method=\"post\" action=\"/pay/{}\"><p>Charge the card you saved with us.</p>\
                 <button type=\"submit\">Pay {} with your saved card</button></form>",
                escape(token),
                escape(due)
            ));
            offered = true;
        }
        let card_form = self.stripe_js.as_ref().filter(|_| self.stripe.is_some());
        if let Some(js) = card_form {
            if offered {
                body.push_str("<p class=\"or\">Or with another card:</p>");
            }
            let endpoints = Endpoints {
                start: format!("/pay/{token}/card"),
                finish: format!("/pay/{token}/card/pay"),
                confirm: format!("/pay/{token}/card/confirm"),
            };
            body.push_str(&js.form(&endpoints, Some("Save this card for future invoices"), &format!("Pay {due}")));
            body.push_str("<noscript><p class=\"muted\">Paying with a new card needs JavaScript.</p></noscript>");
            offered = true;
        }
        if !lh.bank.is_empty() {
            body.push_str(&format!(
                "<p{}>{} bank transfer, quoting <strong>{}</strong>:</p><p class=\"bank\">{}</p>",
                if offered { " class=\"or\"" } else { "" },
                if offered { "Or by" } else { "By" },
                escape(&doc.number),
                lh.bank.iter().map(|l| escape(l)).collect::<Vec<_>>().join("\n")
            ));
        }
        body.push_str("</div>");
        match card_form {
            Some(js) => page_with_card_form(status, &title, &body, js),
            None => page(status, &title, &body),
        }
    }
}

/// The body of the card form's payment calls.
#[derive(Debug, Deserialize)]
pub(crate) struct CardPayment {
    setup_intent_id: String,
    #[serde(default)]
    save: bool,
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
