//! One connection with its prepared statements, used synchronously by one thread at a time (the writer
//! thread, a blocking thread, or a handler's point read on the async reactor). The thread that waits on
//! an answer drives the connection itself (see [`super::socket`]): no runtime, no hand-off between threads.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use futures_util::future::{maybe_done, MaybeDone};
use futures_util::FutureExt;
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Config, Error, Row, SimpleQueryMessage, Statement};

use super::pending::{Batch, Param};
use super::socket::{Readiness, Socket};
use super::tls::{Tls, TlsStream};
use crate::error::{Result, StoreError};

pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

type Call<'a> = Pin<Box<dyn Future<Output = Result<Option<Vec<Row>>, Error>> + Send + 'a>>;

/// What ends a pipeline: a statement without parameters (a `COMMIT`), or a query whose rows are wanted.
enum Last<'a> {
    Simple(Option<&'a str>),
    Query(&'a Statement, &'a Params<'a>),
}

type Connection = tokio_postgres::Connection<Socket, TlsStream>;

pub(crate) struct Conn {
    /// Shared with the calls of a flight, which outlive the borrow of one method.
    client: Arc<Client>,
    /// Reads and writes the socket while a call waits; `None` once it ended.
    connection: Option<Pin<Box<Connection>>>,
    readiness: Readiness,
    statements: HashMap<String, Statement>,
    /// A transaction sent with its `COMMIT` whose answers were not read yet (see [`Conn::fly`]).
    flight: Option<Flight>,
    /// How the last flight ended, once its answers were read and until [`Conn::land`] hands it over.
    landed: Option<Landed>,
}

/// The calls of a flight, each sent, with the number the caller gave it.
struct Flight {
    number: u64,
    calls: Vec<MaybeDone<Call<'static>>>,
}

/// A flight's number and its first error, if any (then it was rolled back, or its outcome is unknown).
pub(crate) type Landed = (u64, Result<(), Error>);

impl Conn {
    /// Connects to the first of the URL's hosts that answers (and, with `target_session_attrs`, is
    /// writable or read-only as asked).
    pub(crate) fn connect(config: &Config, tls: &Tls) -> Result<Self> {
        let (hosts, addrs, ports) = (config.get_hosts(), config.get_hostaddrs(), config.get_ports());
        let mut failed = StoreError::new("cannot connect to the database: the URL names no host");
        for i in 0..hosts.len().max(addrs.len()) {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let host = match (addrs.get(i), hosts.get(i)) {
                (Some(addr), _) => Host::Tcp(addr.to_string()),
                (None, Some(host)) => host.clone(),
                (None, None) => continue,
            };
            // The certificate must name the host the URL gives, also when `hostaddr` says where it is.
            let name = match (hosts.get(i), &host) {
                (Some(Host::Tcp(name)), _) | (_, Host::Tcp(name)) => name.clone(),
                _ => "localhost".to_string(),
            };
            match Self::connect_to(config, &host, port, tls, &name) {
                Ok(conn) => return Ok(conn),
                Err(e) => failed = e,
            }
        }
        Err(failed)
    }

    fn connect_to(config: &Config, host: &Host, port: u16, tls: &Tls, name: &str) -> Result<Self> {
        let at = match host {
            Host::Tcp(name) => format!("{name}:{port}"),
            Host::Unix(dir) => dir.join(format!(".s.PGSQL.{port}")).display().to_string(),
        };
        let cannot = |why: String| StoreError::unreachable(format!("cannot connect to the database at {at}: {why}"));
        let timeout = config.get_connect_timeout().copied();
        let (socket, readiness) = Socket::connect(host, port, timeout).map_err(|e| cannot(with_causes(&e)))?;
        if let Some(tcp) = socket.tcp() {
            keep_alive(tcp, config).map_err(|e| cannot(with_causes(&e)))?;
        }
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let tls = tls.connect_to(name)?;
        // As libpq, no TLS on a Unix socket (the server offers none there), whatever `sslmode` says.
        let plain = matches!(host, Host::Unix(_)).then(|| {
            let mut plain = config.clone();
            plain.ssl_mode(SslMode::Disable);
            plain
        });
        let config = plain.as_ref().unwrap_or(config);
        let (client, connection) =
            handshake(config.connect_raw(socket, tls), &readiness, deadline).map_err(|e| cannot(with_causes(&e)))?;
        let mut conn = Self {
            client: Arc::new(client),
            connection: Some(Box::pin(connection)),
            readiness,
            statements: HashMap::new(),
            flight: None,
            landed: None,
        };
        let wanted = match config.get_target_session_attrs() {
            TargetSessionAttrs::ReadWrite => "off",
            TargetSessionAttrs::ReadOnly => "on",
            _ => return Ok(conn),
        };
        let asked = conn.client.simple_query("SHOW transaction_read_only");
        let answer =
            drive(&mut conn.connection, &conn.readiness, &conn.client, asked).map_err(|e| cannot(with_causes(&e)))?;
        let read_only = answer.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        });
        match read_only.as_deref() == Some(wanted) {
            true => Ok(conn),
            false => Err(cannot(format!("the server's transaction_read_only is not {wanted}"))),
        }
    }

    pub(crate) fn is_closed(&mut self) -> bool {
        // Reads what the server sent meanwhile: a connection it closed ends here.
        if let Some(connection) = &mut self.connection {
            if poll_connection(connection, &mut Context::from_waker(Waker::noop())) {
                self.connection = None;
            }
        }
        self.connection.is_none() || self.client.is_closed()
    }

    /// `sql` prepared once per connection.
    fn statement(&mut self, sql: &str) -> Result<Statement, Error> {
        self.settle_flight();
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = drive(&mut self.connection, &self.readiness, &self.client, self.client.prepare(sql))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, Error> {
        let statement = self.statement(sql)?;
        drive(&mut self.connection, &self.readiness, &self.client, self.client.query(&statement, params))
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, Error> {
        let statement = self.statement(sql)?;
        drive(&mut self.connection, &self.readiness, &self.client, self.client.execute(&statement, params))
    }

    /// Sends `sql` (without parameters) and goes on without waiting for its answer: statements sent
    /// later on this connection run after it, and the connection reads and drops its answer.
    pub(crate) fn send(&mut self, sql: &str) -> Result<(), Error> {
        self.settle_flight();
        // The first poll hands the statement to the connection; its answer is not awaited.
        if let Some(Err(e)) = self.client.batch_execute(sql).now_or_never() {
            return Err(e);
        }
        self.write_out();
        Ok(())
    }

    /// Lets the connection write what was queued to the socket now, so that the server runs it meanwhile.
    fn write_out(&mut self) {
        if let Some(connection) = &mut self.connection {
            if poll_connection(connection, &mut Context::from_waker(Waker::noop())) {
                self.connection = None;
            }
        }
    }

    /// Sends `first`, the `batches` and `last` (a `COMMIT`) as [`Conn::pipeline`] does, and goes on
    /// without waiting for their answers: the caller works meanwhile and learns the outcome from
    /// [`Conn::land`]. Any other use of the connection reads the answers first. Fails only if a
    /// statement could not be prepared (then nothing was sent but what prepared it).
    pub(crate) fn fly(
        &mut self,
        number: u64,
        first: Option<&'static str>,
        batches: Vec<Batch>,
        last: &'static str,
    ) -> Result<(), Error> {
        let mut statements = Vec::with_capacity(batches.len());
        for batch in &batches {
            statements.push(self.statement(&batch.sql)?);
        }
        let mut calls: Vec<Call<'static>> = Vec::with_capacity(batches.len() + 2);
        let simple = |client: Arc<Client>, sql: &'static str| -> Call<'static> {
            Box::pin(async move { client.batch_execute(sql).await.map(|()| None) })
        };
        if let Some(first) = first {
            calls.push(simple(Arc::clone(&self.client), first));
        }
        for (statement, batch) in statements.into_iter().zip(batches) {
            let client = Arc::clone(&self.client);
            calls.push(Box::pin(async move {
                let values: Vec<Value<'_>> = batch.params.iter().map(Value::of).collect();
                let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(Value::as_sql).collect();
                client.execute(&statement, &params).await.map(|_| None)
            }));
        }
        calls.push(simple(Arc::clone(&self.client), last));
        let calls = start(calls);
        self.write_out();
        self.flight = Some(Flight { number, calls });
        Ok(())
    }

    /// How the last flight ended, reading its answers if that was not done yet; `None` without one.
    pub(crate) fn land(&mut self) -> Option<Landed> {
        self.settle_flight();
        self.landed.take()
    }

    /// Reads the answers of the flight, if one is up, and keeps how it ended for [`Conn::land`].
    fn settle_flight(&mut self) {
        let Some(mut flight) = self.flight.take() else { return };
        // Every call is answered (the `COMMIT` also after an error, as a rollback) unless the
        // connection ended, which ends the transaction too.
        let (done, _, _) = settle(&mut self.connection, &self.readiness, &self.client, &mut flight.calls, true);
        self.landed = Some((flight.number, done));
    }

    /// Runs `first`, the `batches` and `last` in order in one round trip. Answers the first error, and
    /// whether `last` (a `COMMIT`) ran, which ends the transaction also after an error.
    pub(crate) fn pipeline(
        &mut self,
        first: Option<&str>,
        batches: &[Batch],
        last: Option<&str>,
    ) -> (Result<(), Error>, bool) {
        let (done, _, last_ran) = self.pipelined(first, batches, Last::Simple(last));
        (done, last_ran)
    }

    /// `query` behind `first` (a `BEGIN`) and the `batches`, all in one round trip; the first error
    /// is the answer.
    pub(crate) fn query_behind(
        &mut self,
        first: Option<&str>,
        batches: &[Batch],
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, Error> {
        if first.is_none() && batches.is_empty() {
            return self.query(sql, params);
        }
        let statement = self.statement(sql)?;
        let (done, rows, _) = self.pipelined(first, batches, Last::Query(&statement, params));
        done?;
        Ok(rows.unwrap_or_default())
    }

    /// Queues `first`, the `batches` and `last`, each polled once in order (which sends it) before any
    /// answer is awaited. Answers the first error, the rows of a last query, and whether `last` ran.
    fn pipelined(
        &mut self,
        first: Option<&str>,
        batches: &[Batch],
        last: Last<'_>,
    ) -> (Result<(), Error>, Option<Vec<Row>>, bool) {
        self.settle_flight();
        let mut statements = Vec::with_capacity(batches.len());
        for batch in batches {
            match self.statement(&batch.sql) {
                Ok(statement) => statements.push(statement),
                Err(e) => return (Err(e), None, false),
            }
        }
        let values: Vec<Vec<Value<'_>>> =
            batches.iter().map(|batch| batch.params.iter().map(Value::of).collect()).collect();
        let client = &self.client;
        let mut calls: Vec<Call<'_>> = Vec::with_capacity(batches.len() + 2);
        if let Some(first) = first {
            calls.push(Box::pin(client.batch_execute(first).map(|done| done.map(|()| None))));
        }
        for (statement, values) in statements.iter().zip(&values) {
            calls.push(Box::pin(async move {
                let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(Value::as_sql).collect();
                client.execute(statement, &params).await.map(|_| None)
            }));
        }
        let has_last = match last {
            Last::Simple(None) => false,
            Last::Simple(Some(sql)) => {
                calls.push(Box::pin(client.batch_execute(sql).map(|done| done.map(|()| None))));
                true
            }
            Last::Query(statement, params) => {
                calls.push(Box::pin(client.query(statement, params).map(|rows| rows.map(Some))));
                true
            }
        };
        let mut calls = start(calls);
        settle(&mut self.connection, &self.readiness, client, &mut calls, has_last)
    }

    /// Statements without parameters (transaction control, DDL).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), Error> {
        self.settle_flight();
        drive(&mut self.connection, &self.readiness, &self.client, self.client.batch_execute(sql))
    }

    pub(crate) fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<T> {
        let rows = self.query(sql, params)?;
        let row = rows.first().ok_or_else(|| StoreError::new("the database answered no row"))?;
        Ok(row.try_get(0)?)
    }

    /// Forgets the prepared statements of a table that was dropped or created anew.
    pub(crate) fn forget_statements(&mut self) {
        self.statements.clear();
    }
}

/// A [`Param`] as tokio-postgres takes it.
enum Value<'a> {
    Bytes(&'a [u8]),
    Array(Vec<&'a [u8]>),
}

impl<'a> Value<'a> {
    fn of(param: &'a Param) -> Self {
        match param {
            Param::Bytes(bytes) => Self::Bytes(bytes),
            Param::Array(array) => Self::Array(array.iter().map(Vec::as_slice).collect()),
        }
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Bytes(bytes) => bytes,
            Self::Array(array) => array,
        }
    }
}

/// Polls each call once, in order, which sends it: the server gets them all before any answer is awaited.
fn start(calls: Vec<Call<'_>>) -> Vec<MaybeDone<Call<'_>>> {
    let mut calls: Vec<MaybeDone<Call<'_>>> = calls.into_iter().map(maybe_done).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for call in &mut calls {
        let _ = Pin::new(call).poll(&mut cx);
    }
    calls
}

/// Drives the started `calls` until each has its answer. Answers the first error, the rows of a last
/// query, and whether the last call ran (when `has_last`).
fn settle(
    connection: &mut Option<Pin<Box<Connection>>>,
    readiness: &Readiness,
    client: &Client,
    calls: &mut [MaybeDone<Call<'_>>],
    has_last: bool,
) -> (Result<(), Error>, Option<Vec<Row>>, bool) {
    let all = async {
        for call in calls.iter_mut() {
            Pin::new(call).await;
        }
        Ok(())
    };
    let driven = drive(connection, readiness, client, all);
    let results: Vec<Result<Option<Vec<Row>>, Error>> =
        calls.iter_mut().filter_map(|call| Pin::new(call).take_output()).collect();
    let last_ran = has_last && results.len() == calls.len() && results.last().is_some_and(Result::is_ok);
    let mut first_error = driven.err();
    let mut rows = None;
    for result in results {
        match result {
            Ok(Some(found)) => rows = Some(found),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    (first_error.map_or(Ok(()), Err), rows, last_ran)
}

/// Records that something a poll waits on (a channel between the client and its connection) moved, so
/// the waiting thread polls again instead of sleeping on the socket.
#[derive(Default)]
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

/// Polls `call` and the connection in turn until the call ends, sleeping on the socket while neither can
/// go on. A connection that ends fails the calls waiting on it.
fn drive<T>(
    connection: &mut Option<Pin<Box<Connection>>>,
    readiness: &Readiness,
    client: &Client,
    call: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let mut call = pin!(call);
    let woken = Arc::new(Woken::default());
    let waker = Waker::from(Arc::clone(&woken));
    let mut cx = Context::from_waker(&waker);
    loop {
        woken.0.store(false, Ordering::Release);
        if let Poll::Ready(answer) = call.as_mut().poll(&mut cx) {
            return answer;
        }
        let Some(open) = connection else {
            // Dropping the connection closed the channels the call waits on, so it fails at its next poll
            // (above), as any new call fails at once.
            if let Some(Err(e)) = client.batch_execute("").now_or_never() {
                return Err(e);
            }
            let _ = readiness.wait(Some(Instant::now() + std::time::Duration::from_millis(10)));
            continue;
        };
        if poll_connection(open, &mut cx) {
            *connection = None;
            continue;
        }
        if woken.0.load(Ordering::Acquire) {
            continue;
        }
        if let Err(e) = readiness.wait(None) {
            tracing::warn!(error = %e, "cannot wait on a database connection");
            *connection = None;
        }
    }
}

/// Lets the connection read and write what it can: whether it ended.
fn poll_connection(connection: &mut Pin<Box<Connection>>, cx: &mut Context<'_>) -> bool {
    loop {
        match connection.as_mut().poll_message(cx) {
            Poll::Pending => return false,
            Poll::Ready(Some(Ok(AsyncMessage::Notice(notice)))) => {
                tracing::debug!(severity = notice.severity(), message = notice.message(), "database notice");
            }
            // Notifications: the portal listens for none.
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "a database connection ended");
                return true;
            }
            Poll::Ready(None) => return true,
        }
    }
}

/// An error with the errors that caused it (tokio-postgres' text leaves out why a TLS handshake failed).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}

/// Runs the start-up exchange of a new connection (before `deadline`, if any).
fn handshake(
    connecting: impl Future<Output = Result<(Client, Connection), Error>>,
    readiness: &Readiness,
    deadline: Option<Instant>,
) -> std::io::Result<(Client, Connection)> {
    let mut connecting = pin!(connecting);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(connected) = connecting.as_mut().poll(&mut cx) {
            return connected.map_err(std::io::Error::other);
        }
        if !readiness.wait(deadline)? {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the server did not answer in time"));
        }
    }
}

/// The URL's TCP keepalive settings (on by default, as libpq's), so that a dead server or network is noticed.
fn keep_alive(tcp: &std::net::TcpStream, config: &Config) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(tcp);
    if let Some(timeout) = config.get_tcp_user_timeout() {
        socket.set_tcp_user_timeout(Some(*timeout))?;
    }
    if !config.get_keepalives() {
        return Ok(());
    }
    let mut keepalive = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
    if let Some(interval) = config.get_keepalives_interval() {
        keepalive = keepalive.with_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        keepalive = keepalive.with_retries(retries);
    }
    socket.set_tcp_keepalive(&keepalive)
}
