//! A store written by an earlier schema opens and answers as it did: its migrations run once, in the
//! start-up transaction.

use redb::TableDefinition;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::billing::{current_invoice, customer, mark_paid, recurring_invoice};
use crate::helpers::{table_rows, TestApp};

type Raw = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// Schema 1 of billing: each invoice index in a table of its own, named here by its tag in schema 2.
const BILLING_SCHEMA_1: [(u8, &str); 8] = [
    (1, "billing.invoices_by_customer"),
    (2, "billing.invoices_by_customer_status"),
    (3, "billing.invoices_by_proposal"),
    (4, "billing.invoices_by_number"),
    (5, "billing.pending_by_due_date"),
    (6, "billing.recurring_periods"),
    (7, "billing.invoice_numbers"),
    (8, "billing.paid_by_month"),
];
/// Schema 3 of billing: the mail queue and the reminder schedule in tables of their own.
const BILLING_SCHEMA_3: [(u8, &str); 3] =
    [(0x0d, "billing.mail_queue"), (0x0e, "billing.remindable"), (0x0f, "billing.reminded")];
/// Schema 1 of core: the audit trail's indexes, each in a table of its own.
const CORE_SCHEMA_1: [(u8, &str); 3] =
    [(1, "core.audit_by_customer"), (2, "core.audit_by_user"), (3, "core.audit_by_object")];

/// Rewrites a stopped store's shared index table the way schema 1 kept it and marks the module as schema 1.
fn back_to_schema_1(
    store: &portal_core::Store,
    module: &'static str,
    shared: &'static str,
    former: &'static [(u8, &str)],
) {
    store
        .write_blocking(move |tx| {
            let entries = table_rows(tx, shared)?;
            assert!(!entries.is_empty(), "{shared} holds the store's index entries");
            for (tag, name) in former {
                let mut table = tx.table(Raw::new(name))?;
                for (k, v) in entries.iter().filter(|(k, _)| k[0] == *tag) {
                    table.insert(&k[1..], v.as_slice())?;
                }
            }
            assert!(tx.delete_table(shared)?);
            portal_core::store::set_schema_version(tx, module, 1)
        })
        .unwrap();
}

/// Moves the entries of a stopped store's shared index table under `former`'s tags into their tables of
/// before and marks the module as schema `version`.
fn move_out_of_shared(
    store: &portal_core::Store,
    module: &'static str,
    shared: &'static str,
    former: &'static [(u8, &str)],
    version: u32,
) {
    store
        .write_blocking(move |tx| {
            let entries = table_rows(tx, shared)?;
            let mut from = tx.table(Raw::new(shared))?;
            for (tag, name) in former {
                let mut table = tx.table(Raw::new(name))?;
                for (k, v) in entries.iter().filter(|(k, _)| k[0] == *tag) {
                    table.insert(&k[1..], v.as_slice())?;
                    from.remove(k)?;
                }
            }
            portal_core::store::set_schema_version(tx, module, version)
        })
        .unwrap();
}

/// Rewrites a stopped store's audit index the way schema 2 kept it: entries of objects with UUID ids
/// under the first 16 bytes of the id's SHA-256. Returns how many keys it rewrote.
fn hash_object_keys(store: &portal_core::Store) -> usize {
    store
        .write_blocking(|tx| {
            let by_id: Vec<Vec<u8>> =
                table_rows(tx, "core.audit_indexes")?.into_iter().map(|(k, _)| k).filter(|k| k[0] == 3).collect();
            let audit = tx.table(Raw::new("core.audit"))?;
            let mut indexes = tx.table(Raw::new("core.audit_indexes"))?;
            for key in &by_id {
                let stored = audit.get(&key[17..])?.expect("the indexed entry");
                let entry: portal_core::audit::Entry = portal_core::table::decode(&stored)?;
                assert_eq!(&key[1..17], uuid::Uuid::parse_str(&entry.object_id).unwrap().as_bytes());
                let hashed = &Sha256::digest(entry.object_id.as_bytes())[..16];
                indexes.remove(key.as_slice())?;
                indexes.insert([&[3], hashed, &key[17..]].concat().as_slice(), [].as_slice())?;
            }
            Ok(by_id.len())
        })
        .unwrap()
}

