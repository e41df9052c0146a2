//! A read: one `REPEATABLE READ READ ONLY` transaction, so every statement of it sees the database as
//! of its first one (like a redb snapshot). It takes a connection only when it first reads, and a read
//! answered by one point read runs it alone, without `BEGIN` and `COMMIT` (see [`Alone`]).

use std::ops::Deref;
use std::sync::Arc;

use super::session::{Alone, Transaction};
use super::Pg;

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

pub(crate) struct PgRead(Transaction);

impl PgRead {
    /// A read; `first_alone`: its first statement may run outside the transaction block (not when it
    /// runs again after losing a race, so that the second run cannot lose one).
    pub(crate) fn new(pg: Arc<Pg>, first_alone: bool) -> Self {
        let alone = if first_alone { Alone::Possible } else { Alone::Never };
        Self(Transaction::new(pg, BEGIN, false, alone, None))
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
