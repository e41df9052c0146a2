//! A read: one `REPEATABLE READ READ ONLY` transaction, so every statement of it sees the database as
//! of its first one (like a redb snapshot). It takes a connection only when it first reads.

use std::ops::Deref;
use std::sync::Arc;

use super::session::Transaction;
use super::Pg;

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

pub(crate) struct PgRead(Transaction);

impl PgRead {
    pub(crate) fn new(pg: Arc<Pg>) -> Self {
        Self(Transaction::new(pg, BEGIN, false))
    }
}

/// Reads go straight to the transaction.
impl Deref for PgRead {
    type Target = Transaction;

    fn deref(&self) -> &Transaction {
        &self.0
    }
}

impl Drop for PgRead {
    fn drop(&mut self) {
        self.0.lock().end_read();
    }
}