/// Whether the audit index holds an entry under `object`'s id itself.
fn indexed_under_id(store: &portal_core::Store, object: &str) -> bool {
    let prefix = [&[3], uuid::Uuid::parse_str(object).unwrap().as_bytes().as_slice()].concat();
    store
        .read_blocking(move |tx| Ok(table_rows(tx, "core.audit_indexes")?.iter().any(|(k, _)| k.starts_with(&prefix))))
        .unwrap()
}

fn table_names(store: &portal_core::Store) -> Vec<String> {
    store.read_blocking(|tx| Ok(tx.table_names()?)).unwrap()
}

/// What the migrated indexes answer: lists (all, by status), stats, a customer's overview, the audit
/// trail of a customer and of an invoice.
async fn answers(app: &TestApp, admin: &str, customer: &str, invoice: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        format!("/billing/invoices/customer/{customer}"),
        format!("/billing/invoices/customer/{customer}?status=paid"),
        format!("/billing/invoices/customer/{customer}?status=pending"),
        "/billing/stats".to_string(),
        format!("/billing/customer/{customer}/overview"),
        format!("/audit?customer_id={customer}"),
        format!("/audit?object_id={invoice}"),
    ] {
        let r = app.call(Method::GET, &path, admin, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let mut body = r.json();
        // Computed at read time.
        if let Some(o) = body.as_object_mut() {
            o.remove("generated_at");
        }
        out.push(body);
    }
    out
}

#[tokio::test]
async fn a_schema_1_store_moves_its_indexes_into_the_shared_tables_and_answers_as_before() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let billing = json!({"billing_frequency": "monthly", "monthly_fee": 100, "billing_day": 1});
    let a = customer(&app, &admin, "Alpha GmbH", billing.clone()).await;
    let b = customer(&app, &admin, "Beta Ltd", billing).await;
    let first = recurring_invoice(&app, &admin, &a, "2026-01-01").await;
    recurring_invoice(&app, &admin, &a, "2026-02-01").await;
    recurring_invoice(&app, &admin, &b, "2026-01-01").await;
    // Billed now, so that the scheduler has nothing to add when the migrated store starts.
    current_invoice(&app, &admin, &a).await;
    current_invoice(&app, &admin, &b).await;
    let paid_id = first["id"].as_str().unwrap().to_string();
    mark_paid(&app, &admin, &paid_id).await;
    let before = answers(&app, &admin, &a, &paid_id).await;
    assert_eq!(before[0].as_array().unwrap().len(), 3, "{}", before[0]);
    assert_eq!(before[1].as_array().unwrap().len(), 1, "{}", before[1]);
    assert!(!before[5].as_array().unwrap().is_empty(), "{}", before[5]);

    let dir = app.stop().await;
    {
        let store = crate::helpers::open_store(dir.path());
        back_to_schema_1(&store, "billing", "billing.invoice_indexes", &BILLING_SCHEMA_1);
        assert!(hash_object_keys(&store) > 0);
        back_to_schema_1(&store, "core", "core.audit_indexes", &CORE_SCHEMA_1);
        let names = table_names(&store);
        assert!(names.iter().any(|n| n == "billing.invoices_by_customer"), "{names:?}");
    }

    let app = TestApp::spawn_in(dir).await;
    let admin = app.admin_token().await;
    assert_eq!(answers(&app, &admin, &a, &paid_id).await, before);
    let names = table_names(&app.store);
    for (_, former) in BILLING_SCHEMA_1.iter().chain(&CORE_SCHEMA_1) {
        assert!(!names.iter().any(|n| n == former), "{former} is still there: {names:?}");
    }
    for (module, expected) in [("billing", 4), ("core", 3)] {
        let version = app.store.read_blocking(|tx| portal_core::store::schema_version(tx, module)).unwrap();
        assert_eq!(version, expected, "{module}");
    }
    assert!(indexed_under_id(&app.store, &paid_id));
    // The numbering and the billed periods moved too: the next number follows, a billed period is refused.
    let next = recurring_invoice(&app, &admin, &a, "2026-03-01").await;
    let number = |v: &Value| v["invoice_number"].as_str().unwrap()[9..].parse::<u32>().unwrap();
    assert_eq!(number(&next), number(&first) + 5);
    let again = app
        .call(
            Method::POST,
            "/billing/generate-recurring",
            &admin,
            Some(json!({"customer_id": a, "period_start": "2026-02-01"})),
        )
        .await;
    again.assert_error(409, "conflict");
}

