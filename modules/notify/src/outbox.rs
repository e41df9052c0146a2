//! The outbox: messages of a channel with no transport configured, newest first, for the operator to read.

use portal_core::table::Page;
use portal_core::WriteTx;
use portal_core::{Record, Result, Store, Table, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Outbox entries keyed by a v7 id (creation order).
const OUTBOX: Table<OutboxMessage> = Table::new("notify.outbox");

/// The outbox shows this many entries, newest first; older ones are dropped, so an unattended outbox
/// cannot grow without bound.
const OUTBOX_CAPACITY: u64 = 1_000;

/// Dropped in batches: once this many entries beyond the capacity gathered, the oldest go in one range
/// removal (one scan and one removal per this many messages, instead of per message).
const TRIM_EVERY: u64 = 100;

/// How many entries the outbox holds, under [`HELD`]: keeping a message reads one key instead of
/// counting the outbox (a count reads every row on PostgreSQL).
const OUTBOX_HELD: Table<Held> = Table::new("notify.outbox_held");
const HELD: &[u8] = b"held";

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Held {
    messages: u64,
}

impl Record for Held {}

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
    OUTBOX.create(tx)?;
    Ok(OUTBOX_HELD.create(tx)?)
}

pub(crate) async fn keep(store: &Store, channel: Channel, to: &str, subject: Option<&str>, body: &str) -> Result<()> {
    let message = OutboxMessage {
        channel,
        to: to.to_string(),
        subject: subject.map(str::to_string),
        body: body.to_string(),
        created_at: Timestamp::now(),
    };
    store.write(move |tx| keep_in(tx, &message)).await
}

/// Keeps `message` in the outbox within `tx`, dropping the oldest beyond the capacity now and then.
pub(crate) fn keep_in(tx: &WriteTx, message: &OutboxMessage) -> Result<()> {
    keep_all(tx, std::slice::from_ref(message))
}

/// Keeps `messages` in the outbox within `tx`, in order, counting them once for all.
fn keep_all(tx: &WriteTx, messages: &[OutboxMessage]) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    // Counted once, in a store kept before the count was (so before these are added).
    let before = match OUTBOX_HELD.get(tx, HELD)? {
        Some(held) => held.messages,
        None => OUTBOX.len(tx)?,
    };
    for message in messages {
        OUTBOX.insert(tx, Uuid::now_v7().as_bytes(), message)?;
    }
    let held = before + messages.len() as u64;
    let held = match held >= OUTBOX_CAPACITY + TRIM_EVERY {
        true => held - OUTBOX.remove_first(tx, held - OUTBOX_CAPACITY)?,
        false => held,
    };
    OUTBOX_HELD.insert(tx, HELD, &Held { messages: held })?;
    Ok(())
}

/// Keeps the text part of each mail in the outbox within `tx`, once per recipient (attachments are not
/// kept): for a sender that records what became of its mails in the same transaction.
pub fn keep_mails<'a>(tx: &WriteTx, mails: impl IntoIterator<Item = (&'a crate::Mail, Timestamp)>) -> Result<()> {
    let mut messages = Vec::new();
    for (mail, at) in mails {
        messages.extend(mail.to.iter().map(|to| OutboxMessage {
            channel: Channel::Email,
            to: to.clone(),
            subject: Some(mail.subject.clone()),
            body: mail.text.clone(),
            created_at: at,
        }));
    }
    keep_all(tx, &messages)
}

