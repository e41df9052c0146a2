//! What a template is given, as `data.json`. Amounts and dates arrive formatted (see [`crate::format`]), so
//! a template only places text and never does arithmetic on money. A replacement template reads the same
//! fields; `docs/documents.md` lists them.

use serde::Serialize;

/// A seller or buyer block: a name and the lines printed under it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Party {
    pub name: String,
    /// Address lines, then tax id and contact, in print order.
    pub lines: Vec<String>,
}

/// The parts of the agency's profile every document prints.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Letterhead {
    pub seller: Party,
    /// How to pay by bank transfer: IBAN, BIC, free text; empty when the agency gave none.
    pub bank: Vec<String>,
    pub footer: Option<String>,
    /// BCP 47; amounts are formatted for it.
    pub locale: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvoiceLine {
    pub description: String,
    pub quantity: String,
    pub unit_price: String,
    pub amount: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refund {
    pub date: String,
    pub amount: String,
    /// The credit note documenting it (`CN-YYYY-NNNNNN`).
    pub credit_note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvoiceDocument {
    pub letterhead: Letterhead,
    pub buyer: Party,
    /// `INV-YYYY-NNNNNN`.
    pub number: String,
    /// `PAID` or `CANCELLED`, stamped across the first page.
    pub mark: Option<String>,
    pub issue_date: String,
    pub due_date: String,
    pub paid_date: Option<String>,
    /// The billing period of a recurring invoice: `2026-11-01 – 2026-11-30`.
    pub period: Option<String>,
    pub description: Option<String>,
    pub milestone: Option<String>,
    pub currency: String,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: String,
    /// `Tax (19 %)`.
    pub tax_label: String,
    pub tax: String,
    /// Passed through at cost; absent when zero.
    pub infrastructure_costs: Option<String>,
    pub total: String,
    pub refunds: Vec<Refund>,
    /// What is still to pay: the total while the invoice is open, nothing once paid or cancelled.
    pub amount_due: Option<String>,
    /// The hosted page that pays this invoice, while it can be paid.
    pub pay_link: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Milestone {
    pub name: String,
    /// `30 %`.
    pub share: String,
    /// When its invoice falls due: `14 days after issue`.
    pub due: String,
    /// Its invoice's amount before tax, as the portal splits the proposal's total (the shares sum to it).
    pub amount: String,
    /// The invoice's tax and total; absent when the customer pays no tax.
    pub tax: Option<String>,
    pub total: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProposalDocument {
    pub letterhead: Letterhead,
    pub buyer: Party,
    pub title: String,
    pub description: Option<String>,
    /// `Draft`, `Sent`, `Accepted`, …
    pub status: String,
    pub date: String,
    pub valid_until: Option<String>,
    pub currency: String,
    /// Before tax.
    pub total: String,
    /// `Tax (19 %)`, when the customer pays tax.
    pub tax_label: Option<String>,
    /// The sum of the milestone invoices' totals, tax included.
    pub total_with_tax: Option<String>,
    /// Billed every month once accepted.
    pub monthly_recurring: Option<String>,
    pub milestones: Vec<Milestone>,
}

/// A credit note: the document of a refund of a paid invoice.
#[derive(Debug, Clone, Serialize)]
pub struct CreditNoteDocument {
    pub letterhead: Letterhead,
    pub buyer: Party,
    /// `CN-YYYY-NNNNNN`.
    pub number: String,
    pub date: String,
    /// The invoice it credits.
    pub invoice_number: String,
    pub invoice_date: String,
    pub invoice_total: String,
    pub currency: String,
    pub reason: String,
    /// Credited, formatted.
    pub amount: String,
    /// How the money went back: `Refunded to the card that paid the invoice`, …
    pub refunded_via: String,
}