#[tokio::test]
async fn a_schema_2_store_indexes_audit_entries_under_their_object_ids_and_answers_as_before() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let billing = json!({"billing_frequency": "monthly", "monthly_fee": 100, "billing_day": 1});
    let a = customer(&app, &admin, "Alpha GmbH", billing).await;
    let invoice = recurring_invoice(&app, &admin, &a, "2026-01-01").await;
    current_invoice(&app, &admin, &a).await;
    let id = invoice["id"].as_str().unwrap().to_string();
    mark_paid(&app, &admin, &id).await;
    let before = answers(&app, &admin, &a, &id).await;
    let trail = before[6].as_array().unwrap();
    let actions: Vec<&str> = trail.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["paid", "issue"], "{}", before[6]);
    assert!(indexed_under_id(&app.store, &id));

    let dir = app.stop().await;
    {
        let store = crate::helpers::open_store(dir.path());
        // The customer's entries and the invoice's (issue, paid), the admins' and users' of the test app.
        assert!(hash_object_keys(&store) >= 4);
        store.write_blocking(|tx| portal_core::store::set_schema_version(tx, "core", 2)).unwrap();
        assert!(!indexed_under_id(&store, &id));
    }

    let app = TestApp::spawn_in(dir).await;
    let admin = app.admin_token().await;
    assert_eq!(answers(&app, &admin, &a, &id).await, before);
    assert!(indexed_under_id(&app.store, &id));
    assert!(indexed_under_id(&app.store, &a));
    let version = app.store.read_blocking(|tx| portal_core::store::schema_version(tx, "core")).unwrap();
    assert_eq!(version, 3);
}

