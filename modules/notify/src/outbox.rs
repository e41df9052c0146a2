//! The outbox: messages of a channel with no transport configured, newest first, for the operator to read.

use portal_core::table::Page;
use portal_core::WriteTx;
use portal_core::{Record, Result, Store, Table, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Outbox entries keyed by a v7 id (creation order).
const OUTBOX: Table<OutboxMessage> = Table::new("notify.outbox");

/// Entries beyond this many are dropped oldest first, so an unattended outbox cannot grow without bound.
const OUTBOX_CAPACITY: u64 = 1_000;

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
            let excess = OUTBOX.len(tx)?.saturating_sub(OUTBOX_CAPACITY);
            for key in OUTBOX.first_keys(tx, excess)? {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_full_outbox_drops_its_oldest_messages() {
        let store = Store::in_memory().unwrap();
        store.write_blocking(install).unwrap();
        for n in 0..OUTBOX_CAPACITY + 3 {
            keep(&store, Channel::Email, "a@example.test", Some("s"), &format!("message {n}")).await.unwrap();
        }
        let kept = outbox(&store, usize::MAX).unwrap();
        assert_eq!(kept.len() as u64, OUTBOX_CAPACITY);
        assert_eq!(kept.first().unwrap().body, format!("message {}", OUTBOX_CAPACITY + 2));
        assert_eq!(kept.last().unwrap().body, "message 3");
    }
}
