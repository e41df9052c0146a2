//! A proposal as a document: its scope, total and the milestone schedule, each milestone with the amount
//! its invoice will carry (split as billing splits it: largest remainder, summing to the cent).

use portal_core::money::split_largest_remainder;
use portal_core::{ReadTx, Result};
use portal_customers::CustomerScope;
use portal_documents::format::{address_lines, date, money, percent};
use portal_documents::model::{Milestone, Party, ProposalDocument};
use portal_documents::{DocumentError, Job, Renderer};
use portal_organization::model::Logo;

use crate::model::{Proposal, ProposalStatus, WHOLE};

pub struct ProposalPrint {
    pub document: ProposalDocument,
    pub logo: Option<Logo>,
    pub dated: chrono::NaiveDate,
    pub ident: String,
}

impl ProposalPrint {
    pub fn read(
        tx: &impl ReadTx,
        proposal: &Proposal,
        scope: &CustomerScope,
        now: portal_core::Timestamp,
    ) -> Result<Self> {
        let (letterhead, logo) = portal_organization::letterhead::read(tx)?;
        let record = portal_customers::service::record(tx, scope)?;
        let (customer, billing) = (&record.customer, &record.billing);
        let a = &customer.address;
        let mut buyer_lines = Vec::new();
        if !customer.name.is_empty() && customer.name != customer.company_name {
            buyer_lines.push(format!("Attn. {}", customer.name));
        }
        buyer_lines.extend(address_lines(&a.street, &a.city, &a.state, &a.postal_code, &a.country));
        let c = proposal.currency;
        let m = |minor: i64| money(minor, c, &letterhead.locale);
        let taxed = billing.tax_rate.percent() != 0.0;
        let weights: Vec<u64> = proposal.billing_schedule.iter().map(|s| u64::from(s.share)).collect();
        let amounts = split_largest_remainder(proposal.total_amount, &weights);
        let mut with_tax = 0;
        let milestones = proposal
            .billing_schedule
            .iter()
            .zip(amounts)
            .map(|(step, amount)| {
                let tax = billing.tax_rate.tax_on(amount);
                with_tax += amount + tax;
                let days = step.due_days.unwrap_or(u32::from(billing.payment_terms_days));
                Milestone {
                    name: step.name.clone(),
                    share: percent(f64::from(step.share) * 100.0 / f64::from(WHOLE)),
                    due: if days == 0 { "on issue".into() } else { format!("{days} days after issue") },
                    amount: m(amount),
                    tax: taxed.then(|| m(tax)),
                    total: taxed.then(|| m(amount + tax)),
                }
            })
            .collect();
        let document = ProposalDocument {
            buyer: Party { name: customer.company_name.clone(), lines: buyer_lines },
            title: proposal.title.clone(),
            description: proposal.description.clone(),
            status: status_name(proposal.status_at(now)).into(),
            date: date(proposal.created_at.datetime().date_naive()),
            valid_until: proposal.valid_until.map(|d| date(d.datetime().date_naive())),
            currency: c.as_str().to_owned(),
            total: m(proposal.total_amount),
            tax_label: taxed.then(|| format!("Tax ({})", percent(billing.tax_rate.percent()))),
            total_with_tax: taxed.then(|| m(with_tax)),
            monthly_recurring: (proposal.monthly_recurring_amount != 0).then(|| m(proposal.monthly_recurring_amount)),
            milestones,
            letterhead,
        };
        Ok(Self {
            document,
            logo,
            dated: proposal.created_at.datetime().date_naive(),
            ident: format!("proposal/{}", proposal.id),
        })
    }

    pub fn render_pdf(&self, renderer: &Renderer) -> Result<Vec<u8>, DocumentError> {
        let job = Job {
            data: &self.document,
            logo: self.logo.as_ref().map(Logo::for_document),
            ident: self.ident.clone(),
            date: self.dated,
        };
        renderer.proposal(&job)
    }
}

fn status_name(status: ProposalStatus) -> &'static str {
    match status {
        ProposalStatus::Draft => "Draft",
        ProposalStatus::Sent => "Sent",
        ProposalStatus::Accepted => "Accepted",
        ProposalStatus::Rejected => "Rejected",
        ProposalStatus::Expired => "Expired",
    }
}