/// The newest `limit` outbox messages (at most its capacity), newest first.
pub fn outbox(store: &Store, limit: usize) -> Result<Vec<OutboxMessage>> {
    let limit = limit.min(OUTBOX_CAPACITY as usize);
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
    async fn a_full_outbox_shows_its_newest_and_drops_the_oldest_in_batches() {
        let store = Store::in_memory().unwrap();
        store.write_blocking(install).unwrap();
        let held = || store.read_blocking(|tx| Ok::<_, portal_core::Error>(OUTBOX_HELD.get(tx, HELD)?)).unwrap();
        let rows = || store.read_blocking(|tx| Ok::<_, portal_core::Error>(OUTBOX.len(tx)?)).unwrap();
        let keep_message = |n: u64| {
            let store = store.clone();
            async move { keep(&store, Channel::Email, "a@example.test", Some("s"), &format!("message {n}")).await }
        };
        for n in 0..OUTBOX_CAPACITY + 3 {
            keep_message(n).await.unwrap();
        }
        let kept = outbox(&store, usize::MAX).unwrap();
        assert_eq!(kept.len() as u64, OUTBOX_CAPACITY);
        assert_eq!(kept.first().unwrap().body, format!("message {}", OUTBOX_CAPACITY + 2));
        assert_eq!(kept.last().unwrap().body, "message 3");
        assert_eq!((held().unwrap().messages, rows()), (OUTBOX_CAPACITY + 3, OUTBOX_CAPACITY + 3));
        for n in OUTBOX_CAPACITY + 3..OUTBOX_CAPACITY + TRIM_EVERY {
            keep_message(n).await.unwrap();
        }
        // The batch's last message drops every entry beyond the capacity, the oldest.
        assert_eq!((held().unwrap().messages, rows()), (OUTBOX_CAPACITY, OUTBOX_CAPACITY));
        let kept = outbox(&store, usize::MAX).unwrap();
        assert_eq!(kept.last().unwrap().body, format!("message {TRIM_EVERY}"));
    }

    #[test]
    fn mails_kept_together_are_each_kept_per_recipient_and_counted_once() {
        let store = Store::in_memory().unwrap();
        store.write_blocking(install).unwrap();
        let mail = |subject: &str, to: &[&str]| crate::Mail {
            to: to.iter().map(|t| t.to_string()).collect(),
            subject: subject.into(),
            text: format!("{subject} text"),
            html: String::new(),
            message_id: subject.into(),
            attachments: Vec::new(),
        };
        let (first, second) =
            (mail("first", &["a@example.test", "b@example.test"]), mail("second", &["c@example.test"]));
        let at = Timestamp::now();
        store.write_blocking(move |tx| keep_mails(tx, [(&first, at), (&second, at)])).unwrap();
        store.write_blocking(|tx| keep_mails(tx, [])).unwrap();
        let kept: Vec<_> = outbox(&store, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|m| (m.to, m.subject.unwrap_or_default(), m.body))
            .collect();
        let expected = [("c", "second"), ("b", "first"), ("a", "first")]
            .map(|(to, s)| (format!("{to}@example.test"), s.to_string(), format!("{s} text")));
        assert_eq!(kept, expected);
        let held = store.read_blocking(|tx| Ok::<_, portal_core::Error>(OUTBOX_HELD.get(tx, HELD)?)).unwrap().unwrap();
        assert_eq!(held.messages, 3);
    }

    #[tokio::test]
    async fn an_outbox_kept_before_it_was_counted_is_counted_once() {
        let store = Store::in_memory().unwrap();
        store.write_blocking(install).unwrap();
        let old = OutboxMessage {
            channel: Channel::Email,
            to: "a@example.test".into(),
            subject: None,
            body: "old".into(),
            created_at: Timestamp::now(),
        };
        store
            .write_blocking(move |tx| {
                for _ in 0..5 {
                    OUTBOX.insert(tx, Uuid::now_v7().as_bytes(), &old)?;
                }
                Ok::<_, portal_core::Error>(())
            })
            .unwrap();
        for _ in 0..2 {
            keep(&store, Channel::Email, "a@example.test", None, "new").await.unwrap();
        }
        let held = store.read_blocking(|tx| Ok::<_, portal_core::Error>(OUTBOX_HELD.get(tx, HELD)?)).unwrap().unwrap();
        assert_eq!(held.messages, 7);
        assert_eq!(outbox(&store, usize::MAX).unwrap().len(), 7);
    }
}
