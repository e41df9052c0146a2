//! The store's one error: something below the data failed (the file, the disk, a record that does not
//! decode). Callers above the store show it as an internal error; its text is for the log only.

use std::fmt;

#[derive(Debug, Clone)]
pub struct StoreError(String);

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub fn new(cause: impl fmt::Display) -> Self {
        Self(cause.to_string())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
