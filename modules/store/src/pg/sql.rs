//! The statements of the PostgreSQL backend, per table (`t` is a quoted, schema-qualified name).

use std::ops::Bound;

/// The portal's tables in a schema.
pub(crate) const TABLES: &str = "SELECT tablename::text FROM pg_tables WHERE schemaname = $1";

/// The advisory lock every open store of a schema holds shared, and a restore alone.
pub(crate) const HOLD_SHARED: &str = "SELECT pg_advisory_lock_shared(hashtext('portal:' || $1::text))";
pub(crate) const HOLD_ALONE: &str = "SELECT pg_try_advisory_lock(hashtext('portal:' || $1::text))";

/// Taken by the one process of a schema that runs the background jobs, for as long as it is connected.
pub(crate) const LEAD_JOBS: &str = "SELECT pg_try_advisory_lock(hashtext('portal-jobs:' || $1::text))";

/// Whether a table exists (by its qualified name).
pub(crate) const EXISTS: &str = "SELECT to_regclass($1) IS NOT NULL";

/// Held by a transaction that creates a table, until it ends.
pub(crate) const DDL_TURN: &str = "SELECT pg_advisory_xact_lock(hashtext('portal-ddl:' || $1::text))";

/// The function a check of remembered rows calls (`f`, qualified): it fails the transaction with a
/// serialization failure when they changed, so that it runs again.
pub(crate) const UNCHANGED: &str = "portal_unchanged";

pub(crate) const HAS_UNCHANGED: &str = "SELECT to_regprocedure($1) IS NOT NULL";

pub(crate) fn create_unchanged(f: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {f}(unchanged boolean) RETURNS void LANGUAGE plpgsql AS $$ \
         BEGIN IF unchanged IS NOT TRUE THEN \
         RAISE EXCEPTION 'a row the portal remembered has changed' USING ERRCODE = 'serialization_failure'; \
         END IF; END $$"
    )
}

/// Checks that the key ranges `[$1[i], $2[i])` hold exactly the keys `$3` with the values `$4`, range
/// after range and in key order within each (a key checked alone is the range from it to the key just
/// after it).
pub(crate) fn check_ranges(t: &str, f: &str) -> String {
    format!(
        "SELECT {f}(coalesce(array_agg(t.key ORDER BY r.i, t.key), '{{}}') = $3::bytea[] \
         AND coalesce(array_agg(t.value ORDER BY r.i, t.key), '{{}}') = $4::bytea[]) \
         FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS r(lo, hi, i) \
         JOIN {t} AS t ON t.key >= r.lo AND t.key < r.hi"
    )
}

/// Checks that a range without an upper bound holds exactly the keys and values of the two arrays
/// after its bound, in order.
pub(crate) fn check_range<T>(t: &str, range: &(Bound<T>, Bound<T>), f: &str) -> String {
    let (clause, n) = range_clause(range);
    format!(
        "SELECT {f}(coalesce(array_agg(key ORDER BY key), '{{}}') = ${}::bytea[] \
         AND coalesce(array_agg(value ORDER BY key), '{{}}') = ${}::bytea[]) FROM {t}{clause}",
        n + 1,
        n + 2
    )
}

pub(crate) fn create(t: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS {t} (key bytea PRIMARY KEY, value bytea NOT NULL)")
}

pub(crate) fn drop_table(t: &str) -> String {
    format!("DROP TABLE IF EXISTS {t}")
}

pub(crate) fn get(t: &str) -> String {
    format!("SELECT value FROM {t} WHERE key = $1")
}

/// Point reads of several tables in one statement (`$n` the key in `tables[n - 1]`), each row with its
/// position in `tables` (0-based).
pub(crate) fn get_several(tables: &[String]) -> String {
    let reads: Vec<String> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| format!("SELECT {i}::int4, value FROM {t} WHERE key = ${}", i + 1))
        .collect();
    reads.join(" UNION ALL ")
}

pub(crate) fn get_many(t: &str) -> String {
    format!("SELECT key, value FROM {t} WHERE key = ANY($1::bytea[])")
}

/// Inserts the rows of two arrays (keys unique and new), in one statement.
pub(crate) fn insert_many(t: &str) -> String {
    format!("INSERT INTO {t} (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[])")
}

/// Upserts the rows of two arrays (keys unique), in one statement.
pub(crate) fn put_many(t: &str) -> String {
    format!(
        "INSERT INTO {t} (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    )
}

pub(crate) fn remove_many(t: &str) -> String {
    format!("DELETE FROM {t} WHERE key = ANY($1::bytea[])")
}

pub(crate) fn remove(t: &str) -> String {
    format!("DELETE FROM {t} WHERE key = $1")
}

/// The `WHERE` clause of a key range and how many parameters it takes (`$1`, `$2` in bound order).
fn range_clause<T>(range: &(Bound<T>, Bound<T>)) -> (String, usize) {
    let mut conditions = Vec::new();
    let mut n = 0;
    for (bound, included, excluded) in [(&range.0, ">=", ">"), (&range.1, "<=", "<")] {
        let op = match bound {
            Bound::Included(_) => included,
            Bound::Excluded(_) => excluded,
            Bound::Unbounded => continue,
        };
        n += 1;
        conditions.push(format!("key {op} ${n}"));
    }
    let clause = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    (clause, n)
}

/// Rows in `range`, in key order (descending when `reverse`), at most `$last` of them.
pub(crate) fn scan<T>(t: &str, range: &(Bound<T>, Bound<T>), reverse: bool) -> String {
    let (clause, n) = range_clause(range);
    let order = if reverse { "DESC" } else { "ASC" };
    format!("SELECT key, value FROM {t}{clause} ORDER BY key {order} LIMIT ${}", n + 1)
}

pub(crate) fn remove_range<T>(t: &str, range: &(Bound<T>, Bound<T>)) -> String {
    let (clause, _) = range_clause(range);
    format!("DELETE FROM {t}{clause}")
}

/// The bounds of `range` that are parameters, in order.
pub(crate) fn bound_params(range: &(Bound<Vec<u8>>, Bound<Vec<u8>>)) -> Vec<&[u8]> {
    [&range.0, &range.1]
        .into_iter()
        .filter_map(|b| match b {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.as_slice()),
            Bound::Unbounded => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_only_their_bounds() {
        let t = "\"p\".\"x\"";
        let both: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(b"a"), Bound::Excluded(b"b"));
        assert_eq!(
            scan(t, &both, false),
            format!("SELECT key, value FROM {t} WHERE key >= $1 AND key < $2 ORDER BY key ASC LIMIT $3")
        );
        let upper: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Unbounded, Bound::Included(b"b"));
        assert_eq!(
            scan(t, &upper, true),
            format!("SELECT key, value FROM {t} WHERE key <= $1 ORDER BY key DESC LIMIT $2")
        );
        let all: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(remove_range(t, &all), format!("DELETE FROM {t}"));
    }
}
