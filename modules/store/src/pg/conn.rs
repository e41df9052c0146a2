//! One connection with its prepared statements, used synchronously: each call waits on the connection's
//! answer, which the backend's own runtime drives, so any thread may call (the writer thread, a blocking
//! thread, or a handler's point read on the async reactor).

use std::collections::HashMap;

use futures_executor::block_on;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::error::{Result, StoreError};

pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

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
