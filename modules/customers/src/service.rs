//! Customer logic on a store transaction: validation, the indexes, archiving and deletion. Other modules
//! use the `pub` functions with their own transaction (`customers::get_listed(&tx, id)`).

use portal_core::audit;
use portal_core::error::Validation;
use portal_core::ids::CustomerId;
use portal_core::money::{parse_non_negative_minor, TaxRate};
use portal_core::table::{key, key_from};
use portal_core::WriteTx;
use portal_core::{Currency, Error, JsonObject, Principal, ReadTx, Result, Timestamp};

use portal_webhooks::EventKind;

use crate::api::CustomerView;
use crate::dependents::Dependents;
use crate::model::{Address, BillingFrequency, BillingSettings, Customer, CustomerStatus, PaymentMethod};
use crate::scope::CustomerScope;
use crate::search;
use crate::tables::{ARCHIVED, BILLING, BY_STATUS, BY_STRIPE_ID, CUSTOMERS, LISTED};
use crate::validate;

/// Largest `additional_details` object, as compact JSON.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// Address fields to set; left out fields keep their values.
#[derive(Debug, Clone, Default)]
pub struct AddressChange {
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

/// Customer fields to set; `None` keeps a field, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct CustomerChange {
    pub name: Option<String>,
    pub company_name: Option<String>,
    pub status: Option<CustomerStatus>,
    pub billing_email: Option<String>,
    pub phone: Option<Option<String>>,
    pub address: Option<AddressChange>,
    pub firebase_app_id: Option<Option<String>>,
    pub firebase_project_id: Option<Option<String>>,
    pub stripe_customer_id: Option<Option<String>>,
}

/// Billing fields to set; `None` keeps a field, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct BillingChange {
    pub payment_method: Option<PaymentMethod>,
    pub billing_frequency: Option<BillingFrequency>,
    pub monthly_fee: Option<f64>,
    pub currency: Option<String>,
    pub billing_day: Option<u32>,
    pub auto_charge: Option<bool>,
    pub tax_rate: Option<f64>,
    pub payment_terms_days: Option<u32>,
    pub stripe_payment_method_id: Option<Option<String>>,
    pub additional_details: Option<Option<JsonObject>>,
}

/// A customer with its billing settings, as the API shows it.
#[derive(Debug, Clone)]
pub struct CustomerRecord {
    pub customer: Customer,
    pub billing: BillingSettings,
}

/// What `DELETE /customers/{id}` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The customer held no financial records: it is gone with its users and settings.
    Deleted,
    /// The customer holds invoices or accepted proposals: hidden and kept, restorable.
    Archived(Timestamp),
}

// ---- reads other modules use ----

/// A customer, archived or not.
pub fn get(tx: &impl ReadTx, id: CustomerId) -> Result<Option<Customer>> {
    Ok(CUSTOMERS.get(tx, &id.to_key())?)
}

/// A customer that is not archived, or 404.
pub fn get_listed(tx: &impl ReadTx, id: CustomerId) -> Result<Customer> {
    get(tx, id)?.filter(|c| c.archived_at.is_none()).ok_or_else(|| Error::not_found("customer"))
}

/// Whether `id` is a customer that is not archived: an index lookup, without decoding the customer.
pub fn is_listed(tx: &impl ReadTx, id: CustomerId) -> Result<bool> {
    Ok(LISTED.contains(tx, &id.to_key())?)
}

/// Tells the store that whether `id` is listed will likely be asked soon (fetched with the next read).
pub fn expect_listed(tx: &impl ReadTx, id: CustomerId) {
    LISTED.expect(tx, &id.to_key());
}

/// Tells the store that customer `id` will be read soon.
pub fn expect(tx: &impl ReadTx, id: CustomerId) {
    CUSTOMERS.expect(tx, &id.to_key());
}

/// Tells the store that customer `id` and its billing settings will be read soon.
pub fn expect_record(tx: &impl ReadTx, id: CustomerId) {
    expect(tx, id);
    BILLING.expect(tx, &id.to_key());
}

/// A customer's billing settings.
pub fn billing(tx: &impl ReadTx, scope: &CustomerScope) -> Result<BillingSettings> {
    settings_of(tx, scope.id())
}

