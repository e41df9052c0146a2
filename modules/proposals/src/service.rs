//! Proposal logic on a store transaction. The billing module reads accepted proposals through the `pub`
//! functions here.

use portal_core::audit;
use portal_core::error::Validation;
use portal_core::ids::CustomerId;
use portal_core::money::{parse_fixed, parse_non_negative_minor};
use portal_core::table::{key, key_from, Page};
use portal_core::WriteTx;
use portal_core::{Currency, Error, Principal, ReadTx, Result, Timestamp};
use portal_customers::CustomerScope;
use portal_webhooks::EventKind;

use crate::model::{Milestone, Proposal, ProposalId, ProposalStatus, WHOLE};
use crate::tables::{BY_CUSTOMER, BY_CUSTOMER_STATUS, EXPIRY, PROPOSALS};

/// Most milestones one schedule may have.
pub const MAX_MILESTONES: usize = 50;
/// Percentages must sum to 100 within this many share units (±0.0001 %).
const SUM_TOLERANCE: u32 = 1;

/// A milestone as given at the JSON edge.
#[derive(Debug, Clone)]
pub struct MilestoneInput {
    pub percentage: f64,
    pub milestone: String,
    pub due_days: Option<i64>,
}

/// Proposal fields to set; `None` keeps a field, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct ProposalChange {
    pub customer_id: Option<CustomerId>,
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub status: Option<ProposalStatus>,
    pub total_amount: Option<f64>,
    pub currency: Option<String>,
    pub billing_schedule: Option<Vec<MilestoneInput>>,
    pub valid_until: Option<Option<Timestamp>>,
    pub monthly_recurring_amount: Option<f64>,
}

// ---- reads ----

pub fn get(tx: &impl ReadTx, id: ProposalId) -> Result<Option<Proposal>> {
    Ok(PROPOSALS.get(tx, &id.to_key())?)
}

/// A proposal the caller may see (admin, or a user of its customer); 404 otherwise.
pub fn visible(tx: &impl ReadTx, caller: &Principal, id: ProposalId) -> Result<(Proposal, CustomerScope)> {
    portal_customers::expect_scope_of(tx, caller);
    let proposal = get(tx, id)?.ok_or_else(|| Error::not_found("proposal"))?;
    let scope = portal_customers::scope_of(tx, caller, proposal.customer_id, "proposal")?;
    Ok((proposal, scope))
}

/// A customer's accepted proposals, oldest first.
pub fn accepted_of_customer(tx: &impl ReadTx, customer: CustomerId) -> Result<Vec<Proposal>> {
    let prefix = key(&[&customer.to_key(), &[ProposalStatus::Accepted.tag()]]);
    let keys = BY_CUSTOMER_STATUS.page_keys(tx, &Page { prefix: &prefix, after: None, limit: usize::MAX })?;
    let mut out = Vec::with_capacity(keys.len());
    for k in keys.iter().rev() {
        if let Some(p) = ProposalId::from_key(key_from(k, 17)).map(|id| get(tx, id)).transpose()?.flatten() {
            out.push(p);
        }
    }
    Ok(out)
}

/// Whether the customer has any accepted proposal (a financial record).
pub fn any_accepted(tx: &impl ReadTx, customer: CustomerId) -> Result<bool> {
    Ok(BY_CUSTOMER_STATUS.any_with_prefix(tx, &key(&[&customer.to_key(), &[ProposalStatus::Accepted.tag()]]))?)
}

/// Up to `fetch` of a customer's proposals, newest first, older than `after`, with the status as of now.
pub fn list(
    tx: &impl ReadTx,
    scope: &CustomerScope,
    status: Option<ProposalStatus>,
    after: Option<ProposalId>,
    fetch: usize,
) -> Result<Vec<Proposal>> {
    list_of(tx, scope.id(), status, after, fetch)
}

