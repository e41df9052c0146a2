//! The store's one error: something below the data failed (the file, the disk, a record that does not
//! decode), or the database server cannot be reached. Callers above the store show the first as an
//! internal error and the second as a service that is unavailable for now; its text is for the log only.

use std::fmt;

#[derive(Debug, Clone)]
pub struct StoreError {
    cause: String,
    unreachable: bool,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub fn new(cause: impl fmt::Display) -> Self {
        Self { cause: cause.to_string(), unreachable: false }
    }

    /// The database server cannot be reached (no connection, or it was lost): nothing was done, and the
    /// same request may succeed once it is back.
    pub fn unreachable(cause: impl fmt::Display) -> Self {
        Self { cause: cause.to_string(), unreachable: true }
    }

    pub fn is_unreachable(&self) -> bool {
        self.unreachable
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cause)
    }
}

impl std::error::Error for StoreError {}

macro_rules! from_cause {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::new(e)
            }
        })*
    };
}

from_cause!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    rmp_serde::encode::Error,
    rmp_serde::decode::Error,
    std::io::Error,
    tokio::task::JoinError,
    tokio_postgres::Error,
);