fn settings_of(tx: &impl ReadTx, id: CustomerId) -> Result<BillingSettings> {
    BILLING.get(tx, &id.to_key())?.ok_or_else(|| Error::not_found("billing settings"))
}

/// The customer in `scope`, with its billing settings.
pub fn record(tx: &impl ReadTx, scope: &CustomerScope) -> Result<CustomerRecord> {
    let customer = get_listed(tx, scope.id())?;
    Ok(CustomerRecord { billing: billing(tx, scope)?, customer })
}

/// The customer holding a Stripe customer id.
pub fn by_stripe_customer_id(tx: &impl ReadTx, stripe_id: &str) -> Result<Option<CustomerId>> {
    Ok(BY_STRIPE_ID.get(tx, stripe_id.as_bytes())?.and_then(|bytes| CustomerId::from_key(&bytes)))
}

/// Records the Stripe customer created for `id` (the billing module creates it lazily).
pub fn set_stripe_customer_id(tx: &WriteTx, id: CustomerId, stripe_id: &str) -> Result<()> {
    let old = get(tx, id)?.ok_or_else(|| Error::not_found("customer"))?;
    let mut new = old.clone();
    new.stripe_customer_id = Some(stripe_id.to_string());
    new.updated_at = Timestamp::now();
    store_customer(tx, Some(&old), &new)
}

/// Makes `payment_method_id` the customer's default (after Stripe confirms a setup intent).
pub fn set_default_payment_method(tx: &WriteTx, id: CustomerId, payment_method_id: &str) -> Result<()> {
    let mut settings = settings_of(tx, id)?;
    settings.stripe_payment_method_id = Some(payment_method_id.to_string());
    settings.updated_at = Timestamp::now();
    audit::record(tx, "customers", "default_card_set", id, Some(id))?;
    Ok(BILLING.insert(tx, &id.to_key(), &settings)?)
}

/// Visits every listed customer id, oldest first, while `visit` returns true (scheduled jobs).
pub fn visit_listed(tx: &impl ReadTx, mut visit: impl FnMut(CustomerId) -> Result<bool>) -> Result<()> {
    let mut ids = Vec::new();
    LISTED.visit_keys_desc(tx, &[], None, |k| {
        ids.extend(CustomerId::from_key(k));
        Ok::<_, portal_core::Error>(true)
    })?;
    for id in ids.into_iter().rev() {
        if !visit(id)? {
            break;
        }
    }
    Ok(())
}

/// Visits the listed customers of one status, newest first, while `visit` returns true.
pub fn visit_by_status(
    tx: &impl ReadTx,
    status: CustomerStatus,
    mut visit: impl FnMut(CustomerId) -> Result<bool>,
) -> Result<()> {
    BY_STATUS.visit_keys_desc(tx, &[status.tag()], None, |k| {
        CustomerId::from_key(key_from(k, 1)).map_or(Ok(true), &mut visit)
    })
}

/// How many listed customers have each status (counted on the status index, no record read).
pub fn count_by_status(tx: &impl ReadTx) -> Result<Vec<(CustomerStatus, u64)>> {
    let mut out = Vec::with_capacity(CustomerStatus::ALL.len());
    for status in CustomerStatus::ALL {
        let mut n = 0u64;
        BY_STATUS.visit_keys_desc(tx, &[status.tag()], None, |_| {
            n += 1;
            Ok::<_, portal_core::Error>(true)
        })?;
        out.push((status, n));
    }
    Ok(out)
}

// ---- writes ----

