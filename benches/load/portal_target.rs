//! Portal under load: a store seeded through the service layer (customers, users, invoices), then the
//! real release binary serving it with rate limits off.

use std::net::SocketAddr;
use std::ops::Bound;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use chrono::{Months, NaiveDate};
use portal_auth::model::User;
use portal_auth::{password, service, users};
use portal_billing::links::{self, LinkKind};
use portal_billing::model::InvoiceId;
use portal_billing::recurring;
use portal_core::ids::CustomerId;
use portal_core::{Role, Store, Timestamp};
use portal_customers::service::{self as customers, AddressChange, BillingChange, CustomerChange};

use crate::Seed;

/// Month `k` of the billing calendar, from year 1 on: the seed bills the first months, the load's creates
/// the ones after (up to year 9999, which `period_start` allows).
fn month(k: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1, 1, 1).and_then(|d| d.checked_add_months(Months::new(k))).expect("month")
}

/// Customers without invoices that the creates bill, so that a fast run does not run out of months
/// (each customer has 119,988 months up to year 9999). PocketBase's creates spread over as many.
pub const BILLED_CUSTOMERS: usize = 16;

/// What the load needs to know about the seeded store.
pub struct Seeded {
    /// The two customers holding the seeded invoices and users.
    pub customers: [CustomerId; 2],
    /// Invoices of the first customer (the one the signed-in customer user belongs to).
    pub invoices: Vec<InvoiceId>,
    /// The customers new invoices are created for.
    pub billed: Vec<CustomerId>,
    /// Tokens of the pay links of the first invoices (as their mails would carry them).
    pub pay_tokens: Vec<String>,
}

/// How many of the seeded invoices the `pay` row opens by their links.
const PAY_LINKS: usize = 1_000;

/// Seeds the store of `dir`, or the PostgreSQL schema `database` names (URL, schema).
pub async fn seed(dir: &Path, database: Option<&(String, String)>, seed: &Seed) -> Seeded {
    let mut config = portal_core::config::StoreConfig::new(dir.to_path_buf());
    if let Some((url, schema)) = database {
        config.database_url = Some(url.clone());
        config.database_schema = schema.clone();
    }
    let store = Store::open_config(&config).expect("store");
    ::portal::app::install(&store).expect("install");
    let (customers, billed) = store
        .write(|tx| {
            let mut ids = Vec::new();
            let names = ["Alpha".to_string(), "Beta".to_string()].into_iter();
            for name in names.chain((0..BILLED_CUSTOMERS).map(|i| format!("Billed{i}"))) {
                let change = CustomerChange {
                    name: Some(format!("{name} Contact")),
                    company_name: Some(format!("{name} GmbH")),
                    billing_email: Some(format!("billing@{}.test", name.to_lowercase())),
                    address: Some(AddressChange {
                        street: Some("1 Main St".into()),
                        city: Some("Berlin".into()),
                        country: Some("DE".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let billing = BillingChange { monthly_fee: Some(1250.0), tax_rate: Some(19.0), ..Default::default() };
                ids.push(customers::create(tx, &change, &billing)?.customer.id);
            }
            Ok(([ids[0], ids[1]], ids[2..].to_vec()))
        })
        .await
        .expect("customers");

    // One argon2id hash for every user: hashing 1,000 passwords would only slow the seed.
    let hash = password::hash(crate::PASSWORD.to_string()).await.expect("hash");
    let mut people: Vec<User> = (0..seed.users)
        .map(|i| {
            let customer = customers[i % 2];
            service::new_user(
                crate::user_email(i),
                format!("User {i}"),
                Role::Customer,
                Some(customer),
                Some(hash.clone()),
            )
        })
        .collect();
    people.push(service::new_user(crate::ADMIN_EMAIL.into(), "Admin".into(), Role::Admin, None, Some(hash)));
    store
        .write(move |tx| {
            for user in &people {
                users::insert(tx, user)?;
            }
            Ok(())
        })
        .await
        .expect("users");

    let per_customer = (seed.invoices / 2) as u32;
    let mut invoices = Vec::new();
    let chunk = 5_000u32;
    let mut first = 0;
    while first < per_customer {
        let last = (first + chunk / 2).min(per_customer);
        let ids = store
            .write(move |tx| {
                let now = Timestamp::now();
                let mut ids = Vec::new();
                for k in first..last {
                    ids.push(
                        recurring::generate(
                            tx,
                            &portal_customers::system_scope(tx, customers[0])?,
                            Some(month(k)),
                            now,
                        )?
                        .id,
                    );
                    recurring::generate(tx, &portal_customers::system_scope(tx, customers[1])?, Some(month(k)), now)?;
                }
                Ok(ids)
            })
            .await
            .expect("invoices");
        invoices.extend(ids);
        first = last;
    }
    // The seeded invoices' mails are set-up, not load: unsent, the mail job would send them (one to the
    // billing address and each user of the two customers, for 10,000 invoices) while the load runs.
    store
        .write(|tx| {
            // The queue's entries in billing's shared index table, under their tag.
            let indexes = portal_core::table::raw("billing.invoice_indexes");
            let queued = (Bound::Included(&[0x0d_u8][..]), Bound::Excluded(&[0x0e_u8][..]));
            Ok::<_, portal_core::Error>(tx.remove_range_raw(indexes, queued)?)
        })
        .await
        .expect("mail queue");
    let linked: Vec<InvoiceId> = invoices.iter().take(PAY_LINKS).copied().collect();
    let pay_tokens = store
        .read(move |tx| {
            let token = |id: &InvoiceId| {
                let key = id.to_key();
                let link = links::current(tx, LinkKind::Pay, &key)?
                    .ok_or_else(|| portal_core::Error::internal("an open invoice without a pay link"))?;
                links::token(tx, LinkKind::Pay, &key, &link)
            };
            linked.iter().map(token).collect::<portal_core::Result<Vec<String>>>()
        })
        .await
        .expect("pay links");
    drop(store);
    Seeded { customers, invoices, billed, pay_tokens }
}

/// The customer and month that create request `n` bills (`n` counts all creates of the run).
pub fn create_period(seeded: &Seeded, n: u64) -> (CustomerId, NaiveDate) {
    let customers = seeded.billed.len() as u64;
    (seeded.billed[(n % customers) as usize], month((n / customers) as u32))
}

/// Starts `portal serve` on `addr` over the seeded store (or database); its log goes to
/// `<dir>/portal.log`. The load generator is one client standing for many: no rate limits, no per-IP
/// connection cap; its webhook receiver listens on loopback.
pub fn spawn(dir: &Path, database: Option<&(String, String)>, addr: SocketAddr) -> Child {
    let log = std::fs::File::create(dir.join("portal.log")).expect("log file");
    // `PORTAL_BIN` measures another build of the same code, e.g. the shipped one (`target/dist/portal`).
    let bin = std::env::var_os("PORTAL_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_portal").into());
    let mut command = Command::new(bin);
    command
        .args(["serve", "--rate-limit", "off", "--max-connections-per-ip", "4096", "--addr", &addr.to_string()])
        .args(["--webhooks-allow-http", "loopback", "--public-url", &format!("http://{addr}")])
        .arg("--data-dir")
        .arg(dir);
    if let Some((url, schema)) = database {
        command.args(["--database-url", url, "--database-schema", schema]);
    }
    command.stdout(Stdio::null()).stderr(log).spawn().expect("start portal")
}