#[tokio::test]
async fn a_store_written_by_a_newer_portal_is_refused_and_left_as_it_is() {
    let app = TestApp::spawn().await;
    let dir = app.stop().await;
    {
        let store = crate::helpers::open_store(dir.path());
        store.write_blocking(|tx| portal_core::store::set_schema_version(tx, "core", 99)).unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = portal::Config::for_data_dir(dir.path().to_path_buf());
    config.core.store = crate::helpers::store_config(dir.path());
    let refused = portal::App::with_listener(config, listener).await.err().expect("the newer store is refused");
    assert!(refused.to_string().contains("written by a newer portal (core schema 99)"), "{refused}");
    let store = crate::helpers::open_store(dir.path());
    let version = store.read_blocking(|tx| portal_core::store::schema_version(tx, "core")).unwrap();
    assert_eq!(version, 99);
}

/// A table's rows, keys and values.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Every row of table `name`.
fn rows(store: &portal_core::Store, name: &'static str) -> Rows {
    store.write_blocking(move |tx| rows_of(tx, name)).unwrap()
}

#[tokio::test]
async fn an_auth_schema_1_store_moves_its_keys_where_backups_leave_them_out_and_tokens_keep_working() {
    let app = TestApp::spawn_with(|c| c.auth.jwt_secret = None).await;
    let admin = app.admin_token().await;
    let dir = app.stop().await;
    let keys = {
        let store = crate::helpers::open_store(dir.path());
        let keys = rows(&store, "auth.secrets");
        assert_eq!(keys.len(), 2);
        store
            .write_blocking(move |tx| {
                let mut former = tx.table(Raw::new("auth.keys"))?;
                for (k, v) in rows_of(tx, "auth.secrets")? {
                    former.insert(k.as_slice(), v.as_slice())?;
                }
                assert!(tx.delete_table("auth.secrets")?);
                portal_core::store::set_schema_version(tx, "auth", 1)
            })
            .unwrap();
        keys
    };
    let app = TestApp::spawn_in_with(dir, |c| c.auth.jwt_secret = None).await;
    assert_eq!(rows(&app.store, "auth.secrets"), keys, "the same keys, moved");
    assert!(!table_names(&app.store).iter().any(|n| n == "auth.keys"));
    let version = app.store.read_blocking(|tx| portal_core::store::schema_version(tx, "auth")).unwrap();
    assert_eq!(version, 2);
    // A token signed before the upgrade still works.
    assert_eq!(app.call(Method::GET, "/users/me", &admin, None).await.status, 200);
}

fn rows_of(tx: &portal_core::WriteTx, name: &'static str) -> portal_core::Result<Rows> {
    table_rows(tx, name)
}

#[tokio::test]
async fn sessions_opened_before_they_recorded_their_holder_still_say_who_signed_in() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    // Every session as an older portal wrote it: no holder.
    app.store
        .write_blocking(|tx| {
            for (key, value) in rows_of(tx, "auth.sessions")? {
                let mut session: portal_auth::model::Session = portal_core::table::decode(&value)?;
                session.holder = None;
                tx.put_raw(Raw::new("auth.sessions"), &key, &portal_core::table::encode(&session)?)?;
            }
            Ok(())
        })
        .unwrap();
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir).await;
    // The admin's token still reaches admin operations: the role comes from the user record.
    let r = app.call(Method::GET, "/customers", &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_schema_3_store_moves_its_mail_queue_and_reminder_schedule_into_the_shared_table() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let cid = customer(&app, &admin, "Queue Co", json!({"monthly_fee": 100, "currency": "EUR"})).await;
    let invoice = current_invoice(&app, &admin, &cid).await;
    let (id, number) = (invoice["id"].as_str().unwrap().to_string(), invoice["invoice_number"].as_str().unwrap());
    let subject = format!("{number}:");
    let kept = |store: &portal_core::Store| {
        let outbox = portal_notify::outbox(store, 1_000).unwrap();
        outbox.iter().filter(|m| m.subject.as_deref().is_some_and(|s| s.contains(&subject))).count()
    };
    let mail = crate::invoice_mail::sent_mails(&app, &admin, &id, 1).await.remove(0);
    assert_eq!(kept(&app.store), 1);
    let invoice_key = *uuid::Uuid::parse_str(&id).unwrap().as_bytes();
    let mail_key = *uuid::Uuid::parse_str(mail["id"].as_str().unwrap()).unwrap().as_bytes();
    let on_schedule = |store: &portal_core::Store, table: &str, tag: &[u8]| {
        let rows = store.read_blocking(|tx| table_rows(tx, table)).unwrap();
        rows.iter().any(|(k, _)| k.starts_with(tag) && k.ends_with(&invoice_key))
    };
    assert!(on_schedule(&app.store, "billing.invoice_indexes", &[0x0e]));

    let dir = app.stop().await;
    {
        let store = crate::helpers::open_store(dir.path());
        move_out_of_shared(&store, "billing", "billing.invoice_indexes", &BILLING_SCHEMA_3, 3);
        assert!(on_schedule(&store, "billing.remindable", &[]));
        assert!(!on_schedule(&store, "billing.invoice_indexes", &[0x0e]));
        // The issue mail queued again, as a mail not yet sent when the store stopped.
        store
            .write_blocking(move |tx| {
                let queued = [portal_core::Timestamp::now().to_key().as_slice(), &invoice_key, &mail_key].concat();
                tx.table(Raw::new("billing.mail_queue"))?.insert(queued.as_slice(), [].as_slice())?;
                Ok::<_, portal_core::Error>(())
            })
            .unwrap();
    }

    let app = TestApp::spawn_in(dir).await;
    let version = app.store.read_blocking(|tx| portal_core::store::schema_version(tx, "billing")).unwrap();
    assert_eq!(version, 4);
    let names = table_names(&app.store);
    for (_, former) in &BILLING_SCHEMA_3 {
        assert!(!names.iter().any(|n| n == former), "{former} is still there: {names:?}");
    }
    assert!(on_schedule(&app.store, "billing.invoice_indexes", &[0x0e]));
    // The queued mail moved with the queue: the worker sends it (to the outbox) once more.
    let deadline = std::time::Instant::now() + crate::helpers::MAIL_WAIT;
    while kept(&app.store) < 2 {
        assert!(std::time::Instant::now() < deadline, "the queued mail was not sent");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let admin = app.admin_token().await;
    let mails = app.call(Method::GET, &format!("/billing/invoices/{id}/mails"), &admin, None).await.json();
    assert_eq!(mails[0]["attempts"], 2, "{mails}");
}