/// Creates a customer and its billing settings (defaults changed by `billing`).
pub fn create(tx: &WriteTx, change: &CustomerChange, billing: &BillingChange) -> Result<CustomerRecord> {
    let now = Timestamp::now();
    let blank = Customer {
        id: CustomerId::generate(),
        name: String::new(),
        company_name: String::new(),
        status: CustomerStatus::Onboarding,
        billing_email: String::new(),
        phone: None,
        address: Address {
            street: String::new(),
            city: String::new(),
            state: String::new(),
            postal_code: String::new(),
            country: String::new(),
        },
        firebase_app_id: None,
        firebase_project_id: None,
        stripe_customer_id: None,
        created_at: now,
        updated_at: now,
        archived_at: None,
    };
    let mut v = Validation::default();
    let customer = apply_customer(&blank, change, &mut v);
    for (field, value) in [
        ("address.street", &customer.address.street),
        ("address.city", &customer.address.city),
        ("address.country", &customer.address.country),
    ] {
        if value.is_empty() && !v.has(field) {
            v.add(field, "is required");
        }
    }
    let settings = apply_billing(&BillingSettings::defaults(customer.id, now), billing, &mut v);
    v.finish()?;
    store_customer(tx, None, &customer)?;
    BILLING.insert(tx, &customer.id.to_key(), &settings)?;
    let record = CustomerRecord { customer, billing: settings };
    announce(tx, EventKind::CustomerCreated, &record)?;
    Ok(record)
}

/// Tells the webhook endpoints listening for `kind`, with the customer as the API shows it.
fn announce(tx: &WriteTx, kind: EventKind, record: &CustomerRecord) -> Result<()> {
    portal_webhooks::emit(tx, kind, || portal_webhooks::data(&CustomerView::from(record)))
}

/// Updates a customer. Customer users may change only the contact fields (name, phone, address,
/// billing_email); any other field they send with a new value → 403 naming it.
pub fn update(
    tx: &WriteTx,
    caller: &Principal,
    scope: &CustomerScope,
    change: &CustomerChange,
) -> Result<CustomerRecord> {
    let record = record(tx, scope)?;
    let old = record.customer;
    if !caller.is_admin() {
        refuse_admin_fields(&old, change)?;
    }
    let mut v = Validation::default();
    let mut new = apply_customer(&old, change, &mut v);
    v.finish()?;
    new.updated_at = Timestamp::now().max(old.updated_at);
    store_customer(tx, Some(&old), &new)?;
    let record = CustomerRecord { customer: new, billing: record.billing };
    announce(tx, EventKind::CustomerUpdated, &record)?;
    Ok(record)
}

fn refuse_admin_fields(old: &Customer, change: &CustomerChange) -> Result<()> {
    let differs = [
        ("company_name", change.company_name.as_ref().is_some_and(|v| v.trim() != old.company_name)),
        ("status", change.status.is_some_and(|s| s != old.status)),
        ("firebase_app_id", change.firebase_app_id.as_ref().is_some_and(|v| *v != old.firebase_app_id)),
        ("firebase_project_id", change.firebase_project_id.as_ref().is_some_and(|v| *v != old.firebase_project_id)),
        ("stripe_customer_id", change.stripe_customer_id.as_ref().is_some_and(|v| *v != old.stripe_customer_id)),
    ];
    let fields: Vec<&str> = differs.iter().filter(|(_, d)| *d).map(|(f, _)| *f).collect();
    if fields.is_empty() {
        return Ok(());
    }
    let mut err = Error::forbidden(format!("only an admin may change: {}", fields.join(", ")));
    for field in fields {
        err = err.with_detail(field, "only an admin may change this field");
    }
    Err(err)
}

/// Changes billing settings (admins only; the caller checked).
pub fn update_billing(tx: &WriteTx, scope: &CustomerScope, change: &BillingChange) -> Result<BillingSettings> {
    let id = scope.id();
    let old = billing(tx, scope)?;
    let mut v = Validation::default();
    let mut new = apply_billing(&old, change, &mut v);
    v.finish()?;
    new.updated_at = Timestamp::now().max(old.updated_at);
    BILLING.insert(tx, &id.to_key(), &new)?;
    audit::record(tx, "customers", "update_billing", id, Some(id))?;
    announce(tx, EventKind::CustomerUpdated, &CustomerRecord { customer: get_listed(tx, id)?, billing: new.clone() })?;
    Ok(new)
}

