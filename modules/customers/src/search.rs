//! Substring search over name, company name and billing email without scanning every customer: each
//! listed customer is indexed under every pair of adjacent characters (bigram) of those fields, lower
//! cased. A query walks the posting list of its rarest bigram newest first, checks its other bigrams by
//! point lookups, and confirms the substring on the record.

use std::collections::BTreeSet;

use portal_core::ids::CustomerId;
use portal_core::table::{key, key_from};
use portal_core::WriteTx;
use portal_core::{ReadTx, Result};

use crate::model::Customer;
use crate::tables::{GRAM_COUNTS, SEARCH};

/// Two characters as two big-endian u32 code points.
type Gram = [u8; 8];

/// Shortest query the index can answer.
pub const MIN_QUERY_CHARS: usize = 2;

fn grams_of(text: &str, into: &mut BTreeSet<Gram>) {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    for pair in chars.windows(2) {
        if let [first, second] = pair {
            let (a, b) = (u32::from(*first).to_be_bytes(), u32::from(*second).to_be_bytes());
            into.insert([a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]);
        }
    }
}

fn customer_grams(c: &Customer) -> BTreeSet<Gram> {
    let mut grams = BTreeSet::new();
    for field in [&c.name, &c.company_name, &c.billing_email] {
        grams_of(field, &mut grams);
    }
    grams
}

/// Whether `c` matches the (lower-cased) query.
pub(crate) fn matches(c: &Customer, query: &str) -> bool {
    [&c.name, &c.company_name, &c.billing_email].iter().any(|field| field.to_lowercase().contains(query))
}

fn count(tx: &impl ReadTx, gram: &Gram) -> Result<u64> {
    Ok(GRAM_COUNTS
        .get(tx, gram)?
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map_or(0, u64::from_be_bytes))
}

fn adjust(tx: &WriteTx, gram: &Gram, delta: i64) -> Result<()> {
    let next = count(tx, gram)?.saturating_add_signed(delta);
    if next == 0 {
        GRAM_COUNTS.remove(tx, gram)?;
    } else {
        GRAM_COUNTS.put(tx, gram, &next.to_be_bytes())?;
    }
    Ok(())
}

/// Moves a customer's entries from `old` to `new` (either may be absent: added, changed, removed).
pub(crate) fn reindex(tx: &WriteTx, old: Option<&Customer>, new: Option<&Customer>) -> Result<()> {
    let before = old.map(customer_grams).unwrap_or_default();
    let after = new.map(customer_grams).unwrap_or_default();
    if let Some(c) = old {
        for gram in before.difference(&after) {
            SEARCH.remove(tx, &key(&[gram, &c.id.to_key()]))?;
            adjust(tx, gram, -1)?;
        }
    }
    if let Some(c) = new {
        for gram in after.difference(&before) {
            SEARCH.put(tx, &key(&[gram, &c.id.to_key()]), &[])?;
            adjust(tx, gram, 1)?;
        }
    }
    Ok(())
}

/// Visits, newest first and older than `after`, the ids of listed customers holding every bigram of
/// `query` (a superset of the matches: the caller confirms on the record), while `visit` returns true.
pub(crate) fn candidates(
    tx: &impl ReadTx,
    query: &str,
    after: Option<CustomerId>,
    mut visit: impl FnMut(CustomerId) -> Result<bool>,
) -> Result<()> {
    let mut grams = BTreeSet::new();
    grams_of(query, &mut grams);
    let mut counted = Vec::with_capacity(grams.len());
    for gram in grams {
        counted.push((count(tx, &gram)?, gram));
    }
    counted.sort();
    let Some(&(rarest_count, rarest)) = counted.first() else { return Ok(()) };
    if rarest_count == 0 {
        return Ok(());
    }
    let after_key = after.map(|id| key(&[&rarest, &id.to_key()]));
    SEARCH.visit_keys_desc(tx, &rarest, after_key.as_deref(), |k| {
        let Some(id) = CustomerId::from_key(key_from(k, 8)) else { return Ok::<_, portal_core::Error>(true) };
        for (_, gram) in counted.iter().skip(1) {
            if !SEARCH.contains(tx, &key(&[gram, &id.to_key()]))? {
                return Ok(true);
            }
        }
        visit(id)
    })
}
