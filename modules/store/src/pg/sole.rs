//! Whether this process is the only one writing the schema. Then what it remembers (see
//! [`super::remembered`]) changes only through its own commits, and a write group needs no check of
//! the rows it answered from memory: one statement that asserts it is still alone replaces them all.
//!
//! Every store that opens the schema holds its advisory lock shared on the connection its writes run
//! on, and then draws a number from the schema's arrivals sequence. A process is alone when it can
//! take that lock exclusively (its own shared hold does not conflict with itself): no other store
//! holds the schema. It then notes the sequence's last number and forgets what it remembered. Each
//! of its write transactions asserts, before its commit, that it can still take the lock (held until
//! the transaction ends, so no store can open the schema meanwhile) and that the sequence has not
//! moved (no store opened and left since). When the assertion fails the transaction runs again, and
//! the process checks remembered rows one by one, as several writers must, until it is alone again.

use std::time::{Duration, Instant};

use super::pending::{Batch, Param};

/// How often a process that writes beside others looks whether it has become alone.
const PROBE_EVERY: Duration = Duration::from_secs(1);

pub(crate) enum Writers {
    /// Alone since the arrivals sequence stood at this number.
    Alone(i64),
    /// Others may write (or it is not known yet); when the last look was.
    Several(Option<Instant>),
}

impl Default for Writers {
    fn default() -> Self {
        Self::Several(None)
    }
}

impl Writers {
    /// Whether it is time to look again whether the process is alone.
    pub(crate) fn probe_due(&self) -> bool {
        match self {
            Self::Alone(_) => false,
            Self::Several(probed) => probed.is_none_or(|at| at.elapsed() >= PROBE_EVERY),
        }
    }
}

/// The statements, for the schema `schema` with the arrivals sequence `sequence` (qualified) and the
/// check function `unchanged`.
pub(crate) struct Statements {
    pub arrive: String,
    pub probe: String,
    assert: String,
}

impl Statements {
    pub(crate) fn new(schema: &str, sequence: &str, unchanged: &str) -> Self {
        let lock = format!("pg_try_advisory_xact_lock(hashtext('portal:{schema}'))");
        Self {
            arrive: format!("SELECT nextval('{sequence}')"),
            // Outside a transaction the lock is let go as soon as the statement ends.
            probe: format!("SELECT CASE WHEN {lock} THEN (SELECT last_value FROM {sequence}) END"),
            assert: format!("SELECT {unchanged}({lock} AND (SELECT int8send(last_value) FROM {sequence}) = $1::bytea)"),
        }
    }

    /// The assertion that the process is still alone since `arrivals`.
    pub(crate) fn still_alone(&self, arrivals: i64) -> Batch {
        Batch { sql: self.assert.clone(), params: vec![Param::Bytes(arrivals.to_be_bytes().to_vec())] }
    }
}

/// The arrivals sequence, created with the check function.
pub(crate) const SEQUENCE: &str = "portal_arrivals";

pub(crate) fn create_sequence(sequence: &str) -> String {
    format!("CREATE SEQUENCE IF NOT EXISTS {sequence}")
}
