//! The store as the modules use it: the engine of `portal-store` answering in the portal's error type,
//! each write carrying the request's actor to the audit entries it records; and the core tables.

use std::path::{Path, PathBuf};

use crate::WriteTx;
use portal_store::backup::Summary;
pub use portal_store::store::{on_commit, open_database, Changes, FILE_NAME};
pub use portal_store::Snapshot;

use crate::config::StoreConfig;
use crate::error::{Error, Result};

/// A handle to the store; clones share one database and one writer (see `portal_store::Store`).
#[derive(Clone)]
pub struct Store(portal_store::Store);

impl Store {
    /// Opens (creating if needed) `<data_dir>/portal.redb` with the default cache.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Ok(Self(portal_store::Store::open(data_dir)?))
    }

    /// Opens (creating if needed) the store `config` names.
    pub fn open_config(config: &StoreConfig) -> Result<Self> {
        Ok(Self(portal_store::Store::open_config(config)?))
    }

    /// A store that lives in memory only (to generate the OpenAPI document without touching disk).
    pub fn in_memory() -> Result<Self> {
        Ok(Self(portal_store::Store::in_memory()?))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Runs `f` on a snapshot on a blocking thread (see `portal_store::Store::read`: it may run twice).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: Fn(&Snapshot) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.0.read(f).await
    }

    /// Runs `f` in a durable write as the current request's actor (see `portal_store::Store::write`).
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: Fn(&WriteTx) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let actor = crate::audit::Actor::current();
        self.0.write(move |tx: &WriteTx| actor.acting(|| f(tx))).await
    }

    /// A point read on the calling thread (see `portal_store::Store::read_blocking`).
    pub fn read_blocking<T>(&self, f: impl Fn(&Snapshot) -> Result<T>) -> Result<T> {
        self.0.read_blocking(f)
    }

    /// `write` for code that is not async (the command line, start-up).
    pub fn write_blocking<T: Send + 'static>(&self, f: impl Fn(&WriteTx) -> Result<T> + Send + 'static) -> Result<T> {
        self.0.write_blocking(f)
    }

    /// Copies one read transaction of the whole store into a new redb file at `dest`.
    pub async fn snapshot(&self, dest: PathBuf) -> Result<Summary> {
        Ok(self.0.snapshot(dest).await?)
    }

    /// Whether this process runs the background jobs now (see `portal_store::Store::leads_jobs`).
    pub fn leads_jobs(&self) -> bool {
        self.0.leads_jobs()
    }

    /// Whether the store is a PostgreSQL database (which other portals may write too), else a redb file.
    pub fn is_postgres(&self) -> bool {
        self.0.is_postgres()
    }

    /// Checks that the store can be read (for `/health`).
    pub fn ping(&self) -> Result<()> {
        Ok(self.0.ping()?)
    }

    /// Checks that the store still takes writes (for `/health`).
    pub fn writable(&self) -> Result<()> {
        Ok(self.0.writable()?)
    }
}

/// The core tables' schema; 2: the audit trail's indexes share one table; 3: audit entries of objects
/// with UUID ids are indexed under the id instead of its hash.
const CORE_SCHEMA: u32 = 3;

/// Creates the core tables, migrates them from an earlier schema and checks that the file was not
/// written by a newer portal.
pub fn install_core(tx: &WriteTx) -> Result<()> {
    portal_store::store::create_meta(tx)?;
    crate::idempotency::install(tx)?;
    crate::audit::install(tx)?;
    let found = schema_version(tx, "core")?;
    if found > CORE_SCHEMA {
        return Err(Error::internal(format!(
            "the store was written by a newer portal (core schema {found}); this binary reads schema {CORE_SCHEMA}"
        )));
    }
    if found == CORE_SCHEMA {
        return Ok(());
    }
    // A new store (0) starts at the current schema; an older one takes every step after its own.
    if found != 0 {
        if found < 2 {
            crate::audit::share_indexes(tx)?;
        }
        if found < 3 {
            crate::audit::key_objects_by_id(tx)?;
        }
    }
    set_schema_version(tx, "core", CORE_SCHEMA)
}

/// The schema version a module last migrated its tables to (0 when never installed).
pub fn schema_version(tx: &impl crate::ReadTx, module: &str) -> Result<u32> {
    Ok(portal_store::schema_version(tx, module)?)
}

/// Records a module's schema version (inside the migration's own transaction).
pub fn set_schema_version(tx: &WriteTx, module: &str, version: u32) -> Result<()> {
    Ok(portal_store::set_schema_version(tx, module, version)?)
}
