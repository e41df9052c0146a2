//! What every portal module shares: the store (the engine is `portal-store`), the error envelope, money,
//! principals and access checks, HTTP glue, configuration and the `Module` trait. Nothing feature-specific
//! lives here.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod idempotency;
mod idempotency_key;
pub mod ids;
pub mod json_object;
pub mod json_writer;
pub mod list;
pub mod module;
pub mod money;
mod poem_error;
pub mod put_body;
pub mod rate_limit;
pub mod responses;
pub mod serde_json_payload;
pub mod store;
pub mod text;
pub mod time;
pub mod validate;

pub use auth::{Admin, Auth, Authenticator, MaybeAuth, Principal, Role};
pub use body::JsonBody;
pub use config::Config;
pub use error::{Error, ErrorCode, Result};
pub use json_object::JsonObject;
pub use list::{ListResponse, PageRequest, SerdeListResponse};
pub use module::{Context, Job, Module};
pub use money::{Currency, Money};
pub use portal_store::{backup, journal, snapshot, table, StoreError};
pub use portal_store::{Index, ReadTx, Record, Table, TableMut, WriteTx};
pub use put_body::PutBody;
pub use serde_json_payload::SerdeJson;
pub use store::Store;
pub use time::Timestamp;

/// Re-exported so modules name one version of each.
pub use {chrono, poem, poem_openapi, portal_store, redb, serde_json, uuid};
