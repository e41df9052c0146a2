//! The store: records written before a field was added still read, and committed writes survive
//! closing and reopening the file.

use portal_core::table::{decode, encode, Index, Page, Table};
use std::ops::Bound;

use portal_core::Record;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct NoteV1 {
    title: String,
    pages: u32,
}
impl Record for NoteV1 {}

/// The same record after a field was added.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct NoteV2 {
    title: String,
    pages: u32,
    #[serde(default)]
    tags: Vec<String>,
}
impl Record for NoteV2 {}

#[derive(Serialize, Deserialize, Debug)]
struct NoteV9 {
    title: String,
}
impl Record for NoteV9 {
    const VERSION: u8 = 9;
}

#[test]
fn a_record_written_before_a_field_was_added_still_reads() {
    let old = encode(&NoteV1 { title: "q3".into(), pages: 4 }).unwrap();
    let new: NoteV2 = decode(&old).unwrap();
    assert_eq!(new, NoteV2 { title: "q3".into(), pages: 4, tags: vec![] });
    // And old code ignores fields it does not know.
    let newer = encode(&NoteV2 { title: "q4".into(), pages: 1, tags: vec!["x".into()] }).unwrap();
    assert_eq!(decode::<NoteV1>(&newer).unwrap(), NoteV1 { title: "q4".into(), pages: 1 });
}

#[test]
fn a_record_from_a_newer_schema_is_refused_not_misread() {
    let bytes = encode(&NoteV9 { title: "future".into() }).unwrap();
    assert!(decode::<NoteV1>(&bytes).is_err());
}

const NOTES: Table<NoteV2> = Table::new("test.notes");
const NOTES_BY_PAGES: Index = Index::new("test.notes_by_pages");

#[test]
fn committed_writes_survive_reopening_and_failed_writes_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = crate::helpers::open_store(dir.path());
        store
            .write_blocking(|tx| {
                for i in 0u32..5 {
                    let note = NoteV2 { title: format!("n{i}"), pages: i, tags: vec![] };
                    NOTES.insert(tx, &i.to_be_bytes(), &note)?;
                    NOTES_BY_PAGES.put(tx, &[b"p".as_slice(), &i.to_be_bytes()].concat(), &[])?;
                }
                Ok(())
            })
            .unwrap();
        let failed = store.write_blocking(|tx| {
            NOTES.insert(tx, &99u32.to_be_bytes(), &NoteV2 { title: "half".into(), pages: 0, tags: vec![] })?;
            Err::<(), _>(portal_core::Error::conflict("changed my mind"))
        });
        assert!(failed.is_err());
    }
    let store = crate::helpers::open_store(dir.path());
    store
        .read_blocking(|tx| {
            assert_eq!(NOTES.get(tx, &3u32.to_be_bytes())?.unwrap().title, "n3");
            assert!(NOTES.get(tx, &99u32.to_be_bytes())?.is_none(), "a failed write left a record");
            let page = NOTES.page(tx, &Page { prefix: &[], after: None, limit: 2 })?;
            assert_eq!(page.iter().map(|(_, n)| n.pages).collect::<Vec<_>>(), vec![4, 3]);
            let after = page.last().unwrap().0.clone();
            let next = NOTES.page(tx, &Page { prefix: &[], after: Some(&after), limit: 10 })?;
            assert_eq!(next.iter().map(|(_, n)| n.pages).collect::<Vec<_>>(), vec![2, 1, 0]);
            let keys = NOTES_BY_PAGES.page_keys(tx, &Page { prefix: b"p", after: None, limit: 10 })?;
            assert_eq!(keys.len(), 5);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_write_over_rows_it_did_not_read_replaces_them_beside_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    // One write of the given keys and page counts.
    let write = |store: &portal_core::Store, rows: &'static [(&'static [u8], u32)]| {
        store
            .write_blocking(move |tx| {
                for (key, pages) in rows {
                    NOTES.insert(tx, key, &NoteV2 { title: format!("p{pages}"), pages: *pages, tags: vec![] })?;
                }
                Ok::<_, portal_core::Error>(())
            })
            .unwrap();
    };
    write(&crate::helpers::open_store(dir.path()), &[(b"a", 1), (b"b", 1)]);
    // Reopened, the store knows nothing of the rows: on PostgreSQL the first write guesses them new.
    let store = crate::helpers::open_store(dir.path());
    write(&store, &[(b"c", 1), (b"a", 2)]);
    write(&store, &[(b"b", 3)]);
    let pages = store
        .read_blocking(|tx| {
            let page = NOTES.page(tx, &Page { prefix: &[], after: None, limit: 10 })?;
            Ok::<_, portal_core::Error>(page.into_iter().map(|(k, n)| (k, n.pages)).collect::<Vec<_>>())
        })
        .unwrap();
    assert_eq!(pages, vec![(b"c".to_vec(), 1), (b"b".to_vec(), 3), (b"a".to_vec(), 2)]);
}

