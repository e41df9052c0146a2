//! `portal migrate-store`: a portal's redb store moves to PostgreSQL and back with every row, the portal
//! serves the moved data (its signing keys came along, so tokens stay valid), and a copy into a store
//! that holds data, or out of one a portal serves, is refused.

use std::path::Path;

use portal_core::config::StoreConfig;
use reqwest::Method;
use serde_json::json;

use crate::backup::{dump, Dump};
use crate::helpers::{test_database, TestApp};

async fn portal(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_portal")).args(args).output().await.expect("portal runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn dump_of(config: &StoreConfig) -> Dump {
    let store = portal_core::Store::open_config(config).unwrap();
    store.read_blocking(|tx| Ok(dump(tx))).unwrap()
}

fn redb_at(dir: &Path) -> StoreConfig {
    StoreConfig::new(dir.to_path_buf())
}

#[tokio::test]
async fn a_store_moves_to_postgresql_and_back_with_every_row() {
    let Some(url) = test_database() else {
        eprintln!("moving a store needs a PostgreSQL server (PORTAL_TEST_DATABASE_URL)");
        return;
    };
    // A portal on a redb file with some data.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let app = TestApp::spawn_in_with(dir, move |c| c.core.store = redb_at(&path)).await;
    let admin = app.admin_token().await;
    let body = json!({"name": "Ada", "company_name": "Acme", "billing_email": "ada@acme.test",
        "address": {"street": "1 Main St", "city": "Berlin", "country": "DE"}});
    let customer = app.call(Method::POST, "/customers", &admin, Some(body)).await;
    assert_eq!(customer.status, 201, "{}", customer.text);
    let dir = app.stop().await;
    let original = dump_of(&redb_at(dir.path()));

    // To PostgreSQL: every table and row, the secrets too (the same portal moves).
    let schema = format!("m{}", uuid::Uuid::now_v7().simple());
    let dir_arg = dir.path().to_str().unwrap();
    let out = portal(&["migrate-store", "--from", dir_arg, "--to", &url, "--to-schema", &schema]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("{} tables", original.len())), "{}", text(&out.stdout));
    let mut on_postgres = StoreConfig::new(dir.path().to_path_buf());
    on_postgres.database_url = Some(url.clone());
    on_postgres.database_schema = schema.clone();
    assert_eq!(dump_of(&on_postgres), original);

    // Again into the same schema: refused, nothing changed.
    let again = portal(&["migrate-store", "--from", dir_arg, "--to", &url, "--to-schema", &schema]).await;
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already holds a portal store"), "{}", text(&again.stderr));

    // A portal serves it: the customer is there and the token from before the move still works.
    let config = on_postgres.clone();
    let moved = TestApp::spawn_with(move |c| c.core.store = config).await;
    let listed = moved.call(Method::GET, "/customers", &admin, None).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json()[0]["id"], customer.json()["id"]);
    // Out of a schema a portal serves: refused.
    let back = tempfile::tempdir().unwrap();
    let back_arg = back.path().to_str().unwrap();
    let busy = portal(&["migrate-store", "--from", &url, "--from-schema", &schema, "--to", back_arg]).await;
    assert!(!busy.status.success());
    assert!(text(&busy.stderr).contains("running portal"), "{}", text(&busy.stderr));
    drop(moved.stop().await);

    // And back to a redb file: the same rows again.
    let out = portal(&["migrate-store", "--from", &url, "--from-schema", &schema, "--to", back_arg]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let returned = dump_of(&redb_at(back.path()));
    let served = dump_of(&on_postgres);
    assert_eq!(returned, served);
    assert_eq!(returned["customers.customers"].len(), 1);
}
