//! An invoice as a document: what its PDF prints, from the invoice, its customer and the agency's profile.

use std::sync::Arc;

use chrono::NaiveDate;
use portal_core::ids::CustomerId;
use portal_core::{Error, ReadTx, Result, Timestamp};
use portal_customers::CustomerScope;
use portal_documents::format::{address_lines, date, money, percent};
use portal_documents::model::{CreditNoteDocument, InvoiceDocument, InvoiceLine, Letterhead, Party, Refund};
use portal_documents::{DocumentError, Job, Renderer};
use portal_organization::model::Logo;

use crate::links::{self, Link, LinkKind};
use crate::model::{CreditNote, Invoice, InvoiceStatus, RefundChannel};

/// What renders a document: its data and logo, under a stable identity, dated by the record.
fn job<'a, T: serde::Serialize>(data: &'a T, logo: Option<&'a Logo>, ident: &str, date: NaiveDate) -> Job<'a, T> {
    Job { data, logo: logo.map(Logo::for_document), ident: ident.to_string(), date }
}

/// Tells the store what a document of `customer` reads (the letterhead and the customer), so that they
/// come in one statement with the next read.
fn expect_print(tx: &impl ReadTx, customer: CustomerId) {
    portal_organization::letterhead::expect(tx);
    portal_customers::service::expect(tx, customer);
}

/// The agency as its documents show it: its letterhead and logo, read once for every document of a batch.
#[derive(Clone)]
pub struct Seller {
    letterhead: Letterhead,
    logo: Option<Arc<Logo>>,
}

impl Seller {
    pub fn read(tx: &impl ReadTx) -> Result<Self> {
        let (letterhead, logo) = portal_organization::letterhead::read(tx)?;
        Ok(Self { letterhead, logo: logo.map(Arc::new) })
    }
}

/// The customer as documents address it.
fn buyer(tx: &impl ReadTx, scope: &CustomerScope) -> Result<Party> {
    let customer = portal_customers::service::get_listed(tx, scope.id())?;
    let a = &customer.address;
    let mut lines = Vec::new();
    if !customer.name.is_empty() && customer.name != customer.company_name {
        lines.push(format!("Attn. {}", customer.name));
    }
    lines.extend(address_lines(&a.street, &a.city, &a.state, &a.postal_code, &a.country));
    lines.push(customer.billing_email.clone());
    Ok(Party { name: customer.company_name, lines })
}

/// An invoice's refunds as its PDF lists them: one per credit note, and the refunds recorded before credit
/// notes existed as one line.
fn refunds(invoice: &Invoice, money: &impl Fn(i64) -> String) -> Vec<Refund> {
    let day = |t: Timestamp| date(t.datetime().date_naive());
    let mut out: Vec<Refund> = invoice
        .credit_notes
        .iter()
        .map(|n| Refund { date: day(n.issued_at), amount: money(n.amount), credit_note: Some(n.number.clone()) })
        .collect();
    let documented: i64 = invoice.credit_notes.iter().map(|n| n.amount).sum();
    if let (Some(at), true) = (invoice.refunded_at, invoice.refunded_amount > documented) {
        out.insert(0, Refund { date: day(at), amount: money(invoice.refunded_amount - documented), credit_note: None });
    }
    out
}

/// Everything an invoice's PDF is made from, read in one transaction.
pub struct InvoicePrint {
    pub document: InvoiceDocument,
    pub logo: Option<Arc<Logo>>,
    /// The invoice's issue day: the PDF's date, so the same invoice gives the same bytes.
    pub issued: chrono::NaiveDate,
    pub ident: String,
}

/// The address of the invoice's current pay link, while it works.
fn pay_link(
    tx: &impl ReadTx,
    invoice: &Invoice,
    link: Option<Link>,
    base: &str,
    now: Timestamp,
) -> Result<Option<String>> {
    let id = invoice.id.to_key();
    match link {
        Some(link) if link.expires_at > now => {
            Ok(Some(links::url(base, LinkKind::Pay, &links::token(tx, LinkKind::Pay, &id, &link)?)))
        }
        _ => Ok(None),
    }
}

impl InvoicePrint {
    /// `public_url`: where the portal is reached, for the pay link (none: no link).
    pub fn read(
        tx: &impl ReadTx,
        invoice: &Invoice,
        scope: &CustomerScope,
        now: Timestamp,
        public_url: Option<&str>,
    ) -> Result<Self> {
        expect_print(tx, scope.id());
        let link = match public_url {
            Some(_) if invoice.status_at(now).is_outstanding() => {
                links::current(tx, LinkKind::Pay, &invoice.id.to_key())?
            }
            _ => None,
        };
        Self::read_with(tx, invoice, scope, link, &Seller::read(tx)?, now, public_url)
    }