/// Deletes a customer with no financial records (with its users, settings and the dependents' data),
/// or archives one that has some.
pub fn remove(tx: &WriteTx, id: CustomerId, dependents: &Dependents) -> Result<Removal> {
    let old = get_listed(tx, id)?;
    if dependents.hold_financial_records(tx, id)? {
        let now = Timestamp::now();
        let mut archived = old.clone();
        archived.archived_at = Some(now);
        archived.updated_at = now.max(old.updated_at);
        store_customer(tx, Some(&old), &archived)?;
        portal_auth::users::set_customer_disabled(tx, id, true)?;
        audit::record(tx, "customers", "archive", id, Some(id))?;
        announce(
            tx,
            EventKind::CustomerArchived,
            &CustomerRecord { customer: archived, billing: settings_of(tx, id)? },
        )?;
        return Ok(Removal::Archived(now));
    }
    dependents.remove_customer(tx, id)?;
    for user_id in portal_auth::users::ids_of_customer(tx, id)? {
        if let Some(user) = portal_auth::users::get(tx, user_id)? {
            portal_auth::users::delete(tx, &user)?;
        }
    }
    BILLING.remove(tx, &id.to_key())?;
    unindex(tx, &old)?;
    CUSTOMERS.remove(tx, &id.to_key())?;
    audit::record(tx, "customers", "delete", id, Some(id))?;
    Ok(Removal::Deleted)
}

/// Brings an archived customer back: listed again, its users may sign in again.
pub fn restore(tx: &WriteTx, id: CustomerId) -> Result<CustomerRecord> {
    let old = get(tx, id)?.filter(|c| c.archived_at.is_some()).ok_or_else(|| Error::not_found("archived customer"))?;
    let mut restored = old.clone();
    restored.archived_at = None;
    restored.updated_at = Timestamp::now().max(old.updated_at);
    store_customer(tx, Some(&old), &restored)?;
    portal_auth::users::set_customer_disabled(tx, id, false)?;
    audit::record(tx, "customers", "restore", id, Some(id))?;
    Ok(CustomerRecord { billing: settings_of(tx, id)?, customer: restored })
}

// ---- indexes ----

/// Writes `new` and moves its index entries from `old`.
fn store_customer(tx: &WriteTx, old: Option<&Customer>, new: &Customer) -> Result<()> {
    // Archiving and restoring record their own, more telling, entries.
    if old.is_none_or(|o| o.archived_at == new.archived_at) {
        let action = if old.is_none() { "create" } else { "update" };
        audit::record(tx, "customers", action, new.id, Some(new.id))?;
    }
    if new.stripe_customer_id != old.and_then(|o| o.stripe_customer_id.clone()) {
        if let Some(stripe_id) = &new.stripe_customer_id {
            if BY_STRIPE_ID.contains(tx, stripe_id.as_bytes())? {
                return Err(Error::conflict("another customer already has this stripe_customer_id"));
            }
        }
    }
    if let Some(old) = old {
        unindex_lists(tx, old)?;
    }
    let id = new.id.to_key();
    if let Some(stripe_id) = &new.stripe_customer_id {
        BY_STRIPE_ID.put(tx, stripe_id.as_bytes(), &id)?;
    }
    if new.archived_at.is_some() {
        ARCHIVED.put(tx, &id, &[])?;
    } else {
        LISTED.put(tx, &id, &[])?;
        BY_STATUS.put(tx, &key(&[&[new.status.tag()], &id]), &[])?;
    }
    search::reindex(tx, old.and_then(listed), listed(new))?;
    Ok(CUSTOMERS.insert(tx, &id, new)?)
}

fn unindex(tx: &WriteTx, old: &Customer) -> Result<()> {
    unindex_lists(tx, old)?;
    search::reindex(tx, listed(old), None)
}

/// Removes every index entry of `old` but the search grams (which move by difference).
fn unindex_lists(tx: &WriteTx, old: &Customer) -> Result<()> {
    let id = old.id.to_key();
    if let Some(stripe_id) = &old.stripe_customer_id {
        BY_STRIPE_ID.remove(tx, stripe_id.as_bytes())?;
    }
    ARCHIVED.remove(tx, &id)?;
    LISTED.remove(tx, &id)?;
    BY_STATUS.remove(tx, &key(&[&[old.status.tag()], &id]))?;
    Ok(())
}

/// Only listed customers are searchable.
fn listed(c: &Customer) -> Option<&Customer> {
    c.archived_at.is_none().then_some(c)
}

// ---- validation ----