#[test]
fn a_write_that_read_a_group_still_committing_runs_again_if_that_group_did_not_commit() {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let note = |pages: u32| NoteV2 { title: format!("p{pages}"), pages, tags: vec![] };
    crate::helpers::open_store(dir.path())
        .write_blocking(move |tx| Ok::<_, portal_core::Error>(NOTES.insert(tx, b"a", &note(1))?))
        .unwrap();
    // Reopened, the store knows nothing of "a": on PostgreSQL the first write below inserts it and
    // meets the existing row only when its commit is answered, after the second write ran behind it.
    let store = crate::helpers::open_store(dir.path());
    let (first_runs, second_runs) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (queue_second, second_queued) = std::sync::mpsc::channel::<()>();
    let second = {
        let (store, runs) = (store.clone(), Arc::clone(&second_runs));
        std::thread::spawn(move || {
            second_queued.recv().unwrap();
            store.write_blocking(move |tx| {
                runs.fetch_add(1, SeqCst);
                let a = NOTES.get(tx, b"a")?.map_or(0, |a| a.pages);
                NOTES.insert(tx, b"b", &note(a + 10))?;
                Ok::<_, portal_core::Error>(())
            })
        })
    };
    let runs = Arc::clone(&first_runs);
    let first = store.write_blocking(move |tx| {
        // Run again, the write gives up: what it wrote the first time must not be seen anywhere.
        if runs.fetch_add(1, SeqCst) > 0 {
            return Err(portal_core::Error::conflict("given up"));
        }
        let _ = queue_second.send(());
        std::thread::sleep(std::time::Duration::from_millis(100));
        NOTES.insert(tx, b"a", &note(2))?;
        Ok::<_, portal_core::Error>(())
    });
    second.join().unwrap().unwrap();
    let pages = |key: &'static [u8]| {
        store.read_blocking(move |tx| Ok::<_, portal_core::Error>(NOTES.get(tx, key)?.map(|n| n.pages))).unwrap()
    };
    let (a, b) = (pages(b"a"), pages(b"b"));
    assert_eq!(b, a.map(|a| a + 10), "the second write saw a value of a that was never committed");
    match crate::helpers::test_database() {
        // The first write's insert failed at its commit; the second, which had read it, ran again.
        Some(_) => {
            assert!(first.is_err(), "{first:?}");
            assert_eq!((a, first_runs.load(SeqCst), second_runs.load(SeqCst)), (Some(1), 2, 2));
        }
        None => {
            assert!(first.is_ok(), "{first:?}");
            assert_eq!((a, first_runs.load(SeqCst), second_runs.load(SeqCst)), (Some(2), 1, 1));
        }
    }
}

#[test]
fn the_oldest_records_go_in_one_removal_and_the_write_reads_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::open_store(dir.path());
    let note = |i: u32| NoteV2 { title: format!("n{i}"), pages: i, tags: vec![] };
    let pages = |store: &portal_core::Store| {
        store
            .read_blocking(|tx| {
                let page = NOTES.page(tx, &Page { prefix: &[], after: None, limit: 100 })?;
                Ok::<_, portal_core::Error>(page.into_iter().map(|(_, n)| n.pages).collect::<Vec<_>>())
            })
            .unwrap()
    };
    store
        .write_blocking(move |tx| {
            for i in 0u32..10 {
                NOTES.insert(tx, &i.to_be_bytes(), &note(i))?;
            }
            Ok::<_, portal_core::Error>(())
        })
        .unwrap();
    // A record added and the four oldest removed in one write, which then counts what is left.
    let (removed, left) = store
        .write_blocking(move |tx| {
            NOTES.insert(tx, &10u32.to_be_bytes(), &note(10))?;
            let removed = NOTES.remove_first(tx, 4)?;
            Ok::<_, portal_core::Error>((removed, NOTES.len(tx)?))
        })
        .unwrap();
    assert_eq!((removed, left), (4, 7));
    assert_eq!(pages(&store), vec![10, 9, 8, 7, 6, 5, 4]);
    let all = store.write_blocking(|tx| Ok::<_, portal_core::Error>(NOTES.remove_first(tx, 100)?)).unwrap();
    assert_eq!(all, 7, "asking for more than there are removes them all");
    assert!(pages(&store).is_empty());
}