fn list_of(
    tx: &impl ReadTx,
    customer: CustomerId,
    status: Option<ProposalStatus>,
    after: Option<ProposalId>,
    fetch: usize,
) -> Result<Vec<Proposal>> {
    let now = Timestamp::now();
    let mut out = Vec::new();
    let after_key = after.map(|id| key(&[&customer.to_key(), &id.to_key()]));
    BY_CUSTOMER.visit_keys_desc(tx, &customer.to_key(), after_key.as_deref(), |k| {
        if let Some(p) = ProposalId::from_key(key_from(k, 16)).map(|id| get(tx, id)).transpose()?.flatten() {
            if status.is_none_or(|s| s == p.status_at(now)) {
                out.push(p);
            }
        }
        Ok::<_, portal_core::Error>(out.len() < fetch)
    })?;
    Ok(out)
}

// ---- writes ----

pub fn create(tx: &WriteTx, change: &ProposalChange) -> Result<Proposal> {
    let customer_id = change.customer_id.ok_or_else(|| Error::invalid("customer_id", "is required"))?;
    // Admins only (the caller checked): the customer is named in the body, so a missing one is a 422.
    let scope = portal_customers::system_scope(tx, customer_id)
        .map_err(|_| Error::invalid("customer_id", "no such customer"))?;
    let billing = portal_customers::service::billing(tx, &scope)?;
    let now = Timestamp::now();
    let blank = Proposal {
        id: ProposalId::generate(),
        customer_id,
        title: String::new(),
        description: None,
        status: ProposalStatus::Draft,
        total_amount: 0,
        currency: billing.currency,
        billing_schedule: Vec::new(),
        valid_until: None,
        monthly_recurring_amount: 0,
        created_at: now,
        updated_at: now,
        accepted_at: None,
        rejected_at: None,
    };
    let mut v = Validation::default();
    let proposal = apply(&blank, change, now, &mut v);
    if proposal.currency != billing.currency && !v.has("currency") {
        v.add("currency", format!("must be the customer's billing currency, {}", billing.currency));
    }
    v.finish()?;
    store(tx, None, &proposal)?;
    Ok(proposal)
}

/// Edits a proposal that was not accepted. Editing a rejected or expired one reopens it as a draft.
pub fn update(tx: &WriteTx, caller: &Principal, id: ProposalId, change: &ProposalChange) -> Result<Proposal> {
    let old = get(tx, id)?.ok_or_else(|| Error::not_found("proposal"))?;
    portal_customers::scope_of(tx, caller, old.customer_id, "proposal")?;
    if old.status == ProposalStatus::Accepted {
        return Err(Error::conflict("an accepted proposal can no longer be changed"));
    }
    let now = Timestamp::now();
    let mut reopened = old.clone();
    if !old.status_at(now).is_open() {
        reopened.status = ProposalStatus::Draft;
        reopened.rejected_at = None;
    }
    let mut v = Validation::default();
    let mut new = apply(&reopened, change, now, &mut v);
    v.finish()?;
    if new.status_at(now) == ProposalStatus::Expired {
        return Err(Error::invalid("valid_until", "must be in the future to reopen the proposal"));
    }
    new.updated_at = now.max(old.updated_at);
    store(tx, Some(&old), &new)?;
    Ok(new)
}

pub fn delete(tx: &WriteTx, caller: &Principal, id: ProposalId) -> Result<()> {
    let old = get(tx, id)?.ok_or_else(|| Error::not_found("proposal"))?;
    portal_customers::scope_of(tx, caller, old.customer_id, "proposal")?;
    if old.status == ProposalStatus::Accepted {
        return Err(Error::conflict("an accepted proposal is a financial record and cannot be deleted"));
    }
    unindex(tx, &old)?;
    PROPOSALS.remove(tx, &id.to_key())?;
    audit::record(tx, "proposals", "delete", id, Some(old.customer_id))
}

/// Records the customer's answer: only a draft or sent proposal that has not expired can get one.
pub fn decide(tx: &WriteTx, caller: &Principal, id: ProposalId, accept: bool) -> Result<Proposal> {
    let old = get(tx, id)?.ok_or_else(|| Error::not_found("proposal"))?;
    portal_customers::scope_of(tx, caller, old.customer_id, "proposal")?;
    let now = Timestamp::now();
    let current = old.status_at(now);
    if !current.is_open() {
        let verb = if accept { "accepted" } else { "rejected" };
        return Err(Error::conflict(format!("a proposal that is {} cannot be {verb}", status_word(current)))
            .with_detail("status", status_word(current)));
    }
    let mut new = old.clone();
    new.updated_at = now.max(old.updated_at);
    if accept {
        new.status = ProposalStatus::Accepted;
        new.accepted_at = Some(now);
    } else {
        new.status = ProposalStatus::Rejected;
        new.rejected_at = Some(now);
    }
    store(tx, Some(&old), &new)?;
    Ok(new)
}

