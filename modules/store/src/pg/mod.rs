//! The PostgreSQL backend: the same bytes → bytes tables as the redb file, one PostgreSQL table each
//! (`key bytea primary key, value bytea`) in the configured schema, so several portal processes can
//! serve one database. bytea compares as bytes, so range scans see keys in the order redb does.
//!
//! The store's API is synchronous (closures run on the writer thread or a blocking thread): the thread
//! that waits on a connection's answer drives the connection itself (see `socket`).
//! A read is one `REPEATABLE READ READ ONLY` transaction (one consistent view, like a redb snapshot); a
//! write group is one `SERIALIZABLE` transaction, run again when PostgreSQL reports a serialization
//! failure (another node wrote what it read).

mod conn;
mod pending;
mod read;
mod remembered;
mod seen;
mod session;
mod socket;
mod sole;
mod sql;
mod tls;
mod write;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError, RwLock};

pub(crate) use read::PgRead;
pub(crate) use write::PgWrite;

use crate::error::{Result, StoreError};
use conn::Conn;
use remembered::Remembered;

/// How long a connection may take to be set up unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connections kept open between uses (more are opened while needed, then closed). As many as the
/// reads that run at once under load (one per blocking thread in a read), so that a busy portal does
/// not open and close connections per request: with 16, GETs on 32 connections ran 30 % slower.
const MAX_IDLE: usize = 64;

/// Every statement of the portal reads or writes rows by key or key range, for which the generic plan
/// is the right one; left to choose, PostgreSQL planned the checks of remembered rows anew at every
/// bind (a third of a write group's time in the database).
const GENERIC_PLANS: &str = "-c plan_cache_mode=force_generic_plan";

/// How a process holds the store: every portal shares it; a restore must be alone.
#[derive(Clone, Copy)]
pub(crate) enum Holder {
    Shared,
    Alone,
}

/// A PostgreSQL database holding the portal's tables in `schema`.
pub(crate) struct Pg {
    /// The connection that holds the schema's advisory lock (shared or alone) while the store is open;
    /// write transactions run on it (see [`sole`]). Out while one runs.
    holding: Mutex<Option<Conn>>,
    holder: Holder,
    /// Whether this process writes the schema alone, and the statements that tell.
    writers: Mutex<sole::Writers>,
    sole: sole::Statements,
    config: tokio_postgres::Config,
    tls: tls::Tls,
    schema: String,
    idle: Mutex<Vec<Conn>>,
    /// The connection that holds (or last tried for) the lock of the background jobs.
    jobs: Mutex<JobsLock>,
    /// The tables that exist: a read of any other finds nothing, as in a redb file without it.
    tables: RwLock<HashSet<String>>,
    /// Rows write transactions read, answered again without a round trip and checked at the commit.
    remembered: Mutex<Remembered>,
    /// Tables whose rows a write overwrote without reading them first: their new values are upserted.
    overwritten: Mutex<HashSet<String>>,
    /// The qualified name of the function those checks call.
    unchanged: String,
    /// Write groups sent with their `COMMIT` without waiting for its answer (see [`Flights`]).
    flights: Mutex<Flights>,
}

/// A write group's transaction may be sent with its `COMMIT` and left to run in the database while the
/// writer runs the next group's writes (see `PgWrite::send_commit`); those then read what the first
/// one wrote as if committed. The next use of the writing connection reads how it ended, kept here
/// under its number until the writer answers the group's writes. If it failed, what the process
/// remembers is forgotten, and a write that began while it was up runs again (see `PgWrite::doomed`).
#[derive(Default)]
struct Flights {
    sent: u64,
    /// The flight whose answers were not read yet.
    up: Option<u64>,
    landed: HashMap<u64, std::result::Result<(), session::Failure>>,
}

/// Whether this process runs the background jobs: it does while its connection holds the schema's jobs
/// lock (a session advisory lock, let go by PostgreSQL when the connection ends, also when the process
/// dies). The others try again at most once a second.
#[derive(Default)]
struct JobsLock {
    conn: Option<Conn>,
    held: bool,
    tried: Option<std::time::Instant>,
}

