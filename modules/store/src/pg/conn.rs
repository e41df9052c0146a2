//! One connection with its prepared statements, used synchronously: each call waits on the connection's
//! answer, which the backend's own runtime drives, so any thread may call (the writer thread, a blocking
//! thread, or a handler's point read on the async reactor).

use std::collections::HashMap;

use std::future::Future;
use std::pin::Pin;

use futures_executor::block_on;
use futures_util::future::{maybe_done, MaybeDone};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use super::pending::Batch;
use crate::error::{Result, StoreError};

pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

type Call<'a> = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + 'a>>;

pub(crate) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    pub(crate) fn connect(runtime: &tokio::runtime::Runtime, config: &tokio_postgres::Config) -> Result<Self> {
        let config = config.clone();
        let connected = runtime.spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "a database connection ended");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        let client =
            block_on(connected)?.map_err(|e| StoreError::new(format!("cannot connect to the database: {e}")))?;
        Ok(Self { client, statements: HashMap::new() })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// `sql` prepared once per connection.
    fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = block_on(self.client.prepare(sql))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        block_on(self.client.query(&statement, params))
    }

    /// `query` sent right behind `first` (a `BEGIN`), in one round trip.
    pub(crate) fn query_after(
        &mut self,
        first: &str,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        let (begun, rows) = block_on(futures_util::future::join(
            self.client.batch_execute(first),
            self.client.query(&statement, params),
        ));
        begun?;
        rows
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql)?;
        block_on(self.client.execute(&statement, params))
    }

    /// Sends `sql` (without parameters) and goes on without waiting for its answer: statements sent
    /// later on this connection run after it, and the connection reads and drops its answer.
    pub(crate) fn send(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        use futures_util::FutureExt;
        // The first poll hands the statement to the connection; its answer is not awaited.
        match self.client.batch_execute(sql).now_or_never() {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Runs `first`, the `batches` and `last` in order in one round trip. Answers the first error, and
    /// whether `last` (a `COMMIT`) ran, which ends the transaction also after an error.
    pub(crate) fn pipeline(
        &mut self,
        first: Option<&str>,
        batches: &[Batch],
        last: Option<&str>,
    ) -> (Result<(), tokio_postgres::Error>, bool) {
        let mut statements = Vec::with_capacity(batches.len());
        for batch in batches {
            match self.statement(&batch.sql) {
                Ok(statement) => statements.push(statement),
                Err(e) => return (Err(e), false),
            }
        }
        let arrays: Vec<Vec<Vec<&[u8]>>> = batches
            .iter()
            .map(|batch| batch.arrays.iter().map(|array| array.iter().map(Vec::as_slice).collect()).collect())
            .collect();
        let client = &self.client;
        let mut calls: Vec<Call<'_>> = Vec::with_capacity(batches.len() + 2);
        if let Some(first) = first {
            calls.push(Box::pin(client.batch_execute(first)));
        }
        for (statement, arrays) in statements.iter().zip(&arrays) {
            calls.push(Box::pin(async move {
                let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                client.execute(statement, &params).await.map(drop)
            }));
        }
        if let Some(last) = last {
            calls.push(Box::pin(client.batch_execute(last)));
        }
        // Each call is polled once in order, which sends its statement, before any answer is awaited.
        let mut calls: Vec<MaybeDone<Call<'_>>> = calls.into_iter().map(maybe_done).collect();
        block_on(async {
            for call in &mut calls {
                let _ = futures_util::poll!(Pin::new(&mut *call));
            }
            for call in &mut calls {
                Pin::new(call).await;
            }
        });
        let results: Vec<Result<(), tokio_postgres::Error>> =
            calls.iter_mut().filter_map(|call| Pin::new(call).take_output()).collect();
        let last_ran = last.is_some() && results.len() == calls.len() && results.last().is_some_and(Result::is_ok);
        (results.into_iter().find_map(Result::err).map_or(Ok(()), Err), last_ran)
    }

    /// Statements without parameters (transaction control, DDL).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        block_on(self.client.batch_execute(sql))
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
