//! `cargo bench --bench micro`: the building blocks of a request, measured alone with criterion: record
//! encoding and decoding, a store point read and an indexed range read, access-token verification, the
//! access check, the money split, and answering an invoice as JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a failed check is a panic here

use std::hint::black_box;

use chrono::{Months, NaiveDate};
use criterion::{criterion_group, criterion_main, Criterion};
use poem_openapi::types::ToJSON;
use portal_auth::tokens::Keys;
use portal_billing::model::Invoice;
use portal_billing::views::InvoiceView;
use portal_billing::{invoices, recurring};
use portal_core::auth::{Credential, Principal};
use portal_core::ids::{CustomerId, SessionId, UserId};
use portal_core::money::split_largest_remainder;
use portal_core::table::{decode, encode};
use portal_core::{Role, Store, Timestamp};
use portal_customers::service::{self as customers, AddressChange, BillingChange, CustomerChange};

const INVOICES: u32 = 10_000;

/// A store with one customer and its invoices; returns the customer and the invoices.
fn seeded() -> (tempfile::TempDir, Store, CustomerId, Vec<Invoice>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    portal::app::install(&store).expect("install");
    let (customer, invoices) = store
        .write_blocking(|tx| {
            let change = CustomerChange {
                name: Some("Alpha".into()),
                company_name: Some("Alpha".into()),
                billing_email: Some("billing@alpha.test".into()),
                address: Some(AddressChange {
                    street: Some("1 Main St".into()),
                    city: Some("Berlin".into()),
                    country: Some("DE".into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let billing = BillingChange { monthly_fee: Some(1250.0), tax_rate: Some(19.0), ..Default::default() };
            let id = customers::create(tx, &change, &billing)?.customer.id;
            let start = NaiveDate::from_ymd_opt(2030, 1, 1).expect("date");
            let now = Timestamp::now();
            let mut made = Vec::new();
            for k in 0..INVOICES {
                let month = start.checked_add_months(Months::new(k)).expect("month");
                made.push(recurring::generate(tx, &portal_customers::system_scope(tx, id)?, Some(month), now)?);
            }
            Ok((id, made))
        })
        .expect("seed");
    (dir, store, customer, invoices)
}

fn benches(c: &mut Criterion) {
    let (_dir, store, customer, made) = seeded();
    let invoice = made[made.len() / 2].clone();
    let bytes = encode(&invoice).expect("encode");

    c.bench_function("record encode (invoice)", |b| b.iter(|| encode(black_box(&invoice)).expect("encode")));
    c.bench_function("record decode (invoice)", |b| b.iter(|| decode::<Invoice>(black_box(&bytes)).expect("decode")));

    let id = invoice.id;
    c.bench_function("store point read (invoice by id)", |b| {
        b.iter(|| store.read_blocking(|tx| invoices::get(tx, black_box(id))).expect("read").expect("found"))
    });
    c.bench_function("store range read (50 invoices of a customer)", |b| {
        b.iter(|| {
            store
                .read_blocking(|tx| {
                    invoices::list(tx, &portal_customers::system_scope(tx, black_box(customer))?, None, None, 50)
                })
                .expect("list")
        })
    });

    let keys = Keys::new(&[7u8; 32], vec![9u8; 32]);
    let (token, _) =
        keys.issue(UserId::generate(), SessionId::generate(), Role::Customer, Some(customer)).expect("token");
    c.bench_function("access token verify (HS256)", |b| b.iter(|| keys.verify(black_box(&token)).expect("valid")));

    let caller = Principal {
        user_id: UserId::generate(),
        session_id: SessionId::generate(),
        role: Role::Customer,
        customer_id: Some(customer),
        credential: Credential::Bearer,
    };
    c.bench_function("access check (own customer)", |b| {
        b.iter(|| black_box(&caller).authorize_customer(black_box(customer), "invoice").is_ok())
    });

    let weights: Vec<u64> = vec![333_333, 333_333, 333_334, 125_000, 250_000];
    c.bench_function("money split (5 milestones)", |b| {
        b.iter(|| split_largest_remainder(black_box(1_000_001), black_box(&weights)))
    });

    // The answers' JSON as poem-openapi's `Json` writes it (through a `serde_json::Value` tree) and as the
    // portal's `SerdeJson` does (straight from `Serialize`): the same bytes.
    c.bench_function("invoice answer (view + JSON through a value tree)", |b| {
        b.iter(|| InvoiceView::at(black_box(&invoice), Timestamp::now()).to_json_string())
    });
    c.bench_function("invoice answer (view + JSON written directly)", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(1024);
            portal_core::json_writer::write(&mut out, &InvoiceView::at(black_box(&invoice), Timestamp::now()))
                .expect("JSON");
            out
        })
    });
}

criterion_group!(micro, benches);
criterion_main!(micro);