#[test]
fn a_write_reads_its_own_changes_through_every_kind_of_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::open_store(dir.path());
    let note = |i: u32| NoteV2 { title: format!("n{i}"), pages: i, tags: vec![] };
    store
        .write_blocking(move |tx| {
            for i in 0u32..3 {
                NOTES.insert(tx, &i.to_be_bytes(), &note(i))?;
            }
            Ok(())
        })
        .unwrap();
    store
        .write_blocking(move |tx| {
            // Read before they change (a read answered once is remembered until the write changes it).
            assert_eq!(NOTES.get(tx, &1u32.to_be_bytes())?.unwrap().pages, 1);
            assert!(NOTES.get(tx, &8u32.to_be_bytes())?.is_none());
            // Changed here: a new key, a replaced one, a removed one; and one committed before.
            NOTES.insert(tx, &7u32.to_be_bytes(), &note(7))?;
            NOTES.insert(tx, &1u32.to_be_bytes(), &note(11))?;
            assert!(NOTES.remove(tx, &2u32.to_be_bytes())?);
            assert!(!NOTES.remove(tx, &2u32.to_be_bytes())?, "removed twice");
            let keys = [0u32, 1, 2, 7, 8].map(u32::to_be_bytes);
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let pages: Vec<Option<u32>> = NOTES.get_many(tx, &refs)?.into_iter().map(|n| n.map(|n| n.pages)).collect();
            assert_eq!(pages, vec![Some(0), Some(11), None, Some(7), None]);
            assert_eq!(NOTES.get(tx, &1u32.to_be_bytes())?.unwrap().pages, 11);
            assert_eq!(NOTES.len(tx)?, 3);
            let page = NOTES.page(tx, &Page { prefix: &[], after: None, limit: 10 })?;
            assert_eq!(page.iter().map(|(_, n)| n.pages).collect::<Vec<_>>(), vec![7, 11, 0]);
            // Sent by the scan, read again: the new values, not the ones read first.
            assert_eq!(NOTES.get(tx, &1u32.to_be_bytes())?.unwrap().pages, 11);
            NOTES.insert(tx, &8u32.to_be_bytes(), &note(8))?;
            assert_eq!(NOTES.len(tx)?, 4);
            assert_eq!(NOTES.get(tx, &8u32.to_be_bytes())?.unwrap().pages, 8);
            // Written after the scan sent the earlier changes, then removed with a range.
            NOTES.insert(tx, &9u32.to_be_bytes(), &note(9))?;
            tx.remove_range_raw(NOTES.raw(), (Bound::Included(&7u32.to_be_bytes()[..]), Bound::Unbounded))?;
            assert!(NOTES.get(tx, &9u32.to_be_bytes())?.is_none());
            assert!(NOTES.get(tx, &8u32.to_be_bytes())?.is_none());
            Ok(())
        })
        .unwrap();
    store
        .read_blocking(|tx| {
            let keys = [0u32, 1, 2, 7, 8, 9].map(u32::to_be_bytes);
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let pages: Vec<Option<u32>> = NOTES.get_many(tx, &refs)?.into_iter().map(|n| n.map(|n| n.pages)).collect();
            assert_eq!(pages, vec![Some(0), Some(11), None, None, None, None]);
            assert_eq!(NOTES.len(tx)?, 2);
            Ok(())
        })
        .unwrap();
}

/// The largest key of a prefix below a bound: in reads and writes, with the write's own new and removed
/// keys, keys of another prefix and of another index sharing the table passed over, and found again on
/// later look-ups below other bounds (which PostgreSQL answers from what it read first).
#[test]
fn the_last_key_below_a_bound_is_the_largest_of_its_prefix_under_it() {
    const PERIODS: Index = Index::shared("test.shared_keys", b"\x01");
    const OTHER: Index = Index::shared("test.shared_keys", b"\x00");
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::open_store(dir.path());
    let at = |prefix: u8, n: u32| [&[prefix][..], &n.to_be_bytes()].concat();
    store
        .write_blocking(move |tx| {
            PERIODS.create(tx)?;
            for n in [10, 20, 30] {
                PERIODS.put(tx, &at(b'a', n), &[])?;
            }
            PERIODS.put(tx, &at(b'b', 5), &[])?;
            OTHER.put(tx, &at(b'a', 25), &[])?;
            Ok(())
        })
        .unwrap();
    store
        .read_blocking(move |tx| {
            let below = |n: u32| PERIODS.last_below(tx, b"a", &at(b'a', n));
            assert_eq!(below(25)?, Some(at(b'a', 20)), "the largest below the bound");
            assert_eq!(below(20)?, Some(at(b'a', 10)), "strictly below");
            assert_eq!(below(31)?, Some(at(b'a', 30)), "up to the prefix's largest");
            assert_eq!(below(10)?, None, "none below the smallest");
            assert_eq!(PERIODS.last_below(tx, b"b", &at(b'b', 5))?, None, "another prefix");
            assert_eq!(PERIODS.last_below(tx, b"c", &at(b'c', 1))?, None, "an empty prefix");
            Ok(())
        })
        .unwrap();
    store
        .write_blocking(move |tx| {
            let below = |n: u32| PERIODS.last_below(tx, b"a", &at(b'a', n));
            assert_eq!(below(29)?, Some(at(b'a', 20)));
            PERIODS.put(tx, &at(b'a', 27), &[])?;
            assert_eq!(below(29)?, Some(at(b'a', 27)), "the write's own key");
            assert!(PERIODS.remove(tx, &at(b'a', 30))?);
            assert_eq!(below(40)?, Some(at(b'a', 27)), "its removed key is gone");
            Ok(())
        })
        .unwrap();
    store
        .write_blocking(move |tx| {
            let below = |n: u32| PERIODS.last_below(tx, b"a", &at(b'a', n));
            assert_eq!(below(40)?, Some(at(b'a', 27)), "as committed");
            assert_eq!(below(27)?, Some(at(b'a', 20)));
            assert_eq!(below(15)?, Some(at(b'a', 10)));
            Ok(())
        })
        .unwrap();
}

