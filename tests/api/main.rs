//! The one integration-test binary: the real app on port 0 with a temp data dir, spoken to over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a failed check is a panic here

mod analytics;
mod audit;
mod auth;
mod backup;
mod billing;
mod contract;
mod crash;
mod customers;
mod documents;
mod errors;
mod health;
mod helpers;
mod hosted_pages;
mod invoice_mail;
mod lifecycle;
mod mail_crash;
mod migrate_store;
mod migrations;
mod openapi;
mod organization;
mod outbound_webhooks;
mod payments;
mod rate_limits;
mod reconcile;
mod refunds;
mod slow_clients;
mod store;
mod upstream;
mod users;
mod webhook_crash;
mod webhooks;
