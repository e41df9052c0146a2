//! The portal's storage engine, below everything that speaks HTTP: one redb file with a journal
//! ([`journal`]), one writer thread committing writes in durable groups and readers sharing a snapshot
//! ([`store`], [`snapshot`]), typed tables and indexes of records ([`table`]), and consistent copies of the
//! whole file ([`backup`]).
//!
//! What the modules above use is small: [`Store`] (`read`, `write`, their blocking forms), [`Table`] and
//! [`Index`] with [`Record`], [`ReadTx`] for code that reads in either kind of transaction, the module
//! schema versions, and [`on_commit`] / [`Changes`] for in-memory copies that must follow commits.
//! A write's closure returns its caller's own error type (anything a [`StoreError`] converts into), so
//! domain refusals pass through a write unchanged.
#![forbid(unsafe_code)]

pub mod backup;
mod config;
mod error;
pub mod journal;
pub mod migrate;
mod msgpack;
mod open_tables;
mod pg;
mod redo;
pub mod snapshot;
pub mod store;
pub mod table;
mod write;

pub use config::{StoreConfig, DEFAULT_CACHE_MB};
pub use error::{Result, StoreError};
pub use snapshot::Snapshot;
pub use store::{on_commit, schema_version, set_schema_version, Changes, Store, FILE_NAME};
pub use table::{Index, Page, ReadTx, Record, Table};
pub use write::{TableMut, WriteTx};

pub use redb;