    /// As [`InvoicePrint::read`], with the invoice's pay link and the seller read already (with those of
    /// other invoices).
    pub(crate) fn read_with(
        tx: &impl ReadTx,
        invoice: &Invoice,
        scope: &CustomerScope,
        link: Option<Link>,
        seller: &Seller,
        now: Timestamp,
        public_url: Option<&str>,
    ) -> Result<Self> {
        let Seller { letterhead, logo } = seller.clone();
        let buyer = buyer(tx, scope)?;
        let c = invoice.currency;
        let m = |minor: i64| money(minor, c, &letterhead.locale);
        let status = invoice.status_at(now);
        let document = InvoiceDocument {
            buyer,
            number: invoice.number.clone(),
            mark: match status {
                InvoiceStatus::Paid => Some("PAID".into()),
                InvoiceStatus::Cancelled => Some("CANCELLED".into()),
                _ => None,
            },
            issue_date: date(invoice.issue_date.datetime().date_naive()),
            due_date: date(invoice.due_date.datetime().date_naive()),
            paid_date: invoice.paid_date.map(|d| date(d.datetime().date_naive())),
            period: invoice.period.map(|p| format!("{} – {}", date(p.start), date(p.last_day()))),
            description: invoice.description.clone(),
            milestone: invoice.milestone.clone(),
            currency: c.as_str().to_owned(),
            lines: invoice
                .line_items
                .iter()
                .map(|l| InvoiceLine {
                    description: l.description.clone(),
                    quantity: l.quantity.to_string(),
                    unit_price: m(l.unit_price),
                    amount: m(l.amount),
                })
                .collect(),
            subtotal: m(invoice.amount),
            tax_label: format!("Tax ({})", percent(invoice.tax_rate.percent())),
            tax: m(invoice.tax_amount),
            infrastructure_costs: (invoice.infrastructure_costs != 0).then(|| m(invoice.infrastructure_costs)),
            total: m(invoice.total_amount),
            refunds: refunds(invoice, &m),
            amount_due: status.is_outstanding().then(|| m(invoice.total_amount)),
            pay_link: match public_url {
                Some(base) if status.is_outstanding() => pay_link(tx, invoice, link, base, now)?,
                _ => None,
            },
            letterhead,
        };
        Ok(Self {
            document,
            logo,
            issued: invoice.issue_date.datetime().date_naive(),
            ident: format!("invoice/{}", invoice.id),
        })
    }

    pub fn render_pdf(&self, renderer: &Renderer) -> Result<Vec<u8>, DocumentError> {
        renderer.invoice(&job(&self.document, self.logo.as_deref(), &self.ident, self.issued))
    }
}

/// Everything a credit note's PDF is made from, read in one transaction.
pub struct CreditNotePrint {
    pub document: CreditNoteDocument,
    pub logo: Option<Arc<Logo>>,
    issued: chrono::NaiveDate,
    ident: String,
}

/// How a refund's money went back, in words.
fn refunded_via(channel: RefundChannel, paid_by: Option<&str>) -> &'static str {
    match (channel, paid_by) {
        (RefundChannel::Stripe, _) => "Refunded to the card that paid the invoice.",
        (RefundChannel::Manual, Some("bank_transfer")) => "Refunded by bank transfer.",
        (RefundChannel::Manual, Some("paypal")) => "Refunded through PayPal.",
        (RefundChannel::Manual, Some("credit_card")) => "Refunded to the card that paid the invoice.",
        (RefundChannel::Manual, _) => "Refunded the way the invoice was paid.",
    }
}

impl CreditNotePrint {
    pub fn read(tx: &impl ReadTx, note: &CreditNote, scope: &CustomerScope) -> Result<Self> {
        expect_print(tx, scope.id());
        Self::read_with(tx, note, scope, &Seller::read(tx)?)
    }

    /// As [`CreditNotePrint::read`], with the seller read already.
    pub(crate) fn read_with(
        tx: &impl ReadTx,
        note: &CreditNote,
        scope: &CustomerScope,
        seller: &Seller,
    ) -> Result<Self> {
        let Seller { letterhead, logo } = seller.clone();
        let invoice = crate::invoices::get(tx, note.invoice_id)?.ok_or_else(|| Error::not_found("invoice"))?;
        let m = |minor: i64| money(minor, note.currency, &letterhead.locale);
        let issued = note.issued_at.datetime().date_naive();
        let document = CreditNoteDocument {
            buyer: buyer(tx, scope)?,
            number: note.number.clone(),
            date: date(issued),
            invoice_number: note.invoice_number.clone(),
            invoice_date: date(invoice.issue_date.datetime().date_naive()),
            invoice_total: m(invoice.total_amount),
            currency: note.currency.as_str().to_owned(),
            reason: note.reason.clone(),
            amount: m(note.amount),
            refunded_via: refunded_via(note.channel, invoice.payment_method.as_deref()).into(),
            letterhead,
        };
        Ok(Self { document, logo, issued, ident: format!("credit-note/{}", note.id) })
    }

    pub fn render_pdf(&self, renderer: &Renderer) -> Result<Vec<u8>, DocumentError> {
        renderer.credit_note(&job(&self.document, self.logo.as_deref(), &self.ident, self.issued))
    }
}