/// Rows said to be expected (fetched with the next point read on PostgreSQL) read exactly as if asked
/// on their own: present, absent, in another table, in a table never created, the read key itself,
/// named twice, and in a write, changed by it before or after.
#[test]
fn expected_rows_read_the_same_as_rows_asked_on_their_own() {
    const NEVER_CREATED: Index = Index::new("test.never_created");
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::open_store(dir.path());
    let note = |title: &str| NoteV2 { title: title.into(), pages: 1, tags: vec![] };
    let first = note("first");
    store
        .write_blocking(move |tx| {
            NOTES.insert(tx, b"a", &first)?;
            Ok::<_, portal_core::Error>(NOTES_BY_PAGES.put(tx, b"p1", b"one")?)
        })
        .unwrap();
    let expect_all = |tx: &dyn Fn(&Index, &[u8])| {
        for key in [b"p1".as_slice(), b"p2", b"p1"] {
            tx(&NOTES_BY_PAGES, key);
        }
        tx(&NEVER_CREATED, b"x");
    };
    store
        .read_blocking(|tx| {
            expect_all(&|index, key| index.expect(tx, key));
            assert_eq!(NOTES.get(tx, b"a")?.unwrap().title, "first");
            assert_eq!(NOTES_BY_PAGES.get(tx, b"p1")?.as_deref(), Some(b"one".as_slice()));
            assert!(!NOTES_BY_PAGES.contains(tx, b"p2")?);
            assert!(!NEVER_CREATED.contains(tx, b"x")?);
            // Expecting the key that is then read, or a row absent from a table that exists.
            NOTES_BY_PAGES.expect(tx, b"p3");
            assert!(NOTES_BY_PAGES.get(tx, b"p3")?.is_none());
            Ok::<_, portal_core::Error>(())
        })
        .unwrap();
    let second = note("second");
    store
        .write_blocking(move |tx| {
            NOTES_BY_PAGES.put(tx, b"p2", b"two")?;
            expect_all(&|index, key| index.expect(tx, key));
            assert!(NOTES.get(tx, b"b")?.is_none());
            assert_eq!(NOTES_BY_PAGES.get(tx, b"p2")?.as_deref(), Some(b"two".as_slice()));
            NOTES_BY_PAGES.remove(tx, b"p1")?;
            assert!(!NOTES_BY_PAGES.contains(tx, b"p1")?);
            Ok::<_, portal_core::Error>(NOTES.insert(tx, b"b", &second)?)
        })
        .unwrap();
    store
        .read_blocking(|tx| {
            expect_all(&|index, key| index.expect(tx, key));
            assert_eq!(NOTES.get(tx, b"b")?.unwrap().title, "second");
            assert!(!NOTES_BY_PAGES.contains(tx, b"p1")?);
            assert_eq!(NOTES_BY_PAGES.get(tx, b"p2")?.as_deref(), Some(b"two".as_slice()));
            Ok::<_, portal_core::Error>(())
        })
        .unwrap();
}

