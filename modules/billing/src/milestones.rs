//! Invoices from an accepted proposal: one per milestone of its billing schedule, amounts split by the
//! largest-remainder method so they sum to the proposal's total exactly. A proposal is invoiced once.

use portal_core::money::split_largest_remainder;
use portal_core::WriteTx;
use portal_core::{Error, Result, Timestamp};
use portal_proposals::model::{ProposalId, ProposalStatus};

use crate::invoices;
use crate::model::{Invoice, InvoiceId, InvoiceStatus, LineItem};

pub fn generate(tx: &WriteTx, proposal_id: ProposalId, now: Timestamp) -> Result<Vec<Invoice>> {
    let proposal = portal_proposals::service::get(tx, proposal_id)?
        .ok_or_else(|| Error::invalid("proposal_id", "no such proposal"))?;
    let scope = portal_customers::system_scope(tx, proposal.customer_id)
        .map_err(|_| Error::invalid("proposal_id", "no such proposal"))?;
    if proposal.status != ProposalStatus::Accepted {
        return Err(Error::conflict("only an accepted proposal can be invoiced"));
    }
    let existing = invoices::of_proposal(tx, proposal_id)?;
    if !existing.is_empty() {
        let ids: Vec<String> = existing.iter().map(InvoiceId::to_string).collect();
        return Err(Error::conflict("this proposal's invoices were already generated")
            .with_detail("invoice_ids", serde_json::json!(ids)));
    }
    let billing = portal_customers::service::billing(tx, &scope)?;
    let weights: Vec<u64> = proposal.billing_schedule.iter().map(|m| u64::from(m.share)).collect();
    let amounts = split_largest_remainder(proposal.total_amount, &weights);
    let mut out = Vec::with_capacity(amounts.len());
    for (milestone, amount) in proposal.billing_schedule.iter().zip(amounts) {
        let due_days = milestone.due_days.unwrap_or(u32::from(billing.payment_terms_days));
        let description = format!("{}: {}", proposal.title, milestone.name);
        let mut invoice = Invoice {
            id: InvoiceId::generate(),
            customer_id: proposal.customer_id,
            proposal_id: Some(proposal.id),
            number: String::new(),
            status: InvoiceStatus::Pending,
            amount: 0,
            tax_rate: billing.tax_rate,
            tax_amount: 0,
            infrastructure_costs: 0,
            total_amount: 0,
            currency: proposal.currency,
            issue_date: now,
            due_date: now.plus_secs(i64::from(due_days) * 86_400),
            paid_date: None,
            description: Some(description.clone()),
            milestone: Some(milestone.name.clone()),
            line_items: vec![LineItem { description, quantity: 1, unit_price: amount, amount }],
            payment_method: None,
            stripe_invoice_id: None,
            stripe_payment_intent_id: None,
            period: None,
            refunded_amount: 0,
            refunded_at: None,
            credit_notes: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        invoice.recompute();
        out.push(invoices::insert(tx, invoice)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use portal_customers::service::BillingChange;
    use portal_proposals::service::{MilestoneInput, ProposalChange};

    use super::*;
    use crate::testing::{customer, store};

    fn admin() -> portal_core::Principal {
        portal_core::Principal {
            user_id: portal_core::ids::UserId::generate(),
            session_id: portal_core::ids::SessionId::generate(),
            role: portal_core::Role::Admin,
            customer_id: None,
            credential: portal_core::auth::Credential::Bearer,
        }
    }

    /// xorshift64*: a fixed-seed generator, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    #[test]
    fn the_scheduler_bills_each_period_once_and_marks_overdue_invoices() {
        let store = store();
        let monthly = BillingChange { monthly_fee: Some(10.0), billing_day: Some(1), ..Default::default() };
        let id = customer(&store, monthly);
        let later = |days: i64| Timestamp::now().plus_secs(days * 86_400);
        // The first period (partial unless the customer was created on the 1st) is billed at once, once.
        let now = Timestamp::now();
        let first = store
            .write_blocking(move |tx| crate::recurring::run_for(tx, &portal_customers::system_scope(tx, id)?, now))
            .unwrap();
        let again = store
            .write_blocking(move |tx| crate::recurring::run_for(tx, &portal_customers::system_scope(tx, id)?, now))
            .unwrap();
        assert_eq!(first.len(), 1, "first period billed");
        let invoice = first[0].clone();
        assert!(again.is_empty(), "a period was billed twice");
        assert_eq!(invoice.period.unwrap().start, now.datetime().date_naive());
        assert_eq!(invoice.status, InvoiceStatus::Pending);
        // 30 days of payment terms later, it is overdue.
        let marked = store.write_blocking(move |tx| crate::invoices::mark_overdue(tx, later(31))).unwrap();
        assert_eq!(marked, 1);
        let stored = store.read_blocking(|tx| crate::invoices::get(tx, invoice.id)).unwrap().unwrap();
        assert_eq!(stored.status, InvoiceStatus::Overdue);
        let totals = store.read_blocking(|tx| crate::invoices::totals(tx, &crate::invoices::ALL)).unwrap();
        let (_, t) = &totals[0];
        assert_eq!((t.count[InvoiceStatus::Pending.index()], t.count[InvoiceStatus::Overdue.index()]), (0, 1));
        assert_eq!(t.sum[InvoiceStatus::Overdue.index()], invoice.total_amount);
        assert_eq!(store.write_blocking(move |tx| crate::invoices::mark_overdue(tx, later(32))).unwrap(), 0);

        // The portal down for over four months: the next run bills the whole periods it missed and the
        // current one, each once, back to back.
        let caught_up = store
            .write_blocking(move |tx| {
                crate::recurring::run_for(tx, &portal_customers::system_scope(tx, id)?, later(140))
            })
            .unwrap();
        let periods: Vec<_> = caught_up.iter().map(|i| i.period.unwrap()).collect();
        assert!((4..=5).contains(&periods.len()), "{periods:?}");
        assert_eq!(periods[0].start, invoice.period.unwrap().end);
        assert!(periods.windows(2).all(|w| w[0].end == w[1].start), "{periods:?}");
        let current = periods[periods.len() - 1];
        assert!(current.start <= later(140).datetime().date_naive());
        assert!(later(140).datetime().date_naive() < current.end);
        assert!(store
            .write_blocking(move |tx| crate::recurring::run_for(
                tx,
                &portal_customers::system_scope(tx, id)?,
                later(141)
            ))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn random_schedules_and_totals_split_to_the_cent() {
        let store = store();
        let customer = customer(&store, BillingChange { tax_rate: Some(7.4321), ..Default::default() });
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        const CASES: usize = 3_000;
        for case in 0..CASES {
            let total = 1 + rng.below(1_000_000_000) as i64;
            let parts = 1 + rng.below(12) as usize;
            // Cut 100 % (1,000,000 units of 0.0001 %) at distinct random points: shares > 0 summing to 100.
            let mut cuts: Vec<u64> = (0..parts - 1).map(|_| 1 + rng.below(999_999)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut edges = vec![0];
            edges.extend(cuts);
            edges.push(1_000_000);
            let shares: Vec<u64> = edges.windows(2).map(|w| w[1] - w[0]).collect();
            let schedule = shares
                .iter()
                .enumerate()
                .map(|(i, s)| MilestoneInput {
                    percentage: *s as f64 / 10_000.0,
                    milestone: format!("M{i}"),
                    due_days: None,
                })
                .collect();
            let change = ProposalChange {
                customer_id: Some(customer),
                title: Some(format!("Case {case}")),
                total_amount: Some(total as f64 / 100.0),
                billing_schedule: Some(schedule),
                ..Default::default()
            };
            let invoices = store
                .write_blocking(move |tx| {
                    let proposal = portal_proposals::service::create(tx, &change)?;
                    portal_proposals::service::decide(tx, &admin(), proposal.id, true)?;
                    generate(tx, proposal.id, Timestamp::now())
                })
                .unwrap_or_else(|e| panic!("case {case} (total {total}, shares {shares:?}): {e:?}"));
            assert_eq!(invoices.len(), shares.len());
            assert_eq!(invoices.iter().map(|i| i.amount).sum::<i64>(), total, "case {case}: {shares:?}");
            for (invoice, share) in invoices.iter().zip(&shares) {
                let exact = i128::from(total) * i128::from(*share);
                let floor = (exact / 1_000_000) as i64;
                assert!(invoice.amount == floor || invoice.amount == floor + 1, "case {case}: not largest remainder");
                assert_eq!(invoice.total_amount, invoice.amount + invoice.tax_amount);
            }
        }
    }
}