/// How often a process that does not run the jobs tries to take them over.
const JOBS_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Pg {
    /// Connects to the database `url` names, creates `schema` if missing and learns its tables.
    pub(crate) fn open(url: &str, schema: &str, holder: Holder) -> Result<Self> {
        if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(StoreError::new(format!("the schema name {schema:?} may hold only letters, digits and _")));
        }
        let (url, tls) = tls::from_url(url)?;
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::new(format!("cannot read the database URL: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("portal");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let options = config.get_options().map_or(String::new(), |given| format!("{given} "));
        config.options(format!("{options}{GENERIC_PLANS}"));
        let mut holding = Conn::connect(&config, &tls)?;
        hold(&mut holding, holder, schema)?;
        let unchanged = format!("\"{schema}\".{}", sql::UNCHANGED);
        let sequence = format!("\"{schema}\".{}", sole::SEQUENCE);
        let pg = Self {
            holding: Mutex::new(None),
            holder,
            writers: Mutex::default(),
            sole: sole::Statements::new(schema, &sequence, &unchanged),
            config,
            tls,
            schema: schema.to_string(),
            idle: Mutex::default(),
            jobs: Mutex::default(),
            tables: RwLock::default(),
            remembered: Mutex::default(),
            overwritten: Mutex::default(),
            unchanged,
            flights: Mutex::default(),
        };
        let mut conn = pg.connect()?;
        let version: i32 = conn.scalar("SELECT current_setting('server_version_num')::int", &[])?;
        if version < 150_000 {
            return Err(StoreError::new(format!("PostgreSQL 15 or newer is needed; the server runs {version}")));
        }
        // Two nodes starting together may both create the schema: the loser's error is harmless.
        let created = conn.batch(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""));
        if created.is_err() && !pg.schema_exists(&mut conn)? {
            created?;
        }
        pg.create_unchanged(&mut conn, &sequence)?;
        holding.scalar::<i64>(&pg.sole.arrive, &[])?;
        *pg.holding.lock().unwrap_or_else(PoisonError::into_inner) = Some(holding);
        let names = conn.query(sql::TABLES, &[&schema])?;
        *pg.tables.write().unwrap_or_else(PoisonError::into_inner) =
            names.iter().filter_map(|row| row.try_get::<_, String>(0).ok()).collect();
        pg.give_back(conn);
        Ok(pg)
    }

    /// Creates the function that checks remembered rows and the arrivals `sequence`, unless they
    /// exist. Nodes starting together take turns, so that one does not replace them while another does.
    fn create_unchanged(&self, conn: &mut Conn, sequence: &str) -> Result<()> {
        let function = conn.scalar::<bool>(sql::HAS_UNCHANGED, &[&format!("{}(boolean)", self.unchanged)])?;
        if function && conn.scalar::<bool>(sql::EXISTS, &[&sequence])? {
            return Ok(());
        }
        conn.batch("BEGIN")?;
        let created = conn
            .execute(sql::DDL_TURN, &[&self.schema])
            .and_then(|_| conn.batch(&sql::create_unchanged(&self.unchanged)))
            .and_then(|()| conn.batch(&sole::create_sequence(sequence)))
            .and_then(|()| conn.batch("COMMIT"));
        created.map_err(|e| {
            let _ = conn.batch("ROLLBACK");
            StoreError::new(format!("cannot create the function {}: {}", self.unchanged, session::describe(&e)))
        })
    }

    /// The connection write transactions run on, the one that holds the schema. If it broke, the lock
    /// went with it: a new one takes it again and counts as a store that just opened the schema.
    pub(crate) fn take_holding(&self) -> Result<Conn> {
        let held = self.holding.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut conn) = held {
            self.note_landing(conn.land());
            if !conn.is_closed() {
                return Ok(conn);
            }
        }
        // Drawing a new number also fails the assertion of a write that counted on being alone.
        let mut conn = self.connect()?;
        hold(&mut conn, self.holder, &self.schema)?;
        conn.scalar::<i64>(&self.sole.arrive, &[])?;
        Ok(conn)
    }

    pub(crate) fn give_back_holding(&self, mut conn: Conn) {
        match conn.is_closed() {
            false => *self.holding.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn),
            // A flight on it ended with the connection.
            true => self.note_landing(conn.land()),
        }
    }

    /// The number of a new flight (see [`Flights`]).
    pub(crate) fn next_flight(&self) -> u64 {
        let mut flights = self.flights();
        flights.sent += 1;
        flights.sent
    }

    /// Notes that flight `number` went out on the writing connection.
    pub(crate) fn flew(&self, number: u64) {
        self.flights().up = Some(number);
    }

    /// The flight whose answers were not read yet, if any.
    pub(crate) fn flight_up(&self) -> Option<u64> {
        self.flights().up
    }

    /// How flight `number` ended, reading its answers if needed; `take` hands it over for good (to the
    /// writer answering its writes). A flight whose connection was lost unread ended unknown.
    pub(crate) fn flight(&self, number: u64, take: bool) -> std::result::Result<(), session::Failure> {
        if self.flights().up == Some(number) {
            let landed = self.holding.lock().unwrap_or_else(PoisonError::into_inner).as_mut().and_then(Conn::land);
            self.note_landing(landed);
        }
        let mut flights = self.flights();
        let landed = match take {
            true => flights.landed.remove(&number),
            false => flights.landed.get(&number).cloned(),
        };
        landed.unwrap_or_else(|| {
            let lost = "the database connection was lost before the commit was answered: its outcome is unknown";
            Err(session::Failure::new(StoreError::new(lost)))
        })
    }

    /// Keeps how a flight ended. A failed one wrote nothing, while what it wrote was remembered as
    /// committed: forgotten (an insert that met an existing key also makes its table upserted).
    fn note_landing(&self, landed: Option<conn::Landed>) {
        let Some((number, done)) = landed else { return };
        let done = done.map_err(|e| {
            let error = StoreError::new(format!("database commit: {}", session::describe(&e)));
            session::Failure::of(error, &e, &self.schema)
        });
        if let Err(failure) = &done {
            match &failure.overwrote {
                Some(table) => {
                    self.overwrote(table);
                    self.remembered().clear();
                }
                None => {
                    self.not_alone();
                    self.remembered().clear_and_rest();
                }
            }
        }
        let mut flights = self.flights();
        if flights.up == Some(number) {
            flights.up = None;
        }
        flights.landed.insert(number, done);
    }

    fn flights(&self) -> std::sync::MutexGuard<'_, Flights> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// At the start of a write group: the arrivals number since which this process writes alone, if it
    /// does (looking again at most once a second while others write; see [`sole`]).
    pub(crate) fn writing_alone(&self) -> Option<i64> {
        let due = self.writers.lock().unwrap_or_else(PoisonError::into_inner).probe_due();
        if due {
            // Not under the lock: taking the writing connection may learn of a failed flight, which
            // means others may write (`not_alone`).
            let since = self.take_holding().and_then(|mut conn| {
                let since = conn.scalar::<Option<i64>>(&self.sole.probe, &[]);
                self.give_back_holding(conn);
                since
            });
            let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
            *writers = match since {
                Ok(Some(arrivals)) => {
                    // What was remembered beside other writers may have changed unseen since.
                    self.remembered().clear();
                    sole::Writers::Alone(arrivals)
                }
                _ => sole::Writers::Several(Some(std::time::Instant::now())),
            };
        }
        let writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        match *writers {
            sole::Writers::Alone(arrivals) => Some(arrivals),
            sole::Writers::Several(_) => None,
        }
    }

    /// After a write lost a race or the writing connection broke: others may write.
    pub(crate) fn not_alone(&self) {
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*writers, sole::Writers::Alone(_)) {
            *writers = sole::Writers::Several(Some(std::time::Instant::now()));
        }
    }

    /// Whether a write's new value for a key of `table` it did not read must be upserted: the table's
    /// rows have been overwritten without a read before (see [`pending`]).
    pub(crate) fn overwrites(&self, table: &str) -> bool {
        self.overwritten.lock().unwrap_or_else(PoisonError::into_inner).contains(table)
    }

    /// Notes that an insert into `table` met a key that existed.
    pub(crate) fn overwrote(&self, table: &str) {
        tracing::debug!(table, "an insert met an existing key: the table's new values are upserted from now on");
        self.overwritten.lock().unwrap_or_else(PoisonError::into_inner).insert(table.to_string());
    }

    /// What write transactions remember (see [`Remembered`]).
    pub(crate) fn remembered(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.remembered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn schema_exists(&self, conn: &mut Conn) -> Result<bool> {
        Ok(conn.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&self.schema])?.len() == 1)
    }

    /// An open connection: an idle one, else a new one.
    pub(crate) fn take(&self) -> Result<Conn> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match idle {
            Some(mut conn) => match conn.is_closed() {
                false => Ok(conn),
                true => self.connect(),
            },
            None => self.connect(),
        }
    }

    /// Returns a connection after use (dropped if it broke or enough are idle already).
    pub(crate) fn give_back(&self, mut conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn connect(&self) -> Result<Conn> {
        Conn::connect(&self.config, &self.tls)
    }

    /// Whether this process runs the background jobs now (see [`JobsLock`]).
    pub(crate) fn leads_jobs(&self) -> bool {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let alive = jobs.conn.as_mut().is_some_and(|conn| !conn.is_closed());
        if jobs.held && alive {
            return true;
        }
        if jobs.held {
            tracing::warn!(schema = %self.schema, "lost the database connection that held the background jobs");
            jobs.held = false;
        }
        if jobs.tried.is_some_and(|at| at.elapsed() < JOBS_RETRY) {
            return false;
        }
        jobs.tried = Some(std::time::Instant::now());
        if !alive {
            jobs.conn = self.connect().ok();
        }
        let taken = jobs.conn.as_mut().map(|conn| conn.scalar::<bool>(sql::LEAD_JOBS, &[&self.schema]));
        jobs.held = matches!(taken, Some(Ok(true)));
        if jobs.held {
            tracing::info!(schema = %self.schema, "this portal runs the background jobs");
        }
        jobs.held
    }

    /// The quoted, schema-qualified name of the portal table `name`.
    pub(crate) fn qualified(&self, name: &str) -> Result<String> {
        if name.contains('"') {
            return Err(StoreError::new(format!("bad table name {name:?}")));
        }
        Ok(format!("\"{}\".\"{name}\"", self.schema))
    }

    pub(crate) fn has_table(&self, name: &str) -> bool {
        self.tables.read().unwrap_or_else(PoisonError::into_inner).contains(name)
    }

    pub(crate) fn learned_table(&self, name: &str, exists: bool) {
        let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
        if exists {
            tables.insert(name.to_string());
        } else {
            tables.remove(name);
        }
    }

    /// The names of the portal's tables.
    pub(crate) fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.tables.read().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect();
        names.sort();
        names
    }
}