fn apply_customer(old: &Customer, change: &CustomerChange, v: &mut Validation) -> Customer {
    let mut c = old.clone();
    if let Some(name) = &change.name {
        c.name = v.check("name", validate::text(name, 1, 200)).unwrap_or_default();
    }
    if let Some(company) = &change.company_name {
        c.company_name = v.check("company_name", validate::text(company, 1, 200)).unwrap_or_default();
    }
    if let Some(status) = change.status {
        c.status = status;
    }
    if let Some(email) = &change.billing_email {
        let email = portal_auth::users::normalize_email(email);
        v.check("billing_email", portal_auth::users::validate_email(&email));
        c.billing_email = email;
    }
    if let Some(phone) = &change.phone {
        c.phone = phone.as_ref().map(|p| p.trim().to_string());
        if let Some(p) = &c.phone {
            v.check("phone", portal_auth::users::validate_phone(p));
        }
    }
    if let Some(address) = &change.address {
        apply_address(&mut c.address, address, v);
    }
    if let Some(app) = &change.firebase_app_id {
        c.firebase_app_id = app.as_ref().map(|a| a.trim().to_string());
        if let Some(a) = &c.firebase_app_id {
            v.check("firebase_app_id", validate::firebase_app_id(a));
        }
    }
    if let Some(project) = &change.firebase_project_id {
        c.firebase_project_id = project.as_ref().map(|p| p.trim().to_string());
        if let Some(p) = &c.firebase_project_id {
            v.check("firebase_project_id", validate::firebase_project_id(p));
        }
    }
    if let Some(stripe) = &change.stripe_customer_id {
        c.stripe_customer_id = stripe.as_ref().map(|s| s.trim().to_string());
        if let Some(s) = &c.stripe_customer_id {
            v.check("stripe_customer_id", validate::stripe_id(s, "cus"));
        }
    }
    c
}

fn apply_address(address: &mut Address, change: &AddressChange, v: &mut Validation) {
    if let Some(street) = &change.street {
        address.street = v.check("address.street", validate::text(street, 1, 200)).unwrap_or_default();
    }
    if let Some(city) = &change.city {
        address.city = v.check("address.city", validate::text(city, 1, 100)).unwrap_or_default();
    }
    if let Some(state) = &change.state {
        address.state = v.check("address.state", validate::text(state, 0, 100)).unwrap_or_default();
    }
    if let Some(postal) = &change.postal_code {
        address.postal_code = v.check("address.postal_code", validate::postal_code(postal)).unwrap_or_default();
    }
    if let Some(country) = &change.country {
        address.country = v.check("address.country", validate::country(country)).unwrap_or_default();
    }
}

fn apply_billing(old: &BillingSettings, change: &BillingChange, v: &mut Validation) -> BillingSettings {
    let mut b = old.clone();
    if let Some(method) = change.payment_method {
        b.payment_method = method;
    }
    if let Some(frequency) = change.billing_frequency {
        b.billing_frequency = frequency;
    }
    if let Some(code) = &change.currency {
        if let Some(currency) = v.check("currency", Currency::parse(&code.trim().to_ascii_uppercase())) {
            b.currency = currency;
        }
    }
    match change.monthly_fee {
        Some(fee) => {
            if let Some(minor) = v.check("monthly_fee", parse_non_negative_minor(fee, b.currency)) {
                b.monthly_fee = minor;
            }
        }
        // The stored fee counts minor units of the old currency; it cannot silently change meaning.
        None if b.currency != old.currency && old.monthly_fee != 0 => {
            v.add("monthly_fee", "give the fee in the new currency when changing the currency");
        }
        None => {}
    }
    if let Some(day) = change.billing_day {
        match u8::try_from(day) {
            Ok(day @ 1..=31) => b.billing_day = day,
            _ => v.add("billing_day", "must be between 1 and 31"),
        }
    }
    if let Some(auto) = change.auto_charge {
        b.auto_charge = auto;
    }
    if let Some(rate) = change.tax_rate {
        if let Some(rate) = v.check("tax_rate", TaxRate::from_percent(rate)) {
            b.tax_rate = rate;
        }
    }
    if let Some(days) = change.payment_terms_days {
        match u16::try_from(days) {
            Ok(days @ 0..=365) => b.payment_terms_days = days,
            _ => v.add("payment_terms_days", "must be between 0 and 365"),
        }
    }
    if let Some(pm) = &change.stripe_payment_method_id {
        b.stripe_payment_method_id = pm.as_ref().map(|p| p.trim().to_string());
        if let Some(p) = &b.stripe_payment_method_id {
            v.check("stripe_payment_method_id", validate::stripe_id(p, "pm"));
        }
    }
    if let Some(details) = &change.additional_details {
        b.additional_details = match details {
            Some(object) if object.encoded_len() > MAX_DETAILS_BYTES => {
                v.add("additional_details", format!("must be at most {MAX_DETAILS_BYTES} bytes of JSON"));
                None
            }
            Some(object) => serde_json::to_string(&object.0).ok(),
            None => None,
        };
    }
    b
}

