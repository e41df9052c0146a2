//! An invoice as a document: what its PDF prints, from the invoice, its customer and the agency's profile.

use chrono::Days;
use portal_core::{ReadTx, Result, Timestamp};
use portal_customers::CustomerScope;
use portal_documents::format::{address_lines, date, money, percent};
use portal_documents::model::{InvoiceDocument, InvoiceLine, Party, Refund};
use portal_documents::{DocumentError, Job, Renderer};
use portal_organization::model::Logo;

use crate::links::{self, LinkKind};
use crate::model::{Invoice, InvoiceStatus};

/// Everything an invoice's PDF is made from, read in one transaction.
pub struct InvoicePrint {
    pub document: InvoiceDocument,
    pub logo: Option<Logo>,
    /// The invoice's issue day: the PDF's date, so the same invoice gives the same bytes.
    pub issued: chrono::NaiveDate,
    pub ident: String,
}

/// The address of the invoice's current pay link, while it works.
fn pay_link(tx: &impl ReadTx, invoice: &Invoice, public_url: &str, now: Timestamp) -> Result<Option<String>> {
    let id = invoice.id.to_key();
    match links::current(tx, LinkKind::Pay, &id)? {
        Some(link) if link.expires_at > now => {
            Ok(Some(links::url(public_url, LinkKind::Pay, &links::token(tx, LinkKind::Pay, &id, &link)?)))
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
        let (letterhead, logo) = portal_organization::letterhead::read(tx)?;
        let customer = portal_customers::service::record(tx, scope)?.customer;
        let a = &customer.address;
        let mut buyer_lines = Vec::new();
        if !customer.name.is_empty() && customer.name != customer.company_name {
            buyer_lines.push(format!("Attn. {}", customer.name));
        }
        buyer_lines.extend(address_lines(&a.street, &a.city, &a.state, &a.postal_code, &a.country));
        buyer_lines.push(customer.billing_email.clone());
        let c = invoice.currency;
        let m = |minor: i64| money(minor, c, &letterhead.locale);
        let status = invoice.status_at(now);
        let document = InvoiceDocument {
            buyer: Party { name: customer.company_name.clone(), lines: buyer_lines },
            number: invoice.number.clone(),
            mark: match status {
                InvoiceStatus::Paid => Some("PAID".into()),
                InvoiceStatus::Cancelled => Some("CANCELLED".into()),
                _ => None,
            },
            issue_date: date(invoice.issue_date.datetime().date_naive()),
            due_date: date(invoice.due_date.datetime().date_naive()),
            paid_date: invoice.paid_date.map(|d| date(d.datetime().date_naive())),
            period: invoice.period.map(|p| {
                let last = p.end.checked_sub_days(Days::new(1)).unwrap_or(p.end);
                format!("{} – {}", date(p.start), date(last))
            }),
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
            refunds: match invoice.refunded_at {
                Some(at) if invoice.refunded_amount > 0 => {
                    vec![Refund { date: date(at.datetime().date_naive()), amount: m(invoice.refunded_amount) }]
                }
                _ => Vec::new(),
            },
            amount_due: status.is_outstanding().then(|| m(invoice.total_amount)),
            pay_link: match public_url {
                Some(base) if status.is_outstanding() => pay_link(tx, invoice, base, now)?,
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
        let job = Job {
            data: &self.document,
            logo: self.logo.as_ref().map(Logo::for_document),
            ident: self.ident.clone(),
            date: self.issued,
        };
        renderer.invoice(&job)
    }
}