/// Takes the schema's advisory lock on `conn`: shared by every portal, alone for a restore.
fn hold(conn: &mut Conn, holder: Holder, schema: &str) -> Result<()> {
    let held: bool = match holder {
        Holder::Shared => conn.query(sql::HOLD_SHARED, &[&schema]).map(|_| true)?,
        Holder::Alone => conn.scalar(sql::HOLD_ALONE, &[&schema])?,
    };
    match held {
        true => Ok(()),
        false => Err(StoreError::new(format!(
            "a running portal has schema {schema:?} open: stop every portal using it first"
        ))),
    }
}

/// Whether a PostgreSQL error means the transaction lost a race with another and should run again: a
/// serialization failure, a deadlock, a unique violation (two nodes creating the same table at once, or
/// an insert that met a key another node added or that a write overwrote without reading it, see
/// [`overwritten_table`]).
pub(crate) fn is_conflict(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    let racing = [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::UNIQUE_VIOLATION,
        SqlState::DUPLICATE_TABLE,
    ];
    e.code().is_some_and(|code| racing.contains(code))
}

/// The portal's table in `schema` in which an insert met an existing key, if `e` reports that.
pub(crate) fn overwritten_table(e: &tokio_postgres::Error, schema: &str) -> Option<String> {
    let db = e.as_db_error().filter(|db| db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION)?;
    db.table().filter(|_| db.schema() == Some(schema)).map(str::to_string)
}