/// On PostgreSQL a read's first point read runs alone (outside a transaction); when the row it read
/// changed before the read's second statement, the read runs again, so that its answer is still the
/// database as of one moment. (On redb the read keeps its snapshot.)
#[test]
fn a_read_answers_from_one_moment_when_a_row_changes_between_its_statements() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::open_store(dir.path());
    let note = |title: &str| NoteV2 { title: title.into(), pages: 1, tags: vec![] };
    let write_both = |store: &portal_core::Store, title: &'static str| {
        store
            .write_blocking(move |tx| {
                NOTES.insert(tx, b"a", &note(title))?;
                Ok::<_, portal_core::Error>(NOTES.insert(tx, b"b", &note(title))?)
            })
            .unwrap()
    };
    write_both(&store, "before");
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let (a, b) = store
        .read_blocking(|tx| {
            let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let a = NOTES.get(tx, b"a")?.map(|n| n.title);
            if run == 0 {
                write_both(&store, "after");
            }
            let b = NOTES.get(tx, b"b")?.map(|n| n.title);
            Ok::<_, portal_core::Error>((a, b))
        })
        .unwrap();
    let (want_runs, expected) = match crate::helpers::test_database() {
        Some(_) => (2, "after"),
        None => (1, "before"),
    };
    assert_eq!((a.as_deref(), b.as_deref()), (Some(expected), Some(expected)));
    assert_eq!(runs.into_inner(), want_runs);
}

#[tokio::test]
async fn async_reads_and_writes_run_off_the_reactor() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::helpers::open_store(dir.path());
    let writes = (0u32..20).map(|i| {
        let store = store.clone();
        async move {
            store
                .write(move |tx| {
                    Ok(NOTES.insert(tx, &i.to_be_bytes(), &NoteV2 { title: i.to_string(), pages: i, tags: vec![] })?)
                })
                .await
        }
    });
    for r in futures_util::future::join_all(writes).await {
        r.unwrap();
    }
    let count = store
        .read(|tx| {
            let mut n = 0;
            NOTES.scan_prefix(tx, &[], |_, _| {
                n += 1;
                Ok::<_, portal_core::Error>(true)
            })?;
            Ok(n)
        })
        .await
        .unwrap();
    assert_eq!(count, 20);
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
struct Counter {
    value: u64,
    /// Every value handed out, in order: a lost update or a number given twice shows here.
    taken: Vec<u64>,
}

impl Record for Counter {}

const COUNTERS: Table<Counter> = Table::new("test.counters");

/// Two handles write one counter at once, each write reading it and writing it back: on PostgreSQL two
/// stores (as two portal processes would open it), on redb two clones of one. Every increment lands
/// once, in order, with no number twice (PostgreSQL runs the losing transaction again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_read_modify_writes_from_two_stores_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = crate::helpers::open_store(dir.path());
    let second = match crate::helpers::test_database() {
        Some(_) => crate::helpers::open_store(dir.path()),
        None => first.clone(),
    };
    let increments = (0..200).map(|i| {
        let store = if i % 2 == 0 { first.clone() } else { second.clone() };
        tokio::spawn(async move {
            store
                .write(|tx| {
                    let mut counter = COUNTERS.get(tx, b"c")?.unwrap_or_default();
                    counter.value += 1;
                    counter.taken.push(counter.value);
                    COUNTERS.insert(tx, b"c", &counter)?;
                    Ok(counter.value)
                })
                .await
        })
    });
    let mut answered: Vec<u64> = Vec::new();
    for increment in increments.collect::<Vec<_>>() {
        answered.push(increment.await.unwrap().unwrap());
    }
    answered.sort_unstable();
    assert_eq!(answered, (1..=200).collect::<Vec<u64>>(), "each write saw the one before it");
    let stored = second.read(|tx| Ok(COUNTERS.get(tx, b"c")?.unwrap())).await.unwrap();
    assert_eq!(stored.value, 200);
    assert_eq!(stored.taken, (1..=200).collect::<Vec<u64>>());
}

