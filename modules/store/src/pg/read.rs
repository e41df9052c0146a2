//! A read: one `REPEATABLE READ READ ONLY` transaction, so every statement of it sees the database as
//! of its first one (like a redb snapshot). It takes a connection only when it first reads.

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use super::session::{self, Session};
use super::Pg;
use crate::error::{Result, StoreError};
use crate::table::Named;

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

pub(crate) struct PgRead {
    pg: Arc<Pg>,
    session: Mutex<Session>,
}

impl PgRead {
    pub(crate) fn new(pg: Arc<Pg>) -> Self {
        let session = Mutex::new(Session::new(Arc::clone(&pg), BEGIN));
        Self { pg, session }
    }

    pub(crate) fn get<R, E: From<StoreError>>(
        &self,
        table: Named<'_>,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<R, E>,
    ) -> Result<R, E> {
        session::get(&self.pg, &self.session, table, key, f)
    }

    pub(crate) fn scan<E: From<StoreError>>(
        &self,
        table: Named<'_>,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        reverse: bool,
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<(), E> {
        session::scan(&self.pg, &self.session, table, range, reverse, visit)
    }

    pub(crate) fn count(&self, table: Named<'_>) -> Result<u64> {
        session::count(&self.pg, &self.session, table)
    }

    /// The names of the portal's tables.
    pub(crate) fn table_names(&self) -> Vec<String> {
        self.pg.table_names()
    }
}

impl Drop for PgRead {
    fn drop(&mut self) {
        let _ = session::lock(&self.session).end(true);
    }
}