/// Records as expired every open proposal whose `valid_until` has passed; returns how many.
pub fn expire_due(tx: &WriteTx, now: Timestamp) -> Result<usize> {
    let upto = now.to_key();
    let mut due = Vec::new();
    EXPIRY.visit_keys_desc(tx, &[], Some(&upto), |k| {
        due.extend(ProposalId::from_key(key_from(k, 8)));
        Ok::<_, portal_core::Error>(true)
    })?;
    for id in &due {
        if let Some(old) = get(tx, *id)? {
            let mut new = old.clone();
            new.status = ProposalStatus::Expired;
            new.updated_at = now.max(old.updated_at);
            store(tx, Some(&old), &new)?;
        }
    }
    Ok(due.len())
}

/// Removes every proposal of a customer being deleted (none of them accepted).
pub fn remove_customer(tx: &WriteTx, customer: CustomerId) -> Result<()> {
    for p in list_of(tx, customer, None, None, usize::MAX)? {
        unindex(tx, &p)?;
        PROPOSALS.remove(tx, &p.id.to_key())?;
    }
    Ok(())
}

fn status_word(status: ProposalStatus) -> &'static str {
    match status {
        ProposalStatus::Draft => "draft",
        ProposalStatus::Sent => "sent",
        ProposalStatus::Accepted => "accepted",
        ProposalStatus::Rejected => "rejected",
        ProposalStatus::Expired => "expired",
    }
}

fn store(tx: &WriteTx, old: Option<&Proposal>, new: &Proposal) -> Result<()> {
    let action = match old {
        None => "create",
        Some(old) if old.status != new.status => status_word(new.status),
        Some(_) => "update",
    };
    audit::record(tx, "proposals", action, new.id, Some(new.customer_id))?;
    let event = match new.status {
        _ if old.is_some_and(|o| o.status == new.status) => None,
        ProposalStatus::Sent => Some(EventKind::ProposalSent),
        ProposalStatus::Accepted => Some(EventKind::ProposalAccepted),
        ProposalStatus::Rejected => Some(EventKind::ProposalRejected),
        ProposalStatus::Expired => Some(EventKind::ProposalExpired),
        ProposalStatus::Draft => None,
    };
    if let Some(kind) = event {
        portal_webhooks::emit(tx, kind, || portal_webhooks::data(&crate::api::ProposalView::from(new)))?;
    }
    if let Some(old) = old {
        unindex(tx, old)?;
    }
    let (cid, id) = (new.customer_id.to_key(), new.id.to_key());
    BY_CUSTOMER.put(tx, &key(&[&cid, &id]), &[])?;
    BY_CUSTOMER_STATUS.put(tx, &key(&[&cid, &[new.status.tag()], &id]), &[])?;
    if let (true, Some(until)) = (new.status.is_open(), new.valid_until) {
        EXPIRY.put(tx, &key(&[&until.to_key(), &id]), &[])?;
    }
    Ok(PROPOSALS.insert(tx, &id, new)?)
}

fn unindex(tx: &WriteTx, old: &Proposal) -> Result<()> {
    let (cid, id) = (old.customer_id.to_key(), old.id.to_key());
    BY_CUSTOMER.remove(tx, &key(&[&cid, &id]))?;
    BY_CUSTOMER_STATUS.remove(tx, &key(&[&cid, &[old.status.tag()], &id]))?;
    if let Some(until) = old.valid_until {
        EXPIRY.remove(tx, &key(&[&until.to_key(), &id]))?;
    }
    Ok(())
}

// ---- validation ----