/// A write answers from rows its process remembers (PostgreSQL), which another node may have changed
/// since: a key that appeared, one that went away and a range that grew must each be seen as they are
/// now, also by a write that would fail on the old rows.
#[test]
fn a_write_sees_what_another_node_changed_after_its_own_node_read_it() {
    let note = |title: &str| NoteV2 { title: title.into(), pages: 1, tags: vec![] };
    let in_range = |i: u8| [b"r".as_slice(), &[i]].concat();
    let range_len = |tx: &portal_core::WriteTx| -> portal_core::Result<usize> {
        let mut rows = 0;
        NOTES_BY_PAGES.visit_keys(tx, b"r", |_| {
            rows += 1;
            Ok::<_, portal_core::Error>(true)
        })?;
        Ok(rows)
    };
    for case in ["appeared", "went away", "range grew"] {
        let dir = tempfile::tempdir().unwrap();
        let first = crate::helpers::open_store(dir.path());
        let second = match crate::helpers::test_database() {
            Some(_) => crate::helpers::open_store(dir.path()),
            None => first.clone(),
        };
        let seed = note("stays");
        first
            .write_blocking(move |tx| {
                NOTES.insert(tx, b"going", &seed)?;
                Ok::<_, portal_core::Error>(NOTES_BY_PAGES.put(tx, &in_range(1), &[])?)
            })
            .unwrap();
        // The first node reads them (and so remembers them)…
        let read = first.write_blocking(move |tx| {
            let (coming, going) = (NOTES.get(tx, b"coming")?, NOTES.get(tx, b"going")?);
            Ok::<_, portal_core::Error>((coming.is_none(), going.is_some(), range_len(tx)?))
        });
        assert_eq!(read.unwrap(), (true, true, 1));
        // …the second changes them…
        let coming = note("new");
        second
            .write_blocking(move |tx| {
                NOTES.insert(tx, b"coming", &coming)?;
                NOTES.remove(tx, b"going")?;
                Ok::<_, portal_core::Error>(NOTES_BY_PAGES.put(tx, &in_range(2), &[])?)
            })
            .unwrap();
        // …and the first node's next write sees the change.
        match case {
            "appeared" => {
                let title = first.write_blocking(|tx| match NOTES.get(tx, b"coming")? {
                    Some(note) => Ok(note.title),
                    None => Err(portal_core::Error::not_found("note")),
                });
                assert_eq!(title.unwrap(), "new");
            }
            "went away" => {
                let removed = first.write_blocking(|tx| Ok::<_, portal_core::Error>(NOTES.remove(tx, b"going")?));
                assert!(!removed.unwrap(), "the other node had removed it");
            }
            _ => assert_eq!(first.write_blocking(move |tx| range_len(tx)).unwrap(), 2),
        }
    }
}

