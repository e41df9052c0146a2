//! A store with billing's tables and those it depends on, and customers in it, for unit tests.

use portal_core::{Module, Store};
use portal_customers::service::{AddressChange, BillingChange, CustomerChange};

pub(crate) fn store() -> Store {
    let store = Store::in_memory().unwrap();
    store
        .write_blocking(|tx| {
            portal_core::store::install_core(tx)?;
            portal_auth::AuthModule::install(tx)?;
            portal_customers::CustomersModule::install(tx)?;
            portal_proposals::ProposalsModule::install(tx)?;
            crate::BillingModule::install(tx)
        })
        .unwrap();
    store
}

pub(crate) fn customer(store: &Store, billing: BillingChange) -> portal_core::ids::CustomerId {
    store
        .write_blocking(move |tx| {
            let change = CustomerChange {
                name: Some("Prop".into()),
                company_name: Some("Property Co".into()),
                billing_email: Some("ap@property.example.com".into()),
                address: Some(AddressChange {
                    street: Some("1 Main St".into()),
                    city: Some("Berlin".into()),
                    country: Some("DE".into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            Ok(portal_customers::service::create(tx, &change, &billing)?.customer.id)
        })
        .unwrap()
}

/// A store holding one monthly customer and the pending invoice of its current period.
pub(crate) fn issued_invoice() -> (Store, crate::model::Invoice) {
    let store = store();
    let monthly = BillingChange { monthly_fee: Some(10.0), billing_day: Some(1), ..Default::default() };
    let id = customer(&store, monthly);
    let now = portal_core::Timestamp::now();
    let mut issued = store
        .write_blocking(move |tx| crate::recurring::run_for(tx, &portal_customers::system_scope(tx, id)?, now))
        .unwrap();
    (store, issued.remove(0))
}
