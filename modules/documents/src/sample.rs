//! Documents with every field filled, to check a template at start and to measure rendering.

use chrono::NaiveDate;
use serde::Serialize;

use crate::model::{
    CreditNoteDocument, InvoiceDocument, InvoiceLine, Letterhead, Milestone, Party, ProposalDocument, Refund,
};
use crate::{format, Job};
use portal_core::Currency;

fn letterhead() -> Letterhead {
    Letterhead {
        seller: Party {
            name: "Northwind Digital GmbH".into(),
            lines: vec!["Hauptstraße 5".into(), "10115 Berlin".into(), "DE".into(), "VAT DE123456789".into()],
        },
        bank: vec!["IBAN DE89 3704 0044 0532 0130 00".into(), "BIC COBADEFFXXX".into()],
        footer: Some("Northwind Digital GmbH · Managing director: A. Example".into()),
        locale: "en-US".into(),
    }
}

fn buyer() -> Party {
    Party {
        name: "Acme Corporation".into(),
        lines: vec!["1 Main Street".into(), "Springfield 12345".into(), "US".into()],
    }
}

/// An invoice of `lines` line items, paid and partly refunded, so every part of a template is exercised.
pub fn invoice_with_lines(lines: usize) -> InvoiceDocument {
    InvoiceDocument {
        letterhead: letterhead(),
        buyer: buyer(),
        number: "INV-2026-000042".into(),
        mark: Some("PAID".into()),
        issue_date: "2026-11-01".into(),
        due_date: "2026-11-15".into(),
        paid_date: Some("2026-11-10".into()),
        period: Some("2026-10-01 – 2026-10-31".into()),
        description: Some("Hosting and maintenance".into()),
        milestone: None,
        currency: "USD".into(),
        lines: (1..=lines)
            .map(|i| InvoiceLine {
                description: format!("Work package {i}"),
                quantity: "2".into(),
                unit_price: "$50.00".into(),
                amount: "$100.00".into(),
            })
            .collect(),
        subtotal: usd(lines * 10_000),
        tax_label: "Tax (10 %)".into(),
        tax: usd(lines * 1_000),
        infrastructure_costs: Some(usd(2_500)),
        total: usd(lines * 11_000 + 2_500),
        refunds: vec![Refund {
            date: "2026-11-12".into(),
            amount: "$25.00".into(),
            credit_note: Some("CN-2026-000003".into()),
        }],
        amount_due: None,
        pay_link: Some("https://portal.example/pay/sample".into()),
    }
}

fn usd(cents: usize) -> String {
    let usd = Currency::parse("USD").unwrap_or_default();
    format::money(i64::try_from(cents).unwrap_or(i64::MAX), usd, "en-US")
}

pub fn invoice() -> InvoiceDocument {
    invoice_with_lines(3)
}

pub fn credit_note() -> CreditNoteDocument {
    CreditNoteDocument {
        letterhead: letterhead(),
        buyer: buyer(),
        number: "CN-2026-000003".into(),
        date: "2026-11-12".into(),
        invoice_number: "INV-2026-000042".into(),
        invoice_date: "2026-11-01".into(),
        invoice_total: usd(35_500),
        currency: "USD".into(),
        reason: "Two work packages were not delivered".into(),
        amount: usd(2_500),
        refunded_via: "Refunded to the card that paid the invoice.".into(),
    }
}

pub fn proposal() -> ProposalDocument {
    ProposalDocument {
        letterhead: letterhead(),
        buyer: buyer(),
        title: "Mobile app, phase 1".into(),
        description: Some("Design and build of the customer app.".into()),
        status: "Sent".into(),
        date: "2026-11-01".into(),
        valid_until: Some("2026-12-01".into()),
        currency: "USD".into(),
        total: "$10,000.00".into(),
        tax_label: Some("Tax (10 %)".into()),
        total_with_tax: Some("$11,000.00".into()),
        monthly_recurring: Some("$500.00".into()),
        milestones: vec![Milestone {
            name: "Kick-off".into(),
            share: "100 %".into(),
            due: "14 days after issue".into(),
            amount: "$10,000.00".into(),
            tax: Some("$1,000.00".into()),
            total: Some("$11,000.00".into()),
        }],
    }
}

pub fn job<T: Serialize>(data: &T) -> Job<'_, T> {
    Job { data, logo: None, ident: "sample".into(), date: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default() }
}