fn apply(old: &Proposal, change: &ProposalChange, now: Timestamp, v: &mut Validation) -> Proposal {
    let mut p = old.clone();
    if let Some(title) = &change.title {
        let title = title.trim();
        match (title.chars().count(), portal_core::text::hidden_characters(title)) {
            (0, _) => v.add("title", "must not be empty"),
            (_, Some(why)) => v.add("title", why),
            (1..=200, None) => p.title = title.to_string(),
            _ => v.add("title", "must be at most 200 characters"),
        }
    }
    if let Some(description) = &change.description {
        p.description = description.as_ref().map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
        if p.description.as_ref().is_some_and(|d| d.chars().count() > 10_000) {
            v.add("description", "must be at most 10000 characters");
        }
    }
    if let Some(status) = change.status {
        if status.is_open() {
            p.status = status;
        } else {
            v.add("status", "may be set to draft or sent; accept and reject have their own operations");
        }
    }
    if let Some(code) = &change.currency {
        if let Some(currency) = v.check("currency", Currency::parse(&code.trim().to_ascii_uppercase())) {
            p.currency = currency;
        }
    }
    if let Some(total) = change.total_amount {
        match parse_non_negative_minor(total, p.currency) {
            Ok(0) => v.add("total_amount", "must be greater than 0"),
            Ok(minor) => p.total_amount = minor,
            Err(why) => v.add("total_amount", why),
        }
    } else if p.currency != old.currency && old.total_amount != 0 {
        v.add("total_amount", "give the total in the new currency when changing the currency");
    }
    if let Some(recurring) = change.monthly_recurring_amount {
        if let Some(minor) = v.check("monthly_recurring_amount", parse_non_negative_minor(recurring, p.currency)) {
            p.monthly_recurring_amount = minor;
        }
    }
    if let Some(schedule) = &change.billing_schedule {
        if let Some(milestones) = schedule_from(schedule, v) {
            p.billing_schedule = milestones;
        }
    }
    if let Some(until) = change.valid_until {
        if until.is_some_and(|u| u <= now) {
            v.add("valid_until", "must be in the future");
        }
        p.valid_until = until;
    }
    if p.billing_schedule.is_empty() && !v.has("billing_schedule") {
        v.add("billing_schedule", "is required");
    }
    if p.total_amount == 0 && !v.has("total_amount") {
        v.add("total_amount", "is required");
    }
    p
}

/// Checks a schedule: 1–50 milestones with names, percentages > 0 (at most 4 decimals) summing to 100.
fn schedule_from(schedule: &[MilestoneInput], v: &mut Validation) -> Option<Vec<Milestone>> {
    if schedule.is_empty() {
        v.add("billing_schedule", "must have at least one milestone");
        return None;
    }
    if schedule.len() > MAX_MILESTONES {
        v.add("billing_schedule", format!("must have at most {MAX_MILESTONES} milestones"));
        return None;
    }
    let mut out = Vec::with_capacity(schedule.len());
    let mut valid = true;
    for (i, m) in schedule.iter().enumerate() {
        let share = match parse_fixed(m.percentage, 4) {
            Ok(s) if s > 0 && s <= i64::from(WHOLE) => s as u32,
            Ok(_) => {
                v.add(format!("billing_schedule[{i}].percentage"), "must be greater than 0 and at most 100");
                valid = false;
                0
            }
            Err(why) => {
                v.add(format!("billing_schedule[{i}].percentage"), why);
                valid = false;
                0
            }
        };
        let name = m.milestone.trim();
        if name.is_empty() || name.chars().count() > 200 {
            v.add(format!("billing_schedule[{i}].milestone"), "must be 1–200 characters");
            valid = false;
        } else if let Some(why) = portal_core::text::hidden_characters(name) {
            v.add(format!("billing_schedule[{i}].milestone"), why);
            valid = false;
        }
        let due_days = match m.due_days {
            None => None,
            Some(d @ 0..=3650) => Some(d as u32),
            Some(_) => {
                v.add(format!("billing_schedule[{i}].due_days"), "must be between 0 and 3650");
                valid = false;
                None
            }
        };
        out.push(Milestone { share, name: name.to_string(), due_days });
    }
    if !valid {
        return None;
    }
    let sum: u32 = out.iter().map(|m| m.share).sum();
    if sum.abs_diff(WHOLE) > SUM_TOLERANCE {
        v.add("billing_schedule", format!("percentages must sum to 100 (they sum to {})", f64::from(sum) / 10_000.0));
        return None;
    }
    Some(out)
}
