//! The `Module` trait: what a feature crate gives the app. `app.rs` lists the modules once; their
//! `install`s run in one start-up write transaction, their APIs join one OpenAPI service and their jobs
//! go to the scheduler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use redb::WriteTransaction;

use crate::config::Config;
use crate::error::Result;
use crate::store::Store;

/// What modules share at run time.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub config: Arc<Config>,
}

type JobFn = dyn Fn(Context) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync;

/// A background job the server runs every `every` (sweeps, recurring invoices, expiry).
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    pub run: Arc<JobFn>,
}

impl Job {
    pub fn new<F, Fut>(name: &'static str, every: Duration, run: F) -> Self
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Self { name, every, run: Arc::new(move |ctx| Box::pin(run(ctx))) }
    }
}

pub trait Module {
    /// Prefix of the module's table names (`billing.invoices`) and its schema-version key.
    const NAME: &'static str;
    type Api: poem_openapi::OpenApi;

    /// Creates the module's tables and runs its migrations, inside the start-up write transaction.
    fn install(tx: &WriteTransaction) -> Result<()>;

    /// Builds the module's API handlers.
    fn api(ctx: &Context) -> Self::Api;

    /// Background jobs run on a schedule.
    fn jobs(_ctx: &Context) -> Vec<Job> {
        Vec::new()
    }
}