// ---- lists ----

/// Which customers `GET /customers` shows.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    pub status: Option<CustomerStatus>,
    /// Substring of name, company name or billing email (at least two characters).
    pub query: Option<String>,
    /// Archived customers instead of listed ones.
    pub archived: bool,
}

/// Up to `fetch` customers matching `filter`, newest first, older than `after`. Each filter walks an
/// index: the archived list, the search grams, the status index or the listed index.
pub fn list(
    tx: &impl ReadTx,
    filter: &CustomerFilter,
    after: Option<CustomerId>,
    fetch: usize,
) -> Result<Vec<CustomerRecord>> {
    let query = match &filter.query {
        Some(q) if q.trim().chars().count() < search::MIN_QUERY_CHARS => {
            return Err(Error::invalid("q", format!("must be at least {} characters", search::MIN_QUERY_CHARS)))
        }
        Some(q) => Some(q.trim().to_lowercase()),
        None => None,
    };
    let mut out = Vec::new();
    let mut take = |id: CustomerId| -> Result<bool> {
        if let Some(customer) = get(tx, id)? {
            let wanted = customer.archived_at.is_some() == filter.archived
                && filter.status.is_none_or(|s| s == customer.status)
                && query.as_deref().is_none_or(|q| search::matches(&customer, q));
            if wanted {
                out.push(CustomerRecord { billing: settings_of(tx, id)?, customer });
            }
        }
        Ok(out.len() < fetch)
    };
    let after_id = after.map(|id| id.to_key());
    if filter.archived {
        ARCHIVED.visit_keys_desc(tx, &[], after_id.as_ref().map(|k| k.as_slice()), |k| {
            CustomerId::from_key(k).map_or(Ok(true), &mut take)
        })?;
    } else if let Some(q) = &query {
        search::candidates(tx, q, after, &mut take)?;
    } else if let Some(status) = filter.status {
        let prefix = [status.tag()];
        let after_key = after_id.map(|id| key(&[&prefix, &id]));
        BY_STATUS.visit_keys_desc(tx, &prefix, after_key.as_deref(), |k| {
            CustomerId::from_key(key_from(k, 1)).map_or(Ok(true), &mut take)
        })?;
    } else {
        LISTED.visit_keys_desc(tx, &[], after_id.as_ref().map(|k| k.as_slice()), |k| {
            CustomerId::from_key(k).map_or(Ok(true), &mut take)
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use portal_core::{Module, Role, Store};

    use super::*;
    use crate::dependents::CustomerData;

    /// Stands in for the invoicing module: holds financial records or not, and notes removals.
    struct Ledger {
        holds: bool,
        removed: AtomicBool,
    }

    impl CustomerData for Ledger {
        fn holds_financial_records(&self, _: &WriteTx, _: CustomerId) -> Result<bool> {
            Ok(self.holds)
        }
        fn remove_customer(&self, _: &WriteTx, _: CustomerId) -> Result<()> {
            self.removed.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    fn store() -> Store {
        let store = Store::in_memory().unwrap();
        store
            .write_blocking(|tx| {
                portal_core::store::install_core(tx)?;
                portal_auth::AuthModule::install(tx)?;
                crate::CustomersModule::install(tx)
            })
            .unwrap();
        store
    }

    fn customer_with_user(store: &Store) -> (CustomerId, portal_auth::model::User) {
        store
            .write_blocking(|tx| {
                let change = CustomerChange {
                    name: Some("Ada".into()),
                    company_name: Some("Ledgered".into()),
                    billing_email: Some("ap@ledgered.example.com".into()),
                    address: Some(AddressChange {
                        street: Some("1 Main St".into()),
                        city: Some("Berlin".into()),
                        country: Some("DE".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let record = create(tx, &change, &BillingChange::default())?;
                let user = portal_auth::service::new_user(
                    "u@ledgered.example.com".into(),
                    "U".into(),
                    Role::Customer,
                    Some(record.customer.id),
                    None,
                );
                portal_auth::users::insert(tx, &user)?;
                Ok((record.customer.id, user))
            })
            .unwrap()
    }

    fn listed_ids(store: &Store, archived: bool) -> Vec<CustomerId> {
        let filter = CustomerFilter { archived, ..Default::default() };
        let rows = store.read_blocking(|tx| list(tx, &filter, None, 10)).unwrap();
        rows.into_iter().map(|r| r.customer.id).collect()
    }

    #[test]
    fn a_customer_with_financial_records_is_archived_and_restorable() {
        let store = store();
        let (id, user) = customer_with_user(&store);
        let dependents = Dependents::default();
        let ledger = Arc::new(Ledger { holds: true, removed: AtomicBool::new(false) });
        dependents.register(ledger.clone());

        let removal = store.write_blocking(move |tx| remove(tx, id, &dependents)).unwrap();
        assert!(matches!(removal, Removal::Archived(_)));
        assert!(!ledger.removed.load(Ordering::SeqCst), "archiving removed dependent data");
        assert!(listed_ids(&store, false).is_empty());
        assert_eq!(listed_ids(&store, true), vec![id]);
        let hidden = store.read_blocking(|tx| get_listed(tx, id).map(|_| ())).unwrap_err();
        assert_eq!(hidden.code(), portal_core::ErrorCode::NotFound);
        let q = CustomerFilter { query: Some("ledgered".into()), ..Default::default() };
        assert!(store.read_blocking(|tx| list(tx, &q, None, 10)).unwrap().is_empty(), "archived but searchable");
        let disabled = store.read_blocking(|tx| portal_auth::users::get(tx, user.id)).unwrap().unwrap();
        assert!(disabled.disabled, "users of an archived customer can still sign in");

        let restored = store.write_blocking(move |tx| restore(tx, id)).unwrap();
        assert!(restored.customer.archived_at.is_none());
        assert_eq!(listed_ids(&store, false), vec![id]);
        assert!(listed_ids(&store, true).is_empty());
        assert_eq!(store.read_blocking(|tx| list(tx, &q, None, 10)).unwrap().len(), 1);
        let enabled = store.read_blocking(|tx| portal_auth::users::get(tx, user.id)).unwrap().unwrap();
        assert!(!enabled.disabled);
    }

    #[test]
    fn a_customer_without_financial_records_is_deleted_with_its_users_and_dependent_data() {
        let store = store();
        let (id, user) = customer_with_user(&store);
        let dependents = Dependents::default();
        let ledger = Arc::new(Ledger { holds: false, removed: AtomicBool::new(false) });
        dependents.register(ledger.clone());
        let removal = store.write_blocking(move |tx| remove(tx, id, &dependents)).unwrap();
        assert_eq!(removal, Removal::Deleted);
        assert!(ledger.removed.load(Ordering::SeqCst));
        assert!(store.read_blocking(|tx| get(tx, id)).unwrap().is_none());
        assert!(store.read_blocking(|tx| Ok(BILLING.get(tx, &id.to_key())?)).unwrap().is_none());
        assert!(store.read_blocking(|tx| portal_auth::users::get(tx, user.id)).unwrap().is_none());
        // Every search gram went with it.
        let grams = store
            .read_blocking(|tx| {
                Ok(crate::tables::GRAM_COUNTS
                    .page_keys(tx, &portal_core::table::Page { prefix: &[], after: None, limit: 10 })?)
            })
            .unwrap();
        assert!(grams.is_empty(), "{} gram counts left", grams.len());
    }
}