/// A process that writes a schema alone does not check, row by row, what it remembers: it asserts with
/// each write that no other store opened the schema since it found itself alone. A node that opened the
/// schema, changed a remembered row and closed again between two of its writes must still be seen.
#[test]
fn a_node_that_came_and_went_between_two_writes_is_seen() {
    let Some(url) = crate::helpers::test_database() else {
        eprintln!("several nodes need a PostgreSQL server (PORTAL_TEST_DATABASE_URL)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = crate::helpers::open_store(dir.path());
    let bump = |store: &portal_core::Store, by: u64| {
        store
            .write_blocking(move |tx| {
                let mut counter = COUNTERS.get(tx, b"c")?.unwrap_or_default();
                counter.value += by;
                COUNTERS.insert(tx, b"c", &counter)?;
                Ok::<_, portal_core::Error>(counter.value)
            })
            .unwrap()
    };
    // Alone, the first node remembers the counter as it writes it.
    assert_eq!((bump(&first, 1), bump(&first, 1)), (1, 2));
    let second = crate::helpers::open_store(dir.path());
    assert_eq!(bump(&second, 100), 102);
    drop(second);
    // Once the second node's connections are gone, the first is alone again as far as locks tell.
    let (runtime, client) = sql_session(&url);
    let schema = crate::helpers::store_config(dir.path()).database_schema;
    let holders = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                   AND objid = hashtext('portal:' || $1::text)::oid";
    for _ in 0..500 {
        if runtime.block_on(client.query_one(holders, &[&schema])).unwrap().get::<_, i64>(0) == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(runtime.block_on(client.query_one(holders, &[&schema])).unwrap().get::<_, i64>(0), 1);
    assert_eq!(bump(&first, 1), 103, "the first node saw the second's write");
    let stored = first.read_blocking(|tx| Ok::<_, portal_core::Error>(COUNTERS.get(tx, b"c")?.unwrap().value));
    assert_eq!(stored.unwrap(), 103);
}

/// The writing connection lost while a group's `COMMIT` is in flight: that write is answered with an
/// error (its outcome unknown to the portal; the server rolled it back), the write queued behind it
/// runs on a new connection, and the store goes on.
#[test]
fn a_write_whose_connection_is_lost_in_flight_fails_alone_and_the_store_goes_on() {
    let Some(url) = crate::helpers::test_database() else {
        eprintln!("a lost database connection needs a PostgreSQL server (PORTAL_TEST_DATABASE_URL)");
        return;
    };
    let (runtime, client) = sql_session(&url);
    let sql = |statement: &str| runtime.block_on(client.batch_execute(statement)).unwrap();
    sql("DROP SCHEMA IF EXISTS cut_connection CASCADE");
    let app = "portal_cut_connection";
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = open_postgres(format!("{url}{separator}application_name={app}"), "cut_connection").unwrap();
    write_note(&store);
    // Another session holds an uncommitted row under the key the first write inserts: its `INSERT`
    // waits on it, with its `COMMIT` behind it, while the writer goes on.
    sql("BEGIN; INSERT INTO cut_connection.\"test.notes\" (key, value) VALUES ('\\x6b31', '\\x00')");
    let note = |pages: u32| NoteV2 { title: format!("p{pages}"), pages, tags: vec![] };
    let write = |key: &'static [u8], pages: u32| {
        let store = store.clone();
        std::thread::spawn(move || {
            store.write_blocking(move |tx| Ok::<_, portal_core::Error>(NOTES.insert(tx, key, &note(pages))?))
        })
    };
    let first = write(b"k1", 1);
    let waiting =
        format!("SELECT pid FROM pg_stat_activity WHERE application_name = '{app}' AND wait_event_type = 'Lock'");
    let mut pid = None;
    for _ in 0..500 {
        pid = runtime.block_on(client.query(&waiting, &[])).unwrap().first().map(|row| row.get::<_, i32>(0));
        if pid.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pid = pid.expect("the first write waits on the other session's row");
    // The second write is queued while the writer waits for the first's answers.
    let second = write(b"k2", 2);
    std::thread::sleep(std::time::Duration::from_millis(200));
    sql(&format!("SELECT pg_terminate_backend({pid})"));
    let first = first.join().unwrap();
    let second = second.join().unwrap();
    sql("ROLLBACK");
    let error = first.expect_err("the first write's connection was cut before its commit");
    assert!(error.to_string().contains("database commit"), "{error}");
    assert!(second.is_ok(), "{second:?}");
    let pages = |key: &'static [u8]| {
        store.read_blocking(move |tx| Ok::<_, portal_core::Error>(NOTES.get(tx, key)?.map(|n| n.pages))).unwrap()
    };
    assert_eq!((pages(b"k1"), pages(b"k2")), (None, Some(2)));
    write(b"k3", 3).join().unwrap().unwrap();
    assert_eq!(pages(b"k3"), Some(3));
}

/// A PostgreSQL server that does not answer stops the start with an error naming it, not a panic.
#[tokio::test]
async fn a_database_that_cannot_be_reached_fails_the_start_with_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut config = portal::Config::for_data_dir(dir.path().to_path_buf());
    config.core.store.database_url = Some(format!("postgres://portal@127.0.0.1:{closed}/portal"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = portal::App::with_listener(config, listener).await.err().expect("the start fails");
    assert!(refused.to_string().contains("cannot connect to the database"), "{refused}");
}

/// A URL may list several servers (a primary and its replicas): the store connects to the first that
/// answers and, with `target_session_attrs`, is of the kind asked for.
#[test]
fn a_url_listing_several_servers_connects_to_the_first_that_answers_as_asked() {
    let Some(url) = crate::helpers::test_database() else {
        eprintln!("several servers in a URL need a PostgreSQL server (PORTAL_TEST_DATABASE_URL)");
        return;
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listed = url.replacen('@', &format!("@127.0.0.1:{closed},"), 1);
    let with =
        |attrs: &str| format!("{listed}{}target_session_attrs={attrs}", if listed.contains('?') { '&' } else { '?' });
    let open = |attrs: &str| open_postgres(with(attrs), "several_servers");
    let store = open("read-write").unwrap();
    write_note(&store);
    let pages = store.read_blocking(|tx| Ok::<_, portal_core::Error>(NOTES.get(tx, b"k")?.unwrap().pages)).unwrap();
    assert_eq!(pages, 1);
    drop(store);
    // The one server that answers takes writes: none is a read-only one.
    let refused = open("read-only").err().expect("no read-only server");
    assert!(refused.to_string().contains("transaction_read_only is not on"), "{refused}");
}

/// TLS to the database as libpq sets it up: `disable` and `require` (encrypted, unchecked), `verify-full`
/// (the chain to the roots of `sslrootcert` and the host name), `verify-ca` (the chain only).
#[test]
fn tls_to_the_database_checks_as_much_as_sslmode_asks() {
    let Some(url) = crate::helpers::test_database() else {
        eprintln!("TLS to the database needs a PostgreSQL server (PORTAL_TEST_DATABASE_URL)");
        return;
    };
    let (runtime, client) = sql_session(&url);
    let ask = |sql: &str| runtime.block_on(client.query_one(sql, &[])).unwrap();
    let setting = |name: &str| ask(&format!("SHOW {name}")).get::<_, String>(0);
    if setting("ssl") != "on" || setting("ssl_ca_file").is_empty() {
        eprintln!("TLS to the database needs a server with ssl and ssl_ca_file set (scripts/postgres)");
        return;
    }
    let (root, server_certificate) = (setting("ssl_ca_file"), setting("ssl_cert_file"));
    let config: tokio_postgres::Config = url.parse().unwrap();
    let tokio_postgres::config::Host::Tcp(host) = &config.get_hosts()[0] else { panic!("a TCP host") };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).unwrap().next().unwrap().ip();
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or(user);
    // `name` is the host name the certificate must hold; the server is reached at `addr` whatever it is.
    // Each store names its connections after its settings, to ask the server about them alone.
    let open = |name: &str, tls: &str| {
        let app = label(name, tls);
        let url =
            format!("host={name} hostaddr={addr} port={port} user={user} dbname={dbname} application_name={app} {tls}");
        open_postgres(url, "tls_check")
    };
    let encrypted = |store: &portal_core::Store, name: &str, tls: &str| {
        write_note(store);
        // The store's connections are still open: the server tells whether they use TLS.
        let row = ask(&format!(
            "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = '{}'",
            label(name, tls)
        ));
        assert!(row.get::<_, i64>(0) > 0, "no connection of the store with {tls}");
        row.get::<_, bool>(1)
    };

    let plain = open(host, "sslmode=disable").unwrap();
    assert!(!encrypted(&plain, host, "sslmode=disable"), "sslmode=disable used TLS");
    drop(plain);
    for tls in ["sslmode=require".to_string(), format!("sslmode=verify-full sslrootcert={root}")] {
        let store = open("localhost", &tls).unwrap_or_else(|e| panic!("{tls}: {e}"));
        assert!(encrypted(&store, "localhost", &tls), "{tls} did not use TLS");
        drop(store);
    }
    // The chain must end at a root of sslrootcert: the server's own certificate is not the one that signed it.
    let refused = open("localhost", &format!("sslmode=verify-full sslrootcert={server_certificate}")).err();
    let refused = refused.expect("verify-full trusted a certificate of an unknown issuer").to_string();
    assert!(refused.contains("certificate") && refused.contains("UnknownIssuer"), "{refused}");
    // A certificate for localhost does not do for another name with verify-full; verify-ca checks no name.
    let checked = format!("sslrootcert={root}");
    let refused = open("db.invalid", &format!("sslmode=verify-full {checked}")).err();
    let refused = refused.expect("verify-full took a certificate for another host").to_string();
    assert!(refused.contains("certificate not valid for name \"db.invalid\""), "{refused}");
    let tls = format!("sslmode=verify-ca {checked}");
    let store = open("db.invalid", &tls).expect("verify-ca checks no name");
    assert!(encrypted(&store, "db.invalid", &tls));
    drop(store);
    // As with libpq, sslmode does not apply to a Unix socket, where the server offers no TLS.
    let sockets = setting("unix_socket_directories");
    if let Some(dir) = sockets.split(',').map(str::trim).find(|dir| dir.starts_with('/')) {
        let tls = "sslmode=require";
        let url =
            format!("host={dir} port={port} user={user} dbname={dbname} application_name={} {tls}", label(dir, tls));
        let store = open_postgres(url, "tls_check").unwrap_or_else(|e| panic!("a Unix socket with {tls}: {e}"));
        assert!(!encrypted(&store, dir, tls), "TLS on a Unix socket");
    }
}

/// The store in the PostgreSQL schema `schema` of the database `url`.
fn open_postgres(url: String, schema: &str) -> portal_core::Result<portal_core::Store> {
    let mut config = portal_core::config::StoreConfig::new(std::path::PathBuf::from("unused"));
    config.database_url = Some(url);
    config.database_schema = schema.into();
    portal_core::Store::open_config(&config)
}

/// A plain session on the test database, beside the store's own connections, with the runtime it runs on.
fn sql_session(url: &str) -> (tokio::runtime::Runtime, tokio_postgres::Client) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (client, connection) = runtime.block_on(tokio_postgres::connect(url, tokio_postgres::NoTls)).unwrap();
    runtime.spawn(connection);
    (runtime, client)
}

/// Writes one note (key `k`) through `store`.
fn write_note(store: &portal_core::Store) {
    let note = NoteV2 { title: "t".into(), pages: 1, tags: vec![] };
    store.write_blocking(move |tx| Ok::<_, portal_core::Error>(NOTES.insert(tx, b"k", &note)?)).unwrap();
}

/// An application name for the connections of a store opened for `name` with the TLS settings `tls`.
fn label(name: &str, tls: &str) -> String {
    use sha2::Digest;
    format!("tls_{}", portal_core::backup::hex(&sha2::Sha256::digest(format!("{name} {tls}"))[..6]))
}
