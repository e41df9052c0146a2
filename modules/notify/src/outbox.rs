//! The outbox: messages of a channel with no transport configured, newest first, for the operator to read.

use portal_core::table::Page;
use portal_core::WriteTx;
use portal_core::{Record, Result, Store, Table, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Outbox entries keyed by a v7 id (creation order).
const OUTBOX: Table<OutboxMessage> = Table::new("notify.outbox");

/// Entries beyond this many are dropped oldest first, so an unattended outbox cannot grow without bound.
const OUTBOX_CAPACITY: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub channel: Channel,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    pub created_at: Timestamp,
}

impl Record for OutboxMessage {}

/// Creates the outbox table (run in the start-up transaction).
pub fn install(tx: &WriteTx) -> Result<()> {
    Ok(OUTBOX.create(tx)?)
}

pub(crate) async fn keep(store: &Store, channel: Channel, to: &str, subject: Option<&str>, body: &str) -> Result<()> {
    let message = OutboxMessage {
        channel,
        to: to.to_string(),
        subject: subject.map(str::to_string),
        body: body.to_string(),
        created_at: Timestamp::now(),
    };
    store
        .write(move |tx| {
            OUTBOX.insert(tx, Uuid::now_v7().as_bytes(), &message)?;
            let stale = OUTBOX.page(tx, &Page { prefix: &[], after: None, limit: usize::MAX })?;
            for (key, _) in stale.into_iter().skip(OUTBOX_CAPACITY) {
                OUTBOX.remove(tx, &key)?;
            }
            Ok(())
        })
        .await
}

/// The newest `limit` outbox messages, newest first.
pub fn outbox(store: &Store, limit: usize) -> Result<Vec<OutboxMessage>> {
    store.read_blocking(|tx| {
        let page = OUTBOX.page(tx, &Page { prefix: &[], after: None, limit })?;
        Ok(page.into_iter().map(|(_, message)| message).collect())
    })
}
